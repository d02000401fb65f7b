"""Sweeps: grid × seeds, resume, interruption safety, process pool and Dask give the same results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from child_signals import sigint_default
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.results import read_results
from gemini_ft.sim.sweep import PARTS_DIR, run_sweep

KEYS = ["point", "seed"]


def small_sweep(**overrides: object) -> object:
    return load_scenario(
        "gpt2-100b-p4d",
        {
            "run.duration_days": 5,
            "run.seeds": 2,
            "sweep": {
                "checkpoint.policy": ["gemini", "strawman"],
                "failures.rate_per_machine_per_day": [0.05, 0.2],
            },
            **overrides,
        },
    )


def test_sweep_grid_columns_and_files(tmp_path: Path) -> None:
    results = run_sweep(small_sweep(), tmp_path, progress=False)
    summary = results.summary
    assert len(summary) == 4 * 2
    assert set(summary["checkpoint.policy"]) == {"gemini", "strawman"}
    assert (summary["policy"] == summary["checkpoint.policy"]).all()
    assert (summary["failure_rate_per_machine_per_day"] == summary["failures.rate_per_machine_per_day"]).all()
    on_disk = read_results(tmp_path)
    pd.testing.assert_frame_equal(on_disk.summary, summary)
    assert len(on_disk.failures) == summary["failures"].sum()
    assert "[checkpoint]" in on_disk.scenario_toml


def test_rerun_resumes_and_skips_finished_runs(tmp_path: Path) -> None:
    first = run_sweep(small_sweep(), tmp_path, progress=False)
    parts = sorted((tmp_path / PARTS_DIR).glob("*.summary.parquet"))
    assert len(parts) == 8
    kept, removed = parts[0], parts[-1]
    kept_mtime = kept.stat().st_mtime_ns
    removed.unlink()
    second = run_sweep(small_sweep(), tmp_path, progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime  # finished runs are read back, not recomputed
    assert removed.exists()
    pd.testing.assert_frame_equal(first.summary, second.summary)


def test_other_scenario_in_same_directory_is_refused(tmp_path: Path) -> None:
    run_sweep(small_sweep(), tmp_path, progress=False)
    with pytest.raises(UserError, match="different scenario"):
        run_sweep(small_sweep(**{"cluster.machines": 32}), tmp_path, progress=False)


def test_process_pool_and_dask_match_in_process(tmp_path: Path) -> None:
    scenario = small_sweep()
    serial = run_sweep(scenario, progress=False).summary.sort_values(KEYS, ignore_index=True)
    pooled = run_sweep(scenario, workers=2, progress=False).summary.sort_values(KEYS, ignore_index=True)
    pd.testing.assert_frame_equal(serial, pooled)
    on_dask = run_sweep(scenario, tmp_path, workers=2, dask="local", progress=False)
    pd.testing.assert_frame_equal(serial, on_dask.summary.sort_values(KEYS, ignore_index=True))


def test_interrupted_sweep_leaves_only_whole_files_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "gemini_ft", "sweep", "gpt2-100b-p4d", "--workers", "1", "--no-progress",
               "--out", str(out), "--set", "cluster.machines=1024", "--set", "run.seeds=6"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_default
    )
    parts = out / PARTS_DIR
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(parts.glob("*.summary.parquet"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert stderr.decode().strip().splitlines()[-1] == "gemini-ft: interrupted"
    finished = list(parts.glob("*.parquet"))
    assert finished
    for path in finished:
        pq.read_table(path)  # every visible file is whole
    assert not (out / "summary.parquet").exists()
    resumed = subprocess.run(command, capture_output=True, timeout=300, env={**os.environ})
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert len(read_results(out).summary) == 12 * 6


def test_more_seeds_extend_a_sweep_directory(tmp_path: Path) -> None:
    first = run_sweep(small_sweep(), tmp_path, progress=False)
    parts = sorted((tmp_path / PARTS_DIR).glob("*.summary.parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    more = run_sweep(small_sweep(**{"run.seeds": 3}), tmp_path, progress=False)
    assert len(more.summary) == 12 and sorted(set(more.summary["seed"])) == [0, 1, 2]
    assert all(p.stat().st_mtime_ns == stamps[p] for p in parts)  # the first six runs were reused
    assert more.summary[more.summary["seed"] < 2].reset_index(drop=True).equals(first.summary)
    # Another scenario is still refused: its runs would not be comparable.
    with pytest.raises(UserError, match="different scenario"):
        run_sweep(small_sweep(**{"run.duration_days": 4}), tmp_path, progress=False)


def test_a_write_killed_midway_leaves_nothing_behind_after_resume(tmp_path: Path) -> None:
    run_sweep(small_sweep(), tmp_path, progress=False)
    stale = tmp_path / PARTS_DIR / ".point-00000-seed-0.summary.parquet.12345.tmp"
    stale.write_bytes(b"half a file")
    run_sweep(small_sweep(), tmp_path, progress=False)
    assert not stale.exists()


def test_an_override_of_a_swept_field_narrows_the_sweep() -> None:
    scenario = load_scenario("gpt2-100b-p4d", {"checkpoint.policy": "strawman"})
    assert "checkpoint.policy" not in scenario.sweep and scenario.checkpoint.policy == "strawman"
    assert scenario.sweep_points == 3  # the three failure rates remain


def test_pool_workers_die_with_the_sweep(tmp_path: Path) -> None:
    # The sweep's own process is killed with SIGKILL (no chance to shut its pool down).
    script = (
        "from gemini_ft.scenarios.loader import load_scenario\n"
        "from gemini_ft.sim.sweep import run_sweep\n"
        "s = load_scenario('llama3-405b', {'run.seeds': 50})\n"
        f"run_sweep(s, __import__('pathlib').Path({str(tmp_path)!r}), workers=2, progress=False)\n"
    )
    sweep = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    workers: list[int] = []
    while len(workers) < 2 and sweep.poll() is None:
        time.sleep(0.2)
        children = Path(f"/proc/{sweep.pid}/task/{sweep.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    assert len(workers) >= 2, "the pool never started"
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    for pid in workers:  # each must go; a leftover would keep running forever
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_adaptive_sweep_adds_seeds_until_the_target_or_the_cap(tmp_path: Path) -> None:
    from gemini_ft.sim.intervals import half_width

    scenario = small_sweep(**{"sweep": {"checkpoint.policy": ["gemini", "strawman"]}})
    results = run_sweep(scenario, tmp_path, progress=False, target_ci=0.004, max_seeds=6)
    report = results.adaptive
    assert report is not None and report.rounds >= 1
    per_point = results.summary.groupby("point")["effective_ratio"]
    for point, values in per_point:
        assert report.seeds[point] == len(values) >= 2
        width = half_width(values)
        assert width == pytest.approx(report.half_widths[point])
        assert width <= 0.004 or len(values) == 6
        assert (point in report.capped) == (width > 0.004)
    assert report.cap_hit == bool(report.capped)
    # Seeds are consecutive per point, and a rerun reads every run back.
    for _, seeds in results.summary.groupby("point")["seed"]:
        assert list(seeds) == list(range(len(seeds)))
    again = run_sweep(scenario, tmp_path, progress=False, target_ci=0.004, max_seeds=6)
    pd.testing.assert_frame_equal(again.summary, results.summary)


def test_adaptive_run_seeds_reports_the_cap() -> None:
    from gemini_ft.sim.results import run_seeds

    scenario = small_sweep(**{"sweep": {}, "failures.rate_per_machine_per_day": 0.2})
    results = run_seeds(scenario, target_ci=1e-9, max_seeds=4, seed_batch=1)
    assert len(results.summary) == 4 and list(results.summary["seed"]) == [0, 1, 2, 3]
    assert results.adaptive is not None and results.adaptive.cap_hit and results.adaptive.rounds == 3
    assert "cap of 4 seeds" in results.adaptive.describe()
    loose = run_seeds(scenario, target_ci=0.5)
    assert len(loose.summary) == 2 and not loose.adaptive.cap_hit
    with pytest.raises(UserError, match="target_ci"):
        run_seeds(scenario, target_ci=0.0)


def test_a_users_mistake_in_a_worker_process_is_the_users_error(tmp_path: Path) -> None:
    # The trace is read where the run is simulated, in a worker: its one-line error must come back as
    # such (it broke the process pool when the exception could not be rebuilt).
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,machine,type\n10,0,software\n20,99,hardware\n")
    scenario = load_scenario(
        "gpt2-100b-p4d",
        {"failures.distribution": "trace", "failures.trace_file": str(trace), "run.duration_days": 1},
    )
    with pytest.raises(UserError, match=r"row 3 column machine = 99: must be an integer in \[0, 15\]"):
        run_sweep(scenario, workers=2, progress=False)
