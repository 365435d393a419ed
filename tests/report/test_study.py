"""gossiplab study: the statistics behind the verdicts, and the document from a real small sweep."""

import math
import shutil
import subprocess
import sys

import pytest

from gossiplab.report.data import Run
from gossiplab.report.study import FAILS, HOLDS, NOT_RUN, UNSURE, Est, direction, paired, seed_slopes


def run(seed, value, **params):
    p = {"seeds.data": seed, "seeds.init": seed, "seeds.sampling": seed, **params}
    return Run(id=f"{seed}-{value}", status="ok", algorithm="dsgd_mgs", params=p,
               final={"m": value})


def test_estimate_interval_and_sign():
    e = Est.of([1.0, 1.2, 0.9, 1.1])
    assert e.mean == pytest.approx(1.05) and e.lo < 1.05 < e.hi and e.sign() == 1
    assert Est.of([-1.0, 1.0, 0.1]).sign() == 0
    assert Est.of([2.0]).sign() == 0  # one seed: no interval, no direction
    assert direction(Est.of([-3.0, -2.5, -2.9]), -1) == HOLDS
    assert direction(Est.of([-3.0, -2.5, -2.9]), +1) == FAILS
    assert direction(Est.of([-1.0, 1.0, 0.2]), +1) == UNSURE


def test_paired_differences_remove_the_seed_effect():
    # a seed effect of +-10 hides a +1 treatment effect unless differences are paired
    a = [run(s, 10 * s + 1.0) for s in range(4)]
    b = [run(s, 10 * s + 0.0) for s in range(4)]
    d = paired(a, b, "m")
    assert d.mean == pytest.approx(1.0) and d.half == pytest.approx(0.0, abs=1e-12)


def test_per_seed_slopes():
    groups = [(x, [run(s, 3.0 * x + s + 0.01 * s * x) for s in range(5)]) for x in (0.0, 1.0, 2.0)]
    e = seed_slopes(groups, "m")
    assert e.mean == pytest.approx(3.0 + 0.01 * 2.0) and e.sign() == 1
    glog = [(x, [run(s, math.exp(-0.5 * x) * (s + 1)) for s in range(3)]) for x in (1.0, 2.0, 3.0)]
    assert seed_slopes(glog, "m", ylog=True).mean == pytest.approx(-0.5)


TINY = """
[sweep]
name = "study-topology"
seeds = 3
baseline = true

[base]
data.dataset = "digits"
data.samples_per_node = 40
topology.nodes = 8
train.iterations = 30
eval.every = 30
engine.threads = 1

[grid]
"topology.name" = ["ring", "torus", "complete"]
"""


