"""The numbers behind each figure: aggregations of result DataFrames, with seed confidence intervals.

Each figure has a table function here and a plot function in `sim_figures`/`realrun_figures`; the plot
draws exactly the table, and the report writes the table as CSV next to the figure. Confidence
intervals are Student-t 95% intervals over independent runs (seeds, or repeated measurements), clipped to
each quantity's range: `gemini_ft.sim.intervals.mean_ci`, the same function the sweep summary uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.schema import POLICIES, Scenario
from gemini_ft.sim import costs
from gemini_ft.sim.intervals import NON_NEGATIVE, RATIO_RANGE, UNBOUNDED, mean_ci

__all__ = ["mean_ci"]  # re-exported: the one interval function lives in gemini_ft.sim.intervals

WASTED_COMPONENTS = (
    "checkpoint",
    "lost_progress",
    "retrieval",
    "detection",
    "replacement",
    "serialization",
    "warmup",
)
# Paper Eq. 1: the part of a failure's cost that the checkpoint policy controls.
EQ1_COMPONENTS = ("checkpoint", "lost_progress", "retrieval")
PROBABILITY_COLUMNS = ("strategy", "machines", "replicas", "failures", "probability")
MEASUREMENT_COLUMNS = ("event", "bytes", "duration_s", "source")
SAVE_SERIES = {
    "snapshot": "in-memory snapshot",
    "replicate": "replication to peers",
    "disk_save": "disk baseline (save)",
}
RECOVERY_SERIES = {
    "local": "from local CPU memory",
    "peer": "from a peer's CPU memory",
    "persistent": "from persistent storage",
    "disk": "disk baseline (load)",
}


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise a one-line UserError naming the columns `what` needs and does not find."""
    needed = list(columns)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise UserError(f"{what} columns", ", ".join(missing), f"missing; needed: {', '.join(needed)}")
    if df.empty:
        raise UserError(what, "0 rows", "needs at least one row")


def _aggregate(
    df: pd.DataFrame,
    by: Sequence[str],
    value: str,
    prefix: str = "",
    bounds: tuple[float, float] = UNBOUNDED,
) -> pd.DataFrame:
    rows = []
    for key, group in df.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, low, high, n = mean_ci(group[value], bounds)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                f"{prefix}mean": mean,
                f"{prefix}ci_low": low,
                f"{prefix}ci_high": high,
                "runs": n,
            }
        )
    return pd.DataFrame(rows)


# ---- simulator summaries ------------------------------------------------------------------------
def wasted_per_failure(summary: pd.DataFrame, by: Sequence[str] = ("policy",)) -> pd.DataFrame:
    """Average wasted time per failure in minutes, per component, by `by` (runs without failures skipped).

    As in the paper's Eq. 1, the checkpoint component is the time of one checkpoint (`ckpt_time_s`);
    the other components are each run's totals divided by its failures. Means are over seeds; `total_*`
    (with its 95% interval) is the sum of all components and `eq1_*` the Eq. 1 part. The run-long
    checkpoint stall per failure is kept as `checkpoint_overhead_min` (it is not caused by failures).
    """
    columns = [f"wasted_{c}_s" for c in WASTED_COMPONENTS]
    require_columns(summary, [*by, "seed", "failures", "ckpt_time_s", *columns], "summary")
    runs = summary[summary["failures"] > 0]
    if runs.empty:
        raise UserError(
            "summary", "0 failures in every run", "wasted time per failure needs runs with failures"
        )
    per_failure = runs[columns].div(runs["failures"], axis=0) / 60.0
    per_failure["checkpoint_overhead_min"] = per_failure["wasted_checkpoint_s"]
    per_failure["wasted_checkpoint_s"] = runs["ckpt_time_s"] / 60.0
    per_failure["total"] = per_failure[columns].sum(axis=1)
    per_failure["eq1"] = per_failure[[f"wasted_{c}_s" for c in EQ1_COMPONENTS]].sum(axis=1)
    per_failure[list(by)] = runs[list(by)]
    means = per_failure.groupby(list(by), sort=True)[[*columns, "checkpoint_overhead_min"]].mean()
    means.columns = [*(f"{c}_min" for c in WASTED_COMPONENTS), "checkpoint_overhead_min"]
    total = _aggregate(per_failure, by, "total", prefix="total_min_", bounds=NON_NEGATIVE).set_index(list(by))
    eq1 = (
        _aggregate(per_failure, by, "eq1", prefix="eq1_min_", bounds=NON_NEGATIVE)
        .drop(columns="runs")
        .set_index(list(by))
    )
    table = means.join(total).join(eq1).reset_index()
    failures = runs.groupby(list(by), sort=True)["failures"].mean().rename("failures_per_run").reset_index()
    return table.merge(failures, on=list(by))


def effective_ratio_table(summary: pd.DataFrame, x: str, by: Sequence[str] = ("policy",)) -> pd.DataFrame:
    """Mean effective training time ratio with its 95% interval over seeds, for each `by` × `x`."""
    require_columns(summary, [*by, x, "seed", "effective_ratio"], "summary")
    return _aggregate(summary, [*by, x], "effective_ratio", prefix="ratio_", bounds=RATIO_RANGE)


