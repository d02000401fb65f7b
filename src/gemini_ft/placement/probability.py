"""Exact odds of recovering every checkpoint from CPU memory when k of N machines fail at once.

The failed set is a uniform k-subset; it is recoverable iff every machine keeps a surviving holder.
Closed forms with exact integer counts for `group`, `ring`, `mixed` and `domain` (disjoint groups
dealt round-robin over failure domains), a generic inclusion–exclusion for any `Placement`, the paper's Corollary 1 bound, and
`probability_table`, the rows behind `gemini-ft placement` and the recovery-probability figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from gemini_ft.common.errors import UserError
from gemini_ft.placement.layout import (
    MATERIALIZED_LIMIT,
    Placement,
    build_placement,
    check_sizes,
    dealt_group_sizes,
)
from gemini_ft.placement.registry import check_placement
from gemini_ft.placement.sampling import (
    ENUMERATION_LIMIT,
    FAILURE_MODES,
    distinct_holder_rows,
    enumerate_probability,
    montecarlo_probability,
)

METHODS = ("exact", "enumerate", "montecarlo")
BOUND_ROW = "corollary1-bound"
# State updates the generic inclusion–exclusion may spend (≈1 s of Python) before giving up.
EXACT_BUDGET = 2_000_000
TABLE_KEYS = ("strategy", "machines", "replicas", "failures", "probability", "method", "ci_low", "ci_high")


# ---- closed forms (counts of recoverable k-subsets) ------------------------------------------------
def group_good_count(machines: int, replicas: int, failures: int) -> int:
    """k-subsets of N = g·m machines in g groups of m that contain no whole group (inclusion–exclusion)."""
    n, m, k = machines, replicas, failures
    check_placement("group", n, m)
    groups = n // m
    return sum(
        (-1) ** j * math.comb(groups, j) * math.comb(n - j * m, k - j * m)
        for j in range(min(groups, k // m) + 1)
    )


def _bounded_compositions(total: int, parts: int, cap: int) -> int:
    """Ways to write `total` as an ordered sum of `parts` integers in [0, cap]."""
    if parts == 0:
        return int(total == 0)
    return sum(
        (-1) ** j * math.comb(parts, j) * math.comb(total - j * (cap + 1) + parts - 1, parts - 1)
        for j in range(min(parts, total // (cap + 1)) + 1)
    )


def ring_good_count(machines: int, replicas: int, failures: int) -> int:
    """k-subsets of an N-cycle without m consecutive failed machines (a ring holder set is m in a row).

    With s = N − k ≥ 1 survivors the failed machines form s cyclic gaps of at most m − 1; a pair
    (subset, marked survivor) is a start position times a gap composition, so the count is N·c / s.
    """
    n, m, k = machines, replicas, failures
    if k == 0:
        return 1
    if k >= n:
        return 0  # every holder set is gone
    survivors = n - k
    pairs = n * _bounded_compositions(k, survivors, m - 1)
    assert pairs % survivors == 0  # each subset is counted once per survivor
    return pairs // survivors


def _group_counts(groups: int, m: int, upto: int) -> list[int]:
    """Recoverable a-subsets of `groups` disjoint groups of m, for a = 0..upto."""
    n = groups * m
    return [group_good_count(n, m, a) if groups else int(a == 0) for a in range(upto + 1)]


def domain_good_count(machines: int, replicas: int, failures: int) -> int:
    """The `domain` layout: ⌊N/m⌋ disjoint groups of sizes ⌈N/G⌉ and ⌊N/G⌋, each ring-replicated inside
    (a plain group when its size is m). Failures split independently across groups, so the counts
    multiply as polynomials in the number of failures; powers by squaring keep N = 100,000 fast."""
    k = failures
    total = [1]
    for size, count in Counter(dealt_group_sizes(machines, replicas)).items():
        block = [ring_good_count(size, replicas, t) for t in range(min(size, k) + 1)]
        total = _multiply(total, _power(block, count, k), k)
    return total[k] if k < len(total) else 0


def _multiply(a: list[int], b: list[int], degree: int) -> list[int]:
    """Product of two count polynomials (exact: object arrays of Python ints), truncated above `degree`."""
    return list(np.convolve(np.array(a, dtype=object), np.array(b, dtype=object))[: degree + 1])


def _power(base: list[int], exponent: int, degree: int) -> list[int]:
    result = [1]
    while exponent:
        if exponent & 1:
            result = _multiply(result, base, degree)
        base = _multiply(base, base, degree)
        exponent >>= 1
    return result


def mixed_good_count(machines: int, replicas: int, failures: int) -> int:
    """Algorithm 1: ⌊N/m⌋ − 1 plain groups and a last group of L = m + N mod m ring-replicated inside
    itself; failures split between the two parts independently, so the counts convolve."""
    n, m, k = machines, replicas, failures
    if n % m == 0:
        return group_good_count(n, m, k)
    plain_groups = n // m - 1
    last = n - plain_groups * m
    plain = plain_groups * m
    counts = _group_counts(plain_groups, m, min(k, plain))
    return sum(
        counts[a] * ring_good_count(last, m, k - a) for a in range(max(0, k - last), min(k, plain) + 1)
    )


# ---- any placement: inclusion–exclusion over distinct holder sets ----------------------------------
def placement_good_count(placement: Placement, failures: int, *, budget: int = EXACT_BUDGET) -> int:
    """Recoverable k-subsets for an arbitrary placement.

    A k-subset is lost iff it contains some holder set S. Inclusion–exclusion sums
    (−1)^|T| C(N − |∪T|, k − |∪T|) over collections T of holder sets; the term depends on T only
    through its union, so we keep signed counts per union and drop unions larger than k (adding sets
    only grows them). `budget` caps the state updates; past it we refuse rather than run for hours.
    """
    n, k = placement.machines, failures
    _check_failures(k, n)
    rows = distinct_holder_rows(placement) if placement.replicas <= k else np.empty((0, 0), dtype=np.int64)
    # Holder sets all have m machines, so each keeps its own entry once processed: the work is at
    # least 1 + 2 + … + s, and we can refuse before spending any of it.
    if len(rows) * (len(rows) + 1) // 2 > budget:
        raise _over_budget(placement, k, budget)
    sets = [frozenset(row.tolist()) for row in rows]
    unions: dict[frozenset[int], int] = {frozenset(): 1}
    work = 0
    for holder_set in sets:
        work += len(unions)
        if work > budget:
            raise _over_budget(placement, k, budget)
        updates: dict[frozenset[int], int] = {}
        for union, coeff in unions.items():
            grown = union | holder_set
            if len(grown) <= k:
                updates[grown] = updates.get(grown, 0) - coeff
        for union, coeff in updates.items():
            total = unions.get(union, 0) + coeff
            if total:
                unions[union] = total
            else:
                unions.pop(union, None)
    return sum(coeff * math.comb(n - len(u), k - len(u)) for u, coeff in unions.items())


def _over_budget(placement: Placement, k: int, budget: int) -> UserError:
    return UserError(
        "method",
        "exact",
        f"the exact count for {placement.strategy} placement (N = {placement.machines}, m = {placement.replicas},"
        f" k = {k}) needs more than {budget:,} steps; use --method montecarlo",
    )


# ---- dispatch ---------------------------------------------------------------------------------------
def exact_probability(
    strategy: str,
    machines: int,
    replicas: int,
    failures: int,
    *,
    domain_size: int | None = None,
    rng: np.random.Generator | None = None,
    budget: int = EXACT_BUDGET,
) -> Fraction:
    """Pr[recoverable] for `strategy` when `failures` machines fail uniformly at random, exactly."""
    check_sizes(machines, replicas)
    _check_failures(failures, machines)
    total = math.comb(machines, failures)
    check_placement(strategy, machines, replicas)
    if strategy == "group":
        good = group_good_count(machines, replicas, failures)
    elif strategy == "ring":
        good = ring_good_count(machines, replicas, failures)
    elif strategy == "mixed":
        good = mixed_good_count(machines, replicas, failures)
    elif strategy == "domain":
        build_placement("domain", machines, replicas, domain_size=domain_size)  # checks the domain size
        good = domain_good_count(machines, replicas, failures)
    elif strategy == "random":
        placement = build_placement("random", machines, replicas, rng=rng)
        good = placement_good_count(placement, failures, budget=budget)
    else:
        raise AssertionError(f"no closed form for placement {strategy!r}")
    return Fraction(good, total)


def corollary1_bound(machines: int, replicas: int, failures: int) -> Fraction:
    """The paper's Corollary 1 for group placement: 1 for k < m, else max{0, 1 − N·C(N−m, k−m) / (m·C(N, k))}.

    It keeps only the first inclusion–exclusion term, so it is exact for k < 2m.
    """
    n, m, k = machines, replicas, failures
    check_sizes(n, m)
    _check_failures(k, n)
    if k < m:
        return Fraction(1)
    return max(Fraction(0), 1 - Fraction(n * math.comb(n - m, k - m), m * math.comb(n, k)))


def _check_failures(failures: int, machines: int) -> None:
    if not 0 <= failures <= machines:
        raise UserError("failures", failures, f"must be between 0 and machines = {machines}")


# ---- the table behind `gemini-ft placement` ------------------------------------------------------
def default_strategies(machines: int, replicas: int, domain_size: int | None = None) -> list[str]:
    """The strategies that apply to (N, m): `group` when m | N, else `mixed` (which equals group when
    m | N), `ring`, `random` (up to MATERIALIZED_LIMIT machines: it is drawn machine by machine), and
    `domain` when a domain size is given and the domain layout builds."""
    chosen = ["group" if machines % replicas == 0 else "mixed", "ring"]
    if machines <= MATERIALIZED_LIMIT:
        chosen.append("random")
    if domain_size is not None and machines <= MATERIALIZED_LIMIT:
        try:
            build_placement("domain", machines, replicas, domain_size=domain_size)
        except UserError:
            return chosen  # this (N, m, D) has no layout with every replica in its own domain
        chosen.append("domain")
    return chosen


def probability_table(
    strategies: Sequence[str] | None,
    machines: int,
    replicas: int,
    failures: Sequence[int] | None,
    *,
    method: str = "exact",
    samples: int = 100_000,
    seed: int = 0,
    failure_mode: str = "machines",
    domain_size: int | None = None,
    confidence: float = 0.95,
    include_bound: bool = True,
    montecarlo_fallback: bool = False,
    budget: int = EXACT_BUDGET,
    enumeration_limit: int = ENUMERATION_LIMIT,
) -> list[dict[str, object]]:
    """One row per (strategy, k) with keys TABLE_KEYS; ci_low/ci_high are None unless Monte Carlo.

    `strategies=None` picks `default_strategies`; `failures=None` picks k = 1..min(K, 2m + 2), K the
    number of failure units (machines, or domains when failure_mode = 'domains'). The Corollary 1
    bound is added as a row named `corollary1-bound` when group applies and machines fail one by one.
    With `montecarlo_fallback`, a `random` row whose exact count exceeds the budget is estimated
    instead (its method then says so). Randomness (the random placement, the samples) comes from one
    SeedSequence(seed), spawned per row so that rows do not depend on each other.
    """
    check_sizes(machines, replicas)
    if method not in METHODS:
        raise UserError("method", method, f"allowed: {', '.join(METHODS)}")
    if failure_mode not in FAILURE_MODES:
        raise UserError("failure_mode", failure_mode, f"allowed: {', '.join(FAILURE_MODES)}")
    if samples < 1:
        raise UserError("samples", samples, "must be an integer ≥ 1")
    if domain_size is not None and domain_size < 1:
        raise UserError("domain_size", domain_size, "must be an integer ≥ 1")
    if failure_mode == "domains":
        if domain_size is None:
            raise UserError("failure_mode", "domains", "needs --domain-size D (machines per failure domain)")
        if method == "exact":
            raise UserError(
                "method", "exact", "no closed form for whole-domain failures; use enumerate or montecarlo"
            )
    units = machines if failure_mode == "machines" else -(-machines // domain_size)  # type: ignore[operator]
    ks = list(failures) if failures else list(range(1, min(units, 2 * replicas + 2) + 1))
    for k in ks:
        if not 1 <= k <= units:
            what = "machines" if failure_mode == "machines" else "failure domains"
            raise UserError("failures", k, f"must be between 1 and the number of {what} = {units}")
    names = list(strategies) if strategies else default_strategies(machines, replicas, domain_size)
    for name in names:
        check_placement(name, machines, replicas)
    settings = _RowSettings(
        machines,
        replicas,
        method,
        samples,
        failure_mode,
        domain_size,
        confidence,
        montecarlo_fallback,
        budget,
        enumeration_limit,
        placement_seed=np.random.SeedSequence(seed).spawn(1)[0],
    )
    row_seeds = iter(np.random.SeedSequence(seed).spawn(1 + len(names) * len(ks))[1:])
    rows: list[dict[str, object]] = []
    for name in names:
        placement = _placement_for(name, settings)
        rows.extend(_row(name, k, placement, np.random.default_rng(next(row_seeds)), settings) for k in ks)
    if include_bound and failure_mode == "machines" and machines % replicas == 0 and "group" in names:
        for k in ks:
            bound = float(corollary1_bound(machines, replicas, k))
            rows.append(_record(BOUND_ROW, machines, replicas, k, bound, "bound"))
    return rows


@dataclass(frozen=True)
class _RowSettings:
    """What every row of one table shares."""

    machines: int
    replicas: int
    method: str
    samples: int
    failure_mode: str
    domain_size: int | None
    confidence: float
    fallback: bool
    budget: int
    enumeration_limit: int
    placement_seed: np.random.SeedSequence

    def build(self, name: str) -> Placement:
        # The same seed for every build, so a random placement is the same one in every row.
        rng = np.random.default_rng(self.placement_seed)
        return build_placement(name, self.machines, self.replicas, domain_size=self.domain_size, rng=rng)


def _placement_for(name: str, settings: _RowSettings) -> Placement | None:
    """Build the placement only when a row needs it (closed forms at N = 100,000 must not)."""
    return None if settings.method == "exact" else settings.build(name)


def _row(
    name: str, k: int, placement: Placement | None, rng: np.random.Generator, settings: _RowSettings
) -> dict[str, object]:
    n, m, method = settings.machines, settings.replicas, settings.method
    if method == "exact":
        try:
            value = exact_probability(
                name,
                n,
                m,
                k,
                domain_size=settings.domain_size,
                rng=np.random.default_rng(settings.placement_seed),
                budget=settings.budget,
            )
            return _record(name, n, m, k, float(value), "exact")
        except UserError as exc:
            if not (settings.fallback and name == "random" and exc.field == "method"):
                raise
            placement = settings.build(name)
            method = "montecarlo"
    assert placement is not None
    unit = 1 if settings.failure_mode == "machines" else settings.domain_size
    assert unit is not None
    if method == "enumerate":
        value = enumerate_probability(placement, k, domain_size=unit, limit=settings.enumeration_limit)
        return _record(name, n, m, k, float(value), "enumerate")
    estimate = montecarlo_probability(
        placement, k, samples=settings.samples, rng=rng, domain_size=unit, confidence=settings.confidence
    )
    return _record(name, n, m, k, estimate.estimate, "montecarlo", estimate.ci_low, estimate.ci_high)


def _record(
    name: str, n: int, m: int, k: int, p: float, method: str, lo: float | None = None, hi: float | None = None
) -> dict[str, object]:
    return dict(zip(TABLE_KEYS, (name, n, m, k, p, method, lo, hi), strict=True))
