"""The fast paths give the same numbers as the plain ones: backends, in-place and fused gossip,
worker pool, malloc tuning."""

import pytest
import torch

from gossiplab.config import load_config
from gossiplab.engine.mixing import MatrixMixer
from gossiplab.engine.nodestack import (
    NodeStack,
    bmm_forward_backward,
    bmm_supported,
    choose_backend,
    loop_forward_backward,
    threads_forward_backward,
)
from gossiplab.engine.runtime import run_in_workers, single_threaded, tune_malloc
from gossiplab.engine.simulator import Simulator
from gossiplab.errors import ConfigError
from gossiplab.gossip import PlainGossip
from gossiplab.models import build_model
from gossiplab.setup import prepare
from gossiplab.topology import build_topology


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def stacks(model, n, **opts):
    torch.manual_seed(0)
    tmpl = build_model(model, (1, 8, 8), 10, **opts)
    a, b = NodeStack(tmpl, n), NodeStack(tmpl, n)
    a.params.add_(torch.randn_like(a.params) * 0.05)
    b.params.copy_(a.params)
    x = torch.randn(n, 6, 1, 8, 8)
    y = torch.randint(0, 10, (n, 6))
    return a, b, x, y


def test_threads_backend_equals_the_single_threaded_loop_bitwise(two_threads):
    a, b, x, y = stacks("cnn", 5, width=4)
    torch.set_num_threads(1)
    la = loop_forward_backward(a, x, y)
    torch.set_num_threads(2)
    lb = threads_forward_backward(b, x, y)
    assert torch.equal(la, lb)
    assert torch.equal(a.grads, b.grads)
    assert torch.get_num_threads() == 2  # the workers' one-thread setting stays in the workers


@pytest.mark.parametrize("model,opts", [("mlp", {"hidden": (16, 8)}), ("logreg", {})])
def test_bmm_backend_agrees_with_the_loop(model, opts):
    a, b, x, y = stacks(model, 4, **opts)
    b.grads.fill_(7.0)  # stale gradients must be overwritten, not accumulated
    la = loop_forward_backward(a, x, y)
    lb = bmm_forward_backward(b, x, y)
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.grads, b.grads, rtol=1e-4, atol=1e-6)


def test_bmm_direct_weight_gradients_equal_the_copied_ones_bitwise(monkeypatch):
    # a 256x64 layer (16,384 entries) takes the path that writes into the gradient matrix
    from gossiplab.engine import nodestack
    a, b, x, y = stacks("mlp", 4, hidden=(256,))
    assert a.template[1].weight.numel() >= nodestack.DIRECT_GRAD_MIN_ENTRIES
    b.grads.fill_(7.0)
    la = bmm_forward_backward(a, x, y)
    monkeypatch.setattr(nodestack, "DIRECT_GRAD_MIN_ENTRIES", 1 << 40)  # every product copied
    lb = bmm_forward_backward(b, x, y)
    assert torch.equal(la, lb)
    assert torch.equal(a.grads, b.grads)
    c, _, _, _ = stacks("mlp", 4, hidden=(256,))
    loop_forward_backward(c, x, y)
    torch.testing.assert_close(a.grads, c.grads, rtol=1e-4, atol=1e-6)


def test_bmm_is_refused_for_convolutions():
    assert not bmm_supported(build_model("cnn", (1, 8, 8), 10, width=4))
    cfg = load_config(None, ["model.name='cnn'", "model.width=4", "engine.backend='bmm'",
                             "topology.nodes=4", "optim.batch_size=8"])
    with pytest.raises(ConfigError, match="engine.backend = 'bmm'"):
        Simulator(prepare(cfg))


