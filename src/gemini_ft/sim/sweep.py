"""Sweeps: the `[sweep]` grid × seeds, in worker processes or on a Dask cluster, resumable.

Each run is one task (grid point, seed). Workers only compute; the calling process writes each
finished run at once as its own pair of Parquet part files (atomically), so an interrupted sweep
keeps every finished run and a re-run skips them. At the end the parts are gathered into
`summary.parquet` and `failures.parquet` beside them. A local pool (processes or a local Dask
cluster) gets at most one worker per run and per CPU this process may use, whatever was asked: each
worker holds a simulator, and more of them than CPUs only costs memory.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from gemini_ft.common.errors import UserError
from gemini_ft.common.results_io import TEMPORARY_SUFFIX, check_output_path, read_table, write_table
from gemini_ft.scenarios.loader import expand_sweep, from_toml_text, to_toml
from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.adaptive import DEFAULT_MAX_SEEDS, TARGET_METRIC, AdaptivePolicy, AdaptiveReport
from gemini_ft.sim.engine import simulate
from gemini_ft.sim.results import (
    FAILURES_FILE,
    SUMMARY_FILE,
    Results,
    failures_frame,
    run_result_frames,
    scenario_metadata,
)

PARTS_DIR = "parts"
log = logging.getLogger(__name__)


def pool_size(workers: int, tasks: int) -> int:
    """How many local worker processes serve `tasks` runs when `workers` were asked for: at most one per
    run and one per usable CPU (logged when the CPUs cap it)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    size = max(1, min(workers, tasks, cpus))
    if workers > cpus and tasks > cpus:
        log.warning(
            "workers = %d: running %d worker processes, one per CPU this process may use", workers, size
        )
    return size


@dataclass(frozen=True)
class Task:
    """One run of a sweep: grid point `point` (its swept values) with `seed`."""

    point: int
    values: dict[str, Any]
    scenario: Scenario
    seed: int

    @property
    def name(self) -> str:
        return f"point-{self.point:05d}-seed-{self.seed}"


def sweep_tasks(scenario: Scenario) -> list[Task]:
    seeds = range(scenario.run.base_seed, scenario.run.base_seed + scenario.run.seeds)
    return [
        Task(index, values, concrete, seed)
        for index, (values, concrete) in enumerate(expand_sweep(scenario))
        for seed in seeds
    ]


def run_task(task: Task) -> tuple[dict, list[dict]]:
    """Simulate one task; returns its summary row and failure rows (runs inside a worker)."""
    extra = {"point": task.point, **task.values}
    return run_result_frames(simulate(task.scenario, task.seed), extra)


def run_task_summary(task: Task) -> tuple[dict, list[dict]]:
    """`run_task` without the failure rows, for callers that read only the summary: a run's hundreds of
    failure rows cost more to build and send back from a worker than the run itself."""
    return {**simulate(task.scenario, task.seed).summary.row(), "point": task.point, **task.values}, []


def run_tasks(
    tasks: list[Task], workers: int = 1, dask: str | None = None, *, failures: bool = True
) -> Iterator[tuple[Task, dict, list[dict]]]:
    """Run any list of tasks (not only a grid's) with the sweep's executors; yields (task, summary row,
    failure rows, empty with `failures=False`) as each finishes. `gemini_ft.sim.advise` runs its candidates
    through it."""
    if workers < 1:
        raise UserError("workers", workers, "must be an integer ≥ 1")
    for task, (row, records) in _execute(tasks, workers, dask, run_task if failures else run_task_summary):
        yield task, row, records


