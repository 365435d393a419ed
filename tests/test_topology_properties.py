"""Property-based: generated edge lists and mixing matrices (text and .npy), valid, slightly off and
garbage, go through the same path as topology.edge_file / topology.matrix_file. Each either builds a
topology whose W really is symmetric, doubly stochastic, non-negative and connected, or fails with
a TopologyError naming the file and the property; never another exception."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import networkx as nx
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gossiplab.errors import TopologyError
from gossiplab.topology import ATOL, build_topology, metropolis_hastings

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

PROPERTIES = ("not square", "wrong size", "non-finite", "not non-negative", "not symmetric",
              "not doubly stochastic", "not supported on the graph", "not connected",
              "does not connect", "not real-valued", "not numeric", "cannot read", "non-numeric",
              "not a rectangular", "expected two", "expected numbers", "negative node id", "self-loop",
              "contains no edges", "but nodes =", "not UTF-8", "edge list has", "is empty")


def check_valid(topo, nodes):
    w = topo.w
    assert w.shape == (nodes, nodes)
    assert np.all(np.isfinite(w)) and w.min() >= -ATOL
    assert np.abs(w - w.T).max() <= ATOL
    assert np.abs(w.sum(1) - 1).max() <= ATOL * max(1, nodes)
    if nodes > 1:
        assert nx.is_connected(nx.from_numpy_array((np.abs(w) > ATOL).astype(float)))


def check_error(e: TopologyError, path: Path):
    msg = str(e)
    assert "\n" not in msg and str(path) in msg, msg
    assert any(p in msg for p in PROPERTIES), msg
    event(next(p for p in PROPERTIES if p in msg))




@st.composite
def clean_edge_lists(draw):
    """Well-formed lists over 0..nodes-1 (connected or not): these exercise the graph checks."""
    nodes = draw(st.integers(2, 8))
    pairs = [f"{u} {v}" for u, v in itertools.combinations(range(nodes), 2)]
    return draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=20)), nodes

edge_line = st.one_of(
    st.tuples(st.integers(0, 7), st.integers(0, 7)).map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(st.integers(0, 7), st.integers(0, 7)).map(lambda t: f"{t[0]},{t[1]}  # c"),
    st.sampled_from(["", "# comment", "0 1 2", "a b", "0 -1", "3 3", "1.5 2", "0 99", "0"]),
    st.text(max_size=10),
)


@SETTINGS
@given(st.one_of(clean_edge_lists(),
                 st.tuples(st.lists(edge_line, max_size=14), st.integers(1, 8))))
def test_generated_edge_lists(lines_nodes):
    lines, nodes = lines_nodes
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.edges"
        path.write_text("\n".join(lines).replace("\r", ""), encoding="utf-8")
        try:
            topo = build_topology("file", nodes, edge_file=path)
        except TopologyError as e:
            check_error(e, path)
            return
        event("valid graph")
        check_valid(topo, nodes)


@st.composite
def matrices(draw):
    kind = draw(st.sampled_from(["valid", "perturbed", "asymmetric", "random", "shape"]))
    m = draw(st.integers(1, 6))
    if kind == "shape":
        shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
        return m, np.full(shape, 1.0 / max(1, shape[-1]))
    if kind == "random":
        vals = st.floats(allow_nan=True, allow_infinity=True, width=64)
        return m, np.array(draw(st.lists(st.lists(vals, min_size=m, max_size=m), min_size=m,
                                         max_size=m)), dtype=float).reshape(m, m)
    # metropolis W of a random connected (or not) graph
    edges = draw(st.lists(st.sampled_from(list(itertools.combinations(range(m), 2)) or [(0, 0)]),
                          max_size=12))
    g = nx.empty_graph(m)
    g.add_edges_from(e for e in edges if e[0] != e[1])
    w = metropolis_hastings(g)
    if kind == "valid":
        return m, w
    i, j = draw(st.integers(0, m - 1)), draw(st.integers(0, m - 1))
    delta = draw(st.sampled_from([1e-12, 1e-6, 1e-3, 0.1, -0.1, -1.0, 2.0]))
    w = w.copy()
    w[i, j] += delta
    if kind == "perturbed" and i != j:
        w[j, i] += delta  # symmetric change: breaks row sums (or sign), not symmetry
    return m, w


def _write(path: Path, w: np.ndarray, as_text: bool, fmt: str) -> None:
    if not as_text:
        np.save(path, w)
    elif w.ndim == 2:
        path.write_text("\n".join(" ".join(fmt.format(x) for x in row) for row in w))
    else:
        path.write_text(" ".join(fmt.format(x) for x in w.ravel()))


@SETTINGS
@given(matrices(), st.booleans(), st.sampled_from(["{!r}", "{:.17g}", "{:.4f}", "{}"]),
       st.integers(-1, 1))
def test_generated_mixing_matrices(mw, as_text, fmt, size_offset):
    m, w = mw
    nodes = max(1, m + size_offset)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("w.txt" if as_text else "w.npy")
        _write(path, w, as_text, fmt)
        try:
            topo = build_topology("file", nodes, matrix_file=path)
        except TopologyError as e:
            check_error(e, path)
            return
        event("valid matrix")
        check_valid(topo, nodes)


@SETTINGS
@given(matrices(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=10))
def test_matrix_and_edge_list_together(mw, edges):
    m, w = mw
    with tempfile.TemporaryDirectory() as d:
        wp, ep = Path(d) / "w.npy", Path(d) / "g.edges"
        np.save(wp, w)
        ep.write_text("\n".join(f"{u} {v}" for u, v in edges))
        try:
            topo = build_topology("file", m, matrix_file=wp, edge_file=ep)
        except TopologyError as e:
            msg = str(e)
            assert "\n" not in msg and any(p in msg for p in PROPERTIES), msg
            return
        check_valid(topo, m)
        adj = nx.to_numpy_array(topo.graph, nodelist=range(m)) > 0
        assert not ((np.abs(topo.w) > ATOL) & ~adj & ~np.eye(m, dtype=bool)).any()


def test_the_error_says_by_how_much():
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.npy"
        w = metropolis_hastings(nx.cycle_graph(5))
        w[2, 2] += 0.004
        np.save(p, w)
        try:
            build_topology("file", 5, matrix_file=p)
        except TopologyError as e:
            assert "row 2 sums to 1.004" in str(e) and "off by 0.004" in str(e)
        else:
            raise AssertionError("accepted a matrix whose row 2 sums to 1.004")
