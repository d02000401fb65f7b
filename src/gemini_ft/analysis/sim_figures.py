"""Paper-style figures from simulator results and closed forms (Gemini Figs. 9, 10, 11 and 15).

Each function takes a DataFrame (a recovery-probability table, a sweep summary, or a checkpoint-time
table) and returns a Figure; aggregation lives in `gemini_ft.analysis.tables`, so the report can write the very
numbers a figure shows. Stochastic results carry 95% confidence intervals over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gemini_ft.analysis.style import (
    POLICY_COLOURS,
    legend_below,
    legend_beside,
    new_figure,
    note_single_point,
    ordered_policies,
    plain_log_ticks,
    policy_label,
    styled,
)
from gemini_ft.analysis.tables import (
    PROBABILITY_COLUMNS,
    WASTED_COMPONENTS,
    effective_ratio_table,
    require_columns,
    wasted_per_failure,
)
from gemini_ft.common.errors import UserError

X_LABELS = {
    "failure_rate_per_machine_per_day": "Failures per machine per day",
    "machines": "Number of machines N",
}
FACET_LABELS = {"machines": "N = {}", "failure_rate_per_machine_per_day": "{} failures/machine/day"}
COMPONENT_LABELS = {
    "checkpoint": "checkpointing",
    "lost_progress": "lost progress",
    "retrieval": "retrieval",
    "detection": "detection",
    "replacement": "replacement",
    "serialization": "serialization",
    "warmup": "restart warm-up",
}


def _facets(df: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """One (title, rows) per combination of the `columns` that take more than one value."""
    varying = [c for c in columns if c in df.columns and df[c].nunique() > 1]
    if not varying:
        return [("", df)]
    facets = []
    for key, rows in df.groupby(varying, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        title = ", ".join(
            FACET_LABELS.get(c, c + " = {}").format(_fmt(v)) for c, v in zip(varying, values, strict=True)
        )
        facets.append((title, rows))
    return facets


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


# ---- Fig. 9: recovery probability ------------------------------------------------------------------
@styled
def plot_recovery_probability(table: pd.DataFrame) -> Figure:
    """Probability of recovering from CPU memory vs N: one panel per m, one line per placement × k."""
    require_columns(table, PROBABILITY_COLUMNS, "recovery-probability table")
    replicas = sorted(table["replicas"].unique())
    # At most two panels a row, each with its legend under it: three in a row made the report page
    # scale the figure down until the legends could not be read.
    fig, axes = new_figure(len(replicas), width_per_panel=5.4, height=4.6, cols=2)
    ks = sorted(table["failures"].unique())
    colours = dict(zip(ks, sns.color_palette("viridis", len(ks)), strict=True))
    styles = ["-", "--", ":", "-."]
    strategies = sorted(table["strategy"].unique())
    for ax, m in zip(axes, replicas, strict=True):
        for s_index, strategy in enumerate(strategies):
            for k in ks:
                rows = table[
                    (table["replicas"] == m) & (table["strategy"] == strategy) & (table["failures"] == k)
                ]
                if rows.empty:
                    continue
                rows = rows.sort_values("machines")
                ax.plot(
                    rows["machines"],
                    rows["probability"],
                    marker="o",
                    ms=3.5,
                    color=colours[k],
                    linestyle=styles[s_index % len(styles)],
                    label=f"{strategy}, k = {k}",
                )
                if {"ci_low", "ci_high"} <= set(rows.columns):
                    # Only Monte Carlo rows have an interval; exact rows carry None.
                    low = pd.to_numeric(rows["ci_low"], errors="coerce")
                    high = pd.to_numeric(rows["ci_high"], errors="coerce")
                    if (high > low).any():
                        ax.fill_between(rows["machines"], low, high, color=colours[k], alpha=0.2)
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax.xaxis, table["machines"].unique())
        ax.set_title(f"m = {m} replicas")
        ax.set_xlabel("Number of machines N")
        ax.set_ylabel("Probability of recovery from CPU memory")
        ax.set_ylim(-0.02, 1.02)
        legend_below(ax, title="placement, failed machines k")
        if table["machines"].nunique() == 1:
            note_single_point(ax, f"one point per line: N = {_fmt(table['machines'].iloc[0])}")
    return fig


# ---- Fig. 10: wasted time per failure ----------------------------------------------------------------
@styled
def plot_wasted_time(summary: pd.DataFrame) -> Figure:
    """Average wasted time per failure per policy, its components stacked, with the total's 95% CI."""
    require_columns(summary, ["policy", "machines", "failure_rate_per_machine_per_day"], "summary")
    require_columns(summary, ["failures"], "summary")
    # A facet whose runs saw no failure has no per-failure cost to show.
    facets = [
        f
        for f in _facets(summary, ["machines", "failure_rate_per_machine_per_day"])
        if (f[1]["failures"] > 0).any()
    ]
    if not facets:
        raise UserError(
            "summary", "0 failures in every run", "wasted time per failure needs runs with failures"
        )
    fig, axes = new_figure(len(facets), width_per_panel=6.0)
    colours = dict(zip(WASTED_COMPONENTS, sns.color_palette("Set2", len(WASTED_COMPONENTS)), strict=True))
    for ax, (title, rows) in zip(axes, facets, strict=True):
        table = wasted_per_failure(rows).set_index("policy")
        policies = ordered_policies(table.index)
        table = table.loc[policies]
        x = np.arange(len(policies))
        bottom = np.zeros(len(policies))
        for component in WASTED_COMPONENTS:
            values = table[f"{component}_min"].to_numpy()
            ax.bar(
                x,
                values,
                bottom=bottom,
                color=colours[component],
                label=COMPONENT_LABELS[component],
                width=0.65,
            )
            bottom += values
        _total_errorbars(ax, x, table)
        ax.set_xticks(x, [policy_label(p) for p in policies])
        ax.set_xlabel("Checkpoint policy")
        ax.set_ylabel("Average wasted time per failure (min)")
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    # One legend for all panels, outside them, so it never hides a bar.
    fig.legend(handles[::-1], labels[::-1], title="component", loc="outside right upper", fontsize="small")
    return fig


