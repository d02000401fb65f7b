"""Simulator speed: events do not grow with iterations; 1,024 machines × 30 days well under 1 s.

Targets (issue 12): 1,024 machines × 30 days ≤ 15 ms per seed with the operations model off and
≤ 40 ms with it on; 16,384 machines (× 30 days) ≤ 0.2 s per seed. Each is printed against its target.

The reference, measured in the same run, is the cheapest per-iteration design: a SimPy process that
yields one timeout per training iteration (and nothing else) over the same simulated time. Each line
prints our time, the reference's and the ratio, plus simulated machine-hours per wall-clock second.

    python benchmarks/bench_sim.py [--seeds 7] [--repeats 5] [--targets-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import simpy

from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.engine import simulate


def per_iteration_reference(iterations: int) -> float:
    """Seconds for SimPy to run one event per iteration."""
    env = simpy.Environment()

    def loop():
        for _ in range(iterations):
            yield env.timeout(1.0)

    env.process(loop())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def timed(scenario, seeds: int) -> tuple[float, list]:
    times, summaries = [], []
    for seed in range(seeds):
        start = time.perf_counter()
        summaries.append(simulate(scenario, seed).summary)
        times.append(time.perf_counter() - start)
    return statistics.median(times), summaries


def explain_ratio(summary: dict, iteration_s: float) -> str:
    """What the effective training time ratio of one run means, in terms of how often failures come.

    At 100,000 machines and 1.5% failing per day a failure arrives about once a minute, less than one
    iteration plus a recovery, so (almost) nothing trained survives: a ratio of 0 is the model's answer,
    not a simulator fault.
    """
    failures = int(summary["failures"])
    ratio = float(summary["effective_ratio"])
    if failures == 0:
        return f"effective ratio {ratio:.3f}: no failure in the run"
    gap_s = float(summary["duration_s"]) / failures
    overlapping = int(summary.get("simultaneous_failures", 0))
    lost = float(summary["wasted_s"]) / failures
    text = (
        f"effective ratio {ratio:.3f}: {failures:,} failures, one every {gap_s:,.1f} s on average "
        f"(iteration {iteration_s:g} s); {overlapping:,} landed while a recovery was under way; "
        f"{lost:,.1f} s wasted per failure"
    )
    if ratio < 0.01:
        text += (
            " — failures arrive faster than a recovery (and the next iteration) completes, so no "
            "progress survives; the cluster cannot train at this failure rate"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument(
        "--repeats", type=int, default=5, help="times each target (and each start-up command) is measured"
    )
    parser.add_argument("--targets-only", action="store_true", help="only the issue-12 per-seed targets")
    args = parser.parse_args()
    targets(args.seeds, args.repeats)
    startup(args.repeats)
    if args.targets_only:
        return

    print("events vs iteration time (1,024 machines, 30 days, gemini):")
    for iteration_s in (62.0, 6.2, 0.62):
        scenario = load_scenario(
            "gpt2-100b-p4d", {"cluster.machines": 1024, "model.iteration_time_s": iteration_s}
        )
        _, summaries = timed(scenario, 1)
        iterations = scenario.run.duration_days * 86400 / iteration_s
        print(
            f"  iteration {iteration_s:6.2f} s: {iterations:12,.0f} iterations, {summaries[0].events:6,} events"
        )

    for machines, seeds in ((1024, args.seeds), (100_000, 1)):
        scenario = load_scenario("gpt2-100b-p4d", {"cluster.machines": machines})
        median, summaries = timed(scenario, seeds)
        iterations = int(scenario.run.duration_days * 86400 / scenario.model.iteration_time_s)
        reference = per_iteration_reference(iterations)
        machine_hours = machines * scenario.run.duration_days * 24
        ratio = summaries[0].effective_ratio
        print(
            f"{machines:>7,} machines × {scenario.run.duration_days:g} days (gemini): median {median:.3f} s per seed"
            f" over {seeds} seed(s); per-iteration SimPy reference {reference:.3f} s; ratio {median / reference:.2f};"
            f" {machine_hours / median:,.0f} simulated machine-hours per second; effective ratio {ratio:.3f}"
        )
        print(f"  {explain_ratio(summaries[0].row(), scenario.model.iteration_time_s)}")


# The operations model of the llama3-405b-ops preset (repairs, a finite pool, bad machines, wrong
# diagnoses, retirement) on the 1,024-machine scenario.
OPERATIONS_ON = {
    "operations.enabled": True,
    "operations.bad_machine_fraction": 0.02,
    "operations.bad_rate_multiplier": 10.0,
    "operations.silent_repair_failure_fraction": 0.05,
    "operations.misdiagnosis_fraction": 0.05,
    "operations.retire_after_failures": 3,
    "operations.retire_window_days": 7.0,
    "cluster.standby_machines": 8,
}


def targets(seeds: int, repeats: int = 5) -> None:
    """The issue's per-seed targets: the median over `seeds` seeds (after one warm-up run), measured
    `repeats` times in a row.

    This VM's speed swings by tens of percent within seconds (other tenants; the CPU time moves with
    the wall time, so it is not stolen time). Each line gives the fastest repeat, which is what the
    machine does when nothing interferes (timeit's convention), and the median repeat, and judges the
    target on the fastest. The reference, SimPy alone on as many bare timeouts as the run has events,
    is measured after each repeat; the ratio pairs each repeat with its own reference."""
    cases = (
        ("1,024 machines x 30 days, operations off", {"cluster.machines": 1024}, 0.015),
        ("1,024 machines x 30 days, operations on ", {"cluster.machines": 1024, **OPERATIONS_ON}, 0.040),
        ("16,384 machines x 30 days, operations off", {"cluster.machines": 16384}, 0.2),
    )
    print(f"per-seed time: median over {seeds} seeds, fastest and median of {repeats} repeats")
    for label, overrides, target in cases:
        scenario = load_scenario("gpt2-100b-p4d", overrides)
        simulate(scenario, 10_000)  # warm-up: imports and the interleaving model's caches
        medians, ratios = [], []
        for _ in range(repeats):
            median, summaries = timed(scenario, seeds)
            events = int(statistics.median(s.events for s in summaries))
            reference = statistics.median(per_iteration_reference(events) for _ in range(seeds))
            medians.append(median)
            ratios.append(median / reference)
        fastest = min(medians)
        verdict = "meets" if fastest <= target else "MISSES"
        print(
            f"{label}: fastest {fastest * 1e3:7.1f} ms, median {statistics.median(medians) * 1e3:7.1f} ms"
            f" (repeats {', '.join(f'{m * 1e3:.1f}' for m in medians)}); target {target * 1e3:.0f} ms"
            f" ({verdict}); {summaries[0].failures} failures, {events:,} events;"
            f" ratio to SimPy alone on {events:,} bare timeouts {statistics.median(ratios):.1f}"
        )


# The libraries a one-seed `simulate` cannot do without, and nothing of ours: numpy (the random
# streams), simpy (the engine) and pydantic with one validated model (the scenario schema). The two
# settings are the ones the simulator's commands make before these imports (gemini_ft.cli).
LIBRARIES_ALONE = (
    "import os\n"
    "os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')\n"
    "os.environ.setdefault('PYDANTIC_DISABLE_PLUGINS', '__all__')\n"
    "import numpy, numpy.random, simpy\n"
    "from pydantic import BaseModel, Field\n"
    "class Model(BaseModel):\n"
    "    x: int = Field(1, description='one field')\n"
    "Model(x=2)\n"
)


def startup(repeats: int = 5) -> None:
    """CPU seconds of whole processes: `gemini-ft --help` and one 16-machine seed of `gemini-ft simulate`,
    beside `python -c pass` and the required libraries' imports alone, measured in the same run.

    As a user's machine runs them: each command runs once first with bytecode caching on (in a private
    PYTHONPYCACHEPREFIX, PYTHONDONTWRITEBYTECODE removed), so the measured runs load cached bytecode
    instead of compiling every module. The commands take turns in each of `repeats` rounds, so a drift
    in the machine's speed touches them alike; a ratio is the median of the rounds' ratios."""
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "numpy + simpy + pydantic alone": [sys.executable, "-c", LIBRARIES_ALONE],
        "gemini-ft --help": [sys.executable, "-m", "gemini_ft", "--help"],
        "gemini-ft simulate (16 machines, 1 seed)": [
            sys.executable, "-m", "gemini_ft", "simulate", "gpt2-100b-p4d", "--seeds", "1",
        ],
    }  # fmt: skip
    samples: dict[str, list[float]] = {label: [] for label in commands}
    with tempfile.TemporaryDirectory(prefix="gemini-ft-pycache-") as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for command in commands.values():  # warm-up: writes the bytecode the measured runs load
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        for _ in range(repeats):
            for label, command in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                samples[label].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    reference = samples["python -c pass"]
    print(f"start-up, CPU time of the whole process ({repeats} rounds, bytecode cached by a warm-up run):")
    for label, seconds in samples.items():
        ratio = statistics.median(s / r for s, r in zip(seconds, reference, strict=True))
        target = " (target 0.3 CPU-s)" if "simulate" in label else ""
        print(
            f"  {label}: fastest {min(seconds):.3f}, median {statistics.median(seconds):.3f} CPU-s,"
            f" {ratio:.1f}x python -c pass{target}"
        )


if __name__ == "__main__":
    main()
