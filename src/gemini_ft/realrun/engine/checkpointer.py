"""The in-memory checkpoint engine of one rank: its ZeRO shard snapshotted asynchronously.

`Checkpointer.snapshot(step)` hands the copy of the shard's regions (see `gemini_ft.realrun.engine.shard`) to a
copier (`gemini_ft.realrun.engine.copy_engine`) and a background thread; the training loop calls `wait_copied()`
before the optimizer mutates the state. The copy goes in chunks; the thread hashes each chunk as
soon as it is copied and commits locally once all are hashed, while a second thread replicates to
the placement's peers (`gemini_ft.realrun.engine.replication`): each chunk goes out as soon as it is hashed,
the manifest once the local commit is done. On CUDA the chunks go device→host straight into the
page-locked shm slot on a side stream, after an optional device-side snapshot that frees the state
in milliseconds. A snapshot due while the previous copy is still in flight (only possible once the
state was freed early) is skipped, not waited for, and counted: the checkpoint interval then
follows what the link carries.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Protocol

import torch

from gemini_ft.realrun.engine.checksums import CHECKSUM_CHUNK, CHECKSUM_POOL, checksum, chunk_checksums
from gemini_ft.realrun.engine.config import CheckpointConfig
from gemini_ft.realrun.engine.copy_engine import Copier, CopyJob, CudaCopier, HostCopier
from gemini_ft.realrun.engine.manifest import Manifest
from gemini_ft.realrun.engine.replication import Incoming, Outgoing, exchange
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import ShardTransport
from gemini_ft.realrun.measurements import EventLog


class FaultHook(Protocol):
    """Where fault injection may strike inside a checkpoint: phase "snapshot" or "replicate"."""

    def due(self, step: int, phase: str) -> bool: ...

    def check(self, step: int, phase: str) -> None: ...


class NoFaults:
    def due(self, step: int, phase: str) -> bool:
        return False

    def check(self, step: int, phase: str) -> None:
        return None


class Checkpointer:
    """Asynchronous snapshot → local commit, and replication beside it; one checkpoint in flight."""

    def __init__(
        self,
        config: CheckpointConfig,
        store: ShmStore,
        codec: ShardCodec,
        events: EventLog,
        transport: ShardTransport | None = None,
        faults: FaultHook | None = None,
        copier: Copier | None = None,
    ) -> None:
        if (config.send_to or config.receive_from) and transport is None:
            raise ValueError("a checkpointer that replicates (send_to, receive_from) needs a transport")
        self.config, self.store, self.codec, self.events = config, store, codec, events
        self.transport, self.faults = transport, faults or NoFaults()
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
            copier = CudaCopier(self._device, config.gpu_snapshot) if self._cuda else HostCopier()
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
            snapshot = self._start_copy(step, ready)
            replicator = None
            if self.config.send_to or self.config.receive_from:
                replicator = _Replicator(self, step, snapshot)
            try:
                self._commit_locally(step, snapshot)
            except BaseException as error:
                snapshot.fail(error)  # wakes the replicator, which must not send what never was
                if replicator is not None:
                    replicator.join(quiet=True)  # the local failure is the one to report
                raise
            if replicator is not None:
                replicator.join()
        except BaseException as error:  # surfaced in the training thread by wait_*()
            self._error = error
        finally:
            self._started.set()

    def _start_copy(self, step: int, ready: torch.cuda.Event | None) -> _Snapshot:
        start = time.perf_counter()
        plan = self.codec.plan()
        slot, buffer = self.store.begin(self.config.rank, plan.nbytes)
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
        return _Snapshot(self.config.rank, step, buffer, slot, plan.entries, job, start)

    def _commit_locally(self, step: int, snapshot: _Snapshot) -> None:
        # Each chunk is hashed (on the checksum pool, without the GIL) the moment its copy is done,
        # while later chunks are still being copied; nothing is committed before the last one.
        for chunk in snapshot.job.chunks:
            chunk.wait()
            snapshot.hash(chunk.offset, chunk.nbytes)
        nbytes = len(snapshot.data)
        self.events.log("snapshot", step, nbytes=nbytes, duration_s=snapshot.job.seconds(), source="local")
        self.faults.check(step, "snapshot")
        manifest = Manifest(
            self.config.rank,
            step,
            nbytes,
            CHECKSUM_CHUNK,
            tuple(snapshot.checksums()),
            tuple(snapshot.entries),
            self.codec.layout,
        )
        self.store.commit(snapshot.slot, manifest)
        self.events.log(
            "commit", step, nbytes=nbytes, duration_s=time.perf_counter() - snapshot.start, source="local",
            peer=self.config.rank,
        )  # fmt: skip
        snapshot.publish(manifest)

    def _replicate(self, step: int, snapshot: _Snapshot) -> None:
        assert self.transport is not None
        start = time.perf_counter()
        sizes = self.config.receive_bytes

        def on_chunk(index: int) -> None:
            # "During replication" means the shard is committed locally and partly sent: wait for
            # the local commit (streaming may be ahead of it) before the failure strikes.
            if index == 0 and self.faults.due(step, "replicate"):
                snapshot.final_manifest()
                self.faults.check(step, "replicate")

        received = exchange(
            self.store,
            self.transport,
            [Outgoing(dst, snapshot) for dst in self.config.send_to],
            [
                Incoming(src, src, sizes[i] if sizes else None)
                for i, src in enumerate(self.config.receive_from)
            ],
            self.config.chunk_bytes,
            on_chunk=on_chunk,
        )
        elapsed = time.perf_counter() - start
        nbytes = len(snapshot.data)
        for dst in self.config.send_to:
            self.events.log("replicate", step, nbytes=nbytes, duration_s=elapsed, source="local", peer=dst)
        for item in received:
            self.events.log(
                "commit", item.step, nbytes=item.nbytes, duration_s=item.duration_s, source="peer",
                peer=item.src, ok=item.ok,
            )  # fmt: skip


class _Replicator:
    """The replication of one snapshot, on a thread of its own beside the local hashing and commit."""

    def __init__(self, checkpointer: Checkpointer, step: int, snapshot: _Snapshot) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(checkpointer, step, snapshot), name=f"replicate-{step}", daemon=True
        )
        self._thread.start()

    def _run(self, checkpointer: Checkpointer, step: int, snapshot: _Snapshot) -> None:
        try:
            checkpointer._replicate(step, snapshot)
        except BaseException as error:
            self.error = error

    def join(self, quiet: bool = False) -> None:
        """Wait for the round; raise what broke it unless `quiet` (a local commit stands either way)."""
        self._thread.join()
        if self.error is not None and not quiet:
            raise self.error


class _Snapshot:
    """A snapshot in flight, as a replication source: which prefix of it is copied and hashed
    (`wait_verified`), and its manifest once it is committed locally (`final_manifest`)."""

    def __init__(
        self, owner: int, step: int, data: memoryview, slot: int, entries: list, job: CopyJob, start: float
    ) -> None:
        self.owner, self.step, self.data, self.slot, self.entries = owner, step, data, slot, entries
        self.job, self.start = job, start
        self.checksum_chunk = CHECKSUM_CHUNK
        self._changed = threading.Condition()
        self._pending: list[Future[int]] = []
        self._hashed: list[bool] = []
        self._verified = 0  # bytes [0, _verified) are copied and hashed
        self._manifest: Manifest | None = None
        self._error: BaseException | None = None

    def hash(self, offset: int, nbytes: int) -> None:
        """Hash a copied chunk, in checksum-chunk pieces on the pool (offset: a multiple of them)."""
        piece = self.data[offset : offset + nbytes]
        for low in range(0, nbytes, CHECKSUM_CHUNK):
            with self._changed:
                index = len(self._pending)
                future = CHECKSUM_POOL.submit(checksum, piece[low : low + CHECKSUM_CHUNK])
                self._pending.append(future)
                self._hashed.append(False)
            future.add_done_callback(lambda _, index=index: self._done(index))

    def _done(self, index: int) -> None:
        with self._changed:
            self._hashed[index] = True
            count = self._verified // CHECKSUM_CHUNK
            while count < len(self._hashed) and self._hashed[count]:
                count += 1
            self._verified = min(count * CHECKSUM_CHUNK, len(self.data))
            self._changed.notify_all()

    def checksums(self) -> list[int]:
        return [future.result() for future in self._pending] if self._pending else chunk_checksums(self.data)

    def publish(self, manifest: Manifest) -> None:
        with self._changed:
            self._manifest = manifest
            self._verified = len(self.data)
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._changed:
            self._error = error
            self._changed.notify_all()

    def wait_verified(self, end: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._verified >= end or self._error is not None)
            if self._verified < end:
                raise RuntimeError(f"snapshot of step {self.step} failed before byte {end}") from self._error

    def final_manifest(self) -> Manifest:
        with self._changed:
            self._changed.wait_for(lambda: self._manifest is not None or self._error is not None)
            if self._manifest is None:
                raise RuntimeError(f"snapshot of step {self.step} was never committed") from self._error
            return self._manifest
