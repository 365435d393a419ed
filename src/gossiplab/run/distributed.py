"""Run one experiment on the distributed engine: what ``run_experiment`` does, across processes.

Every rank trains its nodes through the same :func:`~gossiplab.run.loop.train` loop
(the engine and evaluator are the distributed ones); rank 0 writes ``config.json``,
``metrics.jsonl`` and ``summary.json`` with the simulator's records, so reports read both; every
rank writes its own checkpoints after each evaluation, and ``resume=True`` continues an
interrupted run from the newest iteration every rank has saved (bitwise the same final models).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gossiplab.config import Config
from gossiplab.engine.comm import Comm, connect
from gossiplab.engine.distributed import DistributedEngine, DistributedEvaluator, LocalShard
from gossiplab.engine.liveness import first_line
from gossiplab.engine.threads import apply_threads, usable_cores
from gossiplab.errors import PeerLost, UserError
from gossiplab.fileio import JsonlWriter, atomic_write_json, atomic_write_text
from gossiplab.metrics import Evaluator
from gossiplab.run import rank_checkpoints as ckpt
from gossiplab.run.loop import Hook, MetricsLog, RunResult, train
from gossiplab.run.runner import (
    algorithms_to_run,
    check_output_dir,
    choose_run_threads,
    config_record,
    environment,
    summary_record,
)
from gossiplab.setup import Setup, prepare


def run_distributed(cfg: Config, out: str | Path | None = None, *, overwrite: bool = False,
                    resume: bool = False, hooks: Callable[[str], list[Hook]] | None = None
                    ) -> dict | None:
    """Join the run (torchrun's environment), train, write results on rank 0. Returns the
    summary on rank 0, None on the other ranks. ``hooks(name)`` (progress...) run on rank 0."""
    comm = connect(cfg)
    try:
        summary = _Run(cfg, comm, overwrite=overwrite, resume=resume, hooks=hooks).run(out)
    except PeerLost:
        comm.close(clean=False)
        raise
    except BaseException as e:
        comm.abort(f"{type(e).__name__}: {first_line(e)}")
        comm.close(clean=False)
        raise
    comm.close()
    return summary


class _Replay(Hook):
    """After a resume, the first evaluation repeats the checkpoint's; it takes that record
    verbatim (its train_batch_loss covers iterations before the kill), and later records' elapsed
    time continues from it."""

    def __init__(self, record: dict | None, elapsed: float):
        self.record = record
        self.offset = elapsed

    def on_eval(self, sim, record: dict) -> None:
        if self.record is not None:
            record.clear()
            record.update(self.record)
            self.record = None
        else:
            record["elapsed"] += self.offset

    def on_end(self, sim, result: RunResult) -> None:
        result.wall_seconds += self.offset


class _Run:
    def __init__(self, cfg: Config, comm: Comm, *, overwrite: bool, resume: bool,
                 hooks: Callable[[str], list[Hook]] | None):
        self.cfg = cfg
        self.comm = comm
        self.rank = comm.rank
        self.overwrite = overwrite
        self.resume = resume
        self.hooks = hooks
        self.traffic: dict[str, Any] = {}

    # -- start ----------------------------------------------------------------------------------

    def _decide(self, out: Path | None) -> dict:
        """Rank 0: where results go, and whether this run starts fresh or resumes."""
        cfg, world = self.cfg, self.comm.world_size
        if self.resume:
            if out is None:
                raise UserError("--resume needs --out DIR, the folder of the interrupted run")
            info = ckpt.read_run_info(out)
            if info is None:
                raise UserError(f"--resume: {out} holds no distributed run to resume "
                                f"(no {ckpt.FOLDER}/run.json)")
            if info["config_hash"] != cfg.config_hash():
                raise UserError(f"--resume: the run in {out} was started with another config (hash "
                                f"{info['config_hash']}, now {cfg.config_hash()}); resume with the "
                                "same --config and --set options")
            if info["world_size"] != world:
                raise UserError(f"--resume: the run in {out} had {info['world_size']} processes; "
                                f"resume it with {info['world_size']} (now {world})")
            if (out / "summary.json").exists():
                raise UserError(f"--resume: the run in {out} has finished (summary.json); nothing to resume")
            return {"out": str(out), "resume": True, "done": ckpt.finished(out)}
        out = out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        check_output_dir(out, self.overwrite)
        ckpt.clear(out)
        ckpt.write_run_info(out, {"config_hash": cfg.config_hash(), "world_size": world,
                                  "nodes": cfg.topology.nodes})
        return {"out": str(out), "resume": False, "done": []}

    def _prepare(self) -> Setup:
        """Load and partition the data: the first rank of each host first (a download happens
        once per host), then the others."""
        comm = self.comm
        host = comm.hosts[self.rank]
        first = min(r for r, h in enumerate(comm.hosts) if h == host)
        key = f"prepared/{host}"
        if self.rank == first:
            try:
                return prepare(self.cfg)
            finally:
                comm.store.set(key, "1")
        comm.liveness.wait_until(lambda: comm.store.check([key]), [first],
                                 f"waiting for rank {first} to load the data")
        return prepare(self.cfg)

    def run(self, out: str | Path | None) -> dict | None:
        cfg, comm = self.cfg, self.comm
        t0 = time.perf_counter()
        # each machine keeps its checkpoints in its own --out (rank 0's when it was not given);
        # the ranks of one machine must agree
        mine = str(out) if out is not None else None
        given = comm.gather("out", [comm.hosts[self.rank], mine])
        for r, (host, o) in enumerate(given):
            first = next(i for i, (h, _) in enumerate(given) if h == host)
            if o != given[first][1]:
                raise UserError(f"ranks {first} and {r} on host {host} were given different --out "
                                f"({given[first][1]} and {o}); start every process of a machine "
                                "with the same command")
        decision = None
        if self.rank == 0:
            try:
                decision = {"ok": True, **self._decide(Path(out) if out is not None else None)}
            except UserError as e:
                decision = {"ok": False, "error": str(e)}
        decision = comm.share("start", decision)
        if not decision["ok"]:
            raise UserError(decision["error"])
        self.out = out_path = Path(mine if mine is not None else decision["out"])
        self.outs = {h: (o if o is not None else decision["out"]) for h, o in given}
        if not decision["resume"]:
            ckpt.clear(out_path, self.rank)
        setup = self._prepare()
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        threads = choose_run_threads(setup, cap=max(1, usable_cores() // max(1, local_ranks)))
        apply_threads(threads)
        lo, hi = comm.block()
        shard = LocalShard.from_setup(setup, lo, hi)
        if self.rank != 0:
            setup.dataset = shard.dataset  # keep only this rank's samples
        comm.barrier("ready")
        described = env = None
        if self.rank == 0:
            described = {**setup.describe(), "threads": threads.record()}
            env = environment()
            if not decision["resume"]:
                atomic_write_json(out_path / "config.json",
                                  {**config_record(cfg, described, env), "distributed": self._info()})
                atomic_write_text(out_path / "metrics.jsonl", "")
        results: dict[str, RunResult] = {}
        for name in algorithms_to_run(cfg):
            if name in decision["done"]:
                if self.rank == 0:
                    results[name] = ckpt.load_result(out_path, name)
                traffic = ckpt.load_traffic(out_path, name, self.rank)
                if traffic is not None:
                    self.traffic[name] = traffic
                continue
            results[name] = self._train(setup, shard, name, decision["resume"])
        traffic = comm.gather("traffic", self.traffic)
        if self.rank != 0:
            return None
        summary = summary_record(cfg, results, described, env, time.perf_counter() - t0)
        summary["distributed"] = {**self._info(), "out": str(out_path), "out_by_host": self.outs,
                                  "traffic": _traffic_summary(traffic)}
        # same key as the simulator's summary; here one checkpoint file per rank
        saved = {n: ckpt.iterations(out_path, n, 0) for n in results}
        summary["checkpoints"] = {
            n: {"path": str(ckpt.path(Path("."), n, 0, its[-1])).replace(".rank0000.", ".rank*."),
                "iteration": its[-1], "status": results[n].status}
            for n, its in saved.items() if its
        }
        atomic_write_json(out_path / "summary.json", summary)
        return summary

    def _info(self) -> dict:
        c = self.comm
        return {
            "world_size": c.world_size, "backend": c.backend, "hosts": c.hosts,
            "nodes_per_rank": [hi - lo for lo, hi in (c.block(r) for r in range(c.world_size))],
            "rendezvous": c.launch.where, "timeout": c.timeout,
        }

    # -- one algorithm --------------------------------------------------------------------------

    def _train(self, setup: Setup, shard: LocalShard, name: str, resuming: bool) -> RunResult:
        cfg, comm, out = self.cfg, self.comm, self.out
        engine = DistributedEngine(setup, name, comm=comm, shard=shard)
        record, elapsed = None, 0.0
        if resuming:
            everyone = comm.gather(f"checkpoints/{name}", ckpt.iterations(out, name, self.rank))
            common = set(everyone[0]).intersection(*everyone[1:])
            if common:
                from gossiplab.checkpoint import load_checkpoint

                state = load_checkpoint(ckpt.path(out, name, self.rank, max(common)))
                if state.get("config_hash") != cfg.config_hash():
                    raise UserError(f"--resume: checkpoint of rank {self.rank} in {out} belongs to "
                                    "another config")
                engine.load_state_dict(state)
                record, elapsed = state.get("record"), float(state.get("elapsed", 0.0))
        hooks: list[Hook] = []
        writer = None
        if self.rank == 0:
            if resuming:
                _keep_metrics(out / "metrics.jsonl", name, engine.iteration if record else 0)
            writer = JsonlWriter(out / "metrics.jsonl", append=True)
            hooks += self.hooks(name) if self.hooks else []
        if record is not None or elapsed:
            hooks.append(_Replay(record, elapsed))
        if writer is not None:
            hooks.append(MetricsLog(writer))
        # Waits in gloo carry engine.timeout; the steps that take one rank longer than the others
        # (writing files, building the evaluator) end in a store barrier, which waits on heartbeats.
        hooks.append(ckpt.CheckpointHook(out, self.rank, cfg.config_hash(), elapsed,
                                         sync=lambda: comm.barrier(f"checkpoint/{name}")))
        evaluator = DistributedEvaluator(
            comm, Evaluator(setup.dataset, setup.partition.union(), cfg.eval, cfg.optim.batch_size)
            if self.rank == 0 else None,
            cfg.eval.max_nodes)
        comm.barrier(f"start/{name}")
        start_iteration, start_bytes = engine.iteration, engine.mixer.bytes_sent
        try:
            result = train(setup, name, hooks=hooks, sim=engine, evaluator=evaluator)
        finally:
            if writer is not None:
                writer.close()
        self.traffic[name] = {
            "iterations": engine.iteration - start_iteration,
            "gossip_bytes": engine.mixer.bytes_sent - start_bytes,
            "gossip_messages": engine.mixer.messages,
            "nodes": shard.hi - shard.lo,
        }
        ckpt.save_traffic(out, name, self.rank, self.traffic[name])
        if self.rank == 0:
            ckpt.save_result(out, result)
        return result


def _keep_metrics(path: Path, algorithm: str, iteration: int) -> None:
    """Before resuming ``algorithm`` at ``iteration``: keep the other algorithms' records and its
    records before ``iteration`` (the resumed run writes the rest again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        if rec.get("algorithm") != algorithm or rec.get("iteration", 0) < iteration:
            kept.append(line)
    atomic_write_text(path, "".join(f"{k}\n" for k in kept))


def _traffic_summary(per_rank: list[dict]) -> dict:
    """Gossip bytes each rank sent per iteration, by algorithm."""
    out: dict[str, Any] = {}
    for name in sorted({n for t in per_rank for n in t}):
        rows = [t[name] for t in per_rank if name in t]
        per_it = [r["gossip_bytes"] / r["iterations"] if r["iterations"] else 0.0 for r in rows]
        out[name] = {
            "gossip_bytes_per_iteration_per_rank": per_it,
            "gossip_bytes_per_iteration_per_node": sum(per_it) / sum(r["nodes"] for r in rows),
        }
    return out
