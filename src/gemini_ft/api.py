"""The Python API: what the `gemini-ft` subcommands do, as functions that return DataFrames.

    import gemini_ft as g
    scenario = g.load_scenario("gpt2-100b-p4d", {"cluster.machines": 64})
    results = g.simulate(scenario, seeds=3)      # .summary (one row per run), .failures (one per failure)
    table = g.summarize(results)                 # mean per policy with a 95% interval

Every function takes a scenario as a `Scenario`, a preset name or a TOML path, plus optional
overrides ({"section.field": value}); mistakes raise `gemini_ft.common.errors.UserError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gemini_ft.scenarios.loader import load_scenario as _load
from gemini_ft.scenarios.loader import preset_names
from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.results import Results, read_results, run_seeds, summary_table

if TYPE_CHECKING:
    from gemini_ft.sim.advise import Advice, SearchSpace

ScenarioLike = Scenario | str | Path

__all__ = [
    "Results", "Scenario", "advise", "calibrate", "interleave", "load_scenario", "placement_holders",
    "presets", "read_results", "recovery_odds", "simulate", "summarize", "sweep", "validate",
]  # fmt: skip


def presets() -> list[str]:
    """The names of the preset scenarios."""
    return preset_names()


def load_scenario(scenario: ScenarioLike, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """A validated scenario: a preset name, a TOML path or a `Scenario`, with {"section.field": value}
    overrides (an override of a swept field fixes it)."""
    if isinstance(scenario, Scenario):
        return scenario.with_overrides(overrides) if overrides else scenario
    return _load(scenario, dict(overrides or {}))


def simulate(
    scenario: ScenarioLike,
    overrides: Mapping[str, Any] | None = None,
    *,
    seeds: int | Sequence[int] | None = None,
    progress: bool = False,
) -> Results:
    """Simulate one scenario (its sweep table ignored) per seed: an int is a count from run.base_seed,
    a sequence lists the seeds; None uses run.seeds. `progress`: a bar once the seeds take over 1 s."""
    resolved = load_scenario(scenario, overrides).model_copy(update={"sweep": {}})
    if isinstance(seeds, int):
        resolved = resolved.with_overrides({"run.seeds": seeds})
        seeds = None
    return run_seeds(resolved, seeds, progress=progress)


def sweep(
    scenario: ScenarioLike,
    overrides: Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    workers: int = 1,
    dask: str | None = None,
    progress: bool = False,
) -> Results:
    """Every point of the scenario's [sweep] grid × its seeds; with `out`, resumable on disk."""
    from gemini_ft.sim.sweep import run_sweep

    return run_sweep(
        load_scenario(scenario, overrides),
        Path(out) if out is not None else None,
        workers=workers,
        dask=dask,
        progress=progress,
    )


def summarize(results: Results | pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean over seeds per group (default: scenario and policy) with the ratio's 95% interval."""
    summary = results.summary if isinstance(results, Results) else results
    return summary_table(summary, list(by or ["scenario", "policy"]))


def recovery_odds(
    machines: int,
    replicas: int,
    failures: Sequence[int] | None = None,
    *,
    strategies: Sequence[str] | None = None,
    method: str = "exact",
    samples: int = 100_000,
    seed: int = 0,
    failure_mode: str = "machines",
    domain_size: int | None = None,
) -> pd.DataFrame:
    """Probability that every checkpoint survives k simultaneous failures: one row per (strategy, k),
    with the Corollary 1 bound as its own rows where it applies."""
    from gemini_ft.placement.probability import TABLE_KEYS, probability_table

    rows = probability_table(
        strategies, machines, replicas, failures, method=method, samples=samples, seed=seed,
        failure_mode=failure_mode, domain_size=domain_size,
    )  # fmt: skip
    return pd.DataFrame(rows, columns=list(TABLE_KEYS))


def placement_holders(strategy: str, machines: int, replicas: int, *, domain_size: int | None = None,
                      seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Who holds whose checkpoint: one row per machine, `holders` listing the machine itself first."""
    import numpy as np

    from gemini_ft.placement.layout import build_placement

    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    layout = build_placement(strategy, machines, replicas, domain_size=domain_size, rng=rng)
    return pd.DataFrame(layout.table())


def interleave(
    scenario: ScenarioLike,
    overrides: Mapping[str, Any] | None = None,
    *,
    schemes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Checkpoint traffic inside one ZeRO-3 iteration (paper §5): one row per scheme."""
    from gemini_ft.sim.interleave import evaluate_schemes

    results = evaluate_schemes(load_scenario(scenario, overrides), list(schemes) if schemes else None)
    return pd.DataFrame([result.summary() for result in results])


def advise(
    scenario: ScenarioLike,
    overrides: Mapping[str, Any] | None = None,
    *,
    workers: int = 1,
    dask: str | None = None,
    seed: int | None = None,
    space: SearchSpace | None = None,
    progress: bool = False,
) -> Advice:
    """The checkpoint policy, in-memory interval, replicas, placement and spare machines with the
    highest effective training time ratio (common seeds, successive halving): `.best`, `.runner_up`,
    `.equivalents`, `.candidates` (one row per configuration tried) and `.describe()`, the text
    `gemini-ft advise` prints. `space` narrows or widens what is tried (`gemini_ft.sim.advise.SearchSpace`)."""
    from gemini_ft.sim.advise import advise as search

    return search(
        load_scenario(scenario, overrides),
        workers=workers,
        dask=dask,
        seed=seed,
        space=space,
        progress=progress,
    )


def calibrate(
    measurements: Sequence[str | Path], base: ScenarioLike = "gpt2-100b-p4d"
) -> tuple[Scenario, pd.DataFrame]:
    """Fit the simulator's parameters from real-run measurements: (calibrated scenario, parameter table
    with 95% intervals)."""
    from gemini_ft.calibration.fit import calibrate as fit
    from gemini_ft.calibration.measurements import load_runs
    from gemini_ft.calibration.overlay import calibrated_scenario

    resolved = load_scenario(base)
    calibration = fit(load_runs(list(measurements)), resolved)
    return calibrated_scenario(calibration, resolved), calibration.table()


def validate(scenario: ScenarioLike, measurements: Sequence[str | Path]) -> pd.DataFrame:
    """The scenario's predictions vs held-out measurements: one row per (run, quantity) with the error."""
    from gemini_ft.calibration.measurements import load_runs
    from gemini_ft.calibration.validate import compare

    return compare(load_scenario(scenario), load_runs(list(measurements)))
