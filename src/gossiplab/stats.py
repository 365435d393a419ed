"""The statistics of every measurement (reports, study, stability): a mean over seeds with its
Student-t interval (:func:`summarize` -> :class:`MeanCI`), and log-log slopes with intervals
(:func:`loglog_fit`, via :func:`scipy.stats.linregress`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MeanCI:
    """A mean over ``n`` finite values, its spread and a confidence interval's half-width
    (``half``: 0 with one value, NaN with none; the standard deviation where asked for)."""

    mean: float
    half: float
    n: int
    std: float | None = None
    sem: float | None = None

    @property
    def ci(self) -> list[float] | None:
        return [self.mean - self.half, self.mean + self.half] if self.n >= 2 else None

    def excludes_zero(self) -> int:
        """+1 / -1 when the interval lies above / below 0, else 0 (and 0 with < 2 values)."""
        if self.n < 2:
            return 0
        return 1 if self.mean - self.half > 0 else -1 if self.mean + self.half < 0 else 0

    def fmt(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"

    def as_dict(self) -> dict:
        """JSON form: ``{mean, ci, sem, std, n}`` (None where undefined)."""
        if self.n == 0:
            return {"mean": None, "ci": None, "sem": None, "std": None, "n": 0}
        return {"mean": self.mean, "ci": self.ci, "sem": self.sem, "std": self.std, "n": self.n}


def finite(values: Iterable[float | None]) -> np.ndarray:
    """The finite values (None, NaN and inf dropped) as float64."""
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def summarize(values: Iterable[float | None], confidence: float = 0.95,
              interval: str = "t") -> MeanCI:
    """Mean of the finite ``values`` with a two-sided Student-t interval at ``confidence``
    (``interval="std"``: ± one standard deviation instead)."""
    a = finite(values)
    n = int(a.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0)
    mean = float(a.mean())
    if n == 1:
        return MeanCI(mean, 0.0, 1)
    std = float(a.std(ddof=1))
    sem = std / math.sqrt(n)
    half = std if interval == "std" else float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return MeanCI(mean, half, n, std, sem)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """:func:`summarize` as JSON: mean, standard error and the t-interval (None below 2 values)."""
    return summarize(values, confidence).as_dict()


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept, closed form (the bootstrap calls it a thousand times;
    :func:`scipy.stats.linregress` does the reported fit)."""
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
    line = stats.linregress(lx, ly)
    slope, intercept = float(line.slope), float(line.intercept)
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
    if k >= 3:  # linregress's stderr: the residuals' standard error of the slope
        half = float(stats.t.ppf(0.5 + confidence / 2, k - 2)) * float(line.stderr)
        ci_ols = [slope - half, slope + half]
    found = [c for c in (ci_boot, ci_ols) if c is not None]
    ci = [min(c[0] for c in found), max(c[1] for c in found)] if found else None
    return {"slope": slope, "intercept": intercept, "ci": ci, "ci_bootstrap": ci_boot,
            "ci_ols": ci_ols, "r2": r2, "points": k, "dropped": dropped,
            "min_samples": int(min(len(g) for g in groups)),
            "x": xs, "y": [float(np.exp(v)) for v in ly]}
