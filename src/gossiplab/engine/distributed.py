"""The distributed engine: the simulator's iteration, with this process's nodes only.

Rank p holds the consecutive nodes ``[lo, hi)`` (one node per process, or a block), their data
shard, their rows of the parameter matrix and of the optimizer state. One iteration:

* sample the ``[m, b]`` batch positions of *all* nodes from the sampling seed (cheap) and keep
  this rank's rows, so every node sees exactly the simulator's batches (same for augmentation);
* per-node forward/backward and the fused SGD step on the local rows (same code as the simulator);
* the algorithm's communication with :class:`~gossiplab.engine.p2p.NeighbourMixer` as ``mix``:
  point-to-point exchanges with graph neighbours only, Q rounds, peers following W_r;
* an 8-byte all-reduce of the batch loss (bookkeeping: the mean loss the simulator reports, and
  the same divergence stop on every rank).

The algorithm places its models on the ranks (:meth:`~gossiplab.algorithms.Algorithm.placement`):
models of a node live with the node; a single model (centralized) is replicated and
data-parallel: every rank computes the gradient on its nodes' batches and the algorithm's
``net.average_`` (an all-reduce of :class:`~gossiplab.engine.exchange.DistributedNetwork`) forms
the gradient of the union batch, so every rank applies the same update.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from gossiplab.data.datasets import Dataset
from gossiplab.engine.base import TrainingEngine
from gossiplab.engine.batches import BatchSampler, NodeData
from gossiplab.engine.comm import Comm
from gossiplab.engine.exchange import DistributedNetwork
from gossiplab.engine.nodestack import all_finite
from gossiplab.engine.p2p import NeighbourMixer
from gossiplab.errors import ConfigError, Diverged
from gossiplab.metrics import Evaluator, scored_nodes
from gossiplab.setup import Setup


@dataclasses.dataclass
class LocalShard:
    """This rank's training data: the samples of nodes ``[lo, hi)`` only (``node_indices`` index
    into ``dataset``), plus every node's sample count (the sampler draws for all nodes)."""

    lo: int
    hi: int
    dataset: Dataset
    node_indices: list[np.ndarray]
    sizes: np.ndarray

    @classmethod
    def from_setup(cls, setup: Setup, lo: int, hi: int) -> LocalShard:
        ds, nodes = setup.dataset, setup.partition.nodes[lo:hi]
        flat = np.concatenate(nodes)
        idx = torch.as_tensor(flat, device=ds.x_train.device)
        shard = dataclasses.replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx],
                                    x_test=ds.x_test[:0], y_test=ds.y_test[:0])
        starts = np.cumsum([0] + [len(n) for n in nodes])
        local = [np.arange(starts[i], starts[i + 1]) for i in range(len(nodes))]
        return cls(lo=lo, hi=hi, dataset=shard, node_indices=local,
                   sizes=np.asarray(setup.partition.sizes))


