"""Least-squares estimates with 95% confidence intervals (Student t), the building blocks of the fits.

`fit_affine` fits y = a + b·x (scipy.stats.linregress, robust errors) and needs two distinct x; `fit_through`
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
    """Ordinary least squares of y on x (scipy.stats.linregress); needs two distinct x values.

    Standard errors are heteroscedasticity-robust (HC1): transfer-time noise grows with the size,
    and the textbook errors would then understate the bandwidth's uncertainty.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if len(np.unique(x)) < 2:
        raise ValueError("an affine fit needs at least two distinct x values")
    result = stats.linregress(x, y)
    design = np.column_stack([np.ones(n), x])
    residuals = y - (result.intercept + result.slope * x)
    se = _robust_se(design, residuals)
    t = _t(n - 2)
    return AffineFit(
        intercept=Estimate(result.intercept, result.intercept - t * se[0], result.intercept + t * se[0], n),
        slope=Estimate(result.slope, result.slope - t * se[1], result.slope + t * se[1], n),
    )


def _robust_se(design: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """HC1 sandwich standard errors of least-squares coefficients (NaN without spare degrees of freedom)."""
    n, k = design.shape
    if n <= k:
        return np.full(k, math.nan)
    bread = np.linalg.inv(design.T @ design)
    meat = design.T @ (design * (residuals**2)[:, None])
    return np.sqrt(np.diag(bread @ meat @ bread) * n / (n - k))


def fit_through(x: np.ndarray, y: np.ndarray, intercept: float = 0.0) -> Estimate:
    """The slope b of y = intercept + b·x with the intercept known: Σx(y − a)/Σx², HC1 error, n − 1 df."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float) - intercept
    n = len(x)
    sxx = float(np.sum(x * x))
    if n == 0 or sxx == 0:
        raise ValueError("a slope needs at least one non-zero x")
    slope = float(np.sum(x * y)) / sxx
    if n < 2:
        return Estimate(slope, math.nan, math.nan, n)
    se = float(_robust_se(x[:, None], y - slope * x)[0])
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
