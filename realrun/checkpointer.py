"""The in-memory checkpoint engine of one rank: its ZeRO shard snapshotted asynchronously.

`Checkpointer.snapshot(step)` hands the copy of the shard's regions (see `realrun.shard`) to a
background thread that overlaps the next forward/backward; the training loop calls `wait_copied()`
before the optimizer mutates the state, and the thread then checksums, commits locally and replicates
to the placement's peers. On CUDA the copy goes to pinned memory on a side stream first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from realrun.measurements import EventLog
from realrun.replication import Outgoing, exchange
from realrun.shard import Region, ShardCodec, host_copy
from realrun.shm_store import ShmStore, chunk_checksums, make_manifest


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
    ) -> None:
        self.store, self.rank, self.codec, self.route = store, rank, codec, route
        self.group, self.events, self.chunk_bytes, self.fault = group, events, chunk_bytes, fault
        self._copied = threading.Event()
        self._copied.set()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        cuda_devices = [t.device for _, t in codec.tensors() if t.is_cuda]
        self._device = cuda_devices[0] if cuda_devices else None
        self._cuda = self._device is not None
        self._stream = torch.cuda.Stream(self._device) if self._cuda else None
        self._ready: torch.cuda.Event | None = None  # the training stream's position at snapshot()
        self._pinned: torch.Tensor | None = None

    def snapshot(self, step: int) -> None:
        """Start checkpointing the state as it is after `step`; returns once the job is queued."""
        self.wait_done()
        if self._cuda:
            # Recorded here, on the training thread: the copy must follow this step's optimizer
            # kernels but not wait for the forward kernels queued after snapshot() returns.
            self._ready = torch.cuda.current_stream(self._device).record_event()
        self._copied.clear()
        self._thread = threading.Thread(target=self._run, args=(step,), name=f"snapshot-{step}", daemon=True)
        self._thread.start()

    def wait_copied(self) -> None:
        """Block until the shard's bytes are in shared memory (call before the optimizer step)."""
        self._copied.wait()
        self._raise()

    def wait_done(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("checkpoint thread failed") from error

    def _run(self, step: int) -> None:
        try:
            manifest, data = self._snapshot(step)
            self._replicate(step, manifest, data)
        except BaseException as error:  # surfaced in the training thread by wait_*()
            self._error = error
            self._copied.set()

    def _snapshot(self, step: int) -> tuple[dict, memoryview]:
        start = time.perf_counter()
        plan = self.codec.plan()
        slot, buffer = self.store.begin(self.rank, plan.nbytes)
        flat = (
            torch.frombuffer(buffer, dtype=torch.uint8) if plan.nbytes else torch.empty(0, dtype=torch.uint8)
        )
        if self._cuda:
            self._copy_from_cuda(plan.regions, flat)
        else:
            for region in plan.regions:
                host_copy(flat[region.offset : region.offset + region.nbytes], region.source)
        self._copied.set()
        copy_s = time.perf_counter() - start
        self.events.log("snapshot", step, nbytes=plan.nbytes, duration_s=copy_s, source="local")
        self.fault(step, "snapshot")
        checksums = chunk_checksums(buffer)
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

    def _copy_from_cuda(self, regions: list[Region], flat: torch.Tensor) -> None:
        # Device → pinned host on a side stream (overlaps compute on the default stream), then host → shm.
        total = flat.numel()
        if self._pinned is None or self._pinned.numel() != total:
            self._pinned = torch.empty(total, dtype=torch.uint8, pin_memory=True)
        assert self._stream is not None and self._ready is not None
        self._stream.wait_event(self._ready)
        # A new thread's current CUDA device is 0; this rank's state may live on another one.
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            for region in regions:
                target = self._pinned[region.offset : region.offset + region.nbytes]
                target.copy_(region.source, non_blocking=True)
        self._stream.synchronize()
        host_copy(flat, self._pinned)

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
