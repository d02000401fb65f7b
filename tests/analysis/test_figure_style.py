"""The report's figures are readable: legends clear of the data, policies told apart by colour (also by
colour-blind eyes), sizes in human units, one-point series said to be so, Fig. 16's fit verdict, and
text still legible once a figure is scaled to the report page."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from analysis_data import make_measurements, make_summary
from figure_checks import draw, legend_problems, smallest_legend_px
from matplotlib.colors import to_rgb, to_rgba

from gemini_ft.analysis.calibration_figures import plot_parity
from gemini_ft.analysis.interleave_figures import NO_FIT_COLOUR, interleave_table, plot_iteration_time
from gemini_ft.analysis.realrun_figures import plot_measurements
from gemini_ft.analysis.report import FULL, QUICK, recovery_probability_data
from gemini_ft.analysis.sim_figures import (
    plot_ckpt_time_reduction,
    plot_effective_ratio,
    plot_effective_ratio_accountings,
    plot_recovery_probability,
    plot_wasted_time,
)
from gemini_ft.analysis.style import POLICY_COLOURS, POLICY_ORDER, human_bytes
from gemini_ft.analysis.tables import ckpt_time_table, effective_ratio_accountings
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.interleave import evaluate_schemes


@pytest.fixture(scope="module")
def schemes() -> pd.DataFrame:
    return interleave_table([r.summary() for r in evaluate_schemes(load_scenario("gpt2-40b-p3dn"))])


def _not_fitting(schemes: pd.DataFrame) -> pd.DataFrame:
    """The paper's Fig. 16 case: the naive scheme's buffer is larger than the GPU memory left."""
    table = schemes.copy()
    naive = table["scheme"] == "naive"
    table.loc[naive, "buffer_mib"] = 2.5 * table.loc[naive, "gpu_memory_left_mib"]
    table.loc[naive, "fits"] = False
    return table


def _parity_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    measured = rng.uniform(0.01, 10, 12)
    return pd.DataFrame(
        {
            "quantity": ["snapshot", "replicate", "retrieve"] * 4,
            "measured_s": measured,
            "predicted_s": measured * rng.uniform(0.6, 1.6, 12),
        }
    )


FIGURES = {
    "fig09 quick": lambda s: plot_recovery_probability(
        recovery_probability_data(QUICK.probability_machines, QUICK.probability_replicas, (2, 3))
    ),
    "fig09 full": lambda s: plot_recovery_probability(
        recovery_probability_data(
            FULL.probability_machines, FULL.probability_replicas, FULL.probability_failures
        )
    ),
    "fig10 one panel": lambda s: plot_wasted_time(make_summary(rates=(0.015,))),
    "fig10 three panels": lambda s: plot_wasted_time(make_summary()),
    "fig11": lambda s: plot_ckpt_time_reduction(
        ckpt_time_table(load_scenario("gpt2-100b-p4d"), [16, 64, 256], [100.0, 400.0, 1600.0])
    ),
    "fig15a": lambda s: plot_effective_ratio(make_summary()),
    "fig15a two panels": lambda s: plot_effective_ratio(make_summary(machines=(16, 64))),
    "fig15b": lambda s: plot_effective_ratio(
        make_summary(rates=(0.015,), machines=(16, 256, 1000)), x="machines"
    ),
    "fig15 one point": lambda s: plot_effective_ratio(make_summary(rates=(0.015,))),
    "fig15b accountings": lambda s: plot_effective_ratio_accountings(
        effective_ratio_accountings(
            {name: make_summary(rates=(0.015,), machines=(16, 256, 1000)) for name in ("simulator", "paper")},
            "machines",
        ),
        x="machines",
    ),
    "fig16 fits": lambda s: plot_iteration_time(s),
    "fig16 naive does not fit": lambda s: plot_iteration_time(_not_fitting(s)),
    "realrun": lambda s: plot_measurements(make_measurements()),
    "parity": lambda s: plot_parity(_parity_table()),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_legends_never_cover_data_or_labels(name: str, schemes: pd.DataFrame) -> None:
    fig = FIGURES[name](schemes)
    assert fig.legends or any(ax.get_legend() for ax in fig.axes), "the figure has a legend to check"
    assert legend_problems(fig) == []


def test_the_legend_check_catches_a_legend_on_the_data() -> None:
    """The check itself can fail: a legend put where the lines run (ratios near 1) is reported."""
    fig = plot_effective_ratio(make_summary())
    (ax,) = fig.axes
    ax.legend(loc="upper right")
    problems = legend_problems(fig)
    assert any("covers" in p for p in problems) and any("inside the axes" in p for p in problems)


# Report figures are shown at most PAGE_WIDTH_PX wide; the old three-in-a-row Fig. 9 showed its
# legends at about 10.6 px, too small to read.
@pytest.mark.parametrize("name", ["fig09 quick", "fig09 full", "fig10 one panel", "fig11", "fig15a", "fig15b",
                                  "fig15b accountings",
                                  "fig16 fits", "realrun"])  # fmt: skip
def test_report_legends_stay_legible_on_the_page(name: str, schemes: pd.DataFrame) -> None:
    fig = FIGURES[name](schemes)
    draw(fig)
    assert smallest_legend_px(fig) >= 12.0


def test_fig9_full_grid_is_not_three_panels_in_a_row() -> None:
    fig = FIGURES["fig09 full"](None)
    assert len(fig.axes) == 3 and fig.get_figwidth() <= 11.0
    for ax in fig.axes:
        assert ax.get_legend().get_texts()[0].get_fontsize() >= 9.0


# ---- colours -------------------------------------------------------------------------------------
def _linear(rgb: np.ndarray) -> np.ndarray:
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of a linear-sRGB colour."""
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ linear_rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB.
VISION = {
    "normal": np.eye(3),
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "tritanopia": np.array(
        [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]
    ),
}


