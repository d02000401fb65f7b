"""The SimPy model of a synchronous training job on N machines: failures, checkpoints, recovery.

Synchronous data-parallel training has one clock, so the job is a single SimPy process whose clock
moves by one timeout per failure. Between failures the job goes through phases — training up to the
next persistent checkpoint (and its stall), or a whole recovery — whose ends, like everything inside
a phase, are arithmetic: nothing but a failure can change what a phase does, so its end needs no
event of its own (a run has about one SimPy event per failure). Failures
come from one pre-drawn stream for the whole cluster (`gemini_ft.sim.failures`): the process looks ahead to the
next one instead of running a failure process that interrupts it, and drops failures that cannot
strike without an event. In-memory snapshots sit on a grid of training progress and are resolved
arithmetically when a failure asks which one was complete.

Remote storage is one shared resource (`gemini_ft.sim.storage`). At most one persistent upload is in flight, as
in a real system (each upload needs every machine's serialized shard and the storage's whole
bandwidth): a persistent checkpoint that falls due while the previous upload is still running is
skipped, not delayed, and counted. Skipping keeps the checkpoint grid (the next due point takes the
newest state anyway, so a delayed snapshot would only be older than the next one) and never stalls
training for a snapshot that could not be uploaded; the real runner skips a device snapshot that is
due while the previous one is in flight for the same reason. An upload still running at a failure
dies with the job.

Accounting is exact: every wall-clock second is useful progress, checkpoint overhead (stalls and
in-memory slowdown), progress later lost to a rollback, or one recovery step, so
useful + wasted = wall-clock by construction.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from math import floor

import numpy as np
import simpy

from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.costs import RECOVERY_STEPS, SOURCES
from gemini_ft.sim.failures import DAY_S, FailureEvent, failure_arrivals
from gemini_ft.sim.job_checkpoints import JobCheckpoints
from gemini_ft.sim.operations import Operations
from gemini_ft.sim.policies import CheckpointPlan, cost_scenario, plan_for
from gemini_ft.sim.records import STEP_FIELDS, WASTE_COMPONENTS, FailureRecord, RecordTally, RunSummary
from gemini_ft.sim.storage import SharedStorage
from gemini_ft.sim.streams import random_streams, scenario_placement

_EPS = 1e-9
_INF = math.inf


@dataclass
class RunResult:
    """One simulated run: a summary row and one record per failure event."""

    summary: RunSummary
    failures: list[FailureRecord]
    events: int


# A segment is one stretch of the current phase — training, a persistent-checkpoint stall or one
# recovery step — as a tuple (kind, start, end, order), where kind is "train", "stall" or the
# `FailureRecord` field of the recovery step: a phase ends at its last segment's end, and the segments
# inside it are arithmetic. `order` settles a tie with a failure at
# the same instant as SimPy's queue did when every segment was its own timeout, by when it was armed:
# (wall time, arming sequence). The first segment is armed with its phase; a later one only when the
# one before it ends, after anything armed earlier. (Plain tuples: the hot path builds ~5 per failure.)
Segment = tuple[str, float, float, tuple[float, float]]
_IDLE: Segment = ("idle", 0.0, math.inf, (math.inf, math.inf))


class ClusterSimulation:
    """One run of one scenario. Build it, call `run()`, read the `RunResult`."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.plan: CheckpointPlan = plan_for(scenario)
        self.duration_s = scenario.run.duration_days * DAY_S
        streams = random_streams(seed)
        rng = np.random.default_rng
        self.ops = Operations(scenario, rng(streams["operations"])) if scenario.operations.enabled else None
        rate_scale = self.ops.rate_scale if self.ops is not None else 1.0
        self.arrivals = failure_arrivals(scenario, rng(streams["failures"]), self.duration_s, rate_scale)
        thinning = self.ops is not None and self.ops.thins
        self._kept_anyway = (
            self.ops.thinning_coins(len(self.arrivals), rng(streams["thinning"])) if thinning else None
        )
        self.placement = (
            scenario_placement(scenario, streams["placement"]) if self.plan.mem_interval_s else None
        )
        self.env = simpy.Environment()
        self._timeouts = 0  # the job's timeouts (see `_events`)
        self.now = 0.0  # the job's clock: exact boundary times (SimPy's sums may differ in the last bit)
        self._rate = self.plan.progress_rate
        self._persistent_interval, self._stall = self.plan.persistent_interval_s, self.plan.persistent_stall_s
        # Job state.
        self.progress = 0.0
        costed = cost_scenario(scenario)
        storage = SharedStorage(costed.storage.bandwidth_gbps, costed.storage.latency_s)
        self.checkpoints = JobCheckpoints(self.plan, storage, costed.ckpt_bytes_total, self.placement)
        self._steps = self._recovery_steps()
        self.persistent_skipped = 0
        self.spare_ready = [0.0] * scenario.cluster.standby_machines  # heap of spare-machine ready times
        self.awaiting: set[int] = set()  # failed machines whose replacement has been ordered
        self.replaced_by = 0.0  # when the last ordered replacement of this recovery is ready
        self.spare_by = 0.0  # when the spare pool has had a machine for each of them (operations model)
        self.recovery: FailureRecord | None = None  # the failure being recovered from
        self.records: list[FailureRecord] = []
        self.checkpoint_s = 0.0  # wall time lost to checkpoint stalls and in-memory slowdown
        # The current phase (training towards `_target`, or the recovery of `recovery`) and what comes next.
        self._segments: list[Segment] = [_IDLE]
        self._target = 0.0  # the persistent grid point the training phase ends at
        self._skipped = 0  # due points the training phase skips (the upload in flight was still running)
        self._arming = 0  # sequence of armed boundaries, SimPy's tie-break between equal times
        self._next_failure = 0  # index into arrivals of the first one not yet looked at
        self._failure_at = math.inf  # time of the next failure that is not thinned away (inf: none)
        self._failure_order: tuple[float, float] = (0.0, 0.0)
        self._striking: FailureEvent | None = None  # that failure as it strikes a recovery, once looked at
        self._repeat: tuple[float, int, tuple[float, float]] | None = None  # (at, slot, order) of a repeat
        self.env.process(self._run_job())

    # ---- public -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.env.run(until=self.duration_s)
        # SimPy stops before any event at the very end: the run's end wins every tie.
        self._settle(self.duration_s, (-math.inf, -math.inf))
        return RunResult(self._summary(), self.records, self._events())

    def _events(self) -> int:
        """SimPy events processed: the process's start, its timeouts, its end, and the stop at the run's
        end (the process always ends before it: it never waits past the run). Counted here rather than in
        SimPy's step loop, which would cost a Python call per event."""
        return self._timeouts + 3

    # ---- the job: one SimPy process, one timeout per failure -----------------------------------------
    def _run_job(self):
        self._begin_training()
        self._arm_failure(0.0)
        env, duration, next_boundary = self.env, self.duration_s, self._next_boundary
        timeout = env.timeout  # a SimPy bound class: looked up once, not at every event
        while True:
            at, what = next_boundary()
            if at >= duration:
                return
            if what == "phase":  # arithmetic too: no SimPy event (see the module's docstring)
                if at > self.now:
                    self.now = at
                self._end_phase()
                continue
            if at > self.now:
                delay = at - env.now  # SimPy's clock is a sum of delays: it may differ in the last bit
                self._timeouts += 1
                yield timeout(delay if delay > 0.0 else 0.0)
                self.now = at
            if what == "failure":
                self._strike()
            else:
                self._strike_again()

    def _next_boundary(self) -> tuple[float, str]:
        """The earliest of the phase's end, the next failure and a repeat failure (ties as in `Segment`).

        A failure that would strike no machine (every one it names is down) or must not strike during
        a recovery is dropped here, without an event: both happen only during a recovery, whose state
        nothing else changes before its end."""
        _, _, at, order = self._segments[-1]
        what = "phase"
        while self._failure_at < at or (self._failure_at == at and self._failure_order < order):
            if self.recovery is not None:
                self._striking = self._strikes(self.arrivals.event(self._next_failure - 1))
                if self._striking is None:
                    self._arm_failure(self._failure_at)
                    continue
            at, order, what = self._failure_at, self._failure_order, "failure"
            break
        repeat = self._repeat
        if repeat is not None and (repeat[0] < at or (repeat[0] == at and repeat[2] < order)):
            at, what = repeat[0], "repeat"
        return at, what

    def _arm_failure(self, now: float) -> None:
        """Look ahead to the next failure that is not thinned away (the operations model draws at the bad
        machines' rate and keeps a good machine's draw with probability 1/multiplier: no event)."""
        arrivals, i = self.arrivals, self._next_failure
        if self._kept_anyway is not None:
            i = self.ops.next_kept(arrivals.machines, self._kept_anyway, i)
        if i < len(arrivals.times):  # the list's own len: no Python-level __len__ per failure
            self._failure_at = arrivals.times[i]
            self._arming += 1
            self._failure_order = (now, self._arming)
            self._next_failure = i + 1
        else:
            self._failure_at, self._next_failure = math.inf, i

    def _strikes(self, event: FailureEvent) -> FailureEvent | None:
        """The failure as it strikes the job, or None when it cannot: a machine that is down, waiting for
        its replacement, cannot fail again, and `failures.strike_during_recovery = false` (the paper's
        Fig. 15 accounting) lets none strike during a recovery."""
        if self.recovery is None:
            return event
        if not self.scenario.failures.strike_during_recovery:
            return None
        if self.awaiting.isdisjoint(event.machines):
            return event
        alive = tuple(machine for machine in event.machines if machine not in self.awaiting)
        return event._replace(machines=alive) if alive else None

    def _strike(self) -> None:
        now, order = self.now, self._failure_order
        if self.recovery is None:
            event = self.arrivals.event(self._next_failure - 1)
        else:  # as `_next_boundary` found it (the machines still up)
            event, self._striking = self._striking, None
            assert event is not None
        if self.ops is not None:
            event = self.ops.admit(event, now)
        self._arm_failure(now)  # before the job handles it: the operations stream's order of draws
        self._settle(now, order)
        self._on_failure(event)

    def _strike_again(self) -> None:
        """A faulty machine left in the job fails again soon after the job restarts on it."""
        assert self._repeat is not None and self.ops is not None
        at, slot, order = self._repeat
        self._repeat = None
        if self.recovery is None and self.ops.is_faulty(slot):
            self._settle(at, order)
            self._on_failure(self.ops.repeat_failure(slot, at))

    def _arm(self) -> int:
        self._arming += 1
        return self._arming

    # ---- phases -------------------------------------------------------------------------------
    def _begin_training(self) -> None:
        """Train up to the next persistent checkpoint that can be uploaded, then stall for it (if any)."""
        now, progress, interval = self.now, self.progress, self._persistent_interval
        target = (floor(progress / interval + _EPS) + 1) * interval
        checkpoints = self.checkpoints
        if checkpoints.pending:  # an upload in flight may make the job skip due points
            target, self._skipped = checkpoints.first_uploadable(target, now, progress)
        else:
            self._skipped = 0
        self._target = target
        train_end = now + (target - progress) / self._rate
        self._arming += 1
        stall = self._stall
        if stall > 0:
            self._segments = [
                ("train", now, train_end, (now, self._arming)),
                ("stall", train_end, train_end + stall, (train_end, _INF)),
            ]
        else:
            self._segments = [("train", now, train_end, (now, self._arming))]

    def _recovery_steps(self) -> dict[str, tuple[tuple[str, float | None], ...]]:
        """Per checkpoint source, the recovery steps that can take time, as (the record's field for it,
        its cost; None: the replacement's wait, known only at the failure). A step that costs nothing is
        left out: it is no segment and leaves its field at 0. A read from storage has the storage to
        itself: the failure cancelled every upload, and none starts before training resumes."""
        checkpoints = self.checkpoints
        costs, read_s = self.plan.recovery, checkpoints.storage.transfer_s(checkpoints.persistent_bytes)
        steps = {}
        for source in SOURCES:
            costed = (
                (
                    STEP_FIELDS[step],
                    None
                    if step == "replacement"
                    else read_s
                    if (step, source) == ("retrieval", "persistent")
                    else costs.step_s(step, source),
                )
                for step in RECOVERY_STEPS
            )
            steps[source] = tuple((field, cost) for field, cost in costed if cost is None or cost > 0)
        return steps

    def _begin_recovery(self, record: FailureRecord) -> None:
        """The recovery's steps back to back from now, each charged to `record` as if the recovery
        completes (a failure that cuts it short takes back what did not happen, see `_settle`). A
        recovery that costs nothing ends at once."""
        t = self.now
        segments: list[Segment] = []
        for field, cost in self._steps[record.recovered_from]:
            if cost is None:  # the replacement's wait, if any
                duration = self.replaced_by - t
                if duration <= 0:
                    continue
                end = t + duration
                self._charge_replacement(record, t, end)
            else:  # inline (every failure's hot path): a step with a known cost is only its time
                end = t + cost
                setattr(record, field, end - t)
            if segments:
                segments.append((field, t, end, (t, _INF)))
            else:  # the first step is armed with the phase
                self._arming += 1
                segments.append((field, t, end, (t, self._arming)))
            t = end
        if segments:
            self._segments = segments
        else:
            self._finish_recovery(record)

    def _end_phase(self) -> None:
        """The phase ran to its end: a persistent checkpoint starts uploading, or a recovery completes
        (its steps are charged already)."""
        if self.recovery is None:
            for kind, start, end, _ in self._segments:
                self._charge_training(kind, start, end, True)
            self.checkpoints.start_upload(self._target, self.now)
            self._begin_training()
        else:
            self._finish_recovery(self.recovery)  # and training resumes

    def _settle(self, now: float, order: tuple[float, float]) -> None:
        """Account the current phase's segments up to `now`, which an event of `order` ends."""
        record = self.recovery
        for kind, start, end, end_order in self._segments:
            complete = end < now or (end == now and end_order < order)
            if record is None:
                if start > now:
                    break
                self._charge_training(kind, start, end if complete else now, complete)
                if not complete:
                    break
            elif not complete:  # a recovery step cut short or never begun: charge what happened
                if kind == "replacement_s":
                    self._charge_replacement(record, start, max(start, now))
                else:  # inline: at 16,384 machines most failures cut a recovery short
                    setattr(record, kind, now - start if now > start else 0.0)
        self._segments = [_IDLE]

    # ---- failures and recovery ----------------------------------------------------------------
    def _on_failure(self, event: FailureEvent) -> None:
        now = self.now
        in_recovery = self.recovery is not None
        self._repeat = None  # a repeat failure is due only after a recovery that this one now replaces
        checkpoints = self.checkpoints
        if checkpoints.pending:
            checkpoints.promote(now)
        if not in_recovery:
            checkpoints.advance_in_memory(now)
        no_spare = False
        if event.hardware:
            hardware = set(event.machines)
            for machine in sorted(hardware - self.awaiting):
                spare_at, ready_at = self._order_replacement(machine, now)
                no_spare |= spare_at > now
                self.spare_by = max(self.spare_by, spare_at)
                self.replaced_by = max(self.replaced_by, ready_at)
            self.awaiting |= hardware
            checkpoints.lose(hardware)
        if in_recovery and self.recovery.recovered_from == "persistent":
            # Once a recovery goes to storage, CPU memory cannot become usable again before it ends.
            source, target = "persistent", checkpoints.persistent_progress
        else:
            source, target = checkpoints.restore_point()
        lost = self.progress - target if self.progress > target else 0.0
        self.progress = target
        # Positional and then set: keyword arguments to the record's 19-field __init__ cost ~5× as much,
        # once per failure.
        record = FailureRecord(
            now, len(event.machines), _ids(event.machines), event.kind, in_recovery, source
        )
        record.lost_progress_s = lost
        if no_spare:
            record.no_spare = True
        if event.misdiagnosed:
            record.misdiagnosed = True
        if event.repeat:
            record.repeat = True
        self.records.append(record)
        self.recovery = record
        self._begin_recovery(record)

    def _finish_recovery(self, record: FailureRecord) -> None:
        now = self.now
        record.recovery_completed = True
        self.awaiting.clear()
        self.replaced_by = self.spare_by = 0.0
        self.recovery = None
        self.checkpoints.restarted(record.recovered_from, self.progress)
        self._begin_training()
        if self.ops is not None and (slot := self.ops.faulty_slot()) is not None:
            # Armed after the training phase, as the repeat's own process used to be.
            at = now + self.scenario.operations.refail_after_restart_s
            self._repeat = (at, slot, (now, self._arm()))

    def _order_replacement(self, machine: int, now: float) -> tuple[float, float]:
        """(a spare is found at, the replacement is ready at) for a failed machine. Plain model: it is
        swapped for the earliest-ready standby and a new machine is ordered at once. Operations model:
        the pool and repair pipeline decide, and a slot a wrong diagnosis left alone needs nothing."""
        if self.ops is not None:
            return self.ops.replace(machine, now) or (now, now)
        heapq.heappush(self.spare_ready, now + self.scenario.cluster.replacement_delay_s)
        return now, max(now, heapq.heappop(self.spare_ready))

    # ---- time accounting ----------------------------------------------------------------------
    def _charge_training(self, kind: str, start: float, until: float, complete: bool) -> None:
        """Account training or a stall from `start` to `until`; complete training reached its target."""
        elapsed = until - start
        if kind == "train":
            made = elapsed * self._rate
            end = self._target if complete else self.progress + made
            self.checkpoint_s += elapsed - made
            self.checkpoints.note_snapshots(start, self.progress, end)
            self.progress = end
            if complete:
                self.persistent_skipped += self._skipped
        elif kind == "stall":
            self.checkpoint_s += elapsed

    def _charge_replacement(self, record: FailureRecord, start: float, until: float) -> None:
        """`record`'s replacement step lasted from `start` to `until`; the part spent waiting for the
        spare pool is its own waste component (each step happens once per record)."""
        elapsed = until - start
        waited = 0.0
        if self.spare_by > start:
            waited = min(elapsed, self.spare_by - start)
            elapsed -= waited
        record.spare_wait_s = waited
        record.replacement_s = elapsed

    # ---- results ------------------------------------------------------------------------------
    def _summary(self) -> RunSummary:
        sc, plan = self.scenario, self.plan
        # Every recovery second and lost progress belongs to one record: the totals are their sums.
        tally = RecordTally.of(self.records)
        totals = {"checkpoint": self.checkpoint_s, **tally.waste_s}
        assert tuple(totals) == WASTE_COMPONENTS
        failures, recovered = tally.failures, tally.recovered_from
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
            failures=failures,
            software_failures=failures - tally.hardware,
            hardware_failures=tally.hardware,
            simultaneous_failures=tally.simultaneous,
            recoveries_local=recovered["local"],
            recoveries_peer=recovered["peer"],
            recoveries_persistent=recovered["persistent"],
            fraction_from_cpu_memory=(
                (recovered["local"] + recovered["peer"]) / failures if failures else float("nan")
            ),
            ckpt_interval_s=ckpt_interval,
            persistent_interval_s=plan.persistent_interval_s,
            ckpt_time_s=plan.mem_ckpt_time_s
            if plan.mem_interval_s
            else plan.persistent_stall_s + plan.persistent_upload_s,
            iteration_overhead_fraction=plan.overhead_fraction,
            events=self._events(),
            spare_waits=tally.no_spare,
            misdiagnoses=tally.misdiagnosed,
            repeat_failures=tally.repeats,
            wasted_repeat_failures_s=tally.repeat_wasted_s,
            retired_machines=self.ops.retired if self.ops is not None else 0,
            persistent_uploads=self.checkpoints.uploads,
            persistent_skipped=self.persistent_skipped,
        )


def _ids(machines: tuple[int, ...]) -> str:
    """The machines of a failure as a record's `machine_ids` (most failures take one machine down)."""
    return str(machines[0]) if len(machines) == 1 else ",".join(map(str, machines))


def simulate(scenario: Scenario, seed: int) -> RunResult:
    """Simulate one run of `scenario` with `seed`."""
    return ClusterSimulation(scenario, seed).run()
