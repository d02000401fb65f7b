"""Iteration time per checkpoint-traffic scheme (paper Fig. 16) from `gemini_ft.sim.interleave` results.

`interleave_table(results)` flattens the schemes' results into the numbers the figure shows;
`plot_iteration_time(table)` draws the iteration-time overhead per scheme and, beside it, the GPU
buffer each scheme needs against the GPU memory left for it, each bar marked "fits" or "does not fit".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gemini_ft.analysis.style import legend_beside, new_figure, styled
from gemini_ft.analysis.tables import require_columns

SCHEME_LABELS = {
    "baseline": "Baseline\n(no ckpt)",
    "blocking": "Blocking",
    "naive": "Naive",
    "no-pipeline": "Interleave,\nno pipeline",
    "gemini": "Gemini",
}
FITS_COLOUR = "#009E73"  # Okabe-Ito bluish green
NO_FIT_COLOUR = "#D55E00"  # Okabe-Ito vermillion, hatched too so it does not rest on colour alone
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
    for bar, ok in zip(bars, buffer_fits(table), strict=True):
        if not ok:
            bar.set_hatch("//")
            bar.set_alpha(0.4)
            time_axes.annotate("out of GPU\nmemory", (bar.get_x() + bar.get_width() / 2, bar.get_height() / 2),
                               ha="center", va="center", fontsize="small", color=NO_FIT_COLOUR)  # fmt: skip
    time_axes.set_ylabel("Iteration time (s)")
    time_axes.set_ylim(0, float(table["iteration_time_s"].max()) * 1.12)  # room for the labels
    time_axes.set_xlabel("Checkpoint traffic scheme")
    _memory_panel(buffer_axes, table, labels)
    for axes in (time_axes, buffer_axes):
        axes.tick_params(axis="x", labelsize="small")
    return fig


def buffer_fits(table: pd.DataFrame) -> np.ndarray:
    """Per scheme: does its GPU buffer fit in the GPU memory left (the model's own verdict if it gave one)?"""
    if "fits" in table.columns:
        return table["fits"].astype(bool).to_numpy()
    left = table["gpu_memory_left_mib"].to_numpy(float)
    return ~(table["buffer_mib"].to_numpy(float) > left)


def _memory_panel(ax: Axes, table: pd.DataFrame, labels: list[str]) -> None:
    """Bars of the buffer each scheme needs, the GPU memory left as a line, and a verdict on every bar."""
    fits = buffer_fits(table)
    buffer = table["buffer_mib"].to_numpy(float)
    bars = ax.bar(
        labels,
        buffer,
        color=[FITS_COLOUR if ok else NO_FIT_COLOUR for ok in fits],
        hatch=[None if ok else "//" for ok in fits],
        edgecolor="white",
    )
    left = table["gpu_memory_left_mib"].dropna()
    if len(left):
        ax.axhline(
            float(left.iloc[0]),
            color="black",
            linestyle="--",
            label=f"GPU memory left ({_mib(float(left.iloc[0]))})",
        )
    ax.set_yscale("log")  # buffers of ~100 MiB beside ~10 GiB left
    positive = np.concatenate([buffer[buffer > 0], left.to_numpy(float)])
    low, high = (positive.min() / 4, positive.max() * 6) if len(positive) else (1.0, 10.0)
    ax.set_ylim(low, high)
    for bar, ok, need in zip(bars, fits, buffer, strict=True):
        verdict = "no buffer" if need <= 0 else f"{_mib(need)}\n{'fits' if ok else 'DOES NOT FIT'}"
        ax.annotate(
            verdict,
            (bar.get_x() + bar.get_width() / 2, max(need, low)),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
            fontweight="normal" if ok else "bold",
            color="black" if ok else NO_FIT_COLOUR,
            gid="fits" if ok else "does-not-fit",
        )
    # Patches of both kinds in the legend, so it explains the colours even when every scheme fits.
    handles = [
        *ax.get_legend_handles_labels()[0],
        Patch(color=FITS_COLOUR, label="buffer needed: fits"),
        Patch(facecolor=NO_FIT_COLOUR, hatch="//", edgecolor="white", label="buffer needed: does not fit"),
    ]
    ax.set_ylabel("GPU memory (MiB, log scale)")
    ax.set_xlabel("Checkpoint traffic scheme")
    legend_beside(ax, fontsize="small", handles=handles)


def _mib(value: float) -> str:
    return f"{value / 1024:.3g} GiB" if value >= 1024 else f"{value:.3g} MiB"
