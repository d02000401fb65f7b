"""The simulator's commands start numpy with one OpenBLAS thread unless the user set a number; realrun
keeps the environment it was given (its torchrun children inherit it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")

# Runs the command line in a fresh process (numpy not yet loaded, as for a user), then reports what the
# command left: the variable and the process's threads (OpenBLAS's pool, if any, is still alive).
DRIVER = """
import os, sys
from gemini_ft.cli import main
status = main(sys.argv[1:])
print(status, os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")), "numpy" in sys.modules)
"""
SIMULATE = ["simulate", "gpt2-100b-p4d", "--seeds", "1", "--set", "run.duration_days=3"]


def run_cli(args: list[str], openblas: str | None) -> tuple[int, str | None, int, bool]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if openblas is not None:
        env["OPENBLAS_NUM_THREADS"] = openblas
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, text=True, check=True
    ).stdout
    status, value, threads, numpy_loaded = out.splitlines()[-1].split()
    return int(status), None if value == "None" else value, int(threads), numpy_loaded == "True"


def test_simulate_starts_numpy_with_one_blas_thread() -> None:
    status, value, threads, numpy_loaded = run_cli(SIMULATE, openblas=None)
    assert (status, value, numpy_loaded) == (0, "1", True)
    assert threads == 1  # no OpenBLAS pool beside the main thread


def test_simulate_keeps_the_users_blas_threads() -> None:
    status, value, threads, _ = run_cli(SIMULATE, openblas="2")
    assert (status, value) == (0, "2")
    if len(os.sched_getaffinity(0)) > 1:  # OpenBLAS got the user's 2 (it caps at the cores it has)
        assert threads == 2


def test_realrun_leaves_the_environment_alone() -> None:
    status, value, _, _ = run_cli(["realrun", "--help"], openblas=None)
    assert (status, value) == (0, None)
