"""prepare(): the configured gossip scheme is checked before training and described with results."""

import pytest

from gossiplab.config import load_config
from gossiplab.errors import ConfigError
from gossiplab.setup import prepare


def test_gossip_scheme_is_described_with_the_rounds_it_uses():
    setup = prepare(load_config(None, ["topology.nodes=8", "optim.batch_size=8",
                                       "algorithm.gossip='exact'", "algorithm.gossip_steps=9"]))
    g = setup.describe()["gossip"]
    assert g["name"] == "exact" and g["mode"] == "exact"
    assert g["steps"] == 9 and g["rounds"] == g["exact_rounds"] == 4 and g["bound"] == 0.0
    cen = prepare(load_config(None, ["topology.nodes=8", "optim.batch_size=8",
                                     "algorithm.name='centralized'"]))
    assert "gossip" not in cen.describe()


def test_a_scheme_the_topology_cannot_run_fails_in_prepare():
    cfg = load_config(None, ["topology.name='exp_onepeer'", "topology.nodes=8", "optim.batch_size=8",
                             "algorithm.gossip='exact'"])
    with pytest.raises(ConfigError, match="needs a static topology"):
        prepare(cfg)