def _min_distance(colours: dict[str, object], vision: np.ndarray) -> tuple[float, tuple[str, str]]:
    lab = {p: _lab(np.clip(vision @ _linear(np.array(to_rgb(c))), 0, 1)) for p, c in colours.items()}
    return min((float(np.linalg.norm(lab[a] - lab[b])), (a, b)) for a, b in itertools.combinations(lab, 2))


@pytest.mark.parametrize("vision", list(VISION))
def test_policy_colours_are_far_apart(vision: str) -> None:
    """ΔE*ab ≥ 30 between any two policies (the old HighFreq/Young-Daly oranges: 12.6 for deuteranopes)."""
    assert set(POLICY_COLOURS) == set(POLICY_ORDER)
    distance, pair = _min_distance(POLICY_COLOURS, VISION[vision])
    assert distance >= 30.0, f"{pair} only {distance:.1f} apart for {vision}"


def test_the_colour_check_rejects_the_old_oranges() -> None:
    old = {"gemini": "#0173b2", "highfreq": "#de8f05", "strawman": "#029e73", "young-daly": "#d55e00"}
    assert _min_distance(old, VISION["deuteranopia"])[0] < 30.0


def test_every_figure_draws_a_policy_in_its_one_colour() -> None:
    figures = [
        plot_effective_ratio(make_summary()),
        plot_effective_ratio(make_summary(rates=(0.015,), machines=(16, 256)), x="machines"),
        plot_effective_ratio(make_summary(rates=(0.015,))),
    ]
    for fig in figures:
        legend = fig.axes[-1].get_legend()
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
            policy = {"Gemini": "gemini", "HighFreq": "highfreq", "Strawman": "strawman"}.get(
                text.get_text(), "young-daly"
            )
            assert to_rgba(handle.get_color()) == to_rgba(POLICY_COLOURS[policy])


