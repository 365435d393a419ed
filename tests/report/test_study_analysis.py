"""The study's analysis steps on small fixture stores (runs built in memory with known effects):
verdict panels, shares paired by seed, exponent fits, the equal-passes design, the regime map."""

import math
from pathlib import Path

import pytest

from gossiplab.report.data import Results, Run
from gossiplab.report.study.claims import batch_designs, benefit_points, slope_effect
from gossiplab.report.study.common import NOT_RECORDED, Panel
from gossiplab.report.study.document import base_settings, describe
from gossiplab.report.study.regime import cells, matching
from gossiplab.report.study.stats import (
    FAILS,
    HOLDS,
    SPLIT,
    UNSURE,
    Est,
    agree,
    exponent,
    exponent_difference,
    measure,
    paired,
)

ROOT = Path(__file__).resolve().parents[2]


def mk(seed, algorithm="dsgd_mgs", **kv):
    """A run of ``seed``: params by dotted key, final metrics from the keyword ``final``."""
    final = kv.pop("final")
    p = {"seeds.data": seed, "seeds.init": seed, "seeds.sampling": seed, **kv}
    return Run(id=f"{algorithm}-{seed}-{sorted(kv.items())}", status="ok", algorithm=algorithm,
               params=p, final=final)


def results(runs):
    return Results(path=Path("fixture.sqlite"), runs=runs, sweeps=[], store=None)


def test_agree_combines_accuracy_and_loss():
    assert agree([HOLDS, UNSURE]) == HOLDS
    assert agree([UNSURE, FAILS]) == FAILS
    assert agree([HOLDS, FAILS]) == SPLIT
    assert agree([UNSURE, UNSURE]) == UNSURE


def test_panel_verdicts_follow_the_intervals_and_the_predicted_signs():
    # accuracy rises clearly, loss falls clearly, gap rises clearly, node metrics are noise,
    # the worst node's gap is not recorded
    known = {"test_acc": [0.10, 0.11, 0.12], "test_loss": [-0.2, -0.25, -0.21],
             "gen_gap_loss_matched": [0.05, 0.06, 0.055],
             "node_test_acc_mean": [0.1, -0.1, 0.02], "node_test_loss_mean": [-0.1, 0.1, 0.0],
             "node_gap_matched_mean": [0.1, -0.1, 0.0],
             "node_test_acc_min": [0.1, 0.12, 0.11], "node_test_loss_max": [0.1, 0.12, 0.11]}

    def effect(metric, share):
        vals = known.get(metric)
        return Est.of([] if vals is None else [v + (1.0 if share else 0.0) for v in vals])

    p = Panel.build(effect, "slope", +1, -1, matched=True)
    assert p.verdict("performance") == HOLDS
    assert p.verdict("gap") == FAILS
    assert p.verdict("performance", "node models (mean)") == UNSURE
    assert p.verdict("gap", "node models (mean)") == UNSURE
    # worst node: accuracy up (holds) but loss up too (contradicts): split
    assert p.verdict("performance", "worst node") == SPLIT
    assert p.verdict("gap", "worst node") == NOT_RECORDED
    # the share view is computed on its own numbers (here shifted by +1: accuracy up, loss up)
    assert p.verdict("performance", view="decentralization's share") == SPLIT
    # share signs may differ from DSGD's: gap +1 predicted there
    p2 = Panel.build(effect, "slope", +1, -1, matched=True, share_signs=(-1, +1))
    assert p2.verdict("gap", view="decentralization's share") == HOLDS
    text = "\n".join(p.render())
    assert "| DSGD | averaged model | +0.1100 [" in text and "**holds**" in text


def test_panel_falls_back_to_the_plain_node_gap_of_older_stores():
    def effect(metric, share):
        return Est.of([0.1, 0.12, 0.11]) if metric in ("node_gap_mean", "test_acc") else Est.of([])

    p = Panel.build(effect, "slope", +1, -1, matched=True, share=False)
    row = next(r for r in p.rows if r[1] == "node models (mean)")
    assert row[5].endswith("(plain gap)") and p.verdict("gap", "node models (mean)") == FAILS


def test_decentralizations_share_is_paired_by_seed():
    # seed effects of +-10 cancel in DSGD minus centralized
    cen = [mk(s, "centralized", final={"test_acc": 10.0 * s}) for s in range(4)]
    dsgd = [mk(s, final={"test_acc": 10.0 * s - 0.05}) for s in range(4)]
    f = measure("test_acc", minus=cen)
    assert [f(r) for r in dsgd] == pytest.approx([-0.05] * 4)
    assert paired(dsgd, cen, "test_acc").half == pytest.approx(0.0, abs=1e-12)


def test_share_slopes_subtract_centralized_at_each_x():
    # DSGD's accuracy rises by 0.03 per step of x, centralized's by 0.01: the share by 0.02
    pts = []
    for x in (0.0, 1.0, 2.0):
        d = [mk(s, final={"test_acc": 0.5 + 0.03 * x + 0.1 * s}) for s in range(3)]
        c = [mk(s, "centralized", final={"test_acc": 0.6 + 0.01 * x + 0.1 * s}) for s in range(3)]
        pts.append((x, d, c))
    eff = slope_effect(pts)
    assert eff("test_acc", False).mean == pytest.approx(0.03)
    assert eff("test_acc", True).mean == pytest.approx(0.02)


