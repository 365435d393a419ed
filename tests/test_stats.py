"""Confidence intervals and log-log fits."""

import numpy as np
import pytest
from scipy import stats

from gossiplab.stats import loglog_fit, mean_ci


def test_mean_ci_is_the_student_t_interval():
    v = [1.0, 2.0, 4.0, 7.0]
    r = mean_ci(v, 0.9)
    sem = np.std(v, ddof=1) / 2
    half = stats.t.ppf(0.95, 3) * sem
    assert r["mean"] == 3.5 and r["n"] == 4
    assert r["ci"] == pytest.approx([3.5 - half, 3.5 + half])
    assert mean_ci([2.0])["ci"] is None and mean_ci([])["mean"] is None


def test_loglog_fit_recovers_an_exact_power_law():
    x = [10, 20, 40, 80]
    fit = loglog_fit(x, [[3 * v**-1.5] * 5 for v in x])
    assert fit["slope"] == pytest.approx(-1.5)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["ci"] == pytest.approx([-1.5, -1.5])


def test_loglog_fit_interval_covers_the_slope_under_noise_and_sqrt_transform():
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2, 4, 8, 16])
    # mean square ~ x^-2, so its root ~ x^-1
    samples = [list((v**-1.0 * (1 + 0.2 * rng.standard_normal(400))) ** 2) for v in x]
    fit = loglog_fit(x, samples, transform=np.sqrt)
    assert fit["ci"][0] < -1.0 < fit["ci"][1]
    assert fit["ci"][1] - fit["ci"][0] < 0.2


def test_paired_bootstrap_and_dropped_points():
    x = [1, 10, 100]
    base = np.linspace(1, 2, 30)
    samples = [list(base * v**0.5) for v in x]
    fit = loglog_fit(x, samples, paired=True)
    # every unit follows the same power law: a paired bootstrap sees no slope noise at all
    assert fit["ci"] == pytest.approx([0.5, 0.5])
    fit = loglog_fit([1, 2, 4], [[1.0], [-1.0], [0.25]])
    assert fit["dropped"] == 1 and fit["slope"] == pytest.approx(-1.0)
    assert loglog_fit([1, 2], [[1.0], [-1.0]]) is None


def test_interval_widens_where_a_single_exponent_fits_badly():
    x = [1, 2, 4, 8, 16]
    y = [1.0, 0.5, 0.4, 0.39, 0.39]  # falls, then flattens: no single power law
    fit = loglog_fit(x, [[v] * 10 for v in y])
    assert fit["ci_bootstrap"] == pytest.approx([fit["slope"]] * 2)  # no measurement noise
    lo, hi = fit["ci_ols"]
    assert lo < fit["slope"] < hi and fit["ci"] == [lo, hi] and fit["r2"] < 0.95
