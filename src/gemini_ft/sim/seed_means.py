"""The mean over seeds of one group of runs, with the effective ratio's interval, from plain summary rows.

What `gemini_ft.sim.results.summary_table` puts in each row of its table; computed from dicts, so that printing a
few runs (`gemini-ft simulate` without `--out`) needs no DataFrame and no pandas import. `group_means`
groups rows the way the table does (first appearance order) for that path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gemini_ft.sim.intervals import RATIO_RANGE, half_width, mean_ci

COLUMNS = (
    "seeds", "ratio", "ratio_ci95", "ratio_ci_low", "ratio_ci_high", "wasted_h", "failures",
    "wasted_per_failure_min", "from_cpu_memory",
)  # fmt: skip
"""The columns of the summary table, in order."""


def seed_means(runs: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """One group's row: its seeds, the mean ratio with its 95% interval (`ratio_ci95` is the Student-t
    half-width, 0 for one seed; the bounds are clipped to [0, 1]), the mean wasted hours and failures,
    the wasted minutes per failure over the runs that had failures, and the share of recoveries from
    CPU memory (runs without failures have none and are left out)."""
    ratios = [run["effective_ratio"] for run in runs]
    _, low, high, _ = mean_ci(ratios, RATIO_RANGE)
    with_failures = [run for run in runs if run["failures"] > 0]
    per_failure = [(run["wasted_s"] - run["wasted_checkpoint_s"]) / run["failures"] for run in with_failures]
    shares = [run["fraction_from_cpu_memory"] for run in runs]
    return {
        "seeds": len(runs),
        "ratio": _mean(ratios),
        "ratio_ci95": half_width(ratios) if len(runs) > 1 else 0.0,
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "wasted_h": _mean([run["wasted_s"] for run in runs]) / 3600.0,
        "failures": _mean([run["failures"] for run in runs]),
        "wasted_per_failure_min": _mean(per_failure) / 60.0,
        "from_cpu_memory": _mean(shares),
    }


def group_means(runs: Iterable[Mapping[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    """One row per distinct value of the `by` columns (in order of first appearance): those values and
    `seed_means` of its runs."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[c] for c in by), []).append(run)
    return [{**dict(zip(by, key, strict=True)), **seed_means(members)} for key, members in groups.items()]


def _mean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (NaN when none is), as pandas' mean skips them."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else math.nan
