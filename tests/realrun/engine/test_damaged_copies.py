"""A damaged in-memory copy is never loaded: a slot that fails verification stops being committed, a
read skips it for the slot that verifies, and every rejected copy is counted.

The reproduction of the defect: one owner's steps 7, 8 and 9 committed on its own machine and on a
peer, one byte of the owner's step-9 copy flipped (slot 0), the shard fetched back from the peer, and
the owner's store read as recovery reads it before loading."""

from __future__ import annotations

import threading

import pytest

from gemini_ft.realrun.engine.checksums import chunk_checksums
from gemini_ft.realrun.engine.local_transport import LocalNetwork
from gemini_ft.realrun.engine.manifest import Manifest, build_layout
from gemini_ft.realrun.engine.recovery import local_inventory
from gemini_ft.realrun.engine.replication import CommittedShard, Incoming, Outgoing, exchange
from gemini_ft.realrun.engine.shm_store import ShmStore

SIZE = 4096
CHECKSUM_BYTES = 1024


def _payload(step: int) -> bytes:
    return bytes((step * 31 + i) % 251 for i in range(SIZE))


def _commit(store: ShmStore, owner: int, step: int) -> int:
    entries, total = build_layout([("param/w", "uint8", (SIZE,), SIZE)])
    slot, buffer = store.begin(owner, total)
    buffer[:SIZE] = _payload(step)
    checksums = tuple(chunk_checksums(buffer, CHECKSUM_BYTES))
    store.commit(slot, Manifest(owner, step, total, CHECKSUM_BYTES, checksums, tuple(entries)))
    return slot


def _flip(store: ShmStore, owner: int, slot: int, at: int = 100) -> None:
    path = store.dir / f"shard{owner}.slot{slot}.bin"
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(raw)


@pytest.fixture
def stores(tmp_path):
    opened = [ShmStore(tmp_path, machine) for machine in range(2)]
    yield opened
    for store in opened:
        store.close()


def _fetch_from_peer(owner_store: ShmStore, peer_store: ShmStore, step: int) -> None:
    """Machine 1 sends its replica of shard 0 at `step` back to machine 0, as recovery does."""
    network = LocalNetwork(2, timeout_s=10)
    found = peer_store.read(0, step)
    assert found is not None
    results: dict = {}

    def run(rank, store, sends, fetches):
        results[rank] = exchange(store, network.endpoint(rank), sends, fetches, 1000)

    threads = [
        threading.Thread(target=run, args=(0, owner_store, [], [Incoming(1, 0)])),
        threading.Thread(target=run, args=(1, peer_store, [Outgoing(0, CommittedShard(*found))], [])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results[0][0].ok


def test_the_copy_fetched_from_a_peer_is_what_the_owner_reads(stores):
    owner, peer = stores
    slots = [_commit(owner, 0, step) for step in (7, 8, 9)]
    for step in (7, 8, 9):
        _commit(peer, 0, step)
    assert slots == [0, 1, 0]  # the newest copy sits in slot 0, where the defect struck
    _flip(owner, 0, slot=0)
    fresh = ShmStore(owner.root, 0)  # the restarted worker
    inventory = local_inventory(fresh, world=1, procs=1, local_rank=0, deep=False)
    assert inventory[0].tolist() == [8, -1]  # step 9 failed its checksum, step 8 verified
    _fetch_from_peer(fresh, peer, 9)
    found = fresh.read(0, 9)
    assert found is not None
    _, data = found
    assert bytes(data[:SIZE]) == _payload(9)  # the peer's intact copy, not the flipped byte
    assert [m.step for _, m in fresh.committed(0)] == [9, 8]  # one committed slot per step
    assert [(r.owner, r.slot, r.step) for r in fresh.rejections] == [(0, 0, 9)]
    fresh.close()


@pytest.mark.parametrize("damaged", [0, 1])
def test_a_read_skips_the_failing_slot_for_the_one_that_verifies(stores, damaged):
    store, _ = stores
    # Two committed slots claiming one step (a shard fetched again after a restart), one damaged.
    for slot in (0, 1):
        entries, total = build_layout([("param/w", "uint8", (SIZE,), SIZE)])
        buffer = store._buffer(0, slot, total)
        buffer[:SIZE] = _payload(5)
        checksums = tuple(chunk_checksums(buffer, CHECKSUM_BYTES))
        store.commit(slot, Manifest(0, 5, total, CHECKSUM_BYTES, checksums, tuple(entries)))
    _flip(store, 0, damaged)
    found = store.read(0, 5)
    assert found is not None and bytes(found[1][:SIZE]) == _payload(5)
    if damaged == 0:  # looked at first: rejected and uncommitted, and counted once
        assert [slot for slot, _ in store.committed(0)] == [1]
        assert [(r.slot, r.step) for r in store.rejections] == [(0, 5)]
        assert store.read(0, 5) is not None and len(store.rejections) == 1
    else:  # the intact slot 0 answered: slot 1 was never looked at
        assert store.rejections == []


@pytest.mark.parametrize("damage", ["truncate", "delete", "grow", "manifest"])
def test_a_copy_whose_files_do_not_match_its_manifest_is_rejected_before_it_is_mapped(stores, damage):
    store, _ = stores
    _commit(store, 0, 3)
    slot = _commit(store, 0, 4)
    data = store.dir / f"shard0.slot{slot}.bin"
    manifest = store.dir / f"shard0.slot{slot}.json"
    fresh = ShmStore(store.root, 0)
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:-1])
    elif damage == "delete":
        data.unlink()
    elif damage == "grow":  # a valid manifest that claims 3 GiB for a slot of 4 KiB
        entries, _ = build_layout([("param/w", "uint8", (SIZE,), SIZE)])
        manifest.write_bytes(Manifest(0, 4, 3 * 2**30, 2**30, (0, 0, 0), tuple(entries)).to_json())
    else:
        manifest.write_text('{"format": "gemini-ft-shard", ')
    assert fresh.read(0, 4) is None
    assert data.stat().st_size <= SIZE if data.exists() else True  # nothing was allocated for it
    assert [m.step for _, m in fresh.committed(0)] == [3]
    assert fresh.read(0, 3) is not None  # the older copy is still there to recover from
    assert [(r.slot, r.step) for r in fresh.rejections] == [(slot, None if damage == "manifest" else 4)]
    fresh.close()
