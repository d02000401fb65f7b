"""The fault files of a run directory, written by workers and read by workers and the launcher.

`<run>/faults/` holds one marker per injected failure that struck, created exclusively so a failure
fires at most once per job however often its worker restarts: `fired<i>.json` for a process or
machine failure, `damaged<i>.json` for damage done to a persistent checkpoint (no process failed,
so it counts neither as a detection nor as lost steps). A worker that a hardware failure strikes
asks the launcher to kill its machine with `hw-machine<m>.request`. This module is the only one that
names, writes or parses these files; what it reads is data (JSON checked field by field), and a file
it cannot parse is skipped, never trusted.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

FAULTS = "faults"
_REQUEST = re.compile(r"hw-machine(\d+)\.request")


@dataclass(frozen=True)
class Fired:
    """One failure that struck: which (its index in the job's list and its spec), when, and where."""

    index: int
    spec: str
    step: int
    t: float
    rank: int
    machine: int


def faults_dir(run_dir: Path) -> Path:
    return run_dir / FAULTS


def claim(run_dir: Path, fired: Fired, process_failure: bool = True) -> bool:
    """Write the failure's marker unless it exists; False if it fired before (an earlier round)."""
    prefix = "fired" if process_failure else "damaged"
    record = {
        "index": fired.index, "spec": fired.spec, "step": fired.step, "t": fired.t,
        "rank": fired.rank, "machine": fired.machine,
    }  # fmt: skip
    directory = faults_dir(run_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(directory / f"{prefix}{fired.index}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    return True


def fired_failures(run_dir: Path) -> list[Fired]:
    """The process and machine failures that struck so far, oldest first (unreadable markers skipped)."""
    found = []
    for path in faults_dir(run_dir).glob("fired*.json"):
        fired = _parse(path)
        if fired is not None:
            found.append(fired)
    return sorted(found, key=lambda fired: (fired.t, fired.index))


def newest_failure(run_dir: Path) -> Fired | None:
    fired = fired_failures(run_dir)
    return fired[-1] if fired else None


def last_failure_time(run_dir: Path, before: float) -> float | None:
    """Time of the newest failure fired before `before` (a worker's start), for the detect event."""
    times = [fired.t for fired in fired_failures(run_dir) if fired.t < before]
    return max(times) if times else None


def _parse(path: Path) -> Fired | None:
    try:
        record = json.loads(path.read_text())
        fired = Fired(
            int(record["index"]), str(record["spec"]), int(record["step"]), float(record["t"]),
            int(record["rank"]), int(record["machine"]),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fired


# ---- hardware failures: a worker asks, the launcher kills the machine -----------------------------
def request_machine_kill(run_dir: Path, machine: int, index: int) -> None:
    """Ask the launcher to kill `machine` and wipe its memory (it removes the request when done)."""
    path = faults_dir(run_dir) / f"hw-machine{machine}.request"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"index": index, "t": time.time()}, handle)


def machine_kill_requests(run_dir: Path, machines: int) -> list[tuple[int, Path]]:
    """(machine, request file) for every request naming a machine of the job, by name.

    Only the name counts (workers only ever name their own machine); its content is never read,
    so a stray or garbage file naming no machine of the job is ignored.
    """
    found = []
    for path in sorted(faults_dir(run_dir).glob("hw-machine*.request")):
        match = _REQUEST.fullmatch(path.name)
        if match is not None and int(match.group(1)) < machines:
            found.append((int(match.group(1)), path))
    return found


def machine_kill_requested(run_dir: Path, machine: int) -> bool:
    return (faults_dir(run_dir) / f"hw-machine{machine}.request").exists()
