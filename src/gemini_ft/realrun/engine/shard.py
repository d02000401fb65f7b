"""A rank's checkpoint shard: the local part of the parameters it owns plus their optimizer state, as flat bytes.

Which parameters a rank owns is the parallelism's business (the worker's `parallel` module): ZeRO-1
gives each rank a partition of whole parameters, FSDP2 and HSDP every parameter's local shard (a
DTensor's `to_local()`, a view of FSDP's own storage). `ShardCodec` takes them with the optimizer
and the shard's `Layout`, and packs the optimizer state into one arena per (device, dtype) — for a
DTensor parameter, a DTensor whose local tensor is a view into the arena. A snapshot then copies few
large regions instead of hundreds of tensors — one large copy runs at memcpy bandwidth, hundreds of
small ones from a background thread reach about two thirds of it (measured here: ~15 vs ~11 GB/s).
AdamW updates its state in place, so the views stay valid for the whole run.

`ShardCodec.plan()` maps the shard onto a flat buffer: the named entries (what a manifest records)
and the copy regions (what a snapshot or a local restore moves). The layout follows the memory
layout, so a storage whose tensors tile it exactly is one region.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from gemini_ft.realrun.engine.manifest import ALIGN, DTYPES, Entry, Layout

_TORCH_DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
    "uint8": torch.uint8, "bool": torch.bool,
}  # fmt: skip


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a manifest names, looked up in the allow-list (a peer's string is data, not code)."""
    try:
        return _TORCH_DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype {name!r} is not one a shard may hold ({', '.join(DTYPES)})") from None


class ShardMismatch(ValueError):
    """A shard whose tensors are not this rank's (other names, dtypes or shapes): never loaded."""


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of `tensor` this rank holds: a DTensor's local shard (no copy), else the tensor."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor.detach()


@dataclass(frozen=True)
class Region:
    """A contiguous byte range of the live state (`source`, a uint8 view) and where it sits in the shard."""

    source: torch.Tensor
    offset: int

    @property
    def nbytes(self) -> int:
        return self.source.numel()


