"""The algorithms' :class:`~gossiplab.algorithms.Network` across processes.

``mix`` is the :class:`~gossiplab.engine.p2p.NeighbourMixer`; averages and scalar sums are
all-reduces of this rank's row sums; ``mix_encoded`` sends each encoded row (compressed gossip)
to the ranks whose nodes need it, following the mixer's round plan, and decodes on arrival, so
the bytes on the wire are the encoded bytes. Every payload handed to the network is also
counted here as measured (``p2p_bytes`` via the mixer, ``all_reduce_payload``), for comparison
with the ledger's accounting.
"""

from __future__ import annotations

import torch

from gossiplab.accounting import CountedMix, Ledger
from gossiplab.algorithms import Decode, Network
from gossiplab.engine.comm import Comm
from gossiplab.engine.p2p import NeighbourMixer


class DistributedNetwork(Network):
    """This rank's rows only (no replicas); ``nodes`` = the models over all ranks. ``share``: for a
    model replicated on every rank (data-parallel), the fraction of the nodes this rank holds,
    by which :meth:`average_` weighs its partial value (None for rows split over the ranks)."""

    def __init__(self, mixer: NeighbourMixer, comm: Comm, ledger: Ledger, nodes: int,
                 share: float | None = None):
        super().__init__(mixer, ledger, replicas=1)
        self.mixer = mixer
        self.comm = comm
        self.nodes = nodes
        self.share = share
        self.all_reduce_payload = 0  # bytes this rank handed to all-reduces (measured)
        self._recv: dict[tuple, torch.Tensor] = {}

    def all_reduce(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """A sum all-reduce whose payload is counted as measured."""
        self.all_reduce_payload += t.numel() * t.element_size()
        return self.comm.all_reduce(t, what)

    def average_(self, x: torch.Tensor) -> torch.Tensor:
        if self.share is None:
            return super().average_(x)
        # a replicated model: the node-weighted sum of the ranks' partial values (centralized's
        # gradient of the union batch)
        self.ledger.all_reduce(CountedMix.row_bytes(x))
        with torch.no_grad():
            x.mul_(self.share)
            self.all_reduce(x, "gradient all-reduce")
        return x

    def mean_rows(self, x: torch.Tensor) -> torch.Tensor:
        self.ledger.all_reduce(CountedMix.row_bytes(x))
        total = self.all_reduce(x.reshape(x.shape[0], -1).sum(0), "all-reduce (average)")
        return (total / self.nodes)[None]

    def sum_scalar(self, local: torch.Tensor) -> torch.Tensor:
        self.ledger.all_reduce(8)
        return self.all_reduce(local.double().sum().reshape(1), "all-reduce (scalar)")

    def mix_encoded(self, payload: torch.Tensor, decode: Decode, r: int) -> torch.Tensor:
        self.ledger.gossip_round(r, payload.shape[1] * payload.element_size())
        plan = self.mixer.plan(r)
        payload = payload.contiguous()
        key = (plan.received, payload.shape[1], payload.device)
        recv = self._recv.get(key)
        if recv is None:
            recv = self._recv[key] = torch.empty(plan.received, payload.shape[1],
                                                 dtype=payload.dtype, device=payload.device)
        sends = [(p, payload[torch.as_tensor(rows, device=payload.device)]) for p, rows in plan.sends]
        recvs = [(p, recv[off:off + n]) for p, off, n in plan.recvs]
        self.comm.exchange(sends, recvs, what=f"compressed gossip round {r}")
        self.mixer.calls += 1
        self.mixer.messages += len(sends)
        self.mixer.bytes_sent += sum(t.numel() * t.element_size() for _, t in sends)
        own = decode(payload)
        own_w, recv_w = plan.operators(own.dtype, own.device)
        out = own_w @ own
        if plan.received:
            out.addmm_(recv_w, decode(recv))
        return out
