"""The copy stage of a snapshot: the live shard's regions into a shared-memory slot, chunk by chunk.

A copier starts a `CopyJob` whose chunks (`COPY_CHUNK` bytes of the flat shard each, a multiple of
the checksum chunk) complete in order and can each be waited for, so the checkpointer checksums
chunk i while chunk i+1 is still being copied. `CopyJob.wait_released()` returns once the live
state may change again: when the last byte was copied, or — with a device-side snapshot — as soon
as the device→device copy is done and the slow device→host transfer runs from that copy.

- `HostCopier` (CPU state): by default one memcpy per region on the calling thread, as the CPU path
  always did. `threaded=True` copies chunk by chunk on a thread of its own and `snapshot=True` first
  copies into a second buffer, which makes it the CPU stand-in of the CUDA pipeline in tests
  (`before_chunk` lets a test hold a chunk back).
- `CudaCopier` (CUDA state): copies on a side stream with a CUDA event per chunk, straight into the
  slot, which is registered as page-locked memory once (`cudaHostRegister`) so the DMA writes it;
  where registration fails, through a pinned staging buffer and a host memcpy per chunk (logged
  once). Optionally (`gpu_snapshot`) a device→device copy first.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from gemini_ft.realrun.engine.checksums import CHECKSUM_CHUNK
from gemini_ft.realrun.engine.shard import Region, host_copy

# 64 MiB: large enough that a chunk's event and launch cost nothing beside its transfer (~1 ms at
# 55 GB/s), small enough that checksumming follows the copy closely; a multiple of the checksum chunk.
COPY_CHUNK = 16 * CHECKSUM_CHUNK
# A device-side snapshot under gpu_snapshot=auto must leave this much GPU memory free.
SNAPSHOT_HEADROOM = 1 << 30
log = logging.getLogger(__name__)

Pieces = list[tuple[torch.Tensor, int]]  # (source bytes, offset in the flat shard)


def split_chunks(
    regions: list[Region], total: int, chunk_bytes: int = COPY_CHUNK
) -> list[tuple[int, int, Pieces]]:
    """The flat shard [0, total) cut into chunks: (offset, nbytes, the region pieces that fill it)."""
    chunks = []
    for low in range(0, total, chunk_bytes):
        high = min(low + chunk_bytes, total)
        pieces = []
        for region in regions:
            start, end = max(low, region.offset), min(high, region.offset + region.nbytes)
            if start < end:
                pieces.append((region.source[start - region.offset : end - region.offset], start))
        chunks.append((low, high - low, pieces))
    return chunks


class Chunk(Protocol):
    offset: int
    nbytes: int

    def wait(self) -> None: ...

    def done(self) -> bool: ...


@dataclass
class HostChunk:
    """A chunk whose copy a host thread signals; a failed copy wakes its waiters with the error."""

    offset: int
    nbytes: int
    job: CopyJob | None = None
    event: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> None:
        self.event.wait()
        if self.job is not None and self.job.error is not None:
            raise RuntimeError("snapshot copy failed") from self.job.error

    def done(self) -> bool:
        return self.event.is_set()


@dataclass
class CudaChunk:
    """A chunk whose device→host copy a CUDA event marks (recorded on the copy stream after it)."""

    offset: int
    nbytes: int
    event: torch.cuda.Event

    def wait(self) -> None:
        self.event.synchronize()

    def done(self) -> bool:
        return self.event.query()


class CopyJob:
    """One snapshot's copy in flight: its chunks in order, when the state is free, how long it took."""

    def __init__(self, chunks: list[Chunk], release: Callable[[], None] | None = None) -> None:
        self.chunks = chunks
        self._release = release
        self.error: BaseException | None = None
        self.copy_s: float | None = None  # set by the copier once the last chunk is done
        self.timing: Callable[[], float] | None = None  # or computed on demand (CUDA events)

    def wait_released(self) -> None:
        """Return once the live state may change: everything copied, or the device snapshot taken."""
        if self._release is not None:
            self._release()
        else:
            self.wait_copied()

    def wait_copied(self) -> None:
        for chunk in self.chunks[-1:]:
            chunk.wait()

    def copied(self) -> bool:
        """Whether every byte is in the slot (does not block)."""
        return all(chunk.done() for chunk in self.chunks[-1:])

    def seconds(self) -> float:
        """The copy's duration (after wait_copied)."""
        if self.timing is not None:
            return self.timing()
        return self.copy_s or 0.0


class Copier(Protocol):
    path: str

    def start(self, regions: list[Region], flat: torch.Tensor, ready: torch.cuda.Event | None) -> CopyJob: ...

    def close(self) -> None: ...


def _copy_pieces(flat: torch.Tensor, pieces: Pieces) -> None:
    for source, offset in pieces:
        host_copy(flat[offset : offset + source.numel()], source)


