"""A run's seed, the named random streams spawned from it, and the placement a run draws first.

Every seed enters the simulator here, from the command line or the Python API (`random_streams`), so
a bad one is refused here as the user's error (`check_seed`). Each stream's generator is built where
the run draws from it (`np.random.default_rng(stream)`): most runs use only one or two.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from gemini_ft.common.errors import UserError
from gemini_ft.placement.layout import Placement, build_placement, shared_placement

if TYPE_CHECKING:
    from gemini_ft.scenarios.schema import Scenario

STREAMS = (
    "failures",
    "placement",
    "operations",
    "thinning",
)  # new streams go last: the others keep their seeds


def check_seed(seed: object, field: str = "seed") -> None:
    """A seed is an integer ≥ 0 (numpy's SeedSequence takes nothing else); else a UserError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise UserError(field, seed, "must be an integer ≥ 0")


def random_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """One SeedSequence per run, spawned into named, independent streams."""
    check_seed(seed)
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return dict(zip(STREAMS, children, strict=True))


def scenario_placement(scenario: Scenario, stream: np.random.SeedSequence) -> Placement:
    """One run's placement: drawn from `stream` for `random`, else the same for every seed (built once
    per process and shared, read-only). A field error names the scenario's field."""
    ckpt, cluster = scenario.checkpoint, scenario.cluster
    try:
        if ckpt.placement == "random":
            return build_placement(
                "random", cluster.machines, ckpt.replicas, rng=np.random.default_rng(stream)
            )
        return shared_placement(ckpt.placement, cluster.machines, ckpt.replicas, cluster.failure_domain_size)
    except UserError as exc:
        raise UserError(f"checkpoint.placement ({exc.field})", exc.value, exc.allowed) from None
