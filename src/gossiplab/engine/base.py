"""What every training engine shares: the algorithm, the [models, d] node stack, the local SGD
step and its schedule, the per-node forward/backward backend, the counters, the state a bitwise
resume needs, and the order of one iteration (:meth:`TrainingEngine.step`: gradient, the
algorithm's hook, update, the algorithm's communication). The simulator and the distributed engine
differ only in where the rows live, how a batch is gathered, how the batch loss is reduced and
how the algorithm's :class:`~gossiplab.algorithms.Network` reaches the other rows."""

from __future__ import annotations

import time

import torch

from gossiplab.accounting import Ledger, networks_from_config
from gossiplab.algorithms import Algorithm, Network, build_algorithm
from gossiplab.data.datasets import Dataset
from gossiplab.engine.nodestack import BACKENDS, NodeStack, all_finite, bmm_supported, choose_backend, like
from gossiplab.engine.optim import MatrixSGD
from gossiplab.engine.runtime import tune_malloc
from gossiplab.errors import ConfigError, Diverged
from gossiplab.schedules import build_schedule
from gossiplab.setup import Setup, build_model_for


class TrainingEngine:
    """Base of :class:`~gossiplab.engine.simulator.Simulator` and the distributed engine: the
    training interface ``run.loop.train`` drives (``step``, ``lr``, ``iteration``,
    ``round``, ``check_finite``, ``state_dict``/``load_state_dict``)."""

    stack: NodeStack
    net: Network

    def _init_algorithm(self, setup: Setup, algorithm: str | None) -> Algorithm:
        cfg = setup.cfg
        if cfg.engine.tune_malloc:
            tune_malloc()
        self.setup = setup
        self.cfg = cfg
        self.device = setup.device
        name = algorithm or cfg.algorithm.name
        self.algorithm = build_algorithm(name, cfg.topology.nodes, setup.topology, cfg.algorithm,
                                         cfg.train.iterations)
        self.models_per_replica = self.algorithm.models()
        self.ledger = Ledger(setup.topology, networks_from_config(cfg.network),
                             cfg.network.compute_seconds,
                             measured_compute=cfg.network.compute == "measured")
        return self.algorithm

    def _init_training(self, dataset: Dataset, models: int) -> None:
        """The node stack of ``models`` rows, its optimizer, schedule and backend; counters at 0."""
        cfg = self.cfg
        self.stack = NodeStack(build_model_for(cfg, dataset), models, device=self.device)
        o = cfg.optim
        self.optimizer = MatrixSGD(self.stack.params, self.stack.grads, momentum=o.momentum,
                                   nesterov=o.nesterov, weight_decay=o.weight_decay)
        self.schedule = build_schedule(o.schedule, lr=o.lr, t0=o.t0, step_every=o.step_every,
                                       gamma=o.gamma, iterations=cfg.train.iterations)
        self.backend_name = choose_backend(cfg.engine.backend, self.device, self.stack.template)
        if self.backend_name == "bmm" and not bmm_supported(self.stack.template):
            raise ConfigError(f"engine.backend = 'bmm' needs a model of Flatten/Linear/ReLU layers "
                              f"(logreg, mlp), not '{cfg.model.name}'")
        self._forward_backward = BACKENDS[self.backend_name]
        self.algorithm.init_state(self.stack.params)
        self.iteration = 0
        self.round = 0
        self.last_losses: torch.Tensor | None = None

    def _local_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This engine's node batches ``[replicas, nodes, b, ...]`` for the next iteration."""
        raise NotImplementedError

    def _batch_loss(self, losses: torch.Tensor) -> float:
        """The iteration's mean batch loss (as the simulator reports it); raises ``Diverged``."""
        raise NotImplementedError

    def step(self) -> float:
        """One iteration, in the order of both engines: gradient, the algorithm's hook, update,
        the algorithm's communication. Returns the mean batch loss."""
        alg, params, grads = self.algorithm, self.stack.params, self.stack.grads
        x, y = self._local_batch()
        xg, yg = alg.arrange(x, y)
        t0 = time.perf_counter()
        losses = self._forward_backward(self.stack, xg, yg)
        computed = time.perf_counter() - t0
        loss = self._batch_loss(losses)
        it = self.iteration
        self.round += alg.after_gradient(params, grads, self.net, it, self.round)
        t0 = time.perf_counter()
        self.optimizer.step(self.schedule(it))
        if self.ledger.measured_compute:  # one node's share: this process computes y.shape[:2] batches
            self.ledger.add_compute((computed + time.perf_counter() - t0) / (y.shape[0] * y.shape[1]))
        self.round += alg.communicate(params, self.net, it, self.round)
        self.iteration += 1
        self.last_losses = losses
        return loss

    @property
    def name(self) -> str:
        return self.algorithm.name

    def lr(self) -> float:
        return self.schedule(self.iteration)

    def check_finite(self) -> None:
        if not all_finite(self.stack.params):
            raise Diverged(self.iteration, "parameters")

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "round": self.round,
            "params": self.stack.params.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "algorithm": self.name,
            "algorithm_state": self.algorithm.state_dict(),
            "ledger": self.ledger.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["algorithm"] != self.name:
            raise ConfigError(f"checkpoint is for {state['algorithm']}, not {self.name}")
        self.iteration = int(state["iteration"])
        self.round = int(state["round"])
        if self.iteration < 0 or self.round < 0:
            raise ValueError("negative iteration or round")
        params = state["params"]
        like(params, self.stack.params, "params")
        if not all_finite(params):  # a checkpoint only ever holds a finite state
            raise ValueError("params are not all finite")
        with torch.no_grad():
            self.stack.params.copy_(params)
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.algorithm.load_state_dict(state.get("algorithm_state", {}))
        if "ledger" in state:
            self.ledger.load_state_dict(state["ledger"])
