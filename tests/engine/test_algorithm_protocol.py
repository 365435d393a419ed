"""The Algorithm protocol (algorithms.py): an algorithm registered only here, with a [rows, d]
state buffer of its own, runs on both engines and survives a SIGKILL and ``--resume`` bitwise;
its state is in the checkpoint and matters; an algorithm may declare any number of models.

Timeouts are hang guards only; nothing is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine import _launch
from engine import _toy_algorithm as toy
from gossiplab import algorithms
from gossiplab.checkpoint import load_checkpoint
from gossiplab.config import load_config
from gossiplab.engine.simulator import Simulator
from gossiplab.run.rank_checkpoints import iterations, load_models
from gossiplab.run.rank_checkpoints import path as rank_path
from gossiplab.setup import prepare

SCRIPT = Path(toy.__file__)
SETS = [
    "data.dataset='synthetic'", "data.synthetic_train=400", "data.synthetic_test=100",
    "model.name='logreg'", "topology.nodes=4", "algorithm.gossip_steps=2", "optim.momentum=0.9",
    "optim.batch_size=8", "data.samples_per_node=40", "train.iterations=30", "eval.every=10",
    "eval.node_samples=50", "engine.threads=1", f"algorithm.name='{toy.Tracked.name}'",
    "algorithm.compare_centralized=false",
]
ARGS = [a for s in SETS for a in ("--set", s)]
KILL_AT = 23  # checkpoints (simulator: every 5; distributed: each evaluation) exist before it


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(algorithms.ALGORITHMS, toy.Tracked.name, toy.Tracked)
    monkeypatch.setitem(algorithms.ALGORITHMS, toy.Pairs.name, toy.Pairs)


def records(out):
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("elapsed")
    return recs


def simulator_run(out, *extra, kill_at=None):
    env = {**os.environ, **({"TOY_KILL_AT": str(kill_at)} if kill_at is not None else {})}
    return subprocess.run([sys.executable, str(SCRIPT), "run", "--quiet", "--out", str(out), *ARGS,
                           "--checkpoint-every", "5", *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_the_algorithms_state_is_allocated_beside_the_parameters_and_checkpointed(registered):
    setup = prepare(load_config(None, SETS))
    sim = Simulator(setup)
    s = sim.algorithm.state["s"]
    p = sim.stack.params
    assert (s.shape, s.dtype, s.device) == (p.shape, p.dtype, p.device)
    for _ in range(3):
        sim.step()
    state = sim.state_dict()
    assert state["algorithm_state"]["s"].abs().sum() > 0  # the buffer holds something

    def continued(st):
        other = Simulator(setup)
        other.load_state_dict(st)
        for _ in range(3):
            other.step()
        return other.stack.params.clone()

    for _ in range(3):
        sim.step()
    assert torch.equal(continued(state), sim.stack.params)  # restored: bitwise
    lost = {**state, "algorithm_state": {"s": torch.zeros_like(state["algorithm_state"]["s"])}}
    assert not torch.equal(continued(lost), sim.stack.params)  # and it matters
    with pytest.raises(ValueError, match="algorithm state lacks s"):
        Simulator(setup).load_state_dict({**state, "algorithm_state": {}})


def test_an_algorithm_declares_how_many_models_there_are(registered):
    setup = prepare(load_config(None, [*SETS, f"algorithm.name='{toy.Pairs.name}'"]))
    sim = Simulator(setup)
    assert sim.stack.params.shape[0] == 2 * 4
    sim.step()
    assert sim.algorithm.placement(1, 3) == (2, 6, False)  # a process with nodes 1, 2 has models 2..5


def test_simulator_kill_and_resume_is_bitwise(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    r = simulator_run(ref)
    assert r.returncode == 0, r.stderr[-3000:]
    r = simulator_run(out, kill_at=KILL_AT)
    assert r.returncode == -9, r.stderr[-3000:]
    assert not (out / "summary.json").exists()
    r = simulator_run(out, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    a = load_checkpoint(ref / "checkpoints" / f"{toy.Tracked.name}.pt")["sim"]
    b = load_checkpoint(out / "checkpoints" / f"{toy.Tracked.name}.pt")["sim"]
    assert a["iteration"] == b["iteration"] == 30
    assert torch.equal(a["params"], b["params"])
    assert torch.equal(a["algorithm_state"]["s"], b["algorithm_state"]["s"])
    assert a["algorithm_state"]["s"].abs().sum() > 0
    assert records(out) == records(ref)


def test_distributed_kill_and_resume_is_bitwise(tmp_path):
    world, name = 2, toy.Tracked.name
    ref, out = tmp_path / "ref", tmp_path / "killed"
    argv = ["run", "--engine", "distributed", "--quiet", *ARGS]
    ranks = _launch.run([*argv, "--out", str(ref)], world, timeout=300, script=SCRIPT)
    assert [r.returncode for r in ranks] == [0] * world, ranks[0].stderr[-3000:]
    ranks = _launch.run([*argv, "--out", str(out)], world, timeout=300, script=SCRIPT,
                        extra_env={"TOY_KILL_RANK": "1", "TOY_KILL_AT": str(KILL_AT)})
    assert ranks[1].returncode == -9 and ranks[0].returncode == 3, ranks[0].stderr[-3000:]
    assert all(max(iterations(out, name, r)) == 20 for r in range(world))
    ranks = _launch.run([*argv, "--out", str(out), "--resume"], world, timeout=300, script=SCRIPT)
    assert [r.returncode for r in ranks] == [0] * world, ranks[0].stderr[-3000:]
    (it_a, a), (it_b, b) = load_models(ref, name), load_models(out, name)
    assert it_a == it_b == 30 and torch.equal(a, b)
    for r in range(world):
        sa, sb = (load_checkpoint(rank_path(o, name, r, 30)) for o in (ref, out))
        assert sa["algorithm_state"]["s"].abs().sum() > 0
        assert torch.equal(sa["algorithm_state"]["s"], sb["algorithm_state"]["s"])
    assert records(out) == records(ref)
