"""Checkpoint plans: the per-transfer fixed costs reach the in-memory checkpoint and the retrievals in
every way the `gemini` policy can be timed (interleaving model, explicit overhead, NIC transfer)."""

from __future__ import annotations

from typing import Any

import pytest

from scenarios.loader import apply_overrides, load_scenario, validate
from scenarios.schema import Scenario
from sim import costs
from sim.interleave import iteration_cost
from sim.policies import in_memory_costs, plan_for

LATENCY = 0.5
LOCAL = 0.25
FIXED_COSTS = {"checkpoint.transfer_latency_s": LATENCY, "checkpoint.local_retrieval_latency_s": LOCAL}


def paper(overrides: dict[str, Any]) -> Scenario:
    """The paper's set-up (75 GB per machine: 1.5 s over 400 Gbps; 9.375 GB per GPU: 0.75 s at 100 Gbps)."""
    base = load_scenario("gpt2-100b-p4d").model_dump(mode="python", exclude={"sweep"})
    return validate(apply_overrides(base, overrides))


def scaled_schedule_s(scenario: Scenario) -> float:
    cost = iteration_cost(scenario)
    assert cost is not None
    return cost.checkpoint_time_s * scenario.model.iteration_time_s / cost.baseline_iteration_s


@pytest.mark.parametrize(
    ("overrides", "schedule_slower"),
    [
        ({}, True),  # the interleaved schedule (5.7 s at 62 s per iteration) is slower than the NIC
        ({"model.iteration_time_s": 6.2}, False),  # scaled to 0.57 s: the raw 1.5 s transfer bounds it
    ],
)
def test_interleaved_checkpoint_completes_later_by_the_latency(overrides, schedule_slower) -> None:
    without, with_costs = paper(overrides), paper({**overrides, **FIXED_COSTS})
    assert (scaled_schedule_s(without) > costs.replication_round_s(without)) is schedule_slower
    overhead, checkpoint_s = in_memory_costs(without)
    overhead_with, checkpoint_with = in_memory_costs(with_costs)
    assert checkpoint_with - checkpoint_s == pytest.approx(LATENCY, abs=1e-12)
    assert overhead_with == overhead  # the set-up hides in idle network time
    plan = plan_for(with_costs)
    assert plan.mem_ckpt_time_s == checkpoint_with
    assert plan.recovery.retrieval_s("peer") == 1.5 + LATENCY
    assert plan.recovery.retrieval_s("local") == 0.75 + LOCAL
    assert (
        plan.recovery.retrieval_s("persistent")
        == plan_for(without).recovery.retrieval_s("persistent")
        == 480.0
    )


def test_explicit_overhead_keeps_the_overhead_and_adds_the_latency() -> None:
    plan = plan_for(paper({"checkpoint.iteration_overhead_fraction": 0.01, **FIXED_COSTS}))
    assert (plan.overhead_fraction, plan.mem_ckpt_time_s) == (0.01, 1.5 + LATENCY)


def test_nic_transfer_charges_the_latency_beyond_one_iteration() -> None:
    # Without the architecture the checkpoint is the NIC transfer, free while it fits in one iteration.
    no_model = {"model.layers": None, "model.hidden_size": None, "model.iteration_time_s": 1.0}
    without = plan_for(paper(no_model))
    plan = plan_for(paper({**no_model, **FIXED_COSTS}))
    assert (without.overhead_fraction, without.mem_ckpt_time_s) == (0.5, 1.5)
    assert (plan.overhead_fraction, plan.mem_ckpt_time_s) == (1.0, 2.0)  # (1.5 + 0.5 − 1) / 1
    assert plan.mem_interval_s == 1.0  # 2 s of wall time per iteration: the round fits in one


def test_one_replica_sends_nothing_and_pays_no_latency() -> None:
    no_model = {"model.layers": None, "model.hidden_size": None, "checkpoint.replicas": 1}
    plan = plan_for(paper({**no_model, **FIXED_COSTS}))
    assert plan.mem_ckpt_time_s == 0.0 and plan.recovery.retrieval_s("local") == 0.75 + LOCAL


@pytest.mark.parametrize(
    ("overrides", "checkpoint_s"),
    [
        ({}, None),  # the 5.7 s schedule is slower than 3 s at 200 Gbps: unchanged
        ({"model.iteration_time_s": 6.2}, 3.0),  # the 0.57 s schedule is bounded by 75 GB at 200 Gbps
    ],
)
def test_replication_bandwidth_bounds_the_interleaved_schedule_only_from_below(
    overrides, checkpoint_s
) -> None:
    nic, slow = paper(overrides), paper({**overrides, "checkpoint.replication_gbps": 200})
    (overhead, nic_s), (overhead_slow, slow_s) = in_memory_costs(nic), in_memory_costs(slow)
    # The schedule's chunks move at the NIC rate in idle spans (its own account of sharing the links).
    assert scaled_schedule_s(slow) == scaled_schedule_s(nic) and overhead_slow == overhead
    assert slow_s == (nic_s if checkpoint_s is None else checkpoint_s)
    assert plan_for(slow).recovery.retrieval_s("peer") == plan_for(nic).recovery.retrieval_s("peer") == 1.5


def test_nic_transfer_at_the_replication_bandwidth() -> None:
    no_model = {"model.layers": None, "model.hidden_size": None, "model.iteration_time_s": 1.0}
    plan = plan_for(paper({**no_model, **FIXED_COSTS, "checkpoint.replication_gbps": 200}))
    # 75 GB at 200 Gbps is 3 s, plus the round's 0.5 s: 2.5 s beyond a 1 s iteration.
    assert (plan.overhead_fraction, plan.mem_ckpt_time_s) == (2.5, 3.5)
    assert plan.recovery.retrieval_s("peer") == 1.5 + LATENCY  # a fetch has the 400 Gbps NIC to itself
    explicit = plan_for(
        paper({"checkpoint.iteration_overhead_fraction": 0.01, "checkpoint.replication_gbps": 200})
    )
    assert (explicit.overhead_fraction, explicit.mem_ckpt_time_s) == (0.01, 3.0)


def test_replication_bandwidth_equal_to_the_nic_changes_nothing() -> None:
    for overrides in ({}, {"model.layers": None, "model.hidden_size": None, "model.iteration_time_s": 1.0}):
        assert plan_for(paper({**overrides, "checkpoint.replication_gbps": 400})) == plan_for(
            paper(overrides)
        )
