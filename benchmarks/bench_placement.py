"""How fast are the exact recovery probabilities at scale (N = 100,000 machines, m = 4, k = 1..16)?

Prints the time of one exact call for `group` and `ring` per k, next to references measured in the
same run that answer the same kind of question by brute force: one Monte Carlo call on the same
placement (k = 16, 10,000 samples) and one enumeration call (all C(24, 8) = 735,471 failure sets of
a 24-machine group placement), with the ratios. Run: `python benchmarks/bench_placement.py`.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import numpy as np

from gemini_ft.placement.layout import build_placement
from gemini_ft.placement.probability import exact_probability
from gemini_ft.placement.sampling import enumerate_probability, montecarlo_probability

MACHINES, REPLICAS, MAX_FAILURES = 100_000, 4, 16
REPEATS = 5


def best_of(function: Callable[[], object], repeat: int = REPEATS) -> float:
    return min(timeit.repeat(function, number=1, repeat=repeat))


def main() -> None:
    group = build_placement("group", MACHINES, REPLICAS)
    montecarlo_s = best_of(
        lambda: montecarlo_probability(group, MAX_FAILURES, samples=10_000, rng=np.random.default_rng(0)),
        repeat=3,
    )
    small = build_placement("group", 24, REPLICAS)
    enumerate_s = best_of(lambda: enumerate_probability(small, 8), repeat=1)
    print(
        f"reference: Monte Carlo, N = {MACHINES:,}, m = {REPLICAS}, k = {MAX_FAILURES}, 10,000 samples: {montecarlo_s * 1e3:.1f} ms"
    )
    print(
        f"reference: enumeration of C(24, 8) = 735,471 failure sets, m = {REPLICAS}: {enumerate_s * 1e3:.1f} ms"
    )
    totals = dict.fromkeys(("group", "ring"), 0.0)
    for k in range(1, MAX_FAILURES + 1):
        cells = []
        for strategy in totals:
            seconds = best_of(
                lambda strategy=strategy, k=k: exact_probability(strategy, MACHINES, REPLICAS, k)
            )
            totals[strategy] += seconds
            loss = float(1 - exact_probability(strategy, MACHINES, REPLICAS, k))
            cells.append(
                f"{strategy} {seconds * 1e6:7.1f} µs (1 − Pr = {loss:.2e};"
                f" Monte Carlo / exact {montecarlo_s / seconds:8.0f}x, enumeration / exact {enumerate_s / seconds:8.0f}x)"
            )
        print(f"k = {k:2d}: " + " | ".join(cells))
    for strategy, seconds in totals.items():
        print(
            f"{strategy}: all 16 values in {seconds * 1e3:.2f} ms"
            f" | ratio to one Monte Carlo call {montecarlo_s / seconds:.0f}x, to one enumeration {enumerate_s / seconds:.0f}x"
        )


if __name__ == "__main__":
    main()
