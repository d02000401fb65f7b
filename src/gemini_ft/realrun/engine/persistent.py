"""The persistent checkpoint's commit point: a JSON manifest of every file's size and CRC-32C.

torch.distributed.checkpoint (DCP) reads its `.metadata` with pickle, so nothing may hand a DCP
directory to DCP before its bytes are known to be the ones this job wrote. After a save, rank 0
lists every file of the directory with its size and CRC-32C in `gemini-ft-manifest.json`, written
last and atomically (temp file, fsync, rename, fsync of the directory): a directory without a
manifest was never committed. `verify` re-reads every file against it. The directory is private to
the job (0700, see `gemini_ft.realrun.testbed.rundir`), so the checksum guards against accidents (a torn write,
a bad disk, a stray edit); it is not a signature. torch-free (`gemini_ft.realrun.faults` damages checkpoints on
purpose through `data_files`).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import crc32c

MANIFEST = "gemini-ft-manifest.json"
FORMAT = 1
_STEP_DIR = re.compile(r"step(\d{8})")
_READ = 4 << 20
MAX_MANIFEST_BYTES = 16 << 20
"""The longest manifest read: a DCP directory holds a few files per rank (100,000 ranks: ~10 MB)."""
MAX_FILES = 200_000


def persistent_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "persistent" / f"step{step:08d}"


def _file_crc(path: Path) -> tuple[int, int]:
    """(size, CRC-32C) of a regular file, read without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size, value = 0, 0
        while chunk := os.read(fd, _READ):
            value = crc32c.crc32c(chunk, value)
            size += len(chunk)
    finally:
        os.close(fd)
    return size, value


def data_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
    )


def uncommit(directory: Path) -> None:
    """Withdraw the manifest before files of `directory` are rewritten (a crash then leaves no commit)."""
    (directory / MANIFEST).unlink(missing_ok=True)


def commit(directory: Path, step: int) -> dict:
    """Write the manifest of `directory` (after every rank's files are on disk); returns it."""
    files = []
    for path in data_files(directory):
        size, value = _file_crc(path)
        files.append({"path": path.relative_to(directory).as_posix(), "bytes": size, "crc32c": value})
    manifest = {"format": FORMAT, "step": step, "checksum": "crc32c", "files": files}
    tmp = directory / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, directory / MANIFEST)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash for the commit to count
    finally:
        os.close(dir_fd)
    return manifest


def committed_steps(run_dir: Path) -> list[int]:
    """Steps whose directory holds a manifest, newest first (contents not verified yet)."""
    root = run_dir / "persistent"
    found = []
    if root.is_dir():
        for entry in root.iterdir():
            match = _STEP_DIR.fullmatch(entry.name)
            if match and (entry / MANIFEST).is_file():
                found.append(int(match.group(1)))
    return sorted(found, reverse=True)


def verify(directory: Path, step: int | None = None) -> str | None:
    """None if every file listed in the manifest is there, regular, of its size and checksum; else why not."""
    try:
        with open(directory / MANIFEST, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        return f"no manifest ({exc.strerror})"
    if len(raw) > MAX_MANIFEST_BYTES:
        return f"manifest is larger than {MAX_MANIFEST_BYTES:,} bytes"
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if manifest["format"] != FORMAT or manifest["checksum"] != "crc32c" or not isinstance(files, list):
            return "unknown manifest format"
        if len(files) > MAX_FILES:
            return f"manifest lists {len(files):,} files, more than {MAX_FILES:,}"
        if step is not None and manifest["step"] != step:
            return f"manifest is of step {manifest['step']!r}"
        listed = {str(f["path"]): (int(f["bytes"]), int(f["crc32c"])) for f in files}
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        RecursionError,
    ):  # ValueError: a huge integer too
        return "malformed manifest"
    if ".metadata" not in listed:
        return "manifest lists no .metadata"
    for relative, (size, value) in listed.items():
        path = directory / relative
        if relative.startswith("/") or ".." in Path(relative).parts:
            return f"{relative!r} leaves the checkpoint directory"
        try:
            info = path.lstat()
        except OSError:
            return f"{relative} is missing"
        if not stat.S_ISREG(info.st_mode):
            return f"{relative} is not a regular file"
        if info.st_size != size:
            return f"{relative} has {info.st_size} bytes, the manifest says {size}"
        if _file_crc(path) != (size, value):
            return f"{relative} fails its CRC-32C"
    return None
