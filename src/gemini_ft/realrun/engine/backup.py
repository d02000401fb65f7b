"""Persistent checkpoints in DCP format: a rank's part written from its live shard or from a verified copy
of a committed shard in shared memory, and loaded back into the live shard once it verifies.

Each rank's part is a DCP checkpoint of its own (`dcp.save(..., no_dist=True)`: no collective, so a
persister process with no process group writes the very same format a training rank does); the files,
the parts and the commit point are `gemini_ft.realrun.engine.persistent`'s. A synchronous save
(`save_persistent`) stalls training for the whole write; the asynchronous one goes through the
persister (`gemini_ft.realrun.engine.persister`), which reads shared memory while training goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from gemini_ft.realrun.engine.manifest import Entry, Layout
from gemini_ft.realrun.engine.persistent import (
    commit_if_complete,
    finish_part,
    part_dir,
    persistent_dir,
    start_part,
    verify,
)
from gemini_ft.realrun.engine.shard import ShardCodec, torch_dtype


def shard_state(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors of a part, on the host (DCP writes host memory; a CUDA shard is copied first)."""
    return {name: tensor.detach().cpu() for name, tensor in named}


def state_from_bytes(entries: Sequence[Entry], data: memoryview) -> dict[str, torch.Tensor]:
    """A shard's tensors as views of its flat bytes (a verified copy out of shared memory)."""
    flat = torch.frombuffer(data, dtype=torch.uint8) if len(data) else torch.empty(0, dtype=torch.uint8)
    return {
        e.name: flat[e.offset : e.offset + e.nbytes].view(torch_dtype(e.dtype)).reshape(e.shape)
        for e in entries
    }


def write_part(step_dir: Path, rank: int, state: dict[str, torch.Tensor], token: str, layout: Layout) -> int:
    """Rank's part of `step_dir`: DCP files fsynced, then its part manifest; returns the bytes written."""
    directory = start_part(step_dir, rank)
    dcp.save(state, storage_writer=dcp.FileSystemWriter(directory, sync_files=True), no_dist=True)
    finish_part(step_dir, rank, token, layout)
    return sum(t.numel() * t.element_size() for t in state.values())


def save_persistent(codec: ShardCodec, rank: int, step_dir: Path, step: int, world: int, token: str) -> int:
    """Every rank writes its part of `step_dir` from its live shard, then the step is committed
    (collective: training waits for all of it)."""
    if rank == 0:
        step_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    dist.barrier()
    nbytes = write_part(step_dir, rank, shard_state(codec.tensors()), token, codec.layout)
    dist.barrier()
    if rank == 0 and not commit_if_complete(step_dir, step, world, token):
        raise RuntimeError(
            f"persistent checkpoint {step_dir}: a part is missing after every rank wrote its own"
        )
    dist.barrier()
    return nbytes


def load_into(codec: ShardCodec, rank: int, step_dir: Path, step: int, world: int) -> int:
    """DCP load of this rank's part of `step_dir` into the live shard, in place. The part must verify
    first (DCP unpickles `.metadata`) and hold a shard of this rank's layout."""
    why = verify(step_dir, step, world, part=rank, layout=codec.layout)
    if why is not None:
        raise RuntimeError(f"refusing to load persistent checkpoint {step_dir}: {why}")
    state = {name: tensor.clone() for name, tensor in shard_state(codec.tensors()).items()}
    dcp.load(state, storage_reader=dcp.FileSystemReader(part_dir(step_dir, rank)), no_dist=True)
    with torch.no_grad():
        for name, tensor in codec.tensors():
            tensor.copy_(state[name])
    return sum(t.numel() * t.element_size() for t in state.values())


def load_persistent(codec: ShardCodec, rank: int, run_dir: Path, step: int, world: int) -> int:
    return load_into(codec, rank, persistent_dir(run_dir, step), step, world)