def _total_errorbars(ax: Axes, x: np.ndarray, table: pd.DataFrame) -> None:
    mean = table["total_min_mean"].to_numpy()
    low, high = table["total_min_ci_low"].to_numpy(), table["total_min_ci_high"].to_numpy()
    finite = np.isfinite(low) & np.isfinite(high)
    if finite.any():
        ax.errorbar(
            x[finite],
            mean[finite],
            yerr=[mean[finite] - low[finite], high[finite] - mean[finite]],
            fmt="none",
            ecolor="black",
            capsize=3,
            linewidth=1,
        )


# ---- Fig. 15: effective training time ratio ---------------------------------------------------------
@styled
def plot_effective_ratio(summary: pd.DataFrame, x: str = "failure_rate_per_machine_per_day") -> Figure:
    """Effective training time ratio vs `x` (failure rate or machines), one line per policy, 95% CI band."""
    if x not in X_LABELS:
        raise UserError("x", x, f"allowed: {', '.join(X_LABELS)}")
    others = [c for c in X_LABELS if c != x]
    require_columns(summary, ["policy", "seed", "effective_ratio", x, *others], "summary")
    facets = _facets(summary, others)
    fig, axes = new_figure(len(facets))
    single = summary[x].nunique() == 1
    for ax, (title, rows) in zip(axes, facets, strict=True):
        table = effective_ratio_table(rows, x)
        ax.set_title(title)
        if single:
            _ratio_per_policy(ax, table)
            value = FACET_LABELS.get(x, x + " = {}").format(_fmt(table[x].iloc[0]))
            note_single_point(ax, f"one point per policy: {value}")
        else:
            _ratio_lines(ax, table, x)
        ax.set_ylabel("Effective training time ratio")
        ax.set_ylim(-0.02, 1.02)
    # The policies are the same in every panel: one legend, beside the last panel, outside the data.
    legend_beside(axes[-1], title="policy", fontsize="small")
    return fig


def _ratio_lines(ax: Axes, table: pd.DataFrame, x: str) -> None:
    for policy in ordered_policies(table["policy"]):
        line = table[table["policy"] == policy].sort_values(x)
        colour = POLICY_COLOURS.get(policy)
        ax.plot(line[x], line["ratio_mean"], marker="o", ms=4, color=colour, label=policy_label(policy))
        band = line["ratio_ci_low"].notna()
        if band.any():
            ax.fill_between(
                line[x][band],
                line["ratio_ci_low"][band],
                line["ratio_ci_high"][band],
                color=colour,
                alpha=0.2,
                linewidth=0,
            )
    if table[x].min() > 0 and table[x].max() / table[x].min() >= 8:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis, table[x].unique())
    ax.set_xlabel(X_LABELS[x])


def _ratio_per_policy(ax: Axes, table: pd.DataFrame) -> None:
    """One x value: the policies side by side (mean and 95% interval), not lone dots on an empty axis."""
    policies = ordered_policies(table["policy"])
    rows = table.set_index("policy").loc[policies]
    for i, policy in enumerate(policies):
        mean = float(rows.loc[policy, "ratio_mean"])
        low, high = rows.loc[policy, "ratio_ci_low"], rows.loc[policy, "ratio_ci_high"]
        yerr = [[mean - low], [high - mean]] if pd.notna(low) and pd.notna(high) else None
        ax.errorbar(
            [i], [mean], yerr=yerr, fmt="o", ms=7, capsize=4,
            color=POLICY_COLOURS.get(policy), label=policy_label(policy),
        )  # fmt: skip
    ax.set_xticks(range(len(policies)), [policy_label(p) for p in policies], fontsize="small")
    ax.set_xlim(-0.6, len(policies) - 0.4)
    ax.set_xlabel("Checkpoint policy")


