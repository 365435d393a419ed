"""Run one experiment: train the configured algorithm (and its centralized baseline), evaluate at
fixed points, write config.json / metrics.jsonl / summary.json. Evaluation, progress and any
extra behaviour (checkpoints: experiments/checkpointing.py) attach as hooks rather than flags in
the loop."""

from __future__ import annotations

import math
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
from gossiplab.engine.threads import ThreadChoice, apply_threads, choose_threads, step_flops
from gossiplab.errors import Diverged, UserError
from gossiplab.experiments.setup import Setup, build_model_for, prepare
from gossiplab.fileio import (
    JsonlWriter,
    atomic_write_json,
    atomic_write_text,
    remove_file,
    remove_stale_temp_files,
    to_json_line,
)
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
    pending_losses: list[float] = field(default_factory=list)  # batch losses since the last eval

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


def first_nonfinite(obj: Any, path: str = "") -> str | None:
    """Dotted path of the first NaN/inf number in a (nested) record, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else path or "value"
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return None
    for k, v in items:
        bad = first_nonfinite(v, f"{path}.{k}" if path else str(k))
        if bad is not None:
            return bad
    return None


def eval_points(iterations: int, every: int) -> set[int]:
    """Iterations after which to evaluate: 0 (the initial model), every ``every``, and the end."""
    return {0, iterations, *range(every, iterations, every)}


def train(setup: Setup, algorithm: str | None = None, *, hooks: list[Hook] | tuple = (),
          sim: Simulator | None = None, evaluator: Any = None,
          result: RunResult | None = None) -> RunResult:
    """Train one algorithm for ``cfg.train.iterations`` iterations with periodic evaluation.

    ``sim`` is any engine with the simulator's training interface (the distributed engine passes
    itself); ``evaluator`` anything with ``evaluate(sim) -> dict`` (default: :class:`Evaluator`).
    To continue an interrupted run, pass ``sim`` restored from a checkpoint and ``result`` as it
    was at that point (history, batch losses since the last evaluation, timings): the run then
    goes on exactly as if it had never stopped. ``result`` is updated in place (its
    ``wall_seconds`` before every hook call), so a hook holding it sees the live progress.
    """
    cfg = setup.cfg
    sim = sim or Simulator(setup, algorithm)
    if evaluator is None:
        evaluator = Evaluator(setup.dataset, setup.partition.union(), cfg.eval)
    T = cfg.train.iterations
    points = eval_points(T, cfg.eval.every)
    if result is None:
        result = RunResult(algorithm=sim.name)
    elif result.algorithm != sim.name:
        raise ValueError(f"result of {result.algorithm} given to continue {sim.name}")
    wall0 = result.wall_seconds
    t0 = time.perf_counter()
    losses = result.pending_losses

    def clock() -> float:
        return wall0 + time.perf_counter() - t0

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
        bad = first_nonfinite(rec)
        if bad is not None:  # finite parameters can still overflow the loss: diverged all the same
            raise Diverged(sim.iteration, f"evaluation metric {bad}")
        losses.clear()
        result.eval_seconds += time.perf_counter() - e0
        rec["elapsed"] = clock()
        result.history.append(rec)
        result.final = rec
        result.wall_seconds = clock()
        for h in hooks:
            h.on_eval(sim, rec)

    for h in hooks:
        h.on_start(sim)
    try:
        done = result.history and result.history[-1]["iteration"] == sim.iteration
        if sim.iteration in points and not done:  # (a resumed run may have evaluated already)
            evaluate()
        while sim.iteration < T:
            loss = sim.step()
            losses.append(loss)
            result.wall_seconds = clock()
            for h in hooks:
                h.on_step(sim, loss)
            if sim.iteration in points:
                evaluate()
    except Diverged as d:
        result.status = "diverged"
        result.diverged_at = d.iteration
    result.wall_seconds = clock()
    for h in hooks:
        h.on_end(sim, result)
    return result


def choose_run_threads(setup: Setup, cap: int | None = None) -> ThreadChoice:
    """engine.threads if set, else a count from the work per step and the free cores
    (engine/threads.py), recorded in config.json and summary.json as ``threads``."""
    cfg = setup.cfg
    flops = None
    if not cfg.engine.threads:
        template = build_model_for(cfg, setup.dataset)
        flops = step_flops(template, tuple(setup.dataset.input_shape),
                           cfg.topology.nodes * cfg.optim.batch_size)
    return choose_threads(cfg.engine.threads, flops, cap=cap, device=setup.device.type)


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
        hint = "" if (out / "summary.json").exists() else ", or --resume to finish it"
        raise UserError(
            f"--out {out} already holds results ({', '.join(existing)}); choose another "
            f"directory or pass --overwrite{hint}"
        )


class _MetricsLog(Hook):
    def __init__(self, writer: JsonlWriter):
        self.writer = writer

    def on_eval(self, sim: Simulator, record: dict) -> None:
        self.writer.write(record)


def run_experiment(cfg: Config, out: str | Path | None = None, *,
                   hooks: Callable[[str], list[Hook]] | None = None,
                   setup: Setup | None = None, overwrite: bool = False,
                   checkpoint_every: int | None = None, resume: bool = False,
                   thread_cap: int | None = None) -> dict:
    """Train the configured algorithm and (optionally) centralized on the same setup; write the
    three output files into ``out`` when given; return the summary dict.

    ``checkpoint_every = N`` (needs ``out``) saves ``out/checkpoints/<algorithm>.pt`` atomically
    at the start, every N iterations and at the end (then it holds the final model).
    ``resume=True`` continues the interrupted run in ``out`` (``cfg`` must be the one in its
    config.json) from its checkpoints; metrics.jsonl is rebuilt from them, so the finished files
    equal those of an uninterrupted run (bitwise on CPU, up to wall-clock fields).
    ``thread_cap``: most threads the default thread choice may take (a sweep worker's share).
    """
    from gossiplab.experiments import checkpointing as ck

    out_path = Path(out) if out is not None else None
    if resume and out_path is None:
        raise UserError("resuming needs the output folder of the interrupted run")
    if out_path is not None and not resume:
        check_output_dir(out_path, overwrite)
    t0 = time.perf_counter()
    names = algorithms_to_run(cfg)
    restored = ck.restore_run(out_path, cfg, names) if resume else {}
    setup = setup or prepare(cfg)
    threads = choose_run_threads(setup, cap=thread_cap)
    apply_threads(threads)
    described = {**setup.describe(), "threads": threads.record()}
    env = environment()
    writer = None
    if out_path is not None:
        if resume:
            for folder in (out_path, out_path / ck.CHECKPOINT_DIR):
                remove_stale_temp_files(folder)
            history = [r for n in names if n in restored for r in restored[n].result.history]
            atomic_write_text(out_path / "metrics.jsonl", "".join(map(to_json_line, history)))
            writer = JsonlWriter(out_path / "metrics.jsonl", append=True)
        else:
            # the completion marker goes first: a run that stops from here on never looks finished
            remove_file(out_path / "summary.json")
            for n in names:
                remove_file(ck.checkpoint_path(out_path, n))
            atomic_write_json(out_path / "config.json", config_record(cfg, described, env))
            writer = JsonlWriter(out_path / "metrics.jsonl")
    every = checkpoint_every if out_path is not None and checkpoint_every else None
    results: dict[str, RunResult] = {}
    saved_at: dict[str, int | None] = {}
    try:
        for name in names:
            saved = restored.get(name)
            if saved is not None and saved.done:
                results[name] = saved.result
                saved_at[name] = saved.iteration
                continue
            sim = Simulator(setup, name)
            result = None
            if saved is not None:
                ck.restore_simulator(sim, saved)
                result = saved.result
            run_hooks = (hooks(name) if hooks else []) + ([_MetricsLog(writer)] if writer else [])
            ckpt = None
            if every:
                assert out_path is not None
                result = result or RunResult(algorithm=name)
                ckpt = ck.CheckpointHook(ck.checkpoint_path(out_path, name), result, every=every,
                                         config_hash=cfg.config_hash(),
                                         saved_iteration=saved.iteration if saved else None)
                run_hooks.append(ckpt)
            results[name] = train(setup, name, hooks=run_hooks, sim=sim, result=result)
            saved_at[name] = ckpt.saved_iteration if ckpt else (saved.iteration if saved else None)
    finally:
        if writer is not None:
            writer.close()
    summary = summary_record(cfg, results, described, env, time.perf_counter() - t0)
    if out_path is not None and any(v is not None for v in saved_at.values()):
        summary["checkpoints"] = {
            n: {"path": str(ck.checkpoint_path(Path("."), n)), "iteration": it,
                "status": results[n].status}
            for n, it in saved_at.items() if it is not None
        }
    if resume:
        summary["resumed_from"] = {n: (restored[n].iteration if n in restored else 0) for n in names}
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
        **({"threads": described["threads"]} if "threads" in described else {}),
        "seeds": cfg.seeds.model_dump(),
        "environment": env,
    }
