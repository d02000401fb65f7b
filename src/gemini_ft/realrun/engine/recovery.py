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
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gemini_ft.realrun.engine.backup import load_persistent
from gemini_ft.realrun.engine.config import RecoveryConfig
from gemini_ft.realrun.engine.manifest import Layout
from gemini_ft.realrun.engine.persistent import committed_steps, persistent_dir, verify
from gemini_ft.realrun.engine.replication import CommittedShard, Incoming, Outgoing, exchange
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import ShardTransport
from gemini_ft.realrun.measurements import EventLog

SLOT_COUNT = 2


@dataclass(frozen=True)
class Plan:
    """The step to resume from, where it comes from, and per rank which rank sends it which shard's copy.

    `holder[r]` is the rank that has the copy rank r loads (-1: none, r: its own machine), `shard[r]`
    whose shard that copy is: r's own, or a twin's (an HSDP replica group's shard of the same state).
    """

    step: int
    source: str  # "memory" (local, from a twin or a peer), "persistent", or "fresh"
    holder: list[int]
    rejected: tuple[tuple[int, str], ...] = ()  # persistent checkpoints that failed verification: (step, why)
    shard: list[int] | None = None

    def __post_init__(self) -> None:
        if self.shard is None:
            object.__setattr__(self, "shard", list(range(len(self.holder))))


def local_inventory(
    store: ShmStore,
    world: int,
    procs: int,
    local_rank: int,
    deep: bool = True,
    layouts: Sequence[Layout] = (),
) -> torch.Tensor:
    """[world, 2] newest verified committed steps of each shard this rank answers for (-1 = none).

    With `deep=False` only the newest copy that verifies is reported (one checksum pass per shard).
    With `layouts` (the layout each rank's shard has in this job), a copy of another layout (another
    mesh, parallelism or precision) is refused before its bytes are read.
    """
    table = torch.full((world, SLOT_COUNT), -1, dtype=torch.int64)
    for owner in range(local_rank, world, procs):
        steps = []
        for slot, manifest in store.committed(owner):  # newest first
            why = manifest.layout.mismatch(layouts[owner]) if layouts else None
            if why is not None:
                store.reject(owner, slot, manifest.step, why)
                continue
            if store.read(owner, manifest.step) is not None:
                steps.append(manifest.step)
                if not deep:
                    break
        for column, step in enumerate(steps[:SLOT_COUNT]):
            table[owner, column] = step
    return table


def choose(
    inventory: torch.Tensor, twins: Sequence[Sequence[int]] = ()
) -> tuple[int, list[int], list[int]] | None:
    """Newest step every shard has a copy of (its own or a twin's), and per rank where to take it.

    `inventory[q, o]` lists the steps rank q's machine holds of shard o. Returns (step, holder, shard):
    rank r loads shard[r]'s copy from rank holder[r]. Preferred, in order: the rank's own copy (no
    transfer), a twin's own copy (a surviving replica group), a peer's copy of the rank's shard (a
    CPU-memory replica), a peer's copy of a twin's; among equals the lowest rank.
    """
    world = inventory.shape[1]
    group = [(o, *sorted(twins[o])) if twins else (o,) for o in range(world)]
    candidates = sorted({int(s) for s in inventory.flatten().tolist() if s >= 0}, reverse=True)
    for step in candidates:
        has = (inventory == step).any(dim=2)  # [reporter, owner]
        holder, shard = [], []
        for o in range(world):
            choice = _source(has, o, group[o])
            if choice is None:
                break
            holder.append(choice[0])
            shard.append(choice[1])
        else:
            return step, holder, shard
    return None


def _source(has: torch.Tensor, owner: int, group: tuple[int, ...]) -> tuple[int, int] | None:
    if bool(has[owner, owner]):
        return owner, owner
    for twin in group[1:]:
        if bool(has[twin, twin]):
            return twin, twin
    for shard in group:  # a CPU-memory replica: of the owner's shard first, then of a twin's
        reporters = torch.nonzero(has[:, shard])
        if len(reporters):
            return int(reporters[0]), shard
    return None


