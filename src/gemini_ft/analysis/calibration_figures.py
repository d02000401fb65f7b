"""The calibration parity plot: the simulator's predicted times against the measured ones.

Input is the table of `gemini_ft.calibration.validate.compare` (columns quantity, measured_s, predicted_s);
one marker per row, coloured by quantity, on log-log axes with the y = x line of a perfect
prediction and a band of ±2× around it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from gemini_ft.analysis.style import legend_beside, new_figure, styled


@styled
def plot_parity(table: pd.DataFrame) -> Figure:
    """Predicted vs measured seconds, one point per (run, quantity)."""
    fig, (ax,) = new_figure(1, width_per_panel=5.6, height=4.4)
    values = np.concatenate([table["measured_s"].to_numpy(float), table["predicted_s"].to_numpy(float)])
    positive = values[values > 0]
    low, high = (positive.min() / 2, positive.max() * 2) if len(positive) else (1e-3, 1.0)
    line = np.array([low, high])
    ax.plot(line, line, color="0.2", linewidth=1, label="y = x", zorder=1)
    ax.fill_between(line, line / 2, line * 2, color="0.85", alpha=0.6, linewidth=0, label="±2×", zorder=0)
    quantities = list(dict.fromkeys(table["quantity"]))
    colours = dict(zip(quantities, sns.color_palette("colorblind", len(quantities)), strict=True))
    for quantity in quantities:
        rows = table[table["quantity"] == quantity]
        ax.scatter(
            rows["measured_s"], rows["predicted_s"], color=colours[quantity], label=quantity, s=40, zorder=2
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("measured (s)")
    ax.set_ylabel("simulated (s)")
    ax.set_title("Simulator vs real runner")
    legend_beside(ax, fontsize="small")  # outside: the points can lie anywhere along y = x
    return fig
