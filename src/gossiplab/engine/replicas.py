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
independent runs; ``run/replicas.py`` trains them, the sweep scheduler groups them.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

from gossiplab.accounting import CountedMix
from gossiplab.algorithms import DSGDMGS, Network
from gossiplab.engine.base import TrainingEngine
from gossiplab.engine.batches import BatchSampler
from gossiplab.engine.mixing import MatrixMixer, centred_rounds_
from gossiplab.engine.nodestack import all_finite
from gossiplab.engine.optim import MatrixSGD
from gossiplab.gossip import PlainGossip
from gossiplab.schedules import build_schedule
from gossiplab.setup import Setup, build_model_for


def replica_key(setup: Setup, algorithm: str | None = None) -> tuple:
    """What replicas trained together must share (shapes and the iteration's structure)."""
    cfg = setup.cfg
    return (algorithm or cfg.algorithm.name, cfg.topology.nodes, cfg.model.model_dump_json(),
            cfg.optim.batch_size, cfg.data.sampling, setup.augment, id(setup.dataset),
            str(setup.device), cfg.engine.backend)


class _Replica(TrainingEngine):
    """One replica's own part of the iteration: its algorithm (and buffers), ledger, round
    counter, optimizer, schedule, sampler and mixer, on its rows of the shared matrix. Built by
    the engine base's own code, so a replica's algorithm is exactly the one a single run builds."""

    def __init__(self, setup: Setup, algorithm: str | None, params: torch.Tensor,
                 grads: torch.Tensor, device: torch.device):
        cfg = setup.cfg
        self._init_algorithm(setup, algorithm)
        self.stack = SimpleNamespace(params=params, grads=grads, d=params.shape[1])
        o = cfg.optim
        self.optimizer = MatrixSGD(params, grads, momentum=o.momentum, nesterov=o.nesterov,
                                   weight_decay=o.weight_decay)
        self.schedule = build_schedule(o.schedule, lr=o.lr, t0=o.t0, step_every=o.step_every,
                                       gamma=o.gamma, iterations=cfg.train.iterations)
        self.sampler = BatchSampler(setup.partition.sizes, o.batch_size, mode=cfg.data.sampling,
                                    seed=cfg.seeds.sampling)
        self.mixer = MatrixMixer(setup.topology, device=device, fuse=cfg.engine.fuse_gossip)
        self.net = Network(self.mixer, self.ledger)
        self.iteration = 0
        self.round = 0
        self.algorithm.init_state(params)
        self.diverged_at: int | None = None

    def before(self, iteration: int) -> None:
        """The single run's step after forward/backward, up to the SGD update: the algorithm's
        hook between gradient and update."""
        self.iteration = iteration
        self.round += self.algorithm.after_gradient(self.stack.params, self.stack.grads, self.net,
                                                    iteration, self.round)

    def after(self) -> None:
        """The single run's step after the SGD update: the algorithm's communication."""
        self.round += self.algorithm.communicate(self.stack.params, self.net, self.iteration,
                                                 self.round)

    def optim_key(self) -> tuple:
        o = self.cfg.optim
        return (o.momentum, o.nesterov, o.weight_decay)

    def dense_plan(self) -> list[torch.Tensor] | None:
        """The dense operators whose products compute this iteration's communication, when it is
        plain gossip (DSGD-MGS with the plain scheme: ``mixer.rounds_`` exactly); None when the
        replica communicates on its own (other algorithms and schemes, sparse W)."""
        if type(self.algorithm) is not DSGDMGS or type(self.algorithm.gossip) is not PlainGossip:
            return None
        steps = self.algorithm.gossip.rounds()
        if steps == 0:
            return None
        ops = self.mixer.plan(self.round, steps)
        return None if any(op.is_sparse for op in ops) else ops


