"""Simulation results as DataFrames: the `summary` (one row per run) and `failures` (one per failure).

`run_seeds` simulates a scenario over its seeds; `write_results`/`read_results` store and load them
through `gemini_ft.common.results_io` (atomic Parquet files carrying the resolved scenario and the version);
`summary_table` is the mean over seeds per group with a confidence interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from gemini_ft.common.errors import UserError
from gemini_ft.common.results_io import SCENARIO, read_table, write_table
from gemini_ft.scenarios.loader import to_toml
from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.adaptive import DEFAULT_MAX_SEEDS, AdaptivePolicy, AdaptiveReport
from gemini_ft.sim.engine import RunResult, simulate
from gemini_ft.sim.records import FAILURE_COLUMNS, KEY_COLUMNS
from gemini_ft.sim.seed_means import COLUMNS, seed_means

SUMMARY_FILE = "summary.parquet"
FAILURES_FILE = "failures.parquet"


@dataclass
class Results:
    """Summary rows (one per run) and failure records (one per failure event)."""

    summary: pd.DataFrame
    failures: pd.DataFrame
    scenario_toml: str | None = None
    adaptive: AdaptiveReport | None = None
    """With `target_ci`: seeds and half-width per point, and whether the seed cap was hit."""

    def __repr__(self) -> str:
        return f"Results({len(self.summary)} runs, {len(self.failures)} failures)"


def run_result_frames(result: RunResult, extra: dict[str, object] | None = None) -> tuple[dict, list[dict]]:
    """The summary row and failure rows of one run, each tagged with `extra` columns (swept values)."""
    extra = extra or {}
    row = result.summary.row()
    summary = {**row, **extra}
    keys = {k: row[k] for k in KEY_COLUMNS}
    failures = [{**keys, **extra, **record.row()} for record in result.failures]
    return summary, failures


def run_seeds(
    scenario: Scenario,
    seeds: Iterable[int] | None = None,
    *,
    target_ci: float | None = None,
    max_seeds: int = DEFAULT_MAX_SEEDS,
    seed_batch: int | None = None,
    progress: bool = False,
) -> Results:
    """Simulate `scenario` once per seed (default: run.base_seed + 0 … run.seeds − 1).

    With `target_ci`, seeds run.base_seed + n, … are added in batches of `seed_batch` (None: as many
    as so far) until the 95% half-width of the effective ratio is at most `target_ci` or `max_seeds`
    seeds ran; `Results.adaptive` says which. `progress`: a bar on stderr once the seeds take over a
    second.
    """
    if seeds is None:
        seeds = range(scenario.run.base_seed, scenario.run.base_seed + scenario.run.seeds)
    seeds = list(seeds)
    if not seeds:
        raise UserError("seeds", seeds, "at least one seed")
    rows, failures = [], []
    policy = None if target_ci is None else AdaptivePolicy(target_ci, max_seeds, seed_batch)
    report = None if policy is None else AdaptiveReport(policy.target_ci, policy.max_seeds)
    # Shown only once the seeds take over a second; its total grows with each adaptive round.
    with tqdm(total=0, desc="simulate", unit="seed", delay=1.0, disable=not progress) as bar:
        while seeds:
            bar.total += len(seeds)
            for seed in seeds:
                row, records = run_result_frames(simulate(scenario, seed))
                rows.append(row)
                failures.extend(records)
                bar.update()
            if policy is None or report is None:
                break
            values = [row["effective_ratio"] for row in rows]
            report.rounds += 1
            report.record({scenario.name: values})
            start = max(row["seed"] for row in rows) + 1
            seeds = list(range(start, start + policy.more_seeds(values)))
    return Results(pd.DataFrame(rows), failures_frame(failures), to_toml(scenario), report)


def failures_frame(records: list[dict]) -> pd.DataFrame:
    """Failure records as a DataFrame, with the expected columns even when there were no failures."""
    if records:
        return pd.DataFrame(records)
    return pd.DataFrame(columns=[*KEY_COLUMNS, *FAILURE_COLUMNS])


def scenario_metadata(scenario_toml: str | None) -> dict[str, str]:
    return {} if scenario_toml is None else {SCENARIO: scenario_toml}


def write_results(results: Results, path: Path) -> list[Path]:
    """`X.parquet` gets the summary and `X.failures.parquet` the failure records; a directory gets
    `summary.parquet` and `failures.parquet`."""
    summary_path, failures_path = result_paths(path)
    metadata = scenario_metadata(results.scenario_toml)
    return [
        write_table(results.failures, failures_path, metadata),
        write_table(results.summary, summary_path, metadata),
    ]


def result_paths(path: Path) -> tuple[Path, Path]:
    if path.suffix == ".parquet":
        return path, path.with_name(path.stem + ".failures.parquet")
    return path / SUMMARY_FILE, path / FAILURES_FILE


def read_results(path: str | Path) -> Results:
    """Read what `write_results` (or a sweep) wrote: a `.parquet` file or a sweep directory."""
    path = Path(path)
    if not path.exists():
        raise UserError("RESULTS", str(path), "no such file or directory")
    summary_path, failures_path = result_paths(path)
    if not summary_path.is_file():
        raise UserError(
            "RESULTS", str(path), f"no {summary_path.name} there; expected a simulate or sweep output"
        )
    summary = read_table(summary_path)
    failures = read_table(failures_path).frame if failures_path.is_file() else failures_frame([])
    return Results(summary.frame, failures, summary.scenario_toml)


def summary_table(summary: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean over seeds per group, with the 95% interval of the effective training time ratio.

    `ratio_ci95` is the Student-t half-width (what `--target-ci` is compared with); `ratio_ci_low` and
    `ratio_ci_high` are the interval's bounds clipped to [0, 1] (`gemini_ft.sim.intervals.mean_ci`). Each row is
    `gemini_ft.sim.seed_means.seed_means` of its group, which `gemini-ft simulate` also prints without pandas.
    """
    by = by or ["scenario", "policy"]
    rows = []
    for key, group in summary.groupby(by, sort=False, dropna=False):
        values = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, values, strict=True)), **seed_means(group.to_dict("records"))})
    return pd.DataFrame(rows, columns=[*by, *COLUMNS]).set_index(by)
