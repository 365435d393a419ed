"""Intervals over seeds stay inside the quantity's range, and few seeds are flagged."""

import math

import matplotlib
import numpy as np
import pytest

from gossiplab.report.intervals import FEW_SEEDS, kind_of, ranged

matplotlib.use("Agg")


def test_two_seed_accuracy_band_stays_in_0_1():
    """The issue's case: two seeds of accuracy drew a band from -0.3 to 1.6."""
    a = ranged([0.55, 0.70], kind_of("test_acc"))
    assert 0.0 <= a.lo < a.mean < a.hi <= 1.0
    plain = ranged([0.55, 0.70], "signed")
    assert plain.lo < 0 and plain.hi > 1  # what clipping prevents
    assert a.few and "(n=2)" in a.fmt()


def test_positive_quantity_interval_is_positive_and_multiplicative():
    """The issue's case: a squared distance 0.00132 [-0.000255, 0.00289]."""
    v = [0.0005, 0.0021]
    c = ranged(v, kind_of("consensus_distance"))
    assert c.lo > 0 and c.lo < c.mean < c.hi
    assert c.mean == pytest.approx(0.0013)
    logs = np.log(v)
    h = 12.706204736174707 * logs.std(ddof=1) / math.sqrt(2)
    assert c.lo == pytest.approx(c.mean * math.exp(-h)) and c.hi == pytest.approx(c.mean * math.exp(h))
    assert "[" in c.fmt(6)  # asymmetric: printed as [lo, hi], not ± h


def test_zero_in_a_positive_quantity_clips_at_zero():
    c = ranged([0.0, 0.002, 0.001], "positive")
    assert c.lo == 0.0 and c.hi > c.mean


def test_signed_quantities_keep_the_t_interval():
    g = ranged([-0.01, 0.02, 0.005], kind_of("gen_gap_acc"))
    assert g.symmetric and g.half == pytest.approx(4.302652729911275 * np.std([-0.01, 0.02, 0.005],
                                                                              ddof=1) / math.sqrt(3))
    assert not g.few and "(n=" not in g.fmt()


def test_std_option_and_edge_cases():
    s = ranged([1.0, 2.0, 3.0], "signed", interval="std")
    assert (s.lo, s.hi) == (1.0, 3.0)
    one = ranged([0.5], "fraction")
    assert one.n == 1 and one.half == 0 and "(n=1)" in one.fmt()
    assert ranged([], "fraction").n == 0 and ranged([], "fraction").fmt() == "-"
    assert ranged([1.0, float("nan"), None, 3.0], "signed").n == 2
    assert FEW_SEEDS == 3 and not ranged([0.1, 0.2, 0.3], "fraction").few


def test_coinciding_lines_are_told_apart_and_few_seeds_marked():
    import matplotlib.pyplot as plt

    from gossiplab.report.figures import band, finish, min_seeds

    fig, axes = plt.subplots(1, 1, squeeze=False)
    ax = axes[0][0]
    ivs = [ranged([0.8, 0.9], "fraction"), ranged([0.85, 0.95], "fraction")]
    band(ax, [1, 4], ivs, label="ring")
    band(ax, [1, 4], ivs, label="torus")
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["ring", "torus (= ring)"]
    assert lines[0].get_marker() != lines[1].get_marker()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    assert min_seeds(fig) == 2
    finish(fig, axes, "t")
    assert "fewer than 3 seeds" in fig._suptitle.get_text()
    plt.close(fig)
