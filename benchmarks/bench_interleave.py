"""How fast is the interleaving model the simulator calls once per run (`iteration_cost`, budget 50 ms)?

For each preset with an architecture: the uncached `iteration_cost` time, next to a reference measured
in the same run — replaying the contention-free baseline timeline in SimPy — and the ratio.
Run: `python benchmarks/bench_interleave.py`.
"""

from __future__ import annotations

import timeit

from gemini_ft.scenarios.loader import load_scenario, preset_names
from gemini_ft.sim.interleave import _cached_cost, iteration_cost
from gemini_ft.sim.interleave_exec import execute
from gemini_ft.sim.interleave_timeline import build_timeline

REPEATS = 10


def main() -> None:
    for name in preset_names():
        scenario = load_scenario(name)
        if scenario.model.layers is None or scenario.model.hidden_size is None:
            continue

        def uncached(scenario=scenario):
            _cached_cost.cache_clear()
            return iteration_cost(scenario)

        def reference(scenario=scenario):
            return execute(build_timeline(scenario), None, gpu_to_cpu_bytes_per_s=1e10)

        cost_s = min(timeit.repeat(uncached, number=1, repeat=REPEATS))
        reference_s = min(timeit.repeat(reference, number=1, repeat=REPEATS))
        print(
            f"{name}: iteration_cost {cost_s * 1e3:.1f} ms (budget 50 ms)"
            f" | reference: baseline timeline replay {reference_s * 1e3:.1f} ms | ratio {cost_s / reference_s:.2f}x"
        )


if __name__ == "__main__":
    main()
