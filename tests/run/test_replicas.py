"""Independent runs trained as replicas of one node matrix give the histories and summaries of the
same runs made one by one: bitwise on CPU (the bmm backend computes every model in its own
batch entry, and every per-replica step runs on that replica's rows with the single run's
kernels)."""

from __future__ import annotations

import json

import pytest
import torch

from gossiplab.config import from_dict
from gossiplab.run.replicas import group_key, run_replicas
from gossiplab.run.runner import run_experiment
from gossiplab.setup import load_data, prepare
from run_outputs import strip

BASE = {"data": {"dataset": "digits", "partition": "dirichlet", "alpha": 0.1, "samples_per_node": 40},
        "topology": {"nodes": 8}, "model": {"name": "mlp", "hidden": [16]},
        "optim": {"lr": 0.1, "batch_size": 8}, "train": {"iterations": 60},
        "eval": {"every": 20, "node_samples": 100}, "engine": {"threads": 1},
        "algorithm": {"compare_centralized": False}}


def _cfg(**changes):
    raw = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return from_dict(raw)


def _check_equal(cfgs):
    torch.set_num_threads(1)
    ds = load_data(cfgs[0])
    alone = [run_experiment(c, setup=prepare(c, ds)) for c in cfgs]
    together = run_replicas(cfgs, [prepare(c, ds) for c in cfgs])
    for a, b in zip(alone, together, strict=True):
        assert strip(a) == strip(b)
    return alone


def _seeds(s):
    return {"seeds__data": s, "seeds__init": s, "seeds__sampling": s}


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_replicas_with_other_seeds_q_topology_and_scheme_equal_the_runs_alone(momentum):
    cfgs = [_cfg(**_seeds(0), optim__momentum=momentum),
            _cfg(**_seeds(1), algorithm__gossip_steps=4, topology__name="torus", optim__momentum=momentum),
            _cfg(**_seeds(2), algorithm__gossip_steps=0, optim__momentum=momentum),
            _cfg(**_seeds(3), algorithm__gossip_steps=3, algorithm__gossip="chebyshev",
                 topology__name="exponential", optim__momentum=momentum)]
    alone = _check_equal(cfgs)
    finals = {json.dumps(s["final"]["avg_model"]) for s in alone}
    assert len(finals) == len(cfgs)  # the runs really differ


def test_replicas_with_other_learning_rates_and_one_diverging_equal_the_runs_alone():
    cfgs = [_cfg(**_seeds(0)), _cfg(**_seeds(1), optim__lr=0.05), _cfg(**_seeds(2), optim__lr=1e6)]
    alone = _check_equal(cfgs)
    assert [s["status"] for s in alone] == ["ok", "ok", "diverged"]


def test_centralized_replicas_equal_the_runs_alone():
    _check_equal([_cfg(**_seeds(s), algorithm__name="centralized") for s in range(3)])


def test_group_key_ignores_only_shape_free_values():
    key = group_key(_cfg().to_dict())
    for same in (_cfg(**_seeds(5)), _cfg(optim__lr=0.3), _cfg(algorithm__gossip_steps=7),
                 _cfg(topology__name="torus"), _cfg(data__alpha=1.0)):
        assert group_key(same.to_dict()) == key
    for other in (_cfg(optim__batch_size=4), _cfg(model__hidden=[8]), _cfg(topology__nodes=4),
                  _cfg(train__iterations=70), _cfg(algorithm__name="centralized"),
                  _cfg(eval__every=10)):
        assert group_key(other.to_dict()) != key
    synth = {"data__dataset": "synthetic"}
    assert group_key(_cfg(**synth, seeds__data=1).to_dict()) != group_key(_cfg(**synth).to_dict())


def test_plan_groups_balances_the_workers():
    from gossiplab.sweep.scheduler import plan_groups
    from gossiplab.sweep.spec import parse_sweep

    spec = parse_sweep({"sweep": {"seeds": 3, "baseline": True},
                        "base": {"train": {"iterations": 10}, "topology": {"nodes": 4}},
                        "grid": {"algorithm": {"gossip_steps": [1, 2, 4, 8]},
                                 "topology": {"name": ["ring", "torus"]}}})
    points = spec.expand().points
    groups = plan_groups(points, slots=2, max_replicas=8)
    assert sorted(p.run_id for g in groups for p in g) == sorted(p.run_id for p in points)
    sizes = [len(g) for g in groups]
    dsgd = [p for p in points if p.algorithm != "centralized"]
    assert sizes == [6, 6, 6, 6, 3]  # 24 dsgd in 2 chunks per worker, then 3 centralized together
    assert [len(g) for g in plan_groups(dsgd[:8], slots=2, max_replicas=8)] == [4, 4]  # >= 4 each
    assert [len(g) for g in plan_groups(dsgd[:5], slots=2, max_replicas=4)] == [3, 2]  # <= 4 each
    for g in groups:
        assert len({group_key(p.config.to_dict()) for p in g}) == 1


