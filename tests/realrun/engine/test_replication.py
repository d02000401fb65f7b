"""Replication rounds: intact replicas commit, damaged or broken-off ones never do, and the previous
replica survives. Ranks are threads on the in-process transport (milliseconds); the last test runs
the same protocol over a real gloo group in two processes."""

import dataclasses
import socket
import threading
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gemini_ft.realrun.engine.checksums import chunk_checksums
from gemini_ft.realrun.engine.local_transport import LocalNetwork
from gemini_ft.realrun.engine.manifest import Manifest, build_layout
from gemini_ft.realrun.engine.replication import CommittedShard, Incoming, Outgoing, exchange
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import GlooTransport, TransportError

CHECKSUM_BYTES = 4096
CHUNK_BYTES = 1000  # ~10 messages per shard: more than one, fewer than the sender keeps in flight
SIZE = 10_000


def _payload(owner: int, step: int, size: int = SIZE) -> bytes:
    generator = torch.Generator().manual_seed(owner * 100 + step)
    return torch.randint(0, 256, (size,), dtype=torch.uint8, generator=generator).numpy().tobytes()


def _commit_own(store: ShmStore, owner: int, step: int, size: int = SIZE) -> CommittedShard:
    payload = _payload(owner, step, size)
    entries, total = build_layout([("param/w", "uint8", (len(payload),), len(payload))])
    slot, buffer = store.begin(owner, total)
    buffer[: len(payload)] = payload
    checksums = tuple(chunk_checksums(buffer, CHECKSUM_BYTES))
    manifest = Manifest(owner, step, total, CHECKSUM_BYTES, checksums, tuple(entries))
    store.commit(slot, manifest)
    return CommittedShard(manifest, buffer)


