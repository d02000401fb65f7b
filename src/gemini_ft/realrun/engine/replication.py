"""One replication round: every rank streams shards to some peers and receives others' into its shm.

Between a sender and a receiver a round is four parts, in this order, over a `ShardTransport`:

1. a header — format, owner, step, size, checksum chunk (five little-endian int64);
2. the shard's bytes in messages of `chunk_bytes`, each sent as soon as the sender's copy of it is
   final and checksummed (`ShardSource.wait_verified`): a snapshot starts replicating while it is
   still being copied;
3. the manifest's length, and 4. the manifest (UTF-8 JSON), sent once the sender committed the shard
   locally — so a replica is never newer than its owner's own commit.

The receiver writes the chunks straight into the slot `ShmStore.begin` gives it (the one not holding
the owner's newest copy), hashes each as it lands while later ones are in flight, and commits only
when the manifest validates, agrees with the header and lists exactly the checksums it computed.
A round that breaks mid-stream (`TransportError`: the sender or the link died) raises and leaves that
slot uncommitted, the previous copy committed. Nothing is pickled.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gemini_ft.realrun.engine.checksums import checksum
from gemini_ft.realrun.engine.manifest import FORMAT, Manifest
from gemini_ft.realrun.engine.manifest import MAX_BYTES as MAX_MANIFEST_BYTES
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import ShardTransport, Transfer, TransportError

# 16 × 4 MiB posted ahead keeps gloo streaming while the receiver hashes (on the 2-core testbed
# 4 in flight reached ~0.8x of raw gloo bandwidth, 16 ~0.95x); the receives land in shm directly.
IN_FLIGHT = 16
_HEADER = struct.Struct("<5q")
_LENGTH = struct.Struct("<q")
# A manifest lists every tensor and a checksum per 4 MiB: a 2B-parameter model needs a few hundred KiB.
MAX_CHECKSUM_CHUNK = 1 << 30


class ShardSource(Protocol):
    """A shard to send: its bytes, and when they (and its manifest) are final."""

    owner: int
    step: int
    data: memoryview
    checksum_chunk: int

    def wait_verified(self, end: int) -> None:
        """Block until bytes [0, end) are final and checksummed; raise if they never will be."""
        ...

    def final_manifest(self) -> Manifest:
        """Block until the shard is committed locally; its manifest."""
        ...


@dataclass(frozen=True)
class CommittedShard:
    """A shard already committed (and verified) in a store: final from the start."""

    manifest: Manifest
    data: memoryview

    @property
    def owner(self) -> int:
        return self.manifest.owner

    @property
    def step(self) -> int:
        return self.manifest.step

    @property
    def checksum_chunk(self) -> int:
        return self.manifest.checksum_chunk

    def wait_verified(self, end: int) -> None:
        return None

    def final_manifest(self) -> Manifest:
        return self.manifest


@dataclass(frozen=True)
class Outgoing:
    """A shard to send to `dst`."""

    dst: int
    shard: ShardSource


@dataclass(frozen=True)
class Incoming:
    """A shard to receive from `src`: `owner`'s (anything else the sender claims is refused), of
    `nbytes` when the receiver knows its size (a header announcing another is refused before anything
    is allocated; unknown, the store's free space bounds it)."""

    src: int
    owner: int
    nbytes: int | None = None


@dataclass(frozen=True)
class Received:
    """What arrived from `src`: the shard's owner and step, its size, and whether it was committed."""

    src: int
    owner: int
    step: int
    nbytes: int
    ok: bool
    duration_s: float


def exchange(
    store: ShmStore,
    transport: ShardTransport,
    sends: list[Outgoing],
    recvs: list[Incoming],
    chunk_bytes: int,
    on_chunk: Callable[[int], None] | None = None,
) -> list[Received]:
    """Send `sends` and receive one shard per entry of `recvs`; returns what was received.

    Every rank of a round must call this with matching pairs and the same `chunk_bytes`.
    `on_chunk(i)` runs once chunk i of every stream went out and arrived, so fault injection can
    strike mid-replication.
    """
    start = time.perf_counter()
    headers = [bytearray(_HEADER.size) for _ in recvs]
    _wait(
        [transport.recv(r.src, memoryview(h)) for r, h in zip(recvs, headers, strict=True)]
        + [transport.send(o.dst, memoryview(bytearray(_header(o.shard)))) for o in sends]
    )
    streams = [_Stream.open(store, r, h) for r, h in zip(recvs, headers, strict=True)]
    longest = max([len(o.shard.data) for o in sends] + [s.nbytes for s in streams] + [0])

    # Keep a few chunks in flight so the link never idles between chunks; complete them in order.
    # Receives are posted first: a send may wait for the local copy, a peer's chunks need not.
    def post(offset: int) -> list[Transfer]:
        ops = [
            transport.recv(s.src, s.buffer[offset : offset + chunk_bytes])
            for s in streams
            if offset < s.nbytes
        ]
        for outgoing in sends:
            size = len(outgoing.shard.data)
            if offset < size:
                end = min(offset + chunk_bytes, size)
                outgoing.shard.wait_verified(end)
                ops.append(transport.send(outgoing.dst, outgoing.shard.data[offset:end]))
        return ops

    offsets = list(range(0, longest, chunk_bytes))
    pending = [post(offset) for offset in offsets[:IN_FLIGHT]]
    for index, offset in enumerate(offsets):
        _wait(pending[index])
        pending[index] = []
        for stream in streams:  # checksum what has fully arrived while later chunks are on the wire
            stream.advance(offset + chunk_bytes)
        if on_chunk is not None:
            on_chunk(index)
        if index + IN_FLIGHT < len(offsets):
            pending.append(post(offsets[index + IN_FLIGHT]))

    # The commit point: each sender's manifest, once its shard is committed locally.
    blobs = [bytearray(o.shard.final_manifest().to_json()) for o in sends]
    lengths = [bytearray(_LENGTH.size) for _ in streams]
    _wait(
        [transport.recv(s.src, memoryview(n)) for s, n in zip(streams, lengths, strict=True)]
        + [
            transport.send(o.dst, memoryview(bytearray(_LENGTH.pack(len(b)))))
            for o, b in zip(sends, blobs, strict=True)
        ]
    )
    manifests = [bytearray(_manifest_length(s, n)) for s, n in zip(streams, lengths, strict=True)]
    _wait(
        [transport.recv(s.src, memoryview(m)) for s, m in zip(streams, manifests, strict=True)]
        + [transport.send(o.dst, memoryview(b)) for o, b in zip(sends, blobs, strict=True)]
    )
    results = []
    for stream, raw in zip(streams, manifests, strict=True):
        manifest = stream.accept(raw)
        if manifest is not None:
            store.commit(stream.slot, manifest)
        results.append(
            Received(
                stream.src,
                stream.owner,
                stream.step,
                stream.nbytes,
                manifest is not None,
                time.perf_counter() - start,
            )
        )
    return results


def _header(shard: ShardSource) -> bytes:
    return _HEADER.pack(FORMAT, shard.owner, shard.step, len(shard.data), shard.checksum_chunk)


class _Stream:
    """One shard arriving: the slot it lands in, and the checksums of its chunks, each computed as
    soon as the chunk arrived (still in cache).

    Hashing inline on the receiving thread, not on the checksum pool: one core hashes from cache
    ~5x faster than the link delivers, and parallel hashing would take the cores that move the bytes
    (on the 2-core testbed it cut replication from ~0.9x to ~0.7x of raw gloo bandwidth).
    """

    def __init__(
        self, src: int, owner: int, step: int, nbytes: int, chunk: int, slot: int, buffer: memoryview
    ):
        self.src, self.owner, self.step, self.nbytes, self.chunk = src, owner, step, nbytes, chunk
        self.slot, self.buffer = slot, buffer
        self.values: list[int] = []
        self.done = 0

    @classmethod
    def open(cls, store: ShmStore, incoming: Incoming, raw: bytearray) -> _Stream:
        """Check the header, then take the slot not holding the owner's newest commit (uncommitted)."""
        fmt, owner, step, nbytes, chunk = _HEADER.unpack(raw)
        # Without a sane header nothing that follows can be framed: the round cannot go on.
        if (
            fmt != FORMAT
            or owner != incoming.owner
            or step < 0
            or nbytes < 0
            or not 1 <= chunk <= MAX_CHECKSUM_CHUNK
        ):
            raise TransportError(
                f"rank {incoming.src} sent a malformed header for shard {incoming.owner}: "
                f"format {fmt}, owner {owner}, step {step}, {nbytes} bytes, checksum chunk {chunk}"
            )
        if incoming.nbytes is not None and nbytes != incoming.nbytes:
            raise TransportError(
                f"rank {incoming.src} announced {nbytes:,} bytes for shard {owner}, which holds {incoming.nbytes:,}"
            )
        free = store.free_bytes()
        if nbytes > free:
            raise TransportError(
                f"rank {incoming.src} announced {nbytes:,} bytes for shard {owner}, more than the {free:,} free"
            )
        slot, buffer = store.begin(owner, nbytes)
        return cls(incoming.src, owner, step, nbytes, chunk, slot, buffer)

    def advance(self, received: int) -> None:
        received = min(received, self.nbytes)
        while self.done + self.chunk <= received or (received == self.nbytes and self.done < received):
            end = min(self.done + self.chunk, self.nbytes)
            self.values.append(checksum(self.buffer[self.done : end]))
            self.done = end

    def accept(self, raw: bytearray) -> Manifest | None:
        """The manifest if it validates, describes this stream and lists exactly its checksums."""
        manifest = Manifest.parse(raw)
        if manifest is None or (manifest.owner, manifest.step, manifest.nbytes, manifest.checksum_chunk) != (
            self.owner, self.step, self.nbytes, self.chunk,
        ):  # fmt: skip
            return None
        self.advance(self.nbytes)
        computed = tuple(self.values) or (checksum(b""),)
        return manifest if computed == manifest.checksums else None


def _manifest_length(stream: _Stream, raw: bytearray) -> int:
    (length,) = _LENGTH.unpack(raw)
    if not 1 <= length <= MAX_MANIFEST_BYTES:
        raise TransportError(f"rank {stream.src} announced a manifest of {length} bytes")
    return length


def _wait(transfers: list[Transfer]) -> None:
    for transfer in transfers:
        transfer.wait()
