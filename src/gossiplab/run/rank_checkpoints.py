"""Per-rank checkpoints of a distributed run, in ``<out>/checkpoints/``.

After every evaluation each rank writes its own engine state atomically
(``<algorithm>.rank<r>.it<iteration>.pt``, through :func:`gossiplab.checkpoint.save_checkpoint`)
and keeps its last two: ranks write one after another, so after a kill the newest iteration that
*every* rank holds is complete, and a resume starts there. Rank 0 also keeps ``run.json`` (config
hash, process count) and ``<algorithm>.result.json`` for each finished algorithm.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gossiplab.checkpoint import load_checkpoint, save_checkpoint
from gossiplab.errors import UserError
from gossiplab.fileio import atomic_write_json, read_json
from gossiplab.run.loop import Hook, RunResult

FOLDER = "checkpoints"
KEEP = 2
_NAME = re.compile(r"^(?P<algo>[A-Za-z0-9_]+)\.rank(?P<rank>\d+)\.it(?P<it>\d+)\.pt$")


def folder(out: Path) -> Path:
    return Path(out) / FOLDER


def path(out: Path, algorithm: str, rank: int, iteration: int) -> Path:
    return folder(out) / f"{algorithm}.rank{rank:04d}.it{iteration:09d}.pt"


def _files(out: Path) -> list[tuple[str, int, int, Path]]:
    d = folder(out)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((m["algo"], int(m["rank"]), int(m["it"]), p))
    return found


def iterations(out: Path, algorithm: str, rank: int) -> list[int]:
    """Iterations for which this rank holds a checkpoint of ``algorithm``."""
    return sorted(it for a, r, it, _ in _files(out) if a == algorithm and r == rank)


def prune(out: Path, algorithm: str, rank: int, keep: int = KEEP) -> None:
    mine = sorted((it, p) for a, r, it, p in _files(out) if a == algorithm and r == rank)
    for _, p in mine[:-keep] if keep else mine:
        p.unlink(missing_ok=True)


def clear(out: Path, rank: int | None = None) -> None:
    """Remove the checkpoints of ``rank`` (all ranks' and the run files when None)."""
    for _, r, _, p in _files(out):
        if rank is None or r == rank:
            p.unlink(missing_ok=True)
    if rank is not None and folder(out).is_dir():
        for p in folder(out).glob(f"*.rank{rank:04d}.traffic.json"):
            p.unlink(missing_ok=True)
    if rank is None and folder(out).is_dir():
        for p in folder(out).glob("*.json"):
            p.unlink(missing_ok=True)


def write_run_info(out: Path, info: dict) -> None:
    atomic_write_json(folder(out) / "run.json", info)


def read_run_info(out: Path) -> dict | None:
    p = folder(out) / "run.json"
    if not p.is_file():
        return None
    info = read_json(p, "run record")
    if not isinstance(info, dict) or not {"config_hash", "world_size"} <= set(info):
        raise UserError(f"{p} is damaged: not a gossiplab run record; cannot resume")
    return info


def result_path(out: Path, algorithm: str) -> Path:
    return folder(out) / f"{algorithm}.result.json"


def save_result(out: Path, result: RunResult) -> None:
    atomic_write_json(result_path(out, result.algorithm), {
        "algorithm": result.algorithm, "status": result.status, "final": result.final,
        "wall_seconds": result.wall_seconds, "eval_seconds": result.eval_seconds,
        "diverged_at": result.diverged_at,
    })


def load_result(out: Path, algorithm: str) -> RunResult:
    p = result_path(out, algorithm)
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{p} is unreadable ({e}); cannot resume") from None
    return RunResult(algorithm=d["algorithm"], status=d["status"], final=d["final"],
                     wall_seconds=d["wall_seconds"], eval_seconds=d["eval_seconds"],
                     diverged_at=d["diverged_at"])


def traffic_path(out: Path, algorithm: str, rank: int) -> Path:
    return folder(out) / f"{algorithm}.rank{rank:04d}.traffic.json"


def save_traffic(out: Path, algorithm: str, rank: int, traffic: dict) -> None:
    """What this rank sent for a finished algorithm: a resumed run reports it again."""
    atomic_write_json(traffic_path(out, algorithm, rank), traffic)


def load_traffic(out: Path, algorithm: str, rank: int) -> dict | None:
    p = traffic_path(out, algorithm, rank)
    if not p.is_file():
        return None
    d = read_json(p, "traffic record")
    if not isinstance(d, dict) or not {"iterations", "gossip_bytes", "nodes"} <= set(d):
        raise UserError(f"{p} is not a traffic record of a gossiplab run; cannot resume")
    return d


def finished(out: Path) -> list[str]:
    d = folder(out)
    return sorted(p.name[:-len(".result.json")] for p in d.glob("*.result.json")) if d.is_dir() else []


class CheckpointHook(Hook):
    """After each evaluation, this rank's engine state (rank 0 adds the evaluation record, which
    a resume replays); keeps the last :data:`KEEP` per algorithm."""

    def __init__(self, out: Path, rank: int, config_hash: str, elapsed_offset: float = 0.0,
                 sync: Callable[[], None] | None = None):
        self.out = Path(out)
        self.rank = rank
        self.config_hash = config_hash
        self.offset = elapsed_offset
        self.sync = sync  # after writing: wait for the other ranks (a slow disk is not a lost peer)
        self.t0 = time.perf_counter()

    def on_start(self, sim) -> None:
        self.t0 = time.perf_counter()

    def on_eval(self, sim, record: dict) -> None:
        state = sim.state_dict()
        state["config_hash"] = self.config_hash
        state["record"] = record if self.rank == 0 else None
        state["elapsed"] = self.offset + time.perf_counter() - self.t0
        save_checkpoint(path(self.out, sim.name, self.rank, sim.iteration), state)
        prune(self.out, sim.name, self.rank)
        if self.sync is not None:
            self.sync()

    def on_end(self, sim, result) -> None:
        if result.status == "ok":
            prune(self.out, sim.name, self.rank, keep=1)


def load_models(out: str | Path, algorithm: str) -> tuple[int, torch.Tensor]:
    """``(iteration, [models, d] parameters)`` of ``algorithm`` from the newest iteration every
    rank has checkpointed (a finished run: its final models)."""
    out = Path(out)
    info = read_run_info(out)
    if info is None:
        raise UserError(f"{out} holds no distributed run (no {FOLDER}/run.json)")
    world = int(info["world_size"])
    have = [set(iterations(out, algorithm, r)) for r in range(world)]
    common = set.intersection(*have) if have else set()
    if not common:
        raise UserError(f"{out}: no iteration of {algorithm} is checkpointed by all {world} ranks")
    it = max(common)
    states = [load_checkpoint(path(out, algorithm, r, it)) for r in range(world)]
    if states[0]["replicated"]:
        return it, states[0]["params"]  # one model, the same on every rank (centralized)
    return it, torch.cat([s["params"] for s in states])
