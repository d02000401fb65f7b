"""The Fig. 16 bar chart and the interleaving finding, from the real interleaving model."""

from __future__ import annotations

import pytest

from gemini_ft.analysis.findings import interleave_finding
from gemini_ft.analysis.interleave_figures import interleave_table, plot_iteration_time
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.interleave import evaluate_schemes


@pytest.fixture(scope="module")
def table():
    return interleave_table([r.summary() for r in evaluate_schemes(load_scenario("gpt2-40b-p3dn"))])


def test_one_bar_per_scheme_and_memory_line(table) -> None:
    fig = plot_iteration_time(table)
    time_axes, buffer_axes = fig.axes
    assert len(time_axes.patches) == len(table) == 5
    assert [p.get_height() for p in time_axes.patches] == pytest.approx(list(table["iteration_time_s"]))
    assert time_axes.get_ylabel() == "Iteration time (s)"
    assert len(buffer_axes.lines) == 1  # the GPU memory left
    assert buffer_axes.get_yscale() == "log"


def test_finding_reports_each_scheme(table) -> None:
    finding = interleave_finding(table, "gpt2-40b-p3dn")
    assert "blocking +" in finding.obtained and "naive out of GPU memory (needs" in finding.obtained
    blocking = table.set_index("scheme").loc["blocking", "overhead_fraction"]
    assert f"{blocking:.1%}" in finding.obtained


def test_missing_columns_are_a_user_error(table) -> None:
    with pytest.raises(UserError, match="interleaving table"):
        plot_iteration_time(table.drop(columns=["buffer_mib"]))


def test_naive_is_marked_out_of_gpu_memory(table) -> None:
    # Paper Fig. 16: naive needs more than 2 GB of GPU buffer and does not run; the figure says so.
    fig = plot_iteration_time(table)
    time_axes, buffer_axes = fig.axes
    marked = [t.get_text() for t in time_axes.texts if "memory" in t.get_text()]
    assert marked == ["out of GPU\nmemory"]
    naive = list(table["scheme"]).index("naive")
    assert buffer_axes.patches[naive].get_hatch() == "//"
    assert table.loc[naive, "buffer_mib"] > buffer_axes.lines[0].get_ydata()[0]
