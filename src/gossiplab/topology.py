"""Communication graphs, their mixing matrices W, validation of W, and spectral quantities.

The graph (who may talk to whom), the mixing rule (how much weight each neighbour gets) and the
algorithm (what is mixed, how often) are kept apart: this module knows nothing about training.
A :class:`Topology` hands out the mixing matrix for gossip round ``r``; static graphs return the
same W every round, time-varying ones a new W per round.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from gossiplab.errors import TopologyError, UserError, unknown
from gossiplab.fileio import MIB, read_bytes, read_text

# Tolerance for the floating-point checks on W (symmetry, row sums).
ATOL = 1e-8


# --------------------------------------------------------------------------------------------
# Graph generators: name -> builder(m, **options) -> nx.Graph on nodes 0..m-1
# --------------------------------------------------------------------------------------------


def _relabel(g: nx.Graph) -> nx.Graph:
    return nx.convert_node_labels_to_integers(g, ordering="sorted")


def ring(m: int) -> nx.Graph:
    return nx.cycle_graph(m) if m >= 3 else nx.complete_graph(m)


def _grid_shape(m: int, shape: tuple[int, int] | None) -> tuple[int, int]:
    if shape is not None:
        if len(shape) != 2 or min(shape) < 1:
            raise TopologyError(f"topology.shape must be [rows, cols] with positive entries, got "
                                f"{list(shape)}")
        r, c = shape
        if r * c != m:
            raise TopologyError(f"topology.shape {list(shape)} has {r * c} cells but nodes = {m}")
        return r, c
    r = int(math.isqrt(m))
    while m % r:
        r -= 1
    if r == 1 and m > 3:
        raise TopologyError(
            f"cannot lay {m} nodes on a 2-D grid (prime count); choose a composite node count "
            "or set topology.shape = [rows, cols]"
        )
    return r, m // r


def torus(m: int, shape: tuple[int, int] | None = None) -> nx.Graph:
    r, c = _grid_shape(m, shape)
    # Wrap only dimensions longer than 2: a wrap of length 1 or 2 adds a self-loop or a duplicate.
    return _relabel(nx.grid_2d_graph(r, c, periodic=(r > 2, c > 2)))


def grid(m: int, shape: tuple[int, int] | None = None) -> nx.Graph:
    r, c = _grid_shape(m, shape)
    return _relabel(nx.grid_2d_graph(r, c))


def exponential(m: int) -> nx.Graph:
    """Static exponential graph: node i is linked to i +- 2^k (mod m) for every 2^k < m."""
    g = nx.empty_graph(m)
    k = 1
    while k < m:
        for i in range(m):
            j = (i + k) % m
            if j != i:
                g.add_edge(i, j)
        k *= 2
    return g


def _require_power_of_two(m: int, name: str) -> int:
    if m < 1 or m & (m - 1):
        raise TopologyError(f"topology '{name}' needs a power-of-two node count, got nodes = {m}")
    return m.bit_length() - 1


def hypercube(m: int) -> nx.Graph:
    dim = _require_power_of_two(m, "hypercube")
    return _relabel(nx.hypercube_graph(dim)) if dim > 0 else nx.empty_graph(1)


def complete(m: int) -> nx.Graph:
    return nx.complete_graph(m)


def star(m: int) -> nx.Graph:
    return nx.star_graph(m - 1) if m > 1 else nx.empty_graph(1)


def erdos_renyi(m: int, p: float = 0.3, seed: int = 0) -> nx.Graph:
    if not 0.0 < p <= 1.0:
        raise TopologyError(f"topology.er_p must be in (0, 1], got {p}")
    return nx.gnp_random_graph(m, p, seed=seed)


EDGE_FILE_LIMIT = 64 * MIB
MATRIX_FILE_LIMIT = 256 * MIB


def _read(path: Path, what: str, limit: int, expected: str) -> str:
    try:
        return read_text(path, what, limit, expected=expected)
    except UserError as e:
        raise TopologyError(str(e)) from None


def numbered_lines(text: str) -> enumerate[str]:
    """(line number, line) of a text file: lines end at "\n" only (``splitlines`` also ends
    them at \\v, \\f, \\x1c...: the numbers in messages were off), and a UTF-8 byte-order mark
    (Windows editors write one) is not part of the first line."""
    return enumerate(text.removeprefix("\ufeff").split("\n"), 1)


def read_edge_list(path: str | Path, nodes: int | None = None) -> nx.Graph:
    """Read an undirected edge list: one ``u v`` pair of 0-based node ids per line, ``#`` comments.

    Self-loops are rejected (the diagonal of W is implied by the mixing rule); repeated edges are
    merged. Every node 0..m-1 must appear in the graph (isolated nodes fail the connectivity check).
    """
    path = Path(path)
    text = _read(path, "edge list", EDGE_FILE_LIMIT, "'u v' pairs of node ids, one per line")
    edges: list[tuple[int, int]] = []
    # messages name the file, the line and what was expected, never the line's content (the
    # file may be anything: topology.edge_file=/etc/shadow must not print it)
    for lineno, raw in numbered_lines(text):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise TopologyError(
                f"edge list {path}, line {lineno}: expected two node ids 'u v', found "
                f"{len(parts)} fields"
            )
        try:
            u, v = int(parts[0]), int(parts[1])
        except ValueError:
            raise TopologyError(
                f"edge list {path}, line {lineno}: expected two node ids 'u v' (integers)"
            ) from None
        if u < 0 or v < 0:
            raise TopologyError(f"edge list {path}, line {lineno}: negative node id "
                                "(ids are 0-based)")
        if u == v:
            raise TopologyError(
                f"edge list {path}, line {lineno}: self-loop {u}-{v} is not allowed "
                "(self-weights come from the mixing rule)"
            )
        if nodes is not None and max(u, v) >= nodes:
            raise TopologyError(f"edge list {path}, line {lineno}: node {max(u, v)} but nodes = "
                                f"{nodes} (ids are 0..{nodes - 1})")
        edges.append((u, v))
    if not edges:
        raise TopologyError(f"edge list {path} contains no edges")
    top = max(max(e) for e in edges) + 1
    m = nodes if nodes is not None else top
    if top > m:
        raise TopologyError(f"edge list {path} mentions node {top - 1} but nodes = {m}")
    g = nx.empty_graph(m)
    g.add_edges_from(edges)
    return g


GRAPHS: dict[str, Callable[..., nx.Graph]] = {
    "ring": ring,
    "torus": torus,
    "grid": grid,
    "exponential": exponential,
    "hypercube": hypercube,
    "complete": complete,
    "star": star,
    "erdos_renyi": erdos_renyi,
}
"""Static graph generators by name. Adding one is one function here."""

TIME_VARYING = ("exp_onepeer",)
"""Time-varying topologies (a new mixing matrix per gossip round)."""

ALL_TOPOLOGIES = (*GRAPHS, *TIME_VARYING, "file")


# --------------------------------------------------------------------------------------------
# Mixing rules: graph -> symmetric doubly stochastic W supported on the graph's edges
# --------------------------------------------------------------------------------------------


def metropolis_hastings(g: nx.Graph) -> np.ndarray:
    """W_ij = 1 / (1 + max(d_i, d_j)) on edges, W_ii = 1 - sum_j W_ij (Xiao & Boyd, 2004)."""
    m = g.number_of_nodes()
    deg = np.array([g.degree(i) for i in range(m)], dtype=np.float64)
    w = np.zeros((m, m))
    for i, j in g.edges():
        if i != j:
            w[i, j] = w[j, i] = 1.0 / (1.0 + max(deg[i], deg[j]))
    w[np.diag_indices(m)] = 1.0 - w.sum(axis=1)
    return w


def max_degree(g: nx.Graph) -> np.ndarray:
    """Uniform weights W_ij = 1 / (1 + d_max) on edges, the rest on the diagonal."""
    m = g.number_of_nodes()
    dmax = max((d for _, d in g.degree()), default=0)
    w = np.zeros((m, m))
    for i, j in g.edges():
        if i != j:
            w[i, j] = w[j, i] = 1.0 / (1.0 + dmax)
    w[np.diag_indices(m)] = 1.0 - w.sum(axis=1)
    return w


MIXING_RULES: dict[str, Callable[[nx.Graph], np.ndarray]] = {
    "metropolis": metropolis_hastings,
    "max_degree": max_degree,
}


def lazy(w: np.ndarray, laziness: float) -> np.ndarray:
    """(1 - a) W + a I: keeps a fraction a of each node's own value (moves lambda_m away from -1)."""
    if not 0.0 <= laziness < 1.0:
        raise TopologyError(f"topology.laziness must be in [0, 1), got {laziness}")
    if laziness == 0.0:
        return w
    return (1.0 - laziness) * w + laziness * np.eye(w.shape[0])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_mixing_matrix(
    w: np.ndarray, graph: nx.Graph | None = None, *, nodes: int | None = None,
    atol: float = ATOL, what: str = "mixing matrix", require_connected: bool = True,
) -> np.ndarray:
    """Check every property DSGD's analysis needs; raise :class:`TopologyError` naming the first
    that fails and by how much. Returns W as a float64 array."""
    if np.iscomplexobj(w):
        raise TopologyError(f"{what} is not real-valued (complex entries)")
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):  # (numpy's message quotes the entry: never a file's contents)
        kind = getattr(getattr(w, "dtype", None), "name", type(w).__name__)
        raise TopologyError(f"{what} is not numeric (entries of type {kind})") from None
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise TopologyError(f"{what} is not square: shape {tuple(w.shape)}")
    m = w.shape[0]
    if m == 0:
        raise TopologyError(f"{what} is empty")
    if nodes is not None and m != nodes:
        raise TopologyError(f"{what} has wrong size: {m}x{m} but nodes = {nodes}")
    if not np.all(np.isfinite(w)):
        raise TopologyError(f"{what} has non-finite entries")
    if w.min() < -atol:
        i, j = np.unravel_index(np.argmin(w), w.shape)
        raise TopologyError(f"{what} is not non-negative: W[{i},{j}] = {w[i, j]:.6g}")
    asym = np.abs(w - w.T)
    if asym.max() > atol:
        i, j = np.unravel_index(np.argmax(asym), w.shape)
        raise TopologyError(
            f"{what} is not symmetric: |W[{i},{j}] - W[{j},{i}]| = {asym[i, j]:.3g}"
        )
    rows = np.abs(w.sum(axis=1) - 1.0)
    if rows.max() > atol * max(1, m):
        i = int(np.argmax(rows))
        raise TopologyError(
            f"{what} is not doubly stochastic: row {i} sums to {w[i].sum():.9g} "
            f"(off by {rows[i]:.3g})"
        )
    if graph is not None:
        if graph.number_of_nodes() != m:
            raise TopologyError(
                f"{what} has wrong size: {m}x{m} but the graph has {graph.number_of_nodes()} nodes"
            )
        adj = nx.to_numpy_array(graph, nodelist=range(m), weight=None) > 0
        off = (np.abs(w) > atol) & ~adj & ~np.eye(m, dtype=bool)
        if off.any():
            i, j = np.argwhere(off)[0]
            raise TopologyError(
                f"{what} is not supported on the graph's edges: W[{i},{j}] = {w[i, j]:.6g} "
                f"but {i}-{j} is not an edge"
            )
    if require_connected:
        support = nx.from_numpy_array((np.abs(w) > atol).astype(float))
        if graph is not None and not nx.is_connected(graph):
            raise TopologyError(f"graph is not connected: {describe_components(graph)}")
        if m > 1 and not nx.is_connected(support):
            raise TopologyError(
                f"{what} does not connect the nodes: its nonzero pattern has "
                f"{describe_components(support)}"
            )
    return w


