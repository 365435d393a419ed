"""Read a results store into runs with flat configs and final metrics, find what the sweep varied,
and aggregate over seeds (mean with a standard deviation or a 95% t-interval)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gossiplab.report.intervals import Interval, kind_of, ranged
from gossiplab.sweep.spec import flatten, ignores
from gossiplab.sweep.store import ResultsStore

Q_KEY = "algorithm.gossip_steps"
TOPOLOGY_KEY = "topology.name"
ALGO_KEY = "algorithm.name"
# keys that never define a configuration group (seeds are aggregated over; the rest is bookkeeping)
NOT_AXES = {"algorithm.compare_centralized", "engine.threads"}

# final metrics: short name -> (path in an evaluation record, label)
METRICS = {
    "test_acc": ("avg_model.test_acc", "test accuracy"),
    "train_acc": ("avg_model.train_acc", "train accuracy"),
    "test_loss": ("avg_model.test_loss", "test loss"),
    "train_loss": ("avg_model.train_loss", "train loss"),
    "gen_gap_acc": ("gen_gap_acc", "gen. gap (0-1 error)"),
    "gen_gap_loss": ("gen_gap_loss", "gen. gap (loss)"),
    "consensus_distance": ("consensus_distance", "consensus distance"),
    "test_loss_matched": ("avg_model.test_loss_matched", "test loss (label-matched)"),
    "test_acc_matched": ("avg_model.test_acc_matched", "test accuracy (label-matched)"),
    "gen_gap_loss_matched": ("gen_gap_loss_matched", "gen. gap (loss, label-matched)"),
    "gen_gap_acc_matched": ("gen_gap_acc_matched", "gen. gap (0-1 error, label-matched)"),
    "node_test_acc": ("nodes.test_acc.mean", "node test accuracy (mean over nodes)"),
    "node_test_acc_worst": ("nodes.test_acc.min", "node test accuracy (worst node)"),
    "node_test_loss": ("nodes.test_loss.mean", "node test loss (mean over nodes)"),
    "node_test_loss_worst": ("nodes.test_loss.max", "node test loss (worst node)"),
    "node_train_loss": ("nodes.train_loss.mean", "node train loss (mean over nodes)"),
    "node_gap": ("nodes.gen_gap_loss.mean", "node gen. gap (loss, mean over nodes)"),
    "node_gap_worst": ("nodes.gen_gap_loss.max", "node gen. gap (loss, worst node)"),
    "node_gap_matched": ("nodes.gen_gap_loss_matched.mean",
                         "node gen. gap (loss, label-matched, mean over nodes)"),
    "node_gap_matched_worst": ("nodes.gen_gap_loss_matched.max",
                               "node gen. gap (loss, label-matched, worst node)"),
    "rounds": ("rounds", "gossip rounds (total)"),
    "iteration": ("iteration", "iterations"),
}


def record_value(record: dict[str, Any], path: str) -> float:
    node: Any = record
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return math.nan
        node = node[p]
    try:
        return float(node)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Run:
    id: str
    status: str
    algorithm: str
    params: dict[str, Any]  # every config key, None where a centralized run ignores it
    final: dict[str, float]
    error: str | None = None
    diverged_at: int | None = None
    wall_seconds: float | None = None
    ignored: set[str] = field(default_factory=set)  # keys that cannot change this run

    @property
    def seeds(self) -> tuple:
        return tuple(self.params.get(f"seeds.{k}") for k in ("data", "init", "sampling"))

    def value(self, key: str) -> Any:
        v = self.params.get(key)
        return tuple(v) if isinstance(v, list) else v


@dataclass
class Aggregate:
    mean: float
    half: float  # half-width of the interval (std or 95% CI); 0 with one seed
    n: int

    def fmt(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def aggregate(values: Iterable[float], interval: str = "ci95") -> Aggregate:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return Aggregate(math.nan, math.nan, 0)
    if a.size == 1:
        return Aggregate(float(a[0]), 0.0, 1)
    std = float(a.std(ddof=1))
    if interval == "std":
        return Aggregate(float(a.mean()), std, int(a.size))
    from scipy.stats import t

    return Aggregate(float(a.mean()), float(t.ppf(0.975, a.size - 1)) * std / math.sqrt(a.size),
                     int(a.size))


INTERVALS = {"ci95": "95% t-interval over seeds", "std": "± one standard deviation over seeds"}


@dataclass
class Results:
    path: Path
    runs: list[Run]
    sweeps: list[dict[str, Any]]
    store: ResultsStore
    interval: str = "ci95"
    _curves: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def ok(self) -> list[Run]:
        return [r for r in self.runs if r.status == "ok"]

    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.runs:
            out[r.status] += 1
        return dict(out)

    def values(self, key: str, runs: Iterable[Run] | None = None) -> list[Any]:
        """Distinct non-None values of ``key``, sorted."""
        vals = {r.value(key) for r in (self.ok if runs is None else runs)} - {None}
        return sorted(vals, key=lambda v: (str(type(v)), v))

    def varied(self) -> list[str]:
        """Config keys that take more than one value among the finished runs (seeds excluded)."""
        keys: dict[str, None] = {}
        for r in self.ok:
            keys.update(dict.fromkeys(r.params))
        return [k for k in keys if not k.startswith("seeds.") and k not in NOT_AXES and k != ALGO_KEY
                and len(self.values(k)) > 1]

    def covarying(self, key: str) -> set[str]:
        """Varied keys that move together with ``key`` (zipped axes): a one-to-one mapping."""
        out = set()
        for other in self.varied():
            if other == key:
                continue
            fwd: dict[Any, set] = defaultdict(set)
            back: dict[Any, set] = defaultdict(set)
            for r in self.ok:
                a, b = r.value(key), r.value(other)
                if a is None or b is None:
                    continue
                fwd[a].add(b)
                back[b].add(a)
            if fwd and all(len(s) == 1 for s in fwd.values()) and all(len(s) == 1 for s in back.values()):
                out.add(other)
        return out

    def curves(self, run_id: str) -> list[dict]:
        """Evaluation records of a run (iteration order)."""
        if run_id not in self._curves:
            for m in self.store.metrics([run_id]):
                self._curves.setdefault(run_id, []).append(json.loads(m["record"]))
            self._curves.setdefault(run_id, [])
        return self._curves[run_id]

    def prefetch_curves(self, run_ids: Iterable[str]) -> None:
        missing = [i for i in run_ids if i not in self._curves]
        for m in self.store.metrics(missing):
            self._curves.setdefault(m["run_id"], []).append(json.loads(m["record"]))
        for i in missing:
            self._curves.setdefault(i, [])

    def agg(self, runs: Iterable[Run], metric: str) -> Interval:
        """Mean over the runs (seeds) of a final metric, with an interval inside the metric's
        range (report/intervals.py)."""
        return ranged((r.final.get(metric, math.nan) for r in runs), kind_of(metric), self.interval)


def _params(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if ignores(config, k) else v) for k, v in flatten(config).items()}


def load_results(store: ResultsStore, sweep: str | None = None, interval: str = "ci95") -> Results:
    ids = store.sweep_ids(sweep)
    runs = []
    for r in store.runs(ids):
        summary = json.loads(r["summary"]) if r["summary"] else {}
        final_rec = summary.get("final") or {}
        final = {name: record_value(final_rec, path) for name, (path, _) in METRICS.items()}
        config = json.loads(r["config"])
        runs.append(Run(id=r["id"], status=r["status"], algorithm=r["algorithm"],
                        params=_params(config), final=final, error=r["error"],
                        ignored={k for k in flatten(config) if ignores(config, k)},
                        diverged_at=r["diverged_at"], wall_seconds=r["wall_seconds"]))
    sweeps = store.sweeps()
    if ids is not None:
        sweeps = [s for s in sweeps if s["id"] in ids]
    return Results(path=store.path, runs=runs, sweeps=sweeps, store=store, interval=interval)


def group(runs: Iterable[Run], keys: list[str]) -> dict[tuple, list[Run]]:
    """Runs grouped by the values of ``keys`` (insertion order of first appearance)."""
    out: dict[tuple, list[Run]] = {}
    for r in runs:
        out.setdefault(tuple(r.value(k) for k in keys), []).append(r)
    return out


def matches(run: Run, where: dict[str, Any]) -> bool:
    """``run`` agrees with ``where`` on every key it does not ignore (centralized: topology and
    gossip keys; Q = 0: topology keys)."""
    return all(k in run.ignored or run.value(k) == v for k, v in where.items())