def run_sweep(
    scenario: Scenario,
    out_dir: Path | None = None,
    workers: int = 1,
    dask: str | None = None,
    progress: bool = True,
    *,
    target_ci: float | None = None,
    max_seeds: int = DEFAULT_MAX_SEEDS,
    seed_batch: int | None = None,
) -> Results:
    """Run every (point, seed) of the sweep; with `out_dir`, write as they finish and resume.

    With `target_ci` (a half-width of the effective ratio's 95% interval), each point whose interval
    is wider after a round gets `seed_batch` more seeds (None: as many as it has), up to `max_seeds`;
    `Results.adaptive` reports seeds and half-widths per point and the points left at the cap. Its
    runs are part files like any other, so an interrupted adaptive sweep resumes too.
    """
    if workers < 1:
        raise UserError("workers", workers, "must be an integer ≥ 1")
    policy = None if target_ci is None else AdaptivePolicy(target_ci, max_seeds, seed_batch)
    tasks = sweep_tasks(scenario)
    scenario_toml = to_toml(scenario)
    if out_dir is not None:  # refused now, not after the first runs (the CLI has checked it already)
        check_output_path("out", out_dir, kind="dir")
    parts = out_dir / PARTS_DIR if out_dir is not None else None
    if parts is not None:
        _check_same_sweep(out_dir, scenario)
        _remove_stale_temporaries(out_dir)
    rows, failures = _run_tasks(tasks, parts, scenario_toml, workers, dask, progress)
    report = None
    if policy is not None:
        report = AdaptiveReport(policy.target_ci, policy.max_seeds)
        while True:
            values = _values_by_point(rows)
            report.rounds += 1
            report.record(values)
            more = _more_tasks(tasks, values, policy)
            if not more:
                break
            tasks.extend(more)
            new_rows, new_failures = _run_tasks(more, parts, scenario_toml, workers, dask, progress)
            rows.extend(new_rows)
            failures.extend(new_failures)
    rows.sort(key=lambda r: (int(r["point"]), int(r["seed"])))
    results = Results(pd.DataFrame(rows), failures_frame(failures), scenario_toml, report)
    if not results.failures.empty:
        results.failures = results.failures.sort_values(
            ["point", "seed", "time_s"], kind="stable", ignore_index=True
        )
    if out_dir is not None:
        metadata = scenario_metadata(scenario_toml)
        write_table(results.failures, out_dir / FAILURES_FILE, metadata)
        write_table(results.summary, out_dir / SUMMARY_FILE, metadata)
    return results


def _values_by_point(rows: list[dict]) -> dict[int, list[float]]:
    values: dict[int, list[float]] = {}
    for row in rows:
        values.setdefault(int(row["point"]), []).append(float(row[TARGET_METRIC]))
    return values


def _more_tasks(tasks: list[Task], values: dict[int, list[float]], policy: AdaptivePolicy) -> list[Task]:
    """The next batch of seeds of every point whose interval is still too wide."""
    last: dict[int, Task] = {}
    for task in tasks:
        if task.point not in last or task.seed > last[task.point].seed:
            last[task.point] = task
    more = []
    for point, task in last.items():
        for offset in range(1, policy.more_seeds(values.get(point, [])) + 1):
            more.append(Task(point, task.values, task.scenario, task.seed + offset))
    return more


def _run_tasks(
    tasks: list[Task], parts: Path | None, scenario_toml: str, workers: int, dask: str | None, progress: bool
) -> tuple[list[dict], list[dict]]:
    """Run `tasks` (those with a part file are read back, not rerun); rows and failure rows."""
    rows: list[dict] = []
    failures: list[dict] = []
    todo = []
    for task in tasks:
        done = _read_part(parts, task) if parts is not None else None
        if done is None:
            todo.append(task)
        else:
            rows.extend(done[0])
            failures.extend(done[1])
    bar = tqdm(
        total=len(tasks), initial=len(tasks) - len(todo), desc="sweep", unit="run", disable=not progress
    )
    try:
        for task, (row, records) in _execute(todo, workers, dask):
            if parts is not None:
                _write_part(parts, task, row, records, scenario_toml)
            rows.append(row)
            failures.extend(records)
            bar.update()
    finally:
        bar.close()
    return rows, failures


