"""The statistics behind the study's verdicts.

Runs of one seed share the data partition, the initialisation and the sampled batches across the
configurations of a sweep, so every effect is computed *within* a seed (a paired difference, or a
least-squares slope over the swept values) and then summarised over seeds with a 95% t-interval.
A direction is established when the interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from gossiplab.report.data import Run
from gossiplab.stats import summarize

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
SPLIT = "inconclusive (measures disagree)"
NOT_RUN = "not assessed (no results)"


@dataclass
class Est:
    """Mean over seeds with a 95% t-interval."""

    mean: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Est:
        """From per-seed values (None / NaN / inf dropped), via :func:`gossiplab.stats.summarize`;
        one value has no interval (-inf, inf), none gives NaN."""
        s = summarize(values)
        if s.n == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        if s.n == 1:
            return cls(s.mean, -math.inf, math.inf, 1)
        return cls(s.mean, s.mean - s.half, s.mean + s.half, s.n)

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def sign(self) -> int:
        """+1 / -1 when the interval excludes 0 on that side, else 0."""
        if self.n >= 2 and self.lo > 0:
            return 1
        if self.n >= 2 and self.hi < 0:
            return -1
        return 0

    def scaled(self, k: float) -> Est:
        lo, hi = sorted((self.lo * k, self.hi * k))
        return Est(self.mean * k, lo, hi, self.n)

    def fmt(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.{digits}g}"
        return f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"

    def fmt_plain(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def direction(est: Est, claimed: int) -> str:
    """The verdict an effect gives a claim predicting its sign (+1 / -1)."""
    s = est.sign()
    if s == claimed:
        return HOLDS
    if s == -claimed:
        return FAILS
    return UNSURE


def overall(verdicts: list[str]) -> str:
    """All parts hold: holds; any part fails: does not hold; else inconclusive."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return UNSURE


def agree(verdicts: list[str]) -> str:
    """Several measures of one thing (accuracy and loss): holds when one establishes the claim and
    none contradicts it, does not hold the other way round, inconclusive when both happen or
    neither."""
    if HOLDS in verdicts and FAILS not in verdicts:
        return HOLDS
    if FAILS in verdicts and HOLDS not in verdicts:
        return FAILS
    if HOLDS in verdicts and FAILS in verdicts:
        return SPLIT
    return UNSURE


def by_seed(runs: list[Run]) -> dict[Any, Run]:
    return {r.seeds: r for r in runs}


def value(run: Run, metric: str) -> float:
    """A final metric, derived where an older store lacks it (the mean node gap is the difference
    of the mean node test and train losses)."""
    v = run.final.get(metric, math.nan)
    if not math.isfinite(v) and metric == "node_gap_mean":
        v = run.final.get("node_test_loss_mean", math.nan) - run.final.get("node_train_loss_mean", math.nan)
    return v


def paired(a: list[Run], b: list[Run], metric: str) -> Est:
    """a - b, paired by seed."""
    ia, ib = by_seed(a), by_seed(b)
    return Est.of([value(ia[s], metric) - value(ib[s], metric) for s in ia if s in ib])


Measure = Callable[[Run], float]


def measure(metric: str, minus: list[Run] | None = None) -> Measure:
    """The value of ``metric`` of a run, or (``minus`` given) its difference to the run of the same
    seed in ``minus``: decentralization's own share when ``minus`` holds the centralized runs."""
    if minus is None:
        return lambda r: value(r, metric)
    ref = by_seed(minus)
    return lambda r: value(r, metric) - value(ref[r.seeds], metric) if r.seeds in ref else math.nan


def seed_slopes(groups: list[tuple[float, list[Run]]], metric: str | Measure,
                ylog: bool = False) -> Est:
    """Per seed, the least-squares slope of ``metric`` (or its log) against x over the groups;
    summarised over seeds."""
    f = measure(metric) if isinstance(metric, str) else metric
    seeds = set.intersection(*[set(by_seed(rs)) for _, rs in groups]) if groups else set()
    slopes = []
    for s in seeds:
        xs, ys = [], []
        for x, rs in groups:
            v = f(by_seed(rs)[s])
            if ylog:
                if not v > 0:
                    continue
                v = math.log(v)
            if not math.isfinite(v):
                continue
            xs.append(x)
            ys.append(v)
        if len(set(xs)) >= 2:
            slopes.append(float(np.polyfit(xs, ys, 1)[0]))
    return Est.of(slopes)


def seed_exponents(groups: list[tuple[float, list[Run]]], metric: str | Measure) -> dict[Any, float]:
    """Per seed, the exponent a of metric ~ x^a (least squares on log-log axes; points whose
    metric is not positive are left out, at least two points needed)."""
    f = measure(metric) if isinstance(metric, str) else metric
    seeds = set.intersection(*[set(by_seed(g)) for _, g in groups]) if groups else set()
    out = {}
    for s in seeds:
        pts = [(math.log(x), math.log(v)) for x, g in groups if (v := f(by_seed(g)[s])) > 0]
        if len({p[0] for p in pts}) >= 2:
            out[s] = float(np.polyfit(*zip(*pts, strict=True), 1)[0])
    return out


def exponent(groups: list[tuple[float, list[Run]]], metric: str | Measure) -> Est:
    return Est.of(seed_exponents(groups, metric).values())


def exponent_difference(a_groups, b_groups, metric_a: str | Measure,
                        metric_b: str | Measure | None = None) -> Est:
    """Exponent over ``a_groups`` minus exponent over ``b_groups``, paired by seed."""
    a = seed_exponents(a_groups, metric_a)
    b = seed_exponents(b_groups, metric_b if metric_b is not None else metric_a)
    return Est.of([a[s] - b[s] for s in a if s in b])


def mean_of(runs: list[Run], metric: str) -> Est:
    return Est.of([value(r, metric) for r in runs])


def seed_spearman(groups: list[tuple[float, list[Run]]], metric: str) -> list[float]:
    seeds = set.intersection(*[set(by_seed(g)) for _, g in groups])
    out = []
    for s in seeds:
        xs = [x for x, _ in groups]
        ys = [value(by_seed(g)[s], metric) for _, g in groups]
        out.append(float(stats.spearmanr(xs, ys)[0]))
    return out


def clip(e: Est, lo: float, hi: float) -> Est:
    return Est(e.mean, max(e.lo, lo), min(e.hi, hi), e.n)
