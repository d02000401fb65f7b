"""`gemini-ft sweep` end to end: a pool never larger than the machine, and --track that tracks."""

from __future__ import annotations

import concurrent.futures
import os

from gemini_ft.cli import main
from gemini_ft.sim import sweep as sweep_module
from tracking_readers import tensorboard_hparams

SMALL = ["--seeds", "2", "--set", "run.duration_days=1", "--no-progress"]


def test_more_workers_than_cpus_run_one_per_cpu_and_say_so(capsys, monkeypatch):
    sizes: list[int] = []

    class RecordingPool(concurrent.futures.ProcessPoolExecutor):
        """The real pool, recording how many processes it was asked for."""

        def __init__(self, max_workers=None, **options):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers, **options)

    monkeypatch.setattr(sweep_module, "ProcessPoolExecutor", RecordingPool)
    assert main(["sweep", "gpt2-100b-p4d", *SMALL, "--workers", "100000"]) == 0
    cpus = len(os.sched_getaffinity(0))
    err = capsys.readouterr().err
    if cpus == 1:  # one CPU: the runs go in-process, no pool at all
        assert sizes == []
    else:
        assert sizes == [min(cpus, 24)]  # 12 grid points × 2 seeds
    size = min(cpus, 24)
    assert (
        err
        == f"gemini-ft: workers = 100000: running {size} worker processes, one per CPU this process may use\n"
    )


def test_a_pool_is_never_larger_than_its_runs():
    assert sweep_module.pool_size(64, 3) == min(3, len(os.sched_getaffinity(0)))
    assert sweep_module.pool_size(1, 100) == 1


def test_track_records_one_entry_per_grid_point(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(
        ["sweep", "gpt2-100b-p4d", *SMALL, "--workers", "1", "--out", str(out), "--track", "tensorboard"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"tracked 12 grid points with tensorboard in {out / 'track'}" in printed  # 4 policies × 3 rates
    points = sorted(p.name for p in (out / "track").iterdir())
    assert points == [f"point-{i:05d}" for i in range(12)]
    values, metrics = tensorboard_hparams(out / "track" / "point-00001")
    assert values["failures.rate_per_machine_per_day"] == 0.015 and values["seeds"] == 2
    assert "sweep/effective_ratio" in metrics


def test_track_dir_is_refused_before_any_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "gpt2-100b-p4d", *SMALL, "--out", str(out), "--track", "tensorboard",
                 "--track-dir", "/proc/tracking"])  # fmt: skip
    assert code == 2
    assert "--track-dir = '/proc/tracking'" in capsys.readouterr().err
    assert not out.exists()  # nothing ran, nothing was written
