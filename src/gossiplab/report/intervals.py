"""Intervals over seeds that respect the range of the quantity they describe.

A Student-t interval is symmetric and, with 2 or 3 seeds, very wide (t = 12.7 at 2 seeds): drawn
as is it puts accuracies below 0 and above 1 and squared distances below 0, values the quantity
cannot take. So each metric has a kind:

* ``fraction`` (accuracies): the t-interval clipped to [0, 1];
* ``positive`` (losses, distances, counts): the t-interval of the logarithms, as a factor around
  the mean (``mean * exp(-h)``, ``mean * exp(h)``), which stays positive and widens with the
  relative spread; with a zero among the values, the t-interval clipped at 0;
* ``signed`` (gaps, differences): the plain t-interval.

Any summary over fewer than :data:`FEW_SEEDS` seeds is flagged (``Interval.few``) so tables and
figures can say so. The report's interval options (95% t, or one standard deviation) both apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

FEW_SEEDS = 3
FEW_NOTE = f"fewer than {FEW_SEEDS} seeds: intervals are unreliable"

KINDS = {
    "test_acc": "fraction", "train_acc": "fraction", "test_acc_matched": "fraction",
    "test_loss": "positive", "train_loss": "positive", "test_loss_matched": "positive",
    "consensus_distance": "positive", "rounds": "positive", "iteration": "positive",
}


def kind_of(metric: str) -> str:
    """The range kind of a report metric (``signed`` unless listed in :data:`KINDS`)."""
    return KINDS.get(metric, "signed")


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int
    kind: str = "signed"

    @property
    def half(self) -> float:
        """The larger distance from the mean to an end (0 with one value)."""
        if self.n < 2:
            return 0.0 if self.n == 1 else math.nan
        return max(self.mean - self.lo, self.hi - self.mean)

    @property
    def few(self) -> bool:
        return 0 < self.n < FEW_SEEDS

    @property
    def symmetric(self) -> bool:
        return math.isclose(self.mean - self.lo, self.hi - self.mean, rel_tol=1e-9, abs_tol=1e-15)

    def fmt(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n=1)"
        body = (f"{self.mean:.{digits}f} ± {self.half:.{digits}f}" if self.symmetric
                else f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]")
        return body + (f" (n={self.n})" if self.few else "")

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci": [self.lo, self.hi] if self.n >= 2 else None,
                "n": self.n, "kind": self.kind, "few_seeds": self.few}


def ranged(values: Iterable[float | None], kind: str = "signed", interval: str = "ci95",
           confidence: float = 0.95) -> Interval:
    """Mean of the finite ``values`` with an interval of the given ``kind`` (module docstring);
    ``interval``: ``ci95`` (t-interval at ``confidence``) or ``std`` (one standard deviation)."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(a.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, kind)
    mean = float(a.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1, kind)
    scale = 1.0 if interval == "std" else float(stats.t.ppf(0.5 + confidence / 2, n - 1)) / math.sqrt(n)
    if kind == "positive" and (a > 0).all():
        h = float(np.log(a).std(ddof=1)) * scale
        return Interval(mean, mean * math.exp(-h), mean * math.exp(h), n, kind)
    h = float(a.std(ddof=1)) * scale
    lo, hi = mean - h, mean + h
    if kind == "positive":
        lo = max(lo, 0.0)
    elif kind == "fraction":
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return Interval(mean, lo, hi, n, kind)
