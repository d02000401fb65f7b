"""Group means from plain summary rows: the same table as the DataFrame path, NaNs skipped like pandas."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.engine import simulate
from gemini_ft.sim.results import summary_table
from gemini_ft.sim.seed_means import COLUMNS, group_means, seed_means


def test_group_means_are_the_summary_table() -> None:
    rows = []
    for policy, rate in (("gemini", 0.05), ("strawman", 0.05), ("gemini", 0.0)):
        scenario = load_scenario(
            "gpt2-100b-p4d",
            {"checkpoint.policy": policy, "failures.rate_per_machine_per_day": rate, "run.duration_days": 3},
        )
        rows += [simulate(scenario, seed).summary.row() for seed in range(3)]
    by = ["policy", "failure_rate_per_machine_per_day"]
    table = summary_table(pd.DataFrame(rows), by)
    plain = group_means(rows, by)
    assert [tuple(row[c] for c in by) for row in plain] == list(table.index)
    for row, (_, expected) in zip(plain, table.iterrows(), strict=True):
        for column in COLUMNS:
            assert row[column] == pytest.approx(expected[column], rel=1e-12, nan_ok=True), column
    # No failures: no wasted time per failure and no recovery share, as NaN (printed "-").
    assert math.isnan(plain[-1]["wasted_per_failure_min"]) and math.isnan(plain[-1]["from_cpu_memory"])


def test_one_seed_has_no_interval_bounds() -> None:
    run = {"effective_ratio": 0.9, "failures": 2, "wasted_s": 100.0, "wasted_checkpoint_s": 40.0,
           "fraction_from_cpu_memory": 0.5}  # fmt: skip
    row = seed_means([run])
    assert row["seeds"] == 1 and row["ratio_ci95"] == 0.0
    assert math.isnan(row["ratio_ci_low"]) and math.isnan(row["ratio_ci_high"])
    assert row["wasted_per_failure_min"] == pytest.approx(0.5)
