"""The simulator: one process trains all m nodes (and any stability twins) of one algorithm.

One iteration = sample positions -> gather the [replicas, m, b] batch -> per-node forward/backward
into the gradient matrix -> one fused SGD update -> Q gossip rounds as matrix products.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gossiplab.algorithms import Algorithm, build_algorithm
from gossiplab.engine.batches import BatchSampler, NodeData
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.engine.nodestack import BACKENDS, NodeStack, bmm_supported, choose_backend
from gossiplab.engine.optim import MatrixSGD
from gossiplab.engine.runtime import tune_malloc
from gossiplab.errors import ConfigError, Diverged
from gossiplab.experiments.setup import Setup, build_model_for
from gossiplab.gossip import build_gossip
from gossiplab.schedules import build_schedule


class Simulator:
    """Trains ``algorithm`` (default: the config's) on the setup's nodes.

    ``replica_indices``: extra copies of the whole system, each with its own per-node sample
    indices (same sizes); all replicas share init, sampled positions and augmentation. Replica 0
    is the run itself.
    """

    def __init__(self, setup: Setup, algorithm: str | None = None, *,
                 replica_indices: list[list[np.ndarray]] | None = None):
        cfg = setup.cfg
        if cfg.engine.tune_malloc:
            tune_malloc()
        self.setup = setup
        self.cfg = cfg
        name = algorithm or cfg.algorithm.name
        m = cfg.topology.nodes
        gossip = (build_gossip(cfg.algorithm.gossip, setup.topology, cfg.algorithm.gossip_steps)
                  if name != "centralized" else None)
        self.algorithm: Algorithm = build_algorithm(name, m, gossip)
        self.replicas = 1 + len(replica_indices or [])
        self.models_per_replica = self.algorithm.models()
        self.device = setup.device
        self.stack = NodeStack(build_model_for(cfg, setup.dataset),
                               self.replicas * self.models_per_replica, device=self.device)
        self.data = NodeData(setup.dataset, setup.partition.nodes, replica_indices,
                             augment=setup.augment, device=self.device)
        self.sampler = BatchSampler(setup.partition.sizes, cfg.optim.batch_size,
                                    mode=cfg.data.sampling, seed=cfg.seeds.sampling)
        o = cfg.optim
        self.optimizer = MatrixSGD(self.stack.params, self.stack.grads, momentum=o.momentum,
                                   nesterov=o.nesterov, weight_decay=o.weight_decay)
        self.schedule = build_schedule(o.schedule, lr=o.lr, t0=o.t0, step_every=o.step_every,
                                       gamma=o.gamma, iterations=cfg.train.iterations)
        self.mixer = MatrixMixer(setup.topology, replicas=self.replicas, device=self.device,
                                 fuse=cfg.engine.fuse_gossip)
        self.backend_name = choose_backend(cfg.engine.backend, self.device, self.stack.template)
        if self.backend_name == "bmm" and not bmm_supported(self.stack.template):
            raise ConfigError(f"engine.backend = 'bmm' needs a model of Flatten/Linear/ReLU layers "
                              f"(logreg, mlp), not '{cfg.model.name}'")
        self._forward_backward = BACKENDS[self.backend_name]
        self.iteration = 0
        self.round = 0
        self.last_losses: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return self.algorithm.name

    def lr(self) -> float:
        return self.schedule(self.iteration)

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
        self.optimizer.step(self.schedule(self.iteration))
        self.round += self.algorithm.communicate(self.stack.params, self.mixer, self.round)
        self.iteration += 1
        self.last_losses = losses
        return loss

    def replica_params(self, r: int = 0) -> torch.Tensor:
        """[models, d] parameters of replica ``r``."""
        k = self.models_per_replica
        return self.stack.params[r * k:(r + 1) * k]

    def average_model(self, r: int = 0) -> torch.Tensor:
        return self.replica_params(r).mean(0)

    def check_finite(self) -> None:
        if not bool(torch.isfinite(self.stack.params).all()):
            raise Diverged(self.iteration, "parameters")

    # -- checkpointing ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "round": self.round,
            "params": self.stack.params.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "algorithm": self.name,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["algorithm"] != self.name:
            raise ValueError(f"checkpoint is for {state['algorithm']}, not {self.name}")
        self.iteration = int(state["iteration"])
        self.round = int(state["round"])
        with torch.no_grad():
            self.stack.params.copy_(state["params"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
