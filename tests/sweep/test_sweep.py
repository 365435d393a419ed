"""Sweep files: grid, zip and seed expansion, baseline normalisation, hashing, bad input."""

import pytest

from gossiplab.config import Config, from_dict
from gossiplab.errors import ConfigError
from gossiplab.sweep.spec import baseline_ignores, load_sweep, parse_sweep


def spec(**tables):
    return parse_sweep({"sweep": tables.pop("sweep", {}), **tables})


def test_grid_is_the_cartesian_product_in_file_order():
    s = spec(grid={"algorithm": {"gossip_steps": [1, 2, 4]}, "topology.name": ["ring", "torus"]})
    pts = s.expand().points
    assert [(p.params["algorithm.gossip_steps"], p.params["topology.name"]) for p in pts] == [
        (1, "ring"), (1, "torus"), (2, "ring"), (2, "torus"), (4, "ring"), (4, "torus")]
    assert all(p.config.algorithm.compare_centralized is False for p in pts)
    assert pts[3].config.topology.name == "torus" and pts[3].config.algorithm.gossip_steps == 2


def test_zip_axes_move_together_and_multiply_with_the_grid():
    s = spec(grid={"topology.name": ["ring", "torus"]},
             zip=[{"optim.lr": [0.1, 0.05, 0.01], "optim.batch_size": [8, 16, 32]}])
    pts = s.expand().points
    assert len(pts) == 6
    pairs = {(p.config.optim.lr, p.config.optim.batch_size) for p in pts}
    assert pairs == {(0.1, 8), (0.05, 16), (0.01, 32)}
    # two zip groups multiply with each other
    s2 = spec(zip=[{"optim.lr": [0.1, 0.2]}, {"data.alpha": [0.1, 1.0, 10.0]}])
    assert len(s2.expand().points) == 6


def test_seeds_replicate_every_point_outermost_and_set_the_chosen_seed_keys():
    s = spec(sweep={"seeds": [3, 7]}, grid={"algorithm.gossip_steps": [1, 2]})
    pts = s.expand().points
    assert [(p.config.seeds.data, p.config.algorithm.gossip_steps) for p in pts] == [
        (3, 1), (3, 2), (7, 1), (7, 2)]
    assert all(p.config.seeds.init == p.config.seeds.sampling == p.config.seeds.data for p in pts)
    s = spec(sweep={"seeds": 2, "seed_keys": ["init", "sampling"]}, base={"seeds": {"data": 5}})
    pts = s.expand().points
    assert [(p.config.seeds.data, p.config.seeds.init) for p in pts] == [(5, 0), (5, 1)]


def test_same_config_same_id_and_any_change_a_new_id():
    a, b = from_dict({}), from_dict({})
    assert a.config_hash() == b.config_hash() == Config().config_hash()
    ids = {a.config_hash()}
    for change in ({"optim": {"lr": 0.2}}, {"seeds": {"sampling": 1}}, {"topology": {"name": "torus"}},
                   {"algorithm": {"gossip_steps": 2}}, {"model": {"hidden": [64, 64]}}):
        ids.add(from_dict(change).config_hash())
    assert len(ids) == 6
    s = spec(sweep={"seeds": 2}, grid={"algorithm.gossip_steps": [1, 2]})
    first, again = s.expand().points, s.expand().points
    assert [p.run_id for p in first] == [p.run_id for p in again]
    assert len({p.run_id for p in first}) == 4
    assert all(p.run_id == p.config.config_hash() for p in first)


