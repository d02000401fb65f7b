"""What a scenario would cost to run, estimated before any work, and the limits past which it is refused.

Some values the fields allow one by one make a run exhaust memory or never end: a Weibull shape of
0.01 (almost every interval between failures is astronomically short, so a machine fails some 10¹⁶
times), a hundred million standby machines for the operations model, 1 KiB checkpoint chunks, a
grid of a million points. Each estimate here is what the run would hold or do, computed from the
fields alone in microseconds; `check(scenario)` raises a ValueError naming the fields and the
estimate, which the schema reports as the user's error.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gemini_ft.scenarios.schema import Scenario

DAY_S = 86_400.0
MAX_FAILURE_DRAWS = 10_000_000
"""Failures one run may draw: the draws and the run's records stay in memory until it ends (30.7 M
took 4.4 GB), and a sweep runs one per worker. A million machines at 1.5% a day for a year draw 5.5 M."""
MAX_HOSTS = 1_000_000
"""Machines plus standby machines the operations model may track: it keeps a few lists per host
(10⁸ standby machines took 13.2 GB); a million is 60 times Llama 3's 16,384 machines."""
MAX_CHUNKS = 100_000
"""Checkpoint chunks the interleaving model may place in one iteration (each is a SimPy transfer);
the paper's 32 MiB chunks make about 300 of a 9.4 GB shard."""
MAX_SWEEP_SCENARIOS_BYTES = 1 << 30
SCENARIO_BYTES = 10_000
"""A validated scenario as a sweep holds one per grid point (measured with tracemalloc: 10.0 KB)."""


def failure_draws(scenario: Scenario) -> float:
    """Mean failures a run draws, 0 for a trace (its size is the file's).

    For a renewal law (Weibull, lognormal) a machine's draws up to T are at most about
    T / E[min(X, T)] (a renewal argument on the interval X cut at T), which for a heavy mass of
    short intervals is far above T / E[X]: the count the run really draws. The operations model draws
    at the bad machines' rate, then thins.
    """
    fails = scenario.failures
    if fails.distribution == "trace" or fails.rate_per_machine_per_day == 0:
        return 0.0
    multiplier = scenario.operations.bad_rate_multiplier if _drawn_at_bad_rate(scenario) else 1.0
    duration_s = scenario.run.duration_days * DAY_S
    mean_s = DAY_S / (fails.rate_per_machine_per_day * multiplier)
    if fails.distribution == "exponential" or duration_s / mean_s < 1e-9:  # (a rare law: first draws only)
        per_machine = duration_s / mean_s
    else:
        truncated = _mean_truncated(
            fails.distribution, fails.weibull_shape, fails.lognormal_sigma, mean_s, duration_s
        )
        per_machine = duration_s / truncated if truncated > 0 else math.inf
    return scenario.cluster.machines * per_machine


def _mean_truncated(law: str, shape: float, sigma: float, mean_s: float, cut_s: float) -> float:
    """E[min(X, cut)] for an interval X of the law with mean `mean_s`."""
    if law == "weibull":
        from scipy.special import gammainc  # only Weibull scenarios pay for it

        # X = λW, λ = mean / Γ(1 + 1/k): E[min(X, T)] = mean · P(1/k, (T/λ)^k), in logs (Γ overflows).
        log_x = shape * (math.log(cut_s) - math.log(mean_s) + math.lgamma(1.0 + 1.0 / shape))
        if log_x > 700:
            return mean_s  # (T/λ)^k beyond any float: every interval is shorter than T
        return mean_s * float(gammainc(1.0 / shape, math.exp(log_x)))
    mu = math.log(mean_s) - sigma**2 / 2.0  # lognormal with this mean

    def phi(z: float) -> float:
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    log_cut = math.log(cut_s)
    return mean_s * phi((log_cut - mu - sigma**2) / sigma) + cut_s * (1.0 - phi((log_cut - mu) / sigma))


def _drawn_at_bad_rate(scenario: Scenario) -> bool:
    ops = scenario.operations
    return ops.enabled and ops.bad_machine_fraction > 0 and scenario.failures.distribution != "trace"


def interleave_chunks(scenario: Scenario) -> float:
    """Chunks one iteration's checkpoint traffic is cut into, with `interleave.chunk_mib` set."""
    chunk_mib = scenario.interleave.chunk_mib
    if chunk_mib is None:
        return 0.0
    peers = max(scenario.checkpoint.replicas - 1, 1)
    return scenario.ckpt_bytes_per_gpu * peers / (chunk_mib * 2**20)


def check(scenario: Scenario) -> None:
    """A ValueError naming the fields whose values would make a run exceed a limit above."""
    draws = failure_draws(scenario)
    if draws > MAX_FAILURE_DRAWS:
        fails = scenario.failures
        scaled = " × operations.bad_rate_multiplier" if _drawn_at_bad_rate(scenario) else ""
        if fails.distribution == "exponential" or draws < 2 * _rate_draws(scenario):
            cause = (
                f"failures.rate_per_machine_per_day = {fails.rate_per_machine_per_day:g}: cluster.machines × rate"
                f" × run.duration_days{scaled} = {draws:,.0f} failures drawn per run"
            )
        else:
            field = "weibull_shape" if fails.distribution == "weibull" else "lognormal_sigma"
            cause = (
                f"failures.{field} = {getattr(fails, field):g}: a {fails.distribution} law so skewed that almost"
                f" every interval between failures is far shorter than its mean draws about {draws:,.3g} failures"
                " per run"
            )
        raise ValueError(
            f"{cause}, more than {MAX_FAILURE_DRAWS:,} (each stays in memory until the run ends); lower one of them"
        )
    hosts = scenario.cluster.machines + scenario.cluster.standby_machines
    if scenario.operations.enabled and hosts > MAX_HOSTS:
        raise ValueError(
            f"cluster.standby_machines = {scenario.cluster.standby_machines:,}: with operations.enabled the"
            f" model tracks every host, cluster.machines + standby = {hosts:,}, more than {MAX_HOSTS:,}"
        )
    chunks = interleave_chunks(scenario)
    if chunks > MAX_CHUNKS:
        raise ValueError(
            f"interleave.chunk_mib = {scenario.interleave.chunk_mib:g}: a checkpoint of"
            f" {scenario.ckpt_bytes_per_gpu / 2**20:,.0f} MiB per GPU to {max(scenario.checkpoint.replicas - 1, 1)}"
            f" peer(s) in chunks this small makes {chunks:,.0f} chunks per iteration, more than {MAX_CHUNKS:,}"
        )
    grid_bytes = scenario.sweep_points * SCENARIO_BYTES
    if grid_bytes > MAX_SWEEP_SCENARIOS_BYTES:
        raise ValueError(
            f"sweep: the grid's {scenario.sweep_points:,} points take about {grid_bytes / 2**30:.1f} GiB as"
            f" scenarios, more than {MAX_SWEEP_SCENARIOS_BYTES / 2**30:g} GiB; split the sweep"
        )


def _rate_draws(scenario: Scenario) -> float:
    multiplier = scenario.operations.bad_rate_multiplier if _drawn_at_bad_rate(scenario) else 1.0
    fails = scenario.failures
    return (
        scenario.cluster.machines * fails.rate_per_machine_per_day * multiplier * scenario.run.duration_days
    )
