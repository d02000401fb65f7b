"""Recovery at worker start: find the newest checkpoint every shard still has, fetch, load.

Each rank reports the verified committed steps its machine holds for the shards with its local
index (an int64 tensor, gathered with all_gather — no pickling). The newest step for which every
shard has a valid copy wins; a shard whose owner's machine lost it is fetched from a holder over the
checkpoint group. Without such a step, all ranks load the last persistent checkpoint (DCP).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from realrun.measurements import EventLog
from realrun.replication import Outgoing, exchange
from realrun.shard import ShardCodec
from realrun.shm_store import ShmStore, manifest_entries

SLOT_COUNT = 2


@dataclass(frozen=True)
class Plan:
    """The step to resume from, where it comes from, and which rank sends each shard (-1: none)."""

    step: int
    source: str  # "local"/"peer" (in memory), "persistent", or "fresh"
    holder: list[int]


def local_inventory(
    store: ShmStore, world: int, procs: int, local_rank: int, deep: bool = True
) -> torch.Tensor:
    """[world, 2] newest verified committed steps of each shard this rank answers for (-1 = none).

    With `deep=False` only the newest copy that verifies is reported (one checksum pass per shard).
    """
    table = torch.full((world, SLOT_COUNT), -1, dtype=torch.int64)
    for owner in range(local_rank, world, procs):
        steps = []
        for _, manifest in store.committed(owner):  # newest first
            if store.read(owner, manifest["step"]) is not None:
                steps.append(manifest["step"])
                if not deep:
                    break
        for column, step in enumerate(steps[:SLOT_COUNT]):
            table[owner, column] = step
    return table


def choose(inventory: torch.Tensor, rank_machine: list[int]) -> tuple[int, list[int]] | None:
    """Newest step every shard has a copy of, and per shard the reporting rank to take it from.

    `inventory[q, o]` lists the steps rank q's machine holds of shard o; the owner's own copy is
    preferred (no transfer), else the lowest reporting rank holding it.
    """
    world = inventory.shape[1]
    candidates = sorted({int(s) for s in inventory.flatten().tolist() if s >= 0}, reverse=True)
    for step in candidates:
        has = (inventory == step).any(dim=2)  # [reporter, owner]
        if bool(has.any(dim=0).all()):
            holder = [o if bool(has[o, o]) else int(torch.nonzero(has[:, o])[0]) for o in range(world)]
            return step, holder
    return None


def plan_recovery(
    store: ShmStore,
    group: dist.ProcessGroup | None,
    world: int,
    procs: int,
    local_rank: int,
    run_dir: Path,
    rank_machine: list[int],
) -> Plan:
    # Verifying a copy reads all its bytes, so first verify only the newest copies; look at older
    # ones only when the newest cannot give the best step from local memory (all ranks see one table).
    inventory = _gather(local_inventory(store, world, procs, local_rank, deep=False), group, world)
    chosen = choose(inventory, rank_machine)
    local_everywhere = chosen is not None and all(h == o for o, h in enumerate(chosen[1]))
    if chosen is None or chosen[0] < _upper_bound(inventory) or not local_everywhere:
        inventory = _gather(local_inventory(store, world, procs, local_rank, deep=True), group, world)
        chosen = choose(inventory, rank_machine)
    persistent = latest_persistent(run_dir)
    if chosen is not None and (persistent is None or chosen[0] >= persistent):
        return Plan(chosen[0], "memory", chosen[1])
    if persistent is not None:
        return Plan(persistent, "persistent", [-1] * world)
    return Plan(0, "fresh", [-1] * world)


def _gather(mine: torch.Tensor, group: dist.ProcessGroup | None, world: int) -> torch.Tensor:
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine, group=group)
    return torch.stack(gathered)


def _upper_bound(inventory: torch.Tensor) -> int:
    """No step newer than the oldest of the shards' newest copies can be complete."""
    return int(inventory.amax(dim=(0, 2)).min())


def recover(
    plan: Plan,
    store: ShmStore,
    codec: ShardCodec,
    rank: int,
    group: dist.ProcessGroup | None,
    events: EventLog,
    run_dir: Path,
    chunk_bytes: int,
) -> None:
    """Carry out `plan`: fetch shards whose owners lack them, load them, sync parameters."""
    if plan.source == "fresh":
        return
    start = time.perf_counter()
    if plan.source == "persistent":
        nbytes = load_persistent(codec, rank, run_dir, plan.step)
        events.log(
            "retrieve", plan.step, nbytes=nbytes, duration_s=time.perf_counter() - start, source="persistent"
        )
        codec.broadcast_params()
        return
    sends = []
    for owner, holder in enumerate(plan.holder):
        if holder == rank and owner != rank:
            found = store.read(owner, plan.step, verify=False)  # verified by local_inventory
            assert found is not None
            sends.append(Outgoing(owner, found[0], found[1]))
    fetch_from = plan.holder[rank] if plan.holder[rank] != rank else None
    received = exchange(store, sends, [fetch_from] if fetch_from is not None else [], group, chunk_bytes)
    if received and not received[0].ok:
        raise RuntimeError(f"shard {rank} of step {plan.step} from rank {fetch_from} failed its checksum")
    found = store.read(rank, plan.step, verify=False)
    assert found is not None
    manifest, data = found
    codec.load(manifest_entries(manifest), data)
    source = "local" if fetch_from is None else "peer"
    events.log(
        "retrieve",
        plan.step,
        nbytes=len(data),
        duration_s=time.perf_counter() - start,
        source=source,
        peer=fetch_from,
    )
    codec.broadcast_params()


# ---- persistent checkpoints (torch.distributed.checkpoint) --------------------------------------
def _state(codec: ShardCodec, rank: int) -> dict[str, torch.Tensor]:
    return {f"shard{rank}/{name}": tensor for name, tensor in codec.tensors()}


def save_persistent(codec: ShardCodec, rank: int, path: Path) -> int:
    """DCP save of every rank's shard into `path` (collective; files fsynced by the writer)."""
    state = _state(codec, rank)
    dcp.save(state, storage_writer=dcp.FileSystemWriter(path, sync_files=True))
    return sum(t.numel() * t.element_size() for t in state.values())


def load_into(codec: ShardCodec, rank: int, path: Path) -> int:
    state = {k: v.clone() for k, v in _state(codec, rank).items()}
    dcp.load(state, storage_reader=dcp.FileSystemReader(path))
    with torch.no_grad():
        for name, tensor in codec.tensors():
            tensor.copy_(state[f"shard{rank}/{name}"])
    return sum(t.numel() * t.element_size() for t in state.values())


def persistent_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "persistent" / f"step{step:08d}"


def mark_persistent(run_dir: Path, step: int) -> None:
    """Record `step` as the newest complete persistent checkpoint (rank 0, after a barrier)."""
    path = run_dir / "persistent" / "latest.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step}))
    os.replace(tmp, path)


def latest_persistent(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / "persistent" / "latest.json").read_text())["step"])
    except (FileNotFoundError, KeyError, ValueError, json.JSONDecodeError):
        return None


def load_persistent(codec: ShardCodec, rank: int, run_dir: Path, step: int) -> int:
    return load_into(codec, rank, persistent_dir(run_dir, step))
