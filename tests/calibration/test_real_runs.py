"""Calibration on real runs of this repository's runner (tests/calibration/real_runs): fit on three
runs, validate on three held-out ones, every row reported, and the issue-11 targets (median |error|
≤ 10%, worst ≤ 25% over checkpoint, local and peer retrieval and total recovery) checked as they are.

The fixtures were recorded on the quiet 2-core development host (load average about 1): the recovery
totals (worker starts of 8-11 s) come within 17%, but millisecond events still scatter between runs of
one command (a 0.8 MB shard's local restore took 1.7-5.1 ms, tiny replication rounds 10-40 ms). Targets
this host cannot meet are strict xfails that say by how much and why; they turn into failures the day
they pass, so the numbers here stay true.
"""

from pathlib import Path

import pytest

from calibration.fit import Calibration, calibrate
from calibration.measurements import detections, load_runs
from calibration.overlay import calibrated_scenario
from calibration.validate import (
    TARGET_QUANTITIES,
    compare,
    format_validation,
    summarize_errors,
)
from scenarios.loader import apply_overrides, load_scenario, validate
from scenarios.schema import Scenario

REAL = Path(__file__).parent / "real_runs"
FIT = [REAL / name / "measurements.parquet" for name in ("fit-tiny-sw", "fit-5m-hw", "fit-tiny-sw-hw")]
HELD = ("held-tiny-sw", "held-tiny-hw", "held-tiny-sw-hw")
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
    # 3 checkpoint rows and 3 first rounds of a process, 2 local + 2 peer retrievals, their 4 recovery
    # totals, 1 disk load: 15 rows.
    assert len(table) == 15
    text = format_validation(table)
    assert len(text.splitlines()) == 1 + 15 + 1  # header, every row, the summary line
    assert "(not in the target)" in text and "disk load" in text
    assert all("(not in the target)" in line for line in text.splitlines() if "first round" in line)
    assert "median |error|" in text.splitlines()[-1]
    summary = summarize_errors(table)
    assert summary["rows"] == 11 == int(table["quantity"].isin(TARGET_QUANTITIES).sum())


def test_detection_follows_the_rendezvous_settings(calibrated: tuple[Calibration, Scenario]) -> None:
    calibration, scenario = calibrated
    params = _params(calibration)
    runs = load_runs(FIT)
    found = [detections(r) for r in runs]
    software = [d for f in found for d in f[f["kind"] == "software"]["detect_s"]]
    hardware = [d for f in found for d in f[f["kind"] == "hardware"]["detect_s"]]
    assert len(software) == 2 and len(hardware) == 2  # fit-tiny-sw, fit-tiny-sw-hw; fit-5m-hw, fit-tiny-sw-hw
    start = sum(software) / 2
    assert scenario.recovery.detection_s == pytest.approx(start)
    # Hardware: the start plus max(keep-alive 1 s x 2, the new agent's start fitted from the hw failures).
    agent = sum(h - start for h in hardware) / 2
    assert scenario.recovery.hardware_detection_s == pytest.approx(start + max(2.0, agent))
    for path in ("recovery.detection_s", "recovery.hardware_detection_s", "recovery.warmup_s"):
        estimate = params[path].estimate
        assert estimate.n >= 2 and estimate.low <= estimate.value <= estimate.high  # 95% intervals


def test_a_hardware_recovery_is_predicted_with_its_own_detection(table, calibrated) -> None:
    _, scenario = calibrated
    rows = table.set_index(["run", "quantity"])["predicted_s"]
    gap = rows[("held-tiny-sw-hw", "recovery total peer")] - rows[("held-tiny-sw-hw", "recovery total local")]
    retrievals = rows[("held-tiny-sw-hw", "retrieval peer")] - rows[("held-tiny-sw-hw", "retrieval local")]
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
    row = table.set_index("quantity").loc["disk load (persistent read)"]
    # The same tiny load took 0.34, 0.73 and 1.17 s in three runs of a loaded host: within a factor of 2.5.
    assert -0.6 < row["rel_error"] < 1.5


def test_rounds_and_fetches_get_their_own_fixed_costs_and_bandwidths(calibrated) -> None:
    calibration, scenario = calibrated
    params = _params(calibration)
    rounds, nic = params["checkpoint.replication_gbps"], params["cluster.nic_bandwidth_gbps"]
    fetch, latency = params["checkpoint.fetch_latency_s"], params["checkpoint.transfer_latency_s"]
    # Two peer fetches, 0.8 MB and 29 MB: their own α and B, no interval from two points.
    assert fetch.fitted and nic.fitted and nic.estimate.n == 2
    assert fetch.value < latency.estimate.low  # a fetch, with no training beside it, starts faster
    assert rounds.fitted and latency.fitted and latency.estimate.low > 0
    assert scenario.checkpoint.fetch_latency_s == fetch.value


def _errors(table) -> dict[tuple[str, str], float]:
    return table.set_index(["run", "quantity"])["rel_error"].to_dict()


def test_rows_within_the_worst_case_target(table) -> None:
    """The rows this host does bring within 25% (each named, with its error when this was written)."""
    errors = _errors(table)
    for key in [
        ("held-tiny-sw", "in-memory checkpoint"),  # -13%
        ("held-tiny-sw", "recovery total local"),  # -11%
        ("held-tiny-hw", "recovery total peer"),  # +2%
        ("held-tiny-sw-hw", "retrieval peer"),  # -20%
        ("held-tiny-sw-hw", "recovery total local"),  # -17%
        ("held-tiny-sw-hw", "recovery total peer"),  # -9%
    ]:
        assert abs(errors[key]) <= 0.25, (key, errors[key])


@pytest.mark.xfail(
    strict=True,
    reason="missed: worst |error| 113% (held-tiny-sw retrieval local: 1.9 ms measured, 4.0 ms predicted"
    " from fit restores of 2.9 and 5.1 ms; the same 0.8 MB restore scatters 1.7-5.1 ms on this host),"
    " peer retrieval +73% (7.4 ms measured; two fit fetches give α and B without an interval), checkpoint"
    " -33%/-40% (tiny rounds of 17-24 ms under an affine fit that the 5m run's 29 MB rounds dominate)",
)
def test_worst_error_target(table) -> None:
    assert summarize_errors(table)["worst_abs_error"] <= 0.25


@pytest.mark.xfail(
    strict=True,
    reason="missed: median |error| 19.8% over 11 rows; the millisecond rows (checkpoint, retrievals)"
    " scatter 2-3x between runs of one command on this host, the recovery totals (worker starts of 8-11 s)"
    " are within 17%",
)
def test_median_error_target(table) -> None:
    assert summarize_errors(table)["median_abs_error"] <= 0.10


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
