"""Independent runs trained together as replicas of one node matrix.

Runs that differ only in values that do not change any tensor's shape (seeds, learning rate,
gossip steps Q, gossip scheme, topology with the same m, partition) compute the same kind of
iteration on matrices of the same shape. Stacking their node models as the rows of one
[replicas * models, d] matrix runs one batched forward/backward over all of them (the per-call
cost of small models is paid once, not once per run), while everything that makes a run itself
stays per replica: its initialisation, its sampler (positions and augmentation from its own
sampling seed), its partition, its learning rate schedule and optimizer, its algorithm (gossip
scheme, topology, Q) and round counter, its evaluation, and its divergence. Every per-replica
operation runs on that replica's own rows with the single run's kernels, so a replica's history
equals that of the same run made alone (tested: bitwise on CPU with the bmm backend).

Stability twins (:class:`~gossiplab.engine.simulator.Simulator` with ``replica_indices``) are the
other kind of replica: copies of *one* run that share everything but a sample. This class is for
independent runs; the sweep layer groups them (``experiments/replicas.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gossiplab.algorithms import build_algorithm
from gossiplab.engine.base import TrainingEngine
from gossiplab.engine.batches import BatchSampler
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.engine.optim import MatrixSGD
from gossiplab.experiments.setup import Setup, build_model_for
from gossiplab.gossip import build_gossip
from gossiplab.schedules import build_schedule


def replica_key(setup: Setup, algorithm: str | None = None) -> tuple:
    """What replicas trained together must share (shapes and the iteration's structure)."""
    cfg = setup.cfg
    return (algorithm or cfg.algorithm.name, cfg.topology.nodes, cfg.model.model_dump_json(),
            cfg.optim.batch_size, cfg.data.sampling, setup.augment, id(setup.dataset),
            str(setup.device), cfg.engine.backend)


class ReplicaSimulator(TrainingEngine):
    """Trains one algorithm for each of ``setups`` (replica r = the run of ``setups[r]``) side by
    side. The setups must share the dataset object and :func:`replica_key`."""

    def __init__(self, setups: list[Setup], algorithm: str | None = None):
        if not setups:
            raise ValueError("no runs to train")
        keys = {replica_key(s, algorithm) for s in setups}
        if len(keys) != 1:
            raise ValueError("runs trained as replicas must share data, model, batch, algorithm "
                             "and device")
        first = setups[0]
        self._init_algorithm(first, algorithm)
        name = self.algorithm.name
        self.setups = setups
        self.replicas = len(setups)
        k = self.models_per_replica
        self._init_training(first.dataset, self.replicas * k)
        self.algorithms = [self.algorithm] + [
            build_algorithm(name, s.cfg.topology.nodes, None if name == "centralized" else
                            build_gossip(s.cfg.algorithm.gossip, s.topology, s.cfg.algorithm.gossip_steps))
            for s in setups[1:]]
        with torch.no_grad():
            for r, s in enumerate(setups[1:], start=1):
                init = torch.nn.utils.parameters_to_vector(
                    build_model_for(s.cfg, s.dataset).parameters()).to(self.device)
                self.stack.params[r * k:(r + 1) * k] = init
        self.optimizers, self.schedules = [], []
        for r, s in enumerate(setups):
            o = s.cfg.optim
            rows = slice(r * k, (r + 1) * k)
            self.optimizers.append(MatrixSGD(self.stack.params[rows], self.stack.grads[rows],
                                             momentum=o.momentum, nesterov=o.nesterov,
                                             weight_decay=o.weight_decay))
            self.schedules.append(build_schedule(o.schedule, lr=o.lr, t0=o.t0, step_every=o.step_every,
                                                 gamma=o.gamma, iterations=s.cfg.train.iterations))
        self.optimizer = self.optimizers[0]  # (the base class's, unused here)
        self.samplers = [BatchSampler(s.partition.sizes, s.cfg.optim.batch_size, mode=s.cfg.data.sampling,
                                      seed=s.cfg.seeds.sampling) for s in setups]
        self.mixers = [MatrixMixer(s.topology, device=self.device, fuse=s.cfg.engine.fuse_gossip)
                       for s in setups]
        nmax = max(int(s.partition.sizes.max()) for s in setups)
        tab = np.zeros((self.replicas, first.cfg.topology.nodes, nmax), dtype=np.int64)
        for r, s in enumerate(setups):
            for node, ix in enumerate(s.partition.nodes):
                tab[r, node, :len(ix)] = ix
        self.tables = torch.from_numpy(tab).to(self.device)
        self.rounds = [0] * self.replicas
        self.diverged_at: list[int | None] = [None] * self.replicas

    def active(self, r: int) -> bool:
        return self.diverged_at[r] is None

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[R, m, b, ...] inputs and [R, m, b] labels, each replica from its own sampler."""
        ds = self.setups[0].dataset
        positions = torch.stack([s.sample() for s in self.samplers]).to(self.device)
        idx = torch.gather(self.tables, 2, positions).reshape(-1)
        x = ds.x_train[idx]
        if self.setups[0].augment:
            from gossiplab.data.augment import apply_crop_flip, sample_crop_flip

            per = positions[0].numel()
            aug = torch.cat([sample_crop_flip(per, 4, s.generator) for s in self.samplers])
            x = apply_crop_flip(x, aug)
        x = ds.normalise(x, inplace=True)  # x is this function's own copy
        return x.view(*positions.shape, *x.shape[1:]), ds.y_train[idx].view(positions.shape)

    def step(self) -> list[float | None]:
        """One iteration of every replica; returns each replica's mean batch loss over its
        models (None for a replica that has diverged, now or before)."""
        x, y = self._batch()
        xg, yg = self.algorithm.arrange(x, y)
        losses = self._forward_backward(self.stack, xg, yg)
        k = self.models_per_replica
        out: list[float | None] = []
        for r in range(self.replicas):
            if not self.active(r):
                out.append(None)
                continue
            mine = losses[r * k:(r + 1) * k]
            if not math.isfinite(float(mine.sum())):
                self.diverged_at[r] = self.iteration
                out.append(None)
                continue
            out.append(float(mine.mean()))
            self.optimizers[r].step(self.schedules[r](self.iteration))
            self.rounds[r] += self.algorithms[r].communicate(self.stack.params[r * k:(r + 1) * k],
                                                             self.mixers[r], self.rounds[r])
        self.iteration += 1
        self.last_losses = losses
        return out

    def replica_params(self, r: int = 0) -> torch.Tensor:
        k = self.models_per_replica
        return self.stack.params[r * k:(r + 1) * k]

    def replica_finite(self, r: int) -> bool:
        return bool(torch.isfinite(self.replica_params(r)).all())

    def replica_lr(self, r: int) -> float:
        return self.schedules[r](self.iteration)
