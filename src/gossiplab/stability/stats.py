"""Small statistics for measurements: means with t-intervals, log-log slopes with intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, standard error and a Student-t confidence interval (None with fewer than 2 values)."""
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = len(a)
    if n == 0:
        return {"mean": None, "ci": None, "sem": None, "std": None, "n": 0}
    mean = float(a.mean())
    if n < 2:
        return {"mean": mean, "ci": None, "sem": None, "std": None, "n": 1}
    std = float(a.std(ddof=1))
    sem = std / np.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return {"mean": mean, "ci": [mean - half, mean + half], "sem": sem, "std": std, "n": n}


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xm = x.mean()
    slope = float(((x - xm) * (y - y.mean())).sum() / ((x - xm) ** 2).sum())
    return slope, float(y.mean() - slope * xm)


def loglog_fit(x: Sequence[float], samples: Sequence[Sequence[float]], *, confidence: float = 0.95,
               transform=None, resamples: int = 1000, seed: int = 0, paired: bool = False
               ) -> dict | None:
    """Fit log y = a + k log x where y at each x is the mean of ``samples[i]``.

    ``transform`` maps a point's mean to the fitted value (e.g. ``np.sqrt`` to fit the root of a
    mean square). The interval for k is a percentile bootstrap over the samples (the measurement
    noise): each point's samples are resampled independently, or, with ``paired``, by one shared
    index draw (samples[i][k] of every point come from the same unit k, e.g. one twin followed
    over t). ``r2`` of the fit on the means flags curvature. Points whose value is not positive are
    dropped (their count is returned). None if fewer than 2 distinct x remain.

    The reported ``ci`` is the hull of the bootstrap interval and, with 3 or more points, the
    ordinary least-squares t-interval from the residuals (which widens it where the points are
    not on a line, i.e. where a single exponent describes them badly).
    """
    tf = transform or (lambda v: v)
    xs, groups = [], []
    dropped = 0
    for xi, s in zip(x, samples, strict=True):
        a = np.asarray([v for v in s if v is not None and np.isfinite(v)], dtype=np.float64)
        if xi is None or xi <= 0 or len(a) == 0 or not tf(a.mean()) > 0:
            dropped += 1
            continue
        xs.append(float(xi))
        groups.append(a)
    if len(set(xs)) < 2:
        return None
    lx = np.log(np.asarray(xs))
    ly = np.log(np.asarray([tf(g.mean()) for g in groups]))
    slope, intercept = _ols(lx, ly)
    resid = ly - (intercept + slope * lx)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    rng = np.random.default_rng(seed)
    boot = []
    if paired and len({len(g) for g in groups}) != 1:
        raise ValueError("paired bootstrap needs the same number of samples at every point")
    for _ in range(resamples):
        shared = rng.integers(len(groups[0]), size=len(groups[0])) if paired else None
        vals = []
        for g in groups:
            ix = shared if paired else rng.integers(len(g), size=len(g))
            vals.append(tf(g[ix].mean()) if len(g) > 1 else tf(g.mean()))
        vals = np.asarray(vals)
        if (vals > 0).all():
            boot.append(_ols(lx, np.log(vals))[0])
    ci_boot = ci_ols = None
    if len(boot) >= max(20, resamples // 2) and any(len(g) > 1 for g in groups):
        lo, hi = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
        ci_boot = [float(lo), float(hi)]
    k = len(xs)
    if k >= 3:
        sxx = float(((lx - lx.mean()) ** 2).sum())
        se = float(np.sqrt((resid**2).sum() / (k - 2) / sxx))
        half = float(stats.t.ppf(0.5 + confidence / 2, k - 2)) * se
        ci_ols = [slope - half, slope + half]
    found = [c for c in (ci_boot, ci_ols) if c is not None]
    ci = [min(c[0] for c in found), max(c[1] for c in found)] if found else None
    return {"slope": slope, "intercept": intercept, "ci": ci, "ci_bootstrap": ci_boot,
            "ci_ols": ci_ols, "r2": r2, "points": k, "dropped": dropped,
            "min_samples": int(min(len(g) for g in groups)),
            "x": xs, "y": [float(np.exp(v)) for v in ly]}
