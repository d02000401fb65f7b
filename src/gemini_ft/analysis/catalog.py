"""Which figures a result holds: each figure with its file stem, caption and the table behind it.

`figures_for(result)` picks the figures a result file supports (`gemini-ft plot`); the report builds
its own list from the same constructors. A spec draws lazily, so a caller can save one figure at a
time and free it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gemini_ft.analysis.advise_figures import frontier_figure
from gemini_ft.analysis.interleave_figures import plot_iteration_time
from gemini_ft.analysis.realrun_figures import plot_measurements
from gemini_ft.analysis.results_io import ResultFile
from gemini_ft.analysis.sim_figures import (
    plot_ckpt_time_reduction,
    plot_effective_ratio,
    plot_effective_ratio_accountings,
    plot_recovery_probability,
    plot_wasted_time,
)
from gemini_ft.analysis.style import save_figure
from gemini_ft.analysis.tables import (
    WASTED_COMPONENTS,
    effective_ratio_accountings,
    effective_ratio_table,
    measurement_table,
    wasted_per_failure,
)

FACET_COLUMNS = ("machines", "failure_rate_per_machine_per_day")
_POINT_LABELS = {"machines": "N = {}", "failure_rate_per_machine_per_day": "{} failures per machine per day"}
_PANEL_LABELS = {
    "machines": "N: {}",
    "failure_rate_per_machine_per_day": "failure rate: {} per machine per day",
}


def _value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def point_caption(summary: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> str:
    """Which point of the sweep a figure shows: the fixed value of each of `columns`, or one panel per
    value where it varies, then the seeds and simulated days behind each mean."""
    fixed, panels = [], []
    for column in columns:
        if column not in summary.columns:
            continue
        values = sorted(summary[column].dropna().unique())
        if len(values) == 1:
            fixed.append(_POINT_LABELS[column].format(_value(values[0])))
        elif values:
            panels.append(_PANEL_LABELS[column].format(", ".join(_value(v) for v in values)))
    text = f"Shown at {' and '.join(fixed)}." if fixed else ""
    if panels:
        text += f" One panel per {'; '.join(panels)}."
    if "seed" in summary.columns:
        runs = f"{summary['seed'].nunique()} seed(s)"
        if "duration_s" in summary.columns and summary["duration_s"].nunique() == 1:
            runs += f" × {float(summary['duration_s'].iloc[0]) / 86400:g} simulated days"
        text += f" Each mean is over {runs}."
    return text.strip()


@dataclass(frozen=True)
class FigureSpec:
    """One figure: `table` holds the numbers it shows; `draw()` builds it."""

    stem: str
    title: str
    caption: str
    table: pd.DataFrame
    draw: Callable[[], Figure]

    def write(self, out_dir: Path) -> list[Path]:
        """Save PNG, PDF and the CSV of the numbers; returns the three paths."""
        fig = self.draw()
        paths = save_figure(fig, out_dir, self.stem)
        csv = out_dir / f"{self.stem}.csv"
        self.table.to_csv(csv, index=False, float_format="%.6g")
        return [*paths, csv]


def recovery_probability_figure(table: pd.DataFrame) -> FigureSpec:
    return FigureSpec(
        "fig09_recovery_probability",
        "Recovery probability from CPU memory (paper Fig. 9)",
        "Probability that every machine's checkpoint survives k simultaneous machine failures, per placement "
        "strategy and number of replicas m, against the number of machines N.",
        table,
        lambda: plot_recovery_probability(table),
    )


def wasted_time_figure(summary: pd.DataFrame) -> FigureSpec:
    by = [c for c in FACET_COLUMNS if c in summary.columns] + ["policy"]
    table = wasted_per_failure(summary, by=by)
    return FigureSpec(
        "fig10_wasted_time",
        "Average wasted time per failure (paper Fig. 10)",
        "Wasted time per failure per checkpoint policy, split into its components ("
        + ", ".join(c.replace("_", " ") for c in WASTED_COMPONENTS)
        + "); as in the paper's Eq. 1 the checkpoint component is the time of one checkpoint, the others "
        "are per-run totals divided by the run's failures. Error bars: 95% confidence interval of the total "
        "over seeds. eq1_* is the Eq. 1 part (checkpoint + lost progress + retrieval); checkpoint_overhead_min "
        "is the run-long checkpoint stall per failure, which Fig. 15 accounts for. "
        + point_caption(summary, FACET_COLUMNS),
        table,
        lambda: plot_wasted_time(summary),
    )


def effective_ratio_figure(summary: pd.DataFrame, x: str) -> FigureSpec:
    by = [c for c in FACET_COLUMNS if c != x] + ["policy"]
    what = "failure rate" if x == "failure_rate_per_machine_per_day" else "number of machines"
    stem = (
        "fig15a_effective_ratio_vs_failure_rate"
        if x == "failure_rate_per_machine_per_day"
        else ("fig15b_effective_ratio_vs_machines")
    )
    return FigureSpec(
        stem,
        f"Effective training time ratio vs {what} (paper Fig. 15)",
        f"Useful training time ÷ wall-clock time per policy against the {what}; shaded: 95% confidence "
        "interval over seeds. " + point_caption(summary, [c for c in FACET_COLUMNS if c != x]),
        effective_ratio_table(summary, x, by=by),
        lambda: plot_effective_ratio(summary, x=x),
    )


def effective_ratio_accountings_figure(
    summaries: dict[str, pd.DataFrame], x: str, costs: pd.DataFrame | None = None
) -> FigureSpec:
    """Fig. 15 under both accountings, one panel each: `summaries` maps "simulator" and "paper" to the
    sweep summaries of the preset and of `gemini_ft.sim.policies.paper_fig15_scenario(preset)`; `costs` (from
    `gemini_ft.analysis.tables.fig15_cost_table`) lets the caption quote what the accountings charge."""
    others = [c for c in FACET_COLUMNS if c != x]
    what = "failure rate" if x == "failure_rate_per_machine_per_day" else "number of machines"
    stem = "fig15a_effective_ratio_vs_failure_rate" if x == "failure_rate_per_machine_per_day" else (
        "fig15b_effective_ratio_vs_machines")  # fmt: skip
    table = effective_ratio_accountings(
        summaries, x, by=[c for c in others if c in _common(summaries)] + ["policy"]
    )
    caption = (
        f"Useful training time ÷ wall-clock time per policy against the {what}, under two accountings; "
        "shaded: 95% confidence interval over seeds. Left, the simulator's: each machine checkpoints its "
        "1/N share of the model, so the serialization stall, the in-memory checkpoint time, the "
        "serialization and retrieval of a recovery and Young-Daly's interval change with N, and a failure that strikes during a recovery is kept (it "
        "restarts the recovery). Right, the paper's (its artifact notebook): every checkpoint and recovery "
        "costs what it costs on 16 instances whatever N, and no failure strikes during a recovery. The "
        "panels differ for these two reasons only. "
        + accounting_differences(summaries, x, costs)
        + point_caption(next(iter(summaries.values())), others)
    )
    return FigureSpec(
        stem,
        f"Effective training time ratio vs {what}: simulator and paper accountings (paper Fig. 15)",
        caption,
        table,
        lambda: plot_effective_ratio_accountings(table, x=x),
    )


def _common(summaries: dict[str, pd.DataFrame]) -> set[str]:
    columns = [set(s.columns) for s in summaries.values()]
    return set.intersection(*columns) if columns else set()


def _seconds(value: float) -> str:
    # Whole seconds once they run to hundreds (7,587 s, not 7.59e+03 s); three digits below.
    return f"{value:,.0f} s" if abs(value) >= 100 else f"{value:.3g} s"


def accounting_differences(summaries: dict[str, pd.DataFrame], x: str, costs: pd.DataFrame | None) -> str:
    """The caption's numbers for each reason the accountings differ, at the largest N shown: what a
    checkpoint costs under each (from `costs`) and the share of failures that struck a recovery."""
    text = []
    sim = summaries.get("simulator")
    n = int(max(s["machines"].max() for s in summaries.values() if "machines" in s.columns))
    if costs is not None and n in set(costs["machines"]):
        at = costs[costs["machines"] == n].set_index(["accounting", "policy"])

        def pair(policy: str, column: str) -> str | None:
            keys = [("simulator", policy), ("paper", policy)]
            if not all(k in at.index for k in keys):
                return None
            a, b = (float(at.loc[k, column]) for k in keys)
            return f"{_seconds(a)} vs {_seconds(b)}"

        parts = [
            f"{label} {value}"
            for label, value in (
                ("HighFreq's serialization stall per checkpoint", pair("highfreq", "persistent_stall_s")),
                ("Young-Daly's interval", pair("young-daly", "persistent_interval_s")),
                ("Gemini's in-memory checkpoint time", pair("gemini", "mem_ckpt_time_s")),
                (
                    "the serialization before a restart from CPU memory",
                    pair("gemini", "recovery_serialization_s"),
                ),
            )
            if value is not None
        ]
        if parts:
            text.append(f"At N = {n:,}, simulator vs paper: " + "; ".join(parts) + ".")
    if sim is not None and {"simultaneous_failures", "failures", "machines"} <= set(sim.columns):
        rows = sim[sim["machines"] == n]
        if int(rows["failures"].sum()) > 0:
            share = rows["simultaneous_failures"].sum() / rows["failures"].sum()
            text.append(
                f"In the simulator's runs at N = {n:,}, {share:.1%} of the failures struck during a "
                "recovery; the paper's accounting drops them."
            )
    return " ".join(text) + (" " if text else "")


def ckpt_time_figure(table: pd.DataFrame) -> FigureSpec:
    return FigureSpec(
        "fig11_ckpt_time_reduction",
        "Checkpoint time: CPU memory vs persistent storage (paper Fig. 11)",
        "Left: persistent-storage checkpoint time ÷ in-memory checkpoint time (m − 1 replicas over each "
        "machine's NIC) against NIC bandwidth. Right: both times against the number of machines.",
        table,
        lambda: plot_ckpt_time_reduction(table),
    )


def interleave_figure(table: pd.DataFrame, scenario_name: str) -> FigureSpec:
    return FigureSpec(
        "fig16_iteration_time",
        f"Iteration time per checkpoint-traffic scheme, {scenario_name} (paper Fig. 16)",
        "Left: one training iteration with an in-memory checkpoint per iteration, from the ZeRO-3 timeline "
        "model executed in SimPy (NIC, GPU→CPU copy engine and GPU sub-buffers as resources), with the "
        "overhead over the baseline. Right: the GPU buffer each scheme needs against the GPU memory left.",
        table,
        lambda: plot_iteration_time(table),
    )


def measurements_figure(measurements: pd.DataFrame) -> FigureSpec:
    return FigureSpec(
        "realrun_measurements",
        "Real runner: checkpoint and recovery times vs checkpoint size",
        "Measured in-memory snapshot and replication times, and retrieval times by recovery source, against "
        "the disk baseline (torch.distributed.checkpoint, fsynced); shaded: 95% interval over ranks and repeats.",
        measurement_table(measurements),
        lambda: plot_measurements(measurements),
    )


def advice_figure(candidates: pd.DataFrame, recommended: str | None = None) -> FigureSpec:
    return FigureSpec(
        "advise-frontier",
        "What each checkpoint configuration buys, and what it costs (gemini-ft advise)",
        "Effective training time ratio of every configuration advise evaluated, on the seeds all of them ran,"
        " against its spare machines and its checkpoints' CPU memory per machine; the line is the best ratio"
        " at that cost or less, circles are the frontier (no candidate does as well for less)"
        + (", the star is the recommendation." if recommended is not None else "."),
        candidates,
        lambda: frontier_figure(candidates, recommended),
    )


def figures_for(result: ResultFile) -> list[FigureSpec]:
    """The figures `result` supports (a sim result gets Fig. 15 along each axis that varies)."""
    if result.kind == "advice":
        advice = json.loads(result.metadata["advice"]) if "advice" in result.metadata else {}
        return [advice_figure(result.data, (advice.get("best") or {}).get("label"))]
    if result.kind == "probability":
        return [recovery_probability_figure(result.data)]
    if result.kind == "measurements":
        return [measurements_figure(result.data)]
    summary = result.data
    specs = []
    if "failures" in summary.columns and (summary["failures"] > 0).any():
        specs.append(wasted_time_figure(summary))
    axes = ("failure_rate_per_machine_per_day", "machines")
    varying = [x for x in axes if x in summary.columns and summary[x].nunique() > 1]
    for x in varying or ["failure_rate_per_machine_per_day"]:
        specs.append(effective_ratio_figure(summary, x))
    return specs
