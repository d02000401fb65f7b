"""Machine-owned shared-memory checkpoint store: two slots per shard, flat bytes + a JSON manifest.

Each emulated machine owns a private directory under /dev/shm (mode 0700, files 0600, a per-job
name) that outlives the training processes. A shard is written into the slot that does not hold its
newest committed copy; the manifest (`gemini_ft.realrun.engine.manifest`: names, dtypes, shapes, offsets,
step, per-chunk CRC-32C checksums) is written last with an atomic rename, so a crash between the
data write and the commit leaves the previous committed slot untouched. Nothing here is pickled.

A copy that fails a check is uncommitted on the spot (its manifest goes) and recorded in
`rejections`: a manifest that does not parse, a data file missing or of another size than its
manifest says (checked before anything is mapped, so a manifest cannot make the store allocate), or
bytes that fail their checksums. `read` returns only a copy it has just verified, so what a caller
loads is what was verified, and a damaged slot can never shadow an intact copy of the same step.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gemini_ft.realrun.engine.checksums import chunk_checksums
from gemini_ft.realrun.engine.manifest import Manifest

SLOTS = (0, 1)


@dataclass(frozen=True)
class Rejection:
    """A committed copy that failed a check and was uncommitted: it is never read again."""

    owner: int
    slot: int
    step: int | None  # None when the manifest itself did not parse
    why: str

    def describe(self) -> str:
        step = f"step {self.step}" if self.step is not None else "an unreadable manifest"
        return f"shard {self.owner} slot {self.slot} ({step}): {self.why}"


class ShmDirRefused(RuntimeError):
    """A shared-memory directory that is not the job's own."""