def test_plan_groups_widens_groups_of_small_steps_only():
    """Runs whose step is mostly fixed cost (the digits MLP) train in groups of up to
    MAX_REPLICAS; runs with more arithmetic per step (Fashion-MNIST's 784-128-10 MLP) in groups
    of at most MIN_REPLICAS."""
    from gossiplab.sweep.scheduler import MAX_REPLICAS, MIN_REPLICAS, group_width, plan_groups
    from gossiplab.sweep.spec import parse_sweep

    def plan(base: dict, seeds: int) -> list[int]:
        spec = parse_sweep({"sweep": {"seeds": seeds},
                            "base": {"train": {"iterations": 10}, "topology": {"nodes": 16},
                                     "optim": {"batch_size": 16}, **base},
                            "grid": {"algorithm": {"gossip_steps": [1, 2, 4, 8]}}})
        points = spec.expand().points
        widths = {group_width(p) for p in points}
        sizes = [len(g) for g in plan_groups(points, slots=2)]
        assert sum(sizes) == len(points)
        return sorted(widths), sizes

    digits = {"data": {"dataset": "digits"}, "model": {"name": "mlp", "hidden": [64]}}
    fmnist = {"data": {"dataset": "fashion_mnist"}, "model": {"name": "mlp", "hidden": [128]}}
    assert plan(digits, 12) == ([MAX_REPLICAS], [12, 12, 12, 12])  # 48 runs, 2 per worker
    widths, sizes = plan(fmnist, 12)
    assert widths == [MIN_REPLICAS] and max(sizes) <= MIN_REPLICAS and len(sizes) == 12
    assert plan(digits, 5)[1] == [5, 5, 5, 5]  # 20 runs: two chunks per worker, equal
    assert plan(digits, 7)[1] == [7, 7, 7, 7]


def test_replicas_sharing_their_gossip_equal_the_runs_alone():
    cfgs = [_cfg(**_seeds(s), algorithm__gossip_steps=2) for s in range(3)] + \
        [_cfg(**_seeds(s), algorithm__gossip_steps=4, topology__name="torus") for s in range(2)]
    _check_equal(cfgs)


def test_quick_pack_shape_with_shared_gossip_equals_the_runs_alone():
    """The shape where a block-diagonal gossip product was not bitwise equal (m = 16, MLP 64,
    exponential graph, 3 seeds): every replica's parameters equal the run's alone."""
    from gossiplab.engine.replicas import ReplicaSimulator
    from gossiplab.engine.simulator import Simulator

    torch.set_num_threads(1)
    cfgs = [_cfg(**_seeds(s), topology__nodes=16, model__hidden=[64], optim__batch_size=16,
                 data__samples_per_node=80, topology__name="exponential") for s in range(3)]
    ds = load_data(cfgs[0])
    together = ReplicaSimulator([prepare(c, ds) for c in cfgs])
    alone = [Simulator(prepare(c, ds)) for c in cfgs]
    for _ in range(3):
        together.step()
        for sim in alone:
            sim.step()
    for r, sim in enumerate(alone):
        assert torch.equal(together.replica_params(r), sim.stack.params)


def test_batched_gossip_of_scattered_unfused_and_time_varying_replicas_equals_the_runs_alone():
    """The replicas whose plain gossip runs as one batched product are not neighbours (a Q = 0
    and a Chebyshev run sit between them), one runs its Q rounds unfused (one product per
    round), one on a time-varying graph (its W changes every round)."""
    cfgs = [_cfg(**_seeds(0), algorithm__gossip_steps=2),
            _cfg(**_seeds(1), algorithm__gossip_steps=0),
            _cfg(**_seeds(2), algorithm__gossip_steps=3, topology__name="exp_onepeer"),
            _cfg(**_seeds(3), algorithm__gossip_steps=2, algorithm__gossip="chebyshev"),
            _cfg(**_seeds(4), algorithm__gossip_steps=3, engine__fuse_gossip=False),
            _cfg(**_seeds(5), algorithm__gossip_steps=1, topology__name="torus")]
    alone = _check_equal(cfgs)
    assert len({json.dumps(s["final"]["avg_model"]) for s in alone}) == len(cfgs)


def test_replicas_with_sparse_gossip_communicate_alone_and_equal_the_runs_alone():
    cfgs = [_cfg(**_seeds(s), topology__nodes=32, data__samples_per_node=20,
                 algorithm__gossip_steps=q) for s, q in ((0, 1), (1, 2))]
    from gossiplab.engine.replicas import ReplicaSimulator

    ds = load_data(cfgs[0])
    sim = ReplicaSimulator([prepare(c, ds) for c in cfgs])
    # W (a ring of 32) is sparse, W^2 is dense enough to be stored dense
    assert [part.dense_plan() is None for part in sim.parts] == [True, False]
    _check_equal(cfgs)