def test_exponent_fits_and_their_paired_difference():
    # gap ~ m^-0.2 for DSGD and m^-1 for centralized, times a seed factor
    ms = (4, 8, 16, 32)
    d = [(m, [mk(s, final={"gen_gap_loss": (1 + s) * m ** -0.2}) for s in range(4)]) for m in ms]
    c = [(m, [mk(s, "centralized", final={"gen_gap_loss": (2 + s) * m ** -1.0}) for s in range(4)])
         for m in ms]
    assert exponent(d, "gen_gap_loss").mean == pytest.approx(-0.2)
    assert exponent(c, "gen_gap_loss").mean == pytest.approx(-1.0)
    diff = exponent_difference(d, c, "gen_gap_loss")
    assert diff.mean == pytest.approx(0.8) and diff.n == 4
    # through the claim's effect: share of the gap exponent (log_gap) = DSGD's minus centralized's
    eff = slope_effect([(m, a, b) for (m, a), (_, b) in zip(d, c, strict=True)], xform=math.log2,
                       log_gap=True)
    assert eff("gen_gap_loss", True).mean == pytest.approx(0.8)


def test_equal_passes_and_equal_t_designs_are_told_apart():
    runs = []
    for b, t in ((4, 1200), (16, 300), (64, 75), (4, 300), (64, 300)):
        for q in (1, 16):
            for s in range(3):
                # the benefit of Q = 16 in accuracy is 0.08 / log2(b) ... falls with b
                acc = 0.7 + (0.1 - 0.01 * math.log2(b) if q == 16 else 0.0) + 0.01 * s
                runs.append(mk(s, **{"optim.batch_size": b, "train.iterations": t,
                                     "algorithm.gossip_steps": q}, final={"node_test_acc_mean": acc}))
    designs = dict(batch_designs(results(runs)))
    assert set(designs) == {"equal passes (T * b = 4800)", "equal T (T = 300)"}
    passes = designs["equal passes (T * b = 4800)"]
    assert {(r.value("optim.batch_size"), r.value("train.iterations")) for r in passes} == {
        (4, 1200), (16, 300), (64, 75)}
    assert {r.value("optim.batch_size") for r in designs["equal T (T = 300)"]} == {4, 16, 64}
    ben = benefit_points(passes, 1, 16)
    assert [p[0] for p in ben] == [2.0, 4.0, 6.0]
    assert slope_effect(ben)("node_test_acc_mean", True).mean == pytest.approx(-0.01)


def test_regime_map_pairs_cells_with_their_centralized_runs_and_qualifies_them():
    runs = []
    for topo, cost in (("ring", -0.05), ("torus", -0.001)):
        for s in range(3):
            common = {"model.name": "mlp", "topology.nodes": 16, "data.samples_per_node": 250,
                      "data.alpha": 0.1, "optim.lr": 0.2, "train.iterations": 300}
            runs.append(mk(s, **common, **{"topology.name": topo},
                           final={"node_test_acc_mean": 0.8 + cost + 0.01 * s + 0.001 * (s % 2),
                                  "test_acc": 0.8}))
    for s in range(3):
        runs.append(mk(s, "centralized", **{"model.name": "mlp", "topology.nodes": 16,
                                            "data.samples_per_node": 250, "data.alpha": 0.1,
                                            "optim.lr": 0.2, "train.iterations": 300,
                                            "topology.name": None},
                       final={"node_test_acc_mean": 0.8 + 0.01 * s, "test_acc": 0.8}))
    cs = cells(runs)
    assert len(cs) == 2 and all(len(c.cen) == 3 and len(c.dsgd) == 3 for c in cs)
    ring = matching(cs, {"topology": "ring", "m": 16, "lr": 0.2})
    torus = matching(cs, {"topology": "torus"})
    assert ring.cost("node_test_acc_mean").mean == pytest.approx(-0.05 + 0.001 / 3)
    assert ring.qualifies and not torus.qualifies  # -0.1 points: below the 2-point bar


def test_settings_are_read_from_the_config_files():
    base = ROOT / "configs" / "study" / "informative" / "_base.toml"
    s = base_settings(base)
    assert s["m"] == 16 and s["topology"] == "ring" and s["T"] > 0
    text = describe(base)
    assert f"{s['m']} nodes with n = {s['n']}" in text and f"T = {s['T']}" in text
    assert "not found" in describe(base.parent / "nope.toml")


def test_overview_cell_names_each_panel_only_where_they_differ():
    from gossiplab.report.study.common import Section, summary

    def const(v):  # accuracy and gap move by v, loss by -v
        def eff(metric, share):
            k = -v if "loss" in metric and "gap" not in metric else v
            return Est.of([k, k * 1.1, k * 1.2])
        return eff

    up, down = (Panel.build(const(0.1), "s", +1, -1, matched=False, share=False),
                Panel.build(const(-0.1), "s", +1, -1, matched=False, share=False))
    up.tag, down.tag = "n", "m"
    sec = Section("scale", "t", "c", "f.toml", panels=[("a", up), ("b", up)])
    assert summary(sec, "performance") == "holds"
    sec.panels = [("a", up), ("b", down)]
    assert summary(sec, "performance") == "n: holds; m: does not hold"
    assert summary(sec, "gap") == "n: does not hold; m: holds"