def test_baseline_runs_once_per_combination_of_the_axes_it_depends_on():
    s = spec(sweep={"seeds": 2, "baseline": True},
             grid={"algorithm.gossip_steps": [1, 4], "topology.name": ["ring", "torus"],
                   "topology.nodes": [4, 16]})
    exp = s.expand()
    cen = [p for p in exp.points if p.algorithm == "centralized"]
    # one per (m, seed): topology name and Q do not matter to centralized SGD
    assert len(cen) == 4
    assert {(p.config.topology.nodes, p.config.seeds.data) for p in cen} == {(4, 0), (16, 0), (4, 1), (16, 1)}
    assert exp.counts() == {"centralized": 4, "dsgd_mgs": 16}
    assert exp.duplicates == 12
    for p in cen:
        assert p.params["topology.name"] is None and p.params["algorithm.gossip_steps"] is None
        assert p.params["topology.nodes"] in (4, 16)
        assert p.config.algorithm.compare_centralized is False
    # a centralized point asked for explicitly hashes like the baseline's
    direct = spec(base={"algorithm": {"name": "centralized", "gossip_steps": 8},
                        "topology": {"name": "torus", "nodes": 4}}).expand().points[0]
    assert direct.run_id in {p.run_id for p in cen}


def test_local_sgd_points_do_not_depend_on_the_topology():
    s = spec(sweep={"seeds": 2}, grid={"algorithm.gossip_steps": [0, 1], "topology.name": ["ring", "torus"]})
    exp = s.expand()
    local = [p for p in exp.points if p.config.algorithm.gossip_steps == 0]
    assert len(local) == 2 and exp.duplicates == 2  # one Q = 0 run per seed, not per topology
    assert all(p.params["topology.name"] is None for p in local)
    assert all(p.config.topology.nodes == 16 for p in local)
    assert len([p for p in exp.points if p.config.algorithm.gossip_steps == 1]) == 4


def test_baseline_ignores_only_topology_and_gossip_keys():
    assert baseline_ignores("topology.name") and baseline_ignores("algorithm.gossip_steps")
    assert baseline_ignores("topology.laziness") and baseline_ignores("algorithm.gossip")
    for key in ("topology.nodes", "algorithm.name", "optim.lr", "data.alpha", "seeds.data"):
        assert not baseline_ignores(key)


@pytest.mark.parametrize("raw, message", [
    ({"grid": {"optim.lrr": [0.1]}}, "did you mean 'optim.lr'"),
    ({"grid": {"optim.lr": 0.1}}, "must be a list"),
    ({"grid": {"optim.lr": []}}, "has no values"),
    ({"zip": [{"optim.lr": [0.1, 0.2], "optim.batch_size": [8]}]}, "equal length"),
    ({"grid": {"optim.lr": [0.1]}, "zip": {"optim.lr": [0.2]}}, "more than once"),
    ({"sweep": {"seeds": 0}}, "seeds must be >= 1"),
    ({"sweep": {"seeds": [1, 1]}}, "repeated"),
    ({"sweep": {"seedz": 1}}, "unknown [sweep] key"),
    ({"sweep": {"seeds": 2}, "grid": {"seeds.data": [0, 1]}}, "both an axis"),
    ({"grids": {}}, "unknown table"),
    ({"base": {"optim": {"lr": 0.1, "momentun": 0.9}}}, "did you mean 'optim.momentum'"),
    ({"grid": {"algorithm.compare_centralized": [True]}}, "sweep.baseline"),
    ({"grid": {"optim.lr": [0.1, -1.0]}}, "point {optim.lr=-1.0}"),
])
def test_bad_sweep_files_fail_with_one_clear_error(raw, message):
    with pytest.raises(ConfigError, match=None) as e:
        parse_sweep(raw, path="s.toml").expand()
    assert message in str(e.value)
    assert "s.toml" in str(e.value)


def test_load_sweep_keeps_the_file_text_and_resolves_a_base_config_file(tmp_path):
    (tmp_path / "base.toml").write_text("[optim]\nlr = 0.05\n[topology]\nnodes = 8\n")
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nconfig = "base.toml"\nseeds = 1\n[base]\ntopology.nodes = 4\n'
                 '[grid]\n"algorithm.gossip_steps" = [1, 2]\n')
    s = load_sweep(f)
    assert s.name == "s" and s.source == f.read_text()
    p = s.expand().points[0]
    assert p.config.optim.lr == 0.05 and p.config.topology.nodes == 4  # [base] wins over the file
