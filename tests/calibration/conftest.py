"""Fixtures of the calibration tests: a seeded Generator and synthetic runs of three shard sizes."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_measurements import synthetic_run


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20231023)


@pytest.fixture
def sized_runs(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Three runs of 1, 4 and 16 MiB shards on 2 machines × 2 ranks (enough sizes to separate α and B)."""
    return [
        synthetic_run(tmp_path / f"run{mib}" / "measurements.parquet", rng, shard_bytes=mib * 2**20, procs=2)
        for mib in (1, 4, 16)
    ]
