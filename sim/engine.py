"""The SimPy model of a synchronous training job on N machines: failures, checkpoints, recovery.

Synchronous data-parallel training has one clock, so the job is a single SimPy process whose
progress between events is arithmetic: events happen only at failures (SimPy interrupts from one
failure process), recovery steps and persistent checkpoints. In-memory snapshots sit on a grid of
training progress and are resolved arithmetically when a failure asks which one was complete.

Remote storage is one shared resource (`sim.storage`): uploads and retrievals from storage divide
its bandwidth. At most one persistent upload is in flight, as in a real system (each upload needs
every machine's serialized shard and the storage's whole bandwidth): a persistent checkpoint that
falls due while the previous upload is still running is skipped, not delayed, and counted. Skipping
keeps the checkpoint grid (the next due point takes the newest state anyway, so a delayed snapshot
would only be older than the next one) and never stalls training for a snapshot that could not be
uploaded; the real runner skips a device snapshot that is due while the previous one is in flight
for the same reason. An upload still running at a failure dies with the job.

Accounting is exact: every wall-clock second is useful progress, checkpoint overhead (stalls and
in-memory slowdown), progress later lost to a rollback, or one recovery step, so
useful + wasted = wall-clock by construction.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from scenarios.errors import UserError
from scenarios.schema import Scenario
from sim.costs import RECOVERY_STEPS
from sim.failures import DAY_S, FailureEvent, generate_failures
from sim.operations import Operations
from sim.placement import Placement, build_placement
from sim.policies import CheckpointPlan, cost_scenario, plan_for
from sim.records import WASTE_COMPONENTS, FailureRecord, RunSummary
from sim.storage import SharedStorage, Transfer

STREAMS = ("failures", "placement", "operations")  # new streams go last: the others keep their seeds
_EPS = 1e-9


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One SeedSequence per run, spawned into named, independent streams."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


@dataclass
class RunResult:
    """One simulated run: a summary row and one record per failure event."""

    summary: RunSummary
    failures: list[FailureRecord]
    events: int


@dataclass
class _MemCheckpoint:
    """The newest complete in-memory checkpoint and which machines lost their CPU memory since."""

    progress: float
    lost: set[int] = field(default_factory=set)
    replicated: bool = True  # False after a restore from storage: each machine holds only its own shard


class _CountingEnvironment(simpy.Environment):
    """Counts processed events, to show that their number does not grow with iterations."""

    processed = 0

    def step(self) -> None:
        self.processed += 1
        super().step()


class ClusterSimulation:
    """One run of one scenario. Build it, call `run()`, read the `RunResult`."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.plan: CheckpointPlan = plan_for(scenario)
        self.duration_s = scenario.run.duration_days * DAY_S
        streams = random_streams(seed)
        self.ops = Operations(scenario, streams["operations"]) if scenario.operations.enabled else None
        rate_scale = self.ops.rate_scale if self.ops is not None else 1.0
        self.failure_events = generate_failures(scenario, streams["failures"], self.duration_s, rate_scale)
        self.placement = _placement_for(scenario, streams["placement"]) if self.plan.mem_interval_s else None
        self.env = _CountingEnvironment()
        # Job state.
        self.progress = 0.0
        self.mem: _MemCheckpoint | None = None
        self.mem_taken: list[tuple[float, float]] = []  # last two in-memory snapshots: (progress, wall time)
        self.persistent_progress = 0.0  # the initial model counts as persisted
        self.pending_persistent: list[tuple[float, Transfer]] = []  # (progress, its upload)
        costed = cost_scenario(scenario)
        self.storage = SharedStorage(costed.storage.bandwidth_gbps, costed.storage.latency_s)
        self.persistent_bytes = costed.ckpt_bytes_total
        self.persistent_uploads = 0
        self.persistent_skipped = 0
        self.spare_ready = [0.0] * scenario.cluster.standby_machines  # heap of spare-machine ready times
        self.awaiting: set[int] = set()  # failed machines whose replacement has been ordered
        self.replaced_by = 0.0  # when the last ordered replacement of this recovery is ready
        self.spare_by = 0.0  # when the spare pool has had a machine for each of them (operations model)
        self._repeat_token = 0  # the newest scheduled repeat failure of a faulty machine (operations model)
        self.recovery: FailureRecord | None = None  # the failure being recovered from
        self.records: list[FailureRecord] = []
        self.totals = dict.fromkeys(WASTE_COMPONENTS, 0.0)
        self._phase: tuple[str, float, FailureRecord | None] = ("train", 0.0, None)
        self._segment_start_progress = 0.0
        self._job = self.env.process(self._run_job())
        self.env.process(self._inject_failures())

    # ---- public -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.env.run(until=self.duration_s)
        self._close_phase(self.duration_s)
        return RunResult(self._summary(), self.records, self.env.processed)

    # ---- processes ----------------------------------------------------------------------------
    def _inject_failures(self):
        for event in self.failure_events:
            if self.ops is not None and not self.ops.keeps(event):
                continue  # thinned: a good machine drew a bad machine's failure (no SimPy event)
            yield self.env.timeout(event.time_s - self.env.now)
            # A machine that is down, waiting for its replacement, cannot fail again.
            alive = tuple(machine for machine in event.machines if machine not in self.awaiting)
            if alive and self._may_strike():
                event = dataclasses.replace(event, machines=alive)
                if self.ops is not None:
                    event = self.ops.admit(event, self.env.now)
                self._job.interrupt(event)

    def _repeat_failure(self, slot: int, token: int):
        """A faulty machine left in the job fails again soon after the job restarts on it."""
        yield self.env.timeout(self.scenario.operations.refail_after_restart_s)
        if token == self._repeat_token and self.recovery is None and self.ops.is_faulty(slot):
            self._job.interrupt(self.ops.repeat_failure(slot, self.env.now))

    def _run_job(self):
        while True:
            try:
                if self.recovery is None:
                    yield from self._train()
                else:
                    yield from self._recover()
            except simpy.Interrupt as interrupt:
                self._on_failure(interrupt.cause)

    def _train(self):
        plan = self.plan
        while True:
            interval = plan.persistent_interval_s
            target = (math.floor(self.progress / interval + _EPS) + 1) * interval
            target, skipped = self._first_uploadable(target)
            self._open_phase("train")
            yield self.env.timeout((target - self.progress) / plan.progress_rate)
            self._close_phase(self.env.now, progress_reached=target)
            self.persistent_skipped += skipped
            if plan.persistent_stall_s > 0:
                self._open_phase("stall")
                yield self.env.timeout(plan.persistent_stall_s)
                self._close_phase(self.env.now)
            self._start_upload(target)

    def _first_uploadable(self, target: float) -> tuple[float, int]:
        """The first persistent grid point from `target` on that training reaches once the upload in
        flight is done, and how many due points it skips (arithmetic: skipped points are no events)."""
        busy_until = max((self.storage.finish_s(t) for _, t in self.pending_persistent), default=-math.inf)
        reached = self.env.now + (target - self.progress) / self.plan.progress_rate
        if reached >= busy_until - _EPS:
            return target, 0
        wall_per_point = self.plan.persistent_interval_s / self.plan.progress_rate
        skipped = math.ceil((busy_until - reached) / wall_per_point - _EPS)
        return target + skipped * self.plan.persistent_interval_s, skipped

    def _recover(self):
        record = self.recovery
        assert record is not None
        for step in RECOVERY_STEPS:
            duration = self._step_duration(step, record)
            if duration > 0:
                self._open_phase(step, record)
                yield self.env.timeout(duration)
                self._close_phase(self.env.now)
        self._finish_recovery(record)

    # ---- failures and recovery ----------------------------------------------------------------
    def _on_failure(self, event: FailureEvent) -> None:
        now = self.env.now
        in_recovery = self.recovery is not None
        self._close_phase(now)
        self._promote_persistent(now)
        if not in_recovery:
            self._advance_in_memory(now)
        hardware = set(event.machines) if event.hardware else set()
        no_spare = False
        for machine in sorted(hardware - self.awaiting):
            spare_at, ready_at = self._order_replacement(machine, now)
            no_spare |= spare_at > now
            self.spare_by = max(self.spare_by, spare_at)
            self.replaced_by = max(self.replaced_by, ready_at)
        self.awaiting |= hardware
        if self.mem is not None:
            self.mem.lost |= hardware
        if in_recovery and self.recovery.recovered_from == "persistent":
            # Once a recovery goes to storage, CPU memory cannot become usable again before it ends.
            source, target = "persistent", self.persistent_progress
        else:
            source, target = self._restore_point()
        lost = max(0.0, self.progress - target)
        self.progress = target
        self.totals["lost_progress"] += lost
        record = FailureRecord(
            time_s=now,
            machines=len(event.machines),
            machine_ids=",".join(map(str, event.machines)),
            type=event.kind,
            simultaneous=in_recovery,
            recovered_from=source,
            lost_progress_s=lost,
            no_spare=no_spare,
            misdiagnosed=event.misdiagnosed,
            repeat=event.repeat,
        )
        self.records.append(record)
        self.recovery = record

    def _restore_point(self) -> tuple[str, float]:
        """Where the job restarts from: CPU memory when every machine's checkpoint survives somewhere."""
        mem = self.mem
        if mem is not None:
            survives = (
                not mem.lost
                if not mem.replicated
                else (self.placement is not None and self.placement.recoverable(mem.lost))
            )
            if survives:
                return ("peer" if mem.lost else "local"), mem.progress
        return "persistent", self.persistent_progress

    def _may_strike(self) -> bool:
        """`failures.strike_during_recovery = false` (the paper's Fig. 15 accounting): none strikes then."""
        return self.recovery is None or self.scenario.failures.strike_during_recovery

    def _step_duration(self, step: str, record: FailureRecord) -> float:
        if step == "retrieval" and record.recovered_from == "persistent":
            return self._storage_read_s()
        wait = max(0.0, self.replaced_by - self.env.now)
        return self.plan.recovery.step_s(step, record.recovered_from, replacement_wait_s=wait)

    def _storage_read_s(self) -> float:
        """Reading the persistent checkpoint through the shared storage (a failure cancels it)."""
        now = self.env.now
        return self.storage.finish_s(self.storage.start("retrieval", self.persistent_bytes, now)) - now

    def _finish_recovery(self, record: FailureRecord) -> None:
        record.recovery_completed = True
        self.awaiting.clear()
        self.replaced_by = self.spare_by = 0.0
        self.recovery = None
        if self.ops is not None and (slot := self.ops.faulty_slot()) is not None:
            self._repeat_token += 1
            self.env.process(self._repeat_failure(slot, self._repeat_token))
        self.mem_taken.clear()
        if record.recovered_from == "persistent":
            self.mem = _MemCheckpoint(self.progress, replicated=False) if self.placement else None

    def _order_replacement(self, machine: int, now: float) -> tuple[float, float]:
        """(a spare is found at, the replacement is ready at) for a failed machine. Plain model: it is
        swapped for the earliest-ready standby and a new machine is ordered at once. Operations model:
        the pool and repair pipeline decide, and a slot a wrong diagnosis left alone needs nothing."""
        if self.ops is not None:
            return self.ops.replace(machine, now) or (now, now)
        heapq.heappush(self.spare_ready, now + self.scenario.cluster.replacement_delay_s)
        return now, max(now, heapq.heappop(self.spare_ready))

    # ---- checkpoints --------------------------------------------------------------------------
    def _start_upload(self, progress: float) -> None:
        now = self.env.now
        self._promote_persistent(now, cancel=False)  # the previous upload is complete by now
        self.persistent_uploads += 1
        self.pending_persistent.append((progress, self.storage.start("upload", self.persistent_bytes, now)))

    def _promote_persistent(self, now: float, cancel: bool = True) -> None:
        """Uploads finished by `now` become the persistent checkpoint; at a failure (`cancel`) every
        unfinished transfer dies with the job."""
        for progress, upload in self.pending_persistent:
            if self.storage.finish_s(upload) <= now:
                self.persistent_progress = max(self.persistent_progress, progress)
        self.pending_persistent.clear()
        if cancel:
            self.storage.cancel_all(now)

    def _note_snapshots(self, start_wall: float, start_progress: float, end_progress: float) -> None:
        """Record the in-memory snapshots taken while progress went from start to end (grid points)."""
        grid = self.plan.mem_interval_s
        if grid is None:
            return
        last = math.floor(end_progress / grid + _EPS) * grid
        wall_per_progress = 1.0 / self.plan.progress_rate
        for point in (last - grid, last):
            if point > start_progress + _EPS:
                self.mem_taken.append((point, start_wall + (point - start_progress) * wall_per_progress))
        del self.mem_taken[:-2]

    def _advance_in_memory(self, now: float) -> None:
        """The newest snapshot whose replicas were complete by `now` replaces the in-memory checkpoint."""
        for progress, taken_at in reversed(self.mem_taken):
            if taken_at + self.plan.mem_ckpt_time_s <= now + _EPS:
                if self.mem is None or progress > self.mem.progress:
                    self.mem = _MemCheckpoint(progress)
                return

    # ---- time accounting ----------------------------------------------------------------------
    def _open_phase(self, kind: str, record: FailureRecord | None = None) -> None:
        self._phase = (kind, self.env.now, record)
        self._segment_start_progress = self.progress

    def _close_phase(self, now: float, progress_reached: float | None = None) -> None:
        kind, start, record = self._phase
        elapsed = now - start
        if kind == "train":
            made = elapsed * self.plan.progress_rate
            end = progress_reached if progress_reached is not None else self.progress + made
            self.totals["checkpoint"] += elapsed - made
            self._note_snapshots(start, self._segment_start_progress, end)
            self.progress = end
        elif kind == "stall":
            self.totals["checkpoint"] += elapsed
        elif kind != "idle":
            assert record is not None
            if kind == "replacement" and self.spare_by > start:
                # The part spent waiting for the spare pool is its own waste component.
                waited = min(elapsed, self.spare_by - start)
                self.totals["spare_wait"] += waited
                record.spare_wait_s += waited
                elapsed -= waited
            self.totals[kind] += elapsed
            record.add_step(kind, elapsed)
        self._phase = ("idle", now, None)

    # ---- results ------------------------------------------------------------------------------
    def _summary(self) -> RunSummary:
        sc, plan, totals = self.scenario, self.plan, self.totals
        for record in self.records:
            record.close()
        sources = [r.recovered_from for r in self.records]
        wasted = self.duration_s - self.progress
        ckpt_interval = plan.mem_interval_s if plan.mem_interval_s else plan.persistent_interval_s
        return RunSummary(
            scenario=sc.name,
            seed=self.seed,
            policy=sc.checkpoint.policy,
            placement=sc.checkpoint.placement,
            replicas=sc.checkpoint.replicas,
            machines=sc.cluster.machines,
            failure_rate_per_machine_per_day=sc.failures.rate_per_machine_per_day,
            nic_bandwidth_gbps=sc.cluster.nic_bandwidth_gbps,
            storage_bandwidth_gbps=sc.storage.bandwidth_gbps,
            duration_s=self.duration_s,
            useful_s=self.progress,
            wasted_s=wasted,
            effective_ratio=self.progress / self.duration_s,
            **{f"wasted_{name}_s": value for name, value in totals.items()},
            failures=len(self.records),
            software_failures=sum(r.type == "software" for r in self.records),
            hardware_failures=sum(r.type == "hardware" for r in self.records),
            simultaneous_failures=sum(bool(r.simultaneous) for r in self.records),
            recoveries_local=sources.count("local"),
            recoveries_peer=sources.count("peer"),
            recoveries_persistent=sources.count("persistent"),
            fraction_from_cpu_memory=(
                (sources.count("local") + sources.count("peer")) / len(sources) if sources else float("nan")
            ),
            ckpt_interval_s=ckpt_interval,
            persistent_interval_s=plan.persistent_interval_s,
            ckpt_time_s=plan.mem_ckpt_time_s
            if plan.mem_interval_s
            else plan.persistent_stall_s + plan.persistent_upload_s,
            iteration_overhead_fraction=plan.overhead_fraction,
            events=self.env.processed,
            spare_waits=sum(r.no_spare for r in self.records),
            misdiagnoses=sum(r.misdiagnosed for r in self.records),
            repeat_failures=sum(r.repeat for r in self.records),
            wasted_repeat_failures_s=sum(r.wasted_s for r in self.records if r.repeat),
            retired_machines=self.ops.retired if self.ops is not None else 0,
            persistent_uploads=self.persistent_uploads,
            persistent_skipped=self.persistent_skipped,
        )


def _placement_for(scenario: Scenario, rng: np.random.Generator) -> Placement:
    ckpt, cluster = scenario.checkpoint, scenario.cluster
    try:
        return build_placement(
            ckpt.placement, cluster.machines, ckpt.replicas, domain_size=cluster.failure_domain_size, rng=rng
        )
    except UserError as exc:
        raise UserError(f"checkpoint.placement ({exc.field})", exc.value, exc.allowed) from None


def simulate(scenario: Scenario, seed: int) -> RunResult:
    """Simulate one run of `scenario` with `seed`."""
    return ClusterSimulation(scenario, seed).run()
