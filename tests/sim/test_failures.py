"""Failure arrivals: rates, coupling, Weibull and lognormal renewals, domains and trace files."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import validate
from gemini_ft.sim.failures import DAY_S, generate_failures, read_trace


def scenario(**failures: object) -> object:
    return validate({"cluster": {"machines": 64, "failure_domain_size": 8}, "failures": failures})


def test_superposed_poisson_count_and_machines() -> None:
    sc = scenario(rate_per_machine_per_day=0.5, hardware_fraction=0.25)
    duration = 100 * DAY_S
    counts, hardware, machines = [], [], []
    for seed in range(20):
        events = generate_failures(sc, np.random.default_rng(seed), duration)
        counts.append(len(events))
        hardware += [e.hardware for e in events]
        machines += [e.machines[0] for e in events]
        assert all(0 <= a.time_s <= b.time_s < duration for a, b in itertools.pairwise(events))
    expected = 0.5 * 64 * 100  # per seed
    # The total over 20 seeds is Poisson(20 × expected).
    assert sum(counts) == pytest.approx(20 * expected, abs=4 * math.sqrt(20 * expected))
    assert np.mean(hardware) == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / len(hardware)))
    per_machine = np.bincount(machines, minlength=64)
    assert per_machine.min() > 0.6 * per_machine.mean()  # uniform over machines (loose: 64 cells)


@given(st.floats(0.0, 2.0), st.floats(0.0, 2.0), st.integers(0, 2**32 - 1))
def test_higher_rate_sees_a_superset_of_failures(rate_a: float, rate_b: float, seed: int) -> None:
    low, high = sorted((rate_a, rate_b))
    duration = 20 * DAY_S
    few = generate_failures(scenario(rate_per_machine_per_day=low), np.random.default_rng(seed), duration)
    many = generate_failures(scenario(rate_per_machine_per_day=high), np.random.default_rng(seed), duration)
    assert set(few) <= set(many)


def test_weibull_mean_time_between_failures() -> None:
    sc = scenario(distribution="weibull", weibull_shape=0.6, rate_per_machine_per_day=1.0)
    duration = 200 * DAY_S
    counts = [len(generate_failures(sc, np.random.default_rng(seed), duration)) for seed in range(5)]
    # A renewal process with mean gap 1/λ has about λ·T renewals per machine (plus the first-gap edge).
    expected = 64 * 200 * 5
    assert sum(counts) == pytest.approx(expected, rel=0.05)


def _gaps_per_machine(events) -> np.ndarray:
    last: dict[int, float] = {}
    gaps = []
    for event in events:
        for machine in event.machines:
            if machine in last:
                gaps.append(event.time_s - last[machine])
            last[machine] = event.time_s
    return np.asarray(gaps)


@pytest.mark.parametrize(
    ("law", "variance_factor"),
    [
        ({"distribution": "lognormal", "lognormal_sigma": 0.8}, math.exp(0.8**2) - 1),
        (
            {"distribution": "weibull", "weibull_shape": 0.7},
            math.gamma(1 + 2 / 0.7) / math.gamma(1 + 1 / 0.7) ** 2 - 1,
        ),
    ],
)
def test_renewal_gaps_have_the_law_mean_and_variance(law: dict, variance_factor: float) -> None:
    # Each machine renews only at its own failures, so its gaps are draws of the law: mean 1/λ and
    # variance (CV² · mean²); a renewal of every machine at each failure would shorten them all.
    sc = scenario(rate_per_machine_per_day=1.0, **law)
    gaps = _gaps_per_machine(generate_failures(sc, np.random.default_rng(3), 400 * DAY_S)) / DAY_S
    assert gaps.mean() == pytest.approx(1.0, rel=0.03)
    assert gaps.var() == pytest.approx(variance_factor, rel=0.12)


def test_renewal_restarts_every_machine_of_a_correlated_failure() -> None:
    sc = scenario(distribution="lognormal", rate_per_machine_per_day=1.0, correlated_fraction=1.0)
    events = generate_failures(sc, np.random.default_rng(0), 50 * DAY_S)
    assert events and all(len(e.machines) == 8 and e.machines[0] % 8 == 0 for e in events)


def test_lognormal_sigma_is_validated() -> None:
    with pytest.raises(UserError, match="lognormal_sigma"):
        scenario(distribution="lognormal", lognormal_sigma=0)


def test_correlated_failures_take_the_whole_domain() -> None:
    sc = scenario(rate_per_machine_per_day=1.0, correlated_fraction=1.0)
    events = generate_failures(sc, np.random.default_rng(0), 10 * DAY_S)
    assert events and all(len(e.machines) == 8 and e.machines[0] % 8 == 0 for e in events)


def test_trace_groups_rows_at_one_time(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,machine,type\n50,3,software\n10,1,hardware\n10,2,software\n99999,0,software\n")
    events = read_trace(trace, machines=4, duration_s=1000)
    assert [(e.time_s, e.machines, e.kind) for e in events] == [
        (10, (1, 2), "hardware"),
        (50, (3,), "software"),
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("time_s,machine\n1,0\n", "failures.trace_file"),
        ("time_s,machine,type\n-1,0,software\n", "column time_s"),
        ("time_s,machine,type\n1,9,software\n", "column machine"),
        ("time_s,machine,type\n1,0,cosmic\n", "column type"),
    ],
)
def test_bad_trace_is_a_user_error(tmp_path: Path, text: str, field: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(text)
    with pytest.raises(UserError, match=field):
        read_trace(trace, machines=4, duration_s=1000)
