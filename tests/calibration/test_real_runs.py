"""Calibration on real runs of this repository's runner (tests/calibration/real_runs): the fixed costs
of shard transfers are fitted, written to the scenario, and bring held-out predictions closer."""

from pathlib import Path

import pytest

from calibration.fit import Calibration, calibrate
from calibration.measurements import load_runs
from calibration.overlay import calibrated_scenario
from calibration.validate import compare
from scenarios.loader import apply_overrides, load_scenario, validate
from scenarios.schema import Scenario
from sim import costs

REAL = Path(__file__).parent / "real_runs"
FIT = [REAL / name / "measurements.parquet" for name in ("fit-tiny-sw", "fit-5m-hw")]
HELD_OUT = [
    REAL / name / "measurements.parquet" for name in ("held-tiny-sw", "held-tiny-hw", "held-tiny-sw-hw")
]
BASE = load_scenario("gpt2-100b-p4d")


@pytest.fixture(scope="module")
def calibrated() -> tuple[Calibration, Scenario]:
    calibration = calibrate(load_runs(FIT), BASE)
    return calibration, calibrated_scenario(calibration, BASE)


def _without_fixed_costs(scenario: Scenario) -> Scenario:
    zero = {"checkpoint.transfer_latency_s": 0.0, "checkpoint.local_retrieval_latency_s": 0.0}
    return validate(apply_overrides(scenario.model_dump(mode="python"), zero))


def test_round_and_copy_intercepts_become_the_fixed_costs(calibrated: tuple[Calibration, Scenario]) -> None:
    calibration, scenario = calibrated
    params = {p.path: p for p in calibration.parameters}
    # 0.8 MB and 29 MB shards separate intercept and slope; both intercepts are milliseconds, clear of 0.
    for path in ("checkpoint.transfer_latency_s", "checkpoint.local_retrieval_latency_s"):
        latency = params[path]
        assert latency.fitted and latency.estimate.low > 1e-3 and latency.estimate.high < 0.02
        section, field = path.split(".")
        assert getattr(getattr(scenario, section), field) == latency.value
    # The per-chunk α of the interleaving model is not what a round's intercept measures: kept.
    assert not params["interleave.alpha_s"].fitted
    assert scenario.interleave.alpha_s == BASE.interleave.alpha_s


def test_fixed_costs_shrink_the_held_out_checkpoint_error(calibrated: tuple[Calibration, Scenario]) -> None:
    _, scenario = calibrated
    runs = load_runs(HELD_OUT)
    with_costs = compare(scenario, runs).set_index(["run", "quantity"])
    without = compare(_without_fixed_costs(scenario), runs).set_index(["run", "quantity"])
    latency = scenario.checkpoint.transfer_latency_s
    local = scenario.checkpoint.local_retrieval_latency_s
    shift = (with_costs["predicted_s"] - without["predicted_s"]).to_dict()
    for (run, quantity), delta in shift.items():
        expected = {"retrieval local": local, "recovery total local": local}.get(quantity, latency)
        if "persistent" in quantity:
            expected = 0.0
        assert delta == pytest.approx(expected, abs=1e-12), (run, quantity)
    # Every held-out run's replication rounds (8, 4 and 11 steps of 0.8 MB shards) are predicted closer.
    checkpoint = [
        (run, "in-memory checkpoint") for run in ("held-tiny-sw", "held-tiny-hw", "held-tiny-sw-hw")
    ]
    for key in checkpoint:
        assert abs(with_costs.loc[key, "rel_error"]) < abs(without.loc[key, "rel_error"])
    assert max(abs(with_costs.loc[key, "rel_error"]) for key in checkpoint) < 0.3


def _one_bandwidth(scenario: Scenario) -> Scenario:
    """The scenario with rounds and fetches on one NIC bandwidth, the rounds' (the former calibration)."""
    merged = {
        "cluster.nic_bandwidth_gbps": costs.replication_bandwidth_gbps(scenario),
        "checkpoint.replication_gbps": None,
    }
    return validate(apply_overrides(scenario.model_dump(mode="python"), merged))


def test_rounds_and_fetches_get_their_own_bandwidths(calibrated: tuple[Calibration, Scenario]) -> None:
    calibration, scenario = calibrated
    params = {p.path: p for p in calibration.parameters}
    rounds, nic = params["checkpoint.replication_gbps"], params["cluster.nic_bandwidth_gbps"]
    # fit-5m-hw's replaced machine fetched its 29 MB shard once; rounds exchange both ways while training.
    assert rounds.fitted and nic.fitted and nic.estimate.n == 1
    assert nic.value > rounds.estimate.high
    assert scenario.checkpoint.replication_gbps == rounds.value
    assert scenario.cluster.nic_bandwidth_gbps == nic.value


def test_fetch_bandwidth_shrinks_the_peer_error_and_keeps_the_checkpoint_error(
    calibrated: tuple[Calibration, Scenario],
) -> None:
    _, scenario = calibrated
    runs = load_runs(HELD_OUT)
    split = compare(scenario, runs).set_index(["run", "quantity"])["rel_error"]
    one = compare(_one_bandwidth(scenario), runs).set_index(["run", "quantity"])["rel_error"]
    peer = [(run, "retrieval peer") for run in ("held-tiny-hw", "held-tiny-sw-hw")]
    for key in peer:
        assert abs(split[key]) < abs(one[key])
    assert max(abs(split[key]) for key in peer) < 0.3
    for run in ("held-tiny-sw", "held-tiny-hw", "held-tiny-sw-hw"):
        key = (run, "in-memory checkpoint")
        assert split[key] == one[key]
