"""Adaptive replications: add seeds in batches until every point's interval is as narrow as asked.

`run_sweep(..., target_ci=H)` and `run_seeds(..., target_ci=H)` start from `run.seeds` seeds per
point, then after each round give every point whose Student-t 95% half-width of the effective
training time ratio (`gemini_ft.sim.intervals.half_width`) is still above H another batch of seeds, up to
`max_seeds`. The rule is the same for both; this module decides and reports, the callers run.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from gemini_ft.common.errors import UserError
from gemini_ft.sim.intervals import half_width

DEFAULT_MAX_SEEDS = 64
TARGET_METRIC = "effective_ratio"


@dataclass(frozen=True)
class AdaptivePolicy:
    """How seeds are added: the half-width to reach, the cap, the batch size (None = the seeds so far)."""

    target_ci: float
    max_seeds: int = DEFAULT_MAX_SEEDS
    batch: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_ci) and self.target_ci > 0):
            raise UserError("target_ci", self.target_ci, "must be a half-width > 0 (e.g. 0.005)")
        if self.max_seeds < 2:
            raise UserError("max_seeds", self.max_seeds, "at least 2 (an interval needs two seeds)")
        if self.batch is not None and self.batch < 1:
            raise UserError("seed_batch", self.batch, "at least 1")

    def more_seeds(self, values: Sequence[float]) -> int:
        """How many seeds to add to a point whose runs gave `values` (0: done or capped)."""
        n = len(values)
        if n >= self.max_seeds or (n >= 2 and half_width(values) <= self.target_ci):
            return 0
        batch = self.batch if self.batch is not None else max(2, n)
        return min(batch, self.max_seeds - n)


@dataclass
class AdaptiveReport:
    """What an adaptive run did: seeds and final half-width per point, and the points left at the cap."""

    target_ci: float
    max_seeds: int
    rounds: int = 0
    seeds: dict[Hashable, int] = field(default_factory=dict)
    half_widths: dict[Hashable, float] = field(default_factory=dict)

    @property
    def capped(self) -> list[Hashable]:
        """Points that reached `max_seeds` with a half-width still above the target."""
        return [
            point
            for point, width in self.half_widths.items()
            if not (width <= self.target_ci) and self.seeds[point] >= self.max_seeds
        ]

    @property
    def cap_hit(self) -> bool:
        return bool(self.capped)

    def record(self, values_by_point: Mapping[Hashable, Sequence[float]]) -> None:
        for point, values in values_by_point.items():
            self.seeds[point] = len(values)
            self.half_widths[point] = half_width(values)

    def describe(self) -> str:
        """One line for the CLI: reached or not, seeds used, worst half-width."""
        worst = max(self.half_widths.values(), default=math.nan)
        seeds = sorted(self.seeds.values())
        text = (
            f"target half-width {self.target_ci:g}: {len(seeds)} points, {seeds[0] if seeds else 0}–"
            f"{seeds[-1] if seeds else 0} seeds each after {self.rounds} rounds, worst half-width {worst:.4g}"
        )
        if self.cap_hit:
            text += (
                f"; {len(self.capped)} point(s) stopped at the cap of {self.max_seeds} seeds above the target"
            )
        return text
