"""Checkpoints of a run, and resuming it after a crash or ``kill -9`` as if it had never stopped.

Inside a run's output folder, ``checkpoints/<algorithm>.pt`` holds the latest *good* state of that
algorithm's training: the simulator state (parameters, momentum, sampler RNG and permutations,
iteration and gossip-round counters) and the progress (evaluation history, batch losses since the
last evaluation, timings). It is written atomically (temporary file, fsync, rename: a crash
mid-write leaves the previous checkpoint intact) at the start, every N iterations and at the end,
when it holds the final model. A state with a non-finite parameter is never written, so after a
divergence the file still holds the last good state, marked with where the run diverged.

Resuming restores the simulator and the progress, rebuilds metrics.jsonl from the checkpoints
(dropping any evaluation logged after the last checkpoint: the resumed run logs it again, with
the same values) and trains on. On CPU with the same seeds the final model and metrics equal those
of an uninterrupted run bit for bit; only wall-clock fields differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gossiplab.checkpoint import load_checkpoint, save_checkpoint
from gossiplab.config import Config, from_dict
from gossiplab.engine.nodestack import all_finite
from gossiplab.engine.simulator import Simulator
from gossiplab.errors import UserError, shown
from gossiplab.fileio import read_json, safe_filename
from gossiplab.run.loop import Hook, RunResult, eval_points

CHECKPOINT_DIR = "checkpoints"
KIND = "gossiplab-run-state"


def checkpoint_path(out: str | Path, algorithm: str) -> Path:
    """``out/checkpoints/<algorithm>.pt``; the name is sanitised, so it always lies inside ``out``."""
    return Path(out) / CHECKPOINT_DIR / f"{safe_filename(algorithm)}.pt"


def _result_state(result: RunResult) -> dict:
    return {
        "status": result.status,
        "diverged_at": result.diverged_at,
        "history": result.history,
        "pending_losses": list(result.pending_losses),
        "wall_seconds": result.wall_seconds,
        "eval_seconds": result.eval_seconds,
    }


RESULT_STATUSES = ("ok", "diverged")  # what RunResult.status takes


def _result_from_state(algorithm: str, d: dict) -> RunResult:
    history = list(d["history"])
    if not all(isinstance(h, dict) and isinstance(h.get("iteration"), int) for h in history):
        raise ValueError("its history holds records without an integer iteration")
    if str(d["status"]) not in RESULT_STATUSES:
        raise ValueError(f"its status is not one of {', '.join(RESULT_STATUSES)}")
    return RunResult(
        algorithm=algorithm, status=str(d["status"]), final=history[-1] if history else None,
        history=history, wall_seconds=float(d["wall_seconds"]),
        eval_seconds=float(d["eval_seconds"]), diverged_at=d["diverged_at"],
        pending_losses=[float(x) for x in d["pending_losses"]],
    )


class CheckpointHook(Hook):
    """Saves the training state at iteration 0, every ``every`` iterations and at the end.

    A checkpoint that falls on an evaluation point is written after the evaluation, so only a
    state whose metrics came out finite is ever kept as good. ``result`` is the live
    :class:`RunResult` that :func:`~gossiplab.run.loop.train` fills in (pass the same
    object to ``train(result=...)``).
    """

    def __init__(self, path: str | Path, result: RunResult, *, every: int, config_hash: str,
                 saved_iteration: int | None = None):
        if every < 1:
            raise ValueError("checkpoint interval must be >= 1")
        self.path = Path(path)
        self.result = result
        self.every = every
        self.config_hash = config_hash
        self.saved_iteration = saved_iteration
        self.iterations = 0
        self.eval_points: set[int] = set()

    def on_start(self, sim: Simulator) -> None:
        self.iterations = sim.cfg.train.iterations
        self.eval_points = eval_points(self.iterations, sim.cfg.eval.every, sim.cfg.eval.at_start)

    def _due(self, sim: Simulator) -> bool:
        return sim.iteration % self.every == 0 and sim.iteration < self.iterations

    def on_step(self, sim: Simulator, loss: float) -> None:
        if self._due(sim) and sim.iteration not in self.eval_points:
            self.save(sim)

    def on_eval(self, sim: Simulator, record: dict) -> None:
        if self._due(sim):  # includes iteration 0: the initial state is the first good one
            self.save(sim)

    def on_end(self, sim: Simulator, result: RunResult) -> None:
        if result.status == "ok" and self.save(sim, done=True):
            return
        self.mark_stopped(result)

    def save(self, sim: Simulator, done: bool = False) -> bool:
        """Write the state unless a parameter is NaN/inf; returns whether it was written."""
        if not all_finite(sim.stack.params):
            return False
        save_checkpoint(self.path, {
            "kind": KIND,
            "config_hash": self.config_hash,
            "algorithm": sim.name,
            "done": done,
            "iteration": sim.iteration,
            "result": _result_state(self.result),
            "sim": sim.state_dict(),
        })
        self.saved_iteration = sim.iteration
        return True

    def mark_stopped(self, result: RunResult) -> None:
        """The run stopped (diverged): keep the last good state, record how the run ended."""
        if not self.path.exists():
            return
        state = load_checkpoint(self.path)
        state["done"] = True
        state["result"] = _result_state(result)
        save_checkpoint(self.path, state)


@dataclass
class SavedRun:
    """One algorithm's checkpoint, validated against the run being resumed."""

    path: Path
    result: RunResult
    sim_state: dict
    iteration: int
    done: bool


