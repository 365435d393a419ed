"""Run one experiment on the simulator: train the configured algorithm (and its centralized
baseline) through :func:`~gossiplab.run.loop.train`, write config.json / metrics.jsonl /
summary.json. Progress, checkpoints (run/checkpointing.py) and any extra behaviour attach as
hooks rather than flags in the loop."""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import gossiplab
from gossiplab.config import BASELINE, Config
from gossiplab.engine.simulator import Simulator
from gossiplab.engine.threads import ThreadChoice, apply_threads, choose_threads, step_flops
from gossiplab.errors import UserError
from gossiplab.fileio import (
    JsonlWriter,
    atomic_write_json,
    atomic_write_text,
    remove_file,
    remove_stale_temp_files,
    to_json_line,
)
from gossiplab.run import checkpointing as ck
from gossiplab.run.loop import Hook, MetricsLog, RunResult, train
from gossiplab.setup import Setup, build_model_for, prepare

OUTPUT_FILES = ("config.json", "metrics.jsonl", "summary.json")


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
    if cfg.algorithm.compare_centralized and cfg.algorithm.name != BASELINE:
        names.append(BASELINE)
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
    """
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
            run_hooks = (hooks(name) if hooks else []) + ([MetricsLog(writer)] if writer else [])
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
