"""Fig. 15 under the simulator's and the paper's accountings: the two-panel figure, its caption's
reasons for each difference, and the closed-form costs the caption quotes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_data import make_summary

from gemini_ft.analysis.catalog import accounting_differences, effective_ratio_accountings_figure
from gemini_ft.analysis.sim_figures import plot_effective_ratio_accountings
from gemini_ft.analysis.style import POLICY_COLOURS
from gemini_ft.analysis.tables import effective_ratio_accountings, fig15_cost_table
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario

MACHINES = (16, 256, 1000)


def _summaries() -> dict[str, pd.DataFrame]:
    simulator = make_summary(rates=(0.015,), machines=MACHINES, seeds=2, seed=1)
    # A failure striking a recovery is counted in `simultaneous_failures`; the paper's accounting has none.
    simulator["simultaneous_failures"] = simulator["failures"] // 4
    paper = make_summary(rates=(0.015,), machines=MACHINES, seeds=2, seed=2).assign(simultaneous_failures=0)
    return {"simulator": simulator, "paper": paper}


@pytest.fixture(scope="module")
def costs() -> pd.DataFrame:
    return fig15_cost_table(load_scenario("gpt2-100b-p4d"), [16, 1000])


def test_cost_table_scales_the_stall_with_n_only_in_the_simulators_accounting(costs: pd.DataFrame) -> None:
    stall = costs[costs["policy"] == "highfreq"].set_index(["accounting", "machines"])["persistent_stall_s"]
    # The paper's notebook: an 81 s HighFreq stall at every size (16 p4d: 100B × 12 B over 16 machines).
    assert stall["paper", 16] == pytest.approx(81.08, abs=0.01) and stall["paper", 1000] == stall["paper", 16]
    # The simulator: each machine serializes its 1/N share, so the stall falls by 1000/16.
    assert stall["simulator", 1000] == pytest.approx(stall["simulator", 16] * 16 / 1000)
    gemini = costs[costs["policy"] == "gemini"]
    assert gemini["mem_ckpt_time_s"].notna().all()
    assert costs[costs["policy"] != "gemini"]["mem_ckpt_time_s"].isna().all()


def test_the_figure_draws_one_panel_per_accounting_one_colour_per_policy() -> None:
    table = effective_ratio_accountings(_summaries(), "machines")
    fig = plot_effective_ratio_accountings(table, x="machines")
    left, right = fig.axes
    assert left.get_title().startswith("Simulator: costs scale with N")
    assert right.get_title().startswith("Paper: 16-instance costs at every N")
    for ax, accounting in ((left, "simulator"), (right, "paper")):
        lines = ax.get_lines()
        assert len(lines) == 4 and all(len(line.get_xdata()) == len(MACHINES) for line in lines)
        assert [line.get_color() for line in lines] == [
            POLICY_COLOURS[p] for p in ("gemini", "highfreq", "strawman", "young-daly")
        ]
        gemini = table[(table["accounting"] == accounting) & (table["policy"] == "gemini")]
        np.testing.assert_allclose(lines[0].get_ydata(), gemini.sort_values("machines")["ratio_mean"])
        assert ax.get_ylim() == left.get_ylim()  # the same y axis, so the panels compare at a glance
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "Gemini", "HighFreq", "Strawman", "Young-Daly"
    ]  # fmt: skip


def test_the_figure_rejects_a_second_varying_axis() -> None:
    summaries = {
        name: make_summary(rates=(0.005, 0.015), machines=MACHINES) for name in ("simulator", "paper")
    }
    table = effective_ratio_accountings(
        summaries, "machines", by=["failure_rate_per_machine_per_day", "policy"]
    )
    with pytest.raises(UserError, match="one point per accounting"):
        plot_effective_ratio_accountings(table, x="machines")


def test_one_x_value_compares_the_policies_in_each_panel() -> None:
    summaries = {name: make_summary(rates=(0.015,), machines=(1000,)) for name in ("simulator", "paper")}
    fig = plot_effective_ratio_accountings(effective_ratio_accountings(summaries, "machines"), x="machines")
    assert all("one point per policy: N = 1000" in ax.get_title() for ax in fig.axes)


def test_caption_gives_the_reasons_and_the_numbers_behind_them(costs: pd.DataFrame) -> None:
    summaries = _summaries()
    spec = effective_ratio_accountings_figure(summaries, "machines", costs)
    assert spec.stem == "fig15b_effective_ratio_vs_machines"
    caption = spec.caption
    # Both reasons for the difference, each named.
    assert "each machine checkpoints its 1/N share of the model" in caption
    assert "a failure that strikes during a recovery is kept" in caption
    assert (
        "costs what it costs on 16 instances whatever N, and no failure strikes during a recovery" in caption
    )
    # The numbers at the largest N: HighFreq's stall 1.3 s (simulator) vs 81.1 s (paper).
    assert (
        "At N = 1,000, simulator vs paper: HighFreq's serialization stall per checkpoint 1.3 s vs 81.1 s"
        in (caption)
    )
    sim = summaries["simulator"]
    at = sim[sim["machines"] == 1000]
    share = at["simultaneous_failures"].sum() / at["failures"].sum()
    assert f"at N = 1,000, {share:.1%} of the failures struck during a recovery" in caption
    assert caption.endswith("Shown at 0.015 failures per machine per day. Each mean is over 2 seed(s) × 30 "
                            "simulated days.")  # fmt: skip
    assert set(spec.table["accounting"]) == {"simulator", "paper"}


def test_fig15a_caption_at_one_n_says_the_costs_agree(costs: pd.DataFrame) -> None:
    summaries = {name: make_summary(machines=(16,)) for name in ("simulator", "paper")}
    spec = effective_ratio_accountings_figure(summaries, "failure_rate_per_machine_per_day", costs)
    assert spec.stem == "fig15a_effective_ratio_vs_failure_rate"
    assert "HighFreq's serialization stall per checkpoint 81.1 s vs 81.1 s" in spec.caption
    # Without a simultaneous-failure count there is no share to quote, and no costs no numbers at all.
    assert accounting_differences(summaries, "failure_rate_per_machine_per_day", None) == ""
