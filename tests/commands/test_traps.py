"""What a newcomer trips over: one clean line each, progress readable in a log, a resume hint."""

import signal
import subprocess
import sys
import time

import pytest

from gossiplab.config import load_config
from gossiplab.errors import ConfigError


def gl(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "gossiplab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_unknown_key_without_a_near_match_lists_the_section():
    try:
        load_config(None, ["optim.zzz=1"])
    except ConfigError as e:
        assert "keys of [optim]: lr, schedule" in str(e)
    else:
        raise AssertionError("accepted an unknown key")
    try:
        load_config(None, ["qqqqqq.x=1"])
    except ConfigError as e:
        assert "sections: data, topology" in str(e)


def test_closed_pipe_is_not_a_traceback(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "gossiplab", "topology", "ring", "--nodes", "512",
                          "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()  # like `| head -c 10`
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err


@pytest.mark.slow
def test_errors_are_one_line_without_a_blank_line_and_progress_is_plain_in_logs(tmp_path):
    r = gl("run", "--set", "topology.nodes=64", "--out", str(tmp_path / "m64"))
    assert r.returncode == 2 and r.stderr.startswith("gossiplab: error: optim.batch_size")
    assert r.stderr.count("\n") == 1
    r = gl("run", "--set", "train.iterations=40", "--set", "eval.every=20", "--out", str(tmp_path / "ok"))
    assert r.returncode == 0, r.stderr
    assert "dsgd_mgs (ring, m=16, Q=1): 40/40 iterations" in r.stderr
    assert "centralized: 40/40 iterations" in r.stderr and "…" not in r.stderr
    r = gl("run", "--set", "algorithm.gossip_steps=100000", "--set", "train.iterations=2",
           "--set", "eval.every=2", "--quiet", "--out", str(tmp_path / "q"))
    assert r.returncode == 0 and r.stderr.startswith("gossiplab: warning: algorithm.gossip_steps")
    assert r.stderr.count("\n") == 1


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    # Ctrl-C as a terminal sends it. The run must not inherit an ignored SIGINT: a shell starts
    # background jobs (such as a CI runner launched with '&') with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler, so the signal would be dropped.
    p = subprocess.Popen([sys.executable, "-m", "gossiplab", "run", "--quiet", "--out", str(out),
                          "--set", "train.iterations=200000", "--set", "eval.every=100"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_default)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints").exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # (say what the run printed, for the diagnosis)
        p.kill()
        _, err = p.communicate()
        pytest.fail(f"the run did not stop within 120 s of SIGINT; its stderr: {err[-2000:]!r}")
    assert p.returncode == 130
    assert f"gossiplab run --out {out} --resume" in err and err.count("\n") == 1
