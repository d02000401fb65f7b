"""Recovery at worker start: find the newest checkpoint every shard still has, fetch, load.

Each rank reports the verified committed steps its machine holds for the shards with its local
index (an int64 tensor, gathered with all_gather — no pickling). The newest step for which every
shard has a valid copy wins; a shard whose owner's machine lost it is fetched from a holder over the
checkpoint transport. Without such a step, all ranks load the newest persistent checkpoint (DCP)
that every rank verified against its manifest (`gemini_ft.realrun.engine.persistent`); one that fails is
reported and the next older one tried, then a fresh start. DCP never opens a directory that did not
verify.

A copy is verified when it is loaded or sent, not trusted from the inventory: a copy that fails then,
or in the inventory, is uncommitted by the store, and every such rejection is logged
(`local_rejected`), so a damaged copy can be neither loaded nor served to a peer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from gemini_ft.realrun.engine.config import RecoveryConfig
from gemini_ft.realrun.engine.persistent import commit, committed_steps, persistent_dir, uncommit, verify
from gemini_ft.realrun.engine.replication import CommittedShard, Incoming, Outgoing, exchange
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import ShardTransport
from gemini_ft.realrun.measurements import EventLog

SLOT_COUNT = 2


@dataclass(frozen=True)
class Plan:
    """The step to resume from, where it comes from, and which rank sends each shard (-1: none)."""

    step: int
    source: str  # "memory" (local or from a peer), "persistent", or "fresh"
    holder: list[int]
    rejected: tuple[tuple[int, str], ...] = ()  # persistent checkpoints that failed verification: (step, why)


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
            if store.read(owner, manifest.step) is not None:
                steps.append(manifest.step)
                if not deep:
                    break
        for column, step in enumerate(steps[:SLOT_COUNT]):
            table[owner, column] = step
    return table


def choose(inventory: torch.Tensor) -> tuple[int, list[int]] | None:
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


def plan_recovery(config: RecoveryConfig, store: ShmStore, group: dist.ProcessGroup | None) -> Plan:
    """The plan every rank agrees on (collective on `group`): the step, its source, the holders."""
    world, procs, local_rank = config.world_size, config.procs_per_machine, config.local_rank
    # Verifying a copy reads all its bytes, so first verify only the newest copies; look at older
    # ones only when the newest cannot give the best step from local memory (all ranks see one table).
    inventory = _gather(local_inventory(store, world, procs, local_rank, deep=False), group, world)
    chosen = choose(inventory)
    local_everywhere = chosen is not None and all(h == o for o, h in enumerate(chosen[1]))
    if chosen is None or chosen[0] < _upper_bound(inventory) or not local_everywhere:
        inventory = _gather(local_inventory(store, world, procs, local_rank, deep=True), group, world)
        chosen = choose(inventory)
    in_memory = chosen[0] if chosen is not None else -1
    persistent, rejected = verified_persistent(config.run_dir, group, newer_than=in_memory)
    if chosen is not None and (persistent is None or chosen[0] >= persistent):
        return Plan(chosen[0], "memory", chosen[1], rejected)
    if persistent is not None:
        return Plan(persistent, "persistent", [-1] * world, rejected)
    return Plan(0, "fresh", [-1] * world, rejected)


def verified_persistent(
    run_dir: Path, group: dist.ProcessGroup | None, newer_than: int = -1
) -> tuple[int | None, tuple[tuple[int, str], ...]]:
    """The newest committed persistent step above `newer_than` that every rank verified, and the rejects.

    Every rank checks the files itself (each reads them with DCP afterwards); a step counts only when
    all agree, so all ranks take the same decision.
    """
    rejected = []
    for step in committed_steps(run_dir):
        if step <= newer_than:
            break
        why = verify(persistent_dir(run_dir, step), step)
        agreed = torch.tensor([0 if why else 1], dtype=torch.int64)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=group)
        if int(agreed) == 1:
            return step, tuple(rejected)
        rejected.append((step, why or "failed its check on another rank"))
    return None, tuple(rejected)


def _gather(mine: torch.Tensor, group: dist.ProcessGroup | None, world: int) -> torch.Tensor:
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine, group=group)
    return torch.stack(gathered)


def _upper_bound(inventory: torch.Tensor) -> int:
    """No step newer than the oldest of the shards' newest copies can be complete."""
    return int(inventory.amax(dim=(0, 2)).min())