@dataclass(frozen=True)
class ShardPlan:
    """The shard's entries (manifest order), its size in bytes, and the regions that carry its bytes."""

    entries: list[Entry]
    nbytes: int
    regions: list[Region]


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _byte_view(tensor: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """A uint8 view of `length` bytes of `tensor`'s storage from byte `start` (no copy)."""
    return torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(
        tensor.untyped_storage(), start, (length,), (1,)
    )


def host_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy between two host uint8 tensors with one memcpy on one core.

    torch's copy_ splits a large copy over its intra-op threads, which on a busy machine takes
    cores from training without copying faster: memory bandwidth is the limit (measured here:
    numpy 69 ms on one core vs torch 72 ms on two for 1.1 GB). numpy releases the GIL meanwhile.
    """
    np.copyto(dst.numpy(), src.numpy())


def plan_shard(
    named: list[tuple[str, torch.Tensor]], global_shapes: dict[str, tuple[int, ...]] | None = None
) -> ShardPlan:
    """Lay `named` tensors out as one flat shard: tensors that tile one storage exactly share a region.

    A region is a contiguous byte range of live memory copied with one memcpy; regions sit at
    64-byte aligned offsets and each entry keeps its offset inside its region, so the flat shard is
    a byte-for-byte image of the regions. Tensors that do not tile their storage (gaps, overlaps,
    tied weights) each get a region of their own.
    """
    by_storage: dict[tuple, list[tuple[int, str, torch.Tensor]]] = {}
    for name, tensor in named:
        if not tensor.is_contiguous():
            raise ValueError(f"checkpoint tensor {name} is not contiguous")
        key = (tensor.device, tensor.untyped_storage().data_ptr())
        start = tensor.storage_offset() * tensor.element_size()
        by_storage.setdefault(key, []).append((start, name, tensor))
    groups: list[list[tuple[int, str, torch.Tensor]]] = []
    for members in by_storage.values():
        members.sort(key=lambda member: (member[0], _nbytes(member[2])))  # empty ones first at a tie
        tiled = all(a[0] + _nbytes(a[2]) == b[0] for a, b in pairwise(members))
        groups += [members] if tiled else [[member] for member in members]
    offsets: dict[str, int] = {}
    regions, offset = [], 0
    for members in groups:
        low = members[0][0]
        length = members[-1][0] + _nbytes(members[-1][2]) - low
        regions.append(Region(_byte_view(members[0][2], low, length), offset))
        for start, name, _ in members:
            offsets[name] = offset + start - low
        offset += -(-length // ALIGN) * ALIGN
    shapes = global_shapes or {}
    entries = [
        Entry(name, str(t.dtype).removeprefix("torch."), tuple(t.shape), offsets[name], _nbytes(t),
              shapes.get(name, tuple(t.shape)))
        for name, t in named
    ]  # fmt: skip
    return ShardPlan(entries, offset, regions)


class ShardCodec:
    """The named local tensors of this rank's checkpoint shard, how they map to flat bytes, and how to
    load them back in place.

    `params`: (fully qualified name, parameter) of every parameter whose optimizer state this rank
    holds in `optimizer`; `extra`: more named tensors of the training state (the data stream's
    position); `layout`: what the manifest records and what a load must match; `after_load`: what the
    parallelism needs once every rank has loaded (ZeRO-1: each rank broadcasts its partition).
    """

    def __init__(
        self,
        params: Sequence[tuple[str, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        layout: Layout,
        *,
        extra: Sequence[tuple[str, torch.Tensor]] = (),
        after_load: Callable[[], None] | None = None,
    ) -> None:
        self.params = list(params)
        self.by_name = dict(self.params)
        self.optimizer, self.layout = optimizer, layout
        self.extra = list(extra)
        self._after_load = after_load
        self._pack_state()

    def _named(self) -> list[tuple[str, torch.Tensor]]:
        """Every tensor of the shard, as the live (possibly distributed) tensor."""
        out = []
        for name, param in self.params:
            out.append((f"param/{name}", param))
            state = self.optimizer.state.get(param, {})
            out += [(f"optim/{name}/{key}", v) for key, v in sorted(state.items()) if torch.is_tensor(v)]
        return out + [(f"extra/{name}", tensor) for name, tensor in self.extra]

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """Every tensor of the shard as this rank holds it (a DTensor's local part)."""
        return [(name, local(tensor)) for name, tensor in self._named()]

    def _pack_state(self) -> None:
        """Move the optimizer state into one arena per (device, dtype), creating AdamW's initial state.

        Creating it now (step 0, zero moments — exactly what AdamW's first step would create) also
        gives a persistent checkpoint taken before the first step tensors to load into. A DTensor
        moment stays a DTensor (the optimizer computes on it) whose local part is the arena's view.
        """
        found: list[tuple[dict, str, torch.Tensor]] = []
        for _, param in self.params:
            state = self.optimizer.state.setdefault(param, {})
            if not state:
                state.update(
                    step=torch.tensor(0.0),
                    exp_avg=torch.zeros_like(param, memory_format=torch.contiguous_format),
                    exp_avg_sq=torch.zeros_like(param, memory_format=torch.contiguous_format),
                )
            found += [(state, key, value) for key, value in sorted(state.items()) if torch.is_tensor(value)]
        sizes: dict[tuple[torch.device, torch.dtype], int] = defaultdict(int)
        for _, _, value in found:
            part = local(value)
            sizes[(part.device, part.dtype)] += part.numel()
        arenas = {key: torch.empty(n, dtype=key[1], device=key[0]) for key, n in sizes.items()}
        used: dict[tuple[torch.device, torch.dtype], int] = defaultdict(int)
        with torch.no_grad():
            for state, key, value in found:
                part = local(value)
                arena_key = (part.device, part.dtype)
                start = used[arena_key]
                view = arenas[arena_key][start : start + part.numel()].view(part.shape)
                view.copy_(part)
                if isinstance(value, DTensor):
                    view = DTensor.from_local(
                        view, value.device_mesh, value.placements, run_check=False, shape=value.shape,
                        stride=value.stride(),
                    )  # fmt: skip
                state[key] = view
                used[arena_key] = start + part.numel()

    def plan(self) -> ShardPlan:
        """Entries and copy regions of the shard as it is laid out in memory now."""
        named = self._named()
        return plan_shard(
            [(name, local(t)) for name, t in named], {name: tuple(t.shape) for name, t in named}
        )

    def check(self, entries: Sequence[Entry]) -> None:
        """A ShardMismatch unless `entries` name exactly this shard's tensors with their dtypes and shapes."""
        mine = {e.name: (e.dtype, e.shape, e.global_shape) for e in self.plan().entries}
        theirs = {e.name: (e.dtype, e.shape, e.global_shape) for e in entries}
        if mine != theirs:
            missing, unknown = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
            changed = sorted(n for n in mine.keys() & theirs.keys() if mine[n] != theirs[n])
            raise ShardMismatch(
                f"the shard's tensors differ from this rank's: missing {missing[:3]}, unknown {unknown[:3]},"
                f" other dtype or shape {changed[:3]}"
            )

    def load(self, entries: Sequence[Entry], data: memoryview) -> None:
        """Copy a shard's bytes into this rank's parameters, optimizer state and extra tensors, in place
        (ShardMismatch, and nothing copied, for a shard of other tensors)."""
        self.check(entries)
        flat = torch.frombuffer(data, dtype=torch.uint8) if len(data) else torch.empty(0, dtype=torch.uint8)
        plan = self.plan()
        with torch.no_grad():
            if list(entries) == plan.entries:  # our own layout: a few large copies
                # torch's copy here: nothing else runs during a restore, and numpy's memcpy is half
                # as fast in this direction (shm → 64-byte aligned arena; measured 139 vs 69 ms).
                for region in plan.regions:
                    region.source.copy_(flat[region.offset : region.offset + region.nbytes])
                return
            targets = dict(self.tensors())
            for entry in entries:  # the same tensors laid out otherwise (another version): one by one
                value = flat[entry.offset : entry.offset + entry.nbytes].view(torch_dtype(entry.dtype))
                targets[entry.name].copy_(value.reshape(entry.shape))

    def after_load(self) -> None:
        """What the parallelism needs once every rank has loaded its shard (collective where it is)."""
        if self._after_load is not None:
            self._after_load()
