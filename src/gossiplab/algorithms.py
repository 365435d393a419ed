"""Training algorithms, chosen by name. An algorithm owns its state and its order.

The engine (simulator or distributed, through ``engine/base.py``) runs one iteration as::

    gradient      per-model forward/backward into ``grads`` (batches from :meth:`Algorithm.arrange`)
    rounds += algorithm.after_gradient(params, grads, net, iteration, round)
    update        the optimizer's step on ``params`` with ``grads`` (lr, momentum, weight decay)
    rounds += algorithm.communicate(params, net, iteration, round)

and nothing else: everything an algorithm adds happens in its two hooks, on tensors it is given.

The protocol (what an algorithm declares and receives):

* ``models()`` — models per replica (m for one model per node; 1 for a single shared model; any
  number, placed on the distributed engine's processes by :meth:`Algorithm.placement`).
* ``arrange(x, y)`` — node batches ``[R, nodes, b, ...]`` to per-model batches.
* ``buffers`` — names of the algorithm's own ``[rows, d]`` tensors (gradient trackers, error
  feedback, public copies...). :meth:`Algorithm.init_state` allocates them beside the parameters
  (same rows, device and dtype) in ``self.state``; :meth:`state_dict` / :meth:`load_state_dict`
  put them (and anything else an algorithm adds there) into the engine's checkpoint, so a resumed
  run continues bitwise.
* ``after_gradient(params, grads, net, iteration, round0) -> rounds`` — between gradient and
  update: may transform or replace ``grads`` in place (gradient tracking writes its tracker y).
* ``communicate(params, net, iteration, round0) -> rounds`` — after the update. Communication goes
  only through ``net`` (a :class:`Network`): ``net.mix(x, r)`` is one gossip round on this
  process's rows (W_r: time-varying topologies are indexed by the round counter), so every
  scheme runs on both engines; ``net.average_(x)`` sets every row to the exact average over its
  replica's models and ``net.mean_rows(x)`` returns that average (all-reduces in the distributed
  engine); ``net.sum_scalar(local)`` sums per-row values over all nodes (a consensus distance);
  ``net.mix_encoded(payload, decode, r)`` is a round that sends encoded rows (compressed
  gossip). ``net.ledger`` counts every round, message, byte and all-reduce. A hook decides per
  iteration whether to communicate and how many rounds (local steps, Q schedules), and returns
  the rounds it used (added to the engine's round counter).
* ``uses_gossip`` — whether the algorithm talks over the graph (its gossip scheme is built from
  ``algorithm.gossip`` / ``gossip_steps`` and the topology; setup and reports describe it);
  ``config_keys`` — the ``[algorithm]`` keys it reads beyond name, gossip and gossip_steps;
  ``compresses`` — whether ``algorithm.compressor`` applies.
* ``ignores(key, config)`` — config keys that cannot change the algorithm's run (sweeps normalise
  them away so that equal runs hash alike; reports drop them as axes): by default, another
  algorithm's ``[algorithm]`` keys, and for an algorithm that never gossips the topology too.

Adding an algorithm, even one with its own state, is a subclass registered in :data:`ALGORITHMS`
here; nothing in ``engine/`` changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gossiplab.accounting import CountedMix, Ledger
from gossiplab.compression import Compressor, build_compressor
from gossiplab.config import BASELINE  # noqa: F401  (the baseline's name; also imported from here)
from gossiplab.errors import ConfigError, unknown
from gossiplab.gossip import GossipScheme, Mix, build_gossip
from gossiplab.topology import Topology

Decode = Callable[[torch.Tensor], torch.Tensor]

GOSSIP_SECTIONS = ("topology", "algorithm")
"""Config sections that only matter to an algorithm that gossips (but for the keys below)."""
GOSSIP_FREE_KEEPS = frozenset({"topology.nodes", "algorithm.name", "algorithm.compare_centralized"})
COMMON_KEYS = frozenset({"name", "gossip", "gossip_steps", "compare_centralized"})
"""[algorithm] keys every algorithm reads; the others belong to the algorithms naming them."""


class Network:
    """How an algorithm reaches the other models: the communication of one engine. This base runs
    all rows in one process (the simulator): ``rows = replicas * models``, replicas communicate
    independently; the distributed engine's subclass (engine/exchange.py) uses point-to-point
    exchanges and all-reduces. Every operation is counted in ``ledger`` (per node: one
    replica's rows)."""

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


class Algorithm:
    """Base of the algorithms; subclasses override what they need (see the module docstring)."""

    name = "base"
    uses_gossip = True
    compresses = False
    config_keys: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    plain_gossip_only = ""  # why, for an algorithm that runs its own rounds of plain gossip

    def __init__(self, nodes: int, gossip: GossipScheme | None = None, settings: Any = None,
                 iterations: int = 1):
        if self.plain_gossip_only and gossip is not None and gossip.name != "plain":
            raise ConfigError(f"algorithm.name = '{self.name}' {self.plain_gossip_only}, so it "
                              f"needs algorithm.gossip = 'plain' (got '{gossip.name}')")
        self.nodes = nodes
        self.gossip = gossip
        self.settings = settings  # the config's [algorithm] section (None in bare tests)
        self.iterations = iterations  # T, for algorithms whose schedule depends on it
        self.state: dict[str, torch.Tensor] = {}

    # -- shape ------------------------------------------------------------------------------------

    def models(self) -> int:
        """Models per replica (default: one per node)."""
        return self.nodes

    def arrange(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node batches [R, m, b, ...] -> per-model batches [R * models, B, ...] (default: each
        node's model on its own batch)."""
        r, m, b = y.shape
        return x.reshape(r * m, b, *x.shape[3:]), y.reshape(r * m, b)

    def placement(self, lo: int, hi: int) -> tuple[int, int, bool]:
        """``(first, stop, replicated)``: the models a process holding nodes ``[lo, hi)`` trains.
        Default: ``c`` models per node (``models() = c * nodes``) split with the nodes, or one
        model replicated on every process (data-parallel: it sees the process's node batches)."""
        k, m = self.models(), self.nodes
        if k == 1:
            return 0, 1, True
        if k % m == 0:
            c = k // m
            return c * lo, c * hi, False
        raise ConfigError(f"algorithm '{self.name}': cannot place {k} models on {m} nodes; "
                          "override Algorithm.placement")

    # -- state ------------------------------------------------------------------------------------

    def init_state(self, params: torch.Tensor) -> None:
        """Allocate :attr:`buffers` (zeros, shaped, placed and typed like ``params``)."""
        self.state = {b: torch.zeros_like(params) for b in self.buffers}

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.state) - set(state)
        if missing:
            raise ValueError(f"algorithm state lacks {', '.join(sorted(missing))}")
        with torch.no_grad():
            for k, v in self.state.items():
                if tuple(state[k].shape) != tuple(v.shape):
                    raise ValueError(f"algorithm state '{k}' has shape {tuple(state[k].shape)}, "
                                     f"not {tuple(v.shape)}")
                v.copy_(state[k])

    # -- one iteration ----------------------------------------------------------------------------

    def after_gradient(self, params: torch.Tensor, grads: torch.Tensor, net: Network,
                       iteration: int, round0: int) -> int:
        """Between gradient and update; may change ``grads`` in place. Returns rounds used."""
        return 0

    def communicate(self, params: torch.Tensor, net: Network, iteration: int, round0: int) -> int:
        """After the update, in place on ``params``. Returns gossip rounds used."""
        return 0

    def _gossip(self, x: torch.Tensor, net: Network, round0: int,
                scheme: GossipScheme | None = None) -> int:
        """The gossip scheme's rounds on ``x`` in place; returns the rounds used."""
        scheme = scheme or self.gossip
        assert scheme is not None
        if scheme.rounds() == 0:
            return 0
        with torch.no_grad():
            scheme.apply_(x, net.mix, round0)
        return scheme.rounds()

    # -- configs ----------------------------------------------------------------------------------

    @classmethod
    def ignores(cls, key: str, config: dict[str, Any]) -> bool:
        """True when dotted config ``key`` cannot change this algorithm's run of ``config`` (a
        nested dict). An algorithm that never gossips ignores the topology and gossip keys."""
        if not cls.uses_gossip:
            return key.split(".", 1)[0] in GOSSIP_SECTIONS and key not in GOSSIP_FREE_KEEPS
        section, _, field = key.partition(".")
        return section == "algorithm" and field not in COMMON_KEYS and field not in cls.config_keys


class DSGDMGS(Algorithm):
    """DSGD with multiple gossip steps: x_k <- sum_l (W^Q)_kl (x_l - eta g_l(x_l)).

    Every node takes an SGD step on its own mini-batch, then Q gossip rounds. Q = 1 is DSGD,
    Q = 0 local SGD without communication.
    """

    name = "dsgd_mgs"

    def communicate(self, params: torch.Tensor, net: Network, iteration: int, round0: int) -> int:
        return self._gossip(params, net, round0)

    @classmethod
    def ignores(cls, key: str, config: dict[str, Any]) -> bool:
        """Also, with Q = 0 (local SGD: nodes never talk), the topology (but its size) and the
        scheme."""
        steps = config.get("algorithm", {}).get("gossip_steps")
        if steps == 0 and ((key.startswith("topology.") and key != "topology.nodes")
                           or key == "algorithm.gossip"):
            return True
        return super().ignores(key, config)


class Centralized(Algorithm):
    """Centralized mini-batch SGD: one model, its batch the union of the m node batches.

    Sees exactly the samples DSGD-MGS sees in the same iteration (same sampling seed), so the two
    differ only in communication: its own is the exact average of the gradient before the update
    (nothing to do in the simulator, where the one model sees the whole union batch; an all-reduce
    of the processes' partial gradients in the distributed engine).
    """

    name = "centralized"
    uses_gossip = False

    def models(self) -> int:
        return 1

    def arrange(self, x, y):
        r, m, b = y.shape
        return x.reshape(r, m * b, *x.shape[3:]), y.reshape(r, m * b)

    def after_gradient(self, params, grads, net, iteration, round0):
        net.average_(grads)
        return 0


class GradientTracking(Algorithm):
    """Gradient tracking with Q gossip steps: every node tracks the average gradient in y.

    x_{t+1} = W^Q (x_t - eta y_t),  y_{t+1} = W^Q y_t + g_{t+1}(x_{t+1}) - g_t(x_t),  y_0 = g_0.

    The local step uses y instead of the node's own gradient, which removes the drift that
    heterogeneous data cause (with a constant step it converges to the exact minimiser of the
    average loss). x and y are mixed in the same rounds (one message of 2 d values per
    neighbour). Buffers: y (holding W^Q y_t between iterations) and the previous gradient.
    """

    name = "gradient_tracking"
    buffers = ("y", "g_prev")

    def after_gradient(self, params, grads, net, iteration, round0):
        y, g_prev = self.state["y"], self.state["g_prev"]
        y.add_(grads).sub_(g_prev)
        g_prev.copy_(grads)
        grads.copy_(y)
        return 0

    def communicate(self, params, net, iteration, round0):
        if self.gossip.rounds() == 0:
            return 0
        d = params.shape[1]
        both = torch.cat([params, self.state["y"]], dim=1)
        rounds = self._gossip(both, net, round0)
        params.copy_(both[:, :d])
        self.state["y"].copy_(both[:, d:])
        return rounds


class GossipPGA(Algorithm):
    """Gossip-PGA (Chen et al., ICML 2021): DSGD-MGS whose every H-th iteration replaces the
    gossip by an exact global average (an all-reduce). H = 1 is centralized mini-batch SGD."""

    name = "gossip_pga"
    config_keys = ("period",)

    def communicate(self, params, net, iteration, round0):
        if (iteration + 1) % self.settings.period == 0:
            with torch.no_grad():
                net.average_(params)
            return 0
        return self._gossip(params, net, round0)


class LocalSteps(Algorithm):
    """Local SGD: H local steps, then the Q gossip rounds (communication every H iterations;
    the opposite trade to more gossip). H = 1 is DSGD-MGS."""

    name = "local_steps"
    config_keys = ("period",)

    def communicate(self, params, net, iteration, round0):
        if (iteration + 1) % self.settings.period == 0:
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


class ScheduledQ(Algorithm):
    """DSGD-MGS with Q_t gossip rounds at iteration t (``algorithm.q_schedule``), with any gossip
    scheme (one scheme per distinct Q_t, built once)."""

    name = "q_schedule"
    config_keys = ("q_schedule", "q_early", "q_late", "q_switch")

    def __init__(self, nodes, gossip, options, iterations: int = 1):
        super().__init__(nodes, gossip, options, iterations)
        self.q_of_t = q_schedule(options, iterations)
        self._schemes: dict[int, GossipScheme] = {}

    def scheme(self, q: int) -> GossipScheme:
        if q not in self._schemes:
            self._schemes[q] = build_gossip(self.settings.gossip, self.gossip.topology, q)
        return self._schemes[q]

    def communicate(self, params, net, iteration, round0):
        return self._gossip(params, net, round0, self.scheme(self.q_of_t(iteration)))


class ConsensusQ(Algorithm):
    """Consensus-controlled gossip (Kong et al., ICML 2021): after the local step, plain gossip
    rounds until the consensus distance (1/m) sum_k ||x_k - xbar||^2 is at most
    ``consensus_target``, at most ``consensus_cap`` rounds. Gossip keeps xbar, so it is computed
    once per iteration (an all-reduce of d values); each check is a scalar all-reduce. The
    decision follows replica 0 (all replicas gossip the same rounds)."""

    name = "consensus_q"
    config_keys = ("consensus_target", "consensus_cap")

    plain_gossip_only = "decides round by round"

    def __init__(self, nodes, gossip, options, iterations: int = 1):
        super().__init__(nodes, gossip, options, iterations)
        self.last_rounds = 0

    def communicate(self, params, net, iteration, round0):
        target, cap = self.settings.consensus_target, self.settings.consensus_cap
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


class Choco(Algorithm):
    """CHOCO-SGD (Koloskova et al., ICML 2019), Q compressed consensus steps per iteration:

    x <- x - eta g;  then Q times:  c = C(x - x_hat);  x_hat <- x_hat + c;
    s <- s + W c;  x <- x + gamma (s - x_hat),

    where x_hat are the public copies every neighbour keeps (starting at 0) and s = W x_hat is
    kept incrementally, so only the compressed c travels (``mix_encoded``: its encoded bytes).
    With the identity compressor and gamma = 1 this is plain gossip. Static topologies only."""

    name = "choco"
    compresses = True
    config_keys = ("compressor", "compress_ratio", "consensus_step", "compress_seed")
    buffers = ("x_hat", "s")

    plain_gossip_only = "runs its own compressed consensus step"

    def __init__(self, nodes, gossip, options, iterations: int = 1):
        super().__init__(nodes, gossip, options, iterations)
        self.compressor: Compressor = build_compressor(options.compressor,
                                                       ratio=options.compress_ratio,
                                                       seed=options.compress_seed)
        self.gamma = options.consensus_step

    def communicate(self, params, net, iteration, round0):
        steps = self.gossip.steps
        xhat, s = self.state["x_hat"], self.state["s"]
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


ALGORITHMS: dict[str, type[Algorithm]] = {
    c.name: c for c in (DSGDMGS, Centralized, GradientTracking, GossipPGA, LocalSteps, ScheduledQ,
                        ConsensusQ, Choco)
}
"""Algorithms by name. Adding one is one subclass registered here (state, hooks, placement and
ignored config keys all live on the subclass)."""


def build_algorithm(name: str, nodes: int, topology: Topology | None = None,
                    settings: Any = None, iterations: int = 1) -> Algorithm:
    """The algorithm ``name`` for ``nodes`` nodes; its gossip scheme (if it gossips) is built from
    ``settings`` (the config's [algorithm] section) and ``topology``."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ConfigError(unknown("algorithm", name, ALGORITHMS, "algorithm.name")) from None
    gossip = None
    if cls.uses_gossip and topology is not None and settings is not None:
        gossip = build_gossip(settings.gossip, topology, settings.gossip_steps)
    return cls(nodes, gossip, settings, iterations)
