"""`gossiplab stability` and `gossiplab theory` as a user meets them: subprocesses, files, codes."""

import json
import subprocess
import sys

import pytest

SMALL = ["--set", "engine.threads=1", "--set", "topology.nodes=4", "--set", "data.samples_per_node=20",
         "--set", "optim.batch_size=4", "--set", "train.iterations=40", "--set", "eval.every=20",
         "--set", "optim.schedule='inverse_t'", "--set", "optim.lr=1.0", "--set", "stability.repetitions=2",
         "--set", "stability.hessian_points=2", "--set", "stability.power_iterations=5",
         "--set", "stability.reference_iterations=40", "--set", "stability.record_points=6"]


def gl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gossiplab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    for q in (1, 2, 4):
        r = gl("stability", "--quiet", "-K", "3", "--out", str(root / f"q{q}"), *SMALL,
               "--set", f"algorithm.gossip_steps={q}")
        assert r.returncode == 0, r.stderr
    return root


def test_stability_writes_its_files_and_estimates(study):
    out = study / "q2"
    for f in ("config.json", "metrics.jsonl", "stability.jsonl", "summary.json", "stability.png"):
        assert (out / f).stat().st_size > 0, f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["stability"]["perturbations"] == 3
    assert [s["sampling"] for s in cfg["repetition_seeds"]] == [0, 1]
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "stability" and s["status"] == "ok" and s["repetitions"] == 2
    for alg in ("dsgd_mgs", "centralized"):
        st = s["stability"][alg]
        assert st["avg_model"]["n"] == 6 and st["avg_model"]["ci_basis"] == "repetitions"
        assert st["avg_model"]["mean"] > 0 and len(st["avg_model"]["ci"]) == 2
        assert st["node_models"]["mean"] >= st["avg_model"]["mean"] * (1 - 1e-6)  # Jensen
        assert len(st["perturbations"]) == 6 and len(st["perturbations"][0]["node_dists"]) == (
            4 if alg == "dsgd_mgs" else 1)
        d = s["decomposition"][alg]
        assert d["gen_gap"]["values"][0] == pytest.approx(
            json.loads([x for x in (out / "metrics.jsonl").read_text().splitlines()
                        if json.loads(x)["algorithm"] == alg][2])["gen_gap_loss"])
        assert len(d["optimization_error"]["values"]) == 2 and d["excess_error"]["mean"] is not None
        assert s["smoothness"][alg]["beta"] > 0 and len(s["smoothness"][alg]["probes"]) == 4
    th = s["theory"]
    assert th["c"] == 1.0 and th["c_beta"] == pytest.approx(th["beta"])
    assert th["exponents"]["decentralized"]["m"] == pytest.approx(-1 / (2 * th["c_beta"] + 2))
    assert s["consensus"]["dsgd_mgs"]["bound_holds"]
    kinds = {json.loads(x)["kind"] for x in (out / "stability.jsonl").read_text().splitlines()}
    assert kinds == {"twins", "consensus", "smoothness"}


def test_stability_table_and_refusals(tmp_path, study):
    r = gl("stability", "-K", "2", "--out", str(tmp_path / "s"), *SMALL,
           "--set", "stability.repetitions=1", "--set", "stability.reference_iterations=0",
           "--set", "stability.hessian_points=0")
    assert r.returncode == 0, r.stderr
    assert "E||A(S) - A(S^(ij))||^2" in r.stdout and "generalization gap" in r.stdout
    r = gl("stability", "--quiet", "--out", str(study / "q1"), *SMALL)
    assert r.returncode == 2 and "already holds results" in r.stderr
    r = gl("stability", "--quiet", "--out", str(tmp_path / "x"), "--set", "topology.nodes=4",
           cwd=tmp_path)
    assert r.returncode == 2 and "samples_per_node" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_theory_fits_and_compares(tmp_path, study):
    out = tmp_path / "theory"
    r = gl("theory", str(study), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "measured" in r.stdout
    res = json.loads((out / "theory.json").read_text())
    factors = {row["factor"] for row in res["rows"]}
    assert factors == {"T", "Q"}
    q_rows = [row for row in res["rows"] if row["factor"] == "Q"]
    assert {row["quantity"] for row in q_rows} == {"stability", "node_stability", "loss_stability",
                                                   "gen_gap"}
    assert "node_stability" not in {row["quantity"] for row in res["rows"] if row["factor"] == "T"}
    assert all(row["algorithm"] == "dsgd_mgs" for row in q_rows)
    stab = next(row for row in q_rows if row["quantity"] == "stability")
    assert stab["fit"]["x"] == [1.0, 2.0, 4.0] and set(stab["by_Q"]) == {"1", "2", "4"}
    t_rows = [row for row in res["rows"] if row["factor"] == "T"]
    assert len({row["group"] for row in t_rows if row["algorithm"] == "centralized"}) == 1
    assert all(row["theory"] is not None for row in t_rows)
    assert (out / "vs_T.png").stat().st_size > 1000 and (out / "vs_Q.png").exists()
    assert not (out / "vs_n.png").exists()
    md = (out / "theory.md").read_text()
    assert "| factor |" in md and "| Q=1 | Q=2 | Q=4 | centralized |" in md
    assert stab["fit"]["ci_ols"] is not None and stab["fit"]["min_samples"] == 6


def test_theory_bad_input(tmp_path):
    r = gl("theory", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no `gossiplab stability` results" in r.stderr
    r = gl("theory", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no such file" in r.stderr
