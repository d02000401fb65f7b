"""Processes of a testbed job whose launcher died (kill -9): found by their mark and ended.

Every agent and worker the launcher starts carries `GEMINI_FT_LAUNCHER=<pid>:<start time>` in its
environment (workers inherit it from their agent). A marked process whose launcher is gone (no such
pid, or a pid reused by a process started at another time) belongs to a dead job: agents already die
with their launcher (`agent`), workers with their agent, so this finds what slipped through, for
`gemini-ft realrun --cleanup` and the next launch. Only our own processes are readable, so only our
own are ever touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from gemini_ft.realrun.testbed.shm_jobs import start_time

MARK = "GEMINI_FT_LAUNCHER"


def launcher_identity(pid: int | None = None) -> str:
    """The mark of processes started by `pid` (this process by default): its pid and start time."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_time(pid)}"


def _alive(identity: str) -> bool:
    pid, _, start = identity.partition(":")
    try:
        now = start_time(int(pid))
    except ValueError:
        return True  # not our mark's shape: never ours to judge dead
    return now is not None and (start == "None" or str(now) == start)


def orphan_processes(proc: Path = Path("/proc")) -> list[int]:
    """Pids of marked processes whose launcher is gone (this process excluded)."""
    needle = f"{MARK}=".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.geteuid():
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(needle) and not _alive(item[len(needle) :].decode(errors="replace")):
                found.append(int(entry.name))
                break
    return sorted(found)


def end_orphans() -> list[int]:
    """SIGKILL every orphan of a dead job; returns their pids."""
    orphans = orphan_processes()
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return orphans
