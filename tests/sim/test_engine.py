"""The SimPy job model: exact event traces, accounting invariants, determinism, coupling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario, validate
from gemini_ft.sim.engine import RECOVERY_STEPS, simulate

DAY = 86400.0


def tiny_scenario(tmp_path: Path, trace: str, duration_s: float, **sections: dict) -> object:
    """4 machines, m = 2 group placement; 1 GB per machine: in-memory checkpoint 1 s, peer fetch 1 s,
    local fetch 0.1 s, persistent write/read 40 s; iterations of 10 s; persistent every 100 s."""
    trace_file = tmp_path / "trace.csv"
    trace_file.write_text("time_s,machine,type\n" + trace)
    data = {
        "cluster": {"machines": 4, "gpus_per_machine": 1, "nic_bandwidth_gbps": 8, "replacement_delay_s": 50},
        "storage": {"bandwidth_gbps": 0.8},
        "model": {"parameters": 1e9, "ckpt_bytes_per_param": 4, "iteration_time_s": 10, "layers": None,
                  "hidden_size": None},
        "failures": {"distribution": "trace", "trace_file": str(trace_file)},
        "recovery": {"detection_s": 2, "serialization_s": 5, "warmup_s": 3},
        "checkpoint": {"policy": "gemini", "placement": "group", "replicas": 2, "persistent_interval_s": 100,
                       "iteration_overhead_fraction": 0.0},
        "interleave": {"gpu_to_cpu_gbps": 80},
        "run": {"duration_days": duration_s / DAY},
    }  # fmt: skip
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    return validate(data)


def test_gemini_trace_by_hand(tmp_path: Path) -> None:
    # t=125 software failure of machine 0: in-memory snapshot of progress 120 completed at 121 → local
    #   restart, lost 5; the persistent upload of progress 100 (usable at 140) dies. Recovery 2+5+0.1+3.
    # t=300 hardware failure of machine 1: progress 284.9, snapshot 280 complete → its peer (machine 0)
    #   still holds it; a replacement is ordered at 300 (ready 350).
    # t=330 hardware failure of machine 0 during that recovery: group {0, 1} is gone → roll back to the
    #   persistent checkpoint of progress 200 (usable since 255.1); the new replacement is ready at 380.
    scenario = tiny_scenario(tmp_path, "125,0,software\n300,1,hardware\n330,0,hardware\n", 1000)
    result = simulate(scenario, seed=0)
    first, second, third = result.failures
    assert first.recovered_from == "local" and not first.simultaneous
    assert first.lost_progress_s == pytest.approx(5)
    assert [getattr(first, f"{s}_s") for s in RECOVERY_STEPS] == pytest.approx([2, 0, 5, 0.1, 3])
    assert second.recovered_from == "peer" and second.type == "hardware"
    assert second.lost_progress_s == pytest.approx(4.9)
    assert [getattr(second, f"{s}_s") for s in RECOVERY_STEPS] == pytest.approx(
        [2, 28, 0, 0, 0]
    )  # cut short at 330
    assert third.recovered_from == "persistent" and third.simultaneous
    assert third.lost_progress_s == pytest.approx(80)
    assert [getattr(third, f"{s}_s") for s in RECOVERY_STEPS] == pytest.approx([2, 48, 0, 40, 3])
    summary = result.summary
    # Training resumes at 423 from progress 200, passes 300 at 523 and runs on to 1000.
    assert summary.useful_s == pytest.approx(777)
    assert summary.wasted_lost_progress_s == pytest.approx(89.9)
    assert summary.wasted_replacement_s == pytest.approx(76)
    assert summary.wasted_retrieval_s == pytest.approx(40.1)
    assert summary.wasted_checkpoint_s == pytest.approx(0)
    assert (summary.recoveries_local, summary.recoveries_peer, summary.recoveries_persistent) == (
        1,
        1,
        1,
    )
    assert summary.simultaneous_failures == 1


def test_transfer_fixed_costs_in_the_event_records(tmp_path: Path) -> None:
    # With 0.5 s per transfer and 0.25 s per local restore, the snapshot of progress 120 (taken at 120)
    # completes at 121.5 instead of 121: a software failure at 121.25 finds only snapshot 110 and loses
    # 10 s more progress; its local retrieval takes 0.1 + 0.25 s. A hardware failure at 300 is
    # recovered from the peer in 1 + 0.5 s after the replacement arrives (350).
    trace = "121.25,0,software\n300,1,hardware\n"
    latencies = {"transfer_latency_s": 0.5, "local_retrieval_latency_s": 0.25}
    plain = simulate(tiny_scenario(tmp_path, trace, 1000), seed=0)
    costly = simulate(tiny_scenario(tmp_path, trace, 1000, checkpoint=latencies), seed=0)
    assert plain.summary.ckpt_time_s == 1.0 and costly.summary.ckpt_time_s == 1.5
    (software, hardware), (software_c, hardware_c) = plain.failures, costly.failures
    assert [r.recovered_from for r in (software, hardware, software_c, hardware_c)] == [
        "local", "peer", "local", "peer",
    ]  # fmt: skip
    assert software.lost_progress_s == pytest.approx(1.25)
    assert software_c.lost_progress_s == pytest.approx(11.25)
    assert software_c.retrieval_s - software.retrieval_s == pytest.approx(0.25)
    assert hardware_c.retrieval_s - hardware.retrieval_s == pytest.approx(0.5)
    assert hardware_c.retrieval_s == pytest.approx(1.5)
    for record in (software, software_c, hardware, hardware_c):
        assert record.recovery_completed
    steps = [s for s in RECOVERY_STEPS if s != "retrieval"]
    assert [getattr(software_c, f"{s}_s") for s in steps] == [getattr(software, f"{s}_s") for s in steps]
    assert [getattr(hardware_c, f"{s}_s") for s in steps] == [getattr(hardware, f"{s}_s") for s in steps]


def test_replication_bandwidth_in_the_event_records(tmp_path: Path) -> None:
    # Replicating at 4 Gbps instead of the 8 Gbps NIC, the snapshot of progress 120 completes at 122
    # instead of 121: a software failure at 121.5 finds only snapshot 110 and loses 10 s more progress.
    # The hardware failure at 300 fetches from the peer over the NIC: 1 s either way.
    trace = "121.5,0,software\n300,1,hardware\n"
    plain = simulate(tiny_scenario(tmp_path, trace, 1000), seed=0)
    slow = simulate(tiny_scenario(tmp_path, trace, 1000, checkpoint={"replication_gbps": 4}), seed=0)
    assert plain.summary.ckpt_time_s == 1.0 and slow.summary.ckpt_time_s == 2.0
    (software, hardware), (software_s, hardware_s) = plain.failures, slow.failures
    assert [r.recovered_from for r in (software, hardware, software_s, hardware_s)] == [
        "local", "peer", "local", "peer",
    ]  # fmt: skip
    assert software.lost_progress_s == pytest.approx(1.5)
    assert software_s.lost_progress_s == pytest.approx(11.5)
    assert hardware.retrieval_s == hardware_s.retrieval_s == pytest.approx(1.0)
    for plain_record, slow_record in ((software, software_s), (hardware, hardware_s)):
        assert slow_record.recovery_completed
        assert [getattr(slow_record, f"{s}_s") for s in RECOVERY_STEPS] == [
            getattr(plain_record, f"{s}_s") for s in RECOVERY_STEPS
        ]


def test_strawman_trace_with_stalls(tmp_path: Path) -> None:
    # Persistent every 100 s of progress; each stalls 10 s (1 GB at 0.8 Gbps) then uploads 40 s.
    # Snapshot 100: stall 100→110, usable at exactly 150, when a software failure hits → restored.
    scenario = tiny_scenario(
        tmp_path, "150,2,software\n", 400, checkpoint={"policy": "strawman", "serialization_gbps": 0.8}
    )
    result = simulate(scenario, seed=0)
    (record,) = result.failures
    assert record.recovered_from == "persistent"
    assert record.lost_progress_s == pytest.approx(40)
    assert [getattr(record, f"{s}_s") for s in RECOVERY_STEPS] == pytest.approx([2, 0, 0, 40, 3])
    # Resume at 195 from 100; reach 200 at 295; stall to 305; train until 400.
    assert result.summary.useful_s == pytest.approx(295)
    assert result.summary.wasted_checkpoint_s == pytest.approx(20)


def test_standby_machine_replaces_at_once(tmp_path: Path) -> None:
    scenario = tiny_scenario(
        tmp_path, "100,3,hardware\n200,2,hardware\n", 1000, cluster={"standby_machines": 1}
    )
    first, second = simulate(scenario, seed=0).failures
    assert first.replacement_s == 0  # the standby takes over; a new machine arrives at 150
    assert second.replacement_s == 0  # ... and is the standby for the failure at 200


def test_failure_domain_takes_whole_rack(tmp_path: Path) -> None:
    # A trace event listing two machines of one group at one time loses both replicas.
    scenario = tiny_scenario(tmp_path, "300,0,hardware\n300,1,hardware\n", 1000)
    (record,) = simulate(scenario, seed=0).failures
    assert record.machines == 2 and record.recovered_from == "persistent"


scenario_data = st.fixed_dictionaries(
    {
        "policy": st.sampled_from(["gemini", "strawman", "highfreq", "young-daly"]),
        "machines": st.integers(2, 48),
        "replicas": st.integers(1, 4),
        "rate": st.floats(0.0, 4.0),
        "hardware": st.floats(0.0, 1.0),
        "correlated": st.floats(0.0, 0.3),
        "standby": st.integers(0, 2),
        "iteration": st.floats(1.0, 120.0),
        "days": st.floats(0.2, 4.0),
        "law": st.sampled_from(["exponential", "weibull"]),
    }
)


def build(d: dict, **changes: object) -> object:
    d = {**d, **changes}
    replicas = min(d["replicas"], d["machines"])
    data = {
            "cluster": {
                "machines": d["machines"],
                "standby_machines": d["standby"],
                "failure_domain_size": 3,
            },
            "model": {"iteration_time_s": d["iteration"], "parameters": 2e10},
            "failures": {
                "distribution": d["law"],
                "weibull_shape": 0.7,
                "rate_per_machine_per_day": d["rate"],
                "hardware_fraction": d["hardware"],
                "correlated_fraction": d["correlated"],
            },
            "checkpoint": {
                "policy": d["policy"],
                "replicas": replicas,
                "placement": "group" if d["machines"] % replicas == 0 else "mixed",
            },
            "run": {"duration_days": d["days"]},
        }  # fmt: skip
    return validate(data)


@given(scenario_data, st.integers(0, 2**32 - 1))
def test_accounting_adds_up_and_ratio_in_unit_interval(d: dict, seed: int) -> None:
    result = simulate(build(d), seed)
    s = result.summary.row()
    components = [s[f"wasted_{name}_s"] for name in ("checkpoint", "lost_progress", *RECOVERY_STEPS)]
    assert all(c >= -1e-9 for c in components)
    assert s["useful_s"] + s["wasted_s"] == pytest.approx(s["duration_s"])
    assert sum(components) == pytest.approx(s["wasted_s"], rel=1e-9, abs=1e-6)
    assert 0.0 <= s["effective_ratio"] <= 1.0
    per_failure = sum(r.wasted_s for r in result.failures)
    assert per_failure == pytest.approx(s["wasted_s"] - s["wasted_checkpoint_s"], rel=1e-9, abs=1e-6)


@given(scenario_data, st.integers(0, 2**32 - 1))
def test_same_seed_same_result(d: dict, seed: int) -> None:
    scenario = build(d)
    first, second = simulate(scenario, seed), simulate(scenario, seed)
    # json: NaN (no failures → no recovery fraction) must compare equal to itself.
    assert json.dumps(first.summary.row(), sort_keys=True) == json.dumps(second.summary.row(), sort_keys=True)
    assert first.failures == second.failures


@given(scenario_data, st.floats(0.0, 3.0), st.floats(0.0, 3.0), st.integers(0, 2**32 - 1))
def test_higher_failure_rate_never_raises_ratio(d: dict, rate_a: float, rate_b: float, seed: int) -> None:
    # Coupled streams: the higher rate sees a superset of the lower rate's failures. Pathwise this holds
    # for software failures under a fixed schedule. Not beyond: young-daly adapts its interval to the
    # rate, and with hardware failures an extra, earlier failure of a machine orders its replacement
    # sooner, so a later common failure finds it already down (a found case: strawman, 37 machines,
    # hardware only, 1.10 vs 2.60 failures/machine/day, seed 725: ratio 0.0033 vs 0.0044).
    low, high = sorted((rate_a, rate_b))
    d = {**d, "hardware": 0.0, "correlated": 0.0, "law": "exponential"}
    if d["policy"] == "young-daly":
        d["policy"] = "strawman"
    ratio_low = simulate(build(d, rate=low), seed).summary.effective_ratio
    ratio_high = simulate(build(d, rate=high), seed).summary.effective_ratio
    assert ratio_high <= ratio_low + 1e-12


def test_events_do_not_grow_with_iterations() -> None:
    # Same failures and checkpoints, iterations 100x shorter: the number of SimPy events stays put.
    base = {"policy": "gemini", "machines": 64, "replicas": 2, "rate": 0.5, "hardware": 0.5, "correlated": 0.0,
            "standby": 0, "days": 10.0, "law": "exponential"}  # fmt: skip
    long_iterations = simulate(build(base, iteration=100.0), 3).summary.events
    short_iterations = simulate(build(base, iteration=1.0), 3).summary.events
    assert short_iterations <= long_iterations * 1.05


def test_a_machine_down_for_replacement_cannot_fail_again(tmp_path: Path) -> None:
    # Machine 1 is lost at 300 and awaits its replacement until 350; the event at 310 hits nothing.
    scenario = tiny_scenario(tmp_path, "300,1,hardware\n310,1,software\n320,1,hardware\n", 1000)
    (record,) = simulate(scenario, seed=0).failures
    assert record.time_s == 300 and record.recovery_completed
    assert record.replacement_s == pytest.approx(48)


def test_lost_progress_follows_the_modelled_completion_of_the_in_memory_checkpoint(tmp_path: Path) -> None:
    # A measured 10 s timeline whose NIC is idle after 2 s, run at 20 s per iteration: the snapshot of
    # progress 200 (taken at t = 200) completes at 200 + 2.50 s, by its bytes and copies (0.5 GB at 1 GB/s after the
    # span opens), not at 200 + 5.0 s (the old rescaling by 20 / 10). A software failure at 202.4 finds
    # only snapshot 180 (loses 22.4 s); one at 203.0 (after the completion) finds 200 and loses 3.0 s.
    timeline = tmp_path / "timeline.csv"
    timeline.write_text("start_s,end_s,kind\n0,2,comm\n0,10,compute\n")
    sections = {
        "cluster": {"gpus_per_machine": 1},
        "model": {"parameters": 0.5e9, "iteration_time_s": 20},
        "checkpoint": {"iteration_overhead_fraction": None},
        "interleave": {"timeline_file": str(timeline), "alpha_s": 1e-4},
    }
    before = simulate(tiny_scenario(tmp_path, "202.4,0,software\n", 400, **sections), seed=0)
    after = simulate(tiny_scenario(tmp_path, "203.0,0,software\n", 400, **sections), seed=0)
    assert before.summary.ckpt_time_s == pytest.approx(2.5045, abs=1e-4)
    assert before.failures[0].recovered_from == after.failures[0].recovered_from == "local"
    assert before.failures[0].lost_progress_s == pytest.approx(22.4)
    assert after.failures[0].lost_progress_s == pytest.approx(3.0)


def test_at_most_one_persistent_upload_in_flight(tmp_path: Path) -> None:
    # Strawman every 30 s of progress, a 0.1 s stall (1 GB at 80 Gbps), a 40 s upload (4 GB at 0.8 Gbps).
    # Progress 30: stall to 30.1, upload until 70.1; progress 60 (t = 60.1) is due while it runs: skipped;
    # progress 90 (t = 90.1): stall to 90.2, upload until 130.2. The failure at 105 finds only progress 30
    # persisted (main had a second upload in flight since 60.2, done at 100.2, and lost 30 s less).
    scenario = tiny_scenario(
        tmp_path,
        "105,0,software\n",
        200,
        checkpoint={"policy": "strawman", "persistent_interval_s": 30, "serialization_gbps": 80},
    )
    result = simulate(scenario, seed=0)
    (failure,) = result.failures
    assert failure.recovered_from == "persistent"
    assert failure.lost_progress_s == pytest.approx(104.8 - 30)  # two 0.1 s stalls by t = 105
    assert failure.retrieval_s == pytest.approx(40)  # the upload died with the job: the read has it all
    # Recovery 2 + 40 + 3 s ends at 150 at progress 30; progress 60 (t = 180) is uploaded again.
    assert (result.summary.persistent_uploads, result.summary.persistent_skipped) == (3, 1)


def test_young_daly_at_1000_machines_keeps_one_upload_in_flight() -> None:
    # Daly's interval (121 s of progress) is a quarter of the 480 s upload: between two failures 3 of
    # every 4 due points are skipped (main had four uploads in flight, each at the full 20 Gbps).
    from gemini_ft.scenarios.loader import load_scenario

    scenario = load_scenario("gpt2-100b-p4d").with_overrides(
        {"cluster.machines": 1000, "checkpoint.policy": "young-daly", "run.duration_days": 2, "sweep": {}}
    )
    summary = simulate(scenario, seed=0).summary
    assert summary.persistent_interval_s == pytest.approx(121.4, abs=0.1)
    assert summary.persistent_skipped > 2 * summary.persistent_uploads
    assert summary.persistent_uploads * 480.0 <= summary.duration_s  # never two uploads at once


def test_failures_cannot_strike_during_a_recovery_when_switched_off(tmp_path: Path) -> None:
    # The trace of test_gemini_trace_by_hand: the hardware failure at 330 lands in the recovery of the
    # one at 300 and is dropped; that recovery (peer, replacement ready at 350) completes.
    trace = "125,0,software\n300,1,hardware\n330,0,hardware\n"
    scenario = tiny_scenario(tmp_path, trace, 1000, failures={"strike_during_recovery": False})
    result = simulate(scenario, seed=0)
    assert [r.time_s for r in result.failures] == [125, 300]
    second = result.failures[1]
    assert second.recovered_from == "peer" and second.recovery_completed
    assert [getattr(second, f"{s}_s") for s in RECOVERY_STEPS] == pytest.approx([2, 48, 5, 1, 3])
    assert result.summary.simultaneous_failures == 0


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_a_seed_that_is_no_integer_at_least_zero_is_the_users_error(seed) -> None:
    with pytest.raises(UserError, match=r"seed = .*: must be an integer ≥ 0"):
        simulate(load_scenario("gpt2-100b-p4d"), seed)
