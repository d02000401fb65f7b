"""A finished sweep in an experiment tracker: one entry per grid point for the hyperparameter views.

`track_sweep(summary, swept, kind, directory)` writes each point's swept values as hyperparameters and
its seed means (with the effective ratio's 95% half-width) as metrics, through `common.tracking`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gemini_ft.common.tracking import HParam, check_tracker, flat_hparams, open_tracker
from gemini_ft.sim.intervals import half_width

if TYPE_CHECKING:
    import pandas as pd

SWEEP_HPARAMS = ("policy", "placement", "replicas", "machines", "failure_rate_per_machine_per_day")
SWEEP_METRICS = ("effective_ratio", "wasted_s", "failures", "fraction_from_cpu_memory", "ckpt_interval_s",
                 "persistent_interval_s", "ckpt_time_s")  # fmt: skip


def sweep_points(
    summary: pd.DataFrame, swept: list[str]
) -> list[tuple[str, dict[str, HParam], dict[str, float]]]:
    """Per grid point: its name, its swept values (hparams) and the seed means of the metrics.

    Metrics: `effective_ratio` with its 95% half-width `effective_ratio_ci95` over seeds, every
    `wasted_*_s` component, the checkpoint intervals and failure counts.
    """
    columns = [c for c in swept if c in summary.columns] or [c for c in SWEEP_HPARAMS if c in summary.columns]
    metrics = [
        c for c in summary.columns if c in SWEEP_METRICS or (c.startswith("wasted_") and c.endswith("_s"))
    ]
    points = []
    key = "point" if "point" in summary.columns else columns
    for _, rows in summary.groupby(key, sort=True, dropna=False):
        first = rows.iloc[0]
        number = int(first["point"]) if "point" in rows.columns else len(points)
        params = flat_hparams({c: first[c] for c in columns})
        params["seeds"] = len(rows)
        values = {f"sweep/{m}": float(rows[m].mean()) for m in metrics}
        # The sweep summary's Student-t interval (NaN for a single seed: no interval, not a zero one).
        values["sweep/effective_ratio_ci95"] = half_width(rows["effective_ratio"])
        points.append((f"point-{number:05d}", params, values))
    return points


def track_sweep(
    summary: pd.DataFrame,
    swept: list[str],
    kind: str,
    directory: Path,
    *,
    name: str = "sweep",
    online: bool = False,
) -> int:
    """One tracked run per grid point of a finished sweep; returns how many were recorded.

    TensorBoard: `directory/point-NNNNN/` each (open `directory` for the HPARAMS tab). W&B: one run
    per point in `directory/wandb/`, grouped as `name`; W&B's service may still be writing a run's
    offline file when its `finish` returns: the files are whole once the process exits or after
    `wandb.teardown()`. A tracker that fails stops the rest (warned once).
    """
    check_tracker(kind)
    if kind == "none":
        return 0
    done = 0
    for point, params, metrics in sweep_points(summary, swept):
        tracker = open_tracker(kind, Path(directory) / point if kind == "tensorboard" else Path(directory),
                               name=f"{name}/{point}", config=params, online=online, group=name)  # fmt: skip
        tracker.hparams(params, metrics)
        if not tracker.close():
            break
        done += 1
    return done
