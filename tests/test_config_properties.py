"""Property-based: generated configs (known and unknown keys, values of every TOML type, plausible
and absurd) either validate or fail with a ConfigError; those that validate and are small enough
then either set up and train a step or fail with a UserError. Never any other exception."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from gossiplab.config import Config, from_dict
from gossiplab.data.datasets import make_synthetic
from gossiplab.errors import ConfigError, UserError
from gossiplab.setup import check_names, prepare

SECTIONS = {name: f.annotation for name, f in Config.model_fields.items()}

toml_scalar = st.one_of(
    st.integers(-10**6, 10**6), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=12),
)
toml_value = st.recursive(toml_scalar, lambda v: st.lists(v, max_size=4)
                          | st.dictionaries(st.text(max_size=8), v, max_size=3), max_leaves=6)

# values a user might plausibly type for each key (including off-by-one mistakes)
PLAUSIBLE = {
    "name": st.sampled_from(["ring", "torus", "grid", "complete", "star", "exponential",
                             "hypercube", "erdos_renyi", "exp_onepeer", "file", "mlp", "logreg",
                             "cnn", "resnet18", "dsgd_mgs", "centralized", "rign", "simulator"]),
    "dataset": st.sampled_from(["synthetic", "digits", "cifar10", "mnist"]),
    "partition": st.sampled_from(["iid", "dirichlet", "shards", "niid"]),
    "mixing": st.sampled_from(["metropolis", "max_degree", "uniform"]),
    "gossip": st.sampled_from(["plain", "accelerated"]),
    "schedule": st.sampled_from(["constant", "inverse_t", "cosine", "step", "linear"]),
    "device": st.sampled_from(["cpu", "cuda:7", "tpu", "auto"]),
    "backend": st.sampled_from(["auto", "loop", "vmap", "jit"]),
    "shape": st.one_of(st.none(), st.lists(st.integers(-2, 6), max_size=3)),
    "hidden": st.lists(st.integers(-1, 12), max_size=3),
    "synthetic_shape": st.sampled_from([[1, 8, 8], [3, 8, 8], [16], [1, 2, 2], [0], [1, 1, 8, 8]]),
}
# mostly in range, sometimes just out of it
small_number = st.one_of(st.integers(1, 12), st.integers(1, 12), st.floats(0.01, 0.9),
                         st.integers(-3, 40), st.sampled_from([0, 1, 0.5, 1e-9, math.inf, math.nan]))


mostly_valid_number = st.one_of(*[st.integers(1, 12)] * 3, *[st.floats(0.01, 0.9)] * 2,
                                st.integers(-3, 40), st.sampled_from([0, 1e-9, math.inf]))


def _plausible(section: str, key: str, garbage: bool = True):
    if key in PLAUSIBLE:
        return PLAUSIBLE[key]
    ann = SECTIONS[section].model_fields[key].annotation
    if ann is bool or str(ann) == "bool | None":
        return st.booleans()
    choices = [a for a in getattr(ann, "__args__", ()) if isinstance(a, str)]
    if choices:  # a Literal
        return st.sampled_from([*choices, "other"])
    if ann is str or str(ann) == "str | None":
        return st.one_of(st.none(), st.sampled_from(["data", "/nonexistent", "../x"]))
    return small_number if garbage else mostly_valid_number


def key_value(section: str, key: str, garbage: bool):
    plausible = _plausible(section, key, garbage)
    return st.one_of(plausible, toml_value) if garbage else plausible


@st.composite
def raw_configs(draw, garbage: bool = True):
    raw: dict = {}
    for sec in draw(st.lists(st.sampled_from(sorted(SECTIONS)), unique=True, max_size=6)):
        keys = sorted(SECTIONS[sec].model_fields)
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=5))
        raw[sec] = {k: draw(key_value(sec, k, garbage)) for k in chosen}
    if not garbage:
        return raw
    if draw(st.integers(0, 9)) == 0:  # an unknown key somewhere
        where = draw(st.sampled_from([None, *sorted(raw)]))
        key = draw(st.text(min_size=1, max_size=10))
        (raw if where is None else raw[where])[key] = draw(toml_value)
    if draw(st.integers(0, 19)) == 0:  # a section that is not a table
        raw[draw(st.sampled_from(sorted(SECTIONS)))] = draw(toml_scalar)
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_configs())
def test_generated_configs_validate_or_fail_clearly(raw):
    try:
        cfg = from_dict(raw)
    except ConfigError as e:
        event("config refused")
        assert str(e) and "\n" not in str(e)
        return
    event("config valid")
    assert isinstance(cfg, Config)
    try:
        check_names(cfg)
    except ConfigError as e:
        assert "unknown" in str(e) or "needs" in str(e)


SMALL_DATA = make_synthetic(num_train=3000, num_test=40, num_classes=4, shape=(1, 8, 8), seed=0)
SMALL_IMAGES = make_synthetic(num_train=3000, num_test=40, num_classes=4, shape=(3, 8, 8), seed=0)


def small_enough(cfg: Config) -> bool:
    m = cfg.model
    convolutional = m.name in ("cnn", "resnet18")
    return (cfg.topology.nodes <= 32 and (m.width <= 8 or not convolutional)
            and sum(m.hidden) <= 128 and cfg.optim.batch_size <= 64)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_configs(garbage=False), st.booleans())
def test_valid_small_configs_set_up_and_train_or_fail_clearly(raw, images):
    from gossiplab.engine.simulator import Simulator

    try:
        cfg = from_dict(raw)
    except ConfigError:
        event("config refused")
        return
    assume(small_enough(cfg) and cfg.engine.device in ("cpu", "auto"))
    if cfg.topology.name == "file":
        return  # file topologies: tests/test_topology_properties.py
    threads = torch.get_num_threads()
    try:
        setup = prepare(cfg, dataset=SMALL_IMAGES if images else SMALL_DATA)
        sim = Simulator(setup)
        sim.step()
        event("trained a step")
    except UserError as e:
        event(f"refused: {type(e).__name__}")
        assert str(e) and "\n" not in str(e)
    except Exception as e:  # Diverged is the only other allowed outcome, and only on a step
        from gossiplab.errors import Diverged

        if not isinstance(e, Diverged):
            raise
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("raw", [
    {"\n": 0}, {"topology": {"name\nx": 1}}, {"topology": {"nodes": True}},
    {"model": {"hidden": [0]}}, {"topology": {"shape": [1, 2, 3]}},
    {"seeds": {"data": -1}}, {"optim": {"lr": math.nan}},
])
def test_regressions_found_by_the_generator(raw):
    with pytest.raises(ConfigError) as e:
        from_dict(raw)
    assert "\n" not in str(e.value)
