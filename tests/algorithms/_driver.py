"""A minimal float64 engine for the algorithm tests: the order every engine follows (gradient,
``before_update``, SGD step, ``after_update``), with a gradient oracle instead of a model, so
each algorithm's recursion can be compared with its NumPy reference to ~1e-12."""

from __future__ import annotations

import numpy as np
import torch

from gossiplab.accounting import Ledger
from gossiplab.config import AlgorithmConfig
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.gossip import build_gossip
from gossiplab.more_algorithms import Network, build_stateful
from gossiplab.topology import build_topology


def options(**kw) -> AlgorithmConfig:
    return AlgorithmConfig(**kw)


def drive(name: str, opts: AlgorithmConfig, topology, grad, x0: np.ndarray, lr, T: int,
          *, ledger: Ledger | None = None) -> tuple[list[np.ndarray], object]:
    m = topology.nodes
    gossip = build_gossip(opts.gossip, topology, opts.gossip_steps)
    alg = build_stateful(name, m, gossip, opts, T)
    params = torch.tensor(x0, dtype=torch.float64)
    grads = torch.zeros_like(params)
    alg.allocate(params)
    ledger = ledger or Ledger(topology)
    net = Network(MatrixMixer(topology, dtype=torch.float64, fuse=False), ledger)
    rnd = 0
    out = [params.numpy().copy()]
    for t in range(T):
        grads.copy_(torch.as_tensor(grad(t, params.numpy().copy())))
        alg.before_update(params, grads, t, net)
        params.add_(grads, alpha=-lr(t))
        rnd += alg.after_update(params, t, net, rnd)
        out.append(params.numpy().copy())
    return out, alg


def ring(m: int):
    return build_topology("ring", m)
