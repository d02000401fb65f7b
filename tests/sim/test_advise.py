"""`advise`: candidates within the schema's limits, common seeds, and a recommendation as good as the
best of an exhaustive grid within its confidence interval."""

from __future__ import annotations

import pandas as pd
import pytest

from gemini_ft.analysis.advise_figures import frontier_figure
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.advise import (
    Candidate,
    SearchSpace,
    _next_round,
    _pareto,
    _significantly_better,
    _table,
    advise,
    format_advice,
)

SPACE = SearchSpace(
    policies=("gemini", "strawman", "young-daly"),
    in_memory_every_iterations=(1, 8),
    replicas=(1, 2, 3),
    placements=("group", "ring"),
    standby_machines=(0, 1),
)


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(
        "gpt2-100b-p4d",
        {"run.duration_days": 10, "failures.rate_per_machine_per_day": 0.1, "cluster.cpu_memory_gib": 300},
    )


def test_recommendation_is_within_the_ci_of_the_exhaustive_best(scenario) -> None:
    halving = advise(scenario, space=SPACE, min_seeds=2, max_seeds=8)
    exhaustive = advise(scenario, space=SPACE, max_seeds=8, halving=False)
    table = exhaustive.candidates.set_index("label")
    best = exhaustive.best
    recommended = table.loc[halving.best["label"]]
    # ratio_ci95 is the sweep summary's Student-t half-width over the 8 seeds (t(0.975, 7) = 2.365), no
    # longer z = 1.96: the interval this bound allows is 21% wider than it was, as wide as the interval
    # every other table of the project prints for 8 seeds.
    assert best["ratio"] - recommended["ratio"] <= best["ratio_ci95"] + 1e-12
    assert halving.runs < exhaustive.runs  # successive halving ran fewer simulations
    # Every candidate of the exhaustive search ran the same seeds (common random numbers).
    assert set(exhaustive.candidates["seeds"]) == {8}


def test_candidates_respect_cpu_memory_and_placement_limits(scenario) -> None:
    # 100B x 12 B / 16 machines = 70 GiB per shard: 3 replicas need 210 GiB, more than 200 GiB.
    tight = scenario.with_overrides({"cluster.cpu_memory_gib": 200})
    advice = advise(tight, space=SPACE, min_seeds=2, max_seeds=2)
    gemini = advice.candidates[advice.candidates["policy"] == "gemini"]
    assert set(gemini["replicas"]) == {1, 2}
    assert any("cpu_memory_gib" in why for why in advice.skipped.values())
    assert (advice.candidates["cpu_memory_gib"] <= 200).all()
    text = format_advice(advice)
    assert "best" in text and "runner-up" in text and "GiB CPU memory" in text


def test_frontier_figure_has_two_panels(scenario) -> None:
    advice = advise(scenario, space=SPACE, min_seeds=2, max_seeds=2)
    assert advice.candidates["frontier"].any()
    figure = frontier_figure(advice.candidates, advice.best["label"])
    assert len(figure.axes) == 2
    # The recommendation is starred in both panels, where its ratio on the common seeds is.
    for ax in figure.axes:
        (star,) = [c for c in ax.collections if c.get_label() == "recommended"]
        assert star.get_offsets()[0][1] == advice.best["ratio_common_seeds"]
    with pytest.raises(ValueError, match="no candidate"):
        frontier_figure(advice.candidates, "not a candidate")


def test_the_cheapest_candidate_within_noise_of_the_top_is_recommended() -> None:
    # Paired differences on common seeds: a consistent 0.01 lead is significant, noise around 0 is not,
    # and equal ratios on every seed (equivalent configurations) never are.
    top = {0: 0.95, 1: 0.96, 2: 0.94, 3: 0.95}
    assert _significantly_better(top, {seed: ratio - 0.01 for seed, ratio in top.items()})
    noisy = {0: 0.96, 1: 0.95, 2: 0.95, 3: 0.94}
    assert not _significantly_better(top, noisy) and not _significantly_better(noisy, top)
    assert not _significantly_better(top, dict(top))


