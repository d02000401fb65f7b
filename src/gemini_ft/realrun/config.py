"""The resolved configuration of one real run: a frozen, validated model shared by launcher and workers.

The launcher validates the CLI flags into `RealRunConfig`, writes it as JSON into the run directory
and every worker reads it back, so all processes train, checkpoint and fail by the same plan.
`ModelShape` is the model's part of it: `tiny` (~0.2M parameters) or a count such as `1m`, `25m`, `1b`,
the width picked by size and the depth filling the rest (torch-free, so the launcher checks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gemini_ft.common.errors import UserError
from gemini_ft.common.tracking import check_tracker
from gemini_ft.placement.registry import REAL_PLACEMENTS, check_placement

# A chunk is a message of its own: below 1 KiB the per-chunk overhead dominates and a zero-byte chunk
# (1e-9 MiB) cannot make progress at all.
MIN_CHUNK_MIB = 1 / 1024
VOCAB = 256
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kmb]?)$")
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}


@dataclass(frozen=True)
class ModelShape:
    """Which model (gpt or llama), its width, depth, heads and context; about 12·layers·width² + 2·vocab·width
    parameters (11·layers·width² for the Llama model, whose SwiGLU is 8/3 wide and keys and values half)."""

    width: int
    layers: int
    heads: int
    context: int
    vocab: int = VOCAB
    kind: str = "gpt"

    @property
    def kv_heads(self) -> int:
        """Key and value heads of the Llama model's grouped-query attention: half the query heads."""
        return max(1, self.heads // 2)

    @property
    def ffn(self) -> int:
        """Hidden width of the Llama model's SwiGLU: 8/3 of the width, rounded up to a multiple of 64."""
        return -(-8 * self.width // (3 * 64)) * 64

    @property
    def block_parameters(self) -> int:
        w = self.width
        if self.kind == "llama":
            kv = self.kv_heads * (w // self.heads)
            return 2 * w * w + 2 * w * kv + 3 * w * self.ffn + 2 * w
        return 12 * w * w + 13 * w

    @property
    def parameters(self) -> int:
        w = self.width
        outside = 2 * self.vocab * w + (w if self.kind == "llama" else self.context * w + 2 * w)
        return self.layers * self.block_parameters + outside


def parse_model_size(text: str, kind: str = "gpt") -> ModelShape:
    """`tiny` or a parameter count with an optional k/m/b suffix, between 100k and 2b, for `kind`."""
    text = text.strip().lower()
    if text == "tiny":
        return ModelShape(width=64, layers=2, heads=2, context=32, kind=kind)
    match = _SIZE.match(text)
    target = float(match.group(1)) * _UNITS[match.group(2)] if match else -1
    if not 1e5 <= target <= 2e9:
        raise UserError("model_size", text, "'tiny' or a parameter count from 100k to 2b, e.g. 1m, 50m, 1b")
    width = 128 if target < 3e6 else 256 if target < 3e7 else 768 if target < 3e8 else 2048
    probe = ModelShape(width=width, layers=1, heads=max(1, width // 64), context=64, kind=kind)
    layers = max(1, round((target - 2 * VOCAB * width) / probe.block_parameters))
    return ModelShape(width=width, layers=layers, heads=probe.heads, context=64, kind=kind)


class RealRunConfig(BaseModel):
    """Everything a real run needs; `failures` holds the `--fail` texts (parsed by `gemini_ft.realrun.faults`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    machines: int = Field(2, ge=1, le=64, description="Emulated machines (one torchrun agent each).")
    procs_per_machine: int = Field(1, ge=1, le=16, description="Training processes per machine.")
    model_size: str = Field("tiny", description="'tiny' or a parameter count such as 1m, 50m, 1b.")
    model: Literal["gpt", "llama"] = Field(
        "gpt",
        description="gpt (LayerNorm, learned positions, GELU MLP) or llama (RMSNorm, rotary embeddings, SwiGLU,"
        " grouped-query attention).",
    )
    parallelism: Literal["ddp", "fsdp", "hsdp"] = Field(
        "fsdp",
        description="fsdp: FSDP2 (ZeRO-3) per block and the root on a 1-D mesh; hsdp: a 2-D mesh, replicate"
        " × shard (every shard has copies in the other replica groups); ddp: DDP + ZeRO-1.",
    )
    hsdp_shard: int | None = Field(
        None, ge=1, description="With hsdp: ranks per shard group (default: procs_per_machine, one machine)."
    )
    dtype: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: forward and backward in bfloat16, gradients reduced in fp32; the shard keeps fp32"
        " master weights and AdamW's two moments (12 bytes per parameter) either way.",
    )
    grad_accum: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    activation_checkpointing: bool = Field(
        False, description="Recompute each block's activations in the backward pass instead of keeping them."
    )
    clip_grad_norm: float | None = Field(None, gt=0, description="Clip the gradients' total norm to this.")
    placement: Literal[REAL_PLACEMENTS] = Field(  # type: ignore[valid-type]
        "group", description="Replica placement (gemini_ft.placement.layout)."
    )
    replicas: int = Field(2, ge=1, description="Copies m of each shard, the owner's included.")
    ckpt_every: int = Field(1, ge=1, description="Steps between in-memory checkpoints.")
    persist_every: int = Field(10, ge=1, description="Steps between persistent (DCP) checkpoints.")
    persist_mode: Literal["async", "sync"] = Field(
        "async",
        description="async: each rank's persister process writes the persistent checkpoint from the committed"
        " in-memory copy while training goes on; sync: every rank writes it with dcp.save and training waits.",
    )
    persist_on_failure: bool = Field(
        False,
        description="After a recovery from memory, persist the recovered step at once, so the persistent"
        " fallback is the newest committed step, not the last periodic one.",
    )
    steps: int = Field(20, ge=1, description="Training steps.")
    failures: tuple[str, ...] = Field((), description="Failure specs, e.g. sw@step=30:rank=1.")
    out: Path = Field(Path("realrun-out"), description="Run directory for events, checkpoints and Parquet.")
    seed: int = Field(0, ge=0, description="Seed of the model initialisation and synthetic data.")
    batch_size: int = Field(4, ge=1, description="Samples per rank per step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    port: int = Field(29531, ge=1024, le=65535, description="Loopback port of the c10d rendezvous store.")
    max_restarts: int = Field(8, ge=0, description="torchrun --max-restarts per agent.")
    keep_alive_s: int = Field(
        1,
        ge=1,
        le=60,
        description="torchrun rendezvous keep-alive interval in seconds; a machine that misses two in a "
        "row is dropped, so a dead machine no longer holds up the next round (torchrun's default: 5 s x 3).",
    )
    chunk_mib: float = Field(
        4.0,
        ge=MIN_CHUNK_MIB,
        le=1024,
        description="Replication chunk size in MiB (at least 1 KiB = 0.0009765625; whole bytes are used).",
    )
    timeout_s: float = Field(
        120.0, gt=0, description="Collective timeout and per-run wall-clock limit factor."
    )
    time_limit_s: float = Field(
        1800.0, gt=0, description="Give up (and clean up) after this many seconds of wall-clock time."
    )
    force: bool = Field(
        False,
        description="Reuse an --out directory that holds a previous gemini-ft realrun (its files are replaced).",
    )
    cleanup: bool = Field(
        False,
        description="Only remove the shared memory of dead gemini-ft jobs (/dev/shm/gemini-ft-*), then exit.",
    )
    disk_baseline: bool = Field(True, description="Measure a DCP save and load of the same state at the end.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="cuda (NCCL) when available, else cpu (gloo)."
    )
    netns: bool = Field(
        False,
        description="Each machine in its own network namespace on a bridge (root; gemini_ft.realrun.testbed.netns).",
    )
    link_gbps: float | None = Field(
        None,
        ge=0.001,
        le=400,
        description="Per-machine link rate in Gbit/s, each direction (tc tbf); needs netns.",
    )
    link_latency_ms: float = Field(
        0.0, ge=0, le=1000, description="One-way machine-to-machine delay in ms (tc netem); needs netns."
    )
    track: Literal["none", "tensorboard", "wandb"] = Field(
        "none",
        description="Experiment tracker the launcher logs the job's view to (gemini_ft.realrun.testbed.tracking).",
    )
    track_dir: Path | None = Field(
        None, description="Tracking directory, one run per job inside; default: <out>/track."
    )
    track_online: bool = Field(
        False, description="With --track wandb: sync to the W&B server while running (default: offline)."
    )
    gpu_snapshot: Literal["auto", "on", "off"] = Field(
        "auto",
        description="On CUDA, copy the shard device-to-device first so the optimizer never waits on PCIe "
        "(the device-to-host copy then overlaps the next iteration; a snapshot due while it is in flight "
        "is skipped and counted); auto: when the GPU has room for a second copy of the shard.",
    )

    @model_validator(mode="after")
    def _check(self) -> RealRunConfig:
        if self.replicas > self.machines:
            raise UserError("replicas", self.replicas, f"must be at most machines = {self.machines}")
        check_placement(
            self.placement, self.machines, self.replicas, field="placement", allowed=REAL_PLACEMENTS
        )
        for flag, value, unset in (
            ("link_gbps", self.link_gbps, None),
            ("link_latency_ms", self.link_latency_ms, 0.0),
        ):
            if value != unset and not self.netns:
                raise UserError(flag, value, "shapes the links of --netns; add --netns")
        check_tracker(self.track)
        if self.track_online and self.track != "wandb":
            raise UserError("track_online", True, "is for track = wandb")
        if self.persist_mode == "async" and self.persist_every % self.ckpt_every:
            raise UserError(
                "persist_every", self.persist_every,
                f"with persist_mode = async must be a multiple of ckpt_every = {self.ckpt_every}: the persister"
                " writes from the in-memory checkpoint of that step",
            )  # fmt: skip
        if self.hsdp_shard is not None:
            if self.parallelism != "hsdp":
                raise UserError("hsdp_shard", self.hsdp_shard, "is for parallelism = hsdp")
            if self.world_size % self.hsdp_shard:
                raise UserError(
                    "hsdp_shard",
                    self.hsdp_shard,
                    f"must divide the world size, machines × procs = {self.world_size}",
                )
        return self

    @property
    def mesh_shape(self) -> tuple[int, ...]:
        """The device mesh: (world,) for ddp and fsdp, (replicate, shard) for hsdp."""
        if self.parallelism != "hsdp":
            return (self.world_size,)
        shard = self.hsdp_shard or self.procs_per_machine
        return (self.world_size // shard, shard)

    @property
    def chunk_bytes(self) -> int:
        """The replication chunk in whole bytes (at least 1024)."""
        return int(self.chunk_mib * 2**20)

    @property
    def world_size(self) -> int:
        return self.machines * self.procs_per_machine
