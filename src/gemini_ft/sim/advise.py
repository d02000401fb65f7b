"""`advise`: the checkpoint configuration with the highest effective training time ratio for a scenario.

It searches checkpoint policy × in-memory interval × replicas × placement × standby (spare) machines,
skipping candidates the schema rejects (CPU memory) or the placement cannot build, with common random
numbers (every candidate runs the same seeds, so it sees the same failures) and successive halving
(all candidates on a few seeds, the best third on η times as many, ..., keeping beside them any
cheaper candidate within noise of the leader). The recommendation is the
cheapest finalist (fewest spare machines, then least CPU memory) whose ratio the highest one does not
beat beyond the 95% interval of their paired difference. Spare counts are tried around the
scenario's own (0, S/2, S, 2S). Candidates run through
`gemini_ft.sim.sweep.run_tasks`, so worker processes and Dask serve it as they serve sweeps. `format_advice`
renders the result as text; `gemini_ft.analysis.advise_figures` draws the frontier.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from gemini_ft.common.errors import UserError
from gemini_ft.placement.registry import REGISTRY, check_placement
from gemini_ft.scenarios.schema import GIB, Scenario
from gemini_ft.sim.intervals import half_width
from gemini_ft.sim.streams import check_seed
from gemini_ft.sim.sweep import Task, run_tasks


@dataclass(frozen=True)
class SearchSpace:
    """The values tried per dimension; in-memory interval, replicas and placement matter for gemini only."""

    policies: tuple[str, ...] = ("gemini", "strawman", "highfreq", "young-daly")
    in_memory_every_iterations: tuple[int, ...] = (1, 2, 4)
    replicas: tuple[int, ...] = (1, 2, 3)
    placements: tuple[str, ...] = ("group", "mixed", "ring")
    """In order of preference among configurations that do equally well: group placement gives every
    checkpoint the best odds of surviving simultaneous failures (the paper's Theorem 1), mixed is group
    where m does not divide N, ring is the baseline."""
    standby_machines: tuple[int, ...] | None = None
    """None: around the scenario's own count S (0, S/2, S, 2S), or 0, 2 and 8 when it has none."""

    def standby_for(self, scenario: Scenario) -> tuple[int, ...]:
        if self.standby_machines is not None:
            return self.standby_machines
        # The scenario's own pool must be a candidate: a search that only tried fewer spares than it
        # has would recommend something worse than what the user runs today (0, 2, 8 against
        # llama3-405b-ops's 16 did).
        own = scenario.cluster.standby_machines
        return tuple(sorted({0, own // 2, own, 2 * own})) if own else (0, 2, 8)


@dataclass(frozen=True)
class Candidate:
    """One configuration under evaluation."""

    policy: str
    in_memory_every_iterations: int
    replicas: int
    placement: str
    standby_machines: int

    def overrides(self) -> dict[str, Any]:
        return {
            "checkpoint.policy": self.policy,
            "checkpoint.in_memory_every_iterations": self.in_memory_every_iterations,
            "checkpoint.replicas": self.replicas,
            "checkpoint.placement": self.placement,
            "cluster.standby_machines": self.standby_machines,
        }


@dataclass
class Advice:
    """The best configuration, the runner-up, what each costs, and every evaluated candidate."""

    scenario: str
    best: pd.Series
    runner_up: pd.Series | None
    candidates: pd.DataFrame
    """One row per evaluated candidate: its settings, cost, seeds, mean ratio and CI over its seeds, the
    mean over the seeds every candidate ran (`ratio_common_seeds`), the halving round it reached, its
    place in the search space's order (`preference`: the lower wins among equals) and whether it is on
    the frontier."""
    best_minus_runner_up: tuple[float, float] | None
    """Paired (common seeds) mean difference of the ratios and its 95% Student-t CI half-width."""
    runs: int
    skipped: dict[str, str] = field(default_factory=dict)
    """Candidates left out, with why."""
    equivalents: list[str] = field(default_factory=list)
    """Other configurations as good as the best on every seed, at the same cost (e.g. placements that
    never lose a checkpoint in these runs); the best is the first of them in the search space's order."""

    def describe(self) -> str:
        """The advice as text, as `gemini-ft advise` prints it."""
        return format_advice(self)

    def summary(self) -> dict[str, Any]:
        """The recommendation as plain, JSON-friendly values (stored beside the candidates table)."""

        def choice(row: pd.Series | None) -> dict[str, Any] | None:
            if row is None:
                return None
            names = (
                "label",
                *Candidate.__dataclass_fields__,
                "cpu_memory_gib",
                "seeds",
                "ratio",
                "ratio_ci95",
            )
            return {name: _plain(row[name]) for name in names}

        difference = None
        if self.best_minus_runner_up is not None:
            mean, half = self.best_minus_runner_up
            difference = {"mean": _plain(mean), "ci95": _plain(half)}
        return {
            "scenario": self.scenario,
            "best": choice(self.best),
            "runner_up": choice(self.runner_up),
            "best_minus_runner_up": difference,
            "equivalents": self.equivalents,
            "runs": self.runs,
            "skipped": self.skipped,
        }


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON writes (NaN as None)."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def advise(
    scenario: Scenario,
    *,
    workers: int = 1,
    dask: str | None = None,
    budget: int = 600,
    seed: int | None = None,
    space: SearchSpace | None = None,
    min_seeds: int = 2,
    max_seeds: int = 16,
    eta: int = 3,
    halving: bool = True,
    progress: bool = False,
) -> Advice:
    """Search `space` for the highest effective training time ratio of `scenario`.

    `budget` caps the number of simulated runs (the first round always runs); seeds are `seed`
    (default run.base_seed) onwards, the same for every candidate. With `halving=False` every candidate
    runs `max_seeds` seeds (the exhaustive reference). `progress` shows a bar on stderr whose total
    grows as each round's runs become known."""
    if eta < 2 or min_seeds < 1 or max_seeds < min_seeds:
        raise UserError("advise", (eta, min_seeds, max_seeds), "needs eta ≥ 2 and 1 ≤ min_seeds ≤ max_seeds")
    base = scenario.model_copy(update={"sweep": {}})
    first_seed = scenario.run.base_seed if seed is None else seed
    check_seed(first_seed)  # before any work, not in the first worker
    scenarios, skipped = _candidates(base, space or SearchSpace())
    if not scenarios:
        raise UserError("advise", scenario.name, "no candidate configuration fits this scenario")
    ratios: dict[Candidate, dict[int, float]] = {c: {} for c in scenarios}
    reached = dict.fromkeys(scenarios, 0)
    survivors = list(scenarios)
    seeds = max_seeds if not halving else min_seeds
    runs, round_ = 0, 0
    # The bar appears once its first round's runs are counted (its total grows round by round).
    with tqdm(total=0, desc="advise", unit="run", disable=not progress, delay=0.5) as bar:
        while True:
            seed_range = range(first_seed, first_seed + seeds)
            bar.set_postfix_str(
                f"round {round_ + 1}: {len(survivors)} candidates x {seeds} seeds", refresh=False
            )
            runs += _evaluate(survivors, scenarios, ratios, seed_range, workers, dask, bar)
            for candidate in survivors:
                reached[candidate] = round_
            if not halving or len(survivors) <= 2 or seeds >= max_seeds:
                break
            survivors = _next_round(survivors, max(2, math.ceil(len(survivors) / eta)), ratios, scenarios)
            keep = len(survivors)
            next_seeds = min(max_seeds, seeds * eta)
            affordable = seeds + (budget - runs) // keep
            if affordable <= seeds:
                break
            seeds, round_ = min(next_seeds, affordable), round_ + 1
    table = _table(scenarios, ratios, reached, range(first_seed, first_seed + min(seeds, min_seeds)))
    finalists = table[table["round"] == round_].sort_values(
        ["ratio", "spare_machines", "cpu_memory_gib", "preference"], ascending=[False, True, True, True]
    )
    # The recommendation is the cheapest finalist (fewest spares, then least CPU memory) that the top
    # one does not beat significantly on their common seeds: paying for a difference within noise is
    # what a capacity planner asks the tool to avoid. Exact ties (common random numbers make
    # equivalent configurations equal) go to the cheaper one too.
    top = finalists.iloc[0]
    as_good = [
        index
        for index, row in finalists.iterrows()
        if not _significantly_better(ratios[_key(top)], ratios[_key(row)])
    ]
    ranked = pd.concat(
        [
            finalists.loc[as_good].sort_values(
                ["spare_machines", "cpu_memory_gib", "ratio", "preference"],
                ascending=[True, True, False, True],
            ),
            finalists.drop(index=as_good),
        ]
    )
    # Ties go to the search space's order (`preference`), so the first of the equivalent configurations
    # is the preferred one (see `SearchSpace.placements`). The runner-up is the next configuration that
    # differs: an equivalent one tells the user nothing new.
    best = ranked.iloc[0]
    equivalent = [index for index, row in ranked.iterrows() if _equivalent(best, row, ratios)]
    rest = ranked.drop(index=equivalent)
    # Nor is a configuration the best dominates (no higher ratio, no cheaper: e.g. more spares that are
    # never needed), while one that trades cost against ratio remains.
    trade_offs = rest[
        (rest["ratio"] > best["ratio"])
        | (rest["spare_machines"] < best["spare_machines"])
        | (rest["cpu_memory_gib"] < best["cpu_memory_gib"] - 1e-9)
    ]
    runner_up = trade_offs.iloc[0] if len(trade_offs) else rest.iloc[0] if len(rest) else None
    difference = None
    if runner_up is not None:
        diffs = _paired(ratios[_key(best)], ratios[_key(runner_up)])
        difference = (float(diffs.mean()), half_width(diffs))
    equivalents = [ranked.loc[index, "label"] for index in equivalent[1:]]
    return Advice(scenario.name, best, runner_up, table, difference, runs, skipped, equivalents)


def _next_round(
    survivors: list[Candidate],
    keep: int,
    ratios: dict[Candidate, dict[int, float]],
    scenarios: dict[Candidate, Scenario],
) -> list[Candidate]:
    """The `keep` best by mean ratio, plus each cheaper one the leader does not beat significantly.

    The recommendation is the cheapest finalist within noise of the top one, so a candidate cheaper than
    every one kept whose ratio is within noise of the leader's could still be it: pruning it on a few
    seeds would settle the cost question by chance (16 spares of llama3-405b-ops, 0.9509 beside the
    0.9511 of 32, were pruned so). Equal means (equivalent configurations under common seeds) rank the
    cheaper one first.
    """

    def cost(c: Candidate) -> tuple[int, float]:
        return c.standby_machines, scenarios[c].cpu_memory_needed_gib

    ranked = sorted(survivors, key=lambda c: (-_mean(ratios[c]), *cost(c)))
    kept, leader = ranked[:keep], ratios[ranked[0]]
    cheapest = min(cost(c) for c in kept)
    return kept + [
        c for c in ranked[keep:] if cost(c) < cheapest and not _significantly_better(leader, ratios[c])
    ]


def _equivalent(a: pd.Series, b: pd.Series, ratios: dict[Candidate, dict[int, float]]) -> bool:
    """Whether two evaluated candidates cost the same and gave the same ratio on the same seeds."""
    return (
        a["spare_machines"] == b["spare_machines"]
        and math.isclose(a["cpu_memory_gib"], b["cpu_memory_gib"])
        and ratios[_key(a)] == ratios[_key(b)]
    )


def _paired(a: dict[int, float], b: dict[int, float]) -> np.ndarray:
    """Differences a − b on the seeds both ran (common random numbers: a paired comparison)."""
    return np.array([a[seed] - b[seed] for seed in sorted(set(a) & set(b))])


def _significantly_better(a: dict[int, float], b: dict[int, float]) -> bool:
    """Whether `a`'s ratio beats `b`'s beyond the 95% interval of their paired difference."""
    diffs = _paired(a, b)
    if not len(diffs) or not np.any(diffs):
        return False  # equal on every common seed: equivalent configurations
    half = half_width(diffs)
    return bool(diffs.mean() > (0.0 if math.isnan(half) else half))


def _candidates(base: Scenario, space: SearchSpace) -> tuple[dict[Candidate, Scenario], dict[str, str]]:
    """Every distinct configuration of the space that the schema and the placement accept."""
    found: dict[Candidate, Scenario] = {}
    skipped: dict[str, str] = {}
    machines = base.cluster.machines
    for policy in space.policies:
        gemini = policy == "gemini"
        for standby in space.standby_for(base):
            if not gemini:
                # In-memory settings do not matter: keep the scenario's, so the candidate is the scenario's.
                ckpt = base.checkpoint
                options = [(ckpt.in_memory_every_iterations, ckpt.replicas, ckpt.placement)]
            else:
                options = []
                for m in space.replicas:
                    # With one replica nothing is sent: the placement does not matter.
                    for placement in space.placements[:1] if m == 1 else space.placements:
                        options += [(k, m, placement) for k in space.in_memory_every_iterations]
            for k, m, placement in options:
                candidate = Candidate(policy, k, m, placement, standby)
                if candidate in found:
                    continue
                try:
                    if gemini:
                        check_placement(placement, machines, m, field="checkpoint.placement")
                        if REGISTRY[placement].needs_domain_size and base.cluster.failure_domain_size < 2:
                            raise UserError("checkpoint.placement", placement, "needs failure domains")
                    found[candidate] = base.with_overrides(candidate.overrides(), "advise")
                except UserError as exc:  # InvalidScenario is a UserError
                    skipped[_label(candidate)] = str(exc).splitlines()[0]
    return found, skipped


def _evaluate(
    survivors: list[Candidate],
    scenarios: dict[Candidate, Scenario],
    ratios: dict[Candidate, dict[int, float]],
    seeds: range,
    workers: int,
    dask: str | None,
    bar: tqdm,
) -> int:
    """Run the (candidate, seed) pairs not yet run, counting them on `bar`; returns how many ran."""
    tasks, owner = [], {}
    for candidate in survivors:
        for seed in seeds:
            if seed not in ratios[candidate]:
                task = Task(len(tasks), {}, scenarios[candidate], seed)
                tasks.append(task)
                owner[task.point] = candidate
    bar.total += len(tasks)
    bar.refresh()
    for task, row, _ in run_tasks(tasks, workers, dask, failures=False):
        ratios[owner[task.point]][task.seed] = float(row["effective_ratio"])
        bar.update()
    return len(tasks)


def _mean(values: dict[int, float]) -> float:
    return float(np.mean(_by_seed(values)))


def _by_seed(values: dict[int, float]) -> np.ndarray:
    """A candidate's ratios in seed order. Runs finish (and are recorded) in any order with workers, and a
    float sum depends on its order: equal ratios must give equal means, bit for bit."""
    return np.array([values[seed] for seed in sorted(values)])


def _key(row: pd.Series) -> Candidate:
    return Candidate(
        row["policy"],
        int(row["in_memory_every_iterations"]),
        int(row["replicas"]),
        row["placement"],
        int(row["standby_machines"]),
    )


def _label(candidate: Candidate) -> str:
    if candidate.policy != "gemini":
        return f"{candidate.policy}, {candidate.standby_machines} spare(s)"
    return (
        f"gemini every {candidate.in_memory_every_iterations} iteration(s), m = {candidate.replicas},"
        f" {candidate.placement}, {candidate.standby_machines} spare(s)"
    )


def cpu_memory_gib(scenario: Scenario) -> float:
    """CPU memory per machine the checkpoints take: m shards for gemini, one serialized shard otherwise."""
    copies = scenario.checkpoint.replicas if scenario.checkpoint.policy == "gemini" else 1
    return scenario.ckpt_bytes_per_machine * copies / GIB


def _table(
    scenarios: dict[Candidate, Scenario],
    ratios: dict[Candidate, dict[int, float]],
    reached: dict[Candidate, int],
    common: range,
) -> pd.DataFrame:
    rows = []
    for preference, (candidate, scenario) in enumerate(scenarios.items()):
        values = _by_seed(ratios[candidate])
        half = half_width(values)  # the sweep summary's Student-t interval (NaN for one seed)
        rows.append(
            {
                "label": _label(candidate),
                **{name: getattr(candidate, name) for name in Candidate.__dataclass_fields__},
                "cpu_memory_gib": cpu_memory_gib(scenario),
                "spare_machines": candidate.standby_machines,
                "seeds": len(values),
                "ratio": float(values.mean()),
                "ratio_ci95": half,
                "ratio_common_seeds": float(np.mean([ratios[candidate][s] for s in common])),
                "round": reached[candidate],
                "preference": preference,
            }
        )
    # Stable: equal ratios keep the search space's order, which is the preference among equivalents.
    table = pd.DataFrame(rows).sort_values("ratio", ascending=False, ignore_index=True, kind="stable")
    table["frontier"] = _pareto(table)
    return table


def _pareto(table: pd.DataFrame) -> pd.Series:
    """Candidates no other dominates: none is at least as good on ratio, spare machines and CPU memory and
    strictly better on one (ratios compared on the seeds every candidate ran, so the comparison is paired).
    More spares that never run out give the same ratio on common seeds, so they are off the frontier;
    equivalent candidates (same ratio and costs, e.g. placements that lose no checkpoint) all stay."""
    ratio = table["ratio_common_seeds"].to_numpy()
    spares = table["spare_machines"].to_numpy()
    memory = table["cpu_memory_gib"].to_numpy()
    cheaper_memory = memory < memory[:, None] - 1e-9  # [i, j]: j needs less memory than i
    no_more_memory = memory <= memory[:, None] + 1e-9
    at_least = (ratio >= ratio[:, None]) & (spares <= spares[:, None]) & no_more_memory
    strictly = (ratio > ratio[:, None]) | (spares < spares[:, None]) | cheaper_memory
    return pd.Series(~(at_least & strictly).any(axis=1), index=table.index)


ADVICE = "advice"
"""Metadata key (after `gemini_ft.`) of the recommendation, as JSON, in a candidates file."""


def write_advice(advice: Advice, scenario: Scenario, path: Path) -> Path:
    """The candidates table at `path` (Parquet, written atomically), with the recommendation
    (`Advice.summary`, JSON) and the resolved scenario (TOML) in its metadata."""
    from gemini_ft.common.results_io import SCENARIO, write_table
    from gemini_ft.scenarios.loader import to_toml

    metadata = {SCENARIO: to_toml(scenario), ADVICE: json.dumps(advice.summary())}
    return write_table(advice.candidates, path, metadata)


def format_advice(advice: Advice) -> str:
    """The advice as text: best, runner-up, their costs and how sure the ranking is."""
    lines = [f"advice for {advice.scenario}: {len(advice.candidates)} candidates, {advice.runs} runs"]
    for title, row in (("best", advice.best), ("runner-up", advice.runner_up)):
        if row is None:
            continue
        ci = "" if math.isnan(row["ratio_ci95"]) else f" ± {row['ratio_ci95']:.4f}"
        lines.append(
            f"  {title:9}: {row['label']}\n"
            f"             effective ratio {row['ratio']:.4f}{ci} (95% CI over {row['seeds']} seeds);"
            f" costs {row['cpu_memory_gib']:.1f} GiB CPU memory per machine, {row['spare_machines']} spare"
            " machine(s)"
        )
        if title == "best" and advice.equivalents:
            lines.append(
                "             as good on every seed, at the same cost: " + "; ".join(advice.equivalents)
            )
    if advice.best_minus_runner_up is not None:
        diff, half = advice.best_minus_runner_up
        verdict = "significant" if not math.isnan(half) and diff > half else "within noise"
        lines.append(f"  best − runner-up: {diff:+.4f} ± {half:.4f} on common seeds ({verdict})")
        if diff < 0:
            lines.append("  (the best is the cheapest candidate within noise of the highest ratio)")
    frontier = advice.candidates[advice.candidates["frontier"]].sort_values("preference")
    # Candidates at the same ratio (common seeds) and cost are one point of the frontier: one line each,
    # the first in the search space's order named.
    points = frontier.groupby(["ratio_common_seeds", "spare_machines", "cpu_memory_gib"], sort=False)[
        "label"
    ].agg(list)
    points = points.sort_index(level=0, ascending=False, sort_remaining=False, kind="stable")
    lines.append(
        f"  frontier (no candidate does as well for less): {len(points)} point(s), {len(frontier)}"
        " candidate(s) (ratio on the seeds all candidates ran):"
    )
    for (ratio, spares, memory), labels in points.head(8).items():
        more = f"  (and {len(labels) - 1} more at the same ratio and cost)" if len(labels) > 1 else ""
        lines.append(f"    {ratio:.4f}  {spares:>4} spares  {memory:8.1f} GiB  {labels[0]}{more}")
    if advice.skipped:
        lines.append(f"  skipped {len(advice.skipped)} candidate(s) the scenario cannot hold, e.g.:")
        name, why = next(iter(advice.skipped.items()))
        lines.append(f"    {name}: {why}")
    return "\n".join(lines)
