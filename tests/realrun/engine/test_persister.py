"""The persister process: parts written from committed copies in shared memory, a step committed only once
every rank's part is there, a damaged copy never written, and the slot released only once copied."""

from __future__ import annotations

import threading
import time

import pytest
import torch
import torch.distributed.checkpoint as dcp

from gemini_ft.realrun.engine.checksums import chunk_checksums
from gemini_ft.realrun.engine.manifest import Layout, Manifest, build_layout
from gemini_ft.realrun.engine.persistent import committed_steps, part_dir, persistent_dir, verify
from gemini_ft.realrun.engine.persister import Persister, PersisterConfig
from gemini_ft.realrun.engine.shm_store import ShmStore

SIZE = 4096


def _commit(store: ShmStore, owner: int, step: int) -> None:
    entries, total = build_layout([("param/w", "float32", (SIZE // 4,), SIZE)])
    slot, buffer = store.begin(owner, total)
    buffer[:SIZE] = torch.full((SIZE // 4,), float(owner * 100 + step)).numpy().tobytes()
    layout = Layout("fsdp", (2,), ("shard",), ("Shard(dim=0)",), (owner,), "float32")
    manifest = Manifest(
        owner, step, total, 1024, tuple(chunk_checksums(buffer, 1024)), tuple(entries), layout
    )
    store.commit(slot, manifest)


@pytest.fixture
def job(tmp_path):
    stores = [ShmStore(tmp_path / "shm", machine) for machine in range(2)]
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    persisters = [
        Persister(
            PersisterConfig(str(tmp_path / "shm"), rank, rank, 2, str(run_dir), "test", time.time(), 30.0)
        )
        for rank in range(2)
    ]
    yield stores, persisters, run_dir
    for persister in persisters:
        persister.close()
    for store in stores:
        store.close()


def test_a_step_is_committed_only_once_every_rank_wrote_its_part(job):
    stores, persisters, run_dir = job
    for rank in range(2):
        _commit(stores[rank], rank, 6)
    persisters[0].request(6, 0, "round1")
    persisters[0].wait_idle()
    assert (part_dir(persistent_dir(run_dir, 6), 0) / "part.json").exists()
    assert committed_steps(run_dir) == []  # rank 1's part is missing: nothing may load this step yet
    persisters[1].request(6, 1, "round1")
    persisters[1].wait_idle()
    assert committed_steps(run_dir) == [6] and verify(persistent_dir(run_dir, 6), 6, 2) is None
    state = {"param/w": torch.zeros(SIZE // 4)}
    dcp.load(
        state, storage_reader=dcp.FileSystemReader(part_dir(persistent_dir(run_dir, 6), 1)), no_dist=True
    )
    assert torch.equal(state["param/w"], torch.full((SIZE // 4,), 106.0))
    assert persisters[0].failed == persisters[1].failed == []


def test_a_damaged_copy_is_refused_and_never_written(job):
    stores, persisters, run_dir = job
    _commit(stores[0], 0, 4)
    data = stores[0].dir / "shard0.slot0.bin"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 1
    data.write_bytes(raw)
    persisters[0].request(4, 0, "round1")
    persisters[0].wait_idle()
    assert persisters[0].failed == [
        "step 4: the copy of shard 0 at step 4 was overwritten or damaged while it was read"
    ]
    assert not part_dir(persistent_dir(run_dir, 4), 0).exists()


def test_a_request_waits_for_its_commit_and_the_slot_is_released_once_copied(job):
    stores, persisters, run_dir = job
    persisters[0].request(8, 0, "round1")  # the snapshot of step 8 is still being taken
    released = threading.Event()
    threading.Thread(
        target=lambda: (persisters[0].wait_copied(before=9), released.set()), daemon=True
    ).start()
    assert not released.wait(0.3)  # nothing to copy yet: a snapshot must not reuse the slot
    _commit(stores[0], 0, 8)
    assert released.wait(30)
    persisters[0].wait_idle()
    assert (part_dir(persistent_dir(run_dir, 8), 0) / "part.json").exists()