def _round(network: LocalNetwork, stores: list[ShmStore], plan: dict) -> dict:
    """Run one round, a thread per rank: plan[rank] = (sends, recvs); returns results or exceptions."""
    results: dict = {}

    def run(rank: int) -> None:
        try:
            results[rank] = exchange(stores[rank], network.endpoint(rank), *plan[rank], CHUNK_BYTES)
        except Exception as error:
            results[rank] = error

    threads = [threading.Thread(target=run, args=(rank,)) for rank in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a round hung"
    return results


@pytest.fixture
def stores(tmp_path):
    opened = [ShmStore(tmp_path, machine) for machine in range(3)]
    yield opened
    for store in opened:
        store.close()


def _steps(store: ShmStore, owner: int) -> list[int]:
    return [manifest.step for _, manifest in store.committed(owner)]


def test_a_ring_round_commits_every_replica_byte_for_byte(stores):
    network = LocalNetwork(3, timeout_s=10)
    plan = {}
    for rank in range(3):
        shard = _commit_own(stores[rank], rank, 1, size=SIZE + 1000 * rank)  # different sizes
        plan[rank] = ([Outgoing((rank + 1) % 3, shard)], [Incoming((rank - 1) % 3, (rank - 1) % 3)])
    results = _round(network, stores, plan)
    for rank in range(3):
        owner = (rank - 1) % 3
        (received,) = results[rank]
        assert (received.src, received.owner, received.step, received.ok) == (owner, owner, 1, True)
        _, data = stores[rank].read(owner, 1)  # verifies every checksum again
        assert bytes(data[: SIZE + 1000 * owner]) == _payload(owner, 1, SIZE + 1000 * owner)


def test_a_damaged_chunk_is_never_committed_and_the_previous_replica_stays(stores):
    network = LocalNetwork(2, timeout_s=10)
    for step in (1, 2, 3):
        shard = _commit_own(stores[0], 0, step)
        if step == 3:
            network.corrupt(0, 1, message=4)  # the header is message 0: a bit flips in chunk 3
        results = _round(network, stores, {0: ([Outgoing(1, shard)], []), 1: ([], [Incoming(0, 0)])})
        assert results[1][0].ok == (step != 3)
    # Step 3 went into the slot of step 1, which is gone; step 2 is committed and intact.
    assert _steps(stores[1], 0) == [2]
    assert bytes(stores[1].read(0, 2)[1][:SIZE]) == _payload(0, 2)


def test_a_manifest_that_lies_about_the_bytes_is_never_committed(stores):
    network = LocalNetwork(2, timeout_s=10)
    shard = _commit_own(stores[0], 0, 1)
    forged = tuple(value ^ 1 for value in shard.manifest.checksums)
    lying = CommittedShard(dataclasses.replace(shard.manifest, checksums=forged), shard.data)
    results = _round(network, stores, {0: ([Outgoing(1, lying)], []), 1: ([], [Incoming(0, 0)])})
    assert results[1][0].ok is False and _steps(stores[1], 0) == []


def test_a_sender_that_dies_mid_stream_leaves_the_previous_replica_committed(stores):
    network = LocalNetwork(2, timeout_s=10)
    for step in (1, 2):
        shard = _commit_own(stores[0], 0, step)
        _round(network, stores, {0: ([Outgoing(1, shard)], []), 1: ([], [Incoming(0, 0)])})
    shard = _commit_own(stores[0], 0, 3)
    network.crash_after(0, messages=4)  # the header and three chunks out, then the process is gone
    results = _round(network, stores, {0: ([Outgoing(1, shard)], []), 1: ([], [Incoming(0, 0)])})
    assert isinstance(results[0], TransportError) and isinstance(results[1], TransportError)
    assert "rank 0 died before sending" in str(results[1])
    assert _steps(stores[1], 0) == [2]
    assert bytes(stores[1].read(0, 2)[1][:SIZE]) == _payload(0, 2)


def test_a_header_for_another_shard_stops_the_round_before_any_slot_is_touched(stores):
    network = LocalNetwork(2, timeout_s=10)
    _commit_own(stores[1], 0, 1)  # machine 1 already holds a replica of shard 0
    shard = _commit_own(stores[0], 2, 5)  # but rank 0 sends shard 2
    results = _round(network, stores, {0: ([Outgoing(1, shard)], []), 1: ([], [Incoming(0, 0)])})
    assert isinstance(results[1], TransportError) and "malformed header" in str(results[1])
    assert _steps(stores[1], 0) == [1] and _steps(stores[1], 2) == []


class GatedShard:
    """A shard whose bytes become final chunk by chunk when the test says so, like a snapshot in flight."""

    def __init__(self, committed: CommittedShard) -> None:
        self.inner = committed
        self.owner, self.step, self.data = committed.owner, committed.step, committed.data
        self.checksum_chunk = committed.checksum_chunk
        self.verified = 0
        self.committed = False
        self.changed = threading.Condition()

    def release(self, verified: int, committed: bool = False) -> None:
        with self.changed:
            self.verified, self.committed = verified, committed
            self.changed.notify_all()

    def wait_verified(self, end: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.verified >= end, 10)

    def final_manifest(self) -> Manifest:
        with self.changed:
            assert self.changed.wait_for(lambda: self.committed, 10)
        return self.inner.manifest


def _wait_until(condition, what: str) -> None:
    event = threading.Event()
    for _ in range(1000):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError(f"never: {what}")


def test_chunks_go_out_as_soon_as_they_are_verified_and_the_manifest_commits_last(stores):
    network = LocalNetwork(2, timeout_s=10)
    shard = GatedShard(_commit_own(stores[0], 0, 1))
    results: dict = {}
    receiver = threading.Thread(
        target=lambda: results.update(
            r=exchange(stores[1], network.endpoint(1), [], [Incoming(0, 0)], CHUNK_BYTES)
        )
    )
    receiver.start()
    sender = threading.Thread(
        target=lambda: exchange(stores[0], network.endpoint(0), [Outgoing(1, shard)], [], CHUNK_BYTES)
    )
    sender.start()
    _wait_until(lambda: network.sent(0, 1) == 1, "the header went out")
    shard.release(CHUNK_BYTES)  # only chunk 0 is copied and hashed
    _wait_until(lambda: network.sent(0, 1) == 2, "chunk 0 went out")
    assert network.sent(0, 1) == 2  # and chunk 1, not verified yet, did not
    shard.release(len(shard.data))  # every chunk is final, but the owner has not committed
    _wait_until(lambda: network.sent(0, 1) == 1 + 11, "every chunk went out")
    assert _steps(stores[1], 0) == []  # no manifest, no replica
    shard.release(len(shard.data), committed=True)
    sender.join(10)
    receiver.join(10)
    assert results["r"][0].ok and _steps(stores[1], 0) == [1]


# ---- the same protocol over gloo, in two processes ---------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, port: int, root: str, corrupt_step: int) -> None:
    store_ = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timedelta(seconds=30))
    dist.init_process_group("gloo", store=store_, rank=rank, world_size=2)
    store = ShmStore(root, machine=rank)
    transport = GlooTransport()
    peer = 1 - rank
    for step in (1, 2):
        shard = _commit_own(store, rank, step, size=300_000)
        if step == corrupt_step and rank == 0:
            # The receiver must reject bytes that do not match the manifest (e.g. damaged in transit).
            forged = tuple(v ^ 1 for v in shard.manifest.checksums)
            shard = CommittedShard(dataclasses.replace(shard.manifest, checksums=forged), shard.data)
        received = exchange(store, transport, [Outgoing(peer, shard)], [Incoming(peer, peer)], 50_000)
        assert received[0].owner == peer and received[0].step == step
        assert received[0].ok == (not (step == corrupt_step and rank == 1))
    dist.destroy_process_group()
    store.close()


