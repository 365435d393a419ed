"""A stability run: the configured algorithm (and centralized) trained with K twins on S^(ij) as
extra replicas of one simulator, for each repetition; smoothness probes; a long centralized
reference run; all written as config.json, metrics.jsonl, stability.jsonl, summary.json."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gossiplab.config import BASELINE, Config, from_dict, merge
from gossiplab.engine.simulator import Simulator
from gossiplab.engine.threads import apply_threads
from gossiplab.errors import UserError
from gossiplab.fileio import JsonlWriter, atomic_write_json
from gossiplab.metrics import Evaluator
from gossiplab.run.loop import Hook, MetricsLog, train
from gossiplab.run.runner import algorithms_to_run, choose_run_threads, environment
from gossiplab.setup import check_model_size, load_data, prepare
from gossiplab.stability.hooks import (
    ConsensusTracker,
    SmoothnessProbe,
    StabilityRecorder,
    probe_points,
    record_points,
)
from gossiplab.stability.perturb import draw_perturbations, twin_indices
from gossiplab.stability.summary import summarise

STABILITY_FILES = ("config.json", "metrics.jsonl", "stability.jsonl", "summary.json")

ProgressFactory = Callable[[str], list[Hook]]


def check_stability_dir(out: Path, overwrite: bool = False) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    existing = [f for f in STABILITY_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise UserError(f"--out {out} already holds results ({', '.join(existing)}); choose another "
                        "directory or pass --overwrite")


def repetition_config(cfg: Config, r: int) -> Config:
    """The config of repetition r: every seed shifted by r (so repetitions are independent)."""
    if r == 0:
        return cfg
    s = cfg.seeds
    return from_dict(merge(cfg.to_dict(), {"seeds": {"data": s.data + r, "init": s.init + r,
                                                     "sampling": s.sampling + r}}))


def reference_config(cfg: Config, iterations: int) -> Config:
    return from_dict(merge(cfg.to_dict(), {
        "algorithm": {"name": BASELINE, "compare_centralized": False},
        "train": {"iterations": iterations},
        "eval": {"every": max(1, iterations // 40)},
    }))


def run_stability(cfg: Config, out: str | Path | None = None, *,
                  progress: ProgressFactory | None = None, overwrite: bool = False) -> dict:
    """Measure stability for ``cfg`` (see the module docstring); return the summary dict."""
    sc = cfg.stability
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        check_stability_dir(out_path, overwrite)
    t_start = time.perf_counter()
    dataset = load_data(cfg)
    setup0 = prepare(cfg, dataset)
    check_model_size(cfg, dataset, replicas=sc.perturbations + 1)  # the twins train side by side
    threads = choose_run_threads(setup0)
    apply_threads(threads)
    labels = setup0.dataset.y_train.cpu().numpy()
    # fail before any training if twins cannot be built
    draw_perturbations(setup0.partition, labels, 1, seed=(sc.seed, 0))
    env = environment()
    reps_cfg = [repetition_config(cfg, r) for r in range(sc.repetitions)]
    described = {**setup0.describe(), "threads": threads.record()}
    metrics_w = stab_w = None
    if out_path is not None:
        atomic_write_json(out_path / "config.json", {
            "config": cfg.to_dict(), "config_hash": cfg.config_hash(),
            "seeds": cfg.seeds.model_dump(),
            "repetition_seeds": [c.seeds.model_dump() for c in reps_cfg],
            "setup": described, "environment": env, "kind": "stability",
        })
        metrics_w = JsonlWriter(out_path / "metrics.jsonl")
        stab_w = JsonlWriter(out_path / "stability.jsonl")

    def emit(kind: str):
        return (lambda rec: stab_w.write({"kind": kind, **rec})) if stab_w is not None else None

    T = cfg.train.iterations
    ref_T = 4 * T if sc.reference_iterations is None else sc.reference_iterations
    repetitions: list[dict[str, Any]] = []
    try:
        for r, cfg_r in enumerate(reps_cfg):
            setup = setup0 if r == 0 else prepare(cfg_r, dataset)
            perts = draw_perturbations(setup.partition, labels, sc.perturbations, seed=(sc.seed, r))
            twins = twin_indices(setup.partition, perts)
            rep: dict[str, Any] = {"repetition": r, "seeds": cfg_r.seeds.model_dump(),
                                   "perturbations": [p.to_dict() for p in perts], "algorithms": {}}
            for name in algorithms_to_run(cfg):
                tags = {"repetition": r}
                sim = Simulator(setup, name, replica_indices=twins)
                ev = Evaluator(setup.dataset, setup.partition.union(), cfg.eval,
                               cfg.optim.batch_size)
                recorder = StabilityRecorder(perts, record_points(T, sc.record_points), ev,
                                             emit=emit("twins"), tags=tags)
                consensus = ConsensusTracker(recorder.points, emit=emit("consensus"), tags=tags)
                smooth = SmoothnessProbe(probe_points(T, sc.hessian_points), ev,
                                         iterations=sc.power_iterations, seed=sc.seed, tags=tags)
                label = f"rep {r + 1}/{sc.repetitions} {name} + {len(perts)} twins"
                hooks = [*(progress(label) if progress else []), recorder, consensus, smooth,
                         MetricsLog(metrics_w, {**tags, "replicas": sim.replicas})]
                result = train(setup, name, hooks=hooks, sim=sim)
                if stab_w is not None:
                    for rec in smooth.records:
                        stab_w.write({"kind": "smoothness", **rec})
                rep["algorithms"][name] = {
                    "run": result.summary(),
                    "twins": recorder.records,
                    "consensus": consensus.records,
                    "smoothness": smooth.records,
                }
            if ref_T > 0:
                cfg_ref = reference_config(cfg_r, ref_T)
                setup_ref = prepare(cfg_ref, dataset)
                ref = train(setup_ref, BASELINE,
                            hooks=progress(f"rep {r + 1}/{sc.repetitions} reference") if progress else [])
                hist = [h for h in ref.history if h["avg_model"] is not None]
                rep["reference"] = {
                    "iterations": ref_T, "status": ref.status,
                    "min_train_loss": min(h["avg_model"]["train_loss"] for h in hist),
                    "min_test_loss": min(h["avg_model"]["test_loss"] for h in hist),
                    "wall_seconds": ref.wall_seconds,
                }
            repetitions.append(rep)
    finally:
        for w in (metrics_w, stab_w):
            if w is not None:
                w.close()
    summary = summarise(cfg, repetitions, setup0)
    summary["wall_seconds"] = time.perf_counter() - t_start
    summary["environment"] = env
    if out_path is not None:
        atomic_write_json(out_path / "summary.json", summary)
        from gossiplab.stability.plots import plot_run

        plot_run(summary, repetitions, out_path / "stability.png")
    return summary
