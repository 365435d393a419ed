"""The distributed mix, without processes: every rank's round plan, with messages delivered by
hand, must give W_r x, and each rank must send exactly what its peers expect."""

import numpy as np
import pytest
import torch

from gossiplab.engine.comm import block
from gossiplab.engine.p2p import NeighbourMixer, plan_round
from gossiplab.topology import build_topology


class FakeComm:
    """Rank ``rank`` of ``world``; ``exchange`` delivers from a mailbox filled by the test."""

    def __init__(self, rank, world, nodes, mailbox):
        self.rank, self.world_size, self.nodes, self.mailbox = rank, world, nodes, mailbox
        self.sent = []

    def block(self, rank=None):
        return block(self.nodes, self.world_size, self.rank if rank is None else rank)

    def exchange(self, sends, recvs, what):
        for p, t in sends:
            self.sent.append((p, t.clone()))
        for p, t in recvs:
            t.copy_(self.mailbox[(p, self.rank)])


def mix_all(topo, world, x, r):
    """Run every rank's mixer for round r and return the stacked outputs."""
    m = topo.nodes
    mailbox = {}
    comms = [FakeComm(p, world, m, mailbox) for p in range(world)]
    for p, c in enumerate(comms):  # what each rank will send, from its plan
        lo, hi = c.block()
        for peer, rows in plan_round(topo.matrix(r), c).sends:
            mailbox[(p, peer)] = x[lo:hi].reshape(hi - lo, -1)[torch.as_tensor(rows)]
    outs = []
    for p, c in enumerate(comms):
        lo, hi = c.block()
        outs.append(NeighbourMixer(topo, c)(x[lo:hi], r))
        for peer, t in c.sent:
            torch.testing.assert_close(t, mailbox[(p, peer)].reshape(t.shape), rtol=0, atol=0)
    return torch.cat(outs)


@pytest.mark.parametrize("name,m,world", [
    ("ring", 4, 4), ("ring", 6, 4), ("ring", 16, 3), ("exp_onepeer", 8, 4), ("exp_onepeer", 16, 4),
    ("torus", 16, 4), ("complete", 5, 2), ("star", 7, 3), ("exponential", 9, 4),
])
def test_every_rank_gets_w_times_x(name, m, world):
    topo = build_topology(name, m)
    torch.manual_seed(0)
    x = torch.randn(m, 2, 5, dtype=torch.float64)  # several vectors per node (trailing dims)
    for r in range(2 * topo.period + 1):
        want = torch.as_tensor(topo.matrix(r)) @ x.reshape(m, -1)
        torch.testing.assert_close(mix_all(topo, world, x, r), want.view_as(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,m,world", [("ring", 8, 4), ("exp_onepeer", 16, 4), ("torus", 16, 8)])
def test_plans_agree_between_peers_and_talk_only_to_neighbours(name, m, world):
    topo = build_topology(name, m)
    for r in range(topo.period):
        w = topo.matrix(r)
        comms = [FakeComm(p, world, m, {}) for p in range(world)]
        plans = [plan_round(w, c) for c in comms]
        for p, plan in enumerate(plans):
            lo, hi = comms[p].block()
            for peer, rows in plan.sends:
                plo, phi = comms[peer].block()
                nodes = set(int(i) + lo for i in rows)
                # every row sent is a graph neighbour of one of the peer's nodes
                assert all(np.any(w[plo:phi, j] != 0) for j in nodes)
                # and the peer expects exactly that many rows from p
                expect = [n for q, _, n in plans[peer].recvs if q == p]
                assert expect == [len(nodes)]
            np.testing.assert_array_equal(plan.weights.sum(1), np.ones(hi - lo))  # rows of W


def test_one_node_per_process_sends_degree_messages_per_round():
    topo = build_topology("ring", 6)
    comms = [FakeComm(p, 6, 6, {}) for p in range(6)]
    for c in comms:
        plan = plan_round(topo.matrix(0), c)
        assert sorted(p for p, _ in plan.sends) == sorted(topo.neighbours(c.rank))
        assert plan.received == 2
