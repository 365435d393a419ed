"""The simulator: one process trains all m nodes (and any stability twins) of one algorithm.

One iteration = sample positions -> gather the [replicas, m, b] batch -> per-node forward/backward
into the gradient matrix -> one fused SGD update -> Q gossip rounds as matrix products.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gossiplab.engine.base import TrainingEngine
from gossiplab.engine.batches import BatchSampler, NodeData
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.errors import Diverged
from gossiplab.more_algorithms import Network
from gossiplab.setup import Setup


class Simulator(TrainingEngine):
    """Trains ``algorithm`` (default: the config's) on the setup's nodes.

    ``replica_indices``: extra copies of the whole system, each with its own per-node sample
    indices (same sizes); all replicas share init, sampled positions and augmentation. Replica 0
    is the run itself.
    """

    def __init__(self, setup: Setup, algorithm: str | None = None, *,
                 replica_indices: list[list[np.ndarray]] | None = None):
        cfg = setup.cfg
        self._init_algorithm(setup, algorithm)
        self.replicas = 1 + len(replica_indices or [])
        self._init_training(setup.dataset, self.replicas * self.models_per_replica)
        self.data = NodeData(setup.dataset, setup.partition.nodes, replica_indices,
                             augment=setup.augment, device=self.device)
        self.sampler = BatchSampler(setup.partition.sizes, cfg.optim.batch_size,
                                    mode=cfg.data.sampling, seed=cfg.seeds.sampling)
        self.mixer = MatrixMixer(setup.topology, replicas=self.replicas, device=self.device,
                                 fuse=cfg.engine.fuse_gossip)
        self.net = Network(self.mixer, self.ledger, replicas=self.replicas)
        self.last_losses: torch.Tensor | None = None

    def step(self) -> float:
        """One iteration; returns the mean batch loss of replica 0's models."""
        positions = self.sampler.sample().to(self.device)
        aug = self.data.sample_augmentation(positions.numel(), self.sampler.generator)
        x, y = self.data.batch(positions, aug, workers=torch.get_num_threads())
        xg, yg = self.algorithm.arrange(x, y)
        losses = self._forward_backward(self.stack, xg, yg)
        loss = float(losses[: self.models_per_replica].mean())
        if not math.isfinite(float(losses.sum())):
            raise Diverged(self.iteration, "loss")
        if self.stateful:
            self.algorithm.before_update(self.stack.params, self.stack.grads, self.iteration,
                                         self.net)
        self.optimizer.step(self.schedule(self.iteration))
        self._communicate(self.net)
        self.iteration += 1
        self.last_losses = losses
        return loss

    def replica_params(self, r: int = 0) -> torch.Tensor:
        """[models, d] parameters of replica ``r``."""
        k = self.models_per_replica
        return self.stack.params[r * k:(r + 1) * k]

    def average_model(self, r: int = 0) -> torch.Tensor:
        return self.replica_params(r).mean(0)
