"""What the checkpoint engine's components are configured with: frozen, validated at construction.

The engine never sees the run's configuration (`gemini_ft.realrun.config`); the worker derives these from it
(`gemini_ft.realrun.worker.train`), and tests and benchmarks build them directly. A bad value raises
ValueError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gemini_ft.realrun.engine.manifest import Layout

# A chunk is a message of its own: below 1 KiB the per-message overhead dominates.
MIN_CHUNK_BYTES = 1024
GPU_SNAPSHOT = ("auto", "on", "off")


def _check_chunk(chunk_bytes: int) -> None:
    if type(chunk_bytes) is not int or chunk_bytes < MIN_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes = {chunk_bytes!r}: must be an integer of at least {MIN_CHUNK_BYTES}")


@dataclass(frozen=True)
class CheckpointConfig:
    """One rank's in-memory checkpoints: its shard, where replicas go and come from, how they travel."""

    rank: int
    """This rank's logical rank, which is also the owner id of its shard."""
    send_to: tuple[int, ...] = ()
    """Ranks that keep a replica of this rank's shard (from gemini_ft.placement.layout)."""
    receive_from: tuple[int, ...] = ()
    """Ranks whose shards this rank keeps on its machine, one receive from each per checkpoint."""
    receive_bytes: tuple[int, ...] = ()
    """The size of each of those shards, in the same order (empty: unknown, bounded by free memory)."""
    chunk_bytes: int = 4 << 20
    """Replication message size in bytes."""
    gpu_snapshot: Literal["auto", "on", "off"] = "auto"
    """On CUDA, copy device-to-device first (auto: when the GPU has room); see copy_engine."""

    def __post_init__(self) -> None:
        if type(self.rank) is not int or self.rank < 0:
            raise ValueError(f"rank = {self.rank!r}: must be a non-negative integer")
        for name in ("send_to", "receive_from"):
            peers = tuple(getattr(self, name))
            object.__setattr__(self, name, peers)  # any sequence in, a tuple kept
            if any(type(p) is not int or p < 0 or p == self.rank for p in peers) or len(set(peers)) < len(
                peers
            ):
                raise ValueError(f"{name} = {peers!r}: must be distinct ranks other than rank {self.rank}")
        object.__setattr__(self, "receive_bytes", tuple(self.receive_bytes))
        if self.receive_bytes and (
            len(self.receive_bytes) != len(self.receive_from)
            or any(type(n) is not int or n < 0 for n in self.receive_bytes)
        ):
            raise ValueError(f"receive_bytes = {self.receive_bytes!r}: one size ≥ 0 per rank of receive_from")
        _check_chunk(self.chunk_bytes)
        if self.gpu_snapshot not in GPU_SNAPSHOT:
            raise ValueError(
                f"gpu_snapshot = {self.gpu_snapshot!r}: must be one of {', '.join(GPU_SNAPSHOT)}"
            )


@dataclass(frozen=True)
class RecoveryConfig:
    """What recovery at a worker's start needs to know about the job and where it persists."""

    rank: int
    """This rank's logical rank."""
    world_size: int
    """Ranks in the job (machines × procs_per_machine)."""
    procs_per_machine: int
    """Ranks per machine; rank r answers for the shards with r's local index on its machine."""
    run_dir: Path
    """The run directory, whose `persistent/` holds the persistent checkpoints."""
    chunk_bytes: int = 4 << 20
    """Message size when a shard is fetched from a peer."""
    layouts: tuple[Layout, ...] = ()
    """The layout each rank's shard has in this job (by rank); a copy of another layout is refused.
    Empty: layouts are not checked (a job of one parallelism, in the engine's own tests)."""
    twins: tuple[tuple[int, ...], ...] = ()
    """By rank, the other ranks whose shard holds the same state (HSDP's replica groups): a lost shard
    is fetched from one of them first. Empty: no rank has a twin."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layouts", tuple(self.layouts))
        object.__setattr__(self, "twins", tuple(tuple(group) for group in self.twins))
        for name in ("layouts", "twins"):
            if getattr(self, name) and len(getattr(self, name)) != self.world_size:
                raise ValueError(f"{name}: one per rank of world_size = {self.world_size}")
        for name in ("world_size", "procs_per_machine"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} = {value!r}: must be a positive integer")
        if self.world_size % self.procs_per_machine:
            raise ValueError(
                f"world_size = {self.world_size}: must be a multiple of procs_per_machine = {self.procs_per_machine}"
            )
        if type(self.rank) is not int or not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"rank = {self.rank!r}: must be between 0 and world_size - 1 = {self.world_size - 1}"
            )
        _check_chunk(self.chunk_bytes)

    @property
    def local_rank(self) -> int:
        return self.rank % self.procs_per_machine
