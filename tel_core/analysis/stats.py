"""The statistics of a comparison: pure functions of lists of numbers, tested against scipy.

Everything here is written out (Student's t distribution through the regularised
incomplete beta function) so that comparing runs needs no scientific stack; the tests
hold each function to scipy's answer on fixed data. A function that cannot give an
answer from the data it has (one run: no spread, no interval) returns None rather than
inventing one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

#: The confidence level of every interval: 95 %.
LEVEL = 0.95


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("the mean of no values")
    return math.fsum(values) / len(values)


def std(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1 in the denominator); None for fewer than 2."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


# -- Student's t distribution ---------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (any real df > 0)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (bisection)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile needs 0 < q < 1, got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        high *= 2.0
    for _ in range(200):  # to the last bit of a double
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        low, high = (middle, high) if t_cdf(middle, df) < q else (low, middle)
    return (low + high) / 2.0


def t_critical(df: float, level: float = LEVEL) -> float:
    """The half-width of a two-sided ``level`` interval in standard errors."""
    return t_ppf(0.5 + level / 2.0, df)


# -- intervals and tests -----------------------------------------------------------------


def ci95(values: Sequence[float]) -> tuple[float, float] | None:
    """The 95 % confidence interval of the mean (Student t); None for fewer than 2 values."""
    s = std(values)
    if s is None:
        return None
    m, n = mean(values), len(values)
    half = t_critical(n - 1) * s / math.sqrt(n)
    return (m - half, m + half)


@attrs.frozen
class Welch:
    """Welch's unequal-variances t-test of mean(a) - mean(b)."""

    difference: float  # mean(a) - mean(b)
    ci95: tuple[float, float]  # of the difference
    t: float
    df: float  # Welch-Satterthwaite degrees of freedom
    p_value: float  # two-sided


def welch(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's t-test of two samples; None when either has fewer than 2 values.

    With no spread in either sample the difference is either exactly 0 (p = 1) or
    certain (p = 0), and the interval is the point.
    """
    sa, sb = std(a), std(b)
    if sa is None or sb is None:
        return None
    difference = mean(a) - mean(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        p = 1.0 if difference == 0.0 else 0.0
        t = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        return Welch(difference, (difference, difference), t, math.inf, p)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    t = difference / se
    p = 2.0 * (1.0 - t_cdf(abs(t), df))
    half = t_critical(df) * se
    return Welch(difference, (difference - half, difference + half), t, df, min(1.0, p))


@attrs.frozen
class LineFit:
    """Least squares y = intercept + slope * x, with the slope's 95 % interval."""

    slope: float
    intercept: float
    slope_se: float | None  # None with two points: a line through them has no residual
    slope_ci95: tuple[float, float] | None
    r2: float | None
    n: int


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    """Ordinary least squares of ``y`` on ``x`` (at least two distinct x)."""
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError("a line needs two points or more, as many x as y")
    mx, my = mean(x), mean(y)
    sxx = math.fsum((xi - mx) ** 2 for xi in x)
    if sxx == 0.0:
        raise ValueError("a line needs two distinct x")
    sxy = math.fsum((xi - mx) * (yi - my) for xi, yi in zip(x, y, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    if n == 2:
        return LineFit(slope, intercept, None, None, None, n)
    residuals = [yi - intercept - slope * xi for xi, yi in zip(x, y, strict=True)]
    ssr = math.fsum(r * r for r in residuals)
    syy = math.fsum((yi - my) ** 2 for yi in y)
    se = math.sqrt(ssr / (n - 2) / sxx)
    half = t_critical(n - 2) * se
    r2 = 1.0 - ssr / syy if syy > 0 else 1.0
    return LineFit(slope, intercept, se, (slope - half, slope + half), r2, n)


def power_law(x: Sequence[float], y: Sequence[float]) -> LineFit:
    """Fit y = c * x^alpha: a line through (log x, log y); the slope is alpha."""
    if any(v <= 0 for v in (*x, *y)):
        raise ValueError("a power law needs positive x and y")
    return fit_line([math.log(v) for v in x], [math.log(v) for v in y])
