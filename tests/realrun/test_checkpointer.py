"""The checkpoint engine in one process (world size 1): snapshot, commit and reload of a ZeRO shard."""

import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer

from realrun.checkpointer import Checkpointer, Route, ShardCodec
from realrun.measurements import EventLog
from realrun.model import build_model, parse_model_size, synthetic_batch
from realrun.shm_store import ShmStore, manifest_entries


@pytest.fixture
def world_of_one():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, 1, True, timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _trained(device: str) -> tuple[torch.nn.Module, ZeroRedundancyOptimizer, ShardCodec]:
    shape = parse_model_size("tiny")
    model = build_model(shape, 0).to(device)
    optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=1e-3)
    inputs, targets = synthetic_batch(0, 1, 0, 2, shape)
    loss = torch.nn.functional.cross_entropy(
        model(inputs.to(device)).reshape(-1, shape.vocab), targets.to(device).reshape(-1)
    )
    loss.backward()
    optimizer.step()
    return model, optimizer, ShardCodec(model, optimizer)


def _roundtrip(tmp_path, device: str) -> None:
    _, _, codec = _trained(device)
    store = ShmStore(tmp_path / "shm", machine=0)
    engine = Checkpointer(
        store, 0, codec, Route([], []), None, EventLog(tmp_path, "t", 0, 0, time.time()), 1 << 20
    )
    engine.snapshot(1)
    engine.wait_done()
    manifest, data = store.read(0, 1)
    names = [e.name for e in manifest_entries(manifest)]
    assert "optim/head.weight/exp_avg_sq" in names and "param/head.weight" in names
    # Load into a fresh model + optimizer: every tensor of the shard comes back byte for byte.
    _, _, fresh = _trained(device)
    with torch.no_grad():
        for _, tensor in fresh.tensors():
            tensor.add_(1)
    fresh.load(manifest_entries(manifest), data)
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
