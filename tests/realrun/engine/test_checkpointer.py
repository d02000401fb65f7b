"""The checkpoint engine in one process (world size 1): snapshot, commit and reload of a ZeRO-1 shard and
of an FSDP2 one (DTensor local shards, AdamW moments packed into an arena that stays a DTensor's)."""

import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from gemini_ft.realrun.config import RealRunConfig, parse_model_size
from gemini_ft.realrun.engine.checkpointer import Checkpointer
from gemini_ft.realrun.engine.config import CheckpointConfig
from gemini_ft.realrun.engine.manifest import Entry, build_layout
from gemini_ft.realrun.engine.shard import ShardCodec, ShardMismatch
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.measurements import EventLog
from gemini_ft.realrun.worker.data import SyntheticStream
from gemini_ft.realrun.worker.model import build_model
from gemini_ft.realrun.worker.parallel import parallelize


@pytest.fixture
def world_of_one():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, 1, True, timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _trained(
    device: str, steps: int = 1, parallelism: str = "ddp"
) -> tuple[torch.nn.Module, torch.optim.Optimizer, ShardCodec]:
    shape = parse_model_size("tiny", "llama")
    cfg = RealRunConfig(machines=1, replicas=1, parallelism=parallelism, model="llama")
    model = build_model(cfg.model, shape, 0).to(device)
    stream = SyntheticStream(0, 0, 2, shape)
    par = parallelize(cfg, model, torch.device(device), 0, extra=[("data_position", stream.position)])
    for _ in range(steps):
        inputs, targets = stream.next()
        loss = torch.nn.functional.cross_entropy(
            par.module(inputs.to(device)).reshape(-1, shape.vocab), targets.to(device).reshape(-1)
        )
        loss.backward()
        par.optimizer.step()
        par.optimizer.zero_grad(set_to_none=True)
    return model, par.codec.optimizer, par.codec


def _roundtrip(tmp_path, device: str, parallelism: str = "ddp") -> None:
    _, _, codec = _trained(device, parallelism=parallelism)
    store = ShmStore(tmp_path / "shm", machine=0)
    engine = Checkpointer(CheckpointConfig(rank=0), store, codec, EventLog(tmp_path, "t", 0, 0, time.time()))
    engine.snapshot(1)
    engine.wait_done()
    manifest, data = store.read(0, 1)
    names = [e.name for e in manifest.entries]
    assert "optim/head.weight/exp_avg_sq" in names and "param/head.weight" in names
    assert "extra/data_position" in names and manifest.layout == codec.layout
    # Load into a fresh model + optimizer: every tensor of the shard comes back byte for byte.
    _, _, fresh = _trained(device, parallelism=parallelism)
    with torch.no_grad():
        for _, tensor in fresh.tensors():
            tensor.add_(1)
    fresh.load(manifest.entries, data)
    for (name, a), (_, b) in zip(codec.tensors(), fresh.tensors(), strict=True):
        assert torch.equal(a.cpu().reshape(-1).view(torch.uint8), b.cpu().reshape(-1).view(torch.uint8)), name
    store.wipe()


@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_snapshot_and_reload_cpu(tmp_path, world_of_one, parallelism):
    _roundtrip(tmp_path, "cpu", parallelism)


def test_fsdp_moments_stay_dtensors_backed_by_the_arena(world_of_one):
    from torch.distributed.tensor import DTensor

    _, optimizer, codec = _trained("cpu", steps=3, parallelism="fsdp")
    param = next(p for _, p in codec.params)
    state = optimizer.state[param]
    assert isinstance(param, DTensor) and isinstance(state["exp_avg"], DTensor)
    arena = state["exp_avg"].to_local().untyped_storage().data_ptr()
    assert all(
        optimizer.state[p]["exp_avg_sq"].to_local().untyped_storage().data_ptr() == arena
        for _, p in codec.params
    )  # every moment of every parameter in one arena, after three steps of AdamW
    assert state["step"].item() == 3.0


def test_a_shard_of_other_tensors_is_refused_and_nothing_is_loaded(world_of_one):
    _, _, codec = _trained("cpu", steps=1)
    before = [t.clone() for _, t in codec.tensors()]
    entries = [e for e in codec.plan().entries if e.name != "param/head.weight"]  # one tensor missing
    with pytest.raises(ShardMismatch, match="missing"):
        codec.load(entries, memoryview(bytearray(codec.plan().nbytes)))
    assert all(torch.equal(a, b) for a, (_, b) in zip(before, codec.tensors(), strict=True))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snapshot_and_reload_cuda(tmp_path, world_of_one):
    # Pinned staging buffer and a side stream; the shard must still round-trip exactly.
    _roundtrip(tmp_path, "cuda")


def test_shard_is_a_few_contiguous_regions_that_stay_live(world_of_one):
    # Parameters in ZeRO's bucket, AdamW state in one arena, the data position: a snapshot is three
    # copies, and after several steps the state still lives in the arena (AdamW updated it in place).
    _, optimizer, codec = _trained("cpu", steps=3)
    plan = codec.plan()
    assert len(plan.regions) == 3
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
    state = optimizer.state[next(iter(optimizer.state))]
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
