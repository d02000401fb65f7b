"""An in-process stand-in for a process group: ranks are threads, each link an ordered mailbox.

`LocalNetwork(world)` hands out one `LocalTransport` per rank. It keeps the contract of
`gemini_ft.realrun.engine.transport`: messages between two ranks match in posting order, a receive must name
its message's exact size, and `wait()` raises `TransportError` when the sender died before sending
the message, or after `timeout_s`. A send copies its bytes at once (nothing on the sender's side
can change them afterwards). Tests can let a rank die after its n-th message (`crash_after`, the
process killed mid-stream) and damage a message on its way (`corrupt`, a bit flipped in transit),
so replication's handling of both runs in milliseconds without processes or sockets.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from gemini_ft.realrun.engine.transport import Transfer, TransportError


class LocalNetwork:
    """The links between `world` in-process ranks."""

    def __init__(self, world: int, timeout_s: float = 30.0) -> None:
        self.world, self.timeout_s = world, timeout_s
        self._lock = threading.Condition()
        self._mail: dict[tuple[int, int], dict[int, bytes]] = defaultdict(dict)  # (src, dst) → seq → bytes
        self._sent: dict[tuple[int, int], int] = defaultdict(int)
        self._posted: dict[tuple[int, int], int] = defaultdict(int)
        self._sent_by: dict[int, int] = defaultdict(int)
        self._dead: set[int] = set()
        self._crash_after: dict[int, int] = {}
        self._corrupt: set[tuple[int, int, int]] = set()

    def endpoint(self, rank: int) -> LocalTransport:
        if not 0 <= rank < self.world:
            raise ValueError(f"rank {rank} is not in a network of {self.world}")
        return LocalTransport(self, rank)

    def crash_after(self, rank: int, messages: int) -> None:
        """`rank` dies when it tries to send its message number `messages` + 1 (counted from now on)."""
        with self._lock:
            self._crash_after[rank] = self._sent_by[rank] + messages

    def crash(self, rank: int) -> None:
        """`rank` dies now: receives of its unsent messages fail."""
        with self._lock:
            self._dead.add(rank)
            self._lock.notify_all()

    def corrupt(self, src: int, dst: int, message: int) -> None:
        """Flip one bit of message number `message` (0-based, counted from now on) from `src` to `dst`."""
        with self._lock:
            self._corrupt.add((src, dst, self._sent[(src, dst)] + message))

    def sent(self, src: int, dst: int) -> int:
        """How many messages `src` has sent to `dst` so far."""
        with self._lock:
            return self._sent[(src, dst)]

    # ---- what the endpoints call -------------------------------------------------------------------
    def _deliver(self, src: int, dst: int, data: bytes) -> None:
        with self._lock:
            if src in self._dead or self._sent_by[src] >= self._crash_after.get(src, 1 << 62):
                self._dead.add(src)
                self._lock.notify_all()
                raise TransportError(f"rank {src} died (crash injected by the test)")
            seq = self._sent[(src, dst)]
            if (src, dst, seq) in self._corrupt:
                damaged = bytearray(data)
                damaged[len(damaged) // 2] ^= 0x01
                data = bytes(damaged)
            self._mail[(src, dst)][seq] = data
            self._sent[(src, dst)] = seq + 1
            self._sent_by[src] += 1
            self._lock.notify_all()

    def _post_receive(self, src: int, dst: int) -> int:
        with self._lock:
            seq = self._posted[(src, dst)]
            self._posted[(src, dst)] = seq + 1
            return seq

    def _take(self, src: int, dst: int, seq: int) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            mailbox = self._mail[(src, dst)]
            while seq not in mailbox:
                left = deadline - time.monotonic()
                if src in self._dead:
                    raise TransportError(f"rank {src} died before sending message {seq} to rank {dst}")
                if left <= 0:
                    raise TransportError(
                        f"no message {seq} from rank {src} to rank {dst} in {self.timeout_s} s"
                    )
                self._lock.wait(left)
            return mailbox.pop(seq)


class LocalTransport:
    """One rank's end of a `LocalNetwork`."""

    def __init__(self, network: LocalNetwork, rank: int) -> None:
        self.network, self.rank = network, rank

    def send(self, dst: int, data: memoryview) -> Transfer:
        if not len(data):
            raise ValueError("a transport message must not be empty")
        self.network._deliver(self.rank, dst, bytes(data))
        return _Delivered()

    def recv(self, src: int, into: memoryview) -> Transfer:
        if not len(into):
            raise ValueError("a transport message must not be empty")
        return _Receive(self.network, src, self.rank, self.network._post_receive(src, self.rank), into)


class _Delivered:
    def wait(self) -> None:
        return None


class _Receive:
    def __init__(self, network: LocalNetwork, src: int, dst: int, seq: int, into: memoryview) -> None:
        self.network, self.src, self.dst, self.seq, self.into = network, src, dst, seq, into
        self.done = False

    def wait(self) -> None:
        if self.done:
            return
        data = self.network._take(self.src, self.dst, self.seq)
        if len(data) != len(self.into):
            raise TransportError(
                f"rank {self.src} sent {len(data)} bytes where rank {self.dst} posted a receive of {len(self.into)}"
            )
        self.into[:] = data
        self.done = True
