"""SimPy execution of a planned iteration: exact traces for small cases, the plan replayed without contention."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.sim.interleave_exec import execute
from gemini_ft.sim.interleave_plan import partition_checkpoint
from gemini_ft.sim.interleave_timeline import COMM, COMPUTE, Op, Timeline

MB = 1e6
B = 1e9


def chain(durations: list[float]) -> Timeline:
    """compute, comm, compute, comm, ... each waiting for the previous one."""
    ops, t = [], 0.0
    for i, duration in enumerate(durations):
        ops.append(Op(f"op{i}", COMPUTE if i % 2 == 0 else COMM, duration, ((i - 1, 0.0),) if i else (), t))
        t += duration
    return Timeline(tuple(ops), t, "test")


def run(
    timeline: Timeline,
    ckpt: float,
    *,
    buffer: float,
    p: int,
    copy_bw: float,
    mu: float = 0.8,
    alpha: float = 0.0,
):
    plan = partition_checkpoint(
        timeline.idle_spans(),
        ckpt,
        2,
        alpha_s=alpha,
        bandwidth_bytes_per_s=B,
        mu=mu,
        buffer_bytes=buffer,
        sub_buffers=p,
    )
    return plan, execute(timeline, plan, gpu_to_cpu_bytes_per_s=copy_bw)


def spans(execution, kind):
    return [(pytest.approx(i.start_s), pytest.approx(i.end_s)) for i in execution.intervals if i.kind == kind]


def test_one_buffer_copy_blocks_the_next_receive_and_delays_training():
    # Idle spans [0, 1) and [2, 3); 1.6 GB in 400 MB chunks (0.4 s), copies at 1 GB/s (0.4 s), p = 1.
    timeline = chain([1.0, 1.0, 1.0, 1.0])
    _, result = run(timeline, 1600 * MB, buffer=400 * MB, p=1, copy_bw=1e9)
    # Chunk 1 waits for chunk 0's copy, is on the wire when comm 0 is ready at 1.0 and delays it.
    assert spans(result, "ckpt") == [(0.0, 0.4), (0.8, 1.2), (2.2, 2.6), (3.0, 3.4)]
    assert spans(result, COMM) == [(1.2, 2.2), (3.4, 4.4)]
    assert result.iteration_time_s == pytest.approx(4.4)
    assert result.checkpoint_done_s == pytest.approx(3.8)


def test_sub_buffers_pipeline_copy_with_the_next_receive():
    # The same 400 MB buffer as two 200 MB sub-buffers: copies overlap receives, training is untouched.
    timeline = chain([1.0, 1.0, 1.0, 1.0])
    _, result = run(timeline, 1600 * MB, buffer=400 * MB, p=2, copy_bw=1e9)
    assert spans(result, "ckpt") == [(0.2 * k, 0.2 * k + 0.2) for k in range(4)] + [
        (2.0 + 0.2 * k, 2.2 + 0.2 * k) for k in range(4)
    ]
    assert spans(result, "copy")[-1] == (pytest.approx(2.8), pytest.approx(3.0))
    assert spans(result, COMM) == [(1.0, 2.0), (3.0, 4.0)]
    assert result.iteration_time_s == pytest.approx(4.0)


def test_overflow_runs_after_training_and_lengthens_the_iteration():
    timeline = chain([1.0, 1.0])
    _, result = run(timeline, 1000 * MB, buffer=400 * MB, p=2, copy_bw=1e12)
    # 0.8 s fit in the span; 200 MB go into the empty last span after comm 0.
    assert result.iteration_time_s == pytest.approx(2.2)
    assert result.training_end_s == pytest.approx(2.0)


@given(
    durations=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=10),
    ckpt_mb=st.floats(1.0, 2000.0),
    mu=st.floats(0.1, 0.95),
    buffer_mb=st.floats(8.0, 256.0),
    p=st.integers(2, 8),
    alpha=st.sampled_from([0.0, 1e-4]),
)
def test_without_contention_the_execution_matches_the_plan(durations, ckpt_mb, mu, buffer_mb, p, alpha):
    timeline = chain(durations)
    # Copies far faster than the NIC and p ≥ 2: a sub-buffer is always free, nothing waits.
    plan, result = run(timeline, ckpt_mb * MB, buffer=buffer_mb * MB, p=p, copy_bw=1e18, mu=mu, alpha=alpha)
    planned_starts = [plan.spans[c.span].start_s + c.offset_s for c in plan.chunks]
    assert [i.start_s for i in result.intervals if i.kind == "ckpt"] == pytest.approx(
        planned_starts, abs=1e-9
    )
    training = [(i.start_s, i.end_s) for i in result.intervals if i.kind in (COMPUTE, COMM)]
    expected = [(op.planned_start_s, op.planned_start_s + op.duration_s) for op in timeline.ops]
    # Flattened: pytest.approx compares flat sequences of numbers only.
    flat = [t for interval in sorted(training) for t in interval]
    assert flat == pytest.approx([t for interval in sorted(expected) for t in interval], abs=1e-9)
    assert result.iteration_time_s == pytest.approx(timeline.iteration_time_s + plan.extra_time_s, abs=1e-9)
