"""Fits from synthetic measurement files recover the parameters they were drawn from."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_measurements import Truth, synthetic_run

from gemini_ft.calibration.fit import GBPS, calibrate
from gemini_ft.calibration.measurements import load_runs
from gemini_ft.calibration.overlay import calibrated_scenario
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim import costs

BASE = load_scenario("gpt2-100b-p4d")


def _by_path(calibration):
    return {p.path: p for p in calibration.parameters}


def _near(estimate, truth: float) -> bool:
    """`truth` within twice the 95% interval's half-widths (≈ 4 standard errors): a test checks several
    intervals from one seed, and at 95% each, one in four seeds would miss somewhere."""
    return (
        estimate.value - 2 * (estimate.value - estimate.low)
        <= truth
        <= estimate.value + 2 * (estimate.high - estimate.value)
    )


def test_pooled_sizes_recover_latencies_bandwidths_and_constants(sized_runs: list[Path]) -> None:
    truth = Truth()
    params = _by_path(calibrate(load_runs(sized_runs), BASE))
    # The replication round's intercept is the simulator's per-transfer fixed cost, not a chunk's α.
    latency, rounds = params["checkpoint.transfer_latency_s"], params["checkpoint.replication_gbps"]
    assert latency.fitted and _near(latency.estimate, truth.transfer_latency_s)
    assert latency.value == latency.estimate.value
    # Two ranks per machine replicate at once: the machine carries twice one rank's rate.
    assert rounds.fitted and _near(rounds.estimate, 2 * truth.rank_bytes_per_s / GBPS)
    # These runs recover from local memory only: no fetch measures the NIC, so the base value stays.
    nic = params["cluster.nic_bandwidth_gbps"]
    assert not nic.fitted and nic.value == BASE.cluster.nic_bandwidth_gbps and nic.estimate is None
    assert "no peer fetches" in nic.how
    chunk = params["interleave.alpha_s"]
    assert not chunk.fitted and chunk.value == BASE.interleave.alpha_s and "not separable" in chunk.how
    assert "rounds of 1-4 chunk(s)" in chunk.how  # 1 and 16 MiB shards in the default 4 MiB chunks
    # Snapshot copies give the snapshot bandwidth; the local restores (one per run here, of three sizes)
    # their own fixed cost and bandwidth: a restore is a new process's first work, slower than a warm
    # snapshot. (The synthetic restores copy at the snapshots' rate.)
    copy_latency, copy_rate, restore_rate = (
        params["checkpoint.local_retrieval_latency_s"],
        params["interleave.gpu_to_cpu_gbps"],
        params["checkpoint.local_retrieval_gbps"],
    )
    assert copy_latency.fitted and "local retrievals" in copy_latency.how
    assert copy_latency.estimate.n == len(sized_runs)
    assert _near(copy_latency.estimate, truth.restore_latency_s)
    assert not _near(copy_latency.estimate, truth.copy_latency_s)
    assert copy_rate.fitted and _near(copy_rate.estimate, truth.snapshot_bytes_per_s / GBPS)
    assert restore_rate.fitted and "local retrievals" in restore_rate.how
    assert _near(restore_rate.estimate, truth.snapshot_bytes_per_s / GBPS)
    assert _near(params["storage.latency_s"].estimate, truth.storage_latency_s)
    assert _near(params["storage.bandwidth_gbps"].estimate, truth.storage_bytes_per_s / GBPS)
    assert params["recovery.detection_s"].value == pytest.approx(truth.detect_s, rel=0.03)
    # No hardware failure in these runs: a dead machine waits for its keep-alives to expire, on average
    # (2 − ½) intervals after it died (its last keep-alive came half an interval before, on average).
    keep_alive_s = load_runs(sized_runs)[0].config.keep_alive_s
    hardware = params["recovery.hardware_detection_s"]
    assert not hardware.fitted and "no hardware failure" in hardware.how
    assert hardware.value == pytest.approx(params["recovery.detection_s"].value + 1.5 * keep_alive_s)
    assert params["recovery.warmup_s"].value == pytest.approx(truth.restart_s, rel=0.03)
    assert params["model.iteration_time_s"].value == pytest.approx(truth.iteration_s, rel=0.03)
    # Shape and size come from the first file: 2 machines × 2 ranks of 1 MiB at 12 bytes/parameter.
    assert params["cluster.gpus_per_machine"].value == 2
    assert params["model.parameters"].value == pytest.approx(4 * 2**20 / 12)
    assert params["recovery.serialization_s"].value == 0.0


def test_one_size_keeps_the_latencies_and_says_so(tmp_path: Path, rng: np.random.Generator) -> None:
    base = load_scenario(
        "gpt2-100b-p4d", ["checkpoint.transfer_latency_s=0.003", "checkpoint.local_retrieval_latency_s=0.001"]
    )
    truth = Truth(transfer_latency_s=0.003, copy_latency_s=0.001)
    run = synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=8 * 2**20, truth=truth, fail_step=None)
    params = _by_path(calibrate(load_runs([run]), base))
    for path, kept in [
        ("checkpoint.transfer_latency_s", 0.003),
        ("checkpoint.local_retrieval_latency_s", 0.001),
    ]:
        latency = params[path]
        assert not latency.fitted and latency.value == kept and "kept" in latency.how
    # No restore at all: a restore copies at the snapshots' rate (the field stays None).
    restore_rate = params["checkpoint.local_retrieval_gbps"]
    assert not restore_rate.fitted and restore_rate.value is None and "kept" in restore_rate.how
    # Bandwidths are fitted given the kept fixed costs, so they come out right when those are.
    assert _near(params["checkpoint.replication_gbps"].estimate, truth.rank_bytes_per_s / GBPS)
    assert _near(params["interleave.gpu_to_cpu_gbps"].estimate, truth.snapshot_bytes_per_s / GBPS)
    assert "rounds of 2 chunk(s)" in params["interleave.alpha_s"].how  # 8 MiB in 4 MiB chunks
    assert not params["storage.latency_s"].fitted
    detection = params["recovery.detection_s"]  # no failure in the run
    assert not detection.fitted and detection.value == BASE.recovery.detection_s


def test_rounds_and_peer_fetches_give_distinct_bandwidths(tmp_path: Path, rng: np.random.Generator) -> None:
    # Rounds at 400 MB/s per rank while training, fetches at 1.6 GB/s per rank during a recovery.
    truth = Truth()
    runs = [
        synthetic_run(
            tmp_path / f"run{mib}" / "m.parquet", rng, shard_bytes=mib * 2**20, procs=2, source="peer"
        )
        for mib in (1, 4, 16)
    ]
    params = _by_path(calibrate(load_runs(runs), BASE))
    latency = params["checkpoint.transfer_latency_s"]
    rounds, nic = params["checkpoint.replication_gbps"], params["cluster.nic_bandwidth_gbps"]
    assert latency.fitted and _near(latency.estimate, truth.transfer_latency_s)
    assert rounds.fitted and _near(rounds.estimate, 2 * truth.rank_bytes_per_s / GBPS)
    # 12 fetches (4 ranks × 3 runs) of three sizes: their own fixed cost and bandwidth (the synthetic
    # fetches pay the rounds' fixed cost); 2 ranks share the machine's NIC.
    assert nic.fitted and nic.estimate.n == 12 and _near(nic.estimate, 2 * truth.fetch_bytes_per_s / GBPS)
    fetch_latency = params["checkpoint.fetch_latency_s"]
    assert fetch_latency.fitted and _near(fetch_latency.estimate, truth.transfer_latency_s)
    assert "least squares" in nic.how
    assert nic.estimate.low > rounds.estimate.high  # told apart, not one bandwidth for both
    # The calibrated scenario times a round at the replication rate and a fetch at the NIC's.
    scenario = calibrated_scenario(calibrate(load_runs(runs), BASE), BASE)
    shard = scenario.ckpt_bytes_per_machine
    assert costs.replication_round_s(scenario) == pytest.approx(
        latency.value + shard * 8 / (rounds.value * 1e9)
    )
    assert costs.peer_retrieval_s(scenario) == pytest.approx(
        fetch_latency.value + shard * 8 / (nic.value * 1e9)
    )


def test_fetches_of_one_size_use_the_rounds_fixed_cost(tmp_path: Path, rng: np.random.Generator) -> None:
    truth = Truth()
    run = synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=4 * 2**20, procs=2, source="peer")
    # One shard size: the rounds' fixed cost cannot be fitted either, so the base gives the true one.
    base = load_scenario("gpt2-100b-p4d", [f"checkpoint.transfer_latency_s={truth.transfer_latency_s}"])
    params = _by_path(calibrate(load_runs([run]), base))
    latency, nic = params["checkpoint.transfer_latency_s"], params["cluster.nic_bandwidth_gbps"]
    assert f"given checkpoint.transfer_latency_s = {latency.value:.3g} s" in nic.how
    fetch_latency = params["checkpoint.fetch_latency_s"]
    assert not fetch_latency.fitted and fetch_latency.value is None
    assert nic.fitted and _near(nic.estimate, 2 * truth.fetch_bytes_per_s / GBPS)


def test_a_fetch_faster_than_the_fixed_cost_keeps_the_nic(tmp_path: Path, rng: np.random.Generator) -> None:
    # Fetches that take less than the rounds' fixed cost leave no time for the bytes: no bandwidth.
    truth = Truth(fetch_bytes_per_s=1e15)
    run = synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=2**20, truth=truth, source="peer")
    base = load_scenario("gpt2-100b-p4d", ["checkpoint.transfer_latency_s=0.02"])
    nic = _by_path(calibrate(load_runs([run]), base))["cluster.nic_bandwidth_gbps"]
    assert not nic.fitted and nic.value == BASE.cluster.nic_bandwidth_gbps and "non-positive" in nic.how


def test_no_snapshots_is_a_user_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=2**20)
    table = pq.read_table(path)
    frame = table.to_pandas()
    kept = pa.Table.from_pandas(frame[frame["event"] != "snapshot"], preserve_index=False)
    pq.write_table(kept.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(UserError, match="no snapshot events"):
        calibrate(load_runs([path]), BASE)
