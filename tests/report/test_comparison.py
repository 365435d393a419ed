"""docs/comparison.md's logic: pairing by seed, the within-noise decision, the cheapest setting
per method and network; and the document built end to end from a tiny real sweep."""

import json
import textwrap

import pytest

from gossiplab.cli import main
from gossiplab.report.comparison import Point, cheapest, compare


def rec(node_acc, avg_acc, nbytes, dc, wan):
    return {"nodes": {"test_acc": {"mean": node_acc}, "train_acc": {"mean": node_acc + 0.05}},
            "avg_model": {"test_acc": avg_acc}, "gen_gap_acc": 0.05, "comm_bytes_per_node": nbytes,
            "comm_rounds_per_iteration": 1.0, "modeled_seconds_datacenter": dc,
            "modeled_seconds_wan": wan}


SEEDS = [(0, 0, 0), (1, 1, 1), (2, 2, 2)]
CEN = Point("centralized SGD (all-reduce)", "", (0,),
            {s: rec(0.80 + 0.01 * i, 0.81 + 0.01 * i, 5e6, 1.0, 9.0) for i, s in enumerate(SEEDS)})


def point(method, setting, shift, nbytes, dc, wan):
    return Point(method, setting, (nbytes,), {s: rec(0.80 + 0.01 * i + shift, 0.81 + 0.01 * i + shift,
                                                     nbytes, dc, wan) for i, s in enumerate(SEEDS)})


def test_within_noise_is_the_paired_difference_against_centralized_spread():
    # centralized's seed SD is 0.01; a constant shift of 0.005 is within, 0.03 is not
    near = point("m", "a", -0.005, 1e6, 2.0, 3.0)
    far = point("m", "b", -0.03, 1e5, 1.0, 1.0)
    _, noise, rows = compare(CEN, [near, far])
    assert noise["node_acc"] == pytest.approx(0.01)
    assert [r.within for r in rows] == [True, False]
    assert rows[0].diffs["node_acc"].mean == pytest.approx(-0.005)
    assert rows[0].diffs["node_acc"].half == pytest.approx(0.0, abs=1e-12)  # paired: no spread


def test_cheapest_setting_within_noise_per_method_and_cost():
    pts = [point("A", "cheap-bytes", 0.0, 1e5, 5.0, 50.0), point("A", "fast", 0.0, 1e7, 0.5, 20.0),
           point("A", "outside", -0.1, 1e3, 0.1, 0.1), point("B", "never", -0.1, 1e3, 0.1, 0.1)]
    _, _, rows = compare(CEN, pts)
    assert cheapest(rows, "bytes")["A"].point.setting == "cheap-bytes"
    assert cheapest(rows, "time_datacenter")["A"].point.setting == "fast"
    assert cheapest(rows, "time_wan")["B"] is None


@pytest.mark.slow
def test_compare_builds_the_document_from_a_sweep(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(textwrap.dedent("""
        [topology]
        nodes = 4
        [optim]
        batch_size = 8
        [train]
        iterations = 20
        [eval]
        every = 10
        node_samples = 100
        [engine]
        threads = 1
    """))
    sweep = tmp_path / "s.toml"
    sweep.write_text(textwrap.dedent("""
        [sweep]
        name = "tiny"
        config = "base.toml"
        seeds = 2
        baseline = true
        [[zip]]
        "algorithm.name" = ["dsgd_mgs", "gradient_tracking", "choco"]
        "algorithm.compressor" = ["top_k", "top_k", "quantize8"]
    """))
    db = tmp_path / "r.sqlite"
    assert main(["sweep", str(sweep), "--db", str(db), "--quiet"]) == 0
    out = tmp_path / "docs" / "comparison.md"
    assert main(["compare", "--db", str(db), "--out", str(out)]) == 0
    text = out.read_text()
    for name in ("DSGD-MGS, plain gossip", "gradient tracking, plain", "CHOCO-SGD, quantize8",
                 "within seed noise", "Cheapest on each network"):
        assert name in text
    assert (out.parent / "figures" / "comparison" / "comparison.png").stat().st_size > 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["rows"]) == 3 and all(r["seeds"] == 2 for r in data["rows"])
    choco = next(r for r in data["rows"] if r["method"].startswith("CHOCO"))
    dsgd = next(r for r in data["rows"] if r["method"].startswith("DSGD"))
    assert choco["stats"]["bytes"]["mean"] < dsgd["stats"]["bytes"]["mean"] / 3  # 8-bit vs float32


