"""The simulator's commands start without OpenBLAS's thread pool and pydantic's plugin search unless the
user set the variables; realrun keeps the environment it was given (its torchrun children inherit it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")

VARIABLES = ("OPENBLAS_NUM_THREADS", "PYDANTIC_DISABLE_PLUGINS")
# Runs the command line in a fresh process (numpy not yet loaded, as for a user), then reports what the
# command left: the variables and the process's threads (OpenBLAS's pool, if any, is still alive).
DRIVER = f"""
import json, os, sys
from gemini_ft.cli import main
status = main(sys.argv[1:])
print(json.dumps({{"status": status, "threads": len(os.listdir("/proc/self/task")),
                  "numpy": "numpy" in sys.modules, **{{v: os.environ.get(v) for v in {VARIABLES!r}}}}}))
"""
SIMULATE = ["simulate", "gpt2-100b-p4d", "--seeds", "1", "--set", "run.duration_days=3"]


def run_cli(args: list[str], **variables: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(variables)
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def test_simulate_starts_numpy_with_one_blas_thread_and_no_pydantic_plugins() -> None:
    seen = run_cli(SIMULATE)
    assert (seen["status"], seen["numpy"]) == (0, True)
    assert (seen["OPENBLAS_NUM_THREADS"], seen["PYDANTIC_DISABLE_PLUGINS"]) == ("1", "__all__")
    assert seen["threads"] == 1  # no OpenBLAS pool beside the main thread


def test_simulate_keeps_the_users_values() -> None:
    seen = run_cli(SIMULATE, OPENBLAS_NUM_THREADS="2", PYDANTIC_DISABLE_PLUGINS="")
    assert (seen["status"], seen["OPENBLAS_NUM_THREADS"], seen["PYDANTIC_DISABLE_PLUGINS"]) == (0, "2", "")
    if len(os.sched_getaffinity(0)) > 1:  # OpenBLAS got the user's 2 (it caps at the cores it has)
        assert seen["threads"] == 2


def test_realrun_leaves_the_environment_alone() -> None:
    seen = run_cli(["realrun", "--help"])
    assert seen["status"] == 0
    assert (seen["OPENBLAS_NUM_THREADS"], seen["PYDANTIC_DISABLE_PLUGINS"]) == (None, None)