def effective_ratio_accountings(
    summaries: dict[str, pd.DataFrame], x: str, by: Sequence[str] = ("policy",)
) -> pd.DataFrame:
    """`effective_ratio_table` of each accounting's sweep summary, stacked with an `accounting` column.

    Fig. 15's two answers: e.g. {"simulator": sweep of the preset, "paper": sweep of
    `gemini_ft.sim.policies.paper_fig15_scenario(preset)`}, both over cluster.machines.
    """
    tables = [
        effective_ratio_table(summary, x, by).assign(accounting=name) for name, summary in summaries.items()
    ]
    if not tables:
        raise UserError("summaries", "none", "needs at least one accounting's summary")
    table = pd.concat(tables, ignore_index=True)
    return table[["accounting", *(c for c in table.columns if c != "accounting")]]


def fig15_cost_table(scenario: Scenario, machines: Sequence[int]) -> pd.DataFrame:
    """What each policy's checkpoints cost at each N under Fig. 15's two accountings (closed forms of
    `gemini_ft.sim.policies.plan_for`): the simulator's (`scenario` at N: the shard per machine is 1/N of the
    model) and the paper's (`gemini_ft.sim.policies.paper_fig15_scenario`: the 16-instance costs at every N)."""
    from gemini_ft.sim.policies import paper_fig15_scenario, plan_for

    base = scenario.model_copy(update={"sweep": {}})
    rows = []
    for n in machines:
        at_n = base.with_overrides({"cluster.machines": n})
        for accounting, point in (("simulator", at_n), ("paper", paper_fig15_scenario(at_n))):
            for policy in POLICIES:
                plan = plan_for(point.with_overrides({"checkpoint.policy": policy}))
                rows.append(
                    {
                        "accounting": accounting,
                        "machines": n,
                        "policy": policy,
                        "persistent_interval_s": plan.persistent_interval_s,
                        "persistent_stall_s": plan.persistent_stall_s,
                        "persistent_upload_s": plan.persistent_upload_s,
                        "mem_ckpt_time_s": plan.mem_ckpt_time_s if plan.mem_interval_s is not None else None,
                        "recovery_serialization_s": plan.recovery.recovery_serialization_s,
                        "retrieval_peer_s": plan.recovery.retrieval_peer_s,
                    }
                )
    return pd.DataFrame(rows)


# ---- checkpoint time from the scenario's derived properties -------------------------------------
def ckpt_time_table(
    scenario: Scenario, machines: Sequence[int], bandwidths_gbps: Sequence[float]
) -> pd.DataFrame:
    """In-memory vs persistent-storage checkpoint time for each N × NIC bandwidth (paper Fig. 11).

    A scenario with its own replication bandwidth keeps it as the same fraction of each NIC's.
    """
    base = scenario.model_copy(update={"sweep": {}})
    replication_share = (
        scenario.checkpoint.replication_gbps / scenario.cluster.nic_bandwidth_gbps
        if scenario.checkpoint.replication_gbps is not None
        else None
    )
    rows = []
    for n in machines:
        for bandwidth in bandwidths_gbps:
            overrides = {"cluster.machines": n, "cluster.nic_bandwidth_gbps": bandwidth}
            if replication_share is not None:
                overrides["checkpoint.replication_gbps"] = replication_share * bandwidth
            point = base.with_overrides(overrides)
            persistent_s, in_memory_s = costs.persistent_ckpt_s(point), costs.replication_round_s(point)
            rows.append(
                {
                    "machines": n,
                    "nic_bandwidth_gbps": float(bandwidth),
                    "storage_bandwidth_gbps": point.storage.bandwidth_gbps,
                    "replicas": point.checkpoint.replicas,
                    "ckpt_gb_per_machine": point.ckpt_bytes_per_machine / 1e9,
                    "persistent_ckpt_time_s": persistent_s,
                    "in_memory_ckpt_time_s": in_memory_s,
                    "reduction": persistent_s / in_memory_s,
                }
            )
    return pd.DataFrame(rows)


# ---- real-runner measurements ---------------------------------------------------------------------
def measurement_table(measurements: pd.DataFrame) -> pd.DataFrame:
    """Mean duration (95% interval over ranks and repeats) per series and checkpoint size.

    `phase` is `save` (snapshot, replication, disk save) or `recovery` (retrieval by source, disk load).
    """
    require_columns(measurements, MEASUREMENT_COLUMNS, "measurements")
    df = measurements[measurements["duration_s"].notna() & measurements["bytes"].notna()]
    save = df[df["event"].isin(list(SAVE_SERIES))].assign(
        phase="save", series=lambda d: d["event"].map(SAVE_SERIES)
    )
    retrieve = df[(df["event"] == "retrieve") & df["source"].isin(["local", "peer", "persistent"])]
    disk_load = df[df["event"] == "disk_load"].assign(source="disk")
    recovery = pd.concat([retrieve, disk_load]).assign(phase="recovery")
    recovery["series"] = recovery["source"].map(RECOVERY_SERIES)
    both = pd.concat([save, recovery], ignore_index=True)
    if both.empty:
        raise UserError(
            "measurements",
            "no timed snapshot/replicate/retrieve/disk events",
            "needs events with bytes and duration_s",
        )
    # ZeRO shards of one run differ by a few bytes between ranks: place every event of a run at the
    # run's median snapshot size, so one run is one point on the size axis.
    snapshots = df[df["event"] == "snapshot"].groupby("run_id")["bytes"].median()
    run_size = both["run_id"].map(snapshots)
    both["ckpt_mb"] = run_size.fillna(both["bytes"]).astype(float) / 1e6
    table = _aggregate(
        both, ["phase", "series", "ckpt_mb"], "duration_s", prefix="duration_s_", bounds=NON_NEGATIVE
    )
    return table.rename(columns={"runs": "samples"})
