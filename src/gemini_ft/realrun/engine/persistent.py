"""The persistent checkpoint's files and commit point: one part per rank, one manifest, written last.

A persistent checkpoint of step s is `persistent/stepNNNNNNNN/` with one part per rank, `rankNNNNN/`:
that rank's shard as a torch.distributed.checkpoint (DCP) directory of its own (`.metadata` plus data
files), and `part.json`, the part's files with their sizes and CRC-32C, written atomically once the
part is whole. Parts are written by the ranks themselves (a synchronous save) or by each rank's
persister process from shared memory (asynchronous), in any order; each carries the token of the
round that wrote it. Whoever finds every part of one token present, under a lock, writes
`gemini-ft-manifest.json` (every file of every part with its size and CRC-32C), fsynced and renamed
into place: a step without it was never committed, and one with a stale part never is.

DCP reads `.metadata` with pickle, so nothing may hand a part to DCP before its bytes are known to be
the ones this job wrote: `verify` re-reads every file against the manifest. The directory is private
to the job (0700, see `gemini_ft.realrun.testbed.rundir`), so the checksum guards against accidents (a
torn write, a bad disk, a stray edit); it is not a signature. torch-free (`gemini_ft.realrun.faults`
damages checkpoints on purpose through `data_files`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import crc32c

from gemini_ft.realrun.engine.manifest import Layout, ManifestError

MANIFEST = "gemini-ft-manifest.json"
PART_MANIFEST = "part.json"
LOCK = ".commit.lock"
FORMAT = 2
_STEP_DIR = re.compile(r"step(\d{8})")
_READ = 4 << 20
MAX_MANIFEST_BYTES = 16 << 20
"""The longest manifest read: a few files per rank (100,000 ranks: ~20 MB would be refused first)."""
MAX_FILES = 200_000


def persistent_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "persistent" / f"step{step:08d}"


def part_dir(step_dir: Path, rank: int) -> Path:
    return step_dir / f"rank{rank:05d}"


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
    """The checkpoint's files (every part's DCP files), without manifests, locks and temporaries."""
    skip = {MANIFEST, PART_MANIFEST, LOCK}
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name not in skip and not p.name.endswith(".tmp")
    )


def _write_atomically(path: Path, data: dict) -> None:
    """JSON to a temp file, fsync, rename, fsync of the directory: the rename itself survives a crash."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def start_part(step_dir: Path, rank: int) -> Path:
    """Make way for rank's new part of `step_dir`: the step stops counting at once (its manifest goes,
    an older save of this step before a rollback included) and the old part is marked unfinished."""
    uncommit(step_dir)
    directory = part_dir(step_dir, rank)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / PART_MANIFEST).unlink(missing_ok=True)
    return directory


def finish_part(step_dir: Path, rank: int, token: str, layout: Layout | None = None) -> dict:
    """Record rank's part (once its DCP files are on disk): every file with its size and CRC-32C, and
    the layout of the shard it holds."""
    directory = part_dir(step_dir, rank)
    files = []
    for path in data_files(directory):
        size, value = _file_crc(path)
        files.append({"path": path.relative_to(step_dir).as_posix(), "bytes": size, "crc32c": value})
    part = {
        "format": FORMAT,
        "rank": rank,
        "token": token,
        "layout": (layout or Layout()).to_data(),
        "files": files,
    }
    _write_atomically(directory / PART_MANIFEST, part)
    return part


@contextlib.contextmanager
def _locked(step_dir: Path) -> Iterator[None]:
    fd = os.open(step_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def commit_if_complete(step_dir: Path, step: int, world: int, token: str) -> bool:
    """Write the step's manifest if every rank's part of `token` is finished; True once committed."""
    with _locked(step_dir):
        files, layouts = [], []
        for rank in range(world):
            try:
                part = json.loads((part_dir(step_dir, rank) / PART_MANIFEST).read_bytes())
            except (OSError, ValueError):
                return False
            if not isinstance(part, dict) or part.get("token") != token:
                return False  # unfinished, or left by an earlier round
            files += part["files"]
            layouts.append(part["layout"])
        manifest = {"format": FORMAT, "step": step, "world": world, "token": token, "checksum": "crc32c",
                    "layouts": layouts, "files": files}  # fmt: skip
        _write_atomically(step_dir / MANIFEST, manifest)
    return True


def uncommit(directory: Path) -> None:
    """Withdraw the manifest before files of `directory` are rewritten (a crash then leaves no commit)."""
    (directory / MANIFEST).unlink(missing_ok=True)


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


def verify(
    directory: Path,
    step: int | None = None,
    world: int | None = None,
    *,
    part: int | None = None,
    layout: Layout | None = None,
) -> str | None:
    """None if the manifest lists every rank's part (`world` ranks, when given) and every listed file is
    there, regular, of its size and checksum; else why not. With `part`, only that rank's files are read
    (each rank loads only its own), and with `layout` that part must hold a shard of that layout."""
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
        if world is not None and manifest["world"] != world:
            return f"manifest is of {manifest['world']!r} ranks, this job has {world}"
        ranks = int(manifest["world"])
        listed = {str(f["path"]): (int(f["bytes"]), int(f["crc32c"])) for f in files}
        layouts = [Layout.from_data(data) for data in manifest["layouts"]]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, ManifestError):
        return "malformed manifest"  # (ValueError: a 100,000-digit integer too)
    if len(layouts) != ranks:
        return "malformed manifest"
    if part is not None and layout is not None and (why := layouts[part].mismatch(layout)) is not None:
        return f"part {part} cannot be loaded here: {why}"
    for rank in range(ranks):
        metadata = f"{part_dir(Path(), rank).as_posix()}/.metadata"
        if metadata not in listed:
            return f"manifest lists no {metadata}"
    mine = f"{part_dir(Path(), part).as_posix()}/" if part is not None else ""
    for relative, (size, value) in listed.items():
        if not relative.startswith(mine):
            continue
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
