import pytest

from gossiplab.config import Config, load_config, parse_value, reference_markdown, to_toml
from gossiplab.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[topology]\nname = "torus"\nnodes = 9\n[optim]\nlr = 0.5\n')
    cfg = load_config(p, ["optim.lr=0.25", "model.hidden=[32, 16]", "data.dataset=digits"])
    assert cfg.topology.name == "torus" and cfg.topology.nodes == 9
    assert cfg.optim.lr == 0.25 and cfg.model.hidden == [32, 16]
    assert cfg.data.dataset == "digits"


@pytest.mark.parametrize("override, message", [
    (["optim.lrr=1"], "did you mean 'optim.lr'"),
    (["optimm.lr=1"], "did you mean 'optim'"),
    (["topology.nodes=0"], "topology.nodes"),
    (["algorithm.gossip_steps=-1"], "algorithm.gossip_steps"),
    (["data.alpha=0"], "data.alpha"),
    (["optim.lr=-0.1"], "optim.lr"),
    (["optim.lr='fast'"], "optim.lr"),
    (["optim=3"], "must be a section"),
    (["novalue"], "key=value"),
])
def test_bad_configs_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[optim\nlr = ")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_hash_is_stable_and_sensitive():
    a, b = Config(), Config()
    assert a.config_hash() == b.config_hash()
    assert load_config(None, ["seeds.sampling=1"]).config_hash() != a.config_hash()


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("ring") == "ring"


def test_toml_roundtrip_and_reference(tmp_path):
    cfg = load_config(None, ["topology.name='torus'", "model.hidden=[8]"])
    p = tmp_path / "c.toml"
    p.write_text(to_toml(cfg))
    assert load_config(p) == cfg
    ref = reference_markdown()
    assert "`optim.lr`" in ref and "`seeds.sampling`" in ref


def test_eval_keys_of_issue_18_keep_the_ids_of_stored_runs():
    from gossiplab.config import from_dict

    base = from_dict({}).config_hash()
    assert base == from_dict({"eval": {"batch_size": 2048}}).config_hash()  # the old default
    assert base == from_dict({"eval": {"at_start": True}}).config_hash()  # a new key at default
    assert base != from_dict({"eval": {"at_start": False}}).config_hash()
    assert base != from_dict({"eval": {"batch_size": 512}}).config_hash()
