"""The cost model: every checkpoint, transfer, serialization and recovery time from its formula."""

from __future__ import annotations

import pytest

from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim import costs
from gemini_ft.sim.costs import RECOVERY_STEPS


def test_the_papers_times():
    scenario = Scenario()
    # 1.2 TB at 20 Gbps to FSx: 480 s; one replica of 75 GB over 400 Gbps: 1.5 s.
    assert costs.persistent_ckpt_s(scenario) == pytest.approx(480.0)
    assert costs.replication_round_s(scenario) == pytest.approx(1.5)
    assert costs.peer_retrieval_s(scenario) == pytest.approx(1.5)


def test_a_recovery_is_the_sum_of_its_steps_per_source():
    scenario = Scenario.model_validate({"recovery": {"detection_s": 10, "warmup_s": 100}})
    recovery = costs.recovery_costs(scenario)
    # 2 replicas of 75 GB at 7.4 Gbps; storage reads the whole 1.2 TB at 20 Gbps.
    serialization = 2 * 75e9 * 8 / 7.4e9
    assert recovery.total_s("local") == pytest.approx(10 + serialization + 0.75 + 100)
    assert recovery.total_s("peer", replacement_wait_s=30) == pytest.approx(
        10 + 30 + serialization + 1.5 + 100
    )
    assert recovery.total_s("persistent") == pytest.approx(10 + 480 + 100)
    assert [recovery.step_s(step, "persistent") for step in RECOVERY_STEPS] == [10, 0, 0, 480, 100]
    with pytest.raises(ValueError, match="unknown recovery step"):
        recovery.step_s("coffee", "local")


def test_transfer_fixed_costs_enter_the_derived_times_once_per_transfer():
    scenario = Scenario.model_validate(
        {"checkpoint": {"transfer_latency_s": 0.25, "local_retrieval_latency_s": 0.125}}
    )
    # 75 GB per machine over 400 Gbps is 1.5 s; 9.375 GB per GPU at 100 Gbps GPU→CPU is 0.75 s.
    assert costs.replication_round_s(scenario) == 1.5 + 0.25
    assert costs.peer_retrieval_s(scenario) == 1.5 + 0.25
    assert costs.local_retrieval_s(scenario) == 0.75 + 0.125
    assert costs.persistent_ckpt_s(scenario) == 480.0  # storage has its own latency_s
    # m = 3: both peers are served in one round, so the fixed cost is paid once, not twice.
    three = Scenario.model_validate({"checkpoint": {"replicas": 3, "transfer_latency_s": 0.25}})
    assert costs.replication_round_s(three) == 3.0 + 0.25
    assert costs.peer_retrieval_s(three) == 1.5 + 0.25
    # m = 1: nothing leaves the machine, so there is no round to pay for.
    one = Scenario.model_validate({"checkpoint": {"replicas": 1, "transfer_latency_s": 0.25}})
    assert costs.replication_round_s(one) == 0.0 and costs.replication_latency_s(one) == 0.0


def test_replication_bandwidth_times_the_rounds_and_not_the_peer_fetches():
    scenario = Scenario.model_validate({"checkpoint": {"replication_gbps": 100, "transfer_latency_s": 0.25}})
    # 75 GB per machine: a round at 100 Gbps takes 6 s, a fetch over the 400 Gbps NIC still 1.5 s.
    assert costs.replication_bandwidth_gbps(scenario) == 100.0
    assert costs.replication_round_s(scenario) == 6.0 + 0.25
    assert costs.peer_retrieval_s(scenario) == 1.5 + 0.25
    # m = 3: one round sends two shards (150 GB) at 100 Gbps.
    three = Scenario.model_validate({"checkpoint": {"replicas": 3, "replication_gbps": 100}})
    assert costs.replication_round_s(three) == 12.0 and costs.peer_retrieval_s(three) == 1.5
    # Unset, rounds run at the NIC's bandwidth, as before the field existed.
    default = Scenario()
    assert default.checkpoint.replication_gbps is None and costs.replication_bandwidth_gbps(default) == 400.0
    assert costs.replication_round_s(default) == 1.5
    slow_nic = Scenario.model_validate({"cluster": {"nic_bandwidth_gbps": 100}})
    assert costs.replication_round_s(slow_nic) == costs.peer_retrieval_s(slow_nic) == 6.0


def test_a_restore_copies_at_its_own_rate_when_it_has_one():
    # 9.375 GB per GPU: at the snapshots' 100 Gbps 0.75 s; at a measured restore rate of 50 Gbps 1.5 s.
    own = Scenario.model_validate(
        {"checkpoint": {"local_retrieval_gbps": 50, "local_retrieval_latency_s": 0.125}}
    )
    assert costs.local_retrieval_gbps(own) == 50.0
    assert costs.local_retrieval_s(own) == 1.5 + 0.125
    assert costs.replication_round_s(own) == costs.replication_round_s(Scenario())  # nothing else moves
    default = Scenario()
    assert default.checkpoint.local_retrieval_gbps is None
    assert costs.local_retrieval_gbps(default) == default.interleave.gpu_to_cpu_gbps == 100.0


def test_fixed_costs_default_to_zero():
    scenario = Scenario()
    assert scenario.checkpoint.transfer_latency_s == 0.0
    assert scenario.checkpoint.local_retrieval_latency_s == 0.0
    assert costs.local_retrieval_s(scenario) == 0.75


def test_hardware_detection_is_charged_to_recoveries_that_follow_a_lost_machine() -> None:
    # A recovery from local memory follows a software failure; from a peer or storage, a hardware one,
    # whose detection waits for the dead machine's rendezvous keep-alives (issue 11, item 7).
    scenario = Scenario.model_validate({"recovery": {"detection_s": 10, "hardware_detection_s": 14}})
    recovery = costs.recovery_costs(scenario)
    assert recovery.step_s("detection", "local") == 10
    assert recovery.step_s("detection", "peer") == 14
    assert recovery.step_s("detection", "persistent") == 14
    assert recovery.total_s("peer") - recovery.total_s("local") == pytest.approx(
        4 + recovery.retrieval_peer_s - recovery.retrieval_local_s
    )
    same = costs.recovery_costs(Scenario.model_validate({"recovery": {"detection_s": 10}}))
    assert same.step_s("detection", "peer") == 10  # None: one detection for both kinds


def test_a_fetch_pays_its_own_fixed_cost_when_set() -> None:
    base = {"checkpoint": {"transfer_latency_s": 0.05}}
    shared = costs.peer_retrieval_s(Scenario.model_validate(base))
    own = costs.peer_retrieval_s(
        Scenario.model_validate({"checkpoint": {"transfer_latency_s": 0.05, "fetch_latency_s": 0.01}})
    )
    assert shared - own == pytest.approx(0.04)
