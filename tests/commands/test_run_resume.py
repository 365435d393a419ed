"""`gossiplab run --resume` as a user meets it: real processes killed with SIGKILL at random
moments (and in the middle of writing a checkpoint), resumed until done; the finished folder
equals that of an uninterrupted run (final models bitwise, metrics and summary up to wall-clock
fields)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gossiplab.checkpoint import load_checkpoint
from gossiplab.cli import main
from run_outputs import assert_same_run

# Kills per test run; GOSSIPLAB_KILLS=30 for a longer stress run (see docs/reliability.md), which
# also lengthens the run so that it outlasts the kills.
KILLS = int(os.environ.get("GOSSIPLAB_KILLS", "4"))
ARGS = ["--quiet", "--set", "topology.nodes=16", "--set", f"train.iterations={max(400, 40 * KILLS)}",
        "--set", "eval.every=50", "--set", "optim.momentum=0.9", "--set", "data.sampling='shuffle'",
        "--set", "algorithm.gossip_steps=2", "--set", "engine.threads=1", "--checkpoint-every", "10"]


def start(out, *extra, driver=None):
    cmd = [sys.executable, "-c", driver] if driver else [sys.executable, "-m", "gossiplab"]
    return subprocess.Popen([*cmd, "run", "--out", str(out), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, timeout=600):
    so, se = p.communicate(timeout=timeout)
    assert p.returncode == 0, se
    return se


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    finish(start(out))
    return out


def checkpoint_stamps(out):
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size)
            for p in (out / "checkpoints").glob("*.pt")} if (out / "checkpoints").exists() else {}


def wait_for(cond, p, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None or cond():
            return
        time.sleep(0.01)
    raise AssertionError("no progress")


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_equals_uninterrupted_run(reference, tmp_path):
    rng = random.Random(20251125)
    out = tmp_path / "run"
    p = start(out)
    # first kill blind, at a random moment that may fall before anything is written
    time.sleep(rng.uniform(0.0, 3.0))
    kills, where = 0, []
    for i in range(KILLS):
        if i:  # afterwards at a random moment shortly after some progress (a new checkpoint)
            seen = checkpoint_stamps(out)
            wait_for(lambda seen=seen: checkpoint_stamps(out) != seen, p)
            time.sleep(rng.uniform(0.0, 0.3))
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        where.append({n: load_checkpoint(out / "checkpoints" / n)["iteration"]
                      for n in checkpoint_stamps(out)})
        assert not (out / "summary.json").exists()  # a killed run never looks finished
        p = start(out, "--resume")  # the same command line, plus --resume
    finish(p)
    assert kills >= 1, "the run ended before it could be killed"
    assert_same_run(reference, out)
    print(f"{kills} kills; checkpoints at the kills: {where}")


DRIVER = textwrap.dedent("""
    import os, signal, sys
    import gossiplab.checkpoint as ck
    real, n = ck.atomic_write, [0]
    def dying(path, write):
        if str(path).endswith("{target}"):
            n[0] += 1
            if n[0] == {nth}:
                def half(f):
                    class Half:
                        def write(self, b):
                            f.write(b[: len(b) // 2]); f.flush(); os.fsync(f.fileno())
                            os.kill(os.getpid(), signal.SIGKILL)
                    write(Half())
                return real(path, half)
        return real(path, write)
    ck.atomic_write = dying
    from gossiplab.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("target, nth", [("dsgd_mgs.pt", 5), ("centralized.pt", 41)])
def test_kill_in_the_middle_of_writing_a_checkpoint(reference, tmp_path, target, nth):
    out = tmp_path / "run"
    p = start(out, driver=DRIVER.format(target=target, nth=nth))
    p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL
    ck = out / "checkpoints" / target
    previous = load_checkpoint(ck)  # still the previous, complete checkpoint
    assert previous["iteration"] == (nth - 2) * 10 and not previous["done"]
    stale = list((out / "checkpoints").glob(f".{target}.*.tmp"))
    assert len(stale) == 1  # the half-written temporary file, never under the real name
    finish(start(out, "--resume"))
    assert not stale[0].exists()
    assert_same_run(reference, out)


# -- what --resume says -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("int") / "run"
    p = start(out, driver=DRIVER.format(target="dsgd_mgs.pt", nth=3))
    p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL
    return out


def cli(capsys, *args):
    rc = main([*args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_resume_needs_out(capsys):
    rc, _, err = cli(capsys, "run", "--resume")
    assert rc == 2 and "--resume needs --out DIR" in err


def test_resume_and_overwrite_exclude_each_other(capsys, interrupted):
    rc, _, err = cli(capsys, "run", "--out", str(interrupted), "--resume", "--overwrite")
    assert rc == 2 and "exclude each other" in err


def test_resume_with_a_different_config_names_the_keys(capsys, interrupted):
    rc, _, err = cli(capsys, "run", "--out", str(interrupted), "--resume", *ARGS,
                     "--set", "optim.lr=0.05", "--set", "seeds.init=3")
    assert rc == 2 and "config differs" in err and "optim.lr, seeds.init" in err
    assert len(err.strip().splitlines()) == 1


def test_a_new_run_into_an_interrupted_one_suggests_resume(capsys, interrupted):
    before = {p.name: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()}
    rc, _, err = cli(capsys, "run", "--out", str(interrupted), *ARGS)
    assert rc == 2 and "already holds results" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()} == before


def test_resume_of_a_finished_run_changes_nothing(capsys, reference):
    before = (reference / "summary.json").read_bytes()
    rc, _, err = cli(capsys, "run", "--out", str(reference), "--resume")
    assert rc == 0 and "already complete" in err
    assert (reference / "summary.json").read_bytes() == before


def test_resume_where_nothing_was_written_starts_the_run(capsys, tmp_path):
    rc, _, err = cli(capsys, "run", "--out", str(tmp_path / "new"), "--resume", "--quiet",
                     "--set", "topology.nodes=4", "--set", "train.iterations=5")
    assert rc == 0 and "nothing to resume" in err
    assert json.loads((tmp_path / "new" / "summary.json").read_text())["status"] == "ok"


def test_divergence_through_the_cli(capsys, tmp_path):
    rc, _, err = cli(capsys, "run", "--quiet", "--out", str(tmp_path / "d"),
                     "--set", "topology.nodes=4", "--set", "optim.batch_size=8",
                     "--set", "optim.lr=1e4", "--set", "train.iterations=200",
                     "--set", "algorithm.compare_centralized=false", "--checkpoint-every", "5")
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert rc == 0 and s["status"] == "diverged"
    it = s["checkpoints"]["dsgd_mgs"]["iteration"]
    assert 0 < it < s["diverged_at"]
    assert f"dsgd_mgs diverged at iteration {s['diverged_at']}" in err
    assert f"last good state (iteration {it}) kept in" in err


def test_no_checkpoint_writes_none(capsys, tmp_path):
    rc, _, _ = cli(capsys, "run", "--quiet", "--out", str(tmp_path / "n"), "--no-checkpoint",
                   "--set", "topology.nodes=4", "--set", "train.iterations=5")
    assert rc == 0 and not (tmp_path / "n" / "checkpoints").exists()
    assert "checkpoints" not in json.loads((tmp_path / "n" / "summary.json").read_text())


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_bad_checkpoint_interval(capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["run", "--checkpoint-every", value])
    assert e.value.code == 2 and "--checkpoint-every" in capsys.readouterr().err
