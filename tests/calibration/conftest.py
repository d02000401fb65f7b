"""Fixtures of the calibration tests: a seeded Generator and synthetic runs of three shard sizes."""

from synthetic_measurements import rng, sized_runs  # noqa: F401