def check_private(path: Path) -> None:
    """Raise ShmDirRefused unless `path` is a real directory owned by us, closed to everyone else."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise ShmDirRefused(f"{path} is not a directory (a symlink or a file)")
    if info.st_uid != os.geteuid():
        raise ShmDirRefused(f"{path} belongs to uid {info.st_uid}, not to us (uid {os.geteuid()})")
    if stat.S_IMODE(info.st_mode) != 0o700:
        raise ShmDirRefused(f"{path} has mode {stat.S_IMODE(info.st_mode):o}; it must be 700")


def open_private_dir(path: Path) -> None:
    """Make sure `path` exists as our private directory: create it (0700) or check the one there."""
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass
    check_private(path)


class ShmStore:
    """One machine's shared-memory area: `owner` shards (its own and its peers') in two slots each."""

    def __init__(self, root: Path | str, machine: int) -> None:
        self.root = Path(root)
        self.machine = machine
        self.dir = self.root / f"machine{machine}"
        # Given from outside (GEMINI_FT_SHM): only a directory of ours that nobody else can enter.
        open_private_dir(self.root)
        open_private_dir(self.dir)
        self._maps: dict[tuple[int, int], tuple[mmap.mmap, int]] = {}
        self.rejections: list[Rejection] = []
        """Every copy this store refused, in the order it was found; callers report them."""
        # Called with (address, bytes) before a mapping goes, e.g. to cudaHostUnregister it first.
        self.unmap_hooks: list[Callable[[int, int], None]] = []

    # ---- paths ---------------------------------------------------------------------------------
    def _data_path(self, owner: int, slot: int) -> Path:
        return self.dir / f"shard{owner}.slot{slot}.bin"

    def _manifest_path(self, owner: int, slot: int) -> Path:
        return self.dir / f"shard{owner}.slot{slot}.json"

    # ---- writing -------------------------------------------------------------------------------
    def begin(self, owner: int, nbytes: int) -> tuple[int, memoryview]:
        """Invalidate the slot not holding `owner`'s newest commit and return (slot, writable buffer)."""
        newest = self.committed(owner)
        slot = 1 - newest[0][0] if newest else 0
        # Uncommit first: from here on a crash leaves this slot without a manifest, never a torn one.
        self._manifest_path(owner, slot).unlink(missing_ok=True)
        return slot, self._buffer(owner, slot, nbytes)

    def commit(self, slot: int, manifest: Manifest) -> None:
        """Publish `slot` of `manifest.owner` as holding `manifest`: a temp file, then an atomic rename
        (no fsync: tmpfs has no disk to reach)."""
        path = self._manifest_path(manifest.owner, slot)
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(manifest.to_json())
        os.replace(tmp, path)

    def _buffer(self, owner: int, slot: int, nbytes: int) -> memoryview:
        cached = self._maps.get((owner, slot))
        if cached is not None and cached[1] == nbytes:
            return memoryview(cached[0])[:nbytes]
        if cached is not None:
            self._unmap(*cached)
        path = self._data_path(owner, slot)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = max(nbytes, 1)
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
                # Reserve the pages now so a snapshot never page-faults into a full /dev/shm.
                os.posix_fallocate(fd, 0, size)
            # MAP_POPULATE maps every page now, not on first touch in the middle of a snapshot.
            region = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        finally:
            os.close(fd)
        self._maps[(owner, slot)] = (region, nbytes)
        return memoryview(region)[:nbytes]

    def free_bytes(self) -> int:
        """Bytes this machine's shared-memory file system can still allocate (to the caller)."""
        info = os.statvfs(self.dir)
        return info.f_bavail * info.f_frsize

    # ---- reading -------------------------------------------------------------------------------
    def committed(self, owner: int) -> list[tuple[int, Manifest]]:
        """(slot, manifest) of `owner`'s committed slots, newest step first. Manifests and file sizes are
        checked (a slot failing either is rejected); the bytes are verified only by `read`."""
        found = []
        for slot in SLOTS:
            path = self._manifest_path(owner, slot)
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            manifest = Manifest.parse(raw)
            if manifest is None or manifest.owner != owner:
                self._reject(owner, slot, None, "its manifest is not a valid manifest of this shard")
                continue
            why = self._size_problem(owner, slot, manifest)
            if why is not None:
                self._reject(owner, slot, manifest.step, why)
                continue
            found.append((slot, manifest))
        return sorted(found, key=lambda item: -item[1].step)

    def owners(self) -> list[int]:
        return sorted(
            {int(p.name.split(".")[0].removeprefix("shard")) for p in self.dir.glob("shard*.slot*.json")}
        )

    def read(self, owner: int, step: int) -> tuple[Manifest, memoryview] | None:
        """`owner`'s committed copy of `step` as (manifest, bytes), verified against its checksums now;
        None if no slot holds one that verifies (each one that fails is rejected)."""
        for slot, manifest in self.committed(owner):
            if manifest.step != step:
                continue
            data = self._buffer(owner, slot, manifest.nbytes)
            if tuple(chunk_checksums(data, manifest.checksum_chunk)) != manifest.checksums:
                self._reject(owner, slot, step, "its bytes fail their checksums")
                continue
            return manifest, data
        return None

    def copy_out(self, owner: int, step: int) -> tuple[Manifest, bytearray] | None:
        """A private copy of `owner`'s committed `step`, verified after it was taken (another process may
        reuse the slot meanwhile): None if no slot holds the step, or its bytes changed while they were
        copied. A slot whose manifest still names the step after a failed check is damaged: rejected."""
        for slot, manifest in self.committed(owner):
            if manifest.step != step:
                continue
            copy = bytearray(manifest.nbytes)
            memoryview(copy)[:] = self._buffer(owner, slot, manifest.nbytes)
            if tuple(chunk_checksums(copy, manifest.checksum_chunk)) == manifest.checksums:
                return manifest, copy
            try:
                still = Manifest.parse(self._manifest_path(owner, slot).read_bytes())
            except FileNotFoundError:
                still = None
            if still == manifest:  # nobody took the slot: its bytes are damaged
                self._reject(owner, slot, step, "its bytes fail their checksums")
            return None
        return None

    def _size_problem(self, owner: int, slot: int, manifest: Manifest) -> str | None:
        try:
            size = self._data_path(owner, slot).stat().st_size
        except FileNotFoundError:
            return "its data file is missing"
        expected = max(manifest.nbytes, 1)  # as `_buffer` sizes it
        if size != expected:
            return f"its data file holds {size} bytes, its manifest says {expected}"
        return None

    def reject(self, owner: int, slot: int, step: int | None, why: str) -> None:
        """Uncommit `slot` of `owner` for a reason found outside the store (a layout of another job)."""
        self._reject(owner, slot, step, why)

    def _reject(self, owner: int, slot: int, step: int | None, why: str) -> None:
        # Uncommitted first, so no later look (this process's or a restarted one's) can take it.
        self._manifest_path(owner, slot).unlink(missing_ok=True)
        self.rejections.append(Rejection(owner, slot, step, why))

    def close(self) -> None:
        for region, nbytes in self._maps.values():
            self._unmap(region, nbytes)
        self._maps.clear()

    def _unmap(self, region: mmap.mmap, nbytes: int) -> None:
        if self.unmap_hooks:
            anchor = ctypes.c_char.from_buffer(region)  # its address; released before the close
            address = ctypes.addressof(anchor)
            del anchor
            for hook in self.unmap_hooks:
                hook(address, nbytes)
        # A tensor may still view the region; the mapping then goes when that tensor does.
        with contextlib.suppress(BufferError):
            region.close()

    def wipe(self) -> None:
        """Lose this machine's memory (a hardware failure)."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
