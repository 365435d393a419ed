"""Several runs trained as replicas of one node matrix (:class:`ReplicaSimulator`), each with the
history, summary and hooks it would have had alone: :func:`train_replicas` is :func:`train` for a
group, :func:`run_replicas` is :func:`run_experiment` (without output folders) for a group.

Which runs can share a matrix is :func:`group_key`'s to say; the sweep scheduler groups by it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gossiplab.config import Config
from gossiplab.engine.replicas import ReplicaSimulator
from gossiplab.engine.threads import apply_threads
from gossiplab.errors import Diverged
from gossiplab.metrics import Evaluator
from gossiplab.run.loop import (
    Hook,
    RunResult,
    eval_points,
    first_nonfinite,
    process_started_at,
)
from gossiplab.run.runner import algorithms_to_run, choose_run_threads, environment, summary_record
from gossiplab.setup import Setup

# Config keys whose values never change a tensor's shape or the order of an iteration's steps:
# runs that differ only in these train together as replicas. (Adding one: check that the
# simulator reads it only through the per-replica objects of ReplicaSimulator.)
REPLICA_KEYS = frozenset({
    "seeds.data", "seeds.init", "seeds.sampling",
    "optim.lr", "optim.momentum", "optim.nesterov", "optim.weight_decay", "optim.schedule",
    "optim.t0", "optim.step_every", "optim.gamma",
    "algorithm.gossip_steps", "algorithm.gossip",
    "topology.name", "topology.mixing", "topology.laziness", "topology.seed", "topology.er_p",
    "topology.shape", "topology.edge_file", "topology.matrix_file",
    "data.partition", "data.alpha", "data.shards_per_node", "data.samples_per_node",
    "engine.fuse_gossip",
})
# ... except where they change the data itself (a synthetic dataset is drawn from seeds.data)
SYNTHETIC_DATA_KEYS = frozenset({"seeds.data"})


def group_key(config: dict[str, Any]) -> str:
    """Runs with equal keys can train as replicas of one matrix (the config without the keys in
    :data:`REPLICA_KEYS`). Distributed runs and runs that compare with centralized inside one
    run are never grouped (their key is unique)."""
    import json

    from gossiplab.config import flatten

    flat = flatten(config)
    if flat.get("engine.name", "simulator") != "simulator" or flat.get("algorithm.compare_centralized"):
        return json.dumps(sorted(flat.items()), default=str)
    keep = REPLICA_KEYS - (SYNTHETIC_DATA_KEYS if flat.get("data.dataset") == "synthetic" else set())
    return json.dumps(sorted((k, v) for k, v in flat.items() if k not in keep), default=str)


class ReplicaView:
    """What a hook sees of one replica: the training interface of a single engine."""

    def __init__(self, sim: ReplicaSimulator, r: int):
        self.sim = sim
        self.replica = r
        self.setup = sim.setups[r]
        self.cfg = self.setup.cfg

    @property
    def name(self) -> str:
        return self.sim.name

    @property
    def iteration(self) -> int:
        return self.sim.iteration

    @property
    def round(self) -> int:
        return self.sim.parts[self.replica].round

    def lr(self) -> float:
        return self.sim.replica_lr(self.replica)


def train_replicas(setups: list[Setup], algorithm: str | None = None, *,
                   hooks: list[list[Hook]] | None = None) -> list[RunResult]:
    """:func:`~gossiplab.run.loop.train` for runs trained as replicas: the same
    evaluation points, records, divergence handling and hook calls per run."""
    cfg = setups[0].cfg
    if len({(s.cfg.train.iterations, s.cfg.eval.every, s.cfg.eval.at_start) for s in setups}) != 1:
        raise ValueError("replicas must share train.iterations and the evaluation points")
    sim = ReplicaSimulator(setups, algorithm)
    R = sim.replicas
    hooks = hooks or [[] for _ in setups]
    views = [ReplicaView(sim, r) for r in range(R)]
    evaluators = [Evaluator(s.dataset, s.partition.union(), s.cfg.eval, s.cfg.optim.batch_size)
                  for s in setups]
    T = cfg.train.iterations
    points = eval_points(T, cfg.eval.every, cfg.eval.at_start)
    results = [RunResult(algorithm=sim.name) for _ in setups]
    pending: list[list[float]] = [[] for _ in setups]
    stopped = [False] * R
    t0 = time.perf_counter()
    eval_time = [0.0] * R

    def stop(r: int, d: Diverged) -> None:
        stopped[r] = True
        results[r].status = "diverged"
        results[r].diverged_at = d.iteration
        results[r].wall_seconds = time.perf_counter() - t0
        for h in hooks[r]:
            h.on_end(views[r], results[r])

    def evaluate(r: int) -> None:
        e0 = time.perf_counter()
        if not sim.replica_finite(r):
            raise Diverged(sim.iteration, "parameters")
        losses = pending[r]
        rec = {
            "algorithm": sim.name,
            "iteration": sim.iteration,
            "rounds": sim.parts[r].round,
            "lr": sim.replica_lr(r),
            "train_batch_loss": sum(losses) / len(losses) if losses else None,
            **evaluators[r].evaluate(sim, replica=r),
            **sim.parts[r].ledger.record(sim.iteration),
        }
        bad = first_nonfinite(rec)
        if bad is not None:
            raise Diverged(sim.iteration, f"evaluation metric {bad}")
        losses.clear()
        eval_time[r] += time.perf_counter() - e0
        results[r].eval_seconds = eval_time[r]
        rec["elapsed"] = time.perf_counter() - t0
        results[r].history.append(rec)
        results[r].final = rec
        results[r].wall_seconds = rec["elapsed"]
        for h in hooks[r]:
            h.on_eval(views[r], rec)

    def evaluate_all() -> None:
        for r in range(R):
            if not stopped[r]:
                try:
                    evaluate(r)
                except Diverged as d:
                    stop(r, d)

    for r in range(R):
        for h in hooks[r]:
            h.on_start(views[r])
    if 0 in points:
        evaluate_all()
    while sim.iteration < T and not all(stopped):
        losses = sim.step()
        now = time.perf_counter() - t0
        for r, loss in enumerate(losses):
            if stopped[r]:
                continue
            if loss is None:
                stop(r, Diverged(sim.diverged_at[r] or 0, "loss"))
                continue
            if results[r].first_iteration_seconds is None:
                results[r].first_iteration_seconds = time.time() - process_started_at()
            pending[r].append(loss)
            results[r].wall_seconds = now
            for h in hooks[r]:
                h.on_step(views[r], loss)
        if sim.iteration in points:
            evaluate_all()
    for r in range(R):
        if not stopped[r]:
            results[r].wall_seconds = time.perf_counter() - t0
            results[r].pending_losses = pending[r]
            for h in hooks[r]:
                h.on_end(views[r], results[r])
    return results


def run_replicas(configs: list[Config], setups: list[Setup], *,
                 hooks: Callable[[int, str], list[Hook]] | None = None,
                 thread_cap: int | None = None) -> list[dict[str, Any]]:
    """:func:`~gossiplab.run.runner.run_experiment`'s summaries (no output folder) for
    runs trained as replicas; ``hooks(r, algorithm)`` gives run r's hooks. The thread count is
    chosen once, as for the first run (replicas share engine.threads and the step's shapes)."""
    t0 = time.perf_counter()
    names = algorithms_to_run(configs[0])
    if any(algorithms_to_run(c) != names for c in configs):
        raise ValueError("replicas must train the same algorithms")
    threads = choose_run_threads(setups[0], cap=thread_cap)
    apply_threads(threads)
    described = [{**s.describe(), "threads": threads.record()} for s in setups]
    env = environment()
    results: list[dict[str, RunResult]] = [{} for _ in configs]
    for name in names:
        group_hooks = [hooks(r, name) if hooks else [] for r in range(len(configs))]
        for r, res in enumerate(train_replicas(setups, name, hooks=group_hooks)):
            results[r][name] = res
    wall = time.perf_counter() - t0
    return [summary_record(c, results[r], described[r], env, wall) for r, c in enumerate(configs)]
