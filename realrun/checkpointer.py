"""The in-memory checkpoint engine of one rank: its ZeRO shard as flat bytes, snapshotted asynchronously.

`ShardCodec` lists the tensors a rank owns (its ZeroRedundancyOptimizer partition of the parameters
and their optimizer state) and loads them back. `Checkpointer.snapshot(step)` hands the copy to a
background thread that overlaps the next forward/backward; the training loop calls `wait_copied()`
before the optimizer mutates the state, and the thread then checksums, commits locally and replicates
to the placement's peers. On CUDA the copy goes to pinned memory on a side stream first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer

from realrun.measurements import EventLog
from realrun.replication import Outgoing, exchange
from realrun.shm_store import Entry, ShmStore, build_layout, chunk_checksums, make_manifest


class ShardCodec:
    """The named tensors of this rank's checkpoint shard, and how to put them back."""

    def __init__(self, model: nn.Module, optimizer: ZeroRedundancyOptimizer) -> None:
        names = {param: name for name, param in model.named_parameters()}
        self.optimizer = optimizer
        self.local = optimizer.optim  # the rank-local optimizer over this rank's partition
        self.params = [(names[p], p) for group in self.local.param_groups for p in group["params"]]
        self.by_name = dict(self.params)

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        out = []
        for name, param in self.params:
            out.append((f"param/{name}", param.detach()))
            state = self.local.state.get(param, {})
            out += [
                (f"optim/{name}/{key}", value)
                for key, value in sorted(state.items())
                if isinstance(value, torch.Tensor)
            ]
        return out

    def ensure_state(self) -> None:
        """AdamW state as it is before the first step, so a persistent checkpoint has tensors to load into."""
        for _, param in self.params:
            if not self.local.state.get(param):
                self.local.state[param] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(param),
                    "exp_avg_sq": torch.zeros_like(param),
                }

    def load(self, entries: list[Entry], data: memoryview) -> None:
        """Copy a shard's bytes into this rank's parameters and optimizer state."""
        flat = torch.frombuffer(data, dtype=torch.uint8) if len(data) else torch.empty(0, dtype=torch.uint8)
        with torch.no_grad():
            for entry in entries:
                kind, _, rest = entry.name.partition("/")
                dtype = getattr(torch, entry.dtype)
                value = flat[entry.offset : entry.offset + entry.nbytes].view(dtype).reshape(entry.shape)
                if kind == "param":
                    param = self.by_name[rest]
                    param.copy_(value.to(param.device))
                else:
                    name, _, key = rest.rpartition("/")
                    param = self.by_name[name]
                    device = param.device if key != "step" else torch.device("cpu")
                    self.local.state.setdefault(param, {})[key] = value.clone().to(device)

    def broadcast_params(self) -> None:
        """Every rank gets every parameter from the rank whose shard owns it (as ZeRO does after a step)."""
        for rank, groups in enumerate(self.optimizer._partition_parameters()):
            for group in groups:
                for param in group["params"]:
                    dist.broadcast(param.data, src=rank)

    def layout(self) -> tuple[list[Entry], int]:
        specs = [
            (n, str(t.dtype).removeprefix("torch."), tuple(t.shape), t.numel() * t.element_size())
            for n, t in self.tensors()
        ]
        return build_layout(specs)


@dataclass(frozen=True)
class Route:
    """Where this rank's shard goes and whose shards it stores (ranks on the checkpoint group)."""

    send_to: list[int]
    receive_from: list[int]


