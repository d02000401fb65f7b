"""The frontier of an `advise` search: effective training time ratio against what a configuration costs.

`frontier_figure` takes `Advice.candidates` (one row per evaluated candidate) and returns a Figure with
two panels, ratio vs spare machines and ratio vs CPU memory per machine; frontier points are joined,
and the recommended configuration (given by its label) is starred.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from gemini_ft.analysis.style import POLICY_COLOURS, new_figure, policy_label
from gemini_ft.analysis.tables import require_columns

COLUMNS = ("policy", "spare_machines", "cpu_memory_gib", "ratio_common_seeds", "frontier")
AXES = (("spare_machines", "Spare machines"), ("cpu_memory_gib", "Checkpoint CPU memory per machine (GiB)"))


def frontier_figure(candidates: pd.DataFrame, recommended: str | None = None) -> Figure:
    """Ratio (on the seeds every candidate ran) vs spare machines and vs CPU memory, per policy; the
    candidate labelled `recommended` (`Advice.best["label"]`) starred."""
    require_columns(candidates, COLUMNS, "advise candidates")
    star = candidates.iloc[:0]
    if recommended is not None:
        require_columns(candidates, ("label",), "advise candidates")
        star = candidates[candidates["label"] == recommended]
        if star.empty:
            raise ValueError(f"no candidate is labelled {recommended!r}")
    fig, axes = new_figure(len(AXES))
    for ax, (column, label) in zip(axes, AXES, strict=True):
        for policy, rows in candidates.groupby("policy", sort=True):
            ax.scatter(
                rows[column],
                rows["ratio_common_seeds"],
                s=18,
                alpha=0.6,
                color=POLICY_COLOURS.get(policy),
                label=policy_label(policy),
            )
        best = candidates.groupby(column)["ratio_common_seeds"].max().sort_index().cummax()
        ax.step(best.index, best.to_numpy(), where="post", color="black", linewidth=1, label="frontier")
        front = candidates[candidates["frontier"]]
        ax.scatter(front[column], front["ratio_common_seeds"], s=40, facecolors="none", edgecolors="black")
        if not star.empty:
            ax.scatter(
                star[column], star["ratio_common_seeds"], s=160, marker="*", color="black", zorder=3,
                label="recommended",
            )  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("Effective training time ratio")
    axes[0].legend(fontsize="small")
    return fig
