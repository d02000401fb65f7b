"""A real run shared by the launcher's and the tracking tests: each real run costs CI tens of seconds.

`failed_run`: two machines, a tiny GPT, six steps, a software failure of rank 1 at step 3 (every
rank resumes step 2 from local memory) and a hardware failure of machine 1 at step 5 (rank 0 resumes
step 4 locally, rank 1 fetches it from its peer), tracked by the launcher to W&B (TensorBoard when
wandb is missing). On CPU (`device="cpu"`), as every real run of the tests: recovery is
device-independent, and on a one-GPU host `auto` would refuse two emulated machines (one GPU per rank);
the CUDA paths have their own tests (`-m cuda`) and `benchmarks/gpu_check.py`.
"""

import importlib.util
import socket
import subprocess
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest

from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.measurements import read_events
from gemini_ft.realrun.testbed.launcher import launch

FAILURES = ("sw@step=3:rank=1", "hw@step=5:machine=1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FailedRun(NamedTuple):
    run_dir: Path
    track: str  # the tracker the launcher used
    job: Path  # that tracker's job directory
    events: pd.DataFrame  # rank 0's
    agent_environments: list[dict[str, str]]  # what each torchrun agent was started with, in order


@pytest.fixture(scope="session")
def failed_run(tmp_path_factory) -> FailedRun:
    """The run, its tracking, rank 0's events and its agents' environments.

    Same shape and settings as tests/realrun/testbed/test_launcher.py's BASE, so its final parameters
    must equal that module's uninterrupted reference run.
    """
    track = "wandb" if importlib.util.find_spec("wandb") else "tensorboard"
    pytest.importorskip(track)
    out = tmp_path_factory.mktemp("failed-run")
    cfg = RealRunConfig(
        machines=2, replicas=2, steps=6, persist_every=3, chunk_mib=0.05, disk_baseline=False,
        failures=FAILURES, out=out, port=_free_port(), track=track, time_limit_s=280, device="cpu",
    )  # fmt: skip
    environments: list[dict[str, str]] = []

    class RecordingPopen(subprocess.Popen):
        """Starts the process as Popen does, and keeps the environment of each torchrun agent."""

        def __init__(self, args, *rest, **options):
            if isinstance(args, list | tuple) and "gemini_ft.realrun.testbed.agent" in args:
                environments.append(dict(options["env"]))
            super().__init__(args, *rest, **options)

    with pytest.MonkeyPatch.context() as env:
        for name, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"), ("WANDB_DIR", str(out))):
            env.setenv(name, value)
        env.setattr(subprocess, "Popen", RecordingPopen)
        result = launch(cfg)
    assert result.ok, (out / "logs" / "machine0.log").read_text()[-3000:]
    (job,) = list((out / "track").iterdir())  # one tracked run for the whole job
    events = read_events(out)
    return FailedRun(out, track, job, events[events["rank"] == 0], environments)