def describe_components(g: nx.Graph) -> str:
    """'3 components (sizes 5, 2, 1; node 7 cannot reach node 0)': how far from connected."""
    comps = sorted(nx.connected_components(g), key=lambda c: (-len(c), min(c)))
    sizes = ", ".join(str(len(c)) for c in comps[:5]) + (", ..." if len(comps) > 5 else "")
    other = min(comps[1]) if len(comps) > 1 else None
    first = min(comps[0])
    reach = f"; node {other} cannot reach node {first}" if other is not None else ""
    return f"{len(comps)} components (sizes {sizes}{reach})"


def read_matrix(path: str | Path) -> np.ndarray:
    """Load a user mixing matrix from ``.npy`` or a whitespace/comma separated text file."""
    path = Path(path)
    if path.suffix == ".npy":
        data = read_bytes(path, "mixing matrix", MATRIX_FILE_LIMIT)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as e:
            why = ("it holds Python objects (a pickle), refused" if "allow_pickle" in str(e)
                   else "not a valid .npy array")
            raise TopologyError(f"cannot read mixing matrix {path}: {why}") from None
        except (OSError, EOFError):
            raise TopologyError(f"cannot read mixing matrix {path}: truncated or not a .npy "
                                "file") from None
    text = _read(path, "mixing matrix", MATRIX_FILE_LIMIT, "rows of numbers")
    rows = []
    for lineno, raw in numbered_lines(text):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rows.append([float(x) for x in line.replace(",", " ").split()])
        except ValueError:
            raise TopologyError(f"mixing matrix {path}, line {lineno}: expected numbers "
                                "separated by spaces or commas") from None
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise TopologyError(f"mixing matrix {path} is not a rectangular table of numbers")
    return np.array(rows)


