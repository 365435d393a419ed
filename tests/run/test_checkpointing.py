"""Checkpoints during a run and resuming it: in-process crashes at chosen iterations, divergence,
and every way a resume can be handed the wrong files."""

import json
import math
import os
import pickle
import shutil

import pytest
import torch

from gossiplab.checkpoint import load_checkpoint, save_checkpoint
from gossiplab.config import load_config
from gossiplab.errors import UserError
from gossiplab.run.checkpointing import (
    CheckpointHook,
    checkpoint_path,
    read_run_config,
)
from gossiplab.run.loop import Hook
from gossiplab.run.runner import run_experiment
from run_outputs import assert_same_run, final_states

OVERRIDES = ["topology.nodes=4", "optim.batch_size=8", "train.iterations=40", "eval.every=15",
             "optim.momentum=0.9", "data.sampling='shuffle'", "algorithm.gossip_steps=2"]
EVERY = 6  # checkpoints at 0, 6, 12, 18, 24, 30, 36 and the end (40); evaluations at 0, 15, 30, 40
# (a checkpoint on an evaluation point, 0 and 30, is written after that evaluation)


class Crash(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way catches it."""


class CrashAt(Hook):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_step(self, sim, loss):
        if sim.iteration == self.iteration:
            raise Crash(f"{sim.name} at {sim.iteration}")


def crash_hooks(algorithm: str, iteration: int):
    return lambda name: [CrashAt(iteration)] if name == algorithm else []


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, OVERRIDES)


@pytest.fixture(scope="module")
def reference(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run_experiment(cfg, out, checkpoint_every=EVERY)
    return out


def test_checkpoints_hold_the_final_models(cfg, reference):
    states = final_states(reference)
    assert sorted(states) == ["centralized", "dsgd_mgs"]
    for st in states.values():
        assert st["done"] and st["iteration"] == 40 and st["result"]["status"] == "ok"
        assert st["config_hash"] == cfg.config_hash()
        assert [r["iteration"] for r in st["result"]["history"]] == [0, 15, 30, 40]
    assert states["dsgd_mgs"]["sim"]["params"].shape[0] == 4
    s = json.loads((reference / "summary.json").read_text())
    assert s["checkpoints"]["dsgd_mgs"] == {"path": "checkpoints/dsgd_mgs.pt", "iteration": 40,
                                           "status": "ok"}


def test_checkpointing_does_not_change_the_run(cfg, reference, tmp_path):
    plain = run_experiment(cfg, tmp_path / "plain")
    with_ck = json.loads((reference / "summary.json").read_text())
    assert plain["final"]["avg_model"] == with_ck["final"]["avg_model"]
    assert not (tmp_path / "plain" / "checkpoints").exists()


@pytest.mark.parametrize("algorithm, iteration", [
    ("dsgd_mgs", 1),        # before the first periodic checkpoint: resumes from iteration 0
    ("dsgd_mgs", 15),       # on an evaluation point, before its evaluation was logged
    ("dsgd_mgs", 17),       # evaluation 15 logged after checkpoint 12: logged again on resume
    ("dsgd_mgs", 39),       # after the last periodic checkpoint
    ("centralized", 3),     # DSGD-MGS finished, centralized just started
    ("centralized", 31),
])
def test_crash_then_resume_equals_uninterrupted_run(cfg, reference, tmp_path, algorithm, iteration):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=EVERY, hooks=crash_hooks(algorithm, iteration))
    assert not (out / "summary.json").exists()  # an interrupted run never looks finished
    saved = load_checkpoint(checkpoint_path(out, algorithm))
    assert saved["iteration"] == (iteration - 1) // EVERY * EVERY
    summary = run_experiment(cfg, out, checkpoint_every=EVERY, resume=True)
    assert summary["resumed_from"][algorithm] == saved["iteration"]
    assert_same_run(reference, out)


def test_crash_twice_and_after_the_last_checkpoint(cfg, reference, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=EVERY, hooks=crash_hooks("dsgd_mgs", 20))
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=EVERY, resume=True,
                       hooks=crash_hooks("centralized", 10))
    run_experiment(cfg, out, checkpoint_every=EVERY, resume=True)
    assert_same_run(reference, out)
    # both finished, summary lost (killed just before writing it): resume only rewrites it
    (out / "summary.json").unlink()
    s = run_experiment(cfg, out, checkpoint_every=EVERY, resume=True)
    assert s["resumed_from"] == {"dsgd_mgs": 40, "centralized": 40}
    assert_same_run(reference, out)


def test_resume_drops_metrics_logged_after_the_checkpoint_and_partial_lines(cfg, reference,
                                                                           tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=EVERY, hooks=crash_hooks("dsgd_mgs", 17))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [0, 15]  # 15 logged after checkpoint 12
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"algorithm": "dsgd_mgs", "iteration": 4')  # a line cut by the kill
    run_experiment(cfg, out, checkpoint_every=EVERY, resume=True)
    assert_same_run(reference, out)


def test_stale_temporary_files_are_removed_on_resume(cfg, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=EVERY, hooks=crash_hooks("dsgd_mgs", 9))
    stale = out / "checkpoints" / ".dsgd_mgs.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    run_experiment(cfg, out, checkpoint_every=EVERY, resume=True)
    assert not stale.exists()


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = load_config(None, ["topology.nodes=4", "optim.batch_size=8", "train.iterations=200",
                             "eval.every=10", "optim.lr=1e4", "algorithm.compare_centralized=false"])
    out = tmp_path / "run"
    s = run_experiment(cfg, out, checkpoint_every=3)
    assert s["status"] == "diverged" and s["runs"]["dsgd_mgs"]["status"] == "diverged"
    at = s["diverged_at"]
    assert isinstance(at, int) and 0 < at < 200
    st = load_checkpoint(checkpoint_path(out, "dsgd_mgs"))
    assert st["done"] and st["result"]["status"] == "diverged" and st["result"]["diverged_at"] == at
    # the state at iteration `at` is the one whose loss was NaN: the last good one comes before it
    assert 0 < st["iteration"] < at
    assert bool(torch.isfinite(st["sim"]["params"]).all())  # the last good state, not the NaNs
    assert s["checkpoints"]["dsgd_mgs"]["iteration"] == st["iteration"]
    # the recorded metrics are finite and summary.json is valid JSON (no NaN)
    json.loads((out / "summary.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert all(math.isfinite(r["avg_model"]["train_loss"])
               for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))
    # resuming a diverged run does not train again: the result stands
    (out / "summary.json").unlink()
    again = run_experiment(cfg, out, checkpoint_every=3, resume=True)
    assert again["diverged_at"] == at and again["resumed_from"]["dsgd_mgs"] == st["iteration"]


def test_a_nonfinite_state_is_never_saved(cfg, tmp_path):
    from gossiplab.engine.simulator import Simulator
    from gossiplab.run.loop import RunResult
    from gossiplab.setup import prepare

    sim = Simulator(prepare(cfg))
    hook = CheckpointHook(tmp_path / "c.pt", RunResult("dsgd_mgs"), every=1, config_hash="x")
    assert hook.save(sim)
    good = load_checkpoint(tmp_path / "c.pt")["sim"]["params"].clone()
    with torch.no_grad():
        sim.stack.params[1, 3] = float("inf")
    assert not hook.save(sim)
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["sim"]["params"], good)


# -- a resume handed the wrong things -----------------------------------------------------------


@pytest.fixture(scope="module")
def _interrupted(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=EVERY, hooks=crash_hooks("dsgd_mgs", 20))
    return out


@pytest.fixture
def interrupted(_interrupted, tmp_path):
    """A fresh copy of a run killed in DSGD-MGS at iteration 20 (checkpoint 18)."""
    return shutil.copytree(_interrupted, tmp_path / "run")


def test_resume_with_another_config_is_refused(interrupted):
    other = load_config(None, [*OVERRIDES, "optim.lr=0.05"])
    with pytest.raises(UserError, match=r"config differs.*optim\.lr"):
        run_experiment(other, interrupted, checkpoint_every=EVERY, resume=True)


def test_resume_of_an_edited_config_json_is_refused(cfg, interrupted):
    p = interrupted / "config.json"
    doc = json.loads(p.read_text())
    doc["config"]["optim"]["lr"] = 0.5
    p.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="was edited"):
        read_run_config(interrupted)


def test_resume_without_a_run_is_refused(cfg, tmp_path):
    with pytest.raises(UserError, match="no run to resume"):
        run_experiment(cfg, tmp_path / "empty", resume=True)


def test_checkpoint_of_another_config_is_refused(cfg, interrupted):
    p = checkpoint_path(interrupted, "dsgd_mgs")
    st = load_checkpoint(p)
    st["config_hash"] = "0123456789abcdef"
    save_checkpoint(p, st)
    with pytest.raises(UserError, match="belongs to another config"):
        run_experiment(cfg, interrupted, checkpoint_every=EVERY, resume=True)


def test_corrupted_checkpoint_is_refused_not_trained_over(cfg, interrupted):
    p = checkpoint_path(interrupted, "dsgd_mgs")
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="corrupted"):
        run_experiment(cfg, interrupted, checkpoint_every=EVERY, resume=True)
    assert p.read_bytes() == blob[: len(blob) // 2]  # left for the user to inspect


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/gossiplab_resume_pwned",))


def test_malicious_checkpoint_in_a_run_folder_never_runs(cfg, interrupted):
    marker = "/tmp/gossiplab_resume_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    checkpoint_path(interrupted, "dsgd_mgs").write_bytes(
        pickle.dumps({"format": "gossiplab-checkpoint-1", "kind": Evil()}, protocol=2))
    with pytest.raises(UserError, match="holds code .* and is refused"):
        run_experiment(cfg, interrupted, checkpoint_every=EVERY, resume=True)
    assert not os.path.exists(marker)


def test_checkpoint_that_does_not_fit_the_model_is_refused(cfg, interrupted):
    p = checkpoint_path(interrupted, "dsgd_mgs")
    st = load_checkpoint(p)
    st["sim"]["params"] = torch.zeros(3, 5)
    save_checkpoint(p, st)
    with pytest.raises(UserError, match="does not fit this run"):
        run_experiment(cfg, interrupted, checkpoint_every=EVERY, resume=True)


def test_inconsistent_checkpoints_are_refused(cfg, interrupted):
    # a centralized checkpoint although DSGD-MGS never finished: not from this run's history
    dsgd = load_checkpoint(checkpoint_path(interrupted, "dsgd_mgs"))
    save_checkpoint(checkpoint_path(interrupted, "centralized"), {**dsgd, "algorithm": "centralized"})
    with pytest.raises(UserError, match="inconsistent"):
        run_experiment(cfg, interrupted, checkpoint_every=EVERY, resume=True)


def test_overwrite_never_leaves_the_old_summary_beside_new_results(cfg, reference, tmp_path):
    out = shutil.copytree(reference, tmp_path / "run")
    other = load_config(None, [*OVERRIDES, "optim.lr=0.05"])
    with pytest.raises(Crash):
        run_experiment(other, out, overwrite=True, checkpoint_every=EVERY,
                       hooks=crash_hooks("dsgd_mgs", 10))
    # the folder now holds the new run's config.json and partial metrics: it must not look finished
    assert not (out / "summary.json").exists()
    assert json.loads((out / "config.json").read_text())["config_hash"] == other.config_hash()
    assert not checkpoint_path(out, "centralized").exists()  # the old run's final model is gone too
    run_experiment(other, out, checkpoint_every=EVERY, resume=True)
    assert json.loads((out / "summary.json").read_text())["config_hash"] == other.config_hash()
