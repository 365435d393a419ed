"""What every training engine shares: the algorithm, the [models, d] node stack, the local SGD
step and its schedule, the per-node forward/backward backend, the counters, and the state a
bitwise resume needs. The simulator and the distributed engine differ only in where the rows live,
how a batch is gathered and how a gossip round is computed."""

from __future__ import annotations

import torch

from gossiplab.accounting import Ledger, networks_from_config
from gossiplab.algorithms import Algorithm, build_algorithm
from gossiplab.data.datasets import Dataset
from gossiplab.engine.nodestack import BACKENDS, NodeStack, all_finite, bmm_supported, choose_backend
from gossiplab.engine.optim import MatrixSGD
from gossiplab.engine.runtime import tune_malloc
from gossiplab.errors import ConfigError, Diverged
from gossiplab.gossip import build_gossip
from gossiplab.more_algorithms import MORE_ALGORITHMS, Network, StatefulAlgorithm, build_stateful
from gossiplab.schedules import build_schedule
from gossiplab.setup import Setup, build_model_for


class TrainingEngine:
    """Base of :class:`~gossiplab.engine.simulator.Simulator` and the distributed engine: the
    training interface ``run.loop.train`` drives (``step``, ``lr``, ``iteration``,
    ``round``, ``check_finite``, ``state_dict``/``load_state_dict``)."""

    stack: NodeStack

    def _init_algorithm(self, setup: Setup, algorithm: str | None) -> Algorithm:
        cfg = setup.cfg
        if cfg.engine.tune_malloc:
            tune_malloc()
        self.setup = setup
        self.cfg = cfg
        self.device = setup.device
        name = algorithm or cfg.algorithm.name
        gossip = (build_gossip(cfg.algorithm.gossip, setup.topology, cfg.algorithm.gossip_steps)
                  if name != "centralized" else None)
        if name in MORE_ALGORITHMS:
            assert gossip is not None
            self.algorithm = build_stateful(name, cfg.topology.nodes, gossip, cfg.algorithm,
                                            cfg.train.iterations)
        else:
            self.algorithm = build_algorithm(name, cfg.topology.nodes, gossip)
        self.models_per_replica = self.algorithm.models()
        self.ledger = Ledger(setup.topology, networks_from_config(cfg.network),
                             cfg.network.compute_seconds)
        return self.algorithm

    @property
    def stateful(self) -> bool:
        return isinstance(self.algorithm, StatefulAlgorithm)

    def _communicate(self, net: Network) -> None:
        """The algorithm's communication after the local step (centralized: its gradient
        all-reduce, done by the engine before the step, is counted here)."""
        if self.stateful:
            self.round += self.algorithm.after_update(self.stack.params, self.iteration, net,
                                                      self.round)
            return
        if self.models_per_replica == 1:
            self.ledger.all_reduce(self.stack.d * self.stack.params.element_size())
        self.round += self.algorithm.communicate(self.stack.params, net.mix, self.round)

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
        self.iteration = 0
        self.round = 0
        if isinstance(self.algorithm, StatefulAlgorithm):
            self.algorithm.allocate(self.stack.params)

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
            "algorithm_state": self.algorithm.state_dict() if self.stateful else {},
            "ledger": self.ledger.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["algorithm"] != self.name:
            raise ConfigError(f"checkpoint is for {state['algorithm']}, not {self.name}")
        self.iteration = int(state["iteration"])
        self.round = int(state["round"])
        with torch.no_grad():
            self.stack.params.copy_(state["params"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        if self.stateful:
            self.algorithm.load_state_dict(state["algorithm_state"])
        if "ledger" in state:
            self.ledger.load_state_dict(state["ledger"])
