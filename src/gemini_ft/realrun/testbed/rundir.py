"""The run directory (`out`): refused unless it is the job's own, then prepared private (0700, files 0600).

DCP unpickles what it finds in the run directory at recovery, so a directory another user can write
into, or one holding files this tool did not write, must never become a run directory. A run writes
a marker file first; a later run may reuse a directory with that marker only when asked (`force`).
Every check happens before anything starts, and each names the `out` field, the path and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from gemini_ft.common.errors import UserError
from gemini_ft.common.results_io import check_output_path

MARKER = ".gemini-ft-realrun"
# What a previous run left; removed before a forced rerun so nothing stale is mistaken for new.
_PREVIOUS = (
    "events", "engine", "faults", "persistent", "disk_baseline", "logs", "final_params.bin",
    "final_params.json", "config.json", "measurements.parquet",
)  # fmt: skip


def _refuse(out: Path, allowed: str) -> UserError:
    return UserError("out", str(out), allowed)


def check_out(out: Path, force: bool) -> Path:
    """The resolved run directory, or a UserError saying why `out` cannot be one."""
    path = check_output_path("out", out, kind="dir")
    if path.exists():
        _check_existing(out, path, force)
    return path


def _check_existing(out: Path, path: Path, force: bool) -> None:
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise _refuse(out, f"belongs to another user (uid {info.st_uid}); choose a directory of your own")
    if info.st_mode & 0o022:
        raise _refuse(out, "is group- or world-writable; choose a private directory (chmod 700)")
    if not any(path.iterdir()):
        return
    if not (path / MARKER).is_file():
        raise _refuse(
            out, "is not empty and holds no previous gemini-ft realrun; choose a new or empty directory"
        )
    if not force:
        raise _refuse(out, "holds a previous gemini-ft realrun; add --force to replace it")


def prepare(path: Path) -> None:
    """Create `path` private (or make it so), clear a previous run's files, write the marker."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for name in _PREVIOUS:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    (path / "logs").mkdir(mode=0o700)
    write_private(path / MARKER, json.dumps({"tool": "gemini-ft realrun", "pid": os.getpid()}))


def write_private(path: Path, text: str) -> None:
    """Write a run file readable by the job's user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
