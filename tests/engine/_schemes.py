"""A test-only gossip scheme shaped like the accelerated ones (Chebyshev, finite-time): it keeps
the previous iterate and mixes two vectors per round through ``mix(x, r)`` (concatenated along
the columns: the protocol is ``[rows, D]``)."""

import torch

from gossiplab.gossip import SCHEMES, GossipScheme


class TwoTerm(GossipScheme):
    """x_{q+1} = 1.5 W x_q - 0.5 W x_{q-1} (averages preserved), both products in one round."""

    name = "test_two_term"

    def apply(self, x: torch.Tensor, mix, round0: int = 0) -> torch.Tensor:
        prev, cur = x, mix(x, round0) if self.steps else x
        d = x.shape[1]
        for q in range(1, self.steps):
            both = mix(torch.cat([cur, prev], 1), round0 + q)  # [rows, 2d]: two vectors, one round
            prev, cur = cur, 1.5 * both[:, :d] - 0.5 * both[:, d:]
        return cur


def register() -> None:
    SCHEMES.setdefault(TwoTerm.name, TwoTerm)
