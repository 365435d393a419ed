"""Communication accounting and the network cost model: what a run sends and what that costs.

Every gossip round, compressed exchange and all-reduce an algorithm makes passes through
:class:`Ledger`, which counts per node (one node = one process, the deployment the accounting
describes): rounds, messages and bytes sent point-to-point (a node sends its row, or its encoded
row, once to each neighbour j != k with W_r[j, k] != 0) and all-reduce payloads. The distributed
engine sends exactly these point-to-point bytes when it runs one node per process (a test checks
it); with blocks of nodes per process, messages inside a block never leave the process.

All-reduces are priced as reduce-scatter + all-gather (recursive halving/doubling): each node
sends 2 (m - 1) / m of the payload in 2 ceil(log2 m) latency steps.

The cost model: modeled time = iterations x compute time + for every round (latency + the
busiest node's bytes / bandwidth) + every all-reduce's cost, for each configured network
(:class:`NetworkModel`, presets ``datacenter`` and ``wan`` from ``[network]`` in the config).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gossiplab.topology import Topology


@dataclass(frozen=True)
class NetworkModel:
    """One network: per-message latency (seconds) and per-link bandwidth (bytes per second)."""

    name: str
    latency: float
    bandwidth: float

    def round_seconds(self, max_bytes: float) -> float:
        """One gossip round: every node sends at once; the round ends with the busiest node."""
        return self.latency + max_bytes / self.bandwidth

    def all_reduce_seconds(self, nodes: int, payload: float) -> float:
        if nodes <= 1:
            return 0.0
        steps = 2 * math.ceil(math.log2(nodes))
        return steps * self.latency + 2 * (nodes - 1) / nodes * payload / self.bandwidth


def networks_from_config(net) -> list[NetworkModel]:
    """The cost model's networks from a ``[network]`` config section (:class:`NetworkConfig`)."""
    return [NetworkModel("datacenter", net.datacenter_latency, net.datacenter_bandwidth),
            NetworkModel("wan", net.wan_latency, net.wan_bandwidth)]