class HostCopier:
    """Copies host regions into the slot: inline (the CPU path), or chunk by chunk on a thread."""

    def __init__(
        self,
        chunk_bytes: int = COPY_CHUNK,
        threaded: bool = False,
        snapshot: bool = False,
        before_chunk: Callable[[int], None] | None = None,
    ) -> None:
        _check_chunk(chunk_bytes)
        self.chunk_bytes, self.threaded, self.snapshot, self.before_chunk = (
            chunk_bytes,
            threaded,
            snapshot,
            before_chunk,
        )
        self.path = (
            "host snapshot, threaded copy" if snapshot else "host memcpy" + (", threaded" if threaded else "")
        )
        self._copy: torch.Tensor | None = None

    def start(
        self, regions: list[Region], flat: torch.Tensor, ready: torch.cuda.Event | None = None
    ) -> CopyJob:
        start = time.perf_counter()
        total = flat.numel()
        if self.snapshot:  # the CPU analog of the device→device copy: the state is free after it
            if self._copy is None or self._copy.numel() != total:
                self._copy = torch.zeros(total, dtype=torch.uint8)
            for region in regions:
                host_copy(self._copy[region.offset : region.offset + region.nbytes], region.source)
            regions = [Region(self._copy, 0)] if total else []
        plan = split_chunks(regions, total, self.chunk_bytes)
        chunks = [HostChunk(offset, nbytes) for offset, nbytes, _ in plan]
        job = CopyJob(chunks, release=(lambda: None) if self.snapshot else None)
        for chunk in chunks:
            chunk.job = job
        if not self.threaded and not self.snapshot:
            # One memcpy per region on this thread: the CPU snapshot exactly as it always was.
            for region in regions:
                host_copy(flat[region.offset : region.offset + region.nbytes], region.source)
            for chunk in chunks:
                chunk.event.set()
            job.copy_s = time.perf_counter() - start
            return job

        def run() -> None:
            try:
                for index, (_, _, pieces) in enumerate(plan):
                    if self.before_chunk is not None:
                        self.before_chunk(index)
                    _copy_pieces(flat, pieces)
                    chunks[index].event.set()
                job.copy_s = time.perf_counter() - start
            except BaseException as error:  # wakes every waiter; they raise it
                job.error = error
                for chunk in chunks:
                    chunk.event.set()

        threading.Thread(target=run, name="host-copy", daemon=True).start()
        return job

    def close(self) -> None:
        self._copy = None


