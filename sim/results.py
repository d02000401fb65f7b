"""Simulation results as DataFrames and Parquet files that carry the scenario that made them.

`Results` holds two tables: `summary` (one row per run) and `failures` (one row per failure event).
Files are written atomically (a temporary file renamed into place), so a crash never leaves a
half-written result; each carries the resolved scenario as TOML and the package version in its
Parquet schema metadata (`gemini_ft.scenario`, `gemini_ft.version`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gemini_ft import __version__
from scenarios.errors import UserError
from scenarios.loader import to_toml
from scenarios.schema import Scenario
from sim.engine import RunResult, simulate

SCENARIO_KEY = b"gemini_ft.scenario"
VERSION_KEY = b"gemini_ft.version"
SUMMARY_FILE = "summary.parquet"
FAILURES_FILE = "failures.parquet"


@dataclass
class Results:
    """Summary rows (one per run) and failure records (one per failure event)."""

    summary: pd.DataFrame
    failures: pd.DataFrame
    scenario_toml: str | None = None


def run_result_frames(result: RunResult, extra: dict[str, object] | None = None) -> tuple[dict, list[dict]]:
    """The summary row and failure rows of one run, each tagged with `extra` columns (swept values)."""
    extra = extra or {}
    summary = {**result.summary, **extra}
    keys = {k: result.summary[k] for k in ("scenario", "seed", "policy")}
    failures = [{**keys, **extra, **record} for record in result.failures]
    return summary, failures


def run_seeds(scenario: Scenario, seeds: Iterable[int] | None = None) -> Results:
    """Simulate `scenario` once per seed (default: run.base_seed + 0 … run.seeds − 1)."""
    if seeds is None:
        seeds = range(scenario.run.base_seed, scenario.run.base_seed + scenario.run.seeds)
    rows, failures = [], []
    for seed in seeds:
        row, records = run_result_frames(simulate(scenario, seed))
        rows.append(row)
        failures.extend(records)
    return Results(pd.DataFrame(rows), failures_frame(failures), to_toml(scenario))


def failures_frame(records: list[dict]) -> pd.DataFrame:
    """Failure records as a DataFrame, with the expected columns even when there were no failures."""
    if records:
        return pd.DataFrame(records)
    columns = ["scenario", "seed", "policy", "time_s", "machines", "machine_ids", "type", "simultaneous",
               "recovered_from", "recovery_completed", "lost_progress_s", "detection_s", "replacement_s", "serialization_s",
               "retrieval_s", "warmup_s", "wasted_s"]  # fmt: skip
    return pd.DataFrame(columns=columns)


def write_table(frame: pd.DataFrame, path: Path, scenario_toml: str | None) -> Path:
    """Write one Parquet file atomically with the scenario and version in its metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[VERSION_KEY] = __version__.encode()
    if scenario_toml is not None:
        metadata[SCENARIO_KEY] = scenario_toml.encode()
    table = table.replace_schema_metadata(metadata)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def write_results(results: Results, path: Path) -> list[Path]:
    """`X.parquet` gets the summary and `X.failures.parquet` the failure records; a directory gets
    `summary.parquet` and `failures.parquet`."""
    summary_path, failures_path = result_paths(path)
    return [
        write_table(results.failures, failures_path, results.scenario_toml),
        write_table(results.summary, summary_path, results.scenario_toml),
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
    summary, scenario_toml = read_table(summary_path)
    failures = read_table(failures_path)[0] if failures_path.is_file() else failures_frame([])
    return Results(summary, failures, scenario_toml)


def read_table(path: Path) -> tuple[pd.DataFrame, str | None]:
    """A Parquet table and the scenario TOML stored with it (None if absent)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError("RESULTS", str(path), f"not a readable Parquet file ({exc})") from None
    metadata = table.schema.metadata or {}
    scenario = metadata.get(SCENARIO_KEY)
    return table.to_pandas(), scenario.decode() if scenario else None


def summary_table(summary: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean over seeds per group, with a 95% interval half-width for the effective training time ratio."""
    by = by or ["scenario", "policy"]
    grouped = summary.groupby(by, sort=False, dropna=False)
    table = grouped.agg(
        seeds=("seed", "count"),
        ratio=("effective_ratio", "mean"),
        ratio_sd=("effective_ratio", "std"),
        wasted_h=("wasted_s", "mean"),
        failures=("failures", "mean"),
        from_cpu_memory=("fraction_from_cpu_memory", "mean"),
    )
    # Normal-approximation interval of the mean over seeds (t would be wider for very few seeds).
    table["ratio_ci95"] = 1.96 * table.pop("ratio_sd").fillna(0.0) / table["seeds"] ** 0.5
    table["wasted_h"] /= 3600.0
    with_failures = summary[summary["failures"] > 0]
    per_failure = (with_failures["wasted_s"] - with_failures["wasted_checkpoint_s"]) / with_failures[
        "failures"
    ]
    table["wasted_per_failure_min"] = (
        per_failure.groupby([with_failures[c] for c in by], sort=False).mean() / 60.0
    )
    return table[
        ["seeds", "ratio", "ratio_ci95", "wasted_h", "failures", "wasted_per_failure_min", "from_cpu_memory"]
    ]
