"""The simulator: one process trains all m nodes (and any stability twins) of one algorithm.

One iteration (:meth:`~gossiplab.engine.base.TrainingEngine.step`) = sample positions -> gather
the [replicas, m, b] batch -> per-node forward/backward into the gradient matrix -> the
algorithm's hook -> one fused SGD update -> the algorithm's communication, whose gossip rounds
are matrix products (the :class:`~gossiplab.algorithms.Network` base).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gossiplab.algorithms import Network
from gossiplab.engine.base import TrainingEngine
from gossiplab.engine.batches import BatchSampler, NodeData
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.errors import Diverged
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

    def _local_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        positions = self.sampler.sample().to(self.device)
        aug = self.data.sample_augmentation(positions.numel(), self.sampler.generator)
        return self.data.batch(positions, aug, workers=torch.get_num_threads())

    def _batch_loss(self, losses: torch.Tensor) -> float:
        """The mean batch loss of replica 0's models."""
        loss = float(losses[: self.models_per_replica].mean())
        if not math.isfinite(float(losses.sum())):
            raise Diverged(self.iteration, "loss")
        return loss

    def replica_params(self, r: int = 0) -> torch.Tensor:
        """[models, d] parameters of replica ``r``."""
        k = self.models_per_replica
        return self.stack.params[r * k:(r + 1) * k]

    def average_model(self, r: int = 0) -> torch.Tensor:
        return self.replica_params(r).mean(0)

