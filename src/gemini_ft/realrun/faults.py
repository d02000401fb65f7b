"""Failure injection: parse `--fail` specs, draw seeded random schedules, and fire each failure once.

Specs: `sw@step=30:rank=1` (kill one training process; its machine's memory survives),
`hw@step=50:machine=2` (kill the whole machine and wipe its shared memory), either with
`:during=snapshot|replicate` to strike mid-checkpoint, `random:count=3:seed=7`, and
`disk@step=N:how=flip|truncate|metadata|missing` (rank 0 damages the newest persistent checkpoint,
as a bad disk or a careless hand would; training goes on), and
`mem@step=N:machine=M:shard=O:how=flip|random|truncate|delete|manifest` (while the workers restart
after the process or machine failure at step N, machine M's newest copy of shard O in shared memory
is damaged, as a wild write or a bad DIMM would: recovery must refuse it). A failure fires
at the start of its step once the previous checkpoint is out (or inside that step's
snapshot/replication) and at most once per job: a marker file in the run directory records it
(`gemini_ft.realrun.markers`), so restarted workers do not fire it again. torch-free, so the launcher parses
the specs before anything starts.
"""

from __future__ import annotations

import json
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
MEMORY_DAMAGE = ("flip", "random", "truncate", "delete", "manifest")
_FORMAT = (
    "sw@step=N:rank=R | hw@step=N:machine=M (optionally :during=snapshot|replicate) | random:count=C:seed=S"
    " | disk@step=N:how=flip|truncate|metadata|missing"
    " | mem@step=N:machine=M:shard=O:how=flip|random|truncate|delete|manifest"
)


@dataclass(frozen=True)
class FailureSpec:
    """One injected failure: which kind, when, and whom it strikes."""

    index: int
    kind: Literal["sw", "hw", "disk", "mem"]
    step: int
    target: int  # a rank for sw, a machine for hw and mem, rank 0 for disk
    during: str = "step"
    how: str = ""  # disk and mem only: which damage (DAMAGE, MEMORY_DAMAGE)
    shard: int = -1  # mem only: whose copy on machine `target` is damaged

    def to_text(self) -> str:
        if self.kind == "disk":
            return f"disk@step={self.step}:how={self.how}"
        if self.kind == "mem":
            return f"mem@step={self.step}:machine={self.target}:shard={self.shard}:how={self.how}"
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
        if kind not in ("sw", "hw", "disk", "mem") or not sep:
            raise UserError("failures", text, f"expected {_FORMAT}")
        if kind == "disk":
            failures.append(_disk(text, rest, steps, len(failures)))
            continue
        if kind == "mem":
            failures.append(_memory(text, rest, steps, machines * procs_per_machine, machines, len(failures)))
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
    _check_memory_damage(failures)
    return failures


def _memory(text: str, rest: str, steps: int, world: int, machines: int, index: int) -> FailureSpec:
    fields = _fields(text, rest, {"step", "machine", "shard", "how"})
    if not {"step", "machine", "shard"} <= fields.keys() or fields.get("how") not in MEMORY_DAMAGE:
        raise UserError(
            "failures", text, f"needs step=, machine=, shard= and how= one of {', '.join(MEMORY_DAMAGE)}"
        )
    step, machine, shard = (_int(text, fields[key]) for key in ("step", "machine", "shard"))
    if not 1 <= step <= steps:
        raise UserError("failures", text, f"step must be between 1 and steps = {steps}")
    if not 0 <= machine < machines:
        raise UserError("failures", text, f"machine must be between 0 and {machines - 1}")
    if not 0 <= shard < world:
        raise UserError("failures", text, f"shard must be a rank between 0 and {world - 1}")
    return FailureSpec(index, "mem", step, machine, "step", fields["how"], shard)


