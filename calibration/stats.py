"""Least-squares estimates with 95% confidence intervals (Student t), the building blocks of the fits.

`fit_affine` fits y = a + b·x (scipy.stats.linregress) and needs two distinct x; `fit_through`
fits y − a0 = b·x with a known intercept a0 (one x is enough); `fit_mean` is a constant with its
t interval. Each returns an `Estimate` per coefficient; an interval is NaN where n is too small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A fitted value with its 95% confidence interval and the number of points behind it."""

    value: float
    low: float
    high: float
    n: int

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True)
class AffineFit:
    """y = intercept + slope·x."""

    intercept: Estimate
    slope: Estimate


def _t(df: int) -> float:
    return float(stats.t.ppf(0.5 + LEVEL / 2, df)) if df > 0 else math.nan


def fit_affine(x: np.ndarray, y: np.ndarray) -> AffineFit:
    """Ordinary least squares of y on x; requires at least two distinct x values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if len(np.unique(x)) < 2:
        raise ValueError("an affine fit needs at least two distinct x values")
    result = stats.linregress(x, y)
    t = _t(n - 2)
    slope_se = result.stderr if n > 2 else math.nan
    intercept_se = result.intercept_stderr if n > 2 else math.nan
    return AffineFit(
        intercept=Estimate(
            result.intercept, result.intercept - t * intercept_se, result.intercept + t * intercept_se, n
        ),
        slope=Estimate(result.slope, result.slope - t * slope_se, result.slope + t * slope_se, n),
    )


def fit_through(x: np.ndarray, y: np.ndarray, intercept: float = 0.0) -> Estimate:
    """The slope b of y = intercept + b·x with the intercept known: Σx(y − a)/Σx², t with n − 1 df."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float) - intercept
    n = len(x)
    sxx = float(np.sum(x * x))
    if n == 0 or sxx == 0:
        raise ValueError("a slope needs at least one non-zero x")
    slope = float(np.sum(x * y)) / sxx
    if n < 2:
        return Estimate(slope, math.nan, math.nan, n)
    se = math.sqrt(float(np.sum((y - slope * x) ** 2)) / (n - 1) / sxx)
    t = _t(n - 1)
    return Estimate(slope, slope - t * se, slope + t * se, n)


def fit_mean(y: np.ndarray) -> Estimate:
    """The mean with its t interval (NaN interval for a single point)."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n == 0:
        raise ValueError("a mean needs at least one point")
    mean = float(np.mean(y))
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n)
    half = _t(n - 1) * float(np.std(y, ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def rate_from_slope(slope: Estimate, scale: float) -> Estimate:
    """A bandwidth scale/slope from a time-per-byte slope; a slope interval reaching 0 gives ∞."""

    def invert(s: float) -> float:
        if math.isnan(s):
            return math.nan
        return scale / s if s > 0 else math.inf

    if slope.value <= 0:
        return Estimate(math.nan, math.nan, math.nan, slope.n)
    high = invert(slope.low)
    low = invert(slope.high)
    return Estimate(scale / slope.value, low, high, slope.n)