class DistributedEngine(TrainingEngine):
    """Trains ``algorithm`` (default: the config's) with this rank's nodes; the training
    interface of :class:`~gossiplab.engine.simulator.Simulator` (``step``, ``lr``, ``iteration``,
    ``round``, ``state_dict``...), so :func:`~gossiplab.run.loop.train` drives both."""

    def __init__(self, setup: Setup, algorithm: str | None = None, *, comm: Comm, shard: LocalShard):
        self.comm = comm
        self.shard = shard
        self._init_algorithm(setup, algorithm)
        cfg, m = setup.cfg, setup.cfg.topology.nodes
        self.model_lo, self.model_hi, self.replicated = self.algorithm.placement(shard.lo, shard.hi)
        self.nodes = m
        self._init_training(shard.dataset, self.model_hi - self.model_lo)
        self.data = NodeData(shard.dataset, shard.node_indices, augment=setup.augment,
                             device=self.device)
        self.sampler = BatchSampler(shard.sizes, cfg.optim.batch_size, mode=cfg.data.sampling,
                                    seed=cfg.seeds.sampling)
        self.mixer = NeighbourMixer(setup.topology, comm)
        share = (shard.hi - shard.lo) / m if self.replicated else None
        self.net = DistributedNetwork(self.mixer, comm, self.ledger, self.models_per_replica, share)

    @property
    def rank(self) -> int:
        return self.comm.rank

    def _local_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        positions = self.sampler.sample()
        aug = self.data.sample_augmentation(positions.numel(), self.sampler.generator)
        lo, hi = self.shard.lo, self.shard.hi
        pos = positions[lo:hi].to(self.device)
        if aug is not None:
            aug = aug.view(self.nodes, -1, aug.shape[-1])[lo:hi].reshape(-1, aug.shape[-1])
        return self.data.batch(pos, aug)

    def _batch_loss(self, losses: torch.Tensor) -> float:
        """The mean batch loss over all models (as the simulator reports it), by all-reduce."""
        what = f"iteration {self.iteration} (loss)"
        if self.replicated:  # one model: this rank's loss is on its share of the union batch
            share = (self.shard.hi - self.shard.lo) / self.nodes
            loss = float(self.comm.all_reduce(losses.double().sum().reshape(1) * share, what)[0])
        else:
            total = self.comm.all_reduce(losses.double().sum().reshape(1), what)
            loss = float(total[0]) / self.models_per_replica
        if not math.isfinite(loss):
            raise Diverged(self.iteration, "loss")
        return loss

    def replica_params(self, r: int = 0) -> torch.Tensor:
        """This rank's parameter rows (all of them for a replicated single model)."""
        return self.stack.params

    def check_finite(self) -> None:
        ok = torch.tensor([float(all_finite(self.stack.params))], device=self.device)
        self.comm.all_reduce(ok, f"iteration {self.iteration} (finite check)", op="min")
        if ok.item() < 1:
            raise Diverged(self.iteration, "parameters")

    # -- checkpointing ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "rank": self.comm.rank,
            "world_size": self.comm.world_size,
            "block": [self.shard.lo, self.shard.hi],
            "replicated": self.replicated,
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["world_size"], list(state["block"])) != (self.comm.world_size,
                                                          [self.shard.lo, self.shard.hi]):
            raise ConfigError(
                f"checkpoint of rank {state['rank']} was written by a run of {state['world_size']} "
                f"processes; resume with the same number of processes ({self.comm.world_size} now)")
        super().load_state_dict(state)


class DistributedEvaluator:
    """The simulator's metrics, computed across ranks.

    The averaged model and the consensus distance come from all-reduces; the rows of the scored
    nodes (at most ``eval.max_nodes``) travel to rank 0, the only rank holding evaluation data,
    which scores them with the simulator's :class:`Evaluator` and shares the record (JSON) with
    every rank. The other ranks wait for it with heartbeats, so a long evaluation on rank 0 never
    trips the timeout."""

    def __init__(self, comm: Comm, evaluator: Evaluator | None, max_nodes: int):
        if (comm.rank == 0) != (evaluator is not None):
            raise ValueError("rank 0, and only rank 0, evaluates")
        self.comm = comm
        self.evaluator = evaluator
        self.max_nodes = max_nodes

    def evaluate(self, engine: DistributedEngine) -> dict:
        record = None
        if engine.replicated:
            if self.evaluator is not None:
                record = self.evaluator.evaluate(engine)
        else:
            record = self._decentralized(engine)
        return self.comm.share(f"eval/{engine.name}", record)

    def _decentralized(self, engine: DistributedEngine) -> dict | None:
        comm, m = self.comm, engine.models_per_replica
        params = engine.stack.params
        lo, hi = engine.model_lo, engine.model_hi
        what = f"evaluation at iteration {engine.iteration}"
        total = comm.all_reduce(params.sum(0), what)
        mean = total / m
        dist2 = ((params - mean) ** 2).sum(1).double().sum().reshape(1)
        consensus = float(comm.all_reduce(dist2, what)[0]) / m
        ids = scored_nodes(m, self.max_nodes)
        mine = [i - lo for i in ids if lo <= i < hi]
        if comm.rank != 0:
            if mine:
                comm.exchange([(0, params[torch.as_tensor(mine, device=params.device)])], [], what)
            return None
        rows = torch.empty(len(ids), params.shape[1], dtype=params.dtype, device=params.device)
        recvs, at = [], 0
        for p in range(comm.world_size):
            plo, phi, _ = engine.algorithm.placement(*comm.block(p))
            n = sum(1 for i in ids if plo <= i < phi)
            if n and p != 0:
                recvs.append((p, rows[at:at + n]))
            elif n:
                rows[at:at + n] = params[torch.as_tensor(mine, device=params.device)]
            at += n
        comm.exchange([], recvs, what)
        assert self.evaluator is not None
        return self.evaluator.report(engine.stack, mean, rows, consensus)
