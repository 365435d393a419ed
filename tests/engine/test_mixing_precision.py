"""Float32 gossip keeps the node average without drift, and W^Q for huge Q is cheap."""

import time
import warnings

import numpy as np
import pytest
import torch

from gossiplab.config import load_config
from gossiplab.engine.mixing import MatrixMixer, exact_stochastic
from gossiplab.engine.p2p import exact_rows
from gossiplab.setup import GossipWarning, prepare, rounds_to_average
from gossiplab.topology import build_topology


def test_working_precision_w_is_exactly_doubly_stochastic():
    w = build_topology("ring", 16).w
    naive = torch.as_tensor(w, dtype=torch.float32).double().sum(0)
    assert (naive != 1).any()  # the cast alone: columns sum to 1 + O(3e-8)
    q = exact_stochastic(w, torch.float32)
    t = torch.as_tensor(q, dtype=torch.float32)
    assert torch.equal(t.double(), torch.as_tensor(q))  # every entry exact in float32
    assert (t.double().sum(0) == 1).all() and (t.double().sum(1) == 1).all()
    off = ~np.eye(16, dtype=bool)
    assert np.abs(q - w)[off].max() <= 2.0 ** -25  # rounded to the nearest multiple of 2^-24
    assert np.abs(np.diag(q - w)).max() <= 2 * 2.0 ** -25  # a ring node has two neighbours
    assert np.array_equal(exact_rows(w[3:7][:, list(range(3, 7)) + [0, 1, 2, *range(7, 16)]],
                                     torch.float32)[:, :4], q[3:7, 3:7])


def _mixing_drift(mixer: MatrixMixer, rounds: int) -> float:
    """Change of the node average caused by the gossip rounds alone, summed over ``rounds``
    rounds of x <- W x + noise (the noise, like SGD steps, keeps the nodes apart), relative to
    the average's size."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g) + 3.0
    total = torch.zeros(8, dtype=torch.float64)
    for r in range(rounds):
        y = mixer(x, r)
        total += y.double().mean(0) - x.double().mean(0)
        x = y + 0.1 * torch.randn(16, 8, generator=g)
    return float((total / 3.0).abs().max())


def test_average_kept_over_many_unfused_rounds():
    """24,000 unfused float32 rounds on a metropolis ring: what gossip does to the average is
    rounding that averages out, not the old rounds' bias of about rounds * 3e-8 (1e-3 here; the
    test measures that too, so it can fail)."""
    topo = build_topology("ring", 16)
    rounds = 24_000
    drift = _mixing_drift(MatrixMixer(topo, fuse=False), rounds)

    class CastMixer(MatrixMixer):  # the old rounds: W cast entry by entry, plain product
        def _to_operator(self, w):
            return torch.as_tensor(w, dtype=self.dtype)

        def __call__(self, x, r):
            return self.operator(r) @ x

    cast = _mixing_drift(CastMixer(topo, fuse=False), rounds)
    assert cast > 1e-4, cast
    assert drift < 2e-5 and drift < cast / 20, (drift, cast)


@pytest.mark.parametrize("name, round0", [("ring", 0), ("torus", 3), ("exp_onepeer", 5)])
def test_repeated_squaring_equals_round_by_round(name, round0):
    topo = build_topology(name, 16)
    mixer = MatrixMixer(topo, dtype=torch.float64)
    steps = 37
    seq = np.eye(16)
    for q in range(steps):
        seq = topo.matrix(round0 + q) @ seq
    assert np.allclose(mixer.product(round0, steps), seq, atol=1e-13)


def test_a_million_rounds_is_cheap_and_warned(tmp_path):
    mixer = MatrixMixer(build_topology("ring", 16))
    t0 = time.perf_counter()
    p = mixer.product(0, 1_000_000)
    assert time.perf_counter() - t0 < 30  # ~20 products, not 10^6 (a loose bound on a busy machine)
    assert np.allclose(p, np.full((16, 16), 1 / 16), atol=1e-12)
    assert rounds_to_average(build_topology("ring", 16).lam) == pytest.approx(320, abs=2)
    cfg = load_config(None, ["algorithm.gossip_steps=1000000"])
    with pytest.warns(GossipWarning, match="far beyond the .* plain rounds"):
        prepare(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(load_config(None, ["algorithm.gossip_steps=64"]))  # a sensible Q: no warning


@pytest.mark.parametrize("sparse", [False, True])
def test_centred_product_is_w_times_x_per_replica_also_in_place(sparse):
    """The operator form the mixer makes (dense [W | 1], or sparse block-diagonal W) times each
    replica's block equals W x to float rounding, written in place too; dense per-replica
    operators (one W per replica, as stacked replicas use) as well."""
    from gossiplab.engine.mixing import centred_product

    topo = build_topology("torus", 16)
    mixer = MatrixMixer(topo, replicas=3, sparse=sparse)
    op = mixer.operator(0)
    assert op.is_sparse == sparse and (sparse or tuple(op.shape) == (16, 17))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, 40, generator=g, dtype=torch.float64).float() + 5.0
    w = torch.as_tensor(topo.matrix(0), dtype=torch.float64)
    want = torch.einsum("kl,rlj->rkj", w, x.double())
    got = centred_product(op, x.clone())
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)
    inplace = x.clone()
    centred_product(op, inplace, out=inplace)
    torch.testing.assert_close(inplace, got, rtol=0, atol=0)
    if not sparse:
        per = torch.stack([op, MatrixMixer(build_topology("ring", 16)).operator(0), op])
        got = centred_product(per, x.clone())
        ring = torch.as_tensor(build_topology("ring", 16).matrix(0), dtype=torch.float64)
        torch.testing.assert_close(got[1].double(), ring @ x[1].double(), rtol=0, atol=1e-5)
        torch.testing.assert_close(got[0], centred_product(op, x[:1].clone())[0], rtol=0, atol=0)