def test_auto_backend_choice(two_threads):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    mlp = build_model("mlp", (1, 8, 8), 10)
    cnn = build_model("cnn", (1, 8, 8), 10, width=4)
    assert choose_backend("auto", cpu, mlp) == "bmm"
    assert choose_backend("auto", gpu, mlp) == "bmm"
    assert choose_backend("auto", gpu, cnn) == "vmap"
    assert choose_backend("auto", cpu, cnn) == "threads"
    assert choose_backend("loop", cpu, mlp) == "loop"
    torch.set_num_threads(1)
    assert choose_backend("auto", cpu, cnn) == "loop"


@pytest.mark.parametrize("backend", ["loop", "threads", "bmm", "vmap"])
def test_every_backend_trains_to_the_same_iterates(backend, two_threads):
    base = ["topology.nodes=4", "optim.batch_size=8", "model.hidden=[16]"]
    ref = Simulator(prepare(load_config(None, [*base, "engine.backend='loop'"])))
    sim = Simulator(prepare(load_config(None, [*base, f"engine.backend='{backend}'"])))
    assert sim.backend_name == backend
    for _ in range(10):
        assert sim.step() == pytest.approx(ref.step(), rel=1e-4)
    torch.testing.assert_close(sim.stack.params, ref.stack.params, rtol=1e-4, atol=1e-5)


# -- gossip: in place, block by block, fused ------------------------------------------------------


def sequential(topo, x, round0, steps, replicas=1):
    mixer = MatrixMixer(topo, replicas=replicas, dtype=torch.float64)
    for q in range(steps):
        x = mixer(x, round0 + q)
    return x


