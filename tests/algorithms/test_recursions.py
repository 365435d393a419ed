"""Each algorithm against an independent NumPy float64 implementation of its recursion (on
heterogeneous least squares and softmax regression, a few nodes and iterations), and the
properties that identify it: gradient tracking finds the exact minimiser with a constant step
(DSGD does not), Gossip-PGA with H = 1 is centralized SGD, local steps with H = 1 are DSGD-MGS,
CHOCO with the identity compressor is plain gossip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gossiplab.compression import RandomK
from gossiplab.topology import build_topology

from . import _reference as ref
from ._driver import drive, options, ring

M, D, N, T = 5, 4, 12, 25


def constant(c):
    return lambda t: c


@pytest.fixture(scope="module")
def lsq():
    return ref.least_squares(M, D, N, seed=1)


def softmax_problem(m=4, dim=3, classes=3, n=10, b=4, seed=2):
    """Stochastic softmax regression: node k's batch at iteration t is drawn from its own
    (label-skewed) samples by a fixed generator, identically for library and reference."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(m, n, dim))
    labels = np.stack([rng.choice(classes, size=n, p=np.roll([0.7, 0.2, 0.1], k)) for k in range(m)])
    picks = rng.integers(0, n, size=(100, m, b))

    def grad(t, x):
        return np.stack([ref.softmax_grad(x[k], feats[k, picks[t, k]], labels[k, picks[t, k]],
                                          classes) for k in range(m)])
    d = classes * dim + classes
    return grad, rng.normal(size=(m, d)) * 0.3


def close(got, want, tol=1e-10):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def x0(seed=0):
    return np.random.default_rng(seed).normal(size=(M, D))


@pytest.mark.parametrize("q", [1, 3])
def test_gradient_tracking_matches_reference(lsq, q):
    _, _, grad, _ = lsq
    got, _ = drive("gradient_tracking", options(gossip_steps=q), ring(M), grad, x0(), constant(0.05), T)
    close(got, ref.gradient_tracking(ring(M).w, grad, x0(), constant(0.05), T, q))


def test_gradient_tracking_matches_reference_stochastic_softmax():
    grad, start = softmax_problem()
    topo = ring(4)
    got, _ = drive("gradient_tracking", options(gossip_steps=2), topo, grad, start, constant(0.3), 30)
    close(got, ref.gradient_tracking(topo.w, grad, start, constant(0.3), 30, 2))


def test_gradient_tracking_reaches_exact_minimiser_dsgd_does_not(lsq):
    _, _, grad, xstar = lsq
    lr, steps = constant(0.05), 3000
    gt, _ = drive("gradient_tracking", options(gossip_steps=1), ring(M), grad, x0(), lr, steps)
    dsgd = ref.dsgd_mgs(ring(M).w, grad, x0(), lr, steps, 1)
    err_gt = np.abs(gt[-1] - xstar).max()
    err_dsgd = np.abs(dsgd[-1] - xstar).max()
    assert err_gt < 1e-8, err_gt
    assert err_dsgd > 1e-2, err_dsgd  # DSGD's fixed point is biased by the heterogeneity


@pytest.mark.parametrize("period,q", [(1, 1), (3, 2), (4, 1)])
def test_gossip_pga_matches_reference(lsq, period, q):
    _, _, grad, _ = lsq
    got, _ = drive("gossip_pga", options(gossip_steps=q, period=period), ring(M), grad, x0(),
                   constant(0.05), T)
    close(got, ref.gossip_pga(ring(M).w, grad, x0(), constant(0.05), T, q, period))