# ---- units and single points -----------------------------------------------------------------------
def test_human_bytes() -> None:
    assert human_bytes(400576) == "401 kB"
    assert human_bytes(16e6) == "16 MB"
    assert human_bytes(2.5e9) == "2.5 GB"
    assert human_bytes(999.6e6) == "1 GB"
    assert human_bytes(512) == "512 B"


def test_realrun_sizes_are_labelled_in_human_units(measurements: pd.DataFrame) -> None:
    data = measurements.copy()
    data["bytes"] = data["bytes"].map({16e6: 400576.0, 64e6: 2.4e9})
    fig = plot_measurements(data)
    draw(fig)
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert labels == ["401 kB", "2.4 GB"]
        assert ax.get_xlabel() == "Checkpoint shard size"


def test_realrun_one_size_is_said_to_be_one_point(measurements: pd.DataFrame) -> None:
    fig = plot_measurements(measurements[measurements["bytes"] == 16e6])
    for ax in fig.axes:
        assert ax.get_title().endswith("one point per series: shard size 16 MB")


def test_two_sizes_draw_no_single_point_note(measurements: pd.DataFrame) -> None:
    for ax in plot_measurements(measurements).axes:
        assert "one point" not in ax.get_title()


def test_fig15_with_one_x_value_compares_policies_side_by_side() -> None:
    (ax,) = plot_effective_ratio(make_summary(rates=(0.015,))).axes
    assert ax.get_title() == "one point per policy: 0.015 failures/machine/day"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Gemini", "HighFreq", "Strawman", "Young-Daly"]
    assert ax.get_xlabel() == "Checkpoint policy"
    (ax,) = plot_effective_ratio(make_summary(rates=(0.015,), machines=(16,)), x="machines").axes
    assert ax.get_title() == "one point per policy: N = 16"


def test_fig9_and_fig11_with_one_value_say_so() -> None:
    table = recovery_probability_data((16,), (2, 3), (2,))
    for ax in plot_recovery_probability(table).axes:
        assert ax.get_title().endswith("\none point per line: N = 16")
    left, right = plot_ckpt_time_reduction(
        ckpt_time_table(load_scenario("gpt2-100b-p4d"), [16, 64], [400.0])
    ).axes
    assert left.get_title() == "one point per N: 400 Gbps" and "one point" not in right.get_title()


# ---- Fig. 16's memory panel ---------------------------------------------------------------------
def _verdicts(ax) -> dict[str, str]:
    labels = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    marks = sorted((a for a in ax.texts if a.get_gid() in {"fits", "does-not-fit"}), key=lambda a: a.xy[0])
    return {label: mark.get_gid() for label, mark in zip(labels, marks, strict=True)}


def test_fig16_marks_the_scheme_that_does_not_fit(schemes: pd.DataFrame) -> None:
    table = _not_fitting(schemes)
    _, memory = plot_iteration_time(table).axes
    verdicts = _verdicts(memory)
    assert verdicts["Naive"] == "does-not-fit"
    assert all(v == "fits" for k, v in verdicts.items() if k != "Naive")
    naive = next(a for a in memory.texts if a.get_gid() == "does-not-fit")
    assert "DOES NOT FIT" in naive.get_text()
    bars = {round(p.get_x() + p.get_width() / 2): p for p in memory.patches}
    assert to_rgba(bars[2].get_facecolor()) == to_rgba(NO_FIT_COLOUR) and bars[2].get_hatch() == "//"
    # The bar reaches above the dashed memory-left line: visible at a glance.
    (left_line,) = memory.get_lines()
    assert bars[2].get_height() > left_line.get_ydata()[0]
    assert memory.get_legend().get_texts()[0].get_text().startswith("GPU memory left (")


def test_fig16_says_fits_when_everything_fits(schemes: pd.DataFrame) -> None:
    everything_fits = schemes.assign(fits=True, buffer_mib=schemes["buffer_mib"].clip(upper=100.0))
    _, memory = plot_iteration_time(everything_fits).axes
    assert set(_verdicts(memory).values()) == {"fits"}