@pytest.mark.parametrize("name,m", [("ring", 8), ("ring", 64), ("exp_onepeer", 16), ("complete", 6),
                                    ("torus", 16)])
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_rounds_in_place_equal_sequential_mixing(name, m, fuse, steps, two_threads):
    topo = build_topology(name, m)
    x = torch.randn(m, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(steps))
    ref = sequential(topo, x.clone(), 5, steps)
    # tiny blocks: many column blocks, shared out over two workers
    mixer = MatrixMixer(topo, dtype=torch.float64, fuse=fuse, chunk_bytes=m * 8 * 3)
    out = mixer.rounds_(x, 5, steps)
    assert out.data_ptr() == x.data_ptr()
    torch.testing.assert_close(x, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sparse", [True, False])
def test_rounds_in_place_with_replicas(sparse):
    topo = build_topology("ring", 8)
    x = torch.randn(3 * 8, 10, dtype=torch.float64)
    ref = sequential(topo, x.clone(), 0, 4, replicas=3)
    MatrixMixer(topo, replicas=3, dtype=torch.float64, sparse=sparse, chunk_bytes=3 * 8 * 8 * 4
                ).rounds_(x, 0, 4)
    torch.testing.assert_close(x, ref, rtol=1e-10, atol=1e-12)


def test_plan_fuses_only_when_the_product_is_cheaper():
    ring = MatrixMixer(build_topology("ring", 16))
    assert len(ring.plan(0, 4)) == 1  # W^4 costs one dense round instead of four
    assert len(MatrixMixer(build_topology("ring", 16), fuse=False).plan(0, 4)) == 4
    # a 20x20 torus: W^10 is dense (~55% non-zeros); ten sparse rounds cost less
    torus = MatrixMixer(build_topology("torus", 400))
    assert len(torus.plan(0, 10)) == 10
    assert len(torus.plan(0, 2)) == 1


def test_plain_gossip_uses_the_in_place_path_and_keeps_the_protocol():
    topo = build_topology("ring", 8)
    x = torch.randn(8, 5, dtype=torch.float64)
    scheme = PlainGossip(topo, 3)
    expected = scheme.apply(x, MatrixMixer(topo, dtype=torch.float64))  # mix(x, r) protocol
    y = x.clone()
    assert scheme.apply_(y, MatrixMixer(topo, dtype=torch.float64)).data_ptr() == y.data_ptr()
    torch.testing.assert_close(y, expected)
    z = x.clone()  # any other mix callable: apply, then copy
    scheme.apply_(z, lambda v, r: torch.as_tensor(topo.matrix(r)) @ v)
    torch.testing.assert_close(z, expected)


def test_fused_and_unfused_gossip_train_to_the_same_iterates():
    base = ["topology.nodes=8", "optim.batch_size=8", "algorithm.gossip_steps=4"]
    a = Simulator(prepare(load_config(None, base)))
    b = Simulator(prepare(load_config(None, [*base, "engine.fuse_gossip=false"])))
    for _ in range(20):
        a.step()
        b.step()
    assert a.round == b.round == 80
    torch.testing.assert_close(a.stack.params, b.stack.params, rtol=1e-4, atol=1e-6)


# -- runtime ----------------------------------------------------------------------------------------


def test_run_in_workers_runs_every_task_and_reraises(two_threads):
    seen = []
    run_in_workers([lambda i=i: seen.append((i, torch.get_num_threads())) for i in range(3)])
    assert sorted(seen) == [(0, 1), (1, 1), (2, 1)]  # each worker limited to one thread
    assert torch.get_num_threads() == 2

    def boom():
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        run_in_workers([lambda: None, boom])


def test_tune_malloc_is_idempotent():
    first = tune_malloc()
    assert tune_malloc() is first


def test_batches_prepared_in_worker_blocks_are_identical(monkeypatch, two_threads):
    import gossiplab.engine.batches as batches

    sim = Simulator(prepare(load_config(None, [
        "data.dataset='synthetic'", "data.synthetic_shape=[3, 8, 8]", "data.augment=true",
        "topology.nodes=5", "optim.batch_size=4", "model.name='cnn'", "model.width=4"])))
    other = [list(reversed(ix)) for ix in sim.setup.partition.nodes]  # a second replica's tables
    data = batches.NodeData(sim.setup.dataset, sim.setup.partition.nodes, [other], augment=True)
    pos = sim.sampler.sample()
    aug = data.sample_augmentation(pos.numel(), torch.Generator().manual_seed(1))
    x1, y1 = data.batch(pos, aug)
    monkeypatch.setattr(batches, "BLOCK_ELEMENTS", 2000)  # blocks of one node
    x2, y2 = data.batch(pos, aug, workers=1)  # blocks, one thread
    monkeypatch.setattr(batches, "PARALLEL_MIN_ELEMENTS", 0)
    x3, y3 = data.batch(pos, aug, workers=2)  # blocks shared by two workers
    assert x1.shape == (2, 5, 4, 3, 8, 8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1, x3) and torch.equal(y1, y3)


def test_run_in_workers_nested_in_a_worker_runs_inline(two_threads):
    seen = []

    def outer(i):
        run_in_workers([lambda: seen.append((i, "a")), lambda: seen.append((i, "b"))])

    run_in_workers([lambda: outer(0), lambda: outer(1)])  # would deadlock if nested calls queued
    assert sorted(seen) == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]


@pytest.mark.parametrize("opts", [{}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}])
def test_sgd_updated_in_worker_pieces_is_bitwise_the_same(opts, monkeypatch, two_threads):
    import gossiplab.engine.optim as optim

    torch.manual_seed(0)
    p, g = torch.randn(5, 1001), torch.randn(5, 1001)
    a = optim.MatrixSGD(p.clone(), g.clone(), **opts)
    a.step(0.1)
    a.step(0.05)
    monkeypatch.setattr(optim, "PARALLEL_MIN_ELEMENTS", 100)
    b = optim.MatrixSGD(p.clone(), g.clone(), **opts)
    b.step(0.1)
    b.step(0.05)
    assert torch.equal(a.params, b.params) and torch.equal(a.grads, b.grads)
    if a.buf is not None:
        assert torch.equal(a.buf, b.buf)


def test_single_threaded_restores_the_thread_count(two_threads):
    with single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), single_threaded():
        raise RuntimeError("body failed")
    assert torch.get_num_threads() == 2