def test_gossip_pga_with_period_one_is_centralized_sgd(lsq):
    _, _, grad, _ = lsq
    start = np.repeat(x0()[:1], M, axis=0)  # all nodes start at the same point
    got, _ = drive("gossip_pga", options(period=1), ring(M), grad, start, constant(0.05), T)
    x = start[0].copy()
    for t in range(T):
        x = x - 0.05 * grad(t, np.repeat(x[None], M, axis=0)).mean(0)  # union-batch gradient
        np.testing.assert_allclose(got[t + 1], np.repeat(x[None], M, axis=0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("period,q", [(2, 1), (3, 2)])
def test_local_steps_match_reference(lsq, period, q):
    _, _, grad, _ = lsq
    got, _ = drive("local_steps", options(gossip_steps=q, period=period), ring(M), grad, x0(),
                   constant(0.05), T)
    close(got, ref.local_steps(ring(M).w, grad, x0(), constant(0.05), T, q, period))


def test_local_steps_with_period_one_are_dsgd_mgs(lsq):
    _, _, grad, _ = lsq
    got, _ = drive("local_steps", options(gossip_steps=2, period=1), ring(M), grad, x0(),
                   constant(0.05), T)
    close(got, ref.dsgd_mgs(ring(M).w, grad, x0(), constant(0.05), T, 2), tol=1e-13)


@pytest.mark.parametrize("kind,want", [
    ("constant", lambda t: 2),
    ("step", lambda t: 2 if t < 10 else 4),      # q_switch 0.4 * T = 10
    ("early", lambda t: 5 if t < 10 else 2),
    ("decreasing", lambda t: round(5 + (2 - 5) * t / (T - 1))),
])
def test_q_schedules_match_reference(lsq, kind, want):
    _, _, grad, _ = lsq
    opts = options(gossip_steps=2, q_schedule=kind, q_early=5, q_late=4, q_switch=0.4)
    got, alg = drive("q_schedule", opts, ring(M), grad, x0(), constant(0.05), T)
    assert [alg.q_of_t(t) for t in range(T)] == [want(t) for t in range(T)]
    close(got, ref.scheduled_q(ring(M).w, grad, x0(), constant(0.05), T, want))


def test_q_schedule_composes_with_chebyshev(lsq):
    """With the chebyshev scheme each Q_t runs Chebyshev's polynomial of degree Q_t."""
    from gossiplab.gossip import ChebyshevGossip

    _, _, grad, _ = lsq
    topo = ring(M)
    opts = options(gossip_steps=1, gossip="chebyshev", q_schedule="early", q_early=3, q_switch=0.4)
    got, _ = drive("q_schedule", opts, topo, grad, x0(), constant(0.05), T)
    w = torch.as_tensor(topo.w)
    x = torch.as_tensor(x0())
    for t in range(T):
        x = x - 0.05 * torch.as_tensor(grad(t, x.numpy()))
        x = ChebyshevGossip(topo, 3 if t < 10 else 1).apply(x, lambda v, r: w @ v)
    np.testing.assert_allclose(got[-1], x.numpy(), rtol=1e-12, atol=1e-12)


def test_consensus_control_matches_reference(lsq):
    _, _, grad, _ = lsq
    start = x0() * 5
    opts = options(consensus_target=0.05, consensus_cap=6)
    got, alg = drive("consensus_q", opts, ring(M), grad, start, constant(0.05), T)
    want, used = ref.consensus_controlled(ring(M).w, grad, start, constant(0.05), T, 0.05, 6)
    close(got, want)
    assert max(used) == 6 and min(used) < 6  # the cap and the target both decided somewhere


@pytest.mark.parametrize("compressor", ["top_k", "random_k", "quantize8"])
@pytest.mark.parametrize("q", [1, 2])
def test_choco_matches_reference(compressor, q):
    grad, start = softmax_problem()
    topo = ring(4)
    d = start.shape[1]
    opts = options(compressor=compressor, compress_ratio=0.4, consensus_step=0.6, gossip_steps=q,
                   compress_seed=3)
    got, _ = drive("choco", opts, topo, grad, start, constant(0.3), 20)
    rk = RandomK(ratio=0.4, seed=3)
    k = rk.kept(d)
    comp = {"top_k": lambda v, c: ref.top_k(v, k),
            "random_k": lambda v, c: ref.random_k(v, rk.indices(d, c, torch.device("cpu")).numpy()),
            "quantize8": lambda v, c: ref.quantize8(v)}[compressor]
    close(got, ref.choco_sgd(topo.w, grad, start, constant(0.3), 20, comp, 0.6, q), tol=1e-9)


def test_choco_with_identity_compressor_is_plain_gossip(lsq):
    _, _, grad, _ = lsq
    got, _ = drive("choco", options(compressor="identity", consensus_step=1.0), ring(M), grad,
                   x0(), constant(0.05), T)
    close(got, ref.dsgd_mgs(ring(M).w, grad, x0(), constant(0.05), T, 1), tol=1e-12)


def test_gradient_tracking_composes_with_exact_averaging(lsq):
    """With finite-time exact gossip every node holds the average of x and of y: GT is then
    centralized gradient descent on the average loss."""
    _, _, grad, _ = lsq
    topo = build_topology("ring", 6)
    k = len(__import__("gossiplab.gossip", fromlist=["x"]).exact_factors(topo.w))
    start = np.repeat(np.random.default_rng(0).normal(size=(1, D)), 6, axis=0)
    a, b, _, _ = ref.least_squares(6, D, N, seed=1)

    def grad6(t, x):
        return np.einsum("knd,kn->kd", a, np.einsum("knd,kd->kn", a, x) - b) / N
    got, _ = drive("gradient_tracking", options(gossip_steps=k, gossip="exact"), topo, grad6,
                   start, constant(0.05), 10)
    x = start[0]
    for t in range(10):
        x = x - 0.05 * grad6(t, np.repeat(x[None], 6, axis=0)).mean(0)
    np.testing.assert_allclose(got[-1], np.repeat(x[None], 6, axis=0), atol=1e-10)
