"""SimPy execution of one iteration with its checkpoint traffic: contention and pipelining are simulated.

The NIC is a `simpy.PriorityResource` (training traffic first, but a chunk already on the wire is not
pre-empted), the receiver's GPU→CPU copy engine a `simpy.Resource`, its sub-buffers a
`simpy.Container`: a chunk holds a sub-buffer from the start of its receive until its copy to CPU
memory ends, so with p = 1 the copy blocks the next receive and with p ≥ 2 the two overlap. Machines
are symmetric (each sends and receives the same traffic), so one GPU, its NIC share and its
receiving peer stand for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from gemini_ft.sim.interleave_plan import Plan
from gemini_ft.sim.interleave_timeline import COMM, Timeline

_TRAINING, _CHECKPOINT = 0, 1  # NIC priorities (lower first)


@dataclass(frozen=True)
class Interval:
    """One thing that happened: kind ∈ compute, comm (training traffic), ckpt (checkpoint traffic), copy."""

    start_s: float
    end_s: float
    kind: str
    label: str


@dataclass(frozen=True)
class Execution:
    iteration_time_s: float  # until the training ops and all checkpoint traffic have left the NIC
    training_end_s: float
    checkpoint_done_s: float | None  # last chunk in the peer's CPU memory
    intervals: tuple[Interval, ...]


def execute(
    timeline: Timeline,
    plan: Plan | None,
    *,
    gpu_to_cpu_bytes_per_s: float,
    after_training: bool = False,
) -> Execution:
    """Run the timeline's ops and the plan's chunks; `after_training` sends every chunk once training ends."""
    env = simpy.Environment()
    nic = simpy.PriorityResource(env, capacity=1)
    intervals: list[Interval] = []
    done = [env.event() for _ in timeline.ops]
    for index in range(len(timeline.ops)):
        env.process(_run_op(env, timeline, index, done, nic, intervals))
    training = env.all_of(done)
    checkpoint: dict[str, float] = {}
    if plan is not None and plan.chunks:
        copy_engine = simpy.Resource(env, capacity=1)
        buffers = simpy.Container(env, capacity=plan.sub_buffers, init=plan.sub_buffers)
        env.process(
            _send_chunks(
                env,
                plan,
                done,
                training,
                nic,
                copy_engine,
                buffers,
                gpu_to_cpu_bytes_per_s,
                after_training,
                intervals,
                checkpoint,
            )
        )
    env.run()
    training_end = max((i.end_s for i in intervals if i.kind in ("compute", COMM)), default=0.0)
    sent = max((i.end_s for i in intervals if i.kind == "ckpt"), default=0.0)
    return Execution(
        iteration_time_s=max(training_end, sent),
        training_end_s=training_end,
        checkpoint_done_s=checkpoint.get("done"),
        intervals=tuple(sorted(intervals, key=lambda i: (i.start_s, i.kind))),
    )


def _run_op(env: simpy.Environment, timeline: Timeline, index: int, done: list[simpy.Event], nic, intervals):
    op = timeline.ops[index]
    for dep, lag in op.deps:
        yield done[dep]
        if lag > 0:
            # A measured gap after a predecessor (CSV timelines) is kept relative to its actual end.
            ready = done[dep].value + lag
            if ready > env.now:
                yield env.timeout(ready - env.now)
    if op.kind == COMM:
        with nic.request(priority=_TRAINING) as request:
            yield request
            start = env.now
            yield env.timeout(op.duration_s)
    else:
        start = env.now
        yield env.timeout(op.duration_s)
    intervals.append(Interval(start, env.now, op.kind, op.label))
    done[index].succeed(env.now)


def _send_chunks(
    env, plan: Plan, done, training, nic, copy_engine, buffers, copy_bw, after_training, intervals, checkpoint
):
    """One sender, chunks in plan order; each waits for its span to open and for a free receiver sub-buffer."""
    copies = []
    for number, chunk in enumerate(plan.chunks):
        if after_training:
            if not training.triggered:
                yield training
        else:
            anchor = plan.spans[chunk.span].anchor
            opened = 0.0
            if anchor >= 0:
                yield done[anchor]
                opened = done[anchor].value
            if opened + chunk.offset_s > env.now:
                yield env.timeout(opened + chunk.offset_s - env.now)
        yield buffers.get(1)
        with nic.request(priority=_CHECKPOINT) as request:
            yield request
            start = env.now
            yield env.timeout(chunk.duration_s)
        intervals.append(Interval(start, env.now, "ckpt", f"chunk-{number} r{chunk.replica}"))
        copies.append(
            env.process(_copy(env, chunk.size_bytes / copy_bw, number, copy_engine, buffers, intervals))
        )
    yield env.all_of(copies)
    checkpoint["done"] = env.now


def _copy(env, duration_s: float, number: int, copy_engine, buffers, intervals):
    with copy_engine.request() as request:
        yield request
        start = env.now
        yield env.timeout(duration_s)
    intervals.append(Interval(start, env.now, "copy", f"copy-{number}"))
    yield buffers.put(1)
