"""Fixtures for the analysis tests."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_data import make_measurements, make_summary


@pytest.fixture
def summary() -> pd.DataFrame:
    return make_summary()


@pytest.fixture
def measurements() -> pd.DataFrame:
    return make_measurements()