class Ledger:
    """Per-node communication counters of one run (cumulative), and its modeled time."""

    def __init__(self, topology: Topology, networks: list[NetworkModel] | None = None,
                 compute_seconds: float = 0.0, measured_compute: bool = False):
        self.topology = topology
        self.nodes = topology.nodes
        self.networks = list(networks or [])
        self.compute_seconds = compute_seconds
        self.measured_compute = measured_compute
        self._degree: dict[int, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        m = self.nodes
        self.rounds = 0
        self._messages = np.zeros(m, dtype=np.int64)
        self._p2p_bytes = np.zeros(m, dtype=np.int64)
        # rounds not yet added to the per-node arrays, by (W's index in the period, row bytes):
        # a round costs a few dict operations, the arrays are brought up to date when read
        self._pending: dict[tuple[int, int], int] = {}
        self._round_cost: dict[tuple[int, int], tuple[float, ...]] = {}
        self.all_reduces = 0
        self.all_reduce_payload = 0  # bytes handed to all-reduces, per node
        self.comm_seconds = {n.name: 0.0 for n in self.networks}
        self.measured_seconds = 0.0  # one node's measured compute time, summed over iterations

    def _flush(self) -> None:
        for (key, row_bytes), count in self._pending.items():
            deg = self._degree[key]
            self._messages += count * deg
            self._p2p_bytes += count * deg * row_bytes
        self._pending.clear()

    @property
    def messages(self) -> np.ndarray:
        """Messages sent per node so far."""
        self._flush()
        return self._messages

    @messages.setter
    def messages(self, value: np.ndarray) -> None:
        self._flush()
        self._messages = value

    @property
    def p2p_bytes(self) -> np.ndarray:
        """Point-to-point bytes sent per node so far."""
        self._flush()
        return self._p2p_bytes

    @p2p_bytes.setter
    def p2p_bytes(self, value: np.ndarray) -> None:
        self._flush()
        self._p2p_bytes = value

    def out_degree(self, r: int) -> np.ndarray:
        """Neighbours node k sends to in round r: j != k with W_r[j, k] != 0."""
        key = r % self.topology.period
        deg = self._degree.get(key)
        if deg is None:
            w = self.topology.matrix(r)
            nz = (w != 0) & ~np.eye(self.nodes, dtype=bool)
            deg = self._degree[key] = nz.sum(0).astype(np.int64)
        return deg

    def _cost(self, r: int, row_bytes: int) -> tuple[tuple[int, int], tuple[float, ...]]:
        key = (r % self.topology.period, int(row_bytes))
        cost = self._round_cost.get(key)
        if cost is None:
            sent = self.out_degree(r) * key[1]
            busiest = float(sent.max()) if len(sent) else 0.0
            cost = self._round_cost[key] = tuple(n.round_seconds(busiest) for n in self.networks)
        return key, cost

    def gossip_round(self, r: int, row_bytes: int) -> None:
        """One round in which every node sends ``row_bytes`` to each of its neighbours."""
        key, cost = self._cost(r, row_bytes)
        self.rounds += 1
        self._pending[key] = self._pending.get(key, 0) + 1
        for n, sec in zip(self.networks, cost, strict=True):
            self.comm_seconds[n.name] += sec

    def gossip_rounds(self, round0: int, steps: int, row_bytes: int) -> None:
        """``steps`` rounds from ``round0``: the same counts and the same modeled seconds, bit for
        bit, as ``steps`` calls of :meth:`gossip_round` (the seconds are added one round at a
        time), at a fraction of their cost for a fixed topology."""
        if self.topology.period != 1:
            for q in range(steps):
                self.gossip_round(round0 + q, row_bytes)
            return
        key, cost = self._cost(round0, row_bytes)
        self.rounds += steps
        self._pending[key] = self._pending.get(key, 0) + steps
        for n, sec in zip(self.networks, cost, strict=True):
            total = self.comm_seconds[n.name]
            for _ in range(steps):
                total += sec
            self.comm_seconds[n.name] = total

    def all_reduce(self, payload_bytes: int) -> None:
        """One all-reduce of ``payload_bytes`` per node."""
        self.all_reduces += 1
        self.all_reduce_payload += int(payload_bytes)
        for n in self.networks:
            self.comm_seconds[n.name] += n.all_reduce_seconds(self.nodes, payload_bytes)

    def all_reduce_bytes(self) -> float:
        """Bytes each node sends in all-reduces (reduce-scatter + all-gather)."""
        m = self.nodes
        return 2 * (m - 1) / m * self.all_reduce_payload if m > 1 else 0.0

    def record(self, iteration: int) -> dict:
        """Flat metrics for an evaluation record (cumulative, and per iteration so far)."""
        ar = self.all_reduce_bytes()
        total = self.p2p_bytes + ar
        it = max(iteration, 1)
        rec = {
            "comm_rounds": self.rounds,
            "comm_messages_per_node": float(self.messages.mean()),
            "comm_messages_max": int(self.messages.max()) if self.nodes else 0,
            "comm_bytes_per_node": float(total.mean()),
            "comm_bytes_max": float(total.max()) if self.nodes else 0.0,
            "comm_p2p_bytes_per_node": float(self.p2p_bytes.mean()),
            "comm_all_reduces": self.all_reduces,
            "comm_all_reduce_bytes_per_node": ar,
            "comm_rounds_per_iteration": self.rounds / it,
            "comm_bytes_per_node_per_iteration": float(total.mean()) / it,
            "comm_bytes_max_per_iteration": (float(total.max()) if self.nodes else 0.0) / it,
        }
        compute = self.measured_seconds if self.measured_compute else iteration * self.compute_seconds
        if self.measured_compute:  # (a timing: only recorded when asked for, never compared)
            rec["compute_seconds_measured"] = self.measured_seconds
        for name, sec in self.comm_seconds.items():
            rec[f"modeled_comm_seconds_{name}"] = sec
            rec[f"modeled_seconds_{name}"] = sec + compute
        return rec

    def add_compute(self, seconds: float) -> None:
        """One iteration's measured compute time of one node (gradient and update)."""
        self.measured_seconds += seconds

    def state_dict(self) -> dict:
        return {"rounds": self.rounds, "messages": self.messages.tolist(),
                "p2p_bytes": self.p2p_bytes.tolist(), "all_reduces": self.all_reduces,
                "all_reduce_payload": self.all_reduce_payload,
                "comm_seconds": dict(self.comm_seconds), "measured_seconds": self.measured_seconds}

    def load_state_dict(self, state: dict) -> None:
        messages = np.asarray(state["messages"], dtype=np.int64)
        p2p_bytes = np.asarray(state["p2p_bytes"], dtype=np.int64)
        if messages.shape != self.messages.shape or p2p_bytes.shape != self.p2p_bytes.shape:
            raise ValueError(f"ledger counts of shape {messages.shape}, not {self.messages.shape}")
        self.rounds = int(state["rounds"])
        self.messages, self.p2p_bytes = messages, p2p_bytes
        self.all_reduces = int(state["all_reduces"])
        self.all_reduce_payload = int(state["all_reduce_payload"])
        self.comm_seconds = {k: float(v) for k, v in state["comm_seconds"].items()}
        self.measured_seconds = float(state.get("measured_seconds", 0.0))


class CountedMix:
    """``mix(x, r)`` that records each round in a :class:`Ledger` (one row per node and replica:
    the bytes of one node are those of one row). Keeps the wrapped mixer's in-place fast path."""

    def __init__(self, mix: Callable[[torch.Tensor, int], torch.Tensor], ledger: Ledger):
        self.mix = mix
        self.ledger = ledger

    @staticmethod
    def row_bytes(x: torch.Tensor) -> int:
        return (x.numel() // max(x.shape[0], 1)) * x.element_size()

    def __call__(self, x: torch.Tensor, r: int) -> torch.Tensor:
        self.ledger.gossip_round(r, self.row_bytes(x))
        return self.mix(x, r)

    @property
    def rounds_(self):
        inner = getattr(self.mix, "rounds_", None)
        if inner is None:
            return None

        def rounds_(x: torch.Tensor, round0: int, steps: int) -> torch.Tensor:
            self.ledger.gossip_rounds(round0, steps, self.row_bytes(x))
            return inner(x, round0, steps)

        return rounds_
