"""How shard bytes move between ranks: a small interface, and the torch.distributed group behind it.

`ShardTransport` posts point-to-point messages: `send(dst, data)` and `recv(src, into)` each return
a `Transfer` to `wait()` on. Between two ranks, messages match in the order they were posted, and a
receive names the exact size of its message (the replication protocol sends sizes before what they
size). Receives land in caller-provided memory — a shared-memory slot — so nothing is staged; sent
memory must stay unchanged until its transfer is waited for. A transfer that cannot complete (the
peer died, the link broke, the collective timeout passed) raises `TransportError` from `wait()`.

`GlooTransport` runs over a torch.distributed process group (the checkpoint group is gloo, so this
traffic never queues behind the gradients); `gemini_ft.realrun.engine.local_transport` is the in-process
stand-in the unit tests use.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist


class TransportError(RuntimeError):
    """A message that could not be delivered: the peer or the link failed, or the peer broke protocol."""


class Transfer(Protocol):
    def wait(self) -> None:
        """Block until the message is delivered (a send) or has landed (a receive)."""
        ...


class ShardTransport(Protocol):
    def send(self, dst: int, data: memoryview) -> Transfer:
        """Post `data` (a non-empty byte buffer) to rank `dst`."""
        ...

    def recv(self, src: int, into: memoryview) -> Transfer:
        """Post a receive of rank `src`'s next message, exactly `len(into)` bytes, into `into`."""
        ...


class GlooTransport:
    """Point-to-point messages on a torch.distributed group, straight from and into the given memory."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group

    def send(self, dst: int, data: memoryview) -> Transfer:
        tensor = _tensor(data)
        return _GlooTransfer(dist.isend(tensor, dst, group=self.group), tensor, f"send to rank {dst}")

    def recv(self, src: int, into: memoryview) -> Transfer:
        tensor = _tensor(into)
        return _GlooTransfer(dist.irecv(tensor, src, group=self.group), tensor, f"receive from rank {src}")


class _GlooTransfer:
    def __init__(self, work: dist.Work, tensor: torch.Tensor, what: str) -> None:
        self.work, self.tensor, self.what = work, tensor, what  # the tensor lives as long as the work

    def wait(self) -> None:
        try:
            self.work.wait()
        except RuntimeError as exc:  # gloo reports a closed connection or a timeout this way
            raise TransportError(f"{self.what} failed: {exc}") from exc


def _tensor(buffer: memoryview) -> torch.Tensor:
    # A view of the caller's memory (an shm slot), never a copy; torch.frombuffer refuses empty buffers.
    if not len(buffer):
        raise ValueError("a transport message must not be empty")
    return torch.frombuffer(buffer, dtype=torch.uint8)
