"""Decentralized and centralized training algorithms, chosen by name.

An algorithm says how many models there are, which samples each model's gradient sees, and what
communication follows the local step. The engine (simulator or distributed) does the rest.
"""

from __future__ import annotations

import torch

from gossiplab.errors import ConfigError
from gossiplab.gossip import GossipScheme, Mix


class Algorithm:
    name = "base"

    def __init__(self, nodes: int, gossip: GossipScheme | None = None):
        self.nodes = nodes
        self.gossip = gossip

    def models(self) -> int:
        """Models per replica."""
        raise NotImplementedError

    def arrange(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node batches [R, m, b, ...] -> per-model batches [R * models, B, ...]."""
        raise NotImplementedError

    def communicate(self, params: torch.Tensor, mix: Mix, round0: int) -> int:
        """Communication after the local step, in place on ``params``; returns rounds used."""
        return 0


class DSGDMGS(Algorithm):
    """DSGD with multiple gossip steps: x_k <- sum_l (W^Q)_kl (x_l - eta g_l(x_l)).

    Every node takes an SGD step on its own mini-batch, then Q gossip rounds. Q = 1 is DSGD,
    Q = 0 local SGD without communication.
    """

    name = "dsgd_mgs"

    def models(self) -> int:
        return self.nodes

    def arrange(self, x, y):
        r, m, b = y.shape
        return x.reshape(r * m, b, *x.shape[3:]), y.reshape(r * m, b)

    def communicate(self, params: torch.Tensor, mix: Mix, round0: int) -> int:
        assert self.gossip is not None
        if self.gossip.rounds() == 0:
            return 0
        with torch.no_grad():
            self.gossip.apply_(params, mix, round0)
        return self.gossip.rounds()


class Centralized(Algorithm):
    """Centralized mini-batch SGD: one model, its batch the union of the m node batches.

    Sees exactly the samples DSGD-MGS sees in the same iteration (same sampling seed), so the two
    differ only in communication.
    """

    name = "centralized"

    def models(self) -> int:
        return 1

    def arrange(self, x, y):
        r, m, b = y.shape
        return x.reshape(r, m * b, *x.shape[3:]), y.reshape(r, m * b)


ALGORITHMS: dict[str, type[Algorithm]] = {"dsgd_mgs": DSGDMGS, "centralized": Centralized}
"""Algorithms by name. Adding one is one subclass registered here."""


def build_algorithm(name: str, nodes: int, gossip: GossipScheme | None) -> Algorithm:
    try:
        return ALGORITHMS[name](nodes, gossip)
    except KeyError:
        raise ConfigError(
            f"algorithm.name: unknown algorithm '{name}'; choose one of: "
            f"{', '.join(sorted(ALGORITHMS))}"
        ) from None