class CudaCopier:
    """Device→host copies on a side stream into registered shared memory, an event per chunk."""

    def __init__(
        self,
        device: torch.device,
        gpu_snapshot: Literal["auto", "on", "off"] = "auto",
        chunk_bytes: int = COPY_CHUNK,
    ) -> None:
        _check_chunk(chunk_bytes)
        self.device, self.gpu_snapshot, self.chunk_bytes = device, gpu_snapshot, chunk_bytes
        self.stream = torch.cuda.Stream(device)
        self._registered: dict[int, int] = {}  # address → bytes registered with cudaHostRegister
        self._unregistrable: set[int] = set()
        self._staging: torch.Tensor | None = None
        self._snapshot: torch.Tensor | None = None
        self._use_snapshot: bool | None = None  # decided at the first snapshot, kept for the run
        self._direct = True
        self.path = "cuda (not started)"

    # ---- page-locking the slots ------------------------------------------------------------------
    def register(self, flat: torch.Tensor) -> bool:
        """Page-lock the slot `flat` views once; False (logged once) if the driver refuses."""
        address, nbytes = flat.data_ptr(), flat.numel()
        if self._registered.get(address) == nbytes:
            return True
        if address in self._unregistrable or nbytes == 0:
            return False
        if address in self._registered:  # the same mapping, resized
            self.unregister(address)
        cudart = torch.cuda.cudart()
        error = cudart.cudaHostRegister(address, nbytes, 0)
        if _failed(error):
            # E.g. a slot on a disk filesystem: the kernel page-locks only shmem (tmpfs) mappings for DMA.
            _clear_pending_error()
            if self._direct:
                log.warning(
                    "cudaHostRegister of a %d-byte shm slot failed (%s): snapshots go through a pinned "
                    "staging buffer and a host memcpy", nbytes, _error_text(cudart, error),
                )  # fmt: skip
            self._direct = False
            self._unregistrable.add(address)
            return False
        self._registered[address] = nbytes
        return True

    def unregister(self, address: int, nbytes: int = 0) -> None:
        """Before a slot is unmapped (ShmStore's unmap hook): drop its page-locking."""
        self._unregistrable.discard(address)
        if self._registered.pop(address, None) is not None:
            torch.cuda.cudart().cudaHostUnregister(address)

    # ---- one snapshot ------------------------------------------------------------------------------
    def _decide_snapshot(self, nbytes: int) -> bool:
        if self._use_snapshot is None:
            if self.gpu_snapshot == "auto":
                free, _ = torch.cuda.mem_get_info(self.device)
                self._use_snapshot = free >= nbytes + SNAPSHOT_HEADROOM
            else:
                self._use_snapshot = self.gpu_snapshot == "on"
            if self._use_snapshot:
                self._snapshot = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        return self._use_snapshot

    def start(self, regions: list[Region], flat: torch.Tensor, ready: torch.cuda.Event | None) -> CopyJob:
        total = flat.numel()
        use_snapshot = self._decide_snapshot(total)
        direct = self.register(flat)
        self.path = ("device snapshot + " if use_snapshot else "") + (
            "D2H into registered shm" if direct else "D2H via pinned staging"
        )
        if not direct and (self._staging is None or self._staging.numel() != total):
            self._staging = torch.empty(total, dtype=torch.uint8, pin_memory=True)
        target = flat if direct else self._staging
        released: torch.cuda.Event | None = None
        # A new thread's current device is 0; this rank's state may live on another one.
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            if ready is not None:
                self.stream.wait_event(ready)  # after this step's optimizer, not the next forward
            begin = torch.cuda.Event(enable_timing=True)
            begin.record(self.stream)
            if use_snapshot and total:
                assert self._snapshot is not None and self._snapshot.numel() == total
                for region in regions:
                    self._snapshot[region.offset : region.offset + region.nbytes].copy_(
                        region.source, non_blocking=True
                    )
                released = torch.cuda.Event()
                released.record(self.stream)
                regions = [Region(self._snapshot, 0)]
            plan = split_chunks(regions, total, self.chunk_bytes)
            events = []
            for index, (_, _, pieces) in enumerate(plan):
                for source, offset in pieces:
                    target[offset : offset + source.numel()].copy_(source, non_blocking=True)
                event = torch.cuda.Event(enable_timing=index == len(plan) - 1)
                event.record(self.stream)
                events.append(event)
        if direct:
            chunks: list[Chunk] = [CudaChunk(o, n, e) for (o, n, _), e in zip(plan, events, strict=True)]
            job = CopyJob(chunks, release=released.synchronize if released is not None else None)
            job.timing = (lambda: begin.elapsed_time(events[-1]) / 1e3) if events else None
            return job
        return self._staged(plan, events, flat, released)

    def _staged(
        self, plan: list[tuple[int, int, Pieces]], events: list[torch.cuda.Event], flat: torch.Tensor,
        released: torch.cuda.Event | None,
    ) -> CopyJob:  # fmt: skip
        """The fallback: each chunk lands in the pinned staging buffer, then a host memcpy moves it."""
        start = time.perf_counter()
        chunks = [HostChunk(offset, nbytes) for offset, nbytes, _ in plan]
        job = CopyJob(chunks, release=released.synchronize if released is not None else None)
        staging = self._staging
        assert staging is not None
        for chunk in chunks:
            chunk.job = job

        def run() -> None:
            try:
                for chunk, event in zip(chunks, events, strict=True):
                    event.synchronize()
                    end = chunk.offset + chunk.nbytes
                    host_copy(flat[chunk.offset : end], staging[chunk.offset : end])
                    chunk.event.set()
                job.copy_s = time.perf_counter() - start
            except BaseException as error:
                job.error = error
                for chunk in chunks:
                    chunk.event.set()

        threading.Thread(target=run, name="staging-copy", daemon=True).start()
        return job

    def close(self) -> None:
        self.stream.synchronize()
        for address in list(self._registered):
            self.unregister(address)
        self._staging = self._snapshot = None


def _check_chunk(chunk_bytes: int) -> None:
    # The checkpointer hashes each copied chunk in checksum-chunk pieces as soon as it is done.
    if chunk_bytes <= 0 or chunk_bytes % CHECKSUM_CHUNK:
        raise ValueError(f"copy chunk {chunk_bytes} must be a positive multiple of {CHECKSUM_CHUNK}")


def _clear_pending_error() -> None:
    """Take back the error a failed runtime call left pending on this thread. Else the next check
    of torch's (cudaGetLastError after a kernel launch) reports it as its own, and the fallback
    path dies with "invalid argument" (seen on an H200). torch binds no cudaGetLastError, so this
    calls the libcudart the process has loaded."""
    library = _loaded_cudart()
    if library is not None:
        library.cudaGetLastError()


@functools.cache
def _loaded_cudart() -> ctypes.CDLL | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libcudart.so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)  # already loaded by torch: this returns the same library
        except OSError:
            continue
    return None  # a torch linked to a static cudart: the error stays pending


def _error_text(cudart: object, error: object) -> str:
    try:
        return f"{cudart.cudaGetErrorString(error)} (error {int(getattr(error, 'value', error))})"  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return str(error)


def _failed(error: object) -> bool:
    """cudart calls return a cudaError enum (or its int); success is 0."""
    value = getattr(error, "value", error)
    try:
        return int(value) != 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(error).rsplit(".", 1)[-1] != "success"
