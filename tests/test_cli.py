"""The command line as a user meets it: real subprocesses, real files, exit codes."""

import json
import subprocess
import sys

import pytest


def gl(*args, cwd=None, check=False):
    r = subprocess.run([sys.executable, "-m", "gossiplab", *args], capture_output=True, text=True,
                       cwd=cwd, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def test_run_on_digits_writes_config_metrics_summary(tmp_path):
    out = tmp_path / "run"
    r = gl("run", "--out", str(out), "--set", "train.iterations=200", "--set", "eval.every=50",
           check=True)
    assert "centralized" in r.stdout and "test accuracy" in r.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["topology"]["name"] == "ring"
    assert cfg["seeds"] == {"data": 0, "init": 0, "sampling": 0}
    assert cfg["setup"]["dataset"]["name"] == "digits"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for algo in ("dsgd_mgs", "centralized"):
        its = [x["iteration"] for x in lines if x["algorithm"] == algo]
        assert its == [0, 50, 100, 150, 200]
    s = json.loads((out / "summary.json").read_text())
    f = s["final"]
    for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert k in f["avg_model"]
    assert f["gen_gap_loss"] == pytest.approx(f["avg_model"]["test_loss"] - f["avg_model"]["train_loss"])
    assert f["gen_gap_acc"] == pytest.approx(f["avg_model"]["train_acc"] - f["avg_model"]["test_acc"])
    assert f["consensus_distance"] > 0
    assert s["wall_seconds"] > 0 and s["status"] == "ok"
    assert f["avg_model"]["test_acc"] > 0.8  # 200 iterations of an MLP on digits
    assert s["runs"]["centralized"]["final"]["consensus_distance"] == 0


def test_existing_results_are_not_overwritten(tmp_path):
    out = tmp_path / "run"
    gl("run", "--quiet", "--out", str(out), "--set", "train.iterations=5", check=True)
    before = (out / "summary.json").read_text()
    r = gl("run", "--quiet", "--out", str(out), "--set", "train.iterations=6")
    assert r.returncode == 2 and "already holds results" in r.stderr
    assert (out / "summary.json").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["run", "--set", "optim.lrr=0.1"], "did you mean 'optim.lr'"),
    (["run", "--set", "topology.name='moon'"], "unknown topology 'moon'"),
    (["run", "--set", "optim.batch_size=500"], "larger than the smallest node"),
    (["run", "--set", "data.samples_per_node=500"], "needs 8000 training samples"),
    (["run", "--config", "/nonexistent.toml"], "not found"),
    (["topology", "hypercube", "--nodes", "6"], "power-of-two"),
    (["topology", "ring", "--tol", "2"], "--tol: tolerances must lie in (0, 1)"),
    (["run", "--set", "algorithm.gossip='chebyshev'", "--set", "topology.name='exp_onepeer'"],
     "algorithm.gossip = 'chebyshev' needs a static topology"),
    (["run", "--set", "algorithm.gossip='exakt'"], "algorithm.gossip: unknown gossip scheme 'exakt'"),
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path, args, message):
    r = gl(*args, "--quiet" if args[0] == "run" else "--json", cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path):
    r = gl("--debug", "run", "--quiet", "--set", "optim.lrr=1", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_topology_json_and_plot(tmp_path):
    png = tmp_path / "ring.png"
    r = gl("topology", "ring", "--nodes", "8", "--json", "--plot", str(png), check=True)
    info = json.loads(r.stdout)
    assert {"nodes", "lambda", "spectral_gap", "edges"} <= set(info)
    assert info["nodes"] == 8 and info["edges"] == 8
    assert info["lambda"] == pytest.approx(1 / 3 + 2 / 3 * 0.7071067811865476)
    assert png.stat().st_size > 1000
    r = gl("topology", "torus", "--nodes", "16", check=True)
    assert "spectral gap" in r.stdout


def test_topology_compares_gossip_schemes():
    r = gl("topology", "ring", "--nodes", "8", "--json", "-Q", "1", "3", "6", "--tol", "1e-3", "1e-6",
           check=True)
    g = json.loads(r.stdout)["gossip"]
    lam = 1 / 3 + 2 / 3 * 0.7071067811865476
    assert g["plain"]["contraction"]["3"] == pytest.approx(lam**3)
    assert g["plain"]["rounds_to"] == {"0.001": 32, "1e-06": 64}  # ceil(log(tol) / log(lambda))
    assert g["chebyshev"]["contraction"]["3"] < lam**3
    assert g["chebyshev"]["rounds_to"]["1e-06"] < 64
    ex = g["exact"]
    assert ex["exact_rounds"] == 4 and ex["distinct_eigenvalues"] == 5  # 1, cos(k pi / 4) pairs
    assert ex["rounds"] == {"1": 1, "3": 3, "6": 4} and ex["contraction"]["6"] < 1e-12
    assert ex["rounds_to"] == {"0.001": 4, "1e-06": 4}
    r = gl("topology", "ring", "--nodes", "8", check=True)
    assert "gossip schemes" in r.stdout and "chebyshev" in r.stdout
    assert "5 distinct eigenvalues -> 4 rounds" in r.stdout
    r = gl("topology", "exp_onepeer", "--nodes", "8", "--json", check=True)
    g = json.loads(r.stdout)["gossip"]
    assert g["plain"]["rounds_to"]["1e-06"] == 3 and not g["exact"]["available"]


def test_config_show_and_reference():
    r = gl("config", "show", "--set", "topology.nodes=4", check=True)
    assert "nodes = 4" in r.stdout
    assert "`optim.lr`" in gl("config", "reference", check=True).stdout


def test_the_error_line_is_one_write(monkeypatch, tmp_path):
    """Ranks under torchrun share one stderr: an error line written in pieces (print writes the
    newline separately) interleaves with another rank's line when stderr is unbuffered."""
    from gossiplab.cli import main

    class Recorder:
        def __init__(self):
            self.writes = []

        def write(self, s):
            self.writes.append(s)
            return len(s)

        def flush(self):
            pass

    rec = Recorder()
    monkeypatch.setattr(sys, "stderr", rec)
    assert main(["run", "--out", str(tmp_path / "r"), "--set", "topology.nodes=0"]) == 2
    lines = [w for w in rec.writes if "gossiplab: error:" in w]
    assert len(lines) == 1 and lines[0].endswith("\n") and lines[0].count("\n") == 1, rec.writes


def test_the_program_imports_with_the_collector_paused_then_turns_it_on(monkeypatch):
    """As the program (no argv), the CLI imports the command's PRELOAD modules with the garbage
    collector off, then freezes what it imported and turns the collector back on, also when
    the command line is refused."""
    import gc

    from gossiplab import cli

    seen = []
    real_import = cli.importlib.import_module

    def spy(name, *a, **k):
        seen.append((name, gc.isenabled()))
        return real_import(name, *a, **k)

    monkeypatch.setattr(cli.importlib, "import_module", spy)
    try:
        monkeypatch.setattr(sys, "argv", ["gossiplab", "run", "--set", "no.such.key=1"])
        assert cli.main() == 2
        assert gc.isenabled()
        assert ("gossiplab.run.runner", False) in seen and ("gossiplab.run.progress", False) in seen
        monkeypatch.setattr(sys, "argv", ["gossiplab", "no-such-command"])
        with pytest.raises(SystemExit):
            cli.main()
        assert gc.isenabled()
        # callers that pass argv keep their collector as it is: nothing is paused or frozen
        seen.clear()
        assert cli.main(["run", "--set", "no.such.key=1"]) == 2
        assert ("gossiplab.run.runner", True) in seen
    finally:
        gc.unfreeze()


def test_sweep_starts_its_workers_fork_server_before_the_parser_imports(monkeypatch):
    """`gossiplab sweep` with local workers starts the fork server before the CLI builds its
    parser (whose imports the server's then overlap); a dry run, help or another executor does
    not start it early."""
    from gossiplab import cli
    from gossiplab.commands import sweep as sweep_cmd
    from gossiplab.sweep import executors

    order = []
    monkeypatch.setattr(executors, "warm_up", lambda: order.append("warm_up"))
    real_build = cli.build_parser

    def build():
        order.append("parser")
        return real_build()

    monkeypatch.setattr(cli, "build_parser", build)
    try:
        monkeypatch.setattr(sys, "argv", ["gossiplab", "sweep", "no-such-file.toml", "--jobs", "0"])
        assert cli.main() == 2  # (refused after the early start: the server just exits with us)
        assert order[:2] == ["warm_up", "parser"], order
    finally:
        import gc

        gc.unfreeze()
    for argv, started in ((["f.toml"], True), (["f.toml", "--executor", "local"], True),
                          (["f.toml", "--executor=local"], True), (["f.toml", "--dry-run"], False),
                          (["--help"], False), (["f.toml", "--executor", "ray"], False),
                          (["f.toml", "--executor=ray"], False), (["f.toml", "--executor"], False)):
        order.clear()
        sweep_cmd.start_early(argv)
        assert (order == ["warm_up"]) is started, argv
