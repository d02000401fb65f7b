"""Iteration time per checkpoint-traffic scheme (paper Fig. 16) from `sim.interleave` results.

`interleave_table(results)` flattens the schemes' results into the numbers the figure shows;
`plot_iteration_time(table)` draws the iteration-time overhead per scheme and, beside it, the GPU
buffer each scheme needs against the GPU memory left for it; a scheme that does not fit is hatched and
marked out of GPU memory in both panels.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from analysis.style import new_figure, styled
from analysis.tables import require_columns

SCHEME_LABELS = {
    "baseline": "Baseline\n(no ckpt)",
    "blocking": "Blocking",
    "naive": "Naive",
    "no-pipeline": "Interleave,\nno pipeline",
    "gemini": "Gemini",
}
TABLE_COLUMNS = ("scheme", "iteration_time_s", "overhead_fraction", "buffer_mib", "gpu_memory_left_mib")


def interleave_table(summaries: Sequence[dict[str, object]]) -> pd.DataFrame:
    """`SchemeResult.summary()` records → one row per scheme, overhead in percent."""
    table = pd.DataFrame(list(summaries))
    require_columns(table, list(TABLE_COLUMNS), "interleaving results")
    table["overhead_pct"] = 100.0 * table["overhead_fraction"]
    return table


@styled
def plot_iteration_time(table: pd.DataFrame) -> Figure:
    require_columns(table, [*TABLE_COLUMNS, "overhead_pct"], "interleaving table")
    fig, (time_axes, buffer_axes) = new_figure(2, width_per_panel=5.0)
    labels = [SCHEME_LABELS.get(s, s) for s in table["scheme"]]
    bars = time_axes.bar(labels, table["iteration_time_s"], color="#0072B2")
    for bar, overhead in zip(bars, table["overhead_pct"], strict=True):
        time_axes.annotate(f"+{overhead:.1f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                           ha="center", va="bottom", fontsize="small")  # fmt: skip
    # A scheme whose buffer exceeds the GPU memory left cannot run (the paper's naive: no bar in Fig. 16).
    fits = table["fits"] if "fits" in table.columns else pd.Series([None] * len(table))
    for bar, scheme_fits in zip(bars, fits, strict=True):
        if _out_of_memory(scheme_fits):
            bar.set_hatch("//")
            bar.set_alpha(0.4)
            time_axes.annotate("out of GPU\nmemory", (bar.get_x() + bar.get_width() / 2, bar.get_height() / 2),
                               ha="center", va="center", fontsize="small", color="#D55E00")  # fmt: skip
    time_axes.set_ylabel("Iteration time (s)")
    time_axes.set_ylim(0, float(table["iteration_time_s"].max()) * 1.12)  # room for the labels
    time_axes.set_xlabel("Checkpoint traffic scheme")
    buffer_bars = buffer_axes.bar(labels, table["buffer_mib"], color="#009E73", label="GPU buffer needed")
    for bar, scheme_fits in zip(buffer_bars, fits, strict=True):
        if _out_of_memory(scheme_fits):
            bar.set_hatch("//")
            bar.set_color("#D55E00")
    left = table["gpu_memory_left_mib"].dropna()
    if len(left):
        buffer_axes.axhline(float(left.iloc[0]), color="#D55E00", linestyle="--", label="GPU memory left")
    buffer_axes.set_yscale("log")  # buffers of ~100 MiB beside ~10 GiB left
    buffer_axes.set_ylabel("GPU memory (MiB, log scale)")
    buffer_axes.set_xlabel("Checkpoint traffic scheme")
    buffer_axes.legend(loc="upper left")
    for axes in (time_axes, buffer_axes):
        axes.tick_params(axis="x", labelsize="small")
    return fig


def _out_of_memory(fits: object) -> bool:
    """True only for a scheme known not to fit (None/NaN: the memory left is unknown)."""
    return fits is not None and not pd.isna(fits) and not bool(fits)
