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


# -- faults that used to end wrongly (issue 17) ---------------------------------------------------

def _hosts_and_outs(a, b):
    """Ranks 0-1 pretend to be machine 'hosta' with --out A, ranks 2-3 'hostb' with --out B."""
    return lambda r: ("hosta", ["--out", str(a)]) if r < 2 else ("hostb", ["--out", str(b)])


@pytest.fixture(scope="module")
def two_outs(tmp_path_factory):
    """Two 'machines' with their own --out; rank 2 killed in the centralized run (after
    dsgd_mgs finished), then resumed."""
    a, b = tmp_path_factory.mktemp("host-a"), tmp_path_factory.mktemp("host-b")
    argv = ["run", "--engine", "distributed", "--quiet", *ARGS]
    ranks = _launch.start(argv, WORLD, fault=("kill", 2, KILL_AT, "centralized"),
                          per_rank=_hosts_and_outs(a, b))
    _launch.wait(ranks, timeout=300)
    killed = [r.returncode for r in ranks]
    resumed = _launch.start([*argv, "--resume"], WORLD, per_rank=_hosts_and_outs(a, b))
    _launch.wait(resumed, timeout=300)
    return a, b, killed, resumed


def test_each_machine_keeps_its_checkpoints_in_its_own_out(two_outs, reference):
    a, b, killed, resumed = two_outs
    assert killed[2] == -9 and all(killed[r] == 3 for r in (0, 1, 3)), killed
    assert [r.returncode for r in resumed] == [0] * WORLD, resumed[0].stderr[-3000:]
    ranks_in = {o: sorted({p.name.split(".")[1] for p in (o / "checkpoints").glob("*.pt")}) for o in (a, b)}
    assert ranks_in == {a: ["rank0000", "rank0001"], b: ["rank0002", "rank0003"]}
    assert not (b / "summary.json").exists()
    d = json.loads((a / "summary.json").read_text())["distributed"]
    assert d["out_by_host"] == {"hosta": str(a), "hostb": str(b)}
    assert records(a) == records(reference)


def test_a_resumed_run_keeps_the_traffic_of_algorithms_finished_before_the_kill(two_outs, reference):
    a = two_outs[0]
    got = json.loads((a / "summary.json").read_text())["distributed"]["traffic"]
    want = json.loads((reference / "summary.json").read_text())["distributed"]["traffic"]
    assert set(got) == set(want) == {"dsgd_mgs", "centralized"}
    assert got["dsgd_mgs"] == want["dsgd_mgs"]


def test_different_out_on_one_machine_is_refused(tmp_path):
    ranks = _launch.run(["run", "--engine", "distributed", "--quiet", *ARGS], 2,
                        per_rank=lambda r: (None, ["--out", str(tmp_path / f"o{r}")]), timeout=300)
    for r in ranks:
        assert r.returncode == 2, r.stderr[-2000:]
        assert "were given different --out" in r.stderr and "Traceback" not in r.stderr


def test_a_stopped_store_host_ends_every_other_rank_naming_the_store(tmp_path):
    """Rank 0 hosts the store; stopped (as behind a cut link), the store's reads never return:
    the others must still stop, exit 3, naming the store and rank 0."""
    ranks = _launch.start(["run", "--quiet", "--out", str(tmp_path), *ARGS,
                           "--set", "engine.name='distributed'", "--set", "engine.timeout=5"],
                          WORLD, fault=("stop", 0, 13))
    try:
        _launch.wait(ranks, timeout=300, skip={0})
    finally:
        ranks[0].proc.kill()
        ranks[0].proc.communicate()
    for r in ranks[1:]:
        assert r.returncode == 3, r.stderr[-2000:]
        line = [ln for ln in r.stderr.splitlines() if ln.startswith("gossiplab: error:")]
        assert len(line) == 1, r.stderr[-2000:]
        assert "rank 0 (nodes 0-1, host " in line[0] and ("rendezvous store" in line[0]), line


def test_the_rank_that_died_first_is_named_not_the_one_its_launcher_stopped(tmp_path):
    """torchrun stops the other processes of a machine when one dies: rank 3 is killed, rank 2
    gets SIGTERM 0.3 s later, before it noticed; the survivors must name rank 3. (Ranks 2 and 3
    pretend to be on other machines, so nobody sees their processes end.)"""
    import signal
    import time

    ranks = _launch.start(["run", "--engine", "distributed", "--quiet", "--out", str(tmp_path), *ARGS],
                          WORLD, fault=("kill", 3, 13),
                          per_rank=lambda r: ({2: "hostb", 3: "hostc"}.get(r, "hosta"), []))
    deadline = time.monotonic() + 300
    while ranks[3].proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    ranks[2].proc.send_signal(signal.SIGTERM)
    _launch.wait(ranks, timeout=300)
    assert ranks[3].returncode == -9
    for r in ranks[:2]:
        assert r.returncode == 3, r.stderr[-2000:]
        assert "gossiplab: error: lost rank 3 (nodes 6-7, host " in r.stderr, r.stderr[-2000:]
    assert ranks[2].returncode == 128 + signal.SIGTERM, ranks[2].stderr[-2000:]
    assert "rank 2 stopped by SIGTERM" in ranks[2].stderr


def test_a_death_while_rank_0_waits_in_its_checkpoint_step_is_noticed_at_once(tmp_path):
    """Rank 1 dies right after writing its checkpoint, while the others wait in the checkpoint
    barrier (a store wait, not gloo's). With engine.timeout = 600 the heartbeat alone would take
    ten minutes; the process's end must be seen at once (the test's hang guard is 300 s)."""
    ranks = _launch.start(["run", "--quiet", "--out", str(tmp_path), *ARGS,
                           "--set", "engine.name='distributed'", "--set", "engine.timeout=600"],
                          WORLD, fault=("kill", 1, 20, "dsgd_mgs", "checkpoint"))
    _launch.wait(ranks, timeout=300)
    assert ranks[1].returncode == -9
    for r in (ranks[0], ranks[2], ranks[3]):
        assert r.returncode == 3, r.stderr[-2000:]
        assert "lost rank 1 (nodes 2-3, host " in r.stderr, r.stderr[-2000:]
        assert "its process ended" in r.stderr or "connection closed" in r.stderr, r.stderr[-2000:]


def test_kill_9_of_gossiplab_launch_kills_its_ranks(tmp_path):
    import os
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "gossiplab", "launch", "-n", "2", "run", "--engine",
                             "distributed", "--quiet", "--out", str(tmp_path), *ARGS,
                             "--set", "train.iterations=100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children_file = f"/proc/{proc.pid}/task/{proc.pid}/children"
    deadline = time.monotonic() + 120
    children: list[int] = []
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        with open(children_file) as f:
            children = [int(c) for c in f.read().split()]
    assert len(children) == 2, "launch did not start its ranks"
    while not (tmp_path / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the ranks are training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [c for c in children if _running(c)]
    for c in alive:
        os.kill(c, signal.SIGKILL)
    assert not alive, "ranks outlived gossiplab launch"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
