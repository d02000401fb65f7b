"""The one confidence interval of the project: Student-t over independent runs, clipped to the range.

`summary_table`, the adaptive sweeps and every figure table use these functions, so a number and its
interval read the same wherever they are printed. Seeds are few (3 by default), so the interval is
Student-t, not normal; an interval never runs past what the quantity can be ([0, 1] for a ratio,
[0, ∞) for a duration): the clipped bounds are reported, the half-width before clipping is what an
adaptive sweep compares with its target.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
RATIO_RANGE = (0.0, 1.0)
"""Range of a ratio or a probability (the effective training time ratio, a recovery share)."""
NON_NEGATIVE = (0.0, math.inf)
"""Range of a duration or a count."""
UNBOUNDED = (-math.inf, math.inf)


def _finite(values: object) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def half_width(values: object, confidence: float = CONFIDENCE) -> float:
    """Student-t half-width t(1 − α/2, n − 1)·s/√n of the mean of independent samples (NaN below 2)."""
    x = _finite(values)
    n = len(x)
    if n < 2:
        return math.nan
    from scipy.special import stdtrit  # the t quantile; imported here, it costs a second of start-up

    return float(stdtrit(n - 1, 0.5 + confidence / 2.0) * x.std(ddof=1) / math.sqrt(n))


def mean_ci(
    values: object, bounds: tuple[float, float] = UNBOUNDED, confidence: float = CONFIDENCE
) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the mean and its Student-t interval, clipped to `bounds`.

    NaNs and infinities are dropped; one sample has a NaN interval, none a NaN mean.
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    half = half_width(x, confidence)
    if math.isnan(half):
        return (mean, math.nan, math.nan, n)
    low, high = bounds
    return (mean, max(low, mean - half), min(high, mean + half), n)
