"""Algorithm 2 (checkpoint partition) and the naive one-chunk-per-span plan."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.sim.interleave_plan import naive_plan, partition_checkpoint
from gemini_ft.sim.interleave_timeline import Span

MB = 1e6
B = 1e9  # bytes/s: 1 MB takes 1 ms


def spans_of(lengths: list[float]) -> list[Span]:
    spans, t = [], 0.0
    for i, length in enumerate(lengths):
        spans.append(Span(t, t + length, i - 1))
        t += length + 1.0  # 1 s of training traffic between spans
    return spans


def plan(lengths, ckpt, replicas=2, *, alpha=0.0, mu=0.8, buffer=128 * MB, p=4):
    return partition_checkpoint(
        spans_of(lengths),
        ckpt,
        replicas,
        alpha_s=alpha,
        bandwidth_bytes_per_s=B,
        mu=mu,
        buffer_bytes=buffer,
        sub_buffers=p,
    )


def test_everything_fits_in_the_first_spans_without_extra_time():
    # 0.8 × 0.5 s = 400 ms per span = 400 MB; 600 MB need the first span and half of the second.
    result = plan([0.5, 0.5, 0.5], 600 * MB)
    assert result.extra_time_s == 0
    assert [c.span for c in result.chunks] == [0] * 13 + [1] * 7  # 12 × 32 MB + 16 MB, then 6 × 32 MB + 8 MB
    assert sum(c.size_bytes for c in result.chunks if c.span == 0) == pytest.approx(400 * MB)
    assert result.bytes_scheduled == pytest.approx(600 * MB)
    assert not any(c.overflow for c in result.chunks)


def test_nothing_fits_everything_goes_to_the_last_span():
    # Spans too short for even the fixed cost α: all traffic lands in the (empty) last span.
    result = plan([1e-5, 1e-5, 0.0], 320 * MB, alpha=1e-4)
    assert all(c.span == 2 and c.overflow for c in result.chunks)
    assert len(result.chunks) == 10
    assert result.extra_time_s == pytest.approx(10 * (1e-4 + 0.032))


def test_chunks_that_fit_exactly():
    # μ × span = 165 ms = 5 chunks of α + 32 MB / B = 1 ms + 32 ms.
    result = plan([0.165 / 0.8, 0.0], 5 * 32 * MB, alpha=1e-3)
    assert [c.size_bytes for c in result.chunks] == [pytest.approx(32 * MB)] * 5
    assert {c.span for c in result.chunks} == {0}
    assert result.span_time_used_s(0) == pytest.approx(0.165)
    assert result.extra_time_s == 0


def test_m_minus_one_replicas_are_sent():
    result = plan([10.0, 0.0], 100 * MB, replicas=4)
    assert result.bytes_scheduled == pytest.approx(300 * MB)
    for replica in (1, 2, 3):
        assert sum(c.size_bytes for c in result.chunks if c.replica == replica) == pytest.approx(100 * MB)
    assert plan([10.0], 100 * MB, replicas=1).chunks == ()


def test_naive_sends_one_chunk_per_span_and_needs_the_largest_as_buffer():
    result = naive_plan(spans_of([0.5, 0.25, 1.0]), 700 * MB, 2, alpha_s=0.0, bandwidth_bytes_per_s=B, mu=0.8)
    assert [c.span for c in result.chunks] == [0, 1, 2]
    assert [c.size_bytes / MB for c in result.chunks] == pytest.approx([400, 200, 100])
    assert result.buffer_bytes == pytest.approx(400 * MB)
    assert result.sub_buffers == 1


spans_strategy = st.lists(st.floats(0.0, 2.0), min_size=1, max_size=12)


@given(
    lengths=spans_strategy,
    ckpt_mb=st.floats(1.0, 3000.0),
    replicas=st.integers(1, 4),
    alpha=st.sampled_from([0.0, 1e-5, 1e-4, 1e-3]),
    mu=st.floats(0.05, 0.95),
    buffer_mb=st.floats(1.0, 512.0),
    p=st.integers(1, 8),
)
def test_algorithm2_properties(lengths, ckpt_mb, replicas, alpha, mu, buffer_mb, p):
    result = plan(lengths, ckpt_mb * MB, replicas, alpha=alpha, mu=mu, buffer=buffer_mb * MB, p=p)
    # Every byte of the m − 1 remote replicas is scheduled, in chunks no larger than one sub-buffer.
    assert math.isclose(result.bytes_scheduled, (replicas - 1) * ckpt_mb * MB, rel_tol=1e-9)
    assert all(0 < c.size_bytes <= buffer_mb * MB / p * (1 + 1e-12) for c in result.chunks)
    # Within each span the μ budget holds; only the last span's overflow may exceed it.
    last = len(lengths) - 1
    for index, length in enumerate(lengths):
        assert result.span_time_used_s(index, overflow=False) <= mu * length + 1e-9
        if index != last:
            assert result.span_time_used_s(index, overflow=True) == 0
    # The overflow is exactly the extra iteration time beyond the last span.
    assert result.extra_time_s == pytest.approx(
        max(0.0, result.span_time_used_s(last) - lengths[last]), abs=1e-9
    )
    # Chunks of a span are back to back from the span start.
    for index in range(len(lengths)):
        offsets = [c.offset_s for c in result.chunks if c.span == index]
        durations = [c.duration_s for c in result.chunks if c.span == index]
        assert offsets == pytest.approx([sum(durations[:k]) for k in range(len(durations))])
