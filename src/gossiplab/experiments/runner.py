"""Run one experiment: train the configured algorithm (and its centralized baseline), evaluate at
fixed points, write config.json / metrics.jsonl / summary.json. Evaluation, progress and any
extra behaviour (checkpoints) attach as hooks rather than flags in the loop."""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import gossiplab
from gossiplab.config import Config
from gossiplab.engine.simulator import Simulator
from gossiplab.errors import Diverged, UserError
from gossiplab.experiments.setup import Setup, prepare
from gossiplab.fileio import JsonlWriter, atomic_write_json
from gossiplab.metrics import Evaluator

OUTPUT_FILES = ("config.json", "metrics.jsonl", "summary.json")


class Hook:
    """Called by :func:`train` at fixed points; subclass and override what you need."""

    def on_start(self, sim: Simulator) -> None: ...

    def on_step(self, sim: Simulator, loss: float) -> None: ...

    def on_eval(self, sim: Simulator, record: dict) -> None: ...

    def on_end(self, sim: Simulator, result: RunResult) -> None: ...


@dataclass
class RunResult:
    algorithm: str
    status: str = "ok"  # ok | diverged
    final: dict | None = None
    history: list[dict] = field(default_factory=list)
    wall_seconds: float = 0.0
    eval_seconds: float = 0.0
    diverged_at: int | None = None

    def summary(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "status": self.status,
            "diverged_at": self.diverged_at,
            "final": self.final,
            "wall_seconds": self.wall_seconds,
            "eval_seconds": self.eval_seconds,
            "eval_fraction": self.eval_seconds / self.wall_seconds if self.wall_seconds else 0.0,
        }


def eval_points(iterations: int, every: int) -> set[int]:
    """Iterations after which to evaluate: 0 (the initial model), every ``every``, and the end."""
    return {0, iterations, *range(every, iterations, every)}


def train(setup: Setup, algorithm: str | None = None, *, hooks: list[Hook] | tuple = (),
          sim: Simulator | None = None, evaluator: Any = None) -> RunResult:
    """Train one algorithm for ``cfg.train.iterations`` iterations with periodic evaluation.

    ``sim`` is any engine with the simulator's training interface (the distributed engine passes
    itself); ``evaluator`` anything with ``evaluate(sim) -> dict`` (default: :class:`Evaluator`)."""
    cfg = setup.cfg
    sim = sim or Simulator(setup, algorithm)
    if evaluator is None:
        evaluator = Evaluator(setup.dataset, setup.partition.union(), cfg.eval)
    T = cfg.train.iterations
    points = eval_points(T, cfg.eval.every)
    result = RunResult(algorithm=sim.name)
    t0 = time.perf_counter()
    losses: list[float] = []

    def evaluate() -> None:
        e0 = time.perf_counter()
        sim.check_finite()
        rec = {
            "algorithm": sim.name,
            "iteration": sim.iteration,
            "rounds": sim.round,
            "lr": sim.lr(),
            "train_batch_loss": sum(losses) / len(losses) if losses else None,
            **evaluator.evaluate(sim),
        }
        losses.clear()
        result.eval_seconds += time.perf_counter() - e0
        rec["elapsed"] = time.perf_counter() - t0
        result.history.append(rec)
        result.final = rec
        for h in hooks:
            h.on_eval(sim, rec)

    for h in hooks:
        h.on_start(sim)
    try:
        if sim.iteration in points:
            evaluate()
        while sim.iteration < T:
            loss = sim.step()
            losses.append(loss)
            for h in hooks:
                h.on_step(sim, loss)
            if sim.iteration in points:
                evaluate()
    except Diverged as d:
        result.status = "diverged"
        result.diverged_at = d.iteration
    result.wall_seconds = time.perf_counter() - t0
    for h in hooks:
        h.on_end(sim, result)
    return result


def environment() -> dict[str, Any]:
    return {
        "gossiplab": gossiplab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "threads": torch.get_num_threads(),
    }


def algorithms_to_run(cfg: Config) -> list[str]:
    names = [cfg.algorithm.name]
    if cfg.algorithm.compare_centralized and cfg.algorithm.name != "centralized":
        names.append("centralized")
    return names


def check_output_dir(out: Path, overwrite: bool = False) -> None:
    """Refuse to clobber an earlier run's results unless asked to."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise UserError(
            f"--out {out} already holds results ({', '.join(existing)}); choose another "
            "directory or pass --overwrite"
        )


class _MetricsLog(Hook):
    def __init__(self, writer: JsonlWriter):
        self.writer = writer

    def on_eval(self, sim: Simulator, record: dict) -> None:
        self.writer.write(record)


def run_experiment(cfg: Config, out: str | Path | None = None, *,
                   hooks: Callable[[str], list[Hook]] | None = None,
                   setup: Setup | None = None, overwrite: bool = False) -> dict:
    """Train the configured algorithm and (optionally) centralized on the same setup; write the
    three output files into ``out`` when given; return the summary dict."""
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        check_output_dir(out_path, overwrite)
    t0 = time.perf_counter()
    setup = setup or prepare(cfg)
    described = setup.describe()
    env = environment()
    writer = None
    if out_path is not None:
        atomic_write_json(out_path / "config.json", config_record(cfg, described, env))
        writer = JsonlWriter(out_path / "metrics.jsonl")
    results: dict[str, RunResult] = {}
    try:
        for name in algorithms_to_run(cfg):
            run_hooks = (hooks(name) if hooks else []) + ([_MetricsLog(writer)] if writer else [])
            results[name] = train(setup, name, hooks=run_hooks)
    finally:
        if writer is not None:
            writer.close()
    summary = summary_record(cfg, results, described, env, time.perf_counter() - t0)
    if out_path is not None:
        atomic_write_json(out_path / "summary.json", summary)
    return summary


def config_record(cfg: Config, described: dict, env: dict) -> dict[str, Any]:
    """The content of ``config.json`` (shared by both engines, so their outputs have one shape)."""
    return {
        "config": cfg.to_dict(), "config_hash": cfg.config_hash(),
        "seeds": cfg.seeds.model_dump(), "setup": described, "environment": env,
    }


def summary_record(cfg: Config, results: dict[str, RunResult], described: dict, env: dict,
                   wall_seconds: float) -> dict[str, Any]:
    """The content of ``summary.json`` (shared by both engines)."""
    main = results[cfg.algorithm.name]
    return {
        "status": main.status,
        "algorithm": cfg.algorithm.name,
        "config_hash": cfg.config_hash(),
        "final": main.final,
        "diverged_at": main.diverged_at,
        "wall_seconds": wall_seconds,
        "runs": {n: r.summary() for n, r in results.items()},
        "topology": described["topology"],
        "heterogeneity": described["partition"],
        "seeds": cfg.seeds.model_dump(),
        "environment": env,
    }
