"""Theory against measurement: read stability run folders, fit log-log slopes of the measured
stability and generalization gap against T, n, m and Q, and set them beside the theory's
exponents (the source paper's rates with the measured c*beta)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gossiplab.config import BASELINE, MAX_ITERATIONS
from gossiplab.errors import UserError
from gossiplab.fileio import MIB, read_json, read_text
from gossiplab.stats import loglog_fit

# factor -> config key varied across runs (T is read along each run's trajectory)
FACTORS = {"n": "data.samples_per_node", "m": "topology.nodes", "Q": "algorithm.gossip_steps"}
IGNORED_PREFIXES = ("engine.", "eval.", "stability.")
SHORT = {"data.samples_per_node": "n", "topology.nodes": "m", "algorithm.gossip_steps": "Q",
         "topology.name": "topology", "train.iterations": "T"}

QUANTITIES = {
    "stability": "eps = sqrt(E||A(S) - A(S^(ij))||^2)",
    "node_stability": "sqrt(E (1/m) sum_k ||x_k - x'_k||^2)",
    "loss_stability": "E|l(A(S);z_i) - l(A(S^(ij));z_i)|",
    "gen_gap": "generalization gap (label-matched test - train loss)",
}


@dataclass
class StabilityRun:
    path: Path
    config: dict[str, Any]  # flattened "section.key" -> value
    summary: dict
    twins: list[dict] = field(default_factory=list)
    label: str = ""

    @property
    def algorithms(self) -> list[str]:
        return list(self.summary["stability"])

    @property
    def c_beta(self) -> float | None:
        return self.summary["theory"].get("c_beta")

    @property
    def T(self) -> int:
        return int(self.config["train.iterations"])

    def factor(self, f: str) -> float:
        if f == "n":
            return float(self.summary["theory"]["n"])
        return float(self.config[FACTORS[f]])

    def finals(self, algorithm: str, quantity: str) -> list[float]:
        if quantity == "gen_gap":
            return list(self.summary["decomposition"][algorithm]["gen_gap_label_matched"]["values"])
        perts = self.summary["stability"][algorithm]["perturbations"]
        if quantity == "stability":
            return [p["avg_dist"] for p in perts]
        if quantity == "node_stability":
            return [p["node_dist"] for p in perts]
        return [abs(p["loss_replaced_twin"] - p["loss_replaced"]) for p in perts]

    def trajectory(self, algorithm: str, quantity: str) -> tuple[list[int], list[list[float]]]:
        by_t: dict[int, list[float]] = defaultdict(list)
        for r in sorted((r for r in self.twins if r["algorithm"] == algorithm),
                        key=lambda r: (r["iteration"], r["repetition"])):
            if quantity == "stability":
                v = r["avg_dist"]
            elif quantity == "node_stability":
                v = r["node_dist"]
            elif quantity == "loss_stability":
                v = [abs(a - b) for a, b in zip(r["loss_replaced_twin"], r["loss_replaced"], strict=True)]
            else:
                v = [r["gen_gap_matched"]]
            by_t[r["iteration"]].extend(v)
        its = sorted(by_t)
        return its, [by_t[t] for t in its]


def _flatten(cfg: dict) -> dict[str, Any]:
    return {f"{sec}.{k}": (json.dumps(v) if isinstance(v, list | dict) else v)
            for sec, vals in cfg.items() for k, v in vals.items()}


RESULT_FILE_LIMIT = 256 * MIB


def _damaged(path: Path, what: str) -> UserError:
    return UserError(f"{path} is damaged: {what}; not a readable `gossiplab stability` result")


TWIN_DISTANCES = ("avg_dist", "node_dist")


def _finite_numbers(v: Any) -> bool:
    """A number or a list of numbers, all finite (json reads NaN and Infinity); null entries
    (a twin not measured at that point) are allowed."""
    items = v if isinstance(v, list) else [v]
    return all(x is None or (isinstance(x, int | float) and not isinstance(x, bool)
                             and math.isfinite(x)) for x in items)


def load_run(path: Path) -> StabilityRun:
    summary = read_json(path / "summary.json", "stability summary", RESULT_FILE_LIMIT)
    doc = read_json(path / "config.json", "stability config", RESULT_FILE_LIMIT)
    if not isinstance(summary, dict):
        raise _damaged(path / "summary.json", "expected a JSON object")
    if summary.get("kind") != "stability":
        raise UserError(f"{path}: summary.json is not from `gossiplab stability`")
    cfg = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(cfg, dict) or not all(isinstance(v, dict) for v in cfg.values()):
        raise _damaged(path / "config.json", "expected an object 'config' of sections")
    for key in ("stability", "theory"):
        if not isinstance(summary.get(key), dict):
            raise _damaged(path / "summary.json", f"expected an object '{key}'")
    T = cfg.get("train", {}).get("iterations")
    if not isinstance(T, int) or isinstance(T, bool) or not 1 <= T <= MAX_ITERATIONS:
        raise _damaged(path / "config.json", f"train.iterations is not an integer in 1..{MAX_ITERATIONS:,}")
    twins = []
    stab = path / "stability.jsonl"
    if stab.exists():
        text = read_text(stab, "stability record", RESULT_FILE_LIMIT, expected="JSON lines")
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                raise _damaged(stab, f"line {lineno} is not valid JSON") from None
            if not isinstance(rec, dict):
                raise _damaged(stab, f"line {lineno}: expected a JSON object")
            if rec.get("kind") == "twins":
                if not isinstance(rec.get("iteration"), int) or not isinstance(rec.get("algorithm"), str):
                    raise _damaged(stab, f"line {lineno}: a twins record needs 'iteration' (an "
                                         "integer) and 'algorithm'")
                if not 0 <= rec["iteration"] <= T:
                    raise _damaged(stab, f"line {lineno}: iteration outside 0..train.iterations ({T})")
                if not all(_finite_numbers(rec.get(k, [])) for k in TWIN_DISTANCES):
                    raise _damaged(stab, f"line {lineno}: a twin distance is not a finite number")
                twins.append(rec)
    return StabilityRun(path=path, config=_flatten(cfg), summary=summary, twins=twins)


def find_runs(paths: list[str | Path]) -> list[StabilityRun]:
    """Stability run folders given directly or found below the given folders."""
    runs, seen = [], set()
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"{p}: no such file or directory")
        cands = [p] if (p / "summary.json").exists() else sorted(
            s.parent for s in p.rglob("summary.json"))
        for c in cands:
            key = c.resolve()
            if key in seen:
                continue
            summary = read_json(c / "summary.json", "summary", RESULT_FILE_LIMIT)
            if not isinstance(summary, dict):
                raise _damaged(c / "summary.json", "expected a JSON object")
            kind = summary.get("kind")
            if kind == "stability":
                seen.add(key)
                runs.append(load_run(c))
    if not runs:
        raise UserError(f"no `gossiplab stability` results found in {', '.join(map(str, paths))}")
    _label(runs)
    return runs


def _label(runs: list[StabilityRun]) -> None:
    keys = sorted({k for r in runs for k in r.config if not k.startswith(IGNORED_PREFIXES)})
    varying = [k for k in keys if len({json.dumps(r.config.get(k)) for r in runs}) > 1]
    for r in runs:
        parts = [f"{SHORT.get(k, k)}={r.config.get(k)}" for k in varying]
        r.label = ", ".join(parts) if parts else describe_config(r.config)


DESCRIBED = ("topology.name", "topology.nodes", "algorithm.gossip_steps", "data.samples_per_node")


def describe_config(config: dict[str, Any]) -> str:
    """A run's label from its config when nothing varies between the runs (never the name of its
    output folder, which says nothing on a figure)."""
    return ", ".join(f"{SHORT.get(k, k)}={config[k]}" for k in DESCRIBED if config.get(k) is not None) \
        or "all runs"


def _group_key(run: StabilityRun, drop: set[str]) -> str:
    return json.dumps({k: v for k, v in sorted(run.config.items())
                       if k not in drop and not k.startswith(IGNORED_PREFIXES)}, sort_keys=True)


def groups_for(runs: list[StabilityRun], factor: str) -> list[list[StabilityRun]]:
    """Sets of runs that differ only in ``factor`` (at least two distinct values)."""
    key = FACTORS[factor]
    by: dict[str, list[StabilityRun]] = defaultdict(list)
    for r in runs:
        by[_group_key(r, {key})].append(r)
    out = []
    for g in by.values():
        if len({r.factor(factor) for r in g}) >= 2:
            out.append(sorted(g, key=lambda r: r.factor(factor)))
    return out


def _common_label(group: list[StabilityRun], factor: str) -> str:
    drop = FACTORS[factor]
    parts = [p for p in group[0].label.split(", ") if not p.startswith(SHORT.get(drop, drop) + "=")]
    return ", ".join(parts) or "all runs"


def theory_exponent(factor: str, algorithm: str, c_beta: float | None) -> float | None:
    """The source paper's exponent of ``factor`` (T, n, m) for the algorithm; None for Q (the
    theory predicts a decrease towards the centralized value, not a power law)."""
    if factor == "n":
        return -1.0
    if c_beta is None:
        return None
    if factor == "T":
        return c_beta / (c_beta + 1.0)
    if factor == "m":
        return -1.0 if algorithm == BASELINE else -1.0 / (2 * c_beta + 2.0)
    return None


def verdict(factor: str, fit: dict | None, theory: float | None) -> str:
    text = _verdict(factor, fit, theory)
    if fit is not None and fit["min_samples"] < 5:
        text += f" (only {fit['min_samples']} sample(s) per point: interval unreliable)"
    return text


def _verdict(factor: str, fit: dict | None, theory: float | None) -> str:
    if fit is None:
        return "not enough points"
    ci = fit["ci"]
    if factor == "Q":
        if ci is None:
            return "no interval"
        if ci[1] < 0:
            return "agrees: decreases with Q"
        if ci[0] > 0:
            return "DISAGREES: increases with Q"
        return "DISAGREES: no significant change with Q"
    if theory is None:
        return "no theory exponent (c*beta unknown)"
    if ci is None:
        return "no interval"
    if ci[0] <= theory <= ci[1]:
        return "agrees"
    if ci[1] < theory:
        return "disagrees: smaller exponent than the theory's (the bound is loose here)"
    return "DISAGREES: larger exponent than the theory's (contradicts the rate)"


ROOTED = ("stability", "node_stability")  # fitted as the root of a mean square
# node models differ from the averaged model only where the nodes disagree (Q = 0 and small Q)
PER_FACTOR_ONLY = {"node_stability": ("Q",)}


def _same_twins(runs: list[StabilityRun], quantity: str) -> bool:
    """Runs of one group (same config but the factor, so same seeds) that also drew the same
    perturbations on the same S (a sweep over Q or the topology) measure the same twins and the
    same repetitions: their samples are paired, unit by unit."""
    def twins(r: StabilityRun) -> str:
        alg = next(iter(r.summary["stability"]))
        return json.dumps([(p["repetition"], p["node"], p["position"], p["fresh"])
                           for p in r.summary["stability"][alg]["perturbations"]])

    algs = [a for a in runs[0].algorithms if a != BASELINE] or runs[0].algorithms
    return (len({twins(r) for r in runs}) == 1
            and len({len(r.finals(algs[0], quantity)) for r in runs}) == 1)


def _transform(quantity: str):
    return np.sqrt if quantity in ROOTED else None


def _row(factor, quantity, algorithm, group_label, fit, theory, extra=None) -> dict:
    return {
        "factor": factor, "quantity": quantity, "algorithm": algorithm, "group": group_label,
        "measured": None if fit is None else fit["slope"],
        "ci": None if fit is None else fit["ci"],
        "r2": None if fit is None else fit["r2"],
        "points": None if fit is None else fit["points"],
        "theory": theory, "verdict": verdict(factor, fit, theory),
        "fit": fit, **(extra or {}),
    }


def compare(runs: list[StabilityRun], *, confidence: float = 0.95, t_min_fraction: float = 0.1,
            resamples: int = 1000) -> dict:
    """All fits: along T within each run, and across runs for n, m and Q."""
    rows: list[dict] = []
    # -- T, within each run (centralized deduplicated: it does not depend on the topology or Q)
    seen_central = set()
    for run in runs:
        for alg in run.algorithms:
            if alg == BASELINE:
                key = _group_key(run, {"topology.name", "algorithm.gossip_steps", "topology.mixing",
                                       "topology.laziness", "algorithm.gossip"})
                if key in seen_central:
                    continue
                seen_central.add(key)
            for q in QUANTITIES:
                if q in PER_FACTOR_ONLY and "T" not in PER_FACTOR_ONLY[q]:
                    continue
                its, samples = run.trajectory(alg, q)
                keep = [i for i, t in enumerate(its) if t >= max(1, t_min_fraction * run.T)]
                fit = None
                if keep:
                    xs = [its[i] for i in keep]
                    ss = [samples[i] for i in keep]
                    paired = len({len(s) for s in ss}) == 1
                    fit = loglog_fit(xs, ss, confidence=confidence, transform=_transform(q),
                                     resamples=resamples, paired=paired)
                label = run.label if alg != BASELINE else _central_label(run)
                rows.append(_row("T", q, alg, label, fit, theory_exponent("T", alg, run.c_beta),
                                 {"runs": [str(run.path)]}))
    # -- n, m, Q across runs
    for factor in ("n", "m", "Q"):
        for group in groups_for(runs, factor):
            label = _common_label(group, factor)
            cbs = [r.c_beta for r in group if r.c_beta is not None]
            cb = float(np.mean(cbs)) if cbs else None
            algs = [a for a in group[0].algorithms if factor != "Q" or a != BASELINE]
            for alg in algs:
                for q in QUANTITIES:
                    if q in PER_FACTOR_ONLY and factor not in PER_FACTOR_ONLY[q]:
                        continue
                    pts = [r for r in group if alg in r.algorithms
                           and (factor != "Q" or r.factor("Q") > 0)]
                    fit = loglog_fit([r.factor(factor) for r in pts], [r.finals(alg, q) for r in pts],
                                     confidence=confidence, transform=_transform(q),
                                     resamples=resamples, paired=_same_twins(pts, q))
                    extra: dict[str, Any] = {"runs": [str(r.path) for r in group]}
                    if factor == "Q":
                        extra["by_Q"] = _by_q(group, alg, q)
                    rows.append(_row(factor, q, alg, label, fit, theory_exponent(factor, alg, cb), extra))
    return {"rows": rows, "consensus": consensus_rows(runs),
            "runs": [{"path": str(r.path), "label": r.label, "c_beta": r.c_beta, "T": r.T}
                     for r in runs],
            "confidence": confidence, "t_min_fraction": t_min_fraction, "quantities": QUANTITIES}


def _central_label(run: StabilityRun) -> str:
    parts = [p for p in run.label.split(", ") if not p.startswith(("topology=", "Q="))]
    return ", ".join(parts) or "all runs"


def _value(samples: list[float], quantity: str) -> float:
    v = float(np.mean(samples)) if samples else float("nan")
    return float(np.sqrt(v)) if quantity in ROOTED and v >= 0 else v


def _by_q(group: list[StabilityRun], alg: str, quantity: str) -> dict:
    """Measured value at each Q, the centralized value of the same data, and their ratio."""
    cen = [v for r in group if BASELINE in r.algorithms for v in r.finals(BASELINE, quantity)]
    c = _value(cen, quantity) if cen else None
    out = {}
    for r in group:
        v = _value(r.finals(alg, quantity), quantity)
        out[str(int(r.factor("Q")))] = {"value": v, "centralized": c,
                                        "ratio": v / c if c not in (None, 0) else None}
    return out


def consensus_rows(runs: list[StabilityRun]) -> list[dict]:
    """Measured final consensus distance of each run beside the recursion's bound and steady
    state (:func:`gossiplab.theory.consensus_recursion`, ``consensus_steady_state``)."""
    out = []
    for r in sorted(runs, key=lambda r: r.label):
        th = r.summary["theory"]
        for alg, c in r.summary.get("consensus", {}).items():
            meas, bound, steady = (c[k]["mean"] for k in ("measured", "recursion_bound", "steady_state"))
            out.append({"run": r.label, "algorithm": alg, "lambda": th["lambda"],
                        "contraction_Q": th["contraction_Q"], "measured": meas,
                        "recursion_bound": bound, "steady_state": steady,
                        "measured_over_bound": meas / bound if meas is not None and bound else None,
                        "measured_over_steady_state": (meas / steady if meas is not None and steady
                                                       else None),
                        "bound_holds": c["bound_holds"], "bound_applies": c["bound_applies"]})
    return out
