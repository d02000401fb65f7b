"""The paper-vs-reproduction findings: computed from real probabilities and from small summaries."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_data import make_summary

from analysis.findings import findings_frame, placement_finding, scale_finding, wasted_time_finding
from analysis.report import recovery_probability_data
from analysis.tables import WASTED_COMPONENTS
from scenarios.errors import UserError


def test_placement_finding_reproduces_93_3_percent() -> None:
    table = recovery_probability_data([8, 16, 32], [2, 3], [2, 3])
    finding = placement_finding(table)
    assert finding.holds
    assert "group = 93.3%, ring = 86.7% at N = 16, m = 2, k = 2" in finding.obtained


def test_placement_finding_detects_ring_beating_group() -> None:
    table = pd.DataFrame(
        {
            "strategy": ["group", "ring"],
            "machines": 16,
            "replicas": 2,
            "failures": 2,
            "probability": [14 / 15, 0.95],
        }
    )
    assert not placement_finding(table).holds


def _policy_runs(
    eq1_s: dict[str, float], machines: int = 16, ratio: dict[str, float] | None = None
) -> pd.DataFrame:
    rows = []
    for policy, seconds in eq1_s.items():
        for seed in range(2):
            components = {f"wasted_{c}_s": 0.0 for c in WASTED_COMPONENTS}
            components["wasted_checkpoint_s"] = seconds
            components["wasted_detection_s"] = 60.0
            rows.append(
                {
                    "policy": policy,
                    "seed": seed,
                    "machines": machines,
                    "failure_rate_per_machine_per_day": 0.015,
                    "failures": 1,
                    "ckpt_time_s": seconds,
                    "wasted_s": seconds + 60.0,
                    "effective_ratio": (ratio or {}).get(policy, 0.5),
                    **components,
                }
            )
    return pd.DataFrame(rows)


def test_wasted_time_finding_judges_the_eq1_ratio() -> None:
    holds = wasted_time_finding(_policy_runs({"gemini": 60.0, "highfreq": 1200.0}))
    assert holds.holds and "(20.0×)" in holds.obtained and "(10.5×)" in holds.obtained
    assert not wasted_time_finding(_policy_runs({"gemini": 600.0, "highfreq": 1200.0})).holds


def test_scale_finding() -> None:
    good = _policy_runs(
        {"gemini": 1, "highfreq": 1, "strawman": 1}, 1000, {"gemini": 0.91, "highfreq": 0.4, "strawman": 0.1}
    )
    assert scale_finding(good).holds
    close = _policy_runs(
        {"gemini": 1, "highfreq": 1, "strawman": 1}, 1000, {"gemini": 0.91, "highfreq": 0.85, "strawman": 0.1}
    )
    assert not scale_finding(close).holds
    with pytest.raises(UserError, match="N=1000"):
        scale_finding(make_summary(machines=(16,)))


def test_findings_frame_columns() -> None:
    frame = findings_frame([placement_finding(recovery_probability_data([16], [2], [2]))])
    assert list(frame.columns) == ["claim", "paper", "obtained", "holds", "test"]
