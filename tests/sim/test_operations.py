"""Cluster operations: spare pool waits, repair pipeline, wrong diagnoses, retirement, bad machines,
and the closed forms (M/G/∞ machines in repair; 1/(1 + ΛR) vs e^(−ΛR) for the recovery switch)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gemini_ft.scenarios.loader import validate
from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.engine import ClusterSimulation, simulate
from gemini_ft.sim.failures import FailureEvent
from gemini_ft.sim.operations import Operations
from gemini_ft.sim.records import WASTE_COMPONENTS

DAY = 86400.0


def small(trace: str | None = None, tmp_path: Path | None = None, **sections: dict) -> Scenario:
    """4 machines, m = 2 group placement; 1 GB per machine (peer fetch 1 s, local 0.1 s); iterations of
    10 s; recovery = detection 2 s + warm-up 3 s (+ serialization 5 s from CPU memory)."""
    data = {
        "cluster": {"machines": 4, "gpus_per_machine": 1, "nic_bandwidth_gbps": 8, "replacement_delay_s": 50},
        "storage": {"bandwidth_gbps": 0.8},
        "model": {"parameters": 1e9, "ckpt_bytes_per_param": 4, "iteration_time_s": 10, "layers": None,
                  "hidden_size": None},
        "failures": {},
        "recovery": {"detection_s": 2, "serialization_s": 5, "warmup_s": 3},
        "checkpoint": {"policy": "gemini", "placement": "group", "replicas": 2, "persistent_interval_s": 100,
                       "iteration_overhead_fraction": 0.0},
        "interleave": {"gpu_to_cpu_gbps": 80},
        "run": {"duration_days": 1000 / DAY},
        "operations": {"enabled": True, "repair_distribution": "fixed", "auto_repair_mean_s": 100,
                       "auto_repair_fix_fraction": 1.0},
    }  # fmt: skip
    if trace is not None:
        assert tmp_path is not None
        trace_file = tmp_path / "trace.csv"
        trace_file.write_text("time_s,machine,type\n" + trace)
        data["failures"] = {"distribution": "trace", "trace_file": str(trace_file)}
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return validate(data)


def accounted(summary) -> float:
    return summary.useful_s + sum(getattr(summary, f"wasted_{name}_s") for name in WASTE_COMPONENTS)


def test_operations_are_off_by_default() -> None:
    assert Scenario().operations.enabled is False
    assert simulate(Scenario(), 0).summary.wasted_spare_wait_s == 0


def test_empty_pool_waits_for_the_repair(tmp_path: Path) -> None:
    # Machine 0 fails for good at 125 with no spare: its repair (100 s) ends at 225. Detection ends at
    # 127, so the job waits 98 s for the spare pool, then fetches machine 0's shard from its peer (1 s).
    sc = small("125,0,hardware\n", tmp_path)
    result = simulate(sc, 0)
    (record,) = result.failures
    assert record.no_spare and record.recovered_from == "peer"
    assert record.spare_wait_s == pytest.approx(98) and record.replacement_s == pytest.approx(0)
    assert result.summary.wasted_spare_wait_s == pytest.approx(98) and result.summary.spare_waits == 1
    assert accounted(result.summary) == pytest.approx(result.summary.duration_s)
    # One spare in the pool: no wait; the swap-in time is a replacement step.
    spare = small("125,0,hardware\n", tmp_path, cluster={"standby_machines": 1}, operations={"swap_in_s": 7})
    (record,) = simulate(spare, 0).failures
    assert not record.no_spare and record.spare_wait_s == 0 and record.replacement_s == pytest.approx(5)


def test_wrong_diagnosis_leaves_the_faulty_machine_to_fail_again(tmp_path: Path) -> None:
    sc = small(
        "125,0,hardware\n",
        tmp_path,
        cluster={"standby_machines": 2},
        operations={"misdiagnosis_fraction": 1.0, "refail_after_restart_s": 30},
    )
    result = simulate(sc, 0)
    first, *repeats = result.failures
    assert first.misdiagnosed and first.machines == 2 and not first.repeat
    assert repeats and all(r.repeat for r in repeats)
    # The repeat strikes 30 s after the restart that ended the first recovery.
    assert repeats[0].time_s == pytest.approx(first.time_s + first.wasted_s - first.lost_progress_s + 30)
    summary = result.summary
    assert summary.misdiagnoses >= 1 and summary.repeat_failures == len(repeats)
    assert summary.wasted_repeat_failures_s == pytest.approx(sum(r.wasted_s for r in repeats))
    assert accounted(summary) == pytest.approx(summary.duration_s)


def test_retirement_after_k_failures_orders_a_new_machine(tmp_path: Path) -> None:
    sc = small(
        "100,1,software\n200,1,software\n",
        tmp_path,
        cluster={"standby_machines": 1},
        operations={"retire_after_failures": 2},
    )
    result = simulate(sc, 0)
    first, second = result.failures
    assert first.type == "software" and second.type == "hardware"  # the retired machine leaves the job
    assert result.summary.retired_machines == 1 and not second.no_spare


def test_host_selection_takes_the_spare_with_the_fewest_failures() -> None:
    sc = small(cluster={"standby_machines": 3}, operations={"auto_repair_mean_s": 10})
    ops = Operations(sc, np.random.default_rng(0))
    ops.failures[4:7] = [5, 1, 3]
    ops.admit(FailureEvent(0.0, (0,), True), 0.0)
    assert ops.replace(0, 0.0) == (0.0, 0.0) and ops.slot_host[0] == 5
    first_ready = small(cluster={"standby_machines": 3}, operations={"host_selection": "first-ready"})
    ops = Operations(first_ready, np.random.default_rng(0))
    ops.failures[4:7] = [5, 1, 3]
    ops.admit(FailureEvent(0.0, (0,), True), 0.0)
    assert ops.slot_host[0] == 4


def test_bad_machines_fail_at_their_multiplier() -> None:
    # Software failures only: hosts never move, so each slot fails at its first host's rate.
    sc = small(
        failures={"rate_per_machine_per_day": 0.5, "hardware_fraction": 0.0},
        cluster={"machines": 64},
        run={"duration_days": 10},
        operations={"bad_machine_fraction": 0.25, "bad_rate_multiplier": 5.0},
        checkpoint={"persistent_interval_s": 1e6},  # few events: the run is long
    )
    counts, expected = [], []
    for seed in range(3):
        sim = ClusterSimulation(sc, seed)
        multiplier = sum(5.0 if sim.ops.bad[h] else 1.0 for h in sim.ops.slot_host)
        expected.append(multiplier * 0.5 * 10)
        counts.append(len(sim.run().failures))
    # Poisson counts: within four standard deviations; all-good machines would give 960 in all.
    assert abs(sum(counts) - sum(expected)) < 4 * math.sqrt(sum(expected))
    assert sum(expected) > 960 + 8 * math.sqrt(960)


@pytest.mark.parametrize("seed", range(4))
def test_accounting_adds_up_with_every_operation_on(seed: int) -> None:
    sc = small(
        failures={"rate_per_machine_per_day": 20.0, "hardware_fraction": 0.7, "correlated_fraction": 0.1},
        cluster={"machines": 16, "standby_machines": 1},
        run={"duration_days": 3},
        operations={"bad_machine_fraction": 0.2, "bad_rate_multiplier": 4.0, "repair_distribution": "lognormal",
                    "auto_repair_mean_s": 3600, "auto_repair_fix_fraction": 0.5, "manual_repair_mean_s": 20000,
                    "silent_repair_failure_fraction": 0.2, "misdiagnosis_fraction": 0.2,
                    "retire_after_failures": 3, "retire_window_days": 1, "new_machine_days": 0.5},
    )  # fmt: skip
    summary = simulate(sc, seed).summary
    assert accounted(summary) == pytest.approx(summary.duration_s)
    assert 0 <= summary.effective_ratio <= 1
    assert summary.spare_waits > 0 and summary.wasted_spare_wait_s > 0
    assert simulate(sc, seed).summary == summary  # same seed, same run


def _closed_form_scenario(strike: bool) -> Scenario:
    # Software failures only, recovery = detection R = 600 s, nothing else costs or is lost (an in-memory
    # checkpoint every 0.1 s iteration, a 1 kB model): ΛR = 0.5 with Λ = 1 / 1200 s over 4 machines.
    return validate({
        "cluster": {"machines": 4, "gpus_per_machine": 1},
        "model": {"parameters": 1e3, "iteration_time_s": 0.1, "layers": None, "hidden_size": None},
        "failures": {"rate_per_machine_per_day": DAY / 1200 / 4, "hardware_fraction": 0.0,
                     "strike_during_recovery": strike},
        "recovery": {"detection_s": 600, "serialization_s": 0, "warmup_s": 0},
        "checkpoint": {"iteration_overhead_fraction": 0.0, "persistent_interval_s": 1e6},
        "run": {"duration_days": 60},
    })  # fmt: skip


@pytest.mark.parametrize(("strike", "closed_form"), [(False, 1 / 1.5), (True, math.exp(-0.5))])
def test_effective_ratio_closed_forms_for_the_recovery_switch(strike: bool, closed_form: float) -> None:
    sc = _closed_form_scenario(strike)
    ratios = np.array([simulate(sc, seed).summary.effective_ratio for seed in range(4)])
    half_width = 3 * ratios.std(ddof=1) / math.sqrt(len(ratios)) + 2e-3  # + lost iterations, ≤ 1e-4
    other = math.exp(-0.5) if closed_form == 1 / 1.5 else 1 / 1.5
    assert abs(ratios.mean() - closed_form) < half_width
    assert abs(ratios.mean() - other) > 2 * half_width  # the two laws are told apart


def test_machines_in_repair_are_m_g_infinity() -> None:
    # 32 machines failing (hardware) at λ = 1/day, fixed repairs of r = 0.1 day, S = 8 spares, unlimited
    # repair capacity: the machines in repair are Poisson(Nλr = 3.2), and by PASTA a failure finds the pool
    # empty with probability P(Poisson(3.2) ≥ 8) ≈ 1.7% (recoveries are short, so the rate stays Nλ).
    mean, spares = 32 * 1.0 * 0.1, 8
    tail = 1 - sum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(spares))
    sc = small(
        failures={"rate_per_machine_per_day": 1.0, "hardware_fraction": 1.0},
        cluster={"machines": 32, "standby_machines": spares},
        recovery={"detection_s": 1, "serialization_s": 0, "warmup_s": 0},
        run={"duration_days": 40},
        checkpoint={"persistent_interval_s": 1e6},  # few events: the run is long
        operations={"auto_repair_mean_s": 0.1 * DAY},
    )
    shares = []
    for seed in range(5):
        summary = simulate(sc, seed).summary
        shares.append(summary.spare_waits / summary.failures)
    shares = np.array(shares)
    half_width = 3 * shares.std(ddof=1) / math.sqrt(len(shares)) + 1e-3
    assert abs(shares.mean() - tail) < half_width
