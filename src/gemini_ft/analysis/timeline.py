"""Gantt-style timeline of one training iteration with its checkpoint traffic (like the paper's Fig. 5).

`plot_timeline` takes interval records (start_s, end_s, kind ∈ compute, comm, ckpt, copy) and returns
a matplotlib Figure with one lane per resource: GPU compute, training traffic and checkpoint traffic
on the NIC, and the receiver's GPU→CPU copies. Built on `Figure` directly, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Lane (top to bottom), label and colour per interval kind; colourblind-safe (Okabe-Ito).
LANES = (
    ("compute", "GPU compute", "#0072B2"),
    ("comm", "NIC: training traffic", "#E69F00"),
    ("ckpt", "NIC: checkpoint traffic", "#009E73"),
    ("copy", "GPU→CPU copy", "#CC79A7"),
)


def plot_timeline(
    intervals: pd.DataFrame | Iterable[Mapping[str, object]],
    *,
    title: str = "",
    window_s: tuple[float, float] | None = None,
) -> Figure:
    """One horizontal bar per interval, one lane per kind; `window_s` zooms into part of the iteration."""
    frame = intervals if isinstance(intervals, pd.DataFrame) else pd.DataFrame(list(intervals))
    missing = {"start_s", "end_s", "kind"} - set(frame.columns)
    if missing:
        raise ValueError(f"interval records need columns start_s, end_s, kind; missing {sorted(missing)}")
    figure = Figure(figsize=(10, 3.2), layout="constrained")
    axes = figure.add_subplot()
    for row, (kind, _, colour) in enumerate(LANES):
        lane = frame[frame["kind"] == kind]
        bars = list(zip(lane["start_s"], lane["end_s"] - lane["start_s"], strict=True))
        if bars:
            # A thin edge in the bar colour keeps very short bars visible at full-iteration zoom.
            axes.broken_barh(
                bars, (len(LANES) - 1 - row - 0.4, 0.8), facecolors=colour, edgecolors=colour, linewidth=0.3
            )
    axes.set_yticks(range(len(LANES)), [label for _, label, _ in reversed(LANES)])
    axes.set_xlabel("time within the iteration (s)")
    end = float(frame["end_s"].max()) if len(frame) else 1.0
    axes.set_xlim(window_s if window_s is not None else (0.0, end * 1.01 or 1.0))
    axes.set_ylim(-0.6, len(LANES) - 0.4)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(
        handles=[Patch(color=colour, label=label) for _, label, colour in LANES],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25),
        ncols=len(LANES),
        frameon=False,
        fontsize="small",
    )
    if title:
        axes.set_title(title)
    return figure
