"""Shared pytest set-up: hypothesis profiles `dev` (random, fast) and `ci` (derandomized, more examples)."""

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Shared test data (analysis_data, synthetic_measurements, tracking_readers) is imported by the tests of
# more than one package, whatever order pytest collects them in.
for _folder in ("", "analysis", "calibration"):
    _path = str(Path(__file__).parent / _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)
