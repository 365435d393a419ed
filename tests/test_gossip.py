"""Gossip as matrix algebra: plain Q steps = W^Q; Chebyshev and exact (finite-time) schemes meet
their contraction bounds; every scheme preserves the average."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gossiplab.engine.mixing import MatrixMixer
from gossiplab.errors import ConfigError
from gossiplab.gossip import (
    FLOAT_EPS,
    SCHEMES,
    ChebyshevGossip,
    ExactGossip,
    PlainGossip,
    build_gossip,
    chebyshev_bound,
    compare_schemes,
    distinct_eigenvalues,
    exact_factors,
    leja_order,
)
from gossiplab.topology import build_topology

NAMES = ["ring", "torus", "exponential", "hypercube", "star", "complete", "grid"]


def consensus(x: torch.Tensor) -> float:
    return float(((x - x.mean(0)) ** 2).sum(1).mean())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("q", [0, 1, 3, 7])
def test_q_steps_equal_one_multiplication_by_w_power_q(name, q):
    topo = build_topology(name, 16)
    x = torch.randn(16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(q))
    out = PlainGossip(topo, q).apply(x, MatrixMixer(topo, dtype=torch.float64))
    wq = np.linalg.matrix_power(topo.w, q)
    np.testing.assert_allclose(out.numpy(), wq @ x.numpy(), atol=1e-12)


@pytest.mark.parametrize("sparse", [True, False])
def test_sparse_and_dense_mixers_agree(sparse):
    topo = build_topology("ring", 64)
    x = torch.randn(64, 7, dtype=torch.float64)
    ref = torch.as_tensor(topo.w) @ x
    out = MatrixMixer(topo, dtype=torch.float64, sparse=sparse)(x, 0)
    torch.testing.assert_close(out, ref)


def test_replicas_mix_independently():
    topo = build_topology("ring", 8)
    x = torch.randn(3 * 8, 4, dtype=torch.float64)
    for sparse in (True, False):
        out = MatrixMixer(topo, replicas=3, dtype=torch.float64, sparse=sparse)(x, 0)
        for r in range(3):
            torch.testing.assert_close(out[8 * r:8 * r + 8], torch.as_tensor(topo.w) @ x[8 * r:8 * r + 8])


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(NAMES + ["exp_onepeer"]),
    seed=st.integers(0, 10_000),
    steps=st.integers(1, 6),
)
def test_gossip_preserves_average_and_never_increases_consensus(name, seed, steps):
    topo = build_topology(name, 16)
    mixer = MatrixMixer(topo, dtype=torch.float64)
    x = torch.randn(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    lam = topo.lam
    for r in range(steps):
        y = mixer(x, r)
        torch.testing.assert_close(y.mean(0), x.mean(0))
        before, after = consensus(x), consensus(y)
        assert after <= before * (1 + 1e-12)
        if not topo.time_varying:
            # one step shrinks the consensus distance by at most lambda^2
            assert after <= lam**2 * before * (1 + 1e-9) + 1e-18
        x = y


def test_contraction_is_tight_for_the_slowest_eigenvector():
    topo = build_topology("ring", 12)
    vals, vecs = np.linalg.eigh(topo.w)
    i = int(np.argmax(np.where(np.isclose(vals, 1), -1, np.abs(vals))))
    x = torch.as_tensor(vecs[:, i:i + 1].copy())
    y = MatrixMixer(topo, dtype=torch.float64)(x, 0)
    assert consensus(y) == pytest.approx(topo.lam**2 * consensus(x), rel=1e-9)


def test_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown gossip scheme"):
        build_gossip("nope", build_topology("ring", 4), 1)


# ---------------------------------------------------------------------------------------------
# Chebyshev and exact (finite-time) gossip
# ---------------------------------------------------------------------------------------------



def disagreement(x: torch.Tensor) -> float:
    return float((x - x.mean(0)).norm())


def _random(m, cols=8, seed=0, dtype=torch.float64, offset=3.0):
    g = torch.Generator().manual_seed(seed)
    return offset + torch.randn(m, cols, dtype=torch.float64, generator=g).to(dtype)


@pytest.mark.parametrize("name, m", [("ring", 16), ("ring", 64), ("torus", 16), ("torus", 64),
                                     ("exponential", 16), ("exponential", 64)])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("q", [1, 2, 5, 12, 40])
def test_measured_contraction_of_a_random_disagreement_is_within_the_bound(name, m, scheme, q):
    topo = build_topology(name, m)
    s = build_gossip(scheme, topo, q)
    x = _random(m, seed=q)
    out = s.apply(x, MatrixMixer(topo, dtype=torch.float64))
    assert disagreement(out) <= s.bound() * disagreement(x) * (1 + 1e-9) + 1e-12 * x.norm()
    # the bound is the theory of each scheme
    if scheme == "plain":
        assert s.bound() == pytest.approx(topo.lam**q, rel=1e-12)
    elif scheme == "chebyshev" or not s.is_exact and s.mode == "chebyshev":
        lam = topo.lam
        rho = (1 - np.sqrt(1 - lam**2)) / lam
        assert s.bound() == pytest.approx(2 * rho**q / (1 + rho ** (2 * q)), rel=1e-9)
    else:
        assert s.bound() <= chebyshev_bound(topo.lam, q)
        if s.is_exact:
            assert s.bound() == 0.0 and disagreement(out) < 1e-10 * x.norm()


@pytest.mark.parametrize("name", ["ring", "torus", "exponential"])
@pytest.mark.parametrize("q", [3, 10])
def test_bounds_are_attained_by_the_slowest_eigenvector(name, q):
    """The bounds are the actual worst case, not loose: the eigenvector of the eigenvalue of
    largest modulus shrinks by exactly lambda^Q (plain) and 1 / T_Q(1 / lambda) (chebyshev)."""
    topo = build_topology(name, 16)
    vals, vecs = np.linalg.eigh(topo.w)
    i = int(np.argmax(np.where(np.isclose(vals, 1), -1, np.abs(vals))))
    x = torch.as_tensor(vecs[:, i:i + 1].copy())
    for scheme in ("plain", "chebyshev"):
        s = build_gossip(scheme, topo, q)
        out = s.apply(x, MatrixMixer(topo, dtype=torch.float64))
        assert disagreement(out) == pytest.approx(s.bound() * disagreement(x), rel=1e-9)
        assert s.contraction() == pytest.approx(s.bound(), rel=1e-9)
    assert chebyshev_bound(topo.lam, q) < topo.lam**q


@pytest.mark.parametrize("name, m", [("ring", 16), ("ring", 64), ("torus", 64), ("exponential", 32)])
@pytest.mark.parametrize("q", [1, 2, 7, 50, 3000])
def test_chebyshev_recurrence_equals_the_closed_form_polynomial_even_for_large_q(name, m, q):
    topo = build_topology(name, m)
    lam = topo.lam
    vals, vecs = np.linalg.eigh(topo.w)
    t = vals / lam
    inside = np.abs(t) <= 1 + 1e-9
    # T_Q(t) = cos(Q arccos t) on [-1, 1]; T_Q(1 / lambda) = cosh(Q arccosh(1 / lambda)), in logs
    log_tq = q * np.arccosh(1 / lam) + np.log1p(np.exp(-2 * q * np.arccosh(1 / lam))) - np.log(2)
    p = np.where(inside, np.cos(q * np.arccos(np.clip(t, -1, 1))) * np.exp(-log_tq), 1.0)
    x = _random(m, seed=1)
    ref = vecs @ (p[:, None] * (vecs.T @ x.numpy()))
    out = ChebyshevGossip(topo, q).apply(x, MatrixMixer(topo, dtype=torch.float64))
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-11)


def test_chebyshev_weights_are_bounded_and_one_round_is_plain():
    topo = build_topology("ring", 64)
    s = ChebyshevGossip(topo, 500)
    assert all(1 <= w <= 2 for w in s.weights)
    assert s.weights[-1] == pytest.approx(2 / (1 + np.sqrt(1 - topo.lam**2)))
    x = _random(64)
    mix = MatrixMixer(topo, dtype=torch.float64)
    torch.testing.assert_close(ChebyshevGossip(topo, 1).apply(x, mix), mix(x, 0))


# exact averaging -------------------------------------------------------------------------------

EXACT_GRAPHS = [("ring", 16), ("ring", 64), ("torus", 16), ("torus", 64), ("hypercube", 16),
                ("hypercube", 64), ("erdos_renyi", 16), ("erdos_renyi", 48)]


def _topo(name, m):
    return build_topology(name, m, er_p=0.4, seed=3)


@pytest.mark.parametrize("name, m", EXACT_GRAPHS)
def test_exact_with_k_minus_1_rounds_returns_the_average_in_float64(name, m):
    topo = _topo(name, m)
    s = ExactGossip(topo, len(exact_factors(topo.w)))
    assert s.is_exact
    for seed in range(3):
        x = _random(m, cols=20, seed=seed)
        out = s.apply(x, MatrixMixer(topo, dtype=torch.float64))
        assert (out - x.mean(0)).abs().max() < 1e-10


@pytest.mark.parametrize("name, m", EXACT_GRAPHS)
def test_exact_in_float32_is_accurate_to_float32_rounding(name, m):
    """Error <= 2 kappa u ||x|| (u = 2^-24), kappa the rounding amplification the scheme reports;
    for the 16-node graphs kappa < 100, i.e. the average to within ~1e-5 relative."""
    topo = _topo(name, m)
    s = ExactGossip(topo, 10_000)
    kappa = s.error_amplification()
    if m == 16:
        assert kappa < 100
    for seed in range(3):
        x = _random(m, cols=50, seed=seed, dtype=torch.float32)
        out = s.apply(x, MatrixMixer(topo, dtype=torch.float32))
        assert out.dtype == torch.float32
        err = (out.double() - x.double().mean(0)).norm(dim=0)
        assert (err <= 2 * kappa * FLOAT_EPS[torch.float32] * x.double().norm(dim=0)).all()


@pytest.mark.parametrize("name, m, k", [("ring", 16, 9), ("ring", 15, 8), ("torus", 16, 5),
                                        ("hypercube", 16, 5), ("hypercube", 64, 7),
                                        ("complete", 8, 2), ("star", 6, 3)])
def test_distinct_eigenvalues_are_clustered(name, m, k):
    topo = build_topology(name, m)
    d = distinct_eigenvalues(topo.w)
    assert len(d) == k and d[0] == pytest.approx(1.0)
    assert len(exact_factors(topo.w)) == k - 1
    assert ExactGossip(topo, 100).rounds() == k - 1


def test_exact_skips_rounds_beyond_k_minus_1():
    topo = build_topology("ring", 8)  # 5 distinct eigenvalues -> 4 rounds
    calls = []

    def mix(x, r):
        calls.append(r)
        return torch.as_tensor(topo.w) @ x

    s = ExactGossip(topo, 10)
    x = _random(8)
    out = s.apply(x, mix, round0=7)
    assert s.rounds() == 4 and calls == [7, 8, 9, 10]
    torch.testing.assert_close(out, x.mean(0).expand_as(x))
    assert s.describe()["mode"] == "exact" and s.describe()["rounds"] == 4


def test_exact_below_k_minus_1_runs_the_better_of_leja_prefix_and_chebyshev():
    ring = build_topology("ring", 64)
    s = ExactGossip(ring, 8)
    assert s.mode == "chebyshev" and s.bound() == pytest.approx(chebyshev_bound(ring.lam, 8))
    er = build_topology("erdos_renyi", 32)
    s = ExactGossip(er, 8)
    assert s.mode == "leja_prefix" and s.bound() < chebyshev_bound(er.lam, 8)
    assert s.rounds() == 8
    x = _random(32)
    out = s.apply(x, MatrixMixer(er, dtype=torch.float64))
    assert disagreement(out) <= s.bound() * disagreement(x) * (1 + 1e-9)
    assert s.contraction() == pytest.approx(s.bound(), rel=1e-9)


def test_leja_order_is_a_permutation_that_maximises_the_distance_product():
    pts = np.array([0.3, 1.7, 0.05, 1.2, 0.9, 1.95, 0.6])
    order = leja_order(pts)
    assert sorted(order) == sorted(pts) and order[0] == 1.95
    for k in range(1, len(order)):
        rest = order[k:]
        prods = [np.prod(np.abs(order[:k] - z)) for z in rest]
        assert order[k] == rest[int(np.argmax(prods))]


def test_leja_order_is_what_keeps_a_long_product_exact():
    """On a 128-ring (64 factors) the Leja order averages to 1e-10; ascending order does not."""
    topo = build_topology("ring", 128)
    s = ExactGossip(topo, 1000)
    mix = MatrixMixer(topo, dtype=torch.float64)
    x = _random(128)
    assert (s.apply(x, mix) - x.mean(0)).abs().max() < 1e-10
    y = x
    for mu in np.sort(s.factors):
        y = (mix(y, 0) - mu * y) / (1 - mu)
    assert (y - x.mean(0)).abs().max() > 1e-6


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["ring", "torus", "exponential", "hypercube", "star", "grid", "erdos_renyi"]),
    scheme=st.sampled_from(sorted(SCHEMES)),
    steps=st.integers(0, 30),
    seed=st.integers(0, 10_000),
)
def test_every_scheme_preserves_the_node_average(name, scheme, steps, seed):
    topo = build_topology(name, 16, er_p=0.4)
    s = build_gossip(scheme, topo, steps)
    x = _random(16, cols=6, seed=seed)
    out = s.apply(x, MatrixMixer(topo, dtype=torch.float64))
    torch.testing.assert_close(out.mean(0), x.mean(0), rtol=0, atol=1e-12 * float(x.abs().max()))
    assert disagreement(out) <= disagreement(x) * (1 + 1e-9)


def test_plain_preserves_the_average_on_a_time_varying_topology():
    topo = build_topology("exp_onepeer", 16)
    x = _random(16)
    out = build_gossip("plain", topo, 4).apply(x, MatrixMixer(topo, dtype=torch.float64), round0=5)
    torch.testing.assert_close(out, x.mean(0).expand_as(x))


@pytest.mark.parametrize("scheme", ["chebyshev", "exact"])
def test_polynomial_schemes_refuse_time_varying_topologies(scheme):
    with pytest.raises(ConfigError, match=f"algorithm.gossip = '{scheme}' needs a static topology"):
        build_gossip(scheme, build_topology("exp_onepeer", 8), 3)


@pytest.mark.parametrize("name, m", [("ring", 16), ("torus", 64), ("erdos_renyi", 32)])
def test_rounds_to_tolerance_is_the_first_q_whose_contraction_meets_it(name, m):
    topo = build_topology(name, m)
    for cls in SCHEMES.values():
        for tol in (1e-3, 1e-6):
            n = cls.rounds_to(topo, tol)
            assert cls(topo, n).contraction() <= tol * (1 + 1e-9)
            assert cls(topo, n - 1).contraction() > tol
            assert cls(topo, n).bound() <= tol * (1 + 1e-9)


def test_compare_schemes_report():
    rep = compare_schemes(build_topology("ring", 16), [1, 4, 8, 20], [1e-3, 1e-6])
    assert set(rep) == set(SCHEMES)
    assert rep["exact"]["exact_rounds"] == 8 and rep["exact"]["distinct_eigenvalues"] == 9
    assert rep["exact"]["rounds"]["20"] == 8 and rep["exact"]["mode"]["4"] == "chebyshev"
    assert rep["exact"]["residual"] < 1e-12 and 0 < rep["exact"]["float32_error"] < 1e-4
    p, c, e = (rep[s]["rounds_to"]["1e-06"] for s in ("plain", "chebyshev", "exact"))
    assert e == 8 < c < p
    tv = compare_schemes(build_topology("exp_onepeer", 16), [1, 4], [1e-3])
    assert tv["plain"]["rounds_to"]["0.001"] == 4
    assert not tv["chebyshev"]["available"] and "static" in tv["exact"]["reason"]


def test_single_node_and_complete_graph_edge_cases():
    one = build_topology("ring", 1)
    for cls in SCHEMES.values():
        assert cls.rounds_to(one, 1e-6) == 0 and cls(one, 3).contraction() == 0.0
    assert ExactGossip(one, 3).rounds() == 0
    comp = build_topology("complete", 6)
    for cls in SCHEMES.values():
        assert cls.rounds_to(comp, 1e-6) == 1
        assert cls(comp, 1).contraction() < 1e-12