def _execute(
    tasks: list[Task], workers: int, dask: str | None, function: Callable[[Task], Any] = run_task
) -> Iterator[tuple[Task, tuple[dict, list[dict]]]]:
    """Yield (task, function(task)) as runs finish: in-process, in a process pool, or on Dask."""
    if not tasks:
        return
    if dask is not None:
        yield from _execute_dask(tasks, workers, dask, function)
        return
    workers = pool_size(workers, len(tasks))
    if workers == 1:
        for task in tasks:
            yield task, function(task)
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            futures = {pool.submit(function, task): task for task in tasks}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def _execute_dask(
    tasks: list[Task], workers: int, address: str, function: Callable[[Task], Any]
) -> Iterator[tuple[Task, tuple[dict, list[dict]]]]:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise UserError("dask", address, "needs the dask extra: pip install 'gemini-ft[dask]'") from None
    cluster = (
        LocalCluster(n_workers=pool_size(workers, len(tasks)), threads_per_worker=1, dashboard_address=None)
        if address == "local"
        else None
    )
    try:
        client = Client(cluster if cluster is not None else address, timeout="10s")
    except (OSError, ValueError, TypeError) as exc:
        if cluster is not None:
            cluster.close()
        raise UserError("dask", address, f"cannot reach a Dask scheduler there ({exc})") from None
    try:
        futures = client.map(function, tasks, pure=False)
        by_key = {future.key: task for future, task in zip(futures, tasks, strict=True)}
        for future in dask_completed(futures):
            yield by_key[future.key], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _die_with_parent(parent: int) -> None:
    """Pool workers exit when the sweep's process dies, even by SIGKILL (Linux: PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _part_paths(parts: Path, task: Task) -> tuple[Path, Path]:
    return parts / f"{task.name}.summary.parquet", parts / f"{task.name}.failures.parquet"


def _write_part(parts: Path, task: Task, row: dict, records: list[dict], scenario_toml: str) -> None:
    # The summary part is written last: its presence marks the run as finished.
    summary_path, failures_path = _part_paths(parts, task)
    write_table(failures_frame(records), failures_path)
    write_table(pd.DataFrame([row]), summary_path, scenario_metadata(scenario_toml))


def _read_part(parts: Path, task: Task) -> tuple[list[dict], list[dict]] | None:
    summary_path, failures_path = _part_paths(parts, task)
    if not summary_path.is_file():
        return None
    summary = read_table(summary_path).frame
    failures = read_table(failures_path).frame
    return summary.to_dict("records"), failures.to_dict("records")


def _remove_stale_temporaries(out_dir: Path) -> None:
    """A write killed mid-way leaves a hidden temporary file; no finished run is ever in one."""
    for directory in (out_dir, out_dir / PARTS_DIR):
        for path in directory.glob(f".*{TEMPORARY_SUFFIX}"):
            path.unlink(missing_ok=True)


def _identity(scenario: Scenario) -> str:
    """What a sweep directory's runs depend on: the scenario, less how many seeds were asked for."""
    return to_toml(
        scenario.model_copy(update={"run": scenario.run.model_copy(update={"seeds": 1, "base_seed": 0})})
    )


def _check_same_sweep(out_dir: Path, scenario: Scenario) -> None:
    """Resuming into a directory made by a different scenario would mix results: refuse. The same
    scenario with other seeds extends it (each run's part file is named by its point and seed)."""
    marker = out_dir / "scenario.toml"
    if marker.is_file():
        try:
            previous = from_toml_text(marker.read_text())
        except UserError:
            previous = None
        if previous is None or _identity(previous) != _identity(scenario):
            raise UserError(
                "out",
                str(out_dir),
                "holds a sweep of a different scenario; choose another directory or delete it",
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = marker.with_name(f".scenario.toml.{os.getpid()}{TEMPORARY_SUFFIX}")
    temporary.write_text(to_toml(scenario))
    os.replace(temporary, marker)
