"""The ledger counts what one node per process would send, and the cost model prices it."""

import math

import numpy as np
import pytest
import torch

from gossiplab.accounting import CountedMix, Ledger, NetworkModel
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.gossip import build_gossip
from gossiplab.topology import build_topology

NETS = [NetworkModel("fast", 1e-4, 1e9), NetworkModel("slow", 0.05, 1e7)]


def test_ring_round_counts_two_messages_per_node():
    topo = build_topology("ring", 5)
    led = Ledger(topo, NETS, compute_seconds=0.01)
    mix = CountedMix(MatrixMixer(topo), led)
    x = torch.zeros(5, 10)
    build_gossip("plain", topo, 3).apply_(x, mix, 0)  # in-place fast path, 3 rounds
    mix(x, 3)
    rec = led.record(iteration=2)
    assert rec["comm_rounds"] == 4
    assert rec["comm_messages_per_node"] == 8 and rec["comm_messages_max"] == 8
    assert rec["comm_bytes_per_node"] == 4 * 2 * 40
    assert rec["comm_bytes_per_node_per_iteration"] == 4 * 2 * 40 / 2
    assert rec["modeled_comm_seconds_slow"] == pytest.approx(4 * (0.05 + 80 / 1e7))
    assert rec["modeled_seconds_fast"] == pytest.approx(4 * (1e-4 + 80 / 1e9) + 2 * 0.01)


def test_star_busiest_node_sets_the_round_time():
    topo = build_topology("star", 6)
    led = Ledger(topo, NETS)
    led.gossip_round(0, 100)
    assert led.p2p_bytes.max() == 500 and led.p2p_bytes.min() == 100
    assert led.comm_seconds["slow"] == pytest.approx(0.05 + 500 / 1e7)


def test_all_reduce_cost():
    topo = build_topology("ring", 8)
    led = Ledger(topo, NETS)
    led.all_reduce(800)
    assert led.all_reduce_bytes() == pytest.approx(2 * 7 / 8 * 800)
    assert led.comm_seconds["fast"] == pytest.approx(2 * 3 * 1e-4 + 2 * 7 / 8 * 800 / 1e9)
    assert led.record(1)["comm_bytes_per_node"] == pytest.approx(1400)


def test_time_varying_degree():
    topo = build_topology("exp_onepeer", 8)
    led = Ledger(topo)
    for r in range(3):
        led.gossip_round(r, 4)
    assert np.all(led.messages == 3) and led.rounds == 3


def test_state_roundtrip():
    topo = build_topology("ring", 4)
    a = Ledger(topo, NETS)
    a.gossip_round(0, 12)
    a.all_reduce(8)
    b = Ledger(topo, NETS)
    b.load_state_dict(a.state_dict())
    assert b.record(3) == a.record(3)
    assert math.isfinite(b.record(3)["modeled_seconds_slow"])


@pytest.mark.parametrize("mode", ["configured", "measured"])
def test_modeled_time_uses_configured_or_measured_compute(mode):
    from gossiplab.config import load_config
    from gossiplab.run.loop import train
    from gossiplab.setup import prepare

    cfg = load_config(None, ["topology.nodes=4", "optim.batch_size=8", "train.iterations=6",
                             "eval.every=3", "network.compute_seconds=0.5",
                             f"network.compute='{mode}'"])
    setup = prepare(cfg)
    final = train(setup, "dsgd_mgs").final
    comm = final["modeled_comm_seconds_wan"]
    assert comm == pytest.approx(6 * (0.05 + 2 * final["comm_p2p_bytes_per_node"] / 12 / 1.25e7))
    if mode == "configured":
        assert "compute_seconds_measured" not in final
        assert final["modeled_seconds_wan"] == pytest.approx(comm + 6 * 0.5)
    else:
        measured = final["compute_seconds_measured"]
        assert measured > 0 and measured != pytest.approx(6 * 0.5)  # a timing, not the configured value
        assert final["modeled_seconds_wan"] == pytest.approx(comm + measured)


@pytest.mark.parametrize("name", ["ring", "exp_onepeer"])
def test_q_rounds_at_once_count_exactly_as_q_single_rounds(name):
    """gossip_rounds (used by the simulator's in-place rounds) equals the rounds one by one (the
    distributed engine's), modeled seconds included, bit for bit."""
    topo = build_topology(name, 8)
    once, single = Ledger(topo, NETS), Ledger(topo, NETS)
    r = 0
    for q in (1, 16, 3, 0, 7):
        once.gossip_rounds(r, q, 4 * 650)
        for i in range(q):
            single.gossip_round(r + i, 4 * 650)
        r += q
    assert once.record(5) == single.record(5)
    assert once.rounds == 27 and once.comm_seconds["slow"] > 27 * 0.05
