"""The chunked snapshot pipeline on CPU: chunk order, checksum overlap, commit, and skipped snapshots.

`HostCopier(threaded=True)` stands in for the CUDA copy stream (a chunk at a time on its own thread,
an event per chunk), and `before_chunk` holds chunks back so a test sees the pipeline mid-copy.
"""

import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch

import gemini_ft.realrun.engine.checkpointer as checkpointer_module
from gemini_ft.realrun.engine.checkpointer import Checkpointer
from gemini_ft.realrun.engine.checksums import CHECKSUM_CHUNK
from gemini_ft.realrun.engine.config import CheckpointConfig
from gemini_ft.realrun.engine.copy_engine import HostCopier, split_chunks
from gemini_ft.realrun.engine.local_transport import LocalNetwork
from gemini_ft.realrun.engine.manifest import Layout
from gemini_ft.realrun.engine.shard import Region, plan_shard
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.measurements import EventLog, read_events

MIB = 1 << 20


class FakeCodec:
    """Two live tensors (~9 and ~3 MiB) as a shard: three 4 MiB copy chunks."""

    layout = Layout()

    def __init__(self) -> None:
        self.a = torch.arange(9 * MIB // 4, dtype=torch.int32)
        self.b = torch.full((3 * MIB // 8,), 7, dtype=torch.float64)

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        return [("param/a", self.a), ("param/b", self.b)]

    def plan(self):
        return plan_shard(self.tensors())

    def image(self) -> bytes:
        plan = self.plan()
        flat = torch.zeros(plan.nbytes, dtype=torch.uint8)
        for region in plan.regions:
            flat[region.offset : region.offset + region.nbytes] = region.source
        return bytes(flat.numpy())


class Gate:
    """Holds the copy of chunk i until opened(i); records the order of copies."""

    def __init__(self) -> None:
        self.open = [threading.Event() for _ in range(64)]
        self.copied: list[int] = []

    def __call__(self, index: int) -> None:
        assert self.open[index].wait(30), f"chunk {index} never released"
        self.copied.append(index)

    def release_all(self) -> None:
        for event in self.open:
            event.set()


def _engine(tmp_path, copier, codec=None, shm_root=None):
    codec = codec or FakeCodec()
    store = ShmStore(shm_root or tmp_path / "shm", 0)
    events = EventLog(tmp_path, "t", 0, 0, time.time())
    engine = Checkpointer(CheckpointConfig(rank=0, chunk_bytes=MIB), store, codec, events, copier=copier)
    return engine, store, codec


def test_split_chunks_covers_the_flat_shard_in_order_across_regions():
    a, b = torch.zeros(10, dtype=torch.uint8), torch.ones(7, dtype=torch.uint8)
    chunks = split_chunks([Region(a, 0), Region(b, 12)], 20, chunk_bytes=8)
    assert [(o, n) for o, n, _ in chunks] == [(0, 8), (8, 8), (16, 4)]
    # The middle chunk takes a's tail and b's head; the gap (10..12) is padding nobody copies.
    assert [(src.numel(), dst) for src, dst in chunks[1][2]] == [(2, 8), (4, 12)]
    assert sum(src.numel() for _, _, pieces in chunks for src, _ in pieces) == 17


def test_chunks_complete_one_by_one_and_the_state_is_held_until_the_last():
    codec = FakeCodec()
    plan = codec.plan()
    gate = Gate()
    flat = torch.zeros(plan.nbytes, dtype=torch.uint8)
    job = HostCopier(CHECKSUM_CHUNK, threaded=True, before_chunk=gate).start(plan.regions, flat)
    assert len(job.chunks) == 3
    gate.open[0].set()
    job.chunks[0].wait()
    assert not job.chunks[1].done() and not job.copied()
    assert bytes(flat[:CHECKSUM_CHUNK].numpy()) == codec.image()[:CHECKSUM_CHUNK]
    gate.release_all()
    job.wait_released()  # no device snapshot: released only when every byte is in
    assert job.copied() and gate.copied == [0, 1, 2]
    assert bytes(flat.numpy()) == codec.image()


def test_chunk_i_is_checksummed_while_chunk_i_plus_1_is_still_copying(tmp_path, monkeypatch):
    hashed = [threading.Event() for _ in range(3)]
    real = checkpointer_module.checksum

    def recording(piece):
        value = real(piece)
        hashed[piece_index[0]].set()
        piece_index[0] += 1
        return value

    piece_index = [0]
    monkeypatch.setattr(checkpointer_module, "checksum", recording)
    order: list[str] = []

    def before_chunk(index: int) -> None:
        if index:  # chunk i+1 is copied only after chunk i was hashed: the two overlap
            assert hashed[index - 1].wait(30), "checksums waited for the whole copy"
            order.append(f"hashed {index - 1}")
        order.append(f"copy {index}")

    engine, store, codec = _engine(
        tmp_path, HostCopier(CHECKSUM_CHUNK, threaded=True, before_chunk=before_chunk)
    )
    assert engine.snapshot(1)
    engine.wait_done()
    assert order == ["copy 0", "hashed 0", "copy 1", "hashed 1", "copy 2"]
    manifest, data = store.read(0, 1)  # verifies every chunk's checksum
    assert bytes(data) == codec.image() and len(manifest.checksums) == 3
    store.wipe()


def test_a_snapshot_due_while_the_previous_copy_is_in_flight_is_skipped_and_counted(tmp_path):
    gate = Gate()
    engine, store, codec = _engine(tmp_path, HostCopier(CHECKSUM_CHUNK, snapshot=True, before_chunk=gate))
    assert engine.snapshot(1)
    engine.wait_copied()  # the (stand-in) device snapshot is taken: the state is free
    image_at_1 = codec.image()
    codec.a.add_(1)  # the optimizer of step 2 runs while step 1's copy is still held back
    assert engine.snapshot(2) is False  # not waited for
    assert engine.skipped == 1
    gate.release_all()
    engine.wait_done()
    _, data = store.read(0, 1)
    assert bytes(data) == image_at_1  # step 1's bytes, not the mutated state
    assert store.read(0, 2) is None
    assert engine.snapshot(3)  # the copy is done: the next due snapshot goes
    engine.wait_done()
    assert bytes(store.read(0, 3)[1]) == codec.image()
    skips = read_events(tmp_path)
    assert skips[skips.event == "skip"].step.tolist() == [2]
    store.wipe()


def test_without_a_device_snapshot_nothing_is_skipped(tmp_path):
    engine, store, codec = _engine(tmp_path, HostCopier(CHECKSUM_CHUNK, threaded=True))
    for step in range(1, 4):
        engine.wait_copied()
        codec.a.add_(1)
        assert engine.snapshot(step)
    engine.wait_done()
    assert engine.skipped == 0 and bytes(store.read(0, 3)[1]) == codec.image()
    store.wipe()


def test_a_copy_that_fails_mid_shard_never_commits_and_the_last_commit_survives(tmp_path):
    failing = {"on": False}

    def before_chunk(index: int) -> None:
        if failing["on"] and index == 1:
            raise OSError("device lost mid-copy")

    engine, store, codec = _engine(
        tmp_path, HostCopier(CHECKSUM_CHUNK, threaded=True, before_chunk=before_chunk)
    )
    engine.snapshot(1)
    engine.wait_done()
    image_at_1 = codec.image()
    failing["on"] = True
    codec.a.add_(1)
    engine.snapshot(2)
    with pytest.raises(RuntimeError, match="checkpoint thread failed"):
        engine.wait_done()
    assert [m.step for _, m in store.committed(0)] == [1]
    assert bytes(store.read(0, 1)[1]) == image_at_1
    store.wipe()


def _pair(tmp_path, gate, faults=None):
    """Ranks 0 and 1 replicating to each other in-process; rank 0's copy is held back by `gate`."""
    network = LocalNetwork(2, timeout_s=30)
    codecs, stores, engines = [FakeCodec(), FakeCodec()], [], []
    codecs[1].a.add_(5)
    for rank in (0, 1):
        store = ShmStore(tmp_path / "shm", rank)
        config = CheckpointConfig(rank=rank, send_to=(1 - rank,), receive_from=(1 - rank,), chunk_bytes=MIB)
        copier = HostCopier(CHECKSUM_CHUNK, threaded=True, before_chunk=gate if rank == 0 else None)
        events = EventLog(tmp_path, "t", rank, rank, time.time())
        engines.append(
            Checkpointer(
                config,
                store,
                codecs[rank],
                events,
                network.endpoint(rank),
                faults if rank == 0 else None,
                copier,
            )
        )
        stores.append(store)
    return network, codecs, stores, engines


def _wait_until(condition, what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never: {what}")


def test_replication_sends_each_chunk_once_it_is_copied_and_hashed(tmp_path):
    gate = Gate()
    network, codecs, stores, engines = _pair(tmp_path, gate)
    assert engines[0].snapshot(1) and engines[1].snapshot(1)
    gate.open[0].set()  # rank 0's first 4 MiB are copied; the rest is held back
    _wait_until(lambda: network.sent(0, 1) == 1 + 4, "the header and copy chunk 0 (4 x 1 MiB) went out")
    assert network.sent(0, 1) == 5  # nothing of the chunks still being copied
    assert stores[0].committed(0) == [] and stores[1].committed(0) == []  # nobody commits a partial copy
    gate.release_all()
    for engine in engines:
        engine.wait_done()
    assert bytes(stores[1].read(0, 1)[1]) == codecs[0].image()
    assert bytes(stores[0].read(1, 1)[1]) == codecs[1].image()
    for store in stores:
        store.wipe()


class StrikeDuringReplication:
    """A failure injected mid-replication: records what was committed when it struck, then 'dies'."""

    def __init__(self, store: ShmStore) -> None:
        self.store, self.committed_when_struck = store, None

    def due(self, step: int, phase: str) -> bool:
        return phase == "replicate"

    def check(self, step: int, phase: str) -> None:
        if phase != "replicate":
            return
        self.committed_when_struck = [m.step for _, m in self.store.committed(0)]
        raise RuntimeError("the process dies here")


def test_a_failure_during_replication_strikes_after_the_local_commit_and_no_replica_commits(tmp_path):
    gate = Gate()
    gate.release_all()
    network, _, stores, engines = _pair(tmp_path, gate)
    strike = StrikeDuringReplication(stores[0])
    engines[0].faults = strike
    assert engines[0].snapshot(1) and engines[1].snapshot(1)
    with pytest.raises(RuntimeError, match="checkpoint thread failed"):
        engines[0].wait_done()
    network.crash(0)  # the struck process is gone: its peer's round breaks off
    with pytest.raises(RuntimeError, match="checkpoint thread failed"):
        engines[1].wait_done()
    # Streaming ran ahead of the local commit, but the failure struck only once it was done; the peer
    # has every byte of shard 0 and still no replica: the manifest never came.
    assert strike.committed_when_struck == [1]
    assert stores[1].committed(0) == [] and [m.step for _, m in stores[1].committed(1)] == [1]
    for store in stores:
        store.wipe()


def test_copy_chunks_must_be_whole_checksum_chunks():
    with pytest.raises(ValueError, match="multiple"):
        HostCopier(CHECKSUM_CHUNK + 1)


# ---- the CUDA copy stream (run by `pytest -m cuda` on a GPU host) -------------------------------------
class CudaCodec(FakeCodec):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = self.a.cuda(), self.b.cuda()

    def image(self) -> bytes:
        plan = self.plan()
        flat = torch.zeros(plan.nbytes, dtype=torch.uint8)
        for region in plan.regions:
            flat[region.offset : region.offset + region.nbytes] = region.source.cpu()
        return bytes(flat.numpy())


@pytest.fixture
def dev_shm():
    # The kernel page-locks shared memory (tmpfs) for DMA, not a mapping of a file on disk: the
    # registered path needs slots where real runs keep them.
    root = Path("/dev/shm") / f"gemini-ft-test-{uuid.uuid4().hex}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("gpu_snapshot", ["off", "on"])
@pytest.mark.parametrize("register", [True, False])
def test_cuda_copy_lands_in_shm_by_every_path(tmp_path, dev_shm, monkeypatch, gpu_snapshot, register):
    from gemini_ft.realrun.engine.copy_engine import CudaCopier

    if not register:  # the fallback: a pinned staging buffer and a host memcpy per chunk
        monkeypatch.setattr(CudaCopier, "register", lambda self, flat: False)
    codec = CudaCodec()
    copier = CudaCopier(torch.device("cuda", 0), gpu_snapshot, chunk_bytes=CHECKSUM_CHUNK)
    engine, store, _ = _engine(tmp_path, copier, codec, shm_root=dev_shm)
    for step in (1, 2, 3):
        engine.wait_copied()
        codec.a.add_(1)
        assert engine.snapshot(step) or gpu_snapshot == "on"
    engine.wait_done()
    newest = store.committed(0)[0][1].step
    if newest == 3:
        assert bytes(store.read(0, 3)[1]) == codec.image()
    assert ("device snapshot" in engine.path) == (gpu_snapshot == "on")
    assert ("registered" in engine.path) == register
    engine.close()
    assert not copier._registered  # unregistered on close
    store.wipe()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_snapshot_frees_the_state_before_the_d2h_copy(tmp_path):
    # The state changes right after wait_copied(); the committed bytes are still those of the snapshot.
    # The slots are files under tmp_path: where that is a disk, registration fails and the copy goes
    # through staging, and the failed call must not leave an error for the device copy to report.
    from gemini_ft.realrun.engine.copy_engine import CudaCopier

    codec = CudaCodec()
    engine, store, _ = _engine(tmp_path, CudaCopier(torch.device("cuda", 0), "on", CHECKSUM_CHUNK), codec)
    engine.snapshot(1)
    engine.wait_copied()
    image_at_1 = codec.image()
    codec.a.add_(1)
    engine.wait_done()
    assert bytes(store.read(0, 1)[1]) == image_at_1
    engine.close()
    store.wipe()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_each_emulated_rank_gets_a_visible_gpu():
    from gemini_ft.realrun.devices import device_for, visible_gpus

    gpus = visible_gpus()
    assert gpus >= 1
    devices = {device_for("auto", r, 0, 1, gpus, shared_host=True) for r in range(gpus)}
    assert len(devices) == gpus
    torch.zeros(1, device=sorted(devices)[-1])  # every index it hands out is a real device
