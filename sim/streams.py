"""A run's seed and the named random streams spawned from it.

Every seed enters the simulator here, from the command line or the Python API (`random_streams`), so
a bad one is refused here as the user's error (`check_seed`). Each stream's generator is built where
the run draws from it (`np.random.default_rng(stream)`): most runs use only one or two.
"""

from __future__ import annotations

import numbers

import numpy as np

from scenarios.errors import UserError

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
