"""How the worker parallelises its model, and what that makes of each rank's checkpoint shard.

- `fsdp`: FSDP2 (`fully_shard`) on every block and on the root, `reshard_after_forward=True`, over a
  1-D mesh of all ranks: ZeRO-3, the setting Gemini checkpoints. A rank's shard is the local part of
  every parameter (fp32 master weights) and of AdamW's two moments.
- `hsdp`: the same over a 2-D mesh (replicate × shard): parameters are sharded within a shard group
  (one machine by default) and replicated across groups, so every shard already has copies in the
  other replica groups (`twins`), which recovery tries before any CPU-memory replica.
- `ddp`: DDP with a deterministic all-reduce and ZeroRedundancyOptimizer (ZeRO-1): a rank's shard is
  its partition of whole parameters and their AdamW state; after a load each rank broadcasts its
  partition.

bf16 goes through `MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)` under FSDP2 (the
shard keeps fp32 master weights) and through autocast under DDP. The data stream's position is a
tensor of the shard too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.engine.manifest import Layout
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.worker.model import Decoder, ordered_allreduce_hook

PARAM_DTYPE = {"fp32": "float32", "bf16": "bfloat16"}


@dataclass
class Parallel:
    """The parallelised model, its optimizer, this rank's shard codec and what recovery must know."""

    module: nn.Module
    """What the training step calls (DDP's wrapper, or the FSDP2 module itself)."""
    model: Decoder
    optimizer: torch.optim.Optimizer
    codec: ShardCodec
    layouts: tuple[Layout, ...]
    """The layout of every rank's shard, by rank."""
    twins: tuple[tuple[int, ...], ...]
    """By rank, the other ranks whose shard holds the same state (HSDP's replica groups)."""
    autocast: Callable[[], contextlib.AbstractContextManager]
    """The context a forward and backward run in (autocast for DDP in bf16, else nothing)."""
    no_sync: Callable[[], contextlib.AbstractContextManager]
    """The context of a micro-batch whose gradients are not reduced yet (gradient accumulation)."""

    def shard_bytes_per_parameter(self) -> float:
        """This rank's shard bytes over the parameters whose state it holds (12 for fp32 + AdamW)."""
        plan = self.codec.plan()
        elements = sum(
            e.nbytes // max(1, _itemsize(e.dtype)) for e in plan.entries if e.name.startswith("param/")
        )
        state = sum(e.nbytes for e in plan.entries if not e.name.startswith("extra/"))
        return state / elements if elements else 0.0


def _itemsize(dtype: str) -> int:
    return torch.empty(0, dtype=getattr(torch, dtype)).element_size()


def layouts_of(cfg: RealRunConfig) -> tuple[Layout, ...]:
    """The layout every rank's shard has in this job (torch-free arithmetic on the mesh)."""
    pd = PARAM_DTYPE[cfg.dtype]
    if cfg.parallelism == "ddp":
        return tuple(
            Layout("ddp", (cfg.world_size,), ("zero",), ("Zero1()",), (r,), pd) for r in range(cfg.world_size)
        )
    if cfg.parallelism == "fsdp":
        return tuple(
            Layout("fsdp", (cfg.world_size,), ("shard",), ("Shard(dim=0)",), (r,), pd)
            for r in range(cfg.world_size)
        )
    replicate, shard = cfg.mesh_shape
    return tuple(
        Layout("hsdp", (replicate, shard), ("replicate", "shard"), ("Replicate()", "Shard(dim=0)"),
               divmod(r, shard), pd)
        for r in range(cfg.world_size)
    )  # fmt: skip


def twins_of(cfg: RealRunConfig) -> tuple[tuple[int, ...], ...]:
    """By rank, the ranks of the other HSDP replica groups at the same shard position (else none)."""
    if cfg.parallelism != "hsdp":
        return tuple(() for _ in range(cfg.world_size))
    replicate, shard = cfg.mesh_shape
    return tuple(
        tuple(g * shard + r % shard for g in range(replicate) if g != r // shard)
        for r in range(cfg.world_size)
    )


def parallelize(
    cfg: RealRunConfig, model: Decoder, device: torch.device, rank: int, extra: list[tuple[str, torch.Tensor]]
) -> Parallel:
    """Wrap `model` for `cfg.parallelism`; `extra` are more tensors of the training state for the shard."""
    model.activation_checkpointing = cfg.activation_checkpointing
    layouts, twins = layouts_of(cfg), twins_of(cfg)
    if cfg.parallelism == "ddp":
        return _ddp(cfg, model, device, rank, extra, layouts, twins)
    if cfg.parallelism == "fsdp":
        mesh = init_device_mesh(device.type, (cfg.world_size,), mesh_dim_names=("shard",))
    else:
        mesh = init_device_mesh(device.type, cfg.mesh_shape, mesh_dim_names=("replicate", "shard"))
    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if cfg.dtype == "bf16" else torch.float32, reduce_dtype=torch.float32
    )
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    codec = ShardCodec(list(model.named_parameters()), optimizer, layouts[rank], extra=extra)

    @contextlib.contextmanager
    def no_sync() -> Iterator[None]:
        model.set_requires_gradient_sync(False)  # type: ignore[operator]
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)  # type: ignore[operator]

    return Parallel(model, model, optimizer, codec, layouts, twins, contextlib.nullcontext, no_sync)


def _ddp(cfg, model, device, rank, extra, layouts, twins) -> Parallel:
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, bucket_cap_mb=25
    )
    ddp.register_comm_hook(None, ordered_allreduce_hook)
    optimizer = ZeroRedundancyOptimizer(
        model.parameters(), optimizer_class=torch.optim.AdamW, lr=cfg.lr, parameters_as_bucket_view=True
    )
    names = {param: name for name, param in model.named_parameters()}
    owned = [(names[p], p) for group in optimizer.optim.param_groups for p in group["params"]]

    def broadcast_partitions() -> None:
        """Every rank gets every parameter from the rank whose partition holds it (as ZeRO does)."""
        for owner, groups in enumerate(optimizer._partition_parameters()):
            for group in groups:
                for param in group["params"]:
                    dist.broadcast(param.data, src=owner)

    codec = ShardCodec(owned, optimizer.optim, layouts[rank], extra=extra, after_load=broadcast_partitions)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16")

    return Parallel(ddp, model, optimizer, codec, layouts, twins, autocast, ddp.no_sync)
