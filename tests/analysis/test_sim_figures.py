"""Each simulator figure draws the expected panels, axes labels, series and legend entries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_data import make_summary

from gemini_ft.analysis.sim_figures import (
    plot_ckpt_time_reduction,
    plot_effective_ratio,
    plot_recovery_probability,
    plot_wasted_time,
)
from gemini_ft.analysis.tables import WASTED_COMPONENTS, ckpt_time_table, wasted_per_failure
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario


def _legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def test_recovery_probability_one_panel_per_m_one_line_per_strategy_and_k() -> None:
    rows = [
        {
            "strategy": s,
            "machines": n,
            "replicas": m,
            "failures": k,
            "probability": 1.0 - k / (n * m),
            "method": "exact",
            "ci_low": None,
            "ci_high": None,
        }
        for s in ("group", "ring")
        for n in (8, 16, 32)
        for m in (2, 4)
        for k in (2, 3)
    ]
    fig = plot_recovery_probability(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["m = 2 replicas", "m = 4 replicas"]
    for ax in fig.axes:
        assert ax.get_xlabel() == "Number of machines N"
        assert ax.get_ylabel() == "Probability of recovery from CPU memory"
        assert len(ax.get_lines()) == 4
        assert _legend_texts(ax.get_legend()) == [
            "group, k = 2",
            "group, k = 3",
            "ring, k = 2",
            "ring, k = 3",
        ]
        assert all(len(line.get_xdata()) == 3 for line in ax.get_lines())


def test_recovery_probability_shades_monte_carlo_intervals_only() -> None:
    table = pd.DataFrame(
        {
            "strategy": "random",
            "machines": [8, 16],
            "replicas": 2,
            "failures": 2,
            "probability": [0.8, 0.9],
            "ci_low": [0.75, 0.85],
            "ci_high": [0.85, 0.95],
        }
    )
    ax = plot_recovery_probability(table).axes[0]
    assert len(ax.collections) == 1  # the confidence band


def test_wasted_time_stacks_every_component_per_policy(summary: pd.DataFrame) -> None:
    one_rate = summary[summary["failure_rate_per_machine_per_day"] == 0.015]
    fig = plot_wasted_time(one_rate)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "Average wasted time per failure (min)"
    assert ax.get_xlabel() == "Checkpoint policy"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Gemini", "HighFreq", "Strawman", "Young-Daly"]
    assert len(ax.patches) == 4 * len(WASTED_COMPONENTS)
    assert len(_legend_texts(fig.legends[0])) == len(WASTED_COMPONENTS)
    # The stack tops are the per-failure totals of the table.
    tops = np.array(
        [
            max(
                p.get_y() + p.get_height() for p in ax.patches if abs(p.get_x() + p.get_width() / 2 - i) < 0.1
            )
            for i in range(4)
        ]
    )
    table = (
        wasted_per_failure(one_rate).set_index("policy").loc[["gemini", "highfreq", "strawman", "young-daly"]]
    )
    np.testing.assert_allclose(tops, table["total_min_mean"], rtol=1e-9)


def test_wasted_time_one_panel_per_failure_rate(summary: pd.DataFrame) -> None:
    fig = plot_wasted_time(summary)
    assert [ax.get_title() for ax in fig.axes] == [
        f"{r} failures/machine/day" for r in ("0.005", "0.015", "0.05")
    ]


def test_effective_ratio_vs_failure_rate_one_line_per_policy(summary: pd.DataFrame) -> None:
    (ax,) = plot_effective_ratio(summary).axes
    assert ax.get_xlabel() == "Failures per machine per day"
    assert ax.get_ylabel() == "Effective training time ratio"
    assert len(ax.get_lines()) == 4
    assert _legend_texts(ax.get_legend()) == ["Gemini", "HighFreq", "Strawman", "Young-Daly"]
    assert len(ax.collections) == 4  # one 95% band per policy (3 seeds each)
    gemini = ax.get_lines()[0]
    expected = (
        summary[summary["policy"] == "gemini"]
        .groupby("failure_rate_per_machine_per_day")["effective_ratio"]
        .mean()
    )
    np.testing.assert_allclose(gemini.get_ydata(), expected.to_numpy())


def test_effective_ratio_vs_machines() -> None:
    data = make_summary(rates=(0.015,), machines=(16, 128, 1000), seeds=2)
    (ax,) = plot_effective_ratio(data, x="machines").axes
    assert ax.get_xlabel() == "Number of machines N"
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [3, 3, 3, 3]


def test_effective_ratio_rejects_unknown_axis(summary: pd.DataFrame) -> None:
    with pytest.raises(UserError, match="x = 'seed'"):
        plot_effective_ratio(summary, x="seed")


def test_ckpt_time_reduction_lines_per_machines_and_bandwidth() -> None:
    table = ckpt_time_table(load_scenario("gpt2-100b-p4d"), [16, 64], [100.0, 400.0, 1600.0])
    left, right = plot_ckpt_time_reduction(table).axes
    assert left.get_xlabel() == "NIC bandwidth per machine (Gbps)"
    assert left.get_ylabel() == "Checkpoint time reduction (×)"
    assert _legend_texts(left.get_legend()) == ["N = 16", "N = 64"]
    assert right.get_ylabel() == "Checkpoint time (s)"
    assert len(right.get_lines()) == 4  # three in-memory bandwidths + persistent storage
    assert _legend_texts(right.get_legend())[-1] == "persistent storage"


def test_plots_name_missing_columns(summary: pd.DataFrame) -> None:
    with pytest.raises(UserError, match="effective_ratio"):
        plot_effective_ratio(summary.drop(columns="effective_ratio"))
    with pytest.raises(UserError, match="probability"):
        plot_recovery_probability(
            pd.DataFrame({"strategy": ["group"], "machines": [8], "replicas": [2], "failures": [2]})
        )