def test_compare_without_a_store_is_one_line(tmp_path, capsys):
    assert main(["compare", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "x.md")]) == 2
    assert "results file not found" in capsys.readouterr().err


def test_committed_document_regenerates_from_the_committed_store(tmp_path):
    """docs/comparison.md is what `gossiplab compare` makes of results/comparison.sqlite."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    db, doc = root / "results" / "comparison.sqlite", root / "docs" / "comparison.md"
    if not db.exists():
        pytest.skip("no committed comparison store")
    out = tmp_path / "docs" / "comparison.md"
    from gossiplab.report.comparison import build_comparison

    build_comparison(db, out)
    want = doc.read_text().replace("figures/comparison/comparison.png", "FIG")
    got = out.read_text().replace(str(db), "results/comparison.sqlite").replace(
        str(out), "docs/comparison.md").replace("figures/comparison/comparison.png", "FIG")
    assert got == want


def test_every_algorithm_key_that_matters_is_in_the_setting_label():
    """Two configurations that differ in a key the algorithm reads never share a label (they
    would be merged into one point)."""
    from gossiplab.config import load_config
    from gossiplab.report.comparison import describe

    variants = {
        "dsgd_mgs": ["algorithm.gossip_steps=2", "algorithm.gossip='chebyshev'"],
        "gradient_tracking": ["algorithm.gossip_steps=2", "algorithm.gossip='chebyshev'"],
        "gossip_pga": ["algorithm.period=3", "algorithm.gossip_steps=2", "algorithm.gossip='exact'"],
        "local_steps": ["algorithm.period=3", "algorithm.gossip_steps=2",
                        "algorithm.gossip='chebyshev'"],
        "q_schedule": ["algorithm.q_schedule='early'", "algorithm.gossip_steps=2",
                       "algorithm.q_switch=0.25", "algorithm.gossip='chebyshev'"],
        "consensus_q": ["algorithm.consensus_target=0.1", "algorithm.consensus_cap=3"],
        "choco": ["algorithm.gossip_steps=2", "algorithm.compressor='random_k'",
                  "algorithm.compress_ratio=0.3", "algorithm.consensus_step=0.2"],
    }
    for name, changes in variants.items():
        base = load_config(None, [f"algorithm.name='{name}'"]).to_dict()
        labels = {describe(base)[:2]}
        for c in changes:
            labels.add(describe(load_config(None, [f"algorithm.name='{name}'", c]).to_dict())[:2])
        assert len(labels) == len(changes) + 1, (name, labels)


def test_the_study_document_carries_the_comparison_from_its_store():
    from pathlib import Path

    from gossiplab.report.comparison import study_section

    root = Path(__file__).resolve().parents[2]
    db = root / "results" / "comparison.sqlite"
    if not db.is_file():
        pytest.skip("results/comparison.sqlite is not in this checkout")
    doc = root / "docs" / "study.md"
    lines = study_section(db, doc)
    text = doc.read_text()
    assert "## What else buys the gap back, and at what communication cost" in text
    table = [ln for ln in lines if ln.startswith("| ")]
    assert len(table) >= 10 and all(ln in text for ln in table)  # the committed doc is in step
    assert any("**WAN**" in ln for ln in lines) and any("**data center**" in ln for ln in lines)
