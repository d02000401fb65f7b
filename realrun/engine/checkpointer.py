"""The in-memory checkpoint engine of one rank: its ZeRO shard snapshotted asynchronously.

`Checkpointer.snapshot(step)` hands the copy of the shard's regions (see `realrun.engine.shard`) to a
copier (`realrun.engine.copy_engine`) and a background thread; the training loop calls `wait_copied()`
before the optimizer mutates the state. The copy goes in chunks, and the thread checksums each
chunk as soon as it is copied, then commits locally and replicates to the placement's peers. On
CUDA the chunks go device→host straight into the page-locked shm slot on a side stream, after an
optional device-side snapshot that frees the state in milliseconds. A snapshot due while the
previous copy is still in flight (only possible once the state was freed early) is skipped, not
waited for, and counted: the checkpoint interval then follows what the link carries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist

from realrun.engine.copy_engine import Copier, CopyJob, CudaCopier, HostCopier
from realrun.engine.replication import Outgoing, exchange
from realrun.engine.shard import ShardCodec
from realrun.engine.shm_store import (
    CHECKSUM_CHUNK,
    CHECKSUM_POOL,
    ShmStore,
    checksum,
    chunk_checksums,
    make_manifest,
)
from realrun.measurements import EventLog


@dataclass(frozen=True)
class Route:
    """Where this rank's shard goes and whose shards it stores (ranks on the checkpoint group)."""

    send_to: list[int]
    receive_from: list[int]


class Checkpointer:
    """Asynchronous snapshot → local commit → replication, one checkpoint in flight at a time."""

    def __init__(
        self,
        store: ShmStore,
        rank: int,
        codec: ShardCodec,
        route: Route,
        group: dist.ProcessGroup | None,
        events: EventLog,
        chunk_bytes: int,
        fault: Callable[[int, str], None] = lambda step, phase: None,
        *,
        gpu_snapshot: Literal["auto", "on", "off"] = "auto",
        copier: Copier | None = None,
    ) -> None:
        self.store, self.rank, self.codec, self.route = store, rank, codec, route
        self.group, self.events, self.chunk_bytes, self.fault = group, events, chunk_bytes, fault
        self._started = threading.Event()  # the current job exists (or its start failed)
        self._started.set()
        self._job: CopyJob | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.skipped = 0
        cuda_devices = [t.device for _, t in codec.tensors() if t.is_cuda]
        self._device = cuda_devices[0] if cuda_devices else None
        self._cuda = self._device is not None
        if copier is None:
            copier = CudaCopier(self._device, gpu_snapshot) if self._cuda else HostCopier()
        self.copier = copier
        if isinstance(copier, CudaCopier):
            store.unmap_hooks.append(copier.unregister)  # a slot is unregistered before it is unmapped

    @property
    def path(self) -> str:
        """How this rank's snapshots travel (after the first snapshot on CUDA)."""
        return self.copier.path

    def snapshot(self, step: int) -> bool:
        """Start checkpointing the state as it is after `step`; False if skipped (previous copy in flight)."""
        self._started.wait()
        self._raise()
        if self._job is not None and not self._job.copied():
            # Waiting here would stall training on PCIe; the next due step takes the next snapshot.
            self.skipped += 1
            self.events.log("skip", step)
            return False
        self.wait_done()
        ready = None
        if self._cuda:
            # Recorded here, on the training thread: the copy must follow this step's optimizer
            # kernels but not wait for the forward kernels queued after snapshot() returns.
            ready = torch.cuda.current_stream(self._device).record_event()
        self._started.clear()
        self._job = None
        self._thread = threading.Thread(
            target=self._run, args=(step, ready), name=f"snapshot-{step}", daemon=True
        )
        self._thread.start()
        return True

    def wait_copied(self) -> None:
        """Block until the state may change: the shard's bytes are in shared memory, or on CUDA
        with a device-side snapshot, the device copy is taken (call before the optimizer step)."""
        self._started.wait()
        self._raise()
        if self._job is not None:
            self._job.wait_released()

    def wait_done(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise()

    def close(self) -> None:
        """Finish the checkpoint in flight and release the copier (page-locked slots, GPU buffers)."""
        self.wait_done()
        self.copier.close()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("checkpoint thread failed") from error

    def _run(self, step: int, ready: torch.cuda.Event | None) -> None:
        try:
            manifest, data = self._snapshot(step, ready)
            self._replicate(step, manifest, data)
        except BaseException as error:  # surfaced in the training thread by wait_*()
            self._error = error
        finally:
            self._started.set()

    def _snapshot(self, step: int, ready: torch.cuda.Event | None) -> tuple[dict, memoryview]:
        start = time.perf_counter()
        plan = self.codec.plan()
        slot, buffer = self.store.begin(self.rank, plan.nbytes)
        flat = (
            torch.frombuffer(buffer, dtype=torch.uint8) if plan.nbytes else torch.empty(0, dtype=torch.uint8)
        )
        if self._cuda:
            # A new thread's current CUDA device is 0; this rank's state may live on another one.
            with torch.cuda.device(self._device):
                job = self.copier.start(plan.regions, flat, ready)
        else:
            job = self.copier.start(plan.regions, flat, ready)
        self._job = job
        self._started.set()
        # Each chunk is hashed (on the checksum pool, without the GIL) the moment its copy is done,
        # while later chunks are still being copied; nothing is committed before the last one.
        pending: list[Future[int]] = []
        for chunk in job.chunks:
            chunk.wait()
            piece = buffer[chunk.offset : chunk.offset + chunk.nbytes]
            pending += [
                CHECKSUM_POOL.submit(checksum, piece[low : low + CHECKSUM_CHUNK])
                for low in range(0, chunk.nbytes, CHECKSUM_CHUNK)
            ]
        self.events.log("snapshot", step, nbytes=plan.nbytes, duration_s=job.seconds(), source="local")
        self.fault(step, "snapshot")
        checksums = [future.result() for future in pending] if pending else chunk_checksums(buffer)
        manifest = make_manifest(self.rank, step, plan.entries, plan.nbytes, checksums)
        self.store.commit(self.rank, slot, manifest)
        self.events.log(
            "commit",
            step,
            nbytes=plan.nbytes,
            duration_s=time.perf_counter() - start,
            source="local",
            peer=self.rank,
        )
        return manifest, buffer

    def _replicate(self, step: int, manifest: dict, data: memoryview) -> None:
        if not self.route.send_to and not self.route.receive_from:
            return
        start = time.perf_counter()
        sends = [Outgoing(dst, manifest, data) for dst in self.route.send_to]
        received = exchange(
            self.store, sends, self.route.receive_from, self.group, self.chunk_bytes,
            on_chunk=lambda index: self.fault(step, "replicate") if index == 0 else None,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        for dst in self.route.send_to:
            self.events.log("replicate", step, nbytes=len(data), duration_s=elapsed, source="local", peer=dst)
        for item in received:
            self.events.log(
                "commit",
                item.step,
                nbytes=item.nbytes,
                duration_s=item.duration_s,
                source="peer",
                peer=item.src,
                ok=item.ok,
            )
