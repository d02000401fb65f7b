"""Real runs tracked in TensorBoard and W&B by the launcher, read back with the tools' own readers.

One real run feeds both trackers' checks (`failed_run` in tests/realrun/conftest.py, which the
launcher's tests also check for recovery): two machines, a tiny GPT, six steps, a software failure of
rank 1 at step 3 (resume from local memory at 2) and a hardware failure of machine 1 at step 5
(rank 0 local, rank 1 from its peer, at 4). The launcher tracks it live to W&B (TensorBoard when
wandb is missing); the other tracker gets the same run through `track_finished_run`.
"""

import pandas as pd
import pytest

from gemini_ft.common import tracking
from gemini_ft.common.errors import UserError
from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.measurements import EventLog
from gemini_ft.realrun.testbed.tracking import JobTracker, track_finished_run
from tracking_readers import tensorboard_hparams, tensorboard_scalars, wandb_history, wandb_runs

FAILURES = ("sw@step=3:rank=1", "hw@step=5:machine=1")  # the shared run's (tests/realrun/conftest.py)
PER_STEP = ("train/loss", "train/iteration_s")
PER_CHECKPOINT = ("ckpt/snapshot_s", "ckpt/snapshot_gbps", "ckpt/commit_s", "ckpt/replicate_s",
                  "ckpt/replicate_gbps", "ckpt/replica_received_s", "ckpt/replica_ok")  # fmt: skip


def _count(events: pd.DataFrame, event: str, source: str | None = None) -> int:
    rows = events[events.event == event]
    return len(rows if source is None else rows[rows.source == source])


def test_config_refuses_a_missing_tracker_and_online_without_wandb(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="track_online"):
        RealRunConfig(track="tensorboard", track_online=True)
    monkeypatch.setitem(tracking._PACKAGES, "tensorboard", "gemini_ft_no_such_package")
    with pytest.raises(UserError, match=r"track = 'tensorboard': needs the gemini_ft_no_such_package"):
        RealRunConfig(track="tensorboard")


def _check_job_view(points: dict[str, list[tuple[int, float]]], events: pd.DataFrame) -> None:
    """Every metric of the failed run with the right number of points, at the right steps."""
    steps = {tag: sorted(step for step, _ in series) for tag, series in points.items()}
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
    values = {tag: dict(series) for tag, series in points.items()}
    assert values["failure/resumed_from_step"] == {3: 2.0, 5: 4.0}
    assert values["recovery/shards_local"] == {3: 2.0, 5: 1.0} and values["recovery/shards_peer"] == {5: 1.0}
    assert values["failure/lost_steps"] == {3: 0.0, 5: 0.0}
    losses = events[events.event.isin(["step", "first_step"])].set_index("step").loss
    assert values["train/loss"] == pytest.approx(losses.to_dict())
    for tag in ("failure/detect_s", "recovery/time_to_first_step_s"):
        assert all(v > 0 for v in values[tag].values()), tag
    for step in (3, 5):  # the failure to the end of the first step covers detection and restart
        assert values["recovery/time_to_first_step_s"][step] > (
            values["failure/detect_s"][step] + values["failure/restart_s"][step]
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tensorboard_shows_steps_checkpoints_and_both_failures(failed_run, tmp_path):
    pytest.importorskip("tensorboard")
    run_dir, track, job, events, _ = failed_run
    if track != "tensorboard":
        job = track_finished_run(run_dir, "tensorboard", tmp_path / "tensorboard")
    _check_job_view(tensorboard_scalars(job), events)
    hparams, metric_tags = tensorboard_hparams(job)
    assert hparams["failures"] == ",".join(FAILURES) and hparams["machines"] == 2
    assert hparams["track"] == track  # the run's own configuration
    assert {"train/loss", "train/iteration_s"} <= set(metric_tags)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wandb_offline_run_holds_every_step_checkpoint_and_both_failures(failed_run):
    pytest.importorskip("wandb")
    _, track, job, events, _ = failed_run
    assert track == "wandb"  # the launcher tracked it live, through both failures
    (run,) = wandb_runs(job)  # one W&B run for the whole job, every round of it
    history, config = wandb_history([run])
    _check_job_view(history, events)
    # The hyperparameters as TensorBoard has them (flattened: a list as comma-separated text).
    assert config["failures"] == ",".join(FAILURES) and config["machines"] == 2 and config["track"] == "wandb"


def test_closing_tracks_what_was_written_after_the_last_poll(tmp_path):
    # The launcher closes its tracker once the workers have ended; their last lines must not be lost.
    pytest.importorskip("tensorboard")
    cfg = RealRunConfig(out=tmp_path, steps=3, track="tensorboard")
    job = JobTracker(cfg, "job", 0.0, poll_s=3600)  # never polls on its own
    log = EventLog(tmp_path, "job", 0, 0, 0.0)
    for step in (1, 2, 3):
        log.log("step", step, duration_s=0.1, loss=4.0 - step)
    assert job.close()
    scalars = tensorboard_scalars(job.directory)
    assert scalars["train/loss"] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert [step for step, _ in scalars["train/iteration_s"]] == [1, 2, 3]
