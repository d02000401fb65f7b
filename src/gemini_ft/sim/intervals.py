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


# t(0.975, df) for df = 1 … 63 (up to 64 seeds), as scipy.special.stdtrit gives them (tested): a summary
# of a few seeds needs no scipy, whose import costs more CPU time than a one-seed `gemini-ft simulate`.
_T975 = (
    12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934,
    2.5705818356363146, 2.4469118511449786, 2.364624251592784, 2.306004135204166, 2.262157162798205,
    2.228138851986274, 2.200985160091639, 2.1788128296672284, 2.1603686564627913, 2.144786687917804,
    2.131449545559776, 2.1199052992212546, 2.1098155778333156, 2.1009220402410382,
    2.0930240544083087, 2.085963447265864, 2.0796138447276795, 2.0738730679040254,
    2.0686576104190486, 2.0638985616280245, 2.0595385527532972, 2.0555294386428735,
    2.0518305164802846, 2.0484071417952454, 2.045229642132703, 2.0422724563012378,
    2.039513446396408, 2.0369333434601016, 2.0345152974493383, 2.0322445093177186,
    2.030107928250343, 2.0280940009804502, 2.0261924630291093, 2.0243941639119694,
    2.022690920036761, 2.021075390306273, 2.019540970441376, 2.0180817028184443, 2.016692199227824,
    2.0153675744437636, 2.014103388880846, 2.012895598919429, 2.0117405137297655, 2.010634757624232,
    2.0095752371292392, 2.008559112100761, 2.007583770315836, 2.006646805061688, 2.0057459953178687,
    2.0048792881880564, 2.0040447832891455, 2.003240718847872, 2.002465459291007,
    2.0017174841452356, 2.000995378088267, 2.0002978220142604, 1.999623584994939,
    1.9989715170333788, 1.998340542520741
)  # fmt: skip


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The Student-t quantile t(1 − α/2, df) of a two-sided `confidence` interval."""
    if confidence == CONFIDENCE and 1 <= df <= len(_T975):
        return _T975[df - 1]
    from scipy.special import stdtrit  # imported here: it costs more start-up than a small simulation

    return float(stdtrit(df, 0.5 + confidence / 2.0))


def half_width(values: object, confidence: float = CONFIDENCE) -> float:
    """Student-t half-width t(1 − α/2, n − 1)·s/√n of the mean of independent samples (NaN below 2)."""
    x = _finite(values)
    n = len(x)
    if n < 2:
        return math.nan
    return float(t_quantile(n - 1, confidence) * x.std(ddof=1) / math.sqrt(n))


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