def read_run_config(out: str | Path) -> Config:
    """The config of the run in ``out`` (from its config.json), checked against its hash."""
    p = Path(out) / "config.json"
    if not p.is_file():
        raise UserError(f"--resume: {out} holds no run to resume (no config.json)")
    doc = read_json(p, "run config", 64 << 20)
    try:
        raw, stored_hash = doc["config"], doc["config_hash"]
        cfg = from_dict(raw)
    except (KeyError, TypeError, UserError):
        raise UserError(f"--resume: {p} is not a gossiplab config.json (damaged or edited: its "
                        "'config' and 'config_hash' are missing or invalid)") from None
    if cfg.config_hash() != stored_hash:
        raise UserError(
            f"--resume: {p} was edited or written by another gossiplab version (config hash "
            f"{cfg.config_hash()} != recorded {stored_hash}); start a new run instead"
        )
    return cfg


def config_differences(a: Config, b: Config) -> list[str]:
    """Keys (section.field) whose values differ between two configs."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{s}.{k}" for s in da for k in da[s] if da[s][k] != db.get(s, {}).get(k)]


def load_saved_run(path: Path, cfg: Config, algorithm: str) -> SavedRun:
    state = load_checkpoint(path)
    if state.get("kind") != KIND:
        raise UserError(f"{path} is not a run checkpoint")
    if state.get("config_hash") != cfg.config_hash():
        raise UserError(f"{path} belongs to another config (hash {shown(state.get('config_hash'), 80)}, "
                        f"this run {cfg.config_hash()}); it cannot be resumed here")
    if state.get("algorithm") != algorithm:
        raise UserError(f"{path} holds {shown(repr(state.get('algorithm')), 80)}, not {algorithm!r}")
    try:
        result = _result_from_state(algorithm, state["result"])
        iteration = state["iteration"]
        if not isinstance(iteration, int) or not 0 <= iteration <= cfg.train.iterations:
            raise ValueError(f"its iteration is not between 0 and train.iterations "
                             f"({cfg.train.iterations})")
        if not isinstance(state["sim"], dict) or state["sim"].get("iteration") != iteration:
            raise ValueError("its training state is not that of its iteration")
        return SavedRun(path=path, result=result, sim_state=state["sim"],
                        iteration=iteration, done=bool(state["done"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{path} is incomplete or damaged ({type(e).__name__}: "
                        f"{shown(str(e), 160)})") from None


def restore_run(out: Path | None, cfg: Config, names: list[str]) -> dict[str, SavedRun]:
    """Checkpoints of the run in ``out`` for the algorithms ``names`` (in training order)."""
    if out is None:
        raise UserError("resuming needs the output folder of the interrupted run")
    stored = read_run_config(out)
    if stored.config_hash() != cfg.config_hash():
        diff = ", ".join(config_differences(stored, cfg)) or "?"
        raise UserError(f"--resume: the config differs from that of the run in {out} ({diff}); "
                        "resume with the run's own config (leave out --config/--set)")
    saved: dict[str, SavedRun] = {}
    for name in names:
        p = checkpoint_path(out, name)
        if p.exists():
            saved[name] = load_saved_run(p, cfg, name)
    # algorithms train in order: only the last one with a checkpoint may be unfinished
    started = [n for n in names if n in saved]
    unfinished = [n for n in started if not saved[n].done]
    if unfinished and started[-1] != unfinished[0] or len(unfinished) > 1:
        raise UserError(f"--resume: the checkpoints in {out / CHECKPOINT_DIR} are inconsistent "
                        f"({', '.join(unfinished)} unfinished before later ones); start a new run")
    if started and started != names[:len(started)]:
        raise UserError(f"--resume: checkpoints in {out / CHECKPOINT_DIR} are missing for "
                        f"{', '.join(n for n in names[:len(started)] if n not in saved)}")
    return saved


def restore_simulator(sim: Simulator, saved: SavedRun) -> None:
    try:
        sim.load_state_dict(saved.sim_state)
    except (KeyError, TypeError, ValueError, RuntimeError, AssertionError, AttributeError) as e:
        raise UserError(f"{saved.path} does not fit this run ({type(e).__name__}: "
                        f"{shown(str(e), 160)})") from None
