"""The shared-memory store in-process: two slots, JSON manifests, checksums, crashes before commit."""

import json
import stat

import numpy as np
import pytest

from gemini_ft.realrun.engine.checksums import CHECKSUM_CHUNK, chunk_checksums
from gemini_ft.realrun.engine.manifest import Manifest, build_layout
from gemini_ft.realrun.engine.recovery import local_inventory
from gemini_ft.realrun.engine.shm_store import ShmStore


def _put(store: ShmStore, owner: int, step: int, payload: bytes, commit: bool = True) -> int:
    entries, total = build_layout([("param/w", "uint8", (len(payload),), len(payload))])
    slot, buffer = store.begin(owner, total)
    buffer[: len(payload)] = payload
    if commit:
        checksums = tuple(chunk_checksums(buffer))
        store.commit(slot, Manifest(owner, step, total, CHECKSUM_CHUNK, checksums, tuple(entries)))
    return slot


@pytest.fixture
def store(tmp_path):
    shm = ShmStore(tmp_path / "job", machine=3)
    yield shm
    shm.close()


def test_slots_alternate_and_newest_wins(store):
    slots = [_put(store, 0, step, bytes([step]) * 100) for step in (1, 2, 3)]
    assert slots == [0, 1, 0]
    assert [m.step for _, m in store.committed(0)] == [3, 2]
    _, data = store.read(0, 3)
    assert bytes(data[:100]) == bytes([3]) * 100
    assert store.read(0, 1) is None  # overwritten by step 3


def test_manifest_is_plain_json_with_layout(store):
    _put(store, 5, 7, b"abc")
    raw = (store.dir / "shard5.slot0.json").read_text()
    manifest = json.loads(raw)
    assert manifest["step"] == 7 and manifest["owner"] == 5
    assert manifest["checksum"]["algorithm"] == "crc32c"
    entry = Manifest.from_json(raw.encode()).entries[0]
    assert (entry.name, entry.dtype, entry.shape, entry.offset, entry.nbytes) == (
        "param/w",
        "uint8",
        (3,),
        0,
        3,
    )


def test_crash_between_write_and_commit_keeps_last_commit(store):
    _put(store, 0, 1, b"\x01" * 64)
    _put(store, 0, 2, b"\x02" * 64)
    # Step 3 goes into the slot of step 1 and the process dies before the manifest is written.
    _put(store, 0, 3, b"\x03" * 64, commit=False)
    assert [m.step for _, m in store.committed(0)] == [2]
    _, data = store.read(0, 2)
    assert bytes(data[:64]) == b"\x02" * 64
    # A restart in a new process sees the same thing.
    again = ShmStore(store.root, store.machine)
    assert [m.step for _, m in again.committed(0)] == [2]
    again.close()


def test_flipped_byte_is_detected(store):
    _put(store, 1, 4, bytes(range(256)) * 4)
    path = store.dir / "shard1.slot0.bin"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01
    path.write_bytes(raw)
    fresh = ShmStore(store.root, store.machine)
    # Recovery's inventory only reports copies that verify; the one that failed is no commit any more.
    assert local_inventory(fresh, world=2, procs=1, local_rank=0)[1].tolist() == [-1, -1]
    assert fresh.read(1, 4) is None and fresh.committed(1) == []
    assert [r.describe() for r in fresh.rejections] == [
        "shard 1 slot 0 (step 4): its bytes fail their checksums"
    ]
    fresh.close()


def test_private_files_and_wipe(store):
    _put(store, 0, 1, b"x" * 10)
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    for path in store.dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.wipe()
    assert not store.dir.exists()


def test_chunk_checksums_cover_every_chunk():
    data = np.arange(1000, dtype=np.uint8)
    crcs = chunk_checksums(data, chunk=300)
    assert len(crcs) == 4
    changed = data.copy()
    changed[999] ^= 1
    assert chunk_checksums(changed, chunk=300)[:3] == crcs[:3]
    assert chunk_checksums(changed, chunk=300)[3] != crcs[3]
