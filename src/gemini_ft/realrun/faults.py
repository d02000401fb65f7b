"""Failure injection: parse `--fail` specs, draw seeded random schedules, and fire each failure once.

Specs: `sw@step=30:rank=1` (kill one training process; its machine's memory survives),
`hw@step=50:machine=2` (kill the whole machine and wipe its shared memory), either with
`:during=snapshot|replicate` to strike mid-checkpoint, `random:count=3:seed=7`, and
`disk@step=N:how=flip|truncate|metadata|missing` (rank 0 damages the newest persistent checkpoint,
as a bad disk or a careless hand would; training goes on). A failure fires
at the start of its step once the previous checkpoint is out (or inside that step's
snapshot/replication) and at most once per job: a marker file in the run directory records it
(`gemini_ft.realrun.markers`), so restarted workers do not fire it again. torch-free, so the launcher parses
the specs before anything starts.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gemini_ft.common.errors import UserError
from gemini_ft.realrun import markers
from gemini_ft.realrun.engine.persistent import committed_steps, data_files, persistent_dir

PHASES = ("step", "snapshot", "replicate")
DAMAGE = ("flip", "truncate", "metadata", "missing")
_FORMAT = (
    "sw@step=N:rank=R | hw@step=N:machine=M (optionally :during=snapshot|replicate) | random:count=C:seed=S"
    " | disk@step=N:how=flip|truncate|metadata|missing"
)


@dataclass(frozen=True)
class FailureSpec:
    """One injected failure: which kind, when, and whom it strikes."""

    index: int
    kind: Literal["sw", "hw", "disk"]
    step: int
    target: int  # a rank for sw, a machine for hw, rank 0 for disk
    during: str = "step"
    how: str = ""  # disk only: which damage (DAMAGE)

    def to_text(self) -> str:
        if self.kind == "disk":
            return f"disk@step={self.step}:how={self.how}"
        who = f"rank={self.target}" if self.kind == "sw" else f"machine={self.target}"
        return f"{self.kind}@step={self.step}:{who}" + (
            f":during={self.during}" if self.during != "step" else ""
        )


def parse_failures(specs: list[str], machines: int, procs_per_machine: int, steps: int) -> list[FailureSpec]:
    """Every `--fail` value, checked against the job's size; random schedules expanded."""
    failures: list[FailureSpec] = []
    for text in specs:
        if text.startswith("random"):
            fields = _fields(text, text.removeprefix("random").lstrip(":"), {"count", "seed"})
            seed = _int(text, fields.get("seed", "0"))
            if seed < 0:
                raise UserError("failures", text, "seed must be a non-negative integer")
            failures += _random_schedule(
                _int(text, fields.get("count", "1")),
                seed,
                machines,
                procs_per_machine,
                steps,
                len(failures),
            )
            continue
        kind, sep, rest = text.partition("@")
        if kind not in ("sw", "hw", "disk") or not sep:
            raise UserError("failures", text, f"expected {_FORMAT}")
        if kind == "disk":
            failures.append(_disk(text, rest, steps, len(failures)))
            continue
        who = "rank" if kind == "sw" else "machine"
        fields = _fields(text, rest, {"step", who, "during"})
        if "step" not in fields or who not in fields:
            raise UserError("failures", text, f"needs step= and {who}=; expected {_FORMAT}")
        step, target = _int(text, fields["step"]), _int(text, fields[who])
        limit = machines * procs_per_machine if kind == "sw" else machines
        if not 1 <= step <= steps:
            raise UserError("failures", text, f"step must be between 1 and steps = {steps}")
        if not 0 <= target < limit:
            raise UserError("failures", text, f"{who} must be between 0 and {limit - 1}")
        during = fields.get("during", "step")
        if during not in PHASES:
            raise UserError("failures", text, f"during must be one of {', '.join(PHASES[1:])}")
        failures.append(FailureSpec(len(failures), kind, step, target, during))  # type: ignore[arg-type]
    return failures


def _disk(text: str, rest: str, steps: int, index: int) -> FailureSpec:
    fields = _fields(text, rest, {"step", "how"})
    if "step" not in fields or fields.get("how") not in DAMAGE:
        raise UserError("failures", text, f"needs step= and how= one of {', '.join(DAMAGE)}")
    step = _int(text, fields["step"])
    if not 1 <= step <= steps:
        raise UserError("failures", text, f"step must be between 1 and steps = {steps}")
    return FailureSpec(index, "disk", step, 0, "step", fields["how"])