ACCOUNTING_TITLES = {
    "simulator": "Simulator: costs scale with N,\nfailures strike recoveries",
    "paper": "Paper: 16-instance costs at every N,\nno failure during a recovery",
}


@styled
def plot_effective_ratio_accountings(table: pd.DataFrame, x: str = "machines") -> Figure:
    """Fig. 15 under each accounting side by side: one panel per accounting (in the table's order), one
    colour per policy, the same y axis. `table` is `gemini_ft.analysis.tables.effective_ratio_accountings`."""
    if x not in X_LABELS:
        raise UserError("x", x, f"allowed: {', '.join(X_LABELS)}")
    require_columns(
        table, ["accounting", "policy", x, "ratio_mean", "ratio_ci_low", "ratio_ci_high"], "accountings table"
    )
    if table.duplicated(["accounting", "policy", x]).any():
        # Another sweep axis varies too: the panels are the accountings, so there is no room for facets.
        raise UserError("accountings table", f"several rows per accounting × policy × {x}",
                        "needs one point per accounting, policy and x (fix the other axis)")  # fmt: skip
    accountings = list(dict.fromkeys(table["accounting"]))
    fig, axes = new_figure(len(accountings), cols=2)
    for ax, accounting in zip(axes, accountings, strict=True):
        rows = table[table["accounting"] == accounting]
        ax.set_title(ACCOUNTING_TITLES.get(accounting, accounting))
        if rows[x].nunique() == 1:
            _ratio_per_policy(ax, rows)
            note_single_point(ax, f"one point per policy: {FACET_LABELS[x].format(_fmt(rows[x].iloc[0]))}")
        else:
            _ratio_lines(ax, rows, x)
        ax.set_ylabel("Effective training time ratio")
        ax.set_ylim(-0.02, 1.02)
    legend_beside(axes[-1], title="policy", fontsize="small")
    return fig


# ---- Fig. 11: checkpoint time reduction ---------------------------------------------------------------
@styled
def plot_ckpt_time_reduction(table: pd.DataFrame) -> Figure:
    """(a) persistent ÷ in-memory checkpoint time vs NIC bandwidth, one line per N;
    (b) both checkpoint times vs N, one in-memory line per bandwidth and the persistent one."""
    require_columns(
        table,
        ["machines", "nic_bandwidth_gbps", "persistent_ckpt_time_s", "in_memory_ckpt_time_s", "reduction"],
        "checkpoint-time table",
    )
    fig, (left, right) = new_figure(2, width_per_panel=5.0)
    ns = sorted(table["machines"].unique())
    for colour, n in zip(sns.color_palette("crest", len(ns)), ns, strict=True):
        rows = table[table["machines"] == n].sort_values("nic_bandwidth_gbps")
        left.plot(
            rows["nic_bandwidth_gbps"], rows["reduction"], marker="o", ms=4, color=colour, label=f"N = {n}"
        )
    left.set_xscale("log", base=2)
    plain_log_ticks(left.xaxis, table["nic_bandwidth_gbps"].unique())
    left.set_yscale("log")
    plain_log_ticks(left.yaxis)
    left.set_xlabel("NIC bandwidth per machine (Gbps)")
    left.set_ylabel("Checkpoint time reduction (×)")
    legend_below(left, ncols=3, title="machines", fontsize="small")
    if table["nic_bandwidth_gbps"].nunique() == 1:
        note_single_point(left, f"one point per N: {_fmt(table['nic_bandwidth_gbps'].iloc[0])} Gbps")

    bandwidths = sorted(table["nic_bandwidth_gbps"].unique())
    for colour, bandwidth in zip(sns.color_palette("flare", len(bandwidths)), bandwidths, strict=True):
        rows = table[table["nic_bandwidth_gbps"] == bandwidth].sort_values("machines")
        right.plot(
            rows["machines"],
            rows["in_memory_ckpt_time_s"],
            marker="o",
            ms=4,
            color=colour,
            label=f"in memory, {bandwidth:g} Gbps",
        )
    persistent = table.groupby("machines", sort=True)["persistent_ckpt_time_s"].mean()
    right.plot(
        persistent.index,
        persistent.to_numpy(),
        color="black",
        linestyle="--",
        marker="s",
        ms=4,
        label="persistent storage",
    )
    right.set_xscale("log", base=2)
    plain_log_ticks(right.xaxis, table["machines"].unique())
    right.set_yscale("log")
    plain_log_ticks(right.yaxis)
    right.set_xlabel("Number of machines N")
    right.set_ylabel("Checkpoint time (s)")
    legend_below(right, ncols=2, fontsize="small")
    if table["machines"].nunique() == 1:
        note_single_point(right, f"one point per line: N = {_fmt(table['machines'].iloc[0])}")
    return fig
