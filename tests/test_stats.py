"""The statistics of comparisons, held to scipy's answers on fixed data."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from tel_core.analysis import stats
from tel_core.analysis.lr_batch import best_lr, lr_batch, parabola_vertex

A = [1.412, 1.398, 1.431, 1.405]
B = [1.339, 1.352, 1.347]
C = [2.0, 2.5, 1.5, 3.0, 2.2]


@pytest.mark.parametrize("df", [1, 2, 3.7, 10, 29, 1000])
def test_student_t_matches_scipy(df):
    for t in (-40.0, -3.2, -1.0, -0.1, 0.0, 0.5, 2.1, 7.0):
        assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-12)
    for q in (0.001, 0.025, 0.3, 0.5, 0.9, 0.975, 0.9995):
        assert stats.t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-10, abs=1e-12)


def test_incomplete_beta_matches_scipy():
    from scipy.special import betainc

    for a, b in [(0.5, 0.5), (2.0, 3.0), (10.0, 0.5), (0.7, 40.0)]:
        for x in (0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0):
            assert stats.incomplete_beta(a, b, x) == pytest.approx(betainc(a, b, x), abs=1e-13)


@pytest.mark.parametrize("values", [A, B, C])
def test_mean_std_and_interval_match_scipy(values):
    assert stats.mean(values) == pytest.approx(scipy_stats.tmean(values), rel=1e-14)
    assert stats.std(values) == pytest.approx(scipy_stats.tstd(values), rel=1e-13)
    low, high = stats.ci95(values)
    expected = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=stats.mean(values), scale=scipy_stats.sem(values)
    )
    assert (low, high) == pytest.approx(expected, rel=1e-12)


def test_one_value_has_no_spread_and_no_interval():
    assert stats.std([1.0]) is None
    assert stats.ci95([1.0]) is None
    assert stats.welch([1.0], A) is None
    assert stats.welch(A, [2.0]) is None


@pytest.mark.parametrize(("a", "b"), [(A, B), (B, A), (A, C), (C, B)])
def test_welch_matches_scipy(a, b):
    mine = stats.welch(a, b)
    theirs = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert mine.t == pytest.approx(theirs.statistic, rel=1e-12)
    assert mine.df == pytest.approx(theirs.df, rel=1e-12)
    assert mine.p_value == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-15)
    interval = theirs.confidence_interval(0.95)
    assert mine.ci95 == pytest.approx((interval.low, interval.high), rel=1e-10)
    assert mine.difference == pytest.approx(stats.mean(a) - stats.mean(b))


def test_welch_without_spread_is_certain_or_nothing():
    same = stats.welch([1.0, 1.0], [1.0, 1.0])
    assert same.p_value == 1.0 and same.ci95 == (0.0, 0.0)
    apart = stats.welch([1.0, 1.0], [2.0, 2.0])
    assert apart.p_value == 0.0 and apart.difference == -1.0


def test_line_fit_matches_scipy_linregress():
    x = [math.log(b) for b in (8, 16, 32, 64)]
    y = [math.log(v) for v in (1e-3, 1.6e-3, 2.9e-3, 3.7e-3)]
    fit = stats.fit_line(x, y)
    theirs = scipy_stats.linregress(x, y)
    assert fit.slope == pytest.approx(theirs.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(theirs.intercept, rel=1e-12)
    assert fit.slope_se == pytest.approx(theirs.stderr, rel=1e-10)
    assert fit.r2 == pytest.approx(theirs.rvalue**2, rel=1e-12)
    half = scipy_stats.t.ppf(0.975, len(x) - 2) * theirs.stderr
    assert fit.slope_ci95 == pytest.approx((theirs.slope - half, theirs.slope + half), rel=1e-10)
    power = stats.power_law([8, 16, 32, 64], [1e-3, 1.6e-3, 2.9e-3, 3.7e-3])
    assert power.slope == pytest.approx(fit.slope)


def test_two_points_give_a_line_without_an_interval():
    fit = stats.power_law([8, 32], [1e-3, 2e-3])
    assert fit.slope == pytest.approx(0.5) and fit.slope_ci95 is None


def test_the_best_learning_rate_is_refined_by_a_parabola_in_log_lr():
    # Loss = (log lr - log 0.004)^2 + 1 exactly: the vertex finds 0.004 between grid points.
    def loss(lr):
        return (math.log(lr) - math.log(0.004)) ** 2 + 1

    grid = [1e-3, 3e-3, 1e-2, 3e-2]
    best = best_lr([(lr, loss(lr)) for lr in grid], 16)
    assert best.lr == 3e-3 and not best.at_edge
    assert best.fitted_lr == pytest.approx(0.004, rel=1e-9)
    edge = best_lr([(1e-3, 1.0), (3e-3, 2.0), (1e-2, math.nan)], 16)
    assert edge.lr == 1e-3 and edge.at_edge and edge.fitted_lr is None
    assert parabola_vertex([0.0, 1.0, 2.0], [1.0, 1.0, 1.0]) == 1.0  # flat: the middle


def test_alpha_recovers_a_known_scaling_rule():
    # best lr = 1e-4 * batch^0.5 exactly: alpha 0.5 (square-root scaling).
    points = []
    for batch in (8, 16, 32, 64):
        optimum = 1e-4 * batch**0.5
        for lr in (optimum / 3, optimum, optimum * 3):
            points.append((lr, batch, (math.log(lr / optimum)) ** 2 + 1.0))
    analysis = lr_batch(points)
    assert [b.batch_size for b in analysis.best] == [8, 16, 32, 64]
    assert analysis.alpha.slope == pytest.approx(0.5, abs=1e-9)
    low, high = analysis.alpha.slope_ci95
    assert low <= 0.5 <= high