def recover(
    plan: Plan,
    config: RecoveryConfig,
    store: ShmStore,
    codec: ShardCodec,
    transport: ShardTransport,
    events: EventLog,
) -> None:
    """Carry out `plan`: fetch shards whose owners lack them, load them, sync parameters."""
    rank, run_dir = config.rank, config.run_dir
    for step, why in plan.rejected:
        events.log("persistent_rejected", step, source="persistent", ok=False, detail=why)
    if plan.source == "fresh":
        if plan.rejected:  # a recovery that had to start over: say so beside the other sources
            events.log("retrieve", 0, source="fresh")
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
            found = store.read(owner, plan.step)
            if found is None:  # it verified in the inventory and fails now: nothing damaged goes out
                raise RuntimeError(f"the copy of shard {owner} at step {plan.step} failed verification")
            sends.append(Outgoing(owner, CommittedShard(*found)))
    fetch_from = plan.holder[rank] if plan.holder[rank] != rank else None
    fetches = [Incoming(fetch_from, rank, codec.plan().nbytes)] if fetch_from is not None else []
    received = exchange(store, transport, sends, fetches, config.chunk_bytes)
    if received and not received[0].ok:
        raise RuntimeError(f"shard {rank} of step {plan.step} from rank {fetch_from} failed its checksum")
    found = store.read(rank, plan.step)
    if found is None:
        raise RuntimeError(f"shard {rank} of step {plan.step} failed verification before it was loaded")
    manifest, data = found
    codec.load(manifest.entries, data)
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


def report_rejections(store: ShmStore, events: EventLog) -> None:
    """Log every copy the store refused since the last report (one event each), and forget them."""
    for rejection in store.rejections:
        events.log(
            "local_rejected", rejection.step if rejection.step is not None else -1,
            source="local", ok=False, detail=f"machine {store.machine} {rejection.describe()}",
        )  # fmt: skip
    store.rejections.clear()


# ---- persistent checkpoints (torch.distributed.checkpoint) --------------------------------------
def _state(codec: ShardCodec, rank: int) -> dict[str, torch.Tensor]:
    return {f"shard{rank}/{name}": tensor for name, tensor in codec.tensors()}


def save_persistent(codec: ShardCodec, rank: int, path: Path, step: int) -> int:
    """DCP save of every rank's shard into `path`, then rank 0 commits its manifest (collective)."""
    if rank == 0:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        uncommit(path)  # an older save of this step (before a rollback) stops counting right now
    state = _state(codec, rank)
    # DCP's own collectives order this after rank 0's uncommit and before its commit.
    dcp.save(state, storage_writer=dcp.FileSystemWriter(path, sync_files=True))
    dist.barrier()
    if rank == 0:
        commit(path, step)
    dist.barrier()
    return sum(t.numel() * t.element_size() for t in state.values())


def load_into(codec: ShardCodec, rank: int, path: Path, step: int) -> int:
    """DCP load of this rank's shard from `path`, which must verify first (DCP unpickles `.metadata`)."""
    why = verify(path, step)
    if why is not None:
        raise RuntimeError(f"refusing to load persistent checkpoint {path}: {why}")
    state = {k: v.clone() for k, v in _state(codec, rank).items()}
    dcp.load(state, storage_reader=dcp.FileSystemReader(path))
    with torch.no_grad():
        for name, tensor in codec.tensors():
            tensor.copy_(state[f"shard{rank}/{name}"])
    return sum(t.numel() * t.element_size() for t in state.values())


def load_persistent(codec: ShardCodec, rank: int, run_dir: Path, step: int) -> int:
    return load_into(codec, rank, persistent_dir(run_dir, step), step)