class Checkpointer:
    """Asynchronous snapshot → local commit → replication, one checkpoint in flight at a time."""

    def __init__(
        self,
        store: ShmStore,
        rank: int,
        codec: ShardCodec,
        route: Route,
        group: dist.ProcessGroup | None,
        events: EventLog,
        chunk_bytes: int,
        fault: Callable[[int, str], None] = lambda step, phase: None,
    ) -> None:
        self.store, self.rank, self.codec, self.route = store, rank, codec, route
        self.group, self.events, self.chunk_bytes, self.fault = group, events, chunk_bytes, fault
        self._copied = threading.Event()
        self._copied.set()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._cuda = torch.cuda.is_available() and any(t.is_cuda for _, t in codec.tensors())
        self._stream = torch.cuda.Stream() if self._cuda else None
        self._pinned: torch.Tensor | None = None

    def snapshot(self, step: int) -> None:
        """Start checkpointing the state as it is after `step`; returns once the job is queued."""
        self.wait_done()
        self._copied.clear()
        self._thread = threading.Thread(target=self._run, args=(step,), name=f"snapshot-{step}", daemon=True)
        self._thread.start()

    def wait_copied(self) -> None:
        """Block until the shard's bytes are in shared memory (call before the optimizer step)."""
        self._copied.wait()
        self._raise()

    def wait_done(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("checkpoint thread failed") from error

    def _run(self, step: int) -> None:
        try:
            manifest, data = self._snapshot(step)
            self._replicate(step, manifest, data)
        except BaseException as error:  # surfaced in the training thread by wait_*()
            self._error = error
            self._copied.set()

    def _snapshot(self, step: int) -> tuple[dict, memoryview]:
        start = time.perf_counter()
        entries, total = self.codec.layout()
        slot, buffer = self.store.begin(self.rank, total)
        flat = torch.frombuffer(buffer, dtype=torch.uint8) if total else torch.empty(0, dtype=torch.uint8)
        tensors = [t for _, t in self.codec.tensors()]
        if self._cuda:
            self._copy_from_cuda(entries, tensors, flat)
        else:
            for entry, tensor in zip(entries, tensors, strict=True):
                flat[entry.offset : entry.offset + entry.nbytes].copy_(tensor.reshape(-1).view(torch.uint8))
        self._copied.set()
        copy_s = time.perf_counter() - start
        self.events.log("snapshot", step, nbytes=total, duration_s=copy_s, source="local")
        self.fault(step, "snapshot")
        checksums = chunk_checksums(buffer)
        manifest = make_manifest(self.rank, step, entries, total, checksums)
        self.store.commit(self.rank, slot, manifest)
        self.events.log(
            "commit",
            step,
            nbytes=total,
            duration_s=time.perf_counter() - start,
            source="local",
            peer=self.rank,
        )
        return manifest, buffer

    def _copy_from_cuda(self, entries: list[Entry], tensors: list[torch.Tensor], flat: torch.Tensor) -> None:
        # Device → pinned host on a side stream (overlaps compute on the default stream), then host → shm.
        total = flat.numel()
        if self._pinned is None or self._pinned.numel() != total:
            self._pinned = torch.empty(total, dtype=torch.uint8, pin_memory=True)
        assert self._stream is not None
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            for entry, tensor in zip(entries, tensors, strict=True):
                view = tensor.reshape(-1).view(torch.uint8)
                self._pinned[entry.offset : entry.offset + entry.nbytes].copy_(view, non_blocking=True)
        self._stream.synchronize()
        flat.copy_(self._pinned)

    def _replicate(self, step: int, manifest: dict, data: memoryview) -> None:
        if not self.route.send_to and not self.route.receive_from:
            return
        start = time.perf_counter()
        sends = [Outgoing(dst, manifest, data) for dst in self.route.send_to]
        received = exchange(
            self.store, sends, self.route.receive_from, self.group, self.chunk_bytes,
            on_chunk=lambda index: self.fault(step, "replicate") if index == 0 else None,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        for dst in self.route.send_to:
            self.events.log("replicate", step, nbytes=len(data), duration_s=elapsed, source="local", peer=dst)
        for item in received:
            self.events.log(
                "commit",
                item.step,
                nbytes=item.nbytes,
                duration_s=item.duration_s,
                source="peer",
                peer=item.src,
                ok=item.ok,
            )
