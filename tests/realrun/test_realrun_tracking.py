"""Real runs tracked in TensorBoard and W&B, read back with the tools' own readers.

Two machines, a tiny GPT, six steps: a software failure of rank 1 at step 3 (resume from local
memory at 2) and a hardware failure of machine 1 at step 5 (rank 0 local, rank 1 from its peer, at 4).
"""

import socket
from pathlib import Path

import pandas as pd
import pytest
from tracking_readers import tensorboard_hparams, tensorboard_scalars, wandb_history, wandb_runs

from realrun.config import RealRunConfig
from realrun.measurements import read_events
from realrun.testbed.launcher import launch
from scenarios.errors import UserError
from sim import tracking

FAILURES = ("sw@step=3:rank=1", "hw@step=5:machine=1")
PER_STEP = ("train/loss", "train/iteration_s")
PER_CHECKPOINT = ("ckpt/snapshot_s", "ckpt/snapshot_gbps", "ckpt/commit_s", "ckpt/replicate_s",
                  "ckpt/replicate_gbps", "ckpt/replica_received_s", "ckpt/replica_ok")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(out: Path, track: str, failures: tuple[str, ...]) -> tuple[Path, pd.DataFrame]:
    cfg = RealRunConfig(
        machines=2, replicas=2, steps=6, persist_every=3, chunk_mib=0.05, disk_baseline=False,
        failures=failures, out=out, port=_free_port(), track=track, time_limit_s=280,
    )  # fmt: skip
    result = launch(cfg)
    assert result.ok, (out / "logs" / "machine0.log").read_text()[-3000:]
    (job,) = list((out / "track").iterdir())
    events = read_events(out)
    return job, events[events["rank"] == 0]


def _count(events: pd.DataFrame, event: str, source: str | None = None) -> int:
    rows = events[events.event == event]
    return len(rows if source is None else rows[rows.source == source])


def test_config_refuses_a_missing_tracker_and_online_without_wandb(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="track_online"):
        RealRunConfig(track="tensorboard", track_online=True)
    monkeypatch.setitem(tracking._PACKAGES, "tensorboard", "gemini_ft_no_such_package")
    with pytest.raises(UserError, match=r"track = 'tensorboard': needs the gemini_ft_no_such_package"):
        RealRunConfig(track="tensorboard")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tensorboard_shows_steps_checkpoints_and_both_failures(tmp_path):
    pytest.importorskip("tensorboard")
    job, events = _run(tmp_path, "tensorboard", FAILURES)
    scalars = tensorboard_scalars(job)
    steps = {tag: sorted(step for step, _ in points) for tag, points in scalars.items()}
    for tag in PER_STEP:
        assert steps[tag] == [1, 2, 3, 4, 5, 6], tag  # no step is lost or redone
    # Per checkpoint: exactly what rank 0 measured (its events file), at least one per step.
    assert len(steps["ckpt/snapshot_s"]) == _count(events, "snapshot") >= 6
    assert len(steps["ckpt/commit_s"]) == _count(events, "commit", "local")
    assert len(steps["ckpt/replicate_s"]) == _count(events, "replicate")
    assert len(steps["ckpt/replica_received_s"]) == _count(events, "commit", "peer")
    for tag in PER_CHECKPOINT:
        assert len(steps[tag]) == len(steps["ckpt/snapshot_s"]), tag
    assert steps["ckpt/persist_s"] == [3, 6] and len(steps["ckpt/persist_gbps"]) == 2
    # Failures: a marker at the step each struck, the recovery at the first step after it.
    assert steps["marker/software_failure"] == [3] and steps["marker/hardware_failure"] == [5]
    for tag in ("marker/recovery", "failure/detect_s", "failure/restart_s", "failure/lost_steps",
                "failure/resumed_from_step", "recovery/first_step_s", "recovery/time_to_first_step_s",
                "recovery/retrieve_local_s", "recovery/retrieve_local_gbps", "recovery/shards_local"):  # fmt: skip
        assert steps[tag] == [3, 5], tag
    assert steps["recovery/retrieve_peer_s"] == [5] and steps["recovery/shards_peer"] == [5]
    assert "recovery/retrieve_persistent_s" not in steps
    values = {tag: dict(points) for tag, points in scalars.items()}
    assert values["failure/resumed_from_step"] == {3: 2.0, 5: 4.0}
    assert values["recovery/shards_local"] == {3: 2.0, 5: 1.0} and values["recovery/shards_peer"] == {5: 1.0}
    assert values["failure/lost_steps"] == {3: 0.0, 5: 0.0}
    assert all(
        v > 0 for tag in ("failure/detect_s", "recovery/time_to_first_step_s") for v in values[tag].values()
    )
    hparams, metric_tags = tensorboard_hparams(job)
    assert (
        hparams["failures"] == ",".join(FAILURES)
        and hparams["machines"] == 2
        and hparams["track"] == "tensorboard"
    )
    assert {"train/loss", "train/iteration_s"} <= set(metric_tags)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wandb_offline_run_holds_every_step_and_checkpoint(tmp_path, monkeypatch):
    # Without failures: a worker stopped by a failure takes W&B's service process with it, and
    # that round's records with it (see docs-tracking.md); TensorBoard's files keep them.
    pytest.importorskip("wandb")
    for name, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"), ("WANDB_DIR", str(tmp_path))):
        monkeypatch.setenv(name, value)
    job, events = _run(tmp_path, "wandb", ())
    (run,) = wandb_runs(job)
    history, config = wandb_history([run])
    steps = {tag: sorted(step for step, _ in points) for tag, points in history.items()}
    for tag in PER_STEP:
        assert steps[tag] == [1, 2, 3, 4, 5, 6], tag
    for tag in PER_CHECKPOINT:
        assert len(steps[tag]) == _count(events, "snapshot") == 6, tag
    assert steps["ckpt/persist_s"] == [3, 6]
    assert config["track"] == "wandb" and config["machines"] == 2 and config["steps"] == 6
