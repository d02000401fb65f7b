"""Jobs' shared-memory directories under /dev/shm: created exclusively, checked when given, swept when dead.

A job's directory holds every machine's checkpoint slots. Whoever can write it can forge replicas
(CRC-32C catches accidents, not forgeries), so the launcher creates it with an unguessable name and
`mkdir` without `exist_ok`, and a directory handed in through GEMINI_FT_SHM is used only when it is
ours and mode 0700. The launcher records its pid and start time in the directory; a job whose
launcher is gone (kill -9) left its memory behind, and `cleanup_stale_shm` removes it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

from gemini_ft.realrun.engine.shm_store import ShmDirRefused, check_private

SHM_ROOT = Path("/dev/shm")
PREFIX = "gemini-ft-"
OWNER_FILE = "launcher.json"
# Directories of the launcher's naming scheme, `gemini-ft-<launcher pid>-<random hex>`.
_LAUNCHER_NAME = re.compile(r"gemini-ft-(\d+)-[0-9a-f]+")


def new_job_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(16)}"


def create_job_dir(job_id: str, root: Path = SHM_ROOT) -> Path:
    """Create the job's directory exclusively (FileExistsError if anyone made it first) and sign it."""
    path = root / f"{PREFIX}{job_id}"
    path.mkdir(mode=0o700)
    fd = os.open(path / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), "start": start_time(os.getpid())}, handle)
    return path


def start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), which tells a reused pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _launcher_alive(path: Path) -> bool:
    try:
        record = json.loads((path / OWNER_FILE).read_text())
        pid, start = int(record["pid"]), record["start"]
    except FileNotFoundError:
        # Not signed (yet, or by an older version): judge by the pid in the launcher's naming scheme;
        # a directory named some other way (a cluster recipe) may belong to a live job: keep it.
        match = _LAUNCHER_NAME.fullmatch(path.name)
        return match is None or start_time(int(match.group(1))) is not None
    except (OSError, ValueError, KeyError, TypeError):
        return True  # unreadable: not provably dead
    return start_time(pid) is not None and (start is None or start_time(pid) == start)


def stale_job_dirs(root: Path = SHM_ROOT) -> list[Path]:
    """Our job directories under `root` whose launcher is gone."""
    found = []
    for path in sorted(root.glob(f"{PREFIX}*")):
        try:
            check_private(path)
        except (OSError, ShmDirRefused):
            continue  # someone else's, or not a job directory: never ours to remove
        if not _launcher_alive(path):
            found.append(path)
    return found


def cleanup_stale_shm(root: Path = SHM_ROOT) -> list[Path]:
    """Remove the shared memory of our dead jobs; returns what was removed."""
    removed = []
    for path in stale_job_dirs(root):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed
