"""Fits from synthetic measurement files recover the parameters they were drawn from."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_measurements import Truth, synthetic_run

from calibration.fit import GBPS, calibrate
from calibration.measurements import load_runs
from scenarios.errors import UserError
from scenarios.loader import load_scenario

BASE = load_scenario("gpt2-100b-p4d")


def _by_path(calibration):
    return {p.path: p for p in calibration.parameters}


def test_pooled_sizes_recover_alpha_bandwidths_and_constants(sized_runs: list[Path]) -> None:
    truth = Truth()
    params = _by_path(calibrate(load_runs(sized_runs), BASE))
    alpha, nic = params["interleave.alpha_s"], params["cluster.nic_bandwidth_gbps"]
    assert alpha.fitted and alpha.estimate.covers(truth.alpha_s)
    # Two ranks per machine replicate at once: the machine's NIC carries twice one rank's rate.
    assert nic.fitted and nic.estimate.covers(2 * truth.rank_bytes_per_s / GBPS)
    assert params["storage.latency_s"].estimate.covers(truth.storage_latency_s)
    assert params["storage.bandwidth_gbps"].estimate.covers(truth.storage_bytes_per_s / GBPS)
    # Means of ≥ 12 points with 2% noise: their error is well under 1%, so 3% is a safe tolerance.
    assert params["interleave.gpu_to_cpu_gbps"].value == pytest.approx(
        truth.snapshot_bytes_per_s / GBPS, rel=0.03
    )
    assert params["recovery.detection_s"].value == pytest.approx(truth.detect_s, rel=0.03)
    assert params["recovery.warmup_s"].value == pytest.approx(truth.restart_s, rel=0.03)
    assert params["model.iteration_time_s"].value == pytest.approx(truth.iteration_s, rel=0.03)
    # Shape and size come from the first file: 2 machines × 2 ranks of 1 MiB at 12 bytes/parameter.
    assert params["cluster.gpus_per_machine"].value == 2
    assert params["model.parameters"].value == pytest.approx(4 * 2**20 / 12)
    assert params["recovery.serialization_s"].value == 0.0


def test_one_size_keeps_alpha_and_says_so(tmp_path: Path, rng: np.random.Generator) -> None:
    truth = Truth(alpha_s=BASE.interleave.alpha_s)
    run = synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=8 * 2**20, truth=truth, fail_step=None)
    params = _by_path(calibrate(load_runs([run]), BASE))
    alpha = params["interleave.alpha_s"]
    assert not alpha.fitted and alpha.value == BASE.interleave.alpha_s and "kept" in alpha.how
    assert params["cluster.nic_bandwidth_gbps"].estimate.covers(truth.rank_bytes_per_s / GBPS)
    assert not params["storage.latency_s"].fitted
    detection = params["recovery.detection_s"]  # no failure in the run
    assert not detection.fitted and detection.value == BASE.recovery.detection_s


def test_no_snapshots_is_a_user_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=2**20)
    table = pq.read_table(path)
    frame = table.to_pandas()
    kept = pa.Table.from_pandas(frame[frame["event"] != "snapshot"], preserve_index=False)
    pq.write_table(kept.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(UserError, match="no snapshot events"):
        calibrate(load_runs([path]), BASE)
