"""Calibration on real runs of this repository's runner (tests/calibration/real_runs): fit on two
runs, validate on two held-out ones, every row reported, and the issue-11 targets (median |error|
≤ 10%, worst ≤ 25% over checkpoint, local and peer retrieval and total recovery) checked.

The fixtures were recorded on the quiet 2-core development host: 2 machines, shards of 29 MB (5m) and
117 MB (20m), each run with five software and five hardware failures over 50 steps, so every row
averages 5-37 events. (Six earlier fixtures of 0.8 MB shards with one failure of each kind per run
missed the targets: their millisecond events scattered 2-3x between runs of one command.)
"""

from pathlib import Path

import pytest

from gemini_ft.calibration.fit import Calibration, calibrate
from gemini_ft.calibration.measurements import detections, load_runs
from gemini_ft.calibration.overlay import calibrated_scenario
from gemini_ft.calibration.validate import (
    TARGET_QUANTITIES,
    compare,
    format_validation,
    summarize_errors,
)
from gemini_ft.scenarios.loader import apply_overrides, load_scenario, validate
from gemini_ft.scenarios.schema import Scenario

REAL = Path(__file__).parent / "real_runs"
FIT = [REAL / name / "measurements.parquet" for name in ("fit-5m", "fit-20m")]
HELD = ("held-5m", "held-20m")
HELD_OUT = [REAL / name / "measurements.parquet" for name in HELD]
BASE = load_scenario("gpt2-100b-p4d")


@pytest.fixture(scope="module")
def calibrated() -> tuple[Calibration, Scenario]:
    calibration = calibrate(load_runs(FIT), BASE)
    return calibration, calibrated_scenario(calibration, BASE)


@pytest.fixture(scope="module")
def table(calibrated: tuple[Calibration, Scenario]):
    return compare(calibrated[1], load_runs(HELD_OUT))


def _params(calibration: Calibration) -> dict:
    return {p.path: p for p in calibration.parameters}


def test_every_row_is_reported(table) -> None:
    # Per held-out run: the checkpoint and the first rounds of a process, local and peer retrieval, their
    # recovery totals, the disk load: 7 rows, 14 in all, 10 of them in the target.
    assert len(table) == 14
    text = format_validation(table)
    assert len(text.splitlines()) == 1 + 14 + 1  # header, every row, the summary line
    assert "(not in the target)" in text and "disk load" in text
    assert all("(not in the target)" in line for line in text.splitlines() if "first round" in line)
    assert "median |error|" in text.splitlines()[-1]
    summary = summarize_errors(table)
    assert summary["rows"] == 10 == int(table["quantity"].isin(TARGET_QUANTITIES).sum())
    # Every target row averages several events: five failures of each kind per run.
    assert (table[table["quantity"].isin(TARGET_QUANTITIES)]["n"] >= 5).all()


def test_detection_follows_the_rendezvous(calibrated: tuple[Calibration, Scenario]) -> None:
    calibration, scenario = calibrated
    params = _params(calibration)
    found = [detections(r) for r in load_runs(FIT)]
    software = [d for f in found for d in f[f["kind"] == "software"]["detect_s"]]
    hardware = [d for f in found for d in f[f["kind"] == "hardware"]["detect_s"]]
    assert len(software) == 10 and len(hardware) == 10  # five of each kind in each fitting run
    start = sum(software) / 10
    assert scenario.recovery.detection_s == pytest.approx(start)
    # Hardware: the start plus the replacement agent's start and join, both fitted; the survivors open the
    # next rendezvous round at once, so the dead machine's 2 s of keep-alives are not waited for.
    assert scenario.recovery.hardware_detection_s == pytest.approx(sum(hardware) / 10)
    for run in load_runs([*FIT, *HELD_OUT]):
        kinds = detections(run).groupby("kind")["detect_s"].mean()
        assert 0 < kinds["hardware"] - kinds["software"] < 2.0, run.label  # under keep_alive_s x 2
    for path in ("recovery.detection_s", "recovery.hardware_detection_s", "recovery.warmup_s"):
        estimate = params[path].estimate
        assert estimate.n >= 10 and estimate.low <= estimate.value <= estimate.high  # 95% intervals


