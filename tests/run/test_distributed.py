"""Distributed runs through the command line, 4 processes on loopback (gloo): the README's
torchrun command writes the simulator's files with the simulator's numbers; a killed or hung rank
stops the others with an error naming it (never a hang); ``--resume`` after a kill gives bitwise
the final models (and metrics) of the uninterrupted run.

Timeouts here are hang guards only, generous for a loaded 2-core machine; nothing is timed."""

import json
import subprocess
import sys

import pytest
import torch

from engine import _launch
from gossiplab.cli import main as cli_main
from gossiplab.run.rank_checkpoints import iterations, load_models

WORLD = 4
SETS = [
    "data.dataset='synthetic'", "data.synthetic_train=600", "data.synthetic_test=200",
    "model.hidden=[16]", "topology.nodes=8", "algorithm.gossip_steps=2", "optim.momentum=0.9",
    "optim.batch_size=8", "data.samples_per_node=40", "train.iterations=40", "eval.every=10",
    "eval.node_samples=100", "engine.threads=1",
]
ARGS = [a for s in SETS for a in ("--set", s)]
KILL_AT = 23  # iteration at which rank 2 kills itself (checkpoints exist at 10 and 20)


def records(out):
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("elapsed")
    return recs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, started with the README's torchrun command."""
    out = tmp_path_factory.mktemp("reference")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
           "-m", "gossiplab", "run", "--engine", "distributed", "--quiet", "--out", str(out), *ARGS]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """The same run with rank 2 SIGKILLed at iteration KILL_AT (the other ranks must stop)."""
    out = tmp_path_factory.mktemp("killed")
    ranks = _launch.start(["run", "--engine", "distributed", "--quiet", "--out", str(out), *ARGS],
                          WORLD, fault=("kill", 2, KILL_AT))
    _launch.wait(ranks, timeout=300)
    checkpointed = {r: iterations(out, "dsgd_mgs", r) for r in range(WORLD)}
    return out, ranks, checkpointed


def test_torchrun_run_writes_the_simulators_files_and_numbers(reference, tmp_path):
    sim_out = tmp_path / "sim"
    assert cli_main(["run", "--quiet", "--out", str(sim_out), *ARGS]) == 0
    got, want = records(reference), records(sim_out)
    assert [(r["algorithm"], r["iteration"]) for r in got] == [(r["algorithm"], r["iteration"]) for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for k in ("avg_model", "nodes"):
            assert json.dumps(sorted(g[k])) == json.dumps(sorted(w[k]))
        assert g["avg_model"]["test_acc"] == pytest.approx(w["avg_model"]["test_acc"], abs=0.006)
        assert g["avg_model"]["train_loss"] == pytest.approx(w["avg_model"]["train_loss"], rel=1e-5)
        assert g["consensus_distance"] == pytest.approx(w["consensus_distance"], rel=1e-4, abs=1e-9)
        assert g["rounds"] == w["rounds"] and g["lr"] == w["lr"]
    for name in ("config.json", "summary.json"):
        d, s = (json.loads((o / name).read_text()) for o in (reference, sim_out))
        assert set(d) == set(s) | {"distributed"}
    d = json.loads((reference / "summary.json").read_text())
    assert d["status"] == "ok" and d["distributed"]["world_size"] == WORLD
    assert d["distributed"]["nodes_per_rank"] == [2] * WORLD
    assert d["final"]["avg_model"]["test_acc"] > 0.5  # it learned


def test_killing_a_rank_stops_the_others_naming_it(killed):
    out, ranks, _ = killed
    assert ranks[2].returncode == -9
    for r in ranks:
        if r.rank != 2:
            assert r.returncode == 3, r.stderr[-2000:]
            assert "gossiplab: error: lost rank 2 (nodes 4-5, host " in r.stderr, r.stderr[-2000:]
            assert "Traceback" not in r.stderr
    assert not (out / "summary.json").exists()


def test_resume_after_a_kill_gives_the_uninterrupted_models(reference, killed):
    out, _, checkpointed = killed
    assert all(its and max(its) == 20 for its in checkpointed.values()), checkpointed
    ranks = _launch.run(["run", "--engine", "distributed", "--quiet", "--out", str(out), "--resume", *ARGS],
                        WORLD, timeout=300)
    assert [r.returncode for r in ranks] == [0] * WORLD, ranks[0].stderr[-3000:]
    for name in ("dsgd_mgs", "centralized"):
        (it_a, a), (it_b, b) = load_models(reference, name), load_models(out, name)
        assert it_a == it_b == 40
        assert torch.equal(a, b), name
    assert records(out) == records(reference)
    assert json.loads((out / "summary.json").read_text())["status"] == "ok"


def test_a_hung_rank_stops_the_others_after_the_timeout(tmp_path):
    ranks = _launch.start(["run", "--quiet", "--out", str(tmp_path), *ARGS,
                           "--set", "engine.name='distributed'", "--set", "engine.timeout=10"],
                          WORLD, fault=("stop", 1, 13))
    try:
        _launch.wait(ranks, timeout=300, skip={1})
    finally:
        ranks[1].proc.kill()
        ranks[1].proc.communicate()
    for r in ranks:
        if r.rank != 1:
            assert r.returncode == 3, r.stderr[-2000:]
            assert "gossiplab: error: lost rank 1 (nodes 2-3, host " in r.stderr, r.stderr[-2000:]


def gossiplab_launch(n, *args):
    return subprocess.run([sys.executable, "-m", "gossiplab", "launch", "-n", str(n), *args],
                          capture_output=True, text=True, timeout=600)


def test_resume_refuses_a_different_process_count(reference):
    r = gossiplab_launch(2, "run", "--engine", "distributed", "--quiet", "--out", str(reference),
                         "--resume", *ARGS)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("had 4 processes; resume it with 4 (now 2)") == 2, r.stderr[-2000:]
    assert "exit codes by rank [2, 2]" in r.stderr


def test_gossiplab_launch_runs_on_loopback(tmp_path):
    r = gossiplab_launch(2, "run", "--engine", "distributed", "--quiet", "--out", str(tmp_path),
                         *ARGS, "--set", "train.iterations=4", "--set", "eval.every=2")
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((tmp_path / "summary.json").read_text())["distributed"]
    assert d["world_size"] == 2 and d["rendezvous"].startswith("127.0.0.1:")


def test_distributed_engine_without_a_launcher_says_how_to_start_it(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RANK", "WORLD_SIZE")}
    r = subprocess.run([sys.executable, "-m", "gossiplab", "run", "--engine", "distributed", "--out",
                        str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2
    assert "launch it with torchrun" in r.stderr and "Traceback" not in r.stderr


def test_command_line_mistakes_are_one_line_errors(tmp_path, capsys):
    assert cli_main(["run", "--resume"]) == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err
    assert cli_main(["launch", "-n", "2"]) == 2
    assert "give the command for the ranks" in capsys.readouterr().err
