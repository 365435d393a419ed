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
  replica's models (an all-reduce in the distributed engine); ``net.all_reduce(t)`` sums a tensor
  over processes (identity in the simulator), for scalars such as a consensus distance. A hook
  decides per iteration whether to communicate and how many rounds (local steps, Q schedules),
  and returns the rounds it used (added to the engine's round counter).
* ``uses_gossip`` — whether the algorithm talks over the graph (its gossip scheme is built from
  ``algorithm.gossip`` / ``gossip_steps`` and the topology; setup and reports describe it).
* ``ignores(key, config)`` — config keys that cannot change the algorithm's run (sweeps normalise
  them away so that equal runs hash alike; reports drop them as axes).

Adding an algorithm, even one with its own state, is a subclass registered in :data:`ALGORITHMS`
here; nothing in ``engine/`` changes.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from gossiplab.errors import ConfigError, unknown
from gossiplab.gossip import GossipScheme, Mix, build_gossip
from gossiplab.topology import Topology

BASELINE = "centralized"
"""The algorithm every decentralized run is compared with (``algorithm.compare_centralized``)."""

GOSSIP_SECTIONS = ("topology", "algorithm")
"""Config sections that only matter to an algorithm that gossips (but for the keys below)."""
GOSSIP_FREE_KEEPS = frozenset({"topology.nodes", "algorithm.name", "algorithm.compare_centralized"})


class Network(Protocol):
    """How an algorithm reaches the other models; each engine provides one."""

    mix: Mix
    """One gossip round ``mix(x, r) -> W_r x`` on this process's rows (replicas mix apart)."""

    def average_(self, x: torch.Tensor) -> torch.Tensor:
        """In place: every row <- the average over all models of its replica (each model weighted
        by the nodes it stands for). The simulator computes it locally; the distributed engine
        with an all-reduce (a replicated single model: the data-parallel gradient sum)."""
        ...

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In place: ``t`` summed (or min/max) over processes; the simulator's is the identity."""
        ...


class Algorithm:
    """Base of the algorithms; subclasses override what they need (see the module docstring)."""

    name = "base"
    uses_gossip = True
    buffers: tuple[str, ...] = ()

    def __init__(self, nodes: int, gossip: GossipScheme | None = None, settings: Any = None):
        self.nodes = nodes
        self.gossip = gossip
        self.settings = settings  # the config's [algorithm] section (None in bare tests)
        self.state: dict[str, torch.Tensor] = {}

    # -- shape ------------------------------------------------------------------------------------

    def models(self) -> int:
        """Models per replica."""
        raise NotImplementedError

    def arrange(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node batches [R, m, b, ...] -> per-model batches [R * models, B, ...]."""
        raise NotImplementedError

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

    # -- configs ----------------------------------------------------------------------------------

    @classmethod
    def ignores(cls, key: str, config: dict[str, Any]) -> bool:
        """True when dotted config ``key`` cannot change this algorithm's run of ``config`` (a
        nested dict). An algorithm that never gossips ignores the topology and gossip keys."""
        if not cls.uses_gossip:
            return key.split(".", 1)[0] in GOSSIP_SECTIONS and key not in GOSSIP_FREE_KEEPS
        return False


class DSGDMGS(Algorithm):
    """DSGD with multiple gossip steps: x_k <- sum_l (W^Q)_kl (x_l - eta g_l(x_l)).

    Every node takes an SGD step on its own mini-batch, then Q gossip rounds. Q = 1 is DSGD,
    Q = 0 local SGD without communication.
    """

    name = "dsgd_mgs"

    def models(self) -> int:
        return self.nodes

    def arrange(self, x, y):
        r, m, b = y.shape
        return x.reshape(r * m, b, *x.shape[3:]), y.reshape(r * m, b)

    def communicate(self, params: torch.Tensor, net: Network, iteration: int, round0: int) -> int:
        assert self.gossip is not None
        if self.gossip.rounds() == 0:
            return 0
        with torch.no_grad():
            self.gossip.apply_(params, net.mix, round0)
        return self.gossip.rounds()

    @classmethod
    def ignores(cls, key: str, config: dict[str, Any]) -> bool:
        """With Q = 0 (local SGD: nodes never talk) the topology (but its size) and the scheme."""
        steps = config.get("algorithm", {}).get("gossip_steps")
        if steps == 0:
            return (key.startswith("topology.") and key != "topology.nodes") or key == "algorithm.gossip"
        return False


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


ALGORITHMS: dict[str, type[Algorithm]] = {"dsgd_mgs": DSGDMGS, "centralized": Centralized}
"""Algorithms by name. Adding one is one subclass registered here (state, hooks, placement and
ignored config keys all live on the subclass)."""


def build_algorithm(name: str, nodes: int, topology: Topology | None = None,
                    settings: Any = None) -> Algorithm:
    """The algorithm ``name`` for ``nodes`` nodes; its gossip scheme (if it gossips) is built from
    ``settings`` (the config's [algorithm] section) and ``topology``."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ConfigError(unknown("algorithm", name, ALGORITHMS, "algorithm.name")) from None
    gossip = None
    if cls.uses_gossip and topology is not None and settings is not None:
        gossip = build_gossip(settings.gossip, topology, settings.gossip_steps)
    return cls(nodes, gossip, settings)