def test_a_hardware_recovery_is_predicted_with_its_own_detection(table, calibrated) -> None:
    _, scenario = calibrated
    rows = table.set_index(["run", "quantity"])["predicted_s"]
    for run in HELD:
        gap = rows[(run, "recovery total peer")] - rows[(run, "recovery total local")]
        retrievals = rows[(run, "retrieval peer")] - rows[(run, "retrieval local")]
        assert gap == pytest.approx(
            scenario.recovery.hardware_detection_s - scenario.recovery.detection_s + retrievals
        )


def test_the_disk_load_is_predicted_from_the_disk(calibrated, table) -> None:
    """Issue 11: the disk baseline's load was predicted at -99% from the cluster's 20 Gbps FSx; the
    test bed's persistent storage is its local disk, so storage.* is fitted from the disk loads."""
    calibration, scenario = calibrated
    params = _params(calibration)
    assert (
        params["storage.bandwidth_gbps"].fitted
        and "disk baseline loads" in params["storage.bandwidth_gbps"].how
    )
    assert scenario.storage.bandwidth_gbps < 5 < BASE.storage.bandwidth_gbps
    # One load per run (not in the target): -7.8% and +16.3% when this was written.
    for error in table[table["quantity"] == "disk load (persistent read)"]["rel_error"]:
        assert abs(error) < 0.5


def test_rounds_fetches_and_restores_get_their_own_fixed_costs_and_bandwidths(calibrated) -> None:
    calibration, scenario = calibrated
    params = _params(calibration)
    rounds, nic = params["checkpoint.replication_gbps"], params["cluster.nic_bandwidth_gbps"]
    fetch, latency = params["checkpoint.fetch_latency_s"], params["checkpoint.transfer_latency_s"]
    # Ten peer fetches of 29 and 117 MB: their own α and B, with intervals.
    assert fetch.fitted and nic.fitted and nic.estimate.n == 10
    assert nic.estimate.low <= nic.value <= nic.estimate.high
    assert rounds.fitted and latency.fitted
    # A fetch has the loopback to itself; a round shares it (and the CPUs) with training.
    assert nic.value > rounds.value
    assert scenario.checkpoint.fetch_latency_s == fetch.value
    # Ten local restores of two sizes: their own fixed cost and copy rate.
    restore = params["checkpoint.local_retrieval_gbps"]
    assert restore.fitted and restore.estimate.n == 10
    assert scenario.checkpoint.local_retrieval_gbps == restore.value


def test_worst_error_target(table) -> None:
    # Worst 9.5% (held-20m recovery total local) when this was written.
    assert summarize_errors(table)["worst_abs_error"] <= 0.25


def test_median_error_target(table) -> None:
    # Median 4.9% over the 10 target rows when this was written.
    assert summarize_errors(table)["median_abs_error"] <= 0.10
    assert summarize_errors(table)["met"] is True


def _without_fixed_costs(scenario: Scenario) -> Scenario:
    zero = {
        "checkpoint.transfer_latency_s": 0.0,
        "checkpoint.fetch_latency_s": 0.0,
        "checkpoint.local_retrieval_latency_s": 0.0,
    }
    return validate(apply_overrides(scenario.model_dump(mode="python"), zero))


def test_fixed_costs_enter_the_predictions_where_the_simulator_charges_them(calibrated) -> None:
    _, scenario = calibrated
    runs = load_runs(HELD_OUT)
    with_costs = compare(scenario, runs).set_index(["run", "quantity"])
    without = compare(_without_fixed_costs(scenario), runs).set_index(["run", "quantity"])
    ckpt = scenario.checkpoint
    expected = {
        "in-memory checkpoint": ckpt.transfer_latency_s,
        "first round of a process": ckpt.transfer_latency_s,
        "retrieval local": ckpt.local_retrieval_latency_s,
        "recovery total local": ckpt.local_retrieval_latency_s,
        "retrieval peer": ckpt.fetch_latency_s,
        "recovery total peer": ckpt.fetch_latency_s,
        "disk load (persistent read)": 0.0,
    }
    for (run, quantity), delta in (with_costs["predicted_s"] - without["predicted_s"]).items():
        assert delta == pytest.approx(expected[quantity], abs=1e-12), (run, quantity)
