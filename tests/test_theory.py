"""The theory module against hand-computed values, and its consensus recursion against the engine."""

import math

import numpy as np
import pytest

from gossiplab import theory
from gossiplab.config import load_config
from gossiplab.engine.simulator import Simulator
from gossiplab.setup import prepare
from gossiplab.stability.hooks import ConsensusTracker
from gossiplab.topology import build_topology


def test_spectral_gap_and_contraction_by_hand():
    ring = build_topology("ring", 8)
    lam = 1 / 3 + 2 / 3 * math.cos(2 * math.pi / 8)  # Metropolis ring: 1/3 on self and neighbours
    assert theory.spectral_gap(ring) == pytest.approx(1 - lam)
    assert theory.gossip_contraction(ring, 3) == pytest.approx(lam**3)
    assert theory.gossip_contraction(ring, 0) == 1.0
    one_peer = build_topology("exp_onepeer", 8)
    assert theory.gossip_contraction(one_peer, 3, round0=5) == 0.0  # any 3 rounds: exact average
    assert theory.gossip_contraction(one_peer, 1) == pytest.approx(1.0)  # one matching alone


def test_source_paper_rates_by_hand():
    # c*beta = 1: centralized T^(1/2) / (n m)
    assert theory.centralized_rate(100, 10, 4, c=0.5, beta=2) == pytest.approx(10 / 40)
    # decentralized limit: T^(2/4) / (n m^(1/4))
    assert theory.decentralized_limit_rate(100, 10, 16, c=1, beta=1) == pytest.approx(10 / (10 * 2))
    ex = theory.rate_exponents(0.5, 2.0)
    assert ex["centralized"] == {"T": 0.5, "n": -1.0, "m": -1.0}
    assert ex["decentralized"] == {"T": 0.5, "n": -1.0, "m": -0.25}
    ex = theory.rate_exponents(1.0, 4.0)  # c*beta = 4: T^(4/5), m^(-1/10)
    assert ex["centralized"]["T"] == pytest.approx(0.8) and ex["decentralized"]["m"] == pytest.approx(-0.1)


def test_hardt_recht_singer_by_hand():
    # (1 + 1/(beta c))/(n-1) * (2 c L^2)^(1/(beta c + 1)) * T^(beta c/(beta c + 1))
    # beta c = 1, n = 5, L = 1, T = 16: 2/4 * 2^(1/2) * 16^(1/2) = 2 sqrt(2)
    assert theory.hardt_nonconvex_stability(16, 5, c=1, beta=1, L=1) == pytest.approx(2 * math.sqrt(2))
    # beta c = 3, c = 1, n = 11, L = 2: (4/3)/10 * 8^(1/4) * 81^(3/4) = (4/30) * 8^0.25 * 27
    assert theory.hardt_nonconvex_stability(81, 11, c=1, beta=3, L=2) == pytest.approx(
        4 / 30 * 8**0.25 * 27)
    assert theory.hardt_convex_stability([0.1] * 10, 5, L=2) == pytest.approx(1.6)
    assert theory.hardt_strongly_convex_stability(10, 1, 0.5) == pytest.approx(0.4)
    assert theory.weight_decay_step_contraction(0.1, 0.5, beta=10) == pytest.approx(0.95)
    with pytest.raises(ValueError):
        theory.weight_decay_step_contraction(0.5, 0.1, beta=10)
    with pytest.raises(ValueError):
        theory.hardt_nonconvex_stability(10, 1, 1, 1, 1)


def test_consensus_recursion_and_steady_state_by_hand():
    r = theory.consensus_recursion([1.0, 1.0], [1.0, 2.0], 0.5)
    assert r.tolist() == [0.0, 0.5, 1.25]
    assert theory.consensus_steady_state(0.5, 0.1, 2.0) == pytest.approx(0.04)
    assert theory.consensus_steady_state(1.0, 0.1, 2.0) == math.inf
    # constant inputs converge to the steady state
    r = theory.consensus_recursion([0.1] * 200, [2.0] * 200, 0.5)
    assert r[-1] ** 2 == pytest.approx(theory.consensus_steady_state(0.5, 0.1, 2.0))


@pytest.mark.parametrize("topo, q", [("ring", 1), ("ring", 4), ("torus", 2), ("exponential", 1)])
def test_consensus_recursion_bounds_the_measured_consensus_distance(topo, q):
    cfg = load_config(None, [f"topology.name='{topo}'", "topology.nodes=8", "optim.batch_size=8",
                             f"algorithm.gossip_steps={q}", "optim.weight_decay=0.01",
                             "optim.schedule='inverse_t'", "optim.lr=1.0"])
    sim = Simulator(prepare(cfg))
    tracker = ConsensusTracker(range(1, 61))
    tracker.on_start(sim)
    for _ in range(60):
        sim.step()
        tracker.on_step(sim, 0.0)
    meas = np.array([r["measured"] for r in tracker.records])
    bound = np.array([r["recursion_bound"] for r in tracker.records])
    assert (meas <= bound * (1 + 1e-4) + 1e-12).all()
    assert meas[-1] > 0
    assert bound[-1] < 1e3 * meas[-1]  # a bound, but on the same scale as the measurement


def test_consensus_recursion_on_a_time_varying_graph_uses_the_product_of_the_rounds():
    cfg = load_config(None, ["topology.name='exp_onepeer'", "topology.nodes=8", "optim.batch_size=8",
                             "algorithm.gossip_steps=3"])
    sim = Simulator(prepare(cfg))
    tracker = ConsensusTracker(range(1, 11))
    tracker.on_start(sim)
    for _ in range(10):
        sim.step()
        tracker.on_step(sim, 0.0)
    # three one-peer rounds multiply to the exact average: kappa = 0, and so is the bound
    assert all(r["contraction"] == 0.0 and r["recursion_bound"] == 0.0 for r in tracker.records)
    assert all(r["measured"] < 1e-10 for r in tracker.records)
