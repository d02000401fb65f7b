"""Each sweep figure's caption says which point of the sweep it shows and how many runs back it."""

from __future__ import annotations

from types import SimpleNamespace

from analysis_data import make_summary

from gemini_ft.analysis.catalog import effective_ratio_figure, figures_for, point_caption, wasted_time_figure


def test_fig10_caption_names_n_and_the_rate() -> None:
    caption = wasted_time_figure(make_summary(rates=(0.015,), machines=(16,), seeds=3)).caption
    assert caption.endswith("Shown at N = 16 and 0.015 failures per machine per day. Each mean is over 3 "
                            "seed(s) × 30 simulated days.")  # fmt: skip


def test_fig15a_caption_names_n_and_fig15b_the_rate() -> None:
    by_rate = effective_ratio_figure(make_summary(machines=(64,)), "failure_rate_per_machine_per_day")
    assert "Shown at N = 64." in by_rate.caption and "failures per machine per day." not in by_rate.caption
    by_n = effective_ratio_figure(make_summary(rates=(0.03,), machines=(16, 256)), "machines")
    assert "Shown at 0.03 failures per machine per day." in by_n.caption and "N =" not in by_n.caption


def test_a_varying_facet_is_named_as_one_panel_per_value() -> None:
    caption = point_caption(make_summary(rates=(0.005, 0.05), machines=(16, 64), seeds=2),
                            ("machines", "failure_rate_per_machine_per_day"))  # fmt: skip
    assert caption == (
        "One panel per N: 16, 64; failure rate: 0.005, 0.05 per machine per day. "
        "Each mean is over 2 seed(s) × 30 simulated days."
    )


def test_plot_figures_carry_the_point_too() -> None:
    summary = make_summary(rates=(0.015,), machines=(16, 128))
    # figures_for reads only .kind and .data; a stand-in keeps this test off the results I/O types.
    specs = figures_for(SimpleNamespace(kind="summary", data=summary))  # type: ignore[arg-type]
    assert [s.stem for s in specs] == ["fig10_wasted_time", "fig15b_effective_ratio_vs_machines"]
    assert all("0.015 failures per machine per day" in s.caption for s in specs)