class ReplicaSimulator(TrainingEngine):
    """Trains one algorithm for each of ``setups`` (replica r = the run of ``setups[r]``) side by
    side. The setups must share the dataset object and :func:`replica_key`."""

    def __init__(self, setups: list[Setup], algorithm: str | None = None):
        if not setups:
            raise ValueError("no runs to train")
        if len({replica_key(s, algorithm) for s in setups}) != 1:
            raise ValueError("runs trained as replicas must share data, model, batch, algorithm "
                             "and device")
        first = setups[0]
        self._init_algorithm(first, algorithm)
        self.setups = setups
        self.replicas = len(setups)
        k = self.models_per_replica
        self._init_training(first.dataset, self.replicas * k)
        self.parts: list[_Replica] = []
        for r, s in enumerate(setups):
            rows = slice(r * k, (r + 1) * k)
            if r:
                with torch.no_grad():
                    self.stack.params[rows] = torch.nn.utils.parameters_to_vector(
                        build_model_for(s.cfg, s.dataset).parameters()).to(self.device)
            self.parts.append(_Replica(s, algorithm, self.stack.params[rows], self.stack.grads[rows],
                                       self.device))
        self.algorithm = self.parts[0].algorithm
        self._stacked_ops: dict[tuple[int, ...], torch.Tensor] = {}
        self._index = {id(part): r for r, part in enumerate(self.parts)}
        # One SGD update of the whole matrix where every replica's is the same elementwise
        # operation (same optimizer settings; checked per iteration: same learning rate); the
        # replicas' momentum buffers are views of the shared one, so both paths see one state.
        self.shared_optimizer = len({p.optim_key() for p in self.parts}) == 1
        if self.shared_optimizer and self.optimizer.buf is not None:
            for r, part in enumerate(self.parts):
                part.optimizer.buf = self.optimizer.buf[r * k:(r + 1) * k]
        nmax = max(int(s.partition.sizes.max()) for s in setups)
        tab = np.zeros((self.replicas, first.cfg.topology.nodes, nmax), dtype=np.int64)
        for r, s in enumerate(setups):
            for node, ix in enumerate(s.partition.nodes):
                tab[r, node, :len(ix)] = ix
        self.tables = torch.from_numpy(tab).to(self.device)
        self._uniform = all(p.sampler.mode == "uniform" for p in self.parts)
        self._sizes = torch.stack([p.sampler.sizes for p in self.parts])[:, :, None]
        self.last_losses: torch.Tensor | None = None

    @property
    def rounds(self) -> list[int]:
        return [p.round for p in self.parts]

    @property
    def diverged_at(self) -> list[int | None]:
        return [p.diverged_at for p in self.parts]

    def active(self, r: int) -> bool:
        return self.parts[r].diverged_at is None

    def _positions(self) -> torch.Tensor:
        """[R, m, b] positions, replica r's from its own sampler. Uniform sampling draws each
        replica's uniforms from its generator (BatchSampler.sample's call) and maps them to
        positions once for all replicas (the same elementwise operations)."""
        samplers = [p.sampler for p in self.parts]
        if not self._uniform:
            return torch.stack([s.sample() for s in samplers]).to(self.device)
        u = torch.stack([torch.rand(s.m, s.b, generator=s.generator, dtype=torch.float64)
                         for s in samplers])
        pos = (u * self._sizes).long()
        return torch.minimum(pos, self._sizes - 1).to(self.device)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[R, m, b, ...] inputs and [R, m, b] labels, each replica from its own sampler."""
        ds = self.setups[0].dataset
        positions = self._positions()
        idx = torch.gather(self.tables, 2, positions).reshape(-1)
        if self.setups[0].augment:
            from gossiplab.data.augment import apply_crop_flip, sample_crop_flip

            per = positions[0].numel()
            aug = torch.cat([sample_crop_flip(per, 4, p.sampler.generator) for p in self.parts])
            stored = ds.x_train.index_select(0, idx)
            x = ds.normalise(apply_crop_flip(stored, aug), inplace=True)  # our own copy
        else:
            x = ds.train_batch(idx)
        return x.view(*positions.shape, *x.shape[1:]), ds.y_train.index_select(0, idx).view(positions.shape)

    def step(self) -> list[float | None]:
        """One iteration of every replica; returns each replica's mean batch loss over its
        models (None for a replica that has diverged, now or before)."""
        x, y = self._batch()
        xg, yg = self.algorithm.arrange(x, y)
        losses = self._forward_backward(self.stack, xg, yg)
        per_replica = losses.view(self.replicas, self.models_per_replica)
        means = per_replica.mean(1).tolist()  # = each replica's own mean (tested bitwise)
        sums = per_replica.sum(1).tolist()
        out: list[float | None] = []
        active: list[_Replica] = []
        for r, part in enumerate(self.parts):
            if part.diverged_at is None and not math.isfinite(sums[r]):
                part.diverged_at = self.iteration
            if part.diverged_at is not None:
                out.append(None)
                continue
            out.append(means[r])
            active.append(part)
            part.before(self.iteration)
        lrs = {part.schedule(self.iteration) for part in active}
        if self.shared_optimizer and len(lrs) == 1:  # (diverged rows are updated too: unread)
            self.optimizer.step(lrs.pop())
        else:
            for part in active:
                part.optimizer.step(part.schedule(self.iteration))
        self._communicate_all(active)
        self.iteration += 1
        for part in self.parts:
            part.iteration = self.iteration
        self.last_losses = losses
        return out

    def _communicate_all(self, active: list[_Replica]) -> None:
        """Each replica's communication. The plain gossip of replicas with dense operators runs
        as one batched product per round over their [m, d] blocks (each block's product is the
        single run's product: the same kernel on the same shapes, tested bitwise), each
        replica's ledger and round counter updated as its own rounds would; the others
        communicate one by one."""
        batched: dict[int, list[tuple[int, list[torch.Tensor]]]] = {}
        for part in active:
            ops = part.dense_plan()
            if ops is None:
                part.after()
                continue
            steps = part.algorithm.gossip.rounds()
            part.ledger.gossip_rounds(part.round, steps, CountedMix.row_bytes(part.stack.params))
            part.round += steps
            batched.setdefault(len(ops), []).append((self._index[id(part)], ops))
        for members in batched.values():
            self._dense_rounds([r for r, _ in members], [ops for _, ops in members])

    @torch.no_grad()
    def _dense_rounds(self, rows: list[int], plans: list[list[torch.Tensor]]) -> None:
        """x_r <- ops_r[-1] ... ops_r[0] x_r for replicas ``rows`` (ascending; plans of equal
        length), with :meth:`MatrixMixer.rounds_`'s arithmetic: column blocks of the single run's
        width, each product centred as the single run's, batched over each run of consecutive
        replicas in place. Replicas that do not gossip here (Q = 0, diverged, other schemes)
        split the rows into runs rather than being gathered around: a gather and a scatter of
        the rows cost a third of the rounds (measured: 1.2 s of a 10 s group of 12 digits MLP
        replicas with three Q = 0 runs in the middle)."""
        k = self.models_per_replica
        params = self.stack.params.view(self.replicas, k, -1)
        width = self.parts[rows[0]].mixer.column_width(k, params.element_size())
        start = 0
        for end in range(1, len(rows) + 1):
            if end < len(rows) and rows[end] == rows[end - 1] + 1:
                continue
            centred_rounds_(self._stacked(plans[start:end]),
                            params[rows[start]:rows[end - 1] + 1], width)
            start = end

    def _stacked(self, plans: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Round q's operators of ``plans`` (one plan per replica) stacked [replicas, ...], for
        every q; kept while the same operators come back (every iteration, for a fixed W)."""
        ops = []
        for q in range(len(plans[0])):
            key = tuple(id(p[q]) for p in plans)
            op = self._stacked_ops.get(key)
            if op is None:
                if len(self._stacked_ops) > 256:
                    self._stacked_ops.clear()
                op = self._stacked_ops[key] = torch.stack([p[q] for p in plans])
            ops.append(op)
        return ops

    def replica_params(self, r: int = 0) -> torch.Tensor:
        return self.parts[r].stack.params

    def replica_finite(self, r: int) -> bool:
        return all_finite(self.replica_params(r))

    def replica_lr(self, r: int) -> float:
        return self.parts[r].lr()
