"""Recovery odds of any placement by brute force: an enumeration oracle and Monte Carlo.

Failures hit "units": single machines (domain_size = 1) or whole failure domains of D consecutive
machines (correlated failures; the last domain may be smaller). `enumerate_probability` checks all
C(units, k) failure sets and is the oracle the closed forms are tested against; `montecarlo_probability`
samples failure sets with an injected numpy Generator and returns a Wilson confidence interval.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from gemini_ft.common.errors import UserError
from gemini_ft.placement.layout import Placement

FAILURE_MODES = ("machines", "domains")
ENUMERATION_LIMIT = 3_000_000
# Elements per vectorised batch: keeps temporary arrays around tens of MB.
_BATCH_ELEMENTS = 2_000_000
MAX_SAMPLE_ELEMENTS = 20_000_000_000
"""Elements a Monte Carlo estimate may touch (per sample: its holder lookups, see below): about a
minute here. An interval's half-width shrinks as 1/√samples, so more buys almost nothing."""


@dataclass(frozen=True)
class MonteCarloEstimate:
    """Share of sampled failure sets that were recoverable, with a Wilson interval."""

    estimate: float
    ci_low: float
    ci_high: float
    samples: int
    recovered: int
    confidence: float


def distinct_holder_rows(placement: Placement) -> np.ndarray:
    """The distinct holder sets as sorted rows (numpy; `Placement.holder_sets` is slow at N = 100,000)."""
    return np.unique(np.sort(placement.holders, axis=1), axis=0)


def _units(placement: Placement, domain_size: int) -> int:
    if domain_size < 1:
        raise UserError("domain_size", domain_size, "must be an integer ≥ 1")
    return -(-placement.machines // domain_size)


def _check_k(k: int, units: int, domain_size: int) -> None:
    what = "machines" if domain_size == 1 else "failure domains"
    if not 0 <= k <= units:
        raise UserError("failures", k, f"must be between 0 and the number of {what} = {units}")


def enumerate_probability(
    placement: Placement, failures: int, *, domain_size: int = 1, limit: int = ENUMERATION_LIMIT
) -> Fraction:
    """Exact Pr[recoverable] by checking every k-subset of units; refuses above `limit` subsets."""
    units = _units(placement, domain_size)
    _check_k(failures, units, domain_size)
    total = math.comb(units, failures)
    if total > limit:
        raise UserError(
            "method",
            "enumerate",
            f"C({units}, {failures}) = {total:,} failure sets exceed the limit of {limit:,}; use --method exact or montecarlo",
        )
    if failures == 0:
        return Fraction(1)  # nothing failed, nothing lost
    holder_sets = distinct_holder_rows(placement)
    unit_of = np.arange(placement.machines) // domain_size
    batch = max(1, _BATCH_ELEMENTS // (units + placement.machines + holder_sets.size))
    combos = itertools.combinations(range(units), failures)
    lost = 0
    while chunk := list(itertools.islice(combos, batch)):
        failed_units = np.zeros((len(chunk), units), dtype=bool)
        failed_units[np.arange(len(chunk))[:, None], np.array(chunk, dtype=np.int64)] = True
        failed = failed_units[:, unit_of]
        lost += int(failed[:, holder_sets].all(axis=2).any(axis=1).sum())
    return Fraction(total - lost, total)


def sample_subsets(rng: np.random.Generator, units: int, k: int, count: int) -> np.ndarray:
    """`count` uniform k-subsets of range(units), each row sorted (shape count × k)."""
    if k == 0:
        return np.empty((count, 0), dtype=np.int64)
    if k * k <= 4 * units:
        # Birthday bound: a row of k draws has no repeat with probability ≈ exp(−k²/2units) ≥ e⁻², so
        # redrawing the rows with repeats ends after a few rounds.
        rows = np.sort(rng.integers(0, units, size=(count, k)), axis=1)
        bad = np.nonzero((rows[:, 1:] == rows[:, :-1]).any(axis=1))[0]
        while len(bad):
            redraw = np.sort(rng.integers(0, units, size=(len(bad), k)), axis=1)
            rows[bad] = redraw
            bad = bad[(redraw[:, 1:] == redraw[:, :-1]).any(axis=1)]
        return rows
    keys = rng.random((count, units))
    return np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)


def _lost(placement: Placement, failed_units: np.ndarray, domain_size: int) -> np.ndarray:
    """For each row of sorted failed units: does some machine lose every holder?

    Only machines inside failed units can lose all holders (a machine holds its own replica), so we
    look up their holders' units and test membership in the row with one global searchsorted.
    """
    count, k = failed_units.shape
    if k == 0:
        return np.zeros(count, dtype=bool)
    n = placement.machines
    units = _units(placement, domain_size)
    offsets = (np.arange(count, dtype=np.int64) * units)[:, None]
    flat = (failed_units + offsets).ravel()  # rows sorted and offsets increasing: globally sorted
    machines = failed_units[:, :, None] * domain_size + np.arange(domain_size)  # count × k × D
    valid = machines < n
    holder_units = placement.holders[np.where(valid, machines, 0)] // domain_size  # count × k × D × m
    query = holder_units + offsets[:, :, None, None]
    pos = np.minimum(np.searchsorted(flat, query), flat.size - 1)
    all_failed = (flat[pos] == query).all(axis=3) & valid
    return all_failed.any(axis=(1, 2))


def montecarlo_probability(
    placement: Placement,
    failures: int,
    *,
    samples: int,
    rng: np.random.Generator,
    domain_size: int = 1,
    confidence: float = 0.95,
) -> MonteCarloEstimate:
    """Estimate Pr[recoverable] from `samples` uniform failure sets of `failures` units."""
    units = _units(placement, domain_size)
    _check_k(failures, units, domain_size)
    if samples < 1:
        raise UserError("samples", samples, "must be an integer ≥ 1")
    if not 0 < confidence < 1:
        raise UserError("confidence", confidence, "must be strictly between 0 and 1")
    # Elements per sample: the holder lookups, plus one key per unit when sampling by argpartition.
    per_sample = max(1, failures) * domain_size * placement.replicas
    per_sample += units if failures * failures > 4 * units else 0
    if samples * per_sample > MAX_SAMPLE_ELEMENTS:
        most = max(1, MAX_SAMPLE_ELEMENTS // per_sample)
        raise UserError(
            "samples", samples,
            f"with {failures} failure(s) among {units:,} units this touches {samples * per_sample:,} elements,"
            f" more than {MAX_SAMPLE_ELEMENTS:,} (about a minute); {most:,} at most, whose 95% interval is"
            f" already within ±{0.98 / math.sqrt(most):.1g}",
        )  # fmt: skip
    batch = max(1, _BATCH_ELEMENTS // per_sample)
    recovered = 0
    for start in range(0, samples, batch):
        failed = sample_subsets(rng, units, failures, min(batch, samples - start))
        recovered += int((~_lost(placement, failed, domain_size)).sum())
    from scipy.stats import binomtest  # scipy.stats takes ~1 s to import; only Monte Carlo needs it

    interval = binomtest(recovered, samples).proportion_ci(confidence_level=confidence, method="wilson")
    return MonteCarloEstimate(
        recovered / samples, float(interval.low), float(interval.high), samples, recovered, confidence
    )