@pytest.mark.slow
def test_over_gloo_replicas_commit_only_when_checksums_match(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), 2), nprocs=2, join=True)
    on_machine1 = ShmStore(tmp_path, machine=1)
    on_machine0 = ShmStore(tmp_path, machine=0)
    # Machine 1 kept step 1 of shard 0 and refused the corrupt step 2; machine 0 has both of shard 1's.
    assert _steps(on_machine1, 0) == [1]
    assert bytes(on_machine1.read(0, 1)[1][:300_000]) == _payload(0, 1, 300_000)
    assert _steps(on_machine0, 1) == [2, 1]
    assert bytes(on_machine0.read(1, 2)[1][:300_000]) == _payload(1, 2, 300_000)
    on_machine0.close()
    on_machine1.close()


_, TOTAL = build_layout([("param/w", "uint8", (SIZE,), SIZE)])  # a shard's size, padded


@pytest.mark.parametrize(
    ("announced", "expected"), [(2 << 30, TOTAL), (1 << 50, None)], ids=["2GiB-known", "1PiB-unknown"]
)
def test_a_header_announcing_another_size_is_refused_before_anything_is_allocated(
    stores, announced, expected
):
    from gemini_ft.realrun.engine.replication import _HEADER, FORMAT

    network = LocalNetwork(2, timeout_s=10)
    receiver, sender = network.endpoint(0), network.endpoint(1)
    _commit_own(stores[0], 1, 3)  # an older replica of shard 1 that must survive
    errors: list[Exception] = []

    def receive() -> None:
        try:
            exchange(stores[0], receiver, [], [Incoming(1, 1, expected)], CHUNK_BYTES)
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=receive)
    thread.start()
    sender.send(0, memoryview(bytearray(_HEADER.pack(FORMAT, 1, 4, announced, CHECKSUM_BYTES)))).wait()
    thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], TransportError), errors
    assert f"announced {announced:,} bytes for shard 1" in str(errors[0])
    assert _steps(stores[0], 1) == [3]  # the older replica is still committed
    assert max(p.stat().st_size for p in stores[0].dir.glob("shard1.slot*.bin")) <= TOTAL  # nothing grew