# --------------------------------------------------------------------------------------------
# Spectral quantities
# --------------------------------------------------------------------------------------------


def eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of the symmetric W, descending."""
    return np.sort(np.linalg.eigvalsh(np.asarray(w, dtype=np.float64)))[::-1]


def second_largest_modulus(w: np.ndarray) -> float:
    """lambda = max(|lambda_2(W)|, |lambda_m(W)|): the per-step contraction of disagreement."""
    ev = eigenvalues(w)
    if len(ev) == 1:
        return 0.0
    return float(max(abs(ev[1]), abs(ev[-1])))


def spectral_gap(w: np.ndarray) -> float:
    return 1.0 - second_largest_modulus(w)


def contraction(lam: float, q: int) -> float:
    """Factor by which Q plain gossip steps shrink the distance to the average: lambda^Q."""
    return float(lam) ** q


# --------------------------------------------------------------------------------------------
# Topology objects
# --------------------------------------------------------------------------------------------


@dataclass
class Topology:
    """A validated communication topology: W for each gossip round and its spectral summary."""

    name: str
    nodes: int
    graph: nx.Graph
    w: np.ndarray
    mixing: str = "metropolis"
    time_varying: bool = False
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def period(self) -> int:
        """Number of rounds after which the sequence of W repeats (1 for a static graph)."""
        return 1

    def matrix(self, round_index: int = 0) -> np.ndarray:
        """Mixing matrix used in gossip round ``round_index`` (counted over the whole run)."""
        return self.w

    def neighbours(self, node: int, round_index: int = 0) -> list[int]:
        w = self.matrix(round_index)
        return [int(j) for j in np.flatnonzero(w[node]) if j != node]

    @property
    def edges(self) -> int:
        return self.graph.number_of_edges()

    @property
    def lam(self) -> float:
        """Per-round contraction of disagreement (for time-varying graphs: the geometric mean
        over one period of the product's second-largest modulus)."""
        return second_largest_modulus(self.w)

    @property
    def gap(self) -> float:
        return 1.0 - self.lam

    def summary(self, q_values: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict:
        degs = [d for _, d in self.graph.degree()]
        ev = eigenvalues(self.period_product()) if self.time_varying else eigenvalues(self.w)
        return {
            "name": self.name,
            "nodes": self.nodes,
            "edges": self.edges,
            "mixing": self.mixing,
            "time_varying": self.time_varying,
            "period": self.period,
            "degree": {"min": min(degs), "max": max(degs), "mean": float(np.mean(degs))},
            "lambda": self.lam,
            "spectral_gap": self.gap,
            "lambda_2": float(ev[1]) if len(ev) > 1 else 1.0,
            "lambda_min": float(ev[-1]),
            "contraction": {str(q): self.contraction(q) for q in q_values},
        }

    def contraction(self, q: int) -> float:
        """Worst-case factor by which q rounds shrink the distance to the average,
        ||W_{q-1} ... W_0 - J||_2 (= lambda^q for a static symmetric W)."""
        if not self.time_varying:
            return contraction(self.lam, q)
        m = self.nodes
        p = np.eye(m)
        for r in range(q):
            p = self.matrix(r) @ p
        val = float(np.linalg.norm(p - np.full((m, m), 1.0 / m), 2))
        return 0.0 if val < 1e-12 else val

    def period_product(self) -> np.ndarray:
        p = np.eye(self.nodes)
        for r in range(self.period):
            p = self.matrix(r) @ p
        return p


@dataclass
class OnePeerExponential(Topology):
    """Time-varying one-peer exponential graph: in round r node i averages with i XOR 2^(r mod
    log2 m), a perfect matching at distance 2^k. W_r = (I + P_r)/2; any log2(m) consecutive rounds
    multiply to the exact average (Ying et al., 2021, NeurIPS; symmetric hypercube variant)."""

    time_varying: bool = True

    @property
    def period(self) -> int:
        return max(1, self.nodes.bit_length() - 1)

    def matrix(self, round_index: int = 0) -> np.ndarray:
        if self.nodes == 1:
            return self.w
        k = round_index % self.period
        if k not in self._cache:
            m = self.nodes
            w = np.zeros((m, m))
            for i in range(m):
                j = i ^ (1 << k)
                w[i, i] = w[i, j] = 0.5
            self._cache[k] = w
        return self._cache[k]

    @property
    def edges(self) -> int:
        return self.nodes // 2

    @property
    def lam(self) -> float:
        rho = second_largest_modulus(self.period_product())
        return 0.0 if rho < 1e-12 else float(rho ** (1.0 / self.period))


def build_topology(
    name: str,
    nodes: int,
    *,
    mixing: str = "metropolis",
    laziness: float = 0.0,
    seed: int = 0,
    er_p: float = 0.3,
    shape: tuple[int, int] | None = None,
    edge_file: str | Path | None = None,
    matrix_file: str | Path | None = None,
) -> Topology:
    """Build and validate a topology by name (see :data:`ALL_TOPOLOGIES`)."""
    if nodes < 1:
        raise TopologyError(f"nodes must be >= 1, got {nodes}")
    if name == "exp_onepeer":
        _require_power_of_two(nodes, name)
        g = nx.empty_graph(nodes)
        for k in range(max(0, nodes.bit_length() - 1)):
            g.add_edges_from((i, i ^ (1 << k)) for i in range(nodes) if i < i ^ (1 << k))
        topo = OnePeerExponential(name=name, nodes=nodes, graph=g, w=np.eye(nodes), mixing="onepeer")
        for r in range(topo.period):
            validate_mixing_matrix(topo.matrix(r), what=f"round-{r} mixing matrix",
                                   require_connected=False)
        topo.w = topo.matrix(0)
        return topo

    if name == "file":
        if edge_file is None and matrix_file is None:
            raise TopologyError("topology 'file' needs topology.edge_file and/or topology.matrix_file")
        g = read_edge_list(edge_file, nodes) if edge_file is not None else None
        if matrix_file is not None:
            w = read_matrix(matrix_file)
            w = validate_mixing_matrix(w, g, nodes=nodes, what=f"mixing matrix {matrix_file}")
            if g is None:
                g = nx.from_numpy_array((np.abs(w) > ATOL).astype(float))
                g.remove_edges_from(nx.selfloop_edges(g))
            return Topology(name=name, nodes=w.shape[0], graph=g, w=w, mixing="file")
        assert g is not None
        if g.number_of_nodes() != nodes:
            raise TopologyError(f"edge list has {g.number_of_nodes()} nodes but nodes = {nodes}")
    elif name in GRAPHS:
        builder = GRAPHS[name]
        if name == "erdos_renyi":
            g = builder(nodes, p=er_p, seed=seed)
        elif name in ("torus", "grid"):
            g = builder(nodes, shape=tuple(shape) if shape else None)
        else:
            g = builder(nodes)
    else:
        raise TopologyError(unknown("topology", name, ALL_TOPOLOGIES))

    if nodes > 1 and not nx.is_connected(g):
        hint = " (raise topology.er_p or change topology.seed)" if name == "erdos_renyi" else ""
        where = f" {edge_file}" if name == "file" else ""
        raise TopologyError(
            f"graph '{name}'{where} with {nodes} nodes is not connected: "
            f"{describe_components(g)}{hint}"
        )
    if mixing not in MIXING_RULES:
        raise TopologyError(unknown("mixing rule", mixing, MIXING_RULES))
    w = lazy(MIXING_RULES[mixing](g), laziness)
    w = validate_mixing_matrix(w, g, what=f"{mixing} mixing matrix of '{name}'")
    return Topology(name=name, nodes=nodes, graph=g, w=w, mixing=mixing)


def draw(topology: Topology, path: str | Path) -> None:
    """Save a picture of the graph (circular layout for rings/exponential, spring otherwise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = topology.graph
    if topology.name in ("torus", "grid"):
        pos = nx.kamada_kawai_layout(g) if g.number_of_nodes() > 2 else nx.circular_layout(g)
    elif topology.name in ("ring", "exponential", "exp_onepeer", "complete"):
        pos = nx.circular_layout(g)
    else:
        pos = nx.spring_layout(g, seed=0)
    fig, ax = plt.subplots(figsize=(5, 5))
    nx.draw_networkx(g, pos, ax=ax, node_size=250, font_size=7, node_color="#4c72b0",
                     font_color="white", edge_color="#888888")
    ax.set_title(
        f"{topology.name}, m={topology.nodes}, lambda={topology.lam:.4f}, "
        f"gap={topology.gap:.4f}", fontsize=9,
    )
    ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
