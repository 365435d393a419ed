"""A toy algorithm with one state buffer of its own, registered only by the tests that import this
module (or run it as a script): the proof that an algorithm owning its state needs algorithms.py's
protocol and nothing in ``engine/``.

``Tracked`` is DSGD-MGS whose update direction is g + s, where s is a running average of the
node's gradients that is itself gossiped with the parameters: its [rows, d] buffer changes every
step's update, so a resume that lost it could not continue bitwise.

Run as a script it is ``gossiplab ARGV`` with the algorithm registered; ``TOY_KILL_RANK`` and
``TOY_KILL_AT`` SIGKILL that rank (0 for the simulator) at that iteration.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from gossiplab.algorithms import ALGORITHMS, DSGDMGS


class Tracked(DSGDMGS):
    name = "toy_tracked"
    buffers = ("s",)

    def after_gradient(self, params, grads, net, iteration, round0):
        s = self.state["s"]
        with torch.no_grad():
            s.mul_(0.5).add_(grads, alpha=0.5)
            grads.add_(s)
        return 0

    def communicate(self, params, net, iteration, round0):
        used = super().communicate(params, net, iteration, round0)
        if used:
            with torch.no_grad():
                self.gossip.apply_(self.state["s"], net.mix, round0)  # the same W_r as the params
        return used


class Pairs(DSGDMGS):
    """Two models per node, both trained on the node's batch (any number of models per replica)."""

    name = "toy_pairs"

    def models(self) -> int:
        return 2 * self.nodes

    def arrange(self, x, y):
        xg, yg = super().arrange(x, y)
        return xg.repeat_interleave(2, 0), yg.repeat_interleave(2, 0)

    def communicate(self, params, net, iteration, round0):
        return 0


def register() -> None:
    ALGORITHMS[Tracked.name] = Tracked
    ALGORITHMS[Pairs.name] = Pairs


def _kill_at(rank: int, at: int) -> None:
    from gossiplab.engine.base import TrainingEngine

    step = TrainingEngine.step

    def dying(self):
        me = getattr(getattr(self, "comm", None), "rank", 0)
        if me == rank and self.iteration == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self)

    TrainingEngine.step = dying


if __name__ == "__main__":
    register()
    if "TOY_KILL_AT" in os.environ:
        _kill_at(int(os.environ.get("TOY_KILL_RANK", "0")), int(os.environ["TOY_KILL_AT"]))
    from gossiplab.cli import main

    sys.exit(main(sys.argv[1:]))
