"""The checkpoint partition of Gemini's Algorithm 2 (paper §5): cut the traffic into chunks, fit them into idle spans.

Inputs are the paper's: chunk time f(s) = α + s/B, the GPU buffer R split into p sub-buffers (chunks
of at most R/p), the usable share μ of every idle span, m − 1 remote replicas of the checkpoint C.
Chunks are placed greedily; what does not fit goes into the last span and lengthens the iteration.
`naive_plan` is the one-chunk-per-span baseline the paper compares against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gemini_ft.sim.interleave_timeline import Span

# Below this many bytes a leftover piece of a span is not worth a chunk (α would dominate).
_MIN_CHUNK_BYTES = 1.0


@dataclass(frozen=True)
class Chunk:
    """One piece of checkpoint traffic: `offset_s` after the start of span `span` (planned times)."""

    span: int
    replica: int  # 1..m-1: which remote copy this piece belongs to
    size_bytes: float
    offset_s: float
    duration_s: float  # f(s) = α + s/B
    overflow: bool  # placed past the span's μ budget (only in the last span)


@dataclass(frozen=True)
class Plan:
    chunks: tuple[Chunk, ...]
    spans: tuple[Span, ...]
    extra_time_s: float  # how much the overflow lengthens the iteration
    buffer_bytes: float  # GPU memory the receiver needs for this plan
    sub_buffers: int  # how many chunks may be in flight to the receiver at once

    @property
    def bytes_scheduled(self) -> float:
        return sum(chunk.size_bytes for chunk in self.chunks)

    def span_time_used_s(self, span: int, overflow: bool | None = None) -> float:
        return sum(
            c.duration_s
            for c in self.chunks
            if c.span == span and (overflow is None or c.overflow == overflow)
        )


def partition_checkpoint(
    spans: list[Span],
    ckpt_bytes: float,
    replicas: int,
    *,
    alpha_s: float,
    bandwidth_bytes_per_s: float,
    mu: float,
    buffer_bytes: float,
    sub_buffers: int,
    max_chunk_bytes: float | None = None,
) -> Plan:
    """Algorithm 2: (m − 1)·C bytes in chunks of at most R/p, greedily into the spans' μ budgets."""
    if not spans:
        raise ValueError("at least one span (the last one may be empty) is needed")
    chunk_cap = (
        buffer_bytes / sub_buffers
        if max_chunk_bytes is None
        else min(max_chunk_bytes, buffer_bytes / sub_buffers)
    )
    placer = _Placer(spans, ckpt_bytes, replicas, alpha_s, bandwidth_bytes_per_s)
    for index, span in enumerate(spans):
        budget = mu * span.length_s
        while placer.remaining > 0:
            fit = (budget - placer.used[index] - alpha_s) * bandwidth_bytes_per_s
            size = min(chunk_cap, placer.remaining_in_replica, fit)
            if size < _MIN_CHUNK_BYTES and size < placer.remaining_in_replica:
                break
            placer.place(index, size, overflow=False)
    placer.overflow(lambda remaining: min(chunk_cap, remaining))
    return placer.finish(buffer_bytes, sub_buffers)


def naive_plan(
    spans: list[Span],
    ckpt_bytes: float,
    replicas: int,
    *,
    alpha_s: float,
    bandwidth_bytes_per_s: float,
    mu: float,
) -> Plan:
    """One chunk per span, as large as the span's μ budget allows; the receiver buffers a whole chunk.

    The overflow (if any) is sent in chunks no larger than the largest in-span chunk, so the buffer the
    scheme needs is its largest chunk.
    """
    placer = _Placer(spans, ckpt_bytes, replicas, alpha_s, bandwidth_bytes_per_s)
    for index, span in enumerate(spans):
        fit = (mu * span.length_s - alpha_s) * bandwidth_bytes_per_s
        # One chunk per span and replica boundary: a chunk never mixes two replicas (two receivers).
        while placer.remaining > 0 and fit >= _MIN_CHUNK_BYTES:
            size = min(placer.remaining_in_replica, fit)
            placer.place(index, size, overflow=False)
            fit -= size + alpha_s * bandwidth_bytes_per_s
    largest = max((c.size_bytes for c in placer.chunks), default=math.inf)
    placer.overflow(lambda remaining: min(largest, remaining))
    buffer = max(c.size_bytes for c in placer.chunks) if placer.chunks else 0.0
    return placer.finish(buffer, 1)


class _Placer:
    """Tracks what is left of which replica and the time used in every span."""

    def __init__(
        self, spans: list[Span], ckpt_bytes: float, replicas: int, alpha_s: float, bandwidth: float
    ) -> None:
        self.spans = spans
        self.ckpt_bytes = ckpt_bytes
        self.alpha_s = alpha_s
        self.bandwidth = bandwidth
        self.replica = 1
        self.replicas = replicas
        self.remaining_in_replica = ckpt_bytes if replicas > 1 else 0.0
        self.used = [0.0] * len(spans)
        self.chunks: list[Chunk] = []

    @property
    def remaining(self) -> float:
        return self.remaining_in_replica + max(0, self.replicas - 1 - self.replica) * self.ckpt_bytes

    def place(self, span: int, size: float, *, overflow: bool) -> None:
        duration = self.alpha_s + size / self.bandwidth
        self.chunks.append(Chunk(span, self.replica, size, self.used[span], duration, overflow))
        self.used[span] += duration
        self.remaining_in_replica -= size
        if self.remaining_in_replica <= _MIN_CHUNK_BYTES * 1e-3 and self.replica < self.replicas - 1:
            self.replica += 1
            self.remaining_in_replica = self.ckpt_bytes
        elif self.remaining_in_replica <= _MIN_CHUNK_BYTES * 1e-3:
            self.remaining_in_replica = 0.0

    def overflow(self, chunk_size) -> None:
        last = len(self.spans) - 1
        while self.remaining > 0:
            self.place(last, chunk_size(self.remaining_in_replica), overflow=True)

    def finish(self, buffer_bytes: float, sub_buffers: int) -> Plan:
        last = len(self.spans) - 1
        extra = max(0.0, self.used[last] - self.spans[last].length_s) if self.chunks else 0.0
        return Plan(tuple(self.chunks), tuple(self.spans), extra, buffer_bytes, sub_buffers)
