"""Gossip schemes: what Q rounds of neighbour-only communication compute.

A scheme sees the communication only through ``mix(x, r)``, one round of exchange with the
graph's neighbours weighted by W_r (a matrix product in the simulator, point-to-point messages in
the distributed engine), so every scheme runs unchanged on both engines.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gossiplab.errors import ConfigError
from gossiplab.topology import Topology

Mix = Callable[[torch.Tensor, int], torch.Tensor]
"""One gossip round: ``mix(x, r)`` returns W_r x for the rows of ``x`` (one row per node)."""


class GossipScheme:
    """Base class: ``apply`` runs ``steps`` rounds starting at global round ``round0``."""

    name = "base"

    def __init__(self, topology: Topology, steps: int):
        if steps < 0:
            raise ConfigError(f"algorithm.gossip_steps must be >= 0, got {steps}")
        self.topology = topology
        self.steps = steps

    def apply(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def rounds(self) -> int:
        """Communication rounds used per iteration."""
        return self.steps

    def apply_(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        """In-place ``apply``: x <- the scheme's rounds of x; returns x. Schemes may override it
        to use a faster in-place path of the engine's ``mix``."""
        out = self.apply(x, mix, round0)
        if out.data_ptr() != x.data_ptr():
            x.copy_(out)
        return x


class PlainGossip(GossipScheme):
    """Q multiplications by W: x <- W x. Disagreement shrinks like lambda^Q."""

    name = "plain"

    def apply(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        for q in range(self.steps):
            x = mix(x, round0 + q)
        return x

    def apply_(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        # The simulator's MatrixMixer runs plain rounds in place (and fused into W^Q when cheaper).
        rounds_ = getattr(mix, "rounds_", None)
        if rounds_ is not None and x.dim() == 2:
            return rounds_(x, round0, self.steps)
        return super().apply_(x, mix, round0)


SCHEMES: dict[str, type[GossipScheme]] = {"plain": PlainGossip}
"""Gossip schemes by name. Adding one is one subclass registered here."""


def build_gossip(name: str, topology: Topology, steps: int) -> GossipScheme:
    try:
        cls = SCHEMES[name]
    except KeyError:
        raise ConfigError(
            f"unknown gossip scheme '{name}'; choose one of: {', '.join(sorted(SCHEMES))}"
        ) from None
    return cls(topology, steps)
