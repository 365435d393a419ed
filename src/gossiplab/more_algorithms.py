"""Algorithms that buy the decentralization gap back by other means than more gossip rounds,
each owning its state and its order of update and communication:

* :class:`GradientTracking` (x <- W^Q (x - eta y), y <- W^Q y + g_new - g_old);
* :class:`GossipPGA`: DSGD-MGS with an exact average every H iterations (Chen et al. 2021);
* :class:`LocalSteps`: H local SGD steps between gossip phases;
* :class:`ScheduledQ`: Q_t by iteration (constant, step, decreasing, early);
* :class:`ConsensusQ`: gossip until the consensus distance is below a target (Kong et al. 2021);
* :class:`Choco`: compressed gossip with error feedback on public copies x_hat (Koloskova et
  al. 2019).

They see the network only through a :class:`Network` (``mix``, ``average_``, ``mean_rows``,
``sum_scalar``, ``mix_encoded``), which both engines implement and which records every byte in
a :class:`~gossiplab.accounting.Ledger`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gossiplab.accounting import CountedMix, Ledger
from gossiplab.compression import Compressor, build_compressor
from gossiplab.errors import ConfigError
from gossiplab.gossip import GossipScheme, Mix, build_gossip

Decode = Callable[[torch.Tensor], torch.Tensor]


class Network:
    """Communication of one engine, as the algorithms see it. This base runs all nodes in one
    process (the simulator): ``rows = replicas * m``, replicas communicate independently.
    Every operation is counted in ``ledger`` (per node: one replica's rows)."""

    def __init__(self, mix: Mix, ledger: Ledger, replicas: int = 1):
        self.ledger = ledger
        self.mix = CountedMix(mix, ledger)
        self.raw_mix = mix
        self.replicas = replicas

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(self.replicas, -1, *x.shape[1:])

    def mean_rows(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, D] -> [replicas, D]: the mean over all nodes (an all-reduce of D values)."""
        self.ledger.all_reduce(CountedMix.row_bytes(x))
        return self._split(x).mean(1)

    def average_(self, x: torch.Tensor) -> torch.Tensor:
        """In place: every row <- the mean of its replica's rows (an all-reduce)."""
        mean = self.mean_rows(x)
        self._split(x).copy_(mean[:, None].expand_as(self._split(x)))
        return x

    def sum_scalar(self, local: torch.Tensor) -> torch.Tensor:
        """Sum over all nodes of per-node float64 values ``local`` [rows] -> [replicas]."""
        self.ledger.all_reduce(8)
        return self._split(local.double()).sum(1)

    def mix_encoded(self, payload: torch.Tensor, decode: Decode, r: int) -> torch.Tensor:
        """W_r decode(payload): each node sends its encoded row (``payload`` [rows, e] uint8) to
        its neighbours, who decode it on arrival."""
        self.ledger.gossip_round(r, payload.shape[1] * payload.element_size())
        return self.raw_mix(decode(payload), r)


class StatefulAlgorithm:
    """One model per node, its own [rows, d] buffers, and two hooks:
    ``before_update`` (gradient in ``grads``, may rewrite it) and ``after_update``
    (communication; returns the gossip rounds used). ``state_dict`` holds every buffer."""

    name = "stateful"
    uses_gossip = True

    def __init__(self, nodes: int, gossip: GossipScheme, options):
        self.nodes = nodes
        self.gossip = gossip
        self.options = options
        self.buffers: dict[str, torch.Tensor] = {}

    def models(self) -> int:
        return self.nodes

    def arrange(self, x, y):
        r, m, b = y.shape
        return x.reshape(r * m, b, *x.shape[3:]), y.reshape(r * m, b)

    def allocate(self, params: torch.Tensor) -> None:
        """Buffers like ``params`` (the engine's rows, device and dtype)."""

    def before_update(self, params: torch.Tensor, grads: torch.Tensor, iteration: int,
                      net: Network) -> None:
        pass

    def after_update(self, params: torch.Tensor, iteration: int, net: Network, round0: int) -> int:
        raise NotImplementedError

    def _gossip(self, x: torch.Tensor, net: Network, round0: int,
                scheme: GossipScheme | None = None) -> int:
        scheme = scheme or self.gossip
        if scheme.rounds() == 0:
            return 0
        with torch.no_grad():
            scheme.apply_(x, net.mix, round0)
        return scheme.rounds()

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.buffers.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.buffers.items():
            v.copy_(state[k])


class GradientTracking(StatefulAlgorithm):
    """Gradient tracking with Q gossip steps: every node tracks the average gradient in y.

    x_{t+1} = W^Q (x_t - eta y_t),  y_{t+1} = W^Q y_t + g_{t+1}(x_{t+1}) - g_t(x_t),  y_0 = g_0.

    The local step uses y instead of the node's own gradient, which removes the drift that
    heterogeneous data cause (with a constant step it converges to the exact minimiser of the
    average loss). x and y are mixed in the same rounds (one message of 2 d values per
    neighbour). Buffers: y (holding W^Q y_t between iterations) and the previous gradient.
    """

    name = "gradient_tracking"

    def allocate(self, params):
        self.buffers = {"y": torch.zeros_like(params), "g_prev": torch.zeros_like(params)}

    def before_update(self, params, grads, iteration, net):
        y, g_prev = self.buffers["y"], self.buffers["g_prev"]
        y.add_(grads).sub_(g_prev)
        g_prev.copy_(grads)
        grads.copy_(y)

    def after_update(self, params, iteration, net, round0):
        if self.gossip.rounds() == 0:
            return 0
        d = params.shape[1]
        both = torch.cat([params, self.buffers["y"]], dim=1)
        rounds = self._gossip(both, net, round0)
        params.copy_(both[:, :d])
        self.buffers["y"].copy_(both[:, d:])
        return rounds


class GossipPGA(StatefulAlgorithm):
    """Gossip-PGA (Chen et al., ICML 2021): DSGD-MGS whose every H-th iteration replaces the
    gossip by an exact global average (an all-reduce). H = 1 is centralized mini-batch SGD."""

    name = "gossip_pga"

    def after_update(self, params, iteration, net, round0):
        if (iteration + 1) % self.options.period == 0:
            with torch.no_grad():
                net.average_(params)
            return 0
        return self._gossip(params, net, round0)


class LocalSteps(StatefulAlgorithm):
    """Local SGD: H local steps, then the Q gossip rounds (communication every H iterations;
    the opposite trade to more gossip). H = 1 is DSGD-MGS."""

    name = "local_steps"

    def after_update(self, params, iteration, net, round0):
        if (iteration + 1) % self.options.period == 0:
            return self._gossip(params, net, round0)
        return 0


def q_schedule(options, iterations: int) -> Callable[[int], int]:
    """Q_t of ``algorithm.q_schedule`` (see :class:`~gossiplab.config.AlgorithmConfig`)."""
    q, kind = options.gossip_steps, options.q_schedule
    switch = options.q_switch * iterations
    if kind == "constant":
        return lambda t: q
    if kind == "step":
        return lambda t: q if t < switch else options.q_late
    if kind == "early":
        return lambda t: options.q_early if t < switch else q
    if kind == "decreasing":
        q0 = options.q_early
        span = max(iterations - 1, 1)
        return lambda t: round(q0 + (q - q0) * min(t, span) / span)
    raise ConfigError(f"algorithm.q_schedule: unknown schedule '{kind}'")


class ScheduledQ(StatefulAlgorithm):
    """DSGD-MGS with Q_t gossip rounds at iteration t (``algorithm.q_schedule``), with any gossip
    scheme (one scheme per distinct Q_t, built once)."""

    name = "q_schedule"

    def __init__(self, nodes, gossip, options, iterations: int = 1):
        super().__init__(nodes, gossip, options)
        self.q_of_t = q_schedule(options, iterations)
        self._schemes: dict[int, GossipScheme] = {}

    def scheme(self, q: int) -> GossipScheme:
        if q not in self._schemes:
            self._schemes[q] = build_gossip(self.options.gossip, self.gossip.topology, q)
        return self._schemes[q]

    def after_update(self, params, iteration, net, round0):
        return self._gossip(params, net, round0, self.scheme(self.q_of_t(iteration)))


class ConsensusQ(StatefulAlgorithm):
    """Consensus-controlled gossip (Kong et al., ICML 2021): after the local step, plain gossip
    rounds until the consensus distance (1/m) sum_k ||x_k - xbar||^2 is at most
    ``consensus_target``, at most ``consensus_cap`` rounds. Gossip keeps xbar, so it is computed
    once per iteration (an all-reduce of d values); each check is a scalar all-reduce. The
    decision follows replica 0 (all replicas gossip the same rounds)."""

    name = "consensus_q"

    def __init__(self, nodes, gossip, options):
        if gossip.name != "plain":
            raise ConfigError("algorithm.name = 'consensus_q' decides round by round, so it needs "
                              f"algorithm.gossip = 'plain' (got '{gossip.name}')")
        super().__init__(nodes, gossip, options)
        self.last_rounds = 0

    def after_update(self, params, iteration, net, round0):
        target, cap = self.options.consensus_target, self.options.consensus_cap
        with torch.no_grad():
            mean = net.mean_rows(params)  # [replicas, d]
            q = 0
            while True:
                reps = params.view(mean.shape[0], -1, params.shape[1])
                local = ((reps - mean[:, None]) ** 2).sum(2).double().flatten()
                dist = float(net.sum_scalar(local)[0]) / self.nodes
                if q >= cap or dist <= target:
                    break
                params.copy_(net.mix(params, round0 + q))
                q += 1
        self.last_rounds = q
        return q


class Choco(StatefulAlgorithm):
    """CHOCO-SGD (Koloskova et al., ICML 2019), Q compressed consensus steps per iteration:

    x <- x - eta g;  then Q times:  c = C(x - x_hat);  x_hat <- x_hat + c;
    s <- s + W c;  x <- x + gamma (s - x_hat),

    where x_hat are the public copies every neighbour keeps (starting at 0) and s = W x_hat is
    kept incrementally, so only the compressed c travels (``mix_encoded``: its encoded bytes).
    With the identity compressor and gamma = 1 this is plain gossip. Static topologies only."""

    name = "choco"

    def __init__(self, nodes, gossip, options):
        if gossip.name != "plain":
            raise ConfigError("algorithm.name = 'choco' runs its own compressed consensus step; "
                              f"set algorithm.gossip = 'plain' (got '{gossip.name}')")
        super().__init__(nodes, gossip, options)
        self.compressor: Compressor = build_compressor(options.compressor,
                                                       ratio=options.compress_ratio,
                                                       seed=options.compress_seed)
        self.gamma = options.consensus_step

    def allocate(self, params):
        self.buffers = {"x_hat": torch.zeros_like(params), "s": torch.zeros_like(params)}

    def after_update(self, params, iteration, net, round0):
        steps = self.gossip.steps
        xhat, s = self.buffers["x_hat"], self.buffers["s"]
        d, dtype = params.shape[1], params.dtype
        with torch.no_grad():
            for k in range(steps):
                call = iteration * steps + k
                payload = self.compressor.encode(params - xhat, call)
                c = self.compressor.decode(payload, d, dtype, call)
                xhat.add_(c)
                s.add_(net.mix_encoded(payload, lambda p, call=call: self.compressor.decode(
                    p, d, dtype, call), round0 + k))
                params.add_(s - xhat, alpha=self.gamma)
        return steps


MORE_ALGORITHMS: dict[str, type[StatefulAlgorithm]] = {
    c.name: c for c in (GradientTracking, GossipPGA, LocalSteps, ScheduledQ, ConsensusQ, Choco)
}


def build_stateful(name: str, nodes: int, gossip: GossipScheme, options, iterations: int
                   ) -> StatefulAlgorithm:
    cls = MORE_ALGORITHMS[name]
    if cls is ScheduledQ:
        return ScheduledQ(nodes, gossip, options, iterations)
    return cls(nodes, gossip, options)


def check_period(period: int) -> None:
    if period < 1 or not math.isfinite(period):
        raise ConfigError(f"algorithm.period must be >= 1, got {period}")
