"""The common research-code pattern for decentralized SGD, as a fair baseline.

What much decentralized / federated research code does: one deep-copied ``nn.Module`` per node,
each with its own ``torch.optim.SGD``; every iteration each node samples its batch, steps its
optimizer, and a gossip round replaces each node's ``state_dict`` by the W-weighted sum of its
neighbours' ``state_dict``s, tensor by tensor. Given every advantage we can: the nodes' data are
preloaded tensors (no DataLoader), sampling and augmentation are gossiplab's own vectorised
functions, and only the non-zero weights of W are visited.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from gossiplab.data.augment import apply_crop_flip, sample_crop_flip
from gossiplab.setup import Setup, build_model_for


class CommonPattern:
    def __init__(self, setup: Setup, seed: int = 0):
        cfg = setup.cfg
        self.setup = setup
        self.ds = setup.dataset
        self.batch = cfg.optim.batch_size
        self.steps = cfg.algorithm.gossip_steps
        self.lr = cfg.optim.lr
        template = build_model_for(cfg, self.ds)
        m = cfg.topology.nodes
        self.models = [copy.deepcopy(template) for _ in range(m)]
        o = cfg.optim
        self.optimizers = [torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                                           nesterov=o.nesterov, weight_decay=o.weight_decay)
                           for model in self.models]
        self.node_x = [self.ds.x_train[torch.as_tensor(ix)] for ix in setup.partition.nodes]
        self.node_y = [self.ds.y_train[torch.as_tensor(ix)] for ix in setup.partition.nodes]
        self.augment = setup.augment
        self.generator = torch.Generator().manual_seed(seed)
        self.round = 0
        self._neighbours: dict[int, list[list[tuple[int, float]]]] = {}

    def neighbours(self, i: int, r: int) -> list[tuple[int, float]]:
        """(j, W_ij) over the non-zeros of row i of W_r (lists built once per distinct W)."""
        key = r % self.setup.topology.period
        if key not in self._neighbours:
            w = self.setup.topology.matrix(r)
            self._neighbours[key] = [[(int(j), float(w[k, j])) for j in np.flatnonzero(w[k])]
                                     for k in range(w.shape[0])]
        return self._neighbours[key][i]

    def local_steps(self) -> float:
        total = 0.0
        for model, opt, xs, ys in zip(self.models, self.optimizers, self.node_x, self.node_y,
                                      strict=True):
            idx = torch.randint(len(ys), (self.batch,), generator=self.generator)
            xb = xs[idx]
            if self.augment:
                xb = apply_crop_flip(xb, sample_crop_flip(self.batch, 4, self.generator))
            opt.zero_grad()
            loss = F.cross_entropy(model(self.ds.normalise(xb)), ys[idx])
            loss.backward()
            opt.step()
            total += loss.item()
        return total / len(self.models)

    @torch.no_grad()
    def gossip_round(self) -> None:
        states = [model.state_dict() for model in self.models]
        mixed = []
        for i in range(len(self.models)):
            nbrs = self.neighbours(i, self.round)
            mixed.append({k: sum(w * states[j][k] for j, w in nbrs) for k in states[i]})
        for model, state in zip(self.models, mixed, strict=True):
            model.load_state_dict(state)
        self.round += 1

    def step(self) -> float:
        loss = self.local_steps()
        for _ in range(self.steps):
            self.gossip_round()
        return loss
