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

from gossiplab.catalogue import CATALOGUE, REPORT_METRICS
from gossiplab.report.intervals import Interval, kind_of, ranged
from gossiplab.stats import MeanCI, summarize
from gossiplab.sweep.spec import flatten, get_dotted, ignores
from gossiplab.sweep.store import ResultsStore

Q_KEY = "algorithm.gossip_steps"
TOPOLOGY_KEY = "topology.name"
ALGO_KEY = "algorithm.name"
# keys that never define a configuration group (seeds are aggregated over; the rest is bookkeeping)
NOT_AXES = {"algorithm.compare_centralized", "engine.threads"}

# final metrics: short name -> (path in an evaluation record, label)
METRICS = {name: CATALOGUE[name] for name in REPORT_METRICS}  # name: (record path, label)


def record_value(record: dict[str, Any], path: str) -> float:
    """The number at dotted ``path`` of an evaluation record; NaN where there is none."""
    try:
        return float(get_dotted(record, path))
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


Aggregate = MeanCI  # a metric over seeds: mean and the report's interval (half-width)


def aggregate(values: Iterable[float], interval: str = "ci95") -> Aggregate:
    """Mean over seeds with a 95% t-interval (``"ci95"``) or ± one standard deviation (``"std"``)."""
    return summarize(values, 0.95, "std" if interval == "std" else "t")


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
