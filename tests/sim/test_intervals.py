"""The one confidence interval: Student-t over seeds, clipped to the quantity's range, used everywhere."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gemini_ft.analysis.tables import effective_ratio_table
from gemini_ft.sim.intervals import NON_NEGATIVE, RATIO_RANGE, half_width, mean_ci, t_quantile
from gemini_ft.sim.results import summary_table


def test_student_t_half_width() -> None:
    x = [0.90, 0.95, 0.99]
    expected = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert half_width(x) == pytest.approx(expected)
    assert math.isnan(half_width([0.5])) and math.isnan(mean_ci([0.5])[1])
    assert mean_ci([])[3] == 0 and math.isnan(mean_ci([])[0])


def test_tabulated_t_quantiles_are_scipys() -> None:
    # Up to 64 seeds the 95% quantile comes from a table (no scipy import); beyond, and for any other
    # confidence, from scipy itself: the same numbers either way.
    for df in range(1, 70):
        assert t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-14)
    assert t_quantile(5, 0.9) == pytest.approx(stats.t.ppf(0.95, 5), rel=1e-14)


def test_interval_never_leaves_the_range() -> None:
    mean, low, high, n = mean_ci([0.999, 1.0, 0.98], RATIO_RANGE)
    assert high == 1.0 and low < mean < high and n == 3
    assert mean_ci([0.0, 0.1, 0.0], NON_NEGATIVE)[1] == 0.0


def summary(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scenario": "s",
            "policy": "gemini",
            "machines": 16,
            "seed": range(len(values)),
            "effective_ratio": values,
            "wasted_s": 0.0,
            "wasted_checkpoint_s": 0.0,
            "failures": 1,
            "fraction_from_cpu_memory": 1.0,
        }
    )


def test_summary_table_and_figures_use_the_same_interval() -> None:
    # Main's summary used z = 1.96 (2.2x narrower than Student-t with 3 seeds) and the figures ran past 1.
    values = [0.999, 1.0, 0.98]
    table = summary_table(summary(values), ["policy"]).iloc[0]
    figure = effective_ratio_table(summary(values), "machines").iloc[0]
    assert table["ratio_ci95"] == pytest.approx(half_width(values))
    assert table["ratio_ci_high"] == figure["ratio_ci_high"] == 1.0
    assert table["ratio_ci_low"] == pytest.approx(figure["ratio_ci_low"])
