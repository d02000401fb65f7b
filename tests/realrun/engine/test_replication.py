"""Shard exchange over a real gloo group in two processes: intact replicas commit, corrupt ones do not."""

import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from realrun.engine.replication import Outgoing, exchange
from realrun.engine.shm_store import ShmStore, build_layout, chunk_checksums, make_manifest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _payload(owner: int, step: int) -> bytes:
    generator = torch.Generator().manual_seed(owner * 100 + step)
    return torch.randint(0, 256, (300_000,), dtype=torch.uint8, generator=generator).numpy().tobytes()


def _commit_own(store: ShmStore, owner: int, step: int) -> tuple[dict, memoryview]:
    payload = _payload(owner, step)
    entries, total = build_layout([("param/w", "uint8", (len(payload),), len(payload))])
    slot, buffer = store.begin(owner, total)
    buffer[: len(payload)] = payload
    manifest = make_manifest(owner, step, entries, total, chunk_checksums(buffer, chunk=65536))
    manifest["checksum"]["chunk_bytes"] = 65536
    store.commit(owner, slot, manifest)
    return manifest, buffer


def _worker(rank: int, port: int, root: str, corrupt_step: int) -> None:
    store_ = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store_, rank=rank, world_size=2)
    store = ShmStore(root, machine=rank)
    peer = 1 - rank
    for step in (1, 2):
        manifest, buffer = _commit_own(store, rank, step)
        if step == corrupt_step and rank == 0:
            # The receiver must reject bytes that do not match the manifest (e.g. damaged in transit).
            manifest = {
                **manifest,
                "checksum": {
                    **manifest["checksum"],
                    "values": [v ^ 1 for v in manifest["checksum"]["values"]],
                },
            }
        received = exchange(store, [Outgoing(peer, manifest, buffer)], [peer], None, chunk_bytes=50_000)
        assert received[0].owner == peer and received[0].step == step
        assert received[0].ok == (not (step == corrupt_step and rank == 1))
    dist.destroy_process_group()
    store.close()


def test_replicas_commit_only_when_checksums_match(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), 2), nprocs=2, join=True)
    on_machine1 = ShmStore(tmp_path, machine=1)
    on_machine0 = ShmStore(tmp_path, machine=0)
    # Machine 1 kept step 1 of shard 0 and refused the corrupt step 2; machine 0 has both of shard 1's.
    assert [m["step"] for _, m in on_machine1.committed(0)] == [1]
    assert bytes(on_machine1.read(0, 1)[1][:300_000]) == _payload(0, 1)
    assert [m["step"] for _, m in on_machine0.committed(1)] == [2, 1]
    assert bytes(on_machine0.read(1, 2)[1][:300_000]) == _payload(1, 2)
    on_machine0.close()
    on_machine1.close()
