"""Twins batched as replicas: identity on unperturbed data, agreement with a separate run, the
contraction argument on a strongly convex problem, and stability shrinking with n."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gossiplab.config import load_config
from gossiplab.data.partition import Partition
from gossiplab.engine.simulator import Simulator
from gossiplab.metrics import Evaluator
from gossiplab.setup import prepare
from gossiplab.stability.hooks import StabilityRecorder
from gossiplab.stability.perturb import Perturbation, draw_perturbations, twin_indices
from gossiplab.stability.run import run_stability


def setup_for(over):
    return prepare(load_config(None, over))


@pytest.mark.parametrize("over", [
    ["engine.backend='loop'"],
    ["engine.backend='vmap'", "optim.momentum=0.9", "algorithm.gossip_steps=3"],
    ["engine.backend='vmap'", "topology.nodes=32", "data.samples_per_node=20"],  # sparse mixer
    ["model.name='cnn'", "model.width=4", "engine.backend='loop'", "topology.name='exp_onepeer'"],
])
@pytest.mark.parametrize("algorithm", ["dsgd_mgs", "centralized"])
def test_twin_on_unperturbed_data_is_identical_to_the_run(over, algorithm):
    s = setup_for(["topology.nodes=4", "data.samples_per_node=30", "optim.batch_size=8", *over])
    part = s.partition
    y = s.dataset.y_train.cpu().numpy()
    real = draw_perturbations(part, y, 1, seed=0)[0]
    same = Perturbation(node=0, position=3, replaced=int(part.nodes[0][3]),
                        fresh=int(part.nodes[0][3]), label=int(y[part.nodes[0][3]]))
    perts = [same, same, real]
    sim = Simulator(s, algorithm, replica_indices=twin_indices(part, perts))
    rec = StabilityRecorder(perts, range(0, 41, 5), Evaluator(s.dataset, part.union(), s.cfg.eval))
    rec.on_start(sim)
    for _ in range(40):
        sim.step()
        rec.on_step(sim, 0.0)
    for r in rec.records:
        assert r["avg_dist"][:2] == [0.0, 0.0]
        assert r["node_dist"][:2] == [0.0, 0.0]
        assert r["loss_replaced_twin"][:2] == r["loss_replaced"][:2]
        assert r["loss_test_abs"][:2] == [0.0, 0.0]
    assert torch.equal(sim.replica_params(0), sim.replica_params(1))
    assert rec.records[-1]["avg_dist"][2] > 0  # the perturbed twin does move away


def test_batched_twin_equals_a_separate_run_on_the_perturbed_data():
    s = setup_for(["topology.nodes=6", "data.samples_per_node=25", "optim.batch_size=5",
                   "engine.backend='loop'", "algorithm.gossip_steps=2"])
    y = s.dataset.y_train.cpu().numpy()
    perts = draw_perturbations(s.partition, y, 3, seed=1)
    twins = twin_indices(s.partition, perts)
    batched = Simulator(s, replica_indices=twins)
    alone = Simulator(dataclasses.replace(s, partition=Partition(twins[1], s.partition.pool, 10)))
    for _ in range(50):
        batched.step()
        alone.step()
    torch.testing.assert_close(batched.replica_params(2), alone.replica_params(0), rtol=1e-5,
                               atol=1e-6)
    assert not torch.equal(batched.replica_params(2), batched.replica_params(0))


def test_strongly_convex_twin_distance_obeys_the_contraction_argument():
    """Regularised logistic regression, DSGD on a ring. Per step, with D_t = ||X - X'||_F over the
    nodes, mu the L2 weight decay and k_t the times the perturbed position is in node j's batch:
    D_{t+1} <= (1 - eta mu) D_t + eta (k_t / b) ||grad l(x'_j; z') - grad l(x'_j; z_i)||
    (gradient steps on a convex beta-smooth loss are 1-expansive for eta <= 2/beta, W is
    non-expansive), and D_t = 0 until the perturbed sample is first drawn."""
    lr, mu, b = 0.01, 0.05, 4
    s = setup_for(["model.name='logreg'", "data.partition='iid'", "topology.nodes=4",
                   "data.samples_per_node=20", f"optim.batch_size={b}", f"optim.lr={lr}",
                   f"optim.weight_decay={mu}", "engine.backend='loop'"])
    ds = s.dataset
    x_all = ds.normalise(ds.x_train).flatten(1)
    beta = 0.5 * float((x_all.pow(2).sum(1) + 1).max())  # softmax CE: Hessian <= ||[x; 1]||^2 / 2
    assert lr / (1 - lr * mu) <= 2 / beta
    y = ds.y_train.cpu().numpy()
    p = draw_perturbations(s.partition, y, 1, seed=4)[0]
    sim = Simulator(s, replica_indices=twin_indices(s.partition, [p]))
    drawn = []
    sample = sim.sampler.sample
    sim.sampler.sample = lambda: drawn.append(sample()) or drawn[-1]
    mod = sim.stack.modules[0]

    def grad_at(w, idx):
        xi = ds.normalise(ds.x_train[idx:idx + 1])
        wv = w.detach().clone().requires_grad_(True)
        views = sim.stack.row_views(wv)
        out = torch.func.functional_call(mod, views, (xi,))
        (g,) = torch.autograd.grad(F.cross_entropy(out, ds.y_train[idx:idx + 1]), wv)
        return g

    hits = 0
    for _ in range(300):
        x0, x1 = sim.replica_params(0).clone(), sim.replica_params(1).clone()
        d = float((x1 - x0).norm())
        kick = float((grad_at(x1[p.node], p.fresh) - grad_at(x1[p.node], p.replaced)).norm())
        sim.step()
        k = int((drawn[-1][p.node] == p.position).sum())
        hits += k
        d_next = float((sim.replica_params(1) - sim.replica_params(0)).norm())
        if hits == 0:
            assert d_next == 0.0
        assert d_next <= (1 - lr * mu) * d + lr * k / b * kick + 1e-6 * (d + 1e-3)
        if k == 0 and d > 0:
            assert d_next < d
    assert hits > 0 and d_next > 0


def _mean_stability(n):
    cfg = load_config(None, [
        "model.name='logreg'", "optim.weight_decay=0.05", "optim.lr=0.05", "data.partition='iid'",
        "topology.nodes=4", f"data.samples_per_node={n}", "optim.batch_size=4", "train.iterations=150",
        "eval.every=150", "stability.perturbations=8", "stability.hessian_points=0",
        "stability.reference_iterations=0", "algorithm.compare_centralized=false",
        "engine.backend='vmap'"])
    s = run_stability(cfg)["stability"]["dsgd_mgs"]
    return s["avg_model"]["mean"], s["node_models"]["mean"]


def test_strongly_convex_stability_shrinks_as_n_grows():
    small = _mean_stability(10)
    large = _mean_stability(60)
    assert np.all(np.array(large) < 0.5 * np.array(small))
    assert min(large) > 0
