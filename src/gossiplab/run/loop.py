"""The training loop of one run on any engine: :func:`train` steps the engine, evaluates at fixed
points and calls hooks. Output files (run/runner.py), checkpoints (run/checkpointing.py) and
progress (run/progress.py) are hooks; they import this module, never the other way round."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import gossiplab
from gossiplab.engine.simulator import Simulator
from gossiplab.errors import Diverged
from gossiplab.fileio import JsonlWriter
from gossiplab.metrics import Evaluator
from gossiplab.setup import Setup


class Hook:
    """Called by :func:`train` at fixed points; subclass and override what you need."""

    def on_start(self, sim: Simulator) -> None: ...

    def on_step(self, sim: Simulator, loss: float) -> None: ...

    def on_eval(self, sim: Simulator, record: dict) -> None: ...

    def on_end(self, sim: Simulator, result: RunResult) -> None: ...


class MetricsLog(Hook):
    """Writes every evaluation record, as one JSON line, to ``writer`` (nothing when it is None),
    with ``tags`` (e.g. the stability replica count) in front: the one metrics.jsonl writer of
    simulator runs, distributed runs and stability runs."""

    def __init__(self, writer: JsonlWriter | None, tags: dict | None = None):
        self.writer = writer
        self.tags = tags or {}

    def on_eval(self, sim: Simulator, record: dict) -> None:
        if self.writer is not None:
            self.writer.write({**self.tags, **record} if self.tags else record)


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
    # seconds from the process start to the end of this run's first training iteration (start-up:
    # imports, data, setup, the iteration-0 evaluation; benchmarks/startup.py reads it)
    first_iteration_seconds: float | None = None

    def summary(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "status": self.status,
            "diverged_at": self.diverged_at,
            "final": self.final,
            "wall_seconds": self.wall_seconds,
            "eval_seconds": self.eval_seconds,
            "eval_fraction": self.eval_seconds / self.wall_seconds if self.wall_seconds else 0.0,
            "first_iteration_seconds": self.first_iteration_seconds,
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


def eval_points(iterations: int, every: int, at_start: bool = True) -> set[int]:
    """Iterations after which to evaluate: 0 (the initial model, unless not ``at_start``), every
    ``every``, and the end."""
    return {0, iterations, *range(every, iterations, every)} - (set() if at_start else {0})


def process_started_at() -> float:
    """Wall-clock time at which this process started (Linux: from /proc; elsewhere the time
    gossiplab was imported), for start-up records."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return gossiplab.IMPORTED_AT


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
        evaluator = Evaluator(setup.dataset, setup.partition.union(), cfg.eval,
                              cfg.optim.batch_size)
    T = cfg.train.iterations
    points = eval_points(T, cfg.eval.every, cfg.eval.at_start)
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
            **sim.ledger.record(sim.iteration),
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
            if result.first_iteration_seconds is None:
                result.first_iteration_seconds = time.time() - process_started_at()
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
