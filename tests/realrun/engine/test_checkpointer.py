"""The checkpoint engine in one process (world size 1): snapshot, commit and reload of a ZeRO shard."""

import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer

from gemini_ft.realrun.config import parse_model_size
from gemini_ft.realrun.engine.checkpointer import Checkpointer
from gemini_ft.realrun.engine.config import CheckpointConfig
from gemini_ft.realrun.engine.manifest import Entry, build_layout
from gemini_ft.realrun.engine.shard import ShardCodec, make_optimizer
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.measurements import EventLog
from gemini_ft.realrun.worker.model import build_model, synthetic_batch


@pytest.fixture
def world_of_one():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, 1, True, timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _trained(device: str, steps: int = 1) -> tuple[torch.nn.Module, ZeroRedundancyOptimizer, ShardCodec]:
    shape = parse_model_size("tiny")
    model = build_model(shape, 0).to(device)
    optimizer = make_optimizer(model, 1e-3)
    codec = ShardCodec(model, optimizer)
    for step in range(steps):
        inputs, targets = synthetic_batch(0, step, 0, 2, shape)
        loss = torch.nn.functional.cross_entropy(
            model(inputs.to(device)).reshape(-1, shape.vocab), targets.to(device).reshape(-1)
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer, codec


def _roundtrip(tmp_path, device: str) -> None:
    _, _, codec = _trained(device)
    store = ShmStore(tmp_path / "shm", machine=0)
    engine = Checkpointer(CheckpointConfig(rank=0), store, codec, EventLog(tmp_path, "t", 0, 0, time.time()))
    engine.snapshot(1)
    engine.wait_done()
    manifest, data = store.read(0, 1)
    names = [e.name for e in manifest.entries]
    assert "optim/head.weight/exp_avg_sq" in names and "param/head.weight" in names
    # Load into a fresh model + optimizer: every tensor of the shard comes back byte for byte.
    _, _, fresh = _trained(device)
    with torch.no_grad():
        for _, tensor in fresh.tensors():
            tensor.add_(1)
    fresh.load(manifest.entries, data)
    for (name, a), (_, b) in zip(codec.tensors(), fresh.tensors(), strict=True):
        assert torch.equal(a.cpu().reshape(-1).view(torch.uint8), b.cpu().reshape(-1).view(torch.uint8)), name
    store.wipe()


def test_snapshot_and_reload_cpu(tmp_path, world_of_one):
    _roundtrip(tmp_path, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snapshot_and_reload_cuda(tmp_path, world_of_one):
    # Pinned staging buffer and a side stream; the shard must still round-trip exactly.
    _roundtrip(tmp_path, "cuda")


def test_shard_is_a_few_contiguous_regions_that_stay_live(world_of_one):
    # Parameters in ZeRO's bucket, AdamW state in one arena: a snapshot is two large copies, and
    # after several steps the state still lives in the arena (AdamW updated it in place).
    _, optimizer, codec = _trained("cpu", steps=3)
    plan = codec.plan()
    assert len(plan.regions) == 2
    assert sum(r.nbytes for r in plan.regions) == sum(
        t.numel() * t.element_size() for _, t in codec.tensors()
    )
    flat = torch.zeros(plan.nbytes, dtype=torch.uint8)
    for region in plan.regions:
        flat[region.offset : region.offset + region.nbytes].copy_(region.source)
    for entry, (name, tensor) in zip(plan.entries, codec.tensors(), strict=True):
        assert entry.name == name
        stored = flat[entry.offset : entry.offset + entry.nbytes]
        assert torch.equal(stored, tensor.reshape(-1).view(torch.uint8)), name
    state = optimizer.optim.state[next(iter(optimizer.optim.state))]
    assert state["step"].item() == 3.0


def test_load_accepts_another_layout_tensor_by_tensor(world_of_one):
    # A shard written with a different layout (here: packed tensor by tensor in reverse order) loads
    # entry by entry, in place, so the arena and the bucket keep backing the live state.
    _, _, codec = _trained("cpu", steps=2)
    named = list(reversed(codec.tensors()))
    entries, total = build_layout(
        [
            (n, str(t.dtype).removeprefix("torch."), tuple(t.shape), t.numel() * t.element_size())
            for n, t in named
        ]
    )
    flat = torch.zeros(total, dtype=torch.uint8)
    for entry, (_, tensor) in zip(entries, named, strict=True):
        flat[entry.offset : entry.offset + entry.nbytes].copy_(tensor.reshape(-1).view(torch.uint8))
    _, _, fresh = _trained("cpu", steps=0)
    regions_before = [r.source.data_ptr() for r in fresh.plan().regions]
    fresh.load(
        [Entry(e.name, e.dtype, e.shape, e.offset, e.nbytes) for e in entries], memoryview(flat.numpy())
    )
    assert [r.source.data_ptr() for r in fresh.plan().regions] == regions_before
    for (name, a), (_, b) in zip(codec.tensors(), fresh.tensors(), strict=True):
        assert torch.equal(a, b), name
