"""Figures from real-runner measurements (`measurements.parquet`): what each checkpoint step costs.

Left: saving — in-memory snapshot and replication to peers against the disk baseline (save, fsynced).
Right: recovery — retrieval from local CPU memory, a peer, or persistent storage against the disk
baseline (load). Both against checkpoint size, with 95% intervals over ranks and repeats.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from gemini_ft.analysis.style import (
    human_bytes,
    legend_below,
    new_figure,
    note_single_point,
    plain_log_ticks,
    size_ticks,
    styled,
)
from gemini_ft.analysis.tables import RECOVERY_SERIES, SAVE_SERIES, measurement_table

_PHASES = {
    "save": ("Saving a checkpoint", list(SAVE_SERIES.values())),
    "recovery": ("Recovering a checkpoint", list(RECOVERY_SERIES.values())),
}


@styled
def plot_measurements(measurements: pd.DataFrame) -> Figure:
    """Duration vs checkpoint size per series, saving and recovery side by side (log-log)."""
    table = measurement_table(measurements)
    fig, axes = new_figure(2, width_per_panel=5.0)
    colours = dict(
        zip(
            [*SAVE_SERIES.values(), *RECOVERY_SERIES.values()],
            sns.color_palette("colorblind", 7),
            strict=True,
        )
    )
    for ax, (phase, (title, series_order)) in zip(axes, _PHASES.items(), strict=True):
        rows = table[table["phase"] == phase]
        for series in series_order:
            line = rows[rows["series"] == series].sort_values("ckpt_mb")
            if line.empty:
                continue
            baseline = series.startswith("disk")
            ax.plot(
                line["ckpt_mb"],
                line["duration_s_mean"],
                marker="s" if baseline else "o",
                ms=4,
                linestyle="--" if baseline else "-",
                color=colours[series],
                label=series,
            )
            # On a log axis an interval reaching zero or below (few samples) cannot be drawn honestly;
            # it stays in the CSV and the band is drawn only where it is positive.
            band = line["duration_s_ci_low"].notna() & (line["duration_s_ci_low"] > 0)
            if band.any():
                ax.fill_between(
                    line["ckpt_mb"][band],
                    line["duration_s_ci_low"][band],
                    line["duration_s_ci_high"][band],
                    color=colours[series],
                    alpha=0.2,
                    linewidth=0,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.set_title(title)
        if not rows.empty:
            # ckpt_mb is bytes / 1e6; ticks at the sizes measured, labelled "401 kB", "1.2 GB", ...
            size_ticks(ax.xaxis, rows["ckpt_mb"].unique(), scale=1e6)
            if rows["ckpt_mb"].nunique() == 1:
                size = human_bytes(float(rows["ckpt_mb"].iloc[0]) * 1e6)
                note_single_point(ax, f"one point per series: shard size {size}")
        ax.set_xlabel("Checkpoint shard size")
        ax.set_ylabel("Time (s)")
        if ax.get_lines():
            legend_below(ax, ncols=2, fontsize="small")
    return fig