def plan_recovery(config: RecoveryConfig, store: ShmStore, group: dist.ProcessGroup | None) -> Plan:
    """The plan every rank agrees on (collective on `group`): the step, its source, the holders."""
    world, procs, local_rank = config.world_size, config.procs_per_machine, config.local_rank

    def inventory(deep: bool) -> torch.Tensor:
        mine = local_inventory(store, world, procs, local_rank, deep=deep, layouts=config.layouts)
        return _gather(mine, group, world)

    # Verifying a copy reads all its bytes, so first verify only the newest copies; look at older
    # ones only when the newest cannot give the best step from local memory (all ranks see one table).
    table = inventory(deep=False)
    chosen = choose(table, config.twins)
    local_everywhere = chosen is not None and all(
        h == o and s == o for o, (h, s) in enumerate(zip(chosen[1], chosen[2], strict=True))
    )
    if chosen is None or chosen[0] < _upper_bound(table, config.twins) or not local_everywhere:
        table = inventory(deep=True)
        chosen = choose(table, config.twins)
    in_memory = chosen[0] if chosen is not None else -1
    persistent, rejected = verified_persistent(config, group, newer_than=in_memory)
    if chosen is not None and (persistent is None or chosen[0] >= persistent):
        return Plan(chosen[0], "memory", chosen[1], rejected, chosen[2])
    if persistent is not None:
        return Plan(persistent, "persistent", [-1] * world, rejected)
    return Plan(0, "fresh", [-1] * world, rejected)


def verified_persistent(
    config: RecoveryConfig, group: dist.ProcessGroup | None, newer_than: int = -1
) -> tuple[int | None, tuple[tuple[int, str], ...]]:
    """The newest committed persistent step above `newer_than` that every rank verified, and the rejects.

    Every rank checks its own part (the one it reads with DCP afterwards) and that the manifest lists
    every rank's; a step counts only when all agree, so all ranks take the same decision.
    """
    rejected = []
    layout = config.layouts[config.rank] if config.layouts else None
    for step in committed_steps(config.run_dir):
        if step <= newer_than:
            break
        why = verify(
            persistent_dir(config.run_dir, step), step, config.world_size, part=config.rank, layout=layout
        )
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


def _upper_bound(inventory: torch.Tensor, twins: Sequence[Sequence[int]] = ()) -> int:
    """No step newer than the oldest of the shards' newest copies (a twin's counting) can be complete."""
    newest = inventory.amax(dim=(0, 2)).tolist()
    return min(max(newest[t] for t in (o, *(twins[o] if twins else ()))) for o in range(len(newest)))


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
        nbytes = load_persistent(codec, rank, run_dir, plan.step, config.world_size)
        events.log(
            "retrieve", plan.step, nbytes=nbytes, duration_s=time.perf_counter() - start, source="persistent"
        )
        codec.after_load()
        return
    holder, shard = plan.holder, plan.shard
    assert shard is not None
    sends = []
    for owner in range(len(holder)):
        if holder[owner] == rank and owner != rank:
            found = store.read(shard[owner], plan.step)
            if found is None:  # it verified in the inventory and fails now: nothing damaged goes out
                raise RuntimeError(
                    f"the copy of shard {shard[owner]} at step {plan.step} failed verification"
                )
            sends.append(Outgoing(owner, CommittedShard(*found)))
    fetch_from = holder[rank] if holder[rank] != rank else None
    fetches = [Incoming(fetch_from, shard[rank], codec.plan().nbytes)] if fetch_from is not None else []
    received = exchange(store, transport, sends, fetches, config.chunk_bytes)
    if received and not received[0].ok:
        raise RuntimeError(
            f"shard {shard[rank]} of step {plan.step} from rank {fetch_from} failed its checksum"
        )
    found = store.read(shard[rank], plan.step)
    if found is None:
        raise RuntimeError(
            f"shard {shard[rank]} of step {plan.step} failed verification before it was loaded"
        )
    manifest, data = found
    why = manifest.layout.mismatch(config.layouts[rank]) if config.layouts else None
    if why is not None:  # the sender's inventory checked it against this job too: a bug, not a fallback
        raise RuntimeError(f"shard {shard[rank]} of step {plan.step} cannot be loaded here: {why}")
    codec.load(manifest.entries, data)
    source = "replica" if shard[rank] != rank else "local" if fetch_from is None else "peer"
    events.log(
        "retrieve",
        plan.step,
        nbytes=len(data),
        duration_s=time.perf_counter() - start,
        source=source,
        peer=fetch_from,
    )
    codec.after_load()


def report_rejections(store: ShmStore, events: EventLog) -> None:
    """Log every copy the store refused since the last report (one event each), and forget them."""
    for rejection in store.rejections:
        events.log(
            "local_rejected", rejection.step if rejection.step is not None else -1,
            source="local", ok=False, detail=f"machine {store.machine} {rejection.describe()}",
        )  # fmt: skip
    store.rejections.clear()
