"""Fixtures of the CLI tests: a real-runner measurements table."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_data import make_measurements
from synthetic_measurements import rng, sized_runs  # noqa: F401


@pytest.fixture
def measurements() -> pd.DataFrame:
    return make_measurements()