def test_halving_keeps_a_cheaper_candidate_within_noise_of_the_leader() -> None:
    def candidate(spares: int) -> Candidate:
        return Candidate("gemini", 1, 2, "group", spares)

    leader, second, close_cheap, far_cheap, close_costly = (candidate(n) for n in (8, 6, 0, 2, 10))
    ratios = {
        leader: {0: 0.950, 1: 0.960},
        second: {0: 0.949, 1: 0.959},
        close_cheap: {0: 0.949, 1: 0.958},  # within noise of the leader on two seeds, and cheaper
        far_cheap: {0: 0.850, 1: 0.860},  # cheaper, but 0.1 worse on both seeds: significantly worse
        close_costly: {0: 0.948, 1: 0.9585},  # within noise, but dearer than what is kept
    }
    scenarios = {
        c: Scenario().with_overrides({"cluster.standby_machines": c.standby_machines}) for c in ratios
    }
    assert _next_round(list(ratios), 2, ratios, scenarios) == [leader, second, close_cheap]
    # The top `keep` alone when nothing cheaper is within noise.
    del ratios[close_cheap]
    assert _next_round(list(ratios), 2, ratios, scenarios) == [leader, second]


def test_spares_are_searched_around_the_scenarios_own(scenario) -> None:
    assert SearchSpace().standby_for(scenario) == (0, 2, 8)  # the preset has no spares
    pool = scenario.with_overrides({"cluster.standby_machines": 16})
    assert SearchSpace().standby_for(pool) == (0, 8, 16, 32)
    assert SearchSpace(standby_machines=(1,)).standby_for(pool) == (1,)  # an explicit space wins
    advice = advise(pool, space=SearchSpace(policies=("strawman",)), min_seeds=2, max_seeds=2)
    assert sorted(advice.candidates["spare_machines"]) == [0, 8, 16, 32]
    finalists = advice.candidates[advice.candidates["round"] == advice.candidates["round"].max()]
    top = finalists.sort_values("ratio", ascending=False).iloc[0]
    best = advice.best
    # Never dearer than the top finalist.
    assert (best["spare_machines"], best["cpu_memory_gib"]) <= (top["spare_machines"], top["cpu_memory_gib"])


def test_the_frontier_drops_a_candidate_that_costs_more_for_the_same_ratio() -> None:
    """Weak dominance: 8 spares that never run out give the 2-spare ratio on common seeds, so only the
    2-spare candidate is on the frontier; equal candidates (ratio and costs) both stay, and one that is
    cheaper in memory stays beside a better but dearer one."""
    table = pd.DataFrame(
        {
            "ratio_common_seeds": [0.95, 0.95, 0.95, 0.90, 0.96, 0.94],
            "spare_machines": [2, 8, 2, 0, 8, 2],
            "cpu_memory_gib": [2.2, 2.2, 2.2, 2.2, 4.4, 1.1],
        }
    )
    assert _pareto(table).tolist() == [True, False, True, True, True, True]


def test_equivalent_configurations_are_one_recommendation() -> None:
    """Placements that never lose a checkpoint give the same ratio on every seed at the same cost: the
    best is the preferred one (group, the paper's optimum), the others are named beside it, and the
    runner-up is a configuration that differs."""
    rare = load_scenario(
        "gpt2-100b-p4d",
        {"run.duration_days": 10, "failures.rate_per_machine_per_day": 0.01, "cluster.cpu_memory_gib": 300},
    )
    space = SearchSpace(
        policies=("gemini",),
        in_memory_every_iterations=(1,),
        replicas=(2,),
        placements=("group", "mixed", "ring"),
        standby_machines=(0, 2),
    )
    advice = advise(rare, space=space, min_seeds=4, max_seeds=4)
    spares = advice.best["spare_machines"]
    assert advice.best["placement"] == "group"
    assert advice.equivalents == [
        f"gemini every 1 iteration(s), m = 2, {placement}, {spares} spare(s)"
        for placement in ("mixed", "ring")
    ]
    assert advice.runner_up is not None and advice.runner_up["spare_machines"] != spares
    text = format_advice(advice)
    assert "as good on every seed, at the same cost: " + "; ".join(advice.equivalents) in text
    # The frontier names each point once.
    assert "(and 2 more at the same ratio and cost)" in text


def test_equal_ratios_recorded_in_another_order_have_equal_means() -> None:
    """With workers, runs finish in any order; (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in floats, and a
    last-bit difference in the mean would rank one of two equivalent configurations first by chance."""
    first, second = (Candidate("gemini", 1, 2, placement, 0) for placement in ("group", "ring"))
    ratios = {first: {0: 0.1, 1: 0.2, 2: 0.3}, second: {2: 0.3, 1: 0.2, 0: 0.1}}
    scenarios = dict.fromkeys(ratios, Scenario())
    table = _table(scenarios, ratios, dict.fromkeys(ratios, 0), range(3))
    assert table["ratio"].nunique() == 1 and list(table["placement"]) == ["group", "ring"]