def _check_memory_damage(failures: list[FailureSpec]) -> None:
    """Memory is damaged while the workers restart: a process or machine failure must strike at the
    same step, and not the machine failure that wipes the damaged machine's memory anyway."""
    for damage in (f for f in failures if f.kind == "mem"):
        text = damage.to_text()
        at_step = [f for f in failures if f.kind in ("sw", "hw") and f.step == damage.step]
        if not at_step:
            raise UserError(
                "failures",
                text,
                f"strikes while the workers restart: add a sw@ or hw@ failure at step {damage.step}",
            )
        if any(f.kind == "hw" and f.target == damage.target for f in at_step):
            raise UserError(
                "failures",
                text,
                f"machine {damage.target} fails at step {damage.step}: its memory is wiped anyway",
            )


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
        if key in fields:
            raise UserError("failures", text, f"{key}= is given twice; give each field once")
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
        self, failures: list[FailureSpec], run_dir: Path, *, rank: int, machine: int, local_rank: int,
        procs: int = 1,
    ) -> None:  # fmt: skip
        self.run_dir = run_dir
        markers.faults_dir(run_dir).mkdir(parents=True, exist_ok=True)
        self.rank, self.machine, self.local_rank, self.procs = rank, machine, local_rank, procs
        self.steps = {f.step for f in failures if f.kind in ("sw", "hw", "disk")}
        self.failures = [f for f in failures if self._mine(f)]

    def _mine(self, failure: FailureSpec) -> bool:
        if failure.kind == "disk":
            return self.rank == 0
        if failure.kind == "mem":  # the process that answers for the shard's copies on that machine
            return failure.target == self.machine and failure.shard % self.procs == self.local_rank
        if failure.kind == "sw":
            return failure.target == self.rank
        return failure.target == self.machine and self.local_rank == 0

    def any_due(self, step: int) -> bool:
        """True if a process, machine or disk failure of the job (this rank's or another's) is set for
        `step`: every rank knows it, so all can meet before it strikes."""
        return step in self.steps

    def due(self, step: int, phase: str = "step") -> bool:
        """True if a failure may strike this process at `phase` of `step` (it may have fired already)."""
        return any(f.kind != "mem" and f.step == step and f.during == phase for f in self.failures)

    def check(self, step: int, phase: str) -> None:
        for failure in self.failures:
            if (
                failure.kind != "mem"
                and failure.step == step
                and failure.during == phase
                and self._claim(failure)
            ):
                self._strike(failure)

    def on_restart(self, failed_step: int, store_dir: Path) -> list[Path]:
        """Before recovery, after the failure at `failed_step`: do the memory damage due now to this
        machine's store at `store_dir`; returns the files hit."""
        hit = []
        for failure in self.failures:
            if failure.kind == "mem" and failure.step == failed_step and self._claim(failure):
                target = damage_memory(store_dir, failure.shard, failure.how, seed=failure.index)
                hit += [target] if target is not None else []
        return hit

    def _claim(self, failure: FailureSpec) -> bool:
        fired = markers.Fired(
            failure.index, failure.to_text(), failure.step, time.time(), self.rank, self.machine
        )
        # Damage to a disk or to memory is no process failure: its marker must not count as one (detect,
        # lost steps).
        return markers.claim(self.run_dir, fired, process_failure=failure.kind in ("sw", "hw"))

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
    files = data_files(directory)
    if how == "metadata":  # rank 0's part's: DCP reads it with pickle, so it must be refused unread
        target = next(p for p in files if p.name == ".metadata")
        os.truncate(target, target.stat().st_size // 2)
        return target
    target = max((p for p in files if p.name != ".metadata"), key=lambda p: (p.stat().st_size, p.name))
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


def damage_memory(store_dir: Path, shard: int, how: str, seed: int = 0) -> Path | None:
    """Damage the newest committed copy of `shard` in one machine's shared-memory directory as `how`
    says (MEMORY_DAMAGE); returns the file hit, None if the machine holds no committed copy of it.

    Works on the files alone (a manifest's step is read as JSON), so it needs no store and no torch.
    """
    newest: tuple[int, Path] | None = None
    for manifest in store_dir.glob(f"shard{shard}.slot*.json"):
        try:
            step = int(json.loads(manifest.read_bytes())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if newest is None or step > newest[0]:
            newest = (step, manifest)
    if newest is None:
        return None
    manifest = newest[1]
    data = manifest.with_suffix(".bin")
    if how == "manifest":  # nested deeper than any parser's stack: must read as "not a manifest"
        manifest.write_bytes(b"[" * 100_000)
        return manifest
    if how == "delete":
        data.unlink()
    elif how == "truncate":
        os.truncate(data, data.stat().st_size // 2)
    else:
        size = data.stat().st_size
        with open(data, "r+b") as handle:
            if how == "flip":  # one bit in the middle: same size, only the checksum can tell
                handle.seek(size // 2)
                byte = handle.read(1)
                handle.seek(-1, os.SEEK_CUR)
                handle.write(bytes([byte[0] ^ 0x10]))
            else:  # random bytes over a span, as a stray write would leave them
                rng = np.random.default_rng(seed)
                span = min(size, 4096)
                handle.seek(int(rng.integers(0, size - span + 1)))
                handle.write(rng.integers(0, 256, span, dtype=np.uint8).tobytes())
    return data