def test_study_document_from_a_real_small_sweep(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    sweep = tmp_path / "study-topology.toml"
    sweep.write_text(TINY)
    gl = [sys.executable, "-m", "gossiplab"]
    subprocess.run([*gl, "sweep", str(sweep), "--db", str(results / "study-topology.sqlite"),
                    "--jobs", "1", "--threads", "1", "--quiet"], check=True, timeout=600)
    out = tmp_path / "docs" / "study.md"
    r = subprocess.run([*gl, "study", "--results", str(results), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "## Verdicts" in text
    # the topology claim was assessed from its 12 runs; the others say their results are missing
    section = text.split("## 6. Better-connected topologies shrink the gap")[1].split("## 7.")[0]
    assert "### Trained to overfit" in section  # a store in results/ itself: the overfit regime
    assert "(12 runs" in section
    verdict = section.split("**Detailed reading: ")[1].split(".**")[0]
    assert verdict in (HOLDS, FAILS, UNSURE)
    # the verdict panel: performance and gap, averaged / node / worst node
    assert "| DSGD | averaged model |" in section and "| DSGD | worst node |" in section
    assert "| ring | 0.195 |" in section  # spectral gap of the 8-node ring
    assert "study-q.sqlite` is missing" in text and NOT_RUN in text
    assert (tmp_path / "docs" / "figures" / "study" / "topology.png").stat().st_size > 1000
    assert "](figures/study/topology.png)" in text
    assert "No paper-scale results yet" in text

    # the same store as a paper-scale result: analysed again, its figures in their own folder
    (results / "gpu").mkdir()
    shutil.copy(results / "study-topology.sqlite", results / "gpu" / "study-topology-cifar10.sqlite")
    r = subprocess.run([*gl, "study", "--results", str(results), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    gpu = out.read_text().split("## Paper scale (GPU)")[1].split("## Stability")[0]
    assert "### CIFAR10" in gpu and "(12 runs" in gpu and "No paper-scale results yet" not in gpu
    assert "](figures/study/gpu-cifar10/topology.png)" in gpu
    assert (tmp_path / "docs" / "figures" / "study" / "gpu-cifar10" / "topology.png").is_file()


def test_missing_results_folder_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gossiplab", "study", "--results",
                        str(tmp_path / "nope")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "results folder not found" in r.stderr


def test_a_configs_folder_given_by_hand_must_exist(tmp_path):
    (tmp_path / "results").mkdir()
    r = subprocess.run([sys.executable, "-m", "gossiplab", "study", "--results", str(tmp_path / "results"),
                        "--configs", str(tmp_path / "nope"), "--out", str(tmp_path / "s.md")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "sweep config folder not found" in r.stderr
    assert not (tmp_path / "s.md").exists()


def test_theory_table_summarises_t_exponents_and_keeps_the_others(tmp_path):
    import json

    from gossiplab.report.study import stability_section

    def row(factor, group, measured, verdict):
        return {"factor": factor, "quantity": "stability", "algorithm": "dsgd_mgs", "group": group,
                "measured": measured, "ci": [measured - 0.1, measured + 0.1], "theory": 0.9,
                "verdict": verdict}

    rows = [row("T", "Q=1", 0.1, "disagrees"), row("T", "Q=2", 0.3, "agrees"),
            row("T", "Q=4", 0.2, "disagrees"), row("n", "Q=1, m=16", -0.5, "DISAGREES"),
            row("beta", "x", 1.0, "-")]
    path = tmp_path / "theory.json"
    path.write_text(json.dumps({"rows": rows}))
    text = "\n".join(stability_section(path))
    assert "| T | stability | dsgd_mgs | all 3 groups | +0.100 .. +0.300 | +0.900 .. +0.900 | " \
           "agrees in 1 of 3 groups |" in text
    assert "| n | stability | dsgd_mgs | Q=1, m=16 | -0.500 [-0.600, -0.400] | +0.900 | DISAGREES |" in text
    assert "beta" not in text.split("| factor |")[1]
    assert "Q=2" not in text  # the per-group T rows are folded into the summary


def test_synthesis_reports_the_rank_correlation_of_gap_and_fit():
    from gossiplab.report.study import synthesis

    class Res:
        def __init__(self, runs):
            self.ok = runs

    def fit_run(seed, q, train_loss, gap):
        return Run(id=f"{seed}-{q}", status="ok", algorithm="dsgd_mgs",
                   params={"seeds.data": seed, "algorithm.gossip_steps": q},
                   final={"train_loss": train_loss, "gen_gap_loss_matched": gap, "test_acc": 0.8})

    # the gap falls as the train loss rises: rho = -1 over 5 configurations (2 seeds each)
    tight = Res([fit_run(s, q, 1.0 / (q + 1), 0.1 * q + 0.01 * s) for q in range(5) for s in range(2)])
    # no relation: rho = 0 by construction over 5 configurations
    loose = Res([fit_run(s, q, float(q), [0.2, 0.5, 0.3, 0.1, 0.4][q] * (1 + 0.01 * s))
                 for q in range(5) for s in range(2)])
    text = "\n".join(synthesis([("q", tight)]))
    assert "| study-q | 5 | -1.00" in text and "In 1 of 1 sweeps" in text
    text = "\n".join(synthesis([("q", loose), ("lr", loose), ("gap", tight)]))
    assert "only 1 of 3 sweeps" in text and "| study-lr | 5 | +0.00" in text


def test_schemes_reading_follows_the_rounds_table():
    from gossiplab.report.study import _schemes_reading

    reach = [("ring", 16, "plain", 8, 64), ("ring", 16, "chebyshev", 4, 32), ("ring", 16, "exact", 8, 8),
             ("ring", 64, "plain", None, 64), ("ring", 64, "exact", 32, 32)]
    text = " ".join(_schemes_reading(reach))
    assert text.startswith("In 4 of 5 ")
    assert "ring m=16: chebyshev, 4 round(s)" in text and "ring m=64: exact, 32 round(s)" in text
    assert "Not within the rounds measured: ring m=64 plain (up to 64 rounds)." in text
    assert "within the noise in every case" in text
    reach[-1] = ("ring", 64, "exact", None, 32)
    text = " ".join(_schemes_reading(reach))
    assert "resolution of this comparison" in text and "in every case" not in text
    assert _schemes_reading([]) == []


def test_rounds_within_noise_use_centralized_seed_spread_or_a_paired_interval():
    from gossiplab.report.study import _first_within

    rr = [1, 2, 4, 8]
    diffs = {1: Est.of([-0.30, -0.32, -0.31]), 2: Est.of([-0.05, -0.06, -0.04]),
             4: Est.of([0.011, 0.012, 0.010]), 8: Est.of([0.001, -0.002, 0.002])}
    assert _first_within(rr, diffs, noise=0.1) == 2  # |mean| <= the seed spread from R = 2 on
    assert _first_within(rr, diffs, noise=0.02) == 4
    assert _first_within(rr, diffs) == 8  # R = 4's tight interval excludes 0
    assert _first_within(rr, diffs, noise=0.0001) is None
