"""One gossip round across processes: the distributed ``mix(x, r)``.

Rank p holds the rows of its nodes ``[lo, hi)``. For round r it sends to every rank that owns a
neighbour of one of its nodes (under W_r) the rows those neighbours need, as one contiguous buffer,
receives the rows it needs the same way (one ``batch_isend_irecv`` for the whole round), and
returns ``W_r[lo:hi, own] @ own rows + W_r[lo:hi, received] @ received rows``. Every gossip
scheme (plain, Chebyshev, finite-time...) sees only ``mix(x, r)`` and so runs unchanged on this
engine, whatever it mixes (several vectors per round: concatenated along the columns, as the
simulator's ``MatrixMixer`` expects).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from gossiplab.engine.comm import Comm
from gossiplab.topology import Topology


@dataclass
class RoundPlan:
    """Who sends what to whom in one round (identical for rounds with the same W)."""

    sends: list[tuple[int, np.ndarray]]  # (peer rank, local row indices it needs), by peer
    recvs: list[tuple[int, int, int]]  # (peer rank, offset in the received block, rows), by peer
    received: int  # total received rows
    weights: np.ndarray  # W_r[lo:hi, own nodes + received nodes]
    _torch: dict = field(default_factory=dict, repr=False)

    def operators(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_r[lo:hi, own], W_r[lo:hi, received]) as tensors."""
        key = (dtype, device)
        if key not in self._torch:
            w = torch.as_tensor(exact_rows(self.weights, dtype), dtype=dtype, device=device)
            k = w.shape[0]
            self._torch[key] = (w[:, :k].contiguous(), w[:, k:].contiguous())
        return self._torch[key]


def exact_rows(weights: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """This rank's rows of W (own nodes first, so node lo + i's own weight is column i) as
    :func:`~gossiplab.engine.mixing.exact_stochastic` makes them: entries exact in ``dtype`` and
    each row summing to exactly 1 (W is symmetric: the same as the simulator's columns), so the
    node average is kept without drift on this engine too."""
    u = float(torch.finfo(dtype).eps) / 2
    q = np.round(np.asarray(weights, dtype=np.float64) / u) * u
    own = np.arange(q.shape[0])
    q[own, own] = 0.0
    q[own, own] = 1.0 - q.sum(axis=1)
    return q


def plan_round(w: np.ndarray, comm: Comm) -> RoundPlan:
    lo, hi = comm.block()
    mine = w[lo:hi]
    recvs, cols, off = [], list(range(lo, hi)), 0
    sends = []
    for p in range(comm.world_size):
        if p == comm.rank:
            continue
        plo, phi = comm.block(p)
        need = [j for j in range(plo, phi) if np.any(mine[:, j] != 0)]  # p's nodes my nodes use
        if need:
            recvs.append((p, off, len(need)))
            cols += need
            off += len(need)
        give = np.flatnonzero(np.any(w[plo:phi, lo:hi] != 0, axis=0))  # my nodes p's nodes use
        if len(give):
            sends.append((p, give))
    return RoundPlan(sends=sends, recvs=recvs, received=off, weights=mine[:, cols])


class NeighbourMixer:
    """``mix(x, r)`` over processes. ``x``: this rank's rows ``[hi - lo, D]`` (any D and dtype;
    trailing dimensions are flattened). Counts what it sends."""

    def __init__(self, topology: Topology, comm: Comm):
        self.topology = topology
        self.comm = comm
        self._plans: dict[int, RoundPlan] = {}
        self._recv: dict[tuple, torch.Tensor] = {}  # receive buffers, reused (internal only)
        self.calls = 0
        self.bytes_sent = 0
        self.messages = 0

    def plan(self, r: int) -> RoundPlan:
        key = r % self.topology.period
        if key not in self._plans:
            self._plans[key] = plan_round(self.topology.matrix(r), self.comm)
        return self._plans[key]

    def __call__(self, x: torch.Tensor, r: int) -> torch.Tensor:
        plan = self.plan(r)
        k = x.shape[0]
        lo, hi = self.comm.block()
        if k != hi - lo:
            raise ValueError(f"mix: expected the {hi - lo} rows of this rank's nodes, got {k}")
        flat = x.reshape(k, -1)
        if not flat.is_contiguous():
            flat = flat.contiguous()
        key = (plan.received, flat.shape[1], flat.dtype, flat.device)
        recv = self._recv.get(key)
        if recv is None:
            recv = self._recv[key] = torch.empty(key[:2], dtype=flat.dtype, device=flat.device)
        sends = []
        for p, rows in plan.sends:
            a, b = int(rows[0]), int(rows[-1]) + 1
            buf = flat[a:b] if b - a == len(rows) else flat[torch.as_tensor(rows, device=flat.device)]
            sends.append((p, buf))
        recvs = [(p, recv[off:off + n]) for p, off, n in plan.recvs]
        self.comm.exchange(sends, recvs, what=f"gossip round {r}")
        self.calls += 1
        self.messages += len(sends)
        self.bytes_sent += sum(t.numel() * t.element_size() for _, t in sends)
        own, received = plan.operators(flat.dtype, flat.device)
        # c + W (x - c) with c this rank's mean row: W x in exact arithmetic (rows sum to 1), with
        # rounding errors the size of the nodes' disagreement (see mixing.centred_product)
        c = flat.mean(0, keepdim=True)
        out = own @ (flat - c)
        if plan.received:
            out.addmm_(received, recv - c)
        return out.add_(c).view(x.shape)