def _fields(text: str, body: str, allowed: set[str]) -> dict[str, str]:
    fields = {}
    for part in filter(None, body.split(":")):
        key, eq, value = part.partition("=")
        if not eq or key not in allowed or not value:
            raise UserError("failures", text, f"expected {_FORMAT}")
        fields[key] = value
    return fields


def _int(text: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError("failures", text, f"{value!r} is not an integer; expected {_FORMAT}") from None


def _random_schedule(
    count: int, seed: int, machines: int, procs: int, steps: int, start: int
) -> list[FailureSpec]:
    """`count` failures at distinct steps in [2, steps − 1], half software, half hardware on average."""
    if count < 1 or steps < count + 2:
        raise UserError(
            "failures", f"random:count={count}", f"count must be ≥ 1 and leave room in --steps = {steps}"
        )
    rng = np.random.default_rng(seed)
    at = np.sort(rng.choice(np.arange(2, steps), size=count, replace=False))
    out = []
    for i, step in enumerate(at):
        kind = "hw" if rng.random() < 0.5 else "sw"
        target = int(rng.integers(machines if kind == "hw" else machines * procs))
        out.append(FailureSpec(start + i, kind, int(step), target))  # type: ignore[arg-type]
    return out


class FaultInjector:
    """Worker-side trigger: `check(step, phase)` kills this process (or asks for its machine to die)."""

    def __init__(
        self, failures: list[FailureSpec], run_dir: Path, *, rank: int, machine: int, local_rank: int
    ) -> None:
        self.run_dir = run_dir
        markers.faults_dir(run_dir).mkdir(parents=True, exist_ok=True)
        self.rank, self.machine, self.local_rank = rank, machine, local_rank
        self.failures = [f for f in failures if self._mine(f)]

    def _mine(self, failure: FailureSpec) -> bool:
        if failure.kind == "disk":
            return self.rank == 0
        if failure.kind == "sw":
            return failure.target == self.rank
        return failure.target == self.machine and self.local_rank == 0

    def due(self, step: int, phase: str = "step") -> bool:
        """True if a failure may strike this process at `phase` of `step` (it may have fired already)."""
        return any(f.step == step and f.during == phase for f in self.failures)

    def check(self, step: int, phase: str) -> None:
        for failure in self.failures:
            if failure.step == step and failure.during == phase and self._claim(failure):
                self._strike(failure)

    def _claim(self, failure: FailureSpec) -> bool:
        fired = markers.Fired(
            failure.index, failure.to_text(), failure.step, time.time(), self.rank, self.machine
        )
        # Damage to a disk is no process failure: its marker must not count as one (detect, lost steps).
        return markers.claim(self.run_dir, fired, process_failure=failure.kind != "disk")

    def _strike(self, failure: FailureSpec) -> None:
        if failure.kind == "disk":
            damage_newest(self.run_dir, failure.how)
            return
        if failure.kind == "hw":
            # The launcher owns the machine: it kills the agent and all its workers and wipes the memory.
            markers.request_machine_kill(self.run_dir, self.machine, failure.index)
            deadline = time.time() + 60
            while time.time() < deadline:
                time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)


def damage_newest(run_dir: Path, how: str) -> Path | None:
    """Damage the newest committed persistent checkpoint as `how` says; returns the file hit."""
    steps = committed_steps(run_dir)
    if not steps:
        return None
    directory = persistent_dir(run_dir, steps[0])
    if how == "metadata":
        target = directory / ".metadata"
        os.truncate(target, target.stat().st_size // 2)
        return target
    data = [p for p in data_files(directory) if p.name != ".metadata"]
    target = max(data, key=lambda p: (p.stat().st_size, p.name))
    if how == "missing":
        target.unlink()
    elif how == "truncate":
        os.truncate(target, target.stat().st_size - 1)
    else:  # flip one bit in the middle: same size, only the checksum can tell
        with open(target, "r+b") as handle:
            handle.seek(target.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0x10]))
    return target
