"""The numbers behind the figures: per-failure averages, seed intervals, checkpoint-time closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gemini_ft.analysis.tables import (
    WASTED_COMPONENTS,
    ckpt_time_table,
    effective_ratio_table,
    mean_ci,
    measurement_table,
    require_columns,
    wasted_per_failure,
)
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario


def _run(policy: str, seed: int, failures: int, per_component_s: float) -> dict[str, object]:
    components = {f"wasted_{c}_s": per_component_s for c in WASTED_COMPONENTS}
    return {
        "policy": policy,
        "seed": seed,
        "failures": failures,
        "wasted_s": per_component_s * len(WASTED_COMPONENTS),
        "effective_ratio": 0.9,
        "ckpt_time_s": per_component_s / max(failures, 1),
        **components,
    }


def test_wasted_per_failure_divides_by_failures_then_averages_seeds() -> None:
    # Run 1: 2 failures, 120 s per component → 1 min per failure; run 2: 1 failure, 180 s → 3 min.
    summary = pd.DataFrame(
        [_run("gemini", 0, 2, 120.0), _run("gemini", 1, 1, 180.0), _run("gemini", 2, 0, 999.0)]
    )
    row = wasted_per_failure(summary).iloc[0]
    for c in WASTED_COMPONENTS:
        assert row[f"{c}_min"] == pytest.approx(2.0)
    assert row["total_min_mean"] == pytest.approx(2.0 * len(WASTED_COMPONENTS))
    assert row["eq1_min_mean"] == pytest.approx(6.0)
    assert row["runs"] == 2  # the run without failures has no per-failure cost
    half = stats.t.ppf(0.975, 1) * np.std([7.0, 21.0], ddof=1) / np.sqrt(2)
    assert row["total_min_ci_high"] - row["total_min_mean"] == pytest.approx(half)


def test_wasted_per_failure_needs_a_failure() -> None:
    with pytest.raises(UserError, match="0 failures"):
        wasted_per_failure(pd.DataFrame([_run("gemini", 0, 0, 1.0)]))


def test_mean_ci_matches_student_t() -> None:
    x = np.array([0.8, 0.85, 0.9, 0.95])
    mean, low, high, n = mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (mean, n) == (pytest.approx(0.875), 4)
    assert (low, high) == (pytest.approx(lo), pytest.approx(hi))
    assert np.isnan(mean_ci([0.5])[1])


def test_effective_ratio_table_groups_by_policy_and_x(summary: pd.DataFrame) -> None:
    table = effective_ratio_table(summary, "failure_rate_per_machine_per_day")
    assert len(table) == 4 * 3 and set(table["runs"]) == {3}
    assert (table["ratio_ci_low"] <= table["ratio_mean"]).all()


def test_ckpt_time_table_follows_the_scenario_closed_forms() -> None:
    table = ckpt_time_table(load_scenario("gpt2-100b-p4d"), [16, 32], [100.0, 400.0])
    paper = table[(table["machines"] == 16) & (table["nic_bandwidth_gbps"] == 400.0)].iloc[0]
    # 100e9 params × 12 B = 1.2 TB: 480 s at 20 Gbps; one 75 GB shard over 400 Gbps: 1.5 s.
    assert paper["persistent_ckpt_time_s"] == pytest.approx(480.0)
    assert paper["in_memory_ckpt_time_s"] == pytest.approx(1.5)
    # In-memory time scales as 1 / (N × B): the reduction doubles with N and quadruples with 4× bandwidth.
    reduction = table.set_index(["machines", "nic_bandwidth_gbps"])["reduction"]
    assert reduction[(32, 100.0)] == pytest.approx(2 * reduction[(16, 100.0)])
    assert reduction[(16, 400.0)] == pytest.approx(4 * reduction[(16, 100.0)])


def test_ckpt_time_table_keeps_a_replication_bandwidth_as_a_share_of_the_nic() -> None:
    # Replication at a quarter of a 400 Gbps NIC: one 75 GB shard takes 6 s; at 100 Gbps, 24 s.
    scenario = load_scenario("gpt2-100b-p4d", ["checkpoint.replication_gbps=100.0"])
    table = ckpt_time_table(scenario, [16], [100.0, 400.0]).set_index("nic_bandwidth_gbps")
    assert table.loc[400.0, "in_memory_ckpt_time_s"] == pytest.approx(6.0)
    assert table.loc[100.0, "in_memory_ckpt_time_s"] == pytest.approx(24.0)


def test_measurement_table_series(measurements: pd.DataFrame) -> None:
    table = measurement_table(measurements)
    assert set(table["phase"]) == {"save", "recovery"}
    assert len(table) == 7 * 2  # seven series × two sizes; commit events are not timed series
    assert set(table["samples"]) == {6}


def test_require_columns_names_what_is_missing() -> None:
    with pytest.raises(
        UserError, match=r"summary columns = 'policy, seed': missing; needed: policy, seed, x"
    ):
        require_columns(pd.DataFrame({"x": [1]}), ["policy", "seed", "x"], "summary")
    with pytest.raises(UserError, match="0 rows"):
        require_columns(pd.DataFrame({"x": []}), ["x"], "summary")
