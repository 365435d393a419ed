"""A minimal float64 engine for the algorithm tests: the order every engine follows (gradient,
``after_gradient``, SGD step, ``communicate``), with a gradient oracle instead of a model, so
each algorithm's recursion can be compared with its NumPy reference to ~1e-12."""

from __future__ import annotations

import numpy as np
import torch

from gossiplab.accounting import Ledger
from gossiplab.algorithms import Network, build_algorithm
from gossiplab.config import AlgorithmConfig
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.topology import build_topology


def options(**kw) -> AlgorithmConfig:
    return AlgorithmConfig(**kw)


def drive(name: str, opts: AlgorithmConfig, topology, grad, x0: np.ndarray, lr, T: int,
          *, ledger: Ledger | None = None) -> tuple[list[np.ndarray], object]:
    m = topology.nodes
    alg = build_algorithm(name, m, topology, opts, T)
    params = torch.tensor(x0, dtype=torch.float64)
    grads = torch.zeros_like(params)
    alg.init_state(params)
    ledger = ledger or Ledger(topology)
    net = Network(MatrixMixer(topology, dtype=torch.float64, fuse=False), ledger)
    rnd = 0
    out = [params.numpy().copy()]
    for t in range(T):
        grads.copy_(torch.as_tensor(grad(t, params.numpy().copy())))
        rnd += alg.after_gradient(params, grads, net, t, rnd)
        params.add_(grads, alpha=-lr(t))
        rnd += alg.communicate(params, net, t, rnd)
        out.append(params.numpy().copy())
    return out, alg


def ring(m: int):
    return build_topology("ring", m)
