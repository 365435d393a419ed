import networkx as nx
import numpy as np
import pytest

from gossiplab.errors import TopologyError
from gossiplab.topology import (
    GRAPHS,
    build_topology,
    eigenvalues,
    read_edge_list,
    second_largest_modulus,
    validate_mixing_matrix,
)


@pytest.mark.parametrize("m", [3, 5, 8, 16, 33])
def test_ring_spectrum_matches_closed_form(m):
    topo = build_topology("ring", m)
    expected = np.sort(1 / 3 + 2 / 3 * np.cos(2 * np.pi * np.arange(m) / m))[::-1]
    np.testing.assert_allclose(eigenvalues(topo.w), expected, atol=1e-12)
    assert topo.lam == pytest.approx(max(abs(expected[1]), abs(expected[-1])))
    assert topo.gap == pytest.approx(1 - topo.lam)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("mixing", ["metropolis", "max_degree"])
def test_every_builtin_graph_gives_a_valid_w(name, mixing):
    topo = build_topology(name, 16, mixing=mixing, er_p=0.5)
    w = topo.w
    assert np.allclose(w, w.T)
    assert np.allclose(w.sum(1), 1)
    assert w.min() >= 0
    adj = nx.to_numpy_array(topo.graph) > 0
    assert not np.any((w > 0) & ~adj & ~np.eye(16, dtype=bool))
    assert 0 <= topo.lam < 1


def test_exponential_graph_links_powers_of_two():
    g = build_topology("exponential", 16).graph
    assert set(g.neighbors(0)) == {1, 2, 4, 8, 15, 14, 12}


def test_torus_and_grid_shapes():
    assert build_topology("torus", 16).graph.number_of_edges() == 32
    assert build_topology("grid", 16).graph.number_of_edges() == 24
    assert build_topology("torus", 12, shape=(3, 4)).graph.number_of_edges() == 24
    with pytest.raises(TopologyError, match="prime"):
        build_topology("torus", 13)


def test_laziness_and_mixing_rules():
    w = build_topology("ring", 8).w
    wl = build_topology("ring", 8, laziness=0.5).w
    np.testing.assert_allclose(wl, 0.5 * w + 0.5 * np.eye(8))
    wmd = build_topology("star", 5, mixing="max_degree").w
    assert wmd[1, 0] == pytest.approx(1 / 5)


def test_onepeer_exponential_is_a_perfect_matching_each_round_and_averages_in_log2m():
    topo = build_topology("exp_onepeer", 8)
    assert topo.time_varying and topo.period == 3
    prod = np.eye(8)
    for r in range(3):
        w = topo.matrix(r)
        assert np.count_nonzero(w - np.diag(np.diag(w))) == 8  # one peer each
        assert np.allclose(w, w.T) and np.allclose(w.sum(1), 1)
        prod = w @ prod
    np.testing.assert_allclose(prod, np.full((8, 8), 1 / 8), atol=1e-12)
    assert topo.contraction(3) == 0.0 and topo.contraction(1) == pytest.approx(1.0)
    assert not np.allclose(topo.matrix(0), topo.matrix(1))


def test_hypercube_needs_power_of_two():
    with pytest.raises(TopologyError, match="power-of-two"):
        build_topology("hypercube", 12)


def test_erdos_renyi_is_seeded_and_disconnected_is_an_error():
    a = build_topology("erdos_renyi", 20, er_p=0.4, seed=3)
    b = build_topology("erdos_renyi", 20, er_p=0.4, seed=3)
    assert np.array_equal(a.w, b.w)
    with pytest.raises(TopologyError, match="not connected"):
        build_topology("erdos_renyi", 30, er_p=0.01, seed=0)


def test_unknown_topology_suggests():
    with pytest.raises(TopologyError, match="did you mean 'ring'"):
        build_topology("rnig", 8)


# -- validation: each property fails with its own message ------------------------------------


def _ring_w(m=4):
    return build_topology("ring", m).w.copy()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda w: w[:, :3], "not square"),
        (lambda w: w + np.triu(np.full_like(w, 0.01), 1), "not symmetric"),
        (lambda w: w * 1.1, "not doubly stochastic"),
        (lambda w: w + _neg(w), "not non-negative"),
    ],
)
def test_validation_names_the_failing_property(mutate, message):
    with pytest.raises(TopologyError, match=message):
        validate_mixing_matrix(mutate(_ring_w()))


def _neg(w):
    d = np.zeros_like(w)
    d[0, 1] = d[1, 0] = -0.6
    d[0, 0] = d[1, 1] = 0.6
    return d


def test_validation_support_and_connectivity():
    g = nx.cycle_graph(4)
    w = np.full((4, 4), 0.25)
    with pytest.raises(TopologyError, match="not supported on the graph's edges"):
        validate_mixing_matrix(w, g)
    block = np.kron(np.eye(2), np.full((2, 2), 0.5))
    with pytest.raises(TopologyError, match="does not connect"):
        validate_mixing_matrix(block)
    with pytest.raises(TopologyError, match="wrong size"):
        validate_mixing_matrix(w, nodes=5)


def test_second_largest_modulus_uses_the_negative_end():
    # bipartite 2-node swap: eigenvalues 1 and -1 -> lambda = 1
    assert second_largest_modulus(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1.0)


def test_edge_list_file(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("# a square\n0 1\n1 2\n2 3\n3 0\n1 0\n")
    topo = build_topology("file", 4, edge_file=p)
    assert topo.edges == 4
    np.testing.assert_allclose(topo.w, build_topology("ring", 4).w)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 1\n1\n", "line 2: expected two node ids"),
        ("0 1\n1 x\n", "integers"),
        ("0 1\n1 1\n", "self-loop"),
        ("0 1\n2 3\n", "not connected"),
        ("", "no edges"),
        ("0 9\n", "line 1: node 9 but nodes = 4"),
        ("0 1\f# form feed\n1 2\n2 3\n3 9\n", "line 4: node 9"),  # \f does not end a line
    ],
)
def test_bad_edge_lists(tmp_path, text, message):
    p = tmp_path / "g.txt"
    p.write_text(text)
    with pytest.raises(TopologyError, match=message):
        build_topology("file", 4, edge_file=p)


def test_edge_list_with_a_byte_order_mark(tmp_path):
    """Windows editors start UTF-8 files with a BOM: it is not part of the first node id."""
    p = tmp_path / "g.txt"
    p.write_text("\ufeff0 1\r\n1 2\r\n2 3\r\n3 0\r\n", encoding="utf-8")
    np.testing.assert_allclose(build_topology("file", 4, edge_file=p).w, build_topology("ring", 4).w)


def test_user_matrix_file_validated(tmp_path):
    good = build_topology("ring", 6).w
    np.save(tmp_path / "w.npy", good)
    topo = build_topology("file", 6, matrix_file=tmp_path / "w.npy")
    np.testing.assert_allclose(topo.w, good)
    bad = good.copy()
    bad[0, 0] += 0.1
    np.savetxt(tmp_path / "bad.txt", bad)
    with pytest.raises(TopologyError, match="doubly stochastic"):
        build_topology("file", 6, matrix_file=tmp_path / "bad.txt")


def test_read_edge_list_explicit_node_count(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("0 1\n")
    assert read_edge_list(p, 2).number_of_nodes() == 2
