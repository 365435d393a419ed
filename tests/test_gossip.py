"""Gossip as matrix algebra: Q steps = W^Q, averages preserved, consensus contracts by lambda."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gossiplab.engine.mixing import MatrixMixer
from gossiplab.gossip import PlainGossip, build_gossip
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
    from gossiplab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown gossip scheme"):
        build_gossip("nope", build_topology("ring", 4), 1)
