"""Checkpoint traffic interleaving (paper §5): compare schemes on one iteration and feed the simulator.

`evaluate_schemes(scenario)` builds the iteration timeline, plans each scheme's checkpoint traffic
(Algorithm 2 for `no-pipeline` and `gemini`) and executes it in SimPy, returning iteration time,
overhead, checkpoint completion, GPU buffer needed and whether it fits. `iteration_cost(scenario)` is
the simulator's entry point for the `gemini` policy: the relative overhead and checkpoint time of
`scenario.interleave.scheme`, cached per scenario.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.schema import SCHEMES, Scenario
from gemini_ft.sim.interleave_exec import Execution, execute
from gemini_ft.sim.interleave_plan import Plan, naive_plan, partition_checkpoint
from gemini_ft.sim.interleave_timeline import (
    Timeline,
    build_timeline,
    gpu_memory_left_bytes,
    nic_share_bytes_per_s,
)

if TYPE_CHECKING:
    import pandas as pd

MIB = 1024**2


@dataclass(frozen=True)
class IterationCost:
    """What one in-memory checkpoint per iteration costs (for the simulator's `gemini` policy)."""

    overhead_fraction: float  # extra iteration time / baseline iteration time
    checkpoint_time_s: float  # iteration start → checkpoint of that iteration complete on the peers
    baseline_iteration_s: float  # the modelled iteration without checkpoint traffic


@dataclass(frozen=True)
class SchemeResult:
    scheme: str
    iteration_time_s: float
    overhead_fraction: float
    checkpoint_time_s: float | None  # None for the baseline (no checkpoint)
    planned_iteration_time_s: float  # what Algorithm 2's plan predicts, before contention
    chunks: int
    buffer_bytes: float
    gpu_memory_left_bytes: float | None  # None when the architecture is unknown (CSV timeline)
    execution: Execution

    @property
    def fits(self) -> bool | None:
        if self.gpu_memory_left_bytes is None:
            return None
        return self.buffer_bytes <= self.gpu_memory_left_bytes

    def intervals_frame(self) -> pd.DataFrame:
        """The execution trace: one row per interval (start_s, end_s, kind, label)."""
        import pandas as pd  # only for this table: the engine prices checkpoints through this module

        return pd.DataFrame(
            [vars(interval) for interval in self.execution.intervals],
            columns=["start_s", "end_s", "kind", "label"],
        )

    def summary(self) -> dict[str, object]:
        """A flat, JSON-friendly record (without the execution trace)."""
        return {
            "scheme": self.scheme,
            "iteration_time_s": self.iteration_time_s,
            "overhead_fraction": self.overhead_fraction,
            "checkpoint_time_s": self.checkpoint_time_s,
            "planned_iteration_time_s": self.planned_iteration_time_s,
            "chunks": self.chunks,
            "buffer_mib": self.buffer_bytes / MIB,
            "gpu_memory_left_mib": None
            if self.gpu_memory_left_bytes is None
            else self.gpu_memory_left_bytes / MIB,
            "fits": self.fits,
        }


def evaluate_schemes(scenario: Scenario, schemes: list[str] | None = None) -> list[SchemeResult]:
    """Each requested scheme (default: all) on the scenario's iteration.

    Overheads are relative to the contention-free timeline, which is what the baseline's execution
    reproduces exactly (no checkpoint traffic, nothing to contend with), so the baseline is only
    executed when it is asked for.
    """
    schemes = list(SCHEMES) if schemes is None else schemes
    for scheme in schemes:
        if scheme not in SCHEMES:
            raise UserError("scheme", scheme, f"one of {', '.join(SCHEMES)}")
    timeline = build_timeline(scenario)
    if timeline.iteration_time_s <= 0:
        raise UserError(
            "interleave.timeline_file", str(timeline.source), "empty timeline: the iteration takes no time"
        )
    _check_chunk_size(scenario)
    memory_left = gpu_memory_left_bytes(scenario)
    return [_evaluate(scenario, timeline, scheme, memory_left) for scheme in schemes]


def iteration_cost(scenario: Scenario) -> IterationCost | None:
    """Overhead and checkpoint time of `scenario.interleave.scheme`; None without the architecture fields."""
    model = scenario.model
    if scenario.interleave.timeline_file is None and (model.layers is None or model.hidden_size is None):
        return None
    # Only these sections shape one iteration; the JSON text is the cache key and rebuilds the scenario.
    return _cached_cost(scenario.model_dump_json(include={"cluster", "model", "checkpoint", "interleave"}))


@functools.lru_cache(maxsize=256)
def _cached_cost(sections_json: str) -> IterationCost:
    scenario = Scenario.model_validate_json(sections_json)
    result = evaluate_schemes(scenario, [scenario.interleave.scheme])[0]
    checkpoint_time = result.checkpoint_time_s if result.checkpoint_time_s is not None else 0.0
    return IterationCost(
        overhead_fraction=result.overhead_fraction,
        checkpoint_time_s=checkpoint_time,
        baseline_iteration_s=result.iteration_time_s / (1.0 + result.overhead_fraction),
    )


def plan_for(scenario: Scenario, timeline: Timeline, scheme: str) -> Plan | None:
    """The chunk plan of one scheme (None for the baseline)."""
    config = scenario.interleave
    spans = timeline.idle_spans()
    common = {
        "alpha_s": config.alpha_s,
        "bandwidth_bytes_per_s": nic_share_bytes_per_s(scenario),
    }
    ckpt, replicas = scenario.ckpt_bytes_per_gpu, scenario.checkpoint.replicas
    buffer = config.gpu_buffer_mib * MIB
    chunk_cap = None if config.chunk_mib is None else config.chunk_mib * MIB
    if scheme == "baseline":
        return None
    if scheme == "naive":
        return naive_plan(spans, ckpt, replicas, mu=config.mu, **common)
    if scheme == "blocking":
        # After the iteration the NIC is free: all chunks back to back, the same buffers as gemini.
        return partition_checkpoint(
            spans[-1:],
            ckpt,
            replicas,
            mu=config.mu,
            buffer_bytes=buffer,
            sub_buffers=config.sub_buffers,
            max_chunk_bytes=chunk_cap,
            **common,
        )
    sub_buffers = 1 if scheme == "no-pipeline" else config.sub_buffers
    return partition_checkpoint(
        spans,
        ckpt,
        replicas,
        mu=config.mu,
        buffer_bytes=buffer,
        sub_buffers=sub_buffers,
        max_chunk_bytes=chunk_cap,
        **common,
    )


def _evaluate(scenario: Scenario, timeline: Timeline, scheme: str, memory_left: float | None) -> SchemeResult:
    plan = plan_for(scenario, timeline, scheme)
    if plan is None:
        run = execute(timeline, None, gpu_to_cpu_bytes_per_s=_copy_bandwidth(scenario))
        planned, buffer, chunks = timeline.iteration_time_s, 0.0, 0
    else:
        blocking = scheme == "blocking"
        run = execute(
            timeline, plan, gpu_to_cpu_bytes_per_s=_copy_bandwidth(scenario), after_training=blocking
        )
        sends = sum(c.duration_s for c in plan.chunks)
        planned = timeline.iteration_time_s + (sends if blocking else plan.extra_time_s)
        buffer, chunks = plan.buffer_bytes, len(plan.chunks)
    base = timeline.iteration_time_s
    return SchemeResult(
        scheme=scheme,
        iteration_time_s=run.iteration_time_s,
        overhead_fraction=(run.iteration_time_s - base) / base,
        checkpoint_time_s=run.checkpoint_done_s if plan is not None else None,
        planned_iteration_time_s=planned,
        chunks=chunks,
        buffer_bytes=buffer,
        gpu_memory_left_bytes=memory_left,
        execution=run,
    )


def _copy_bandwidth(scenario: Scenario) -> float:
    return scenario.interleave.gpu_to_cpu_gbps * 1e9 / 8


def _check_chunk_size(scenario: Scenario) -> None:
    config = scenario.interleave
    sub_buffer = config.gpu_buffer_mib / config.sub_buffers
    if config.chunk_mib is not None and config.chunk_mib > sub_buffer:
        raise UserError(
            "interleave.chunk_mib",
            config.chunk_mib,
            f"a chunk must fit one sub-buffer: at most gpu_buffer_mib / sub_buffers = {sub_buffer:g} MiB",
        )
