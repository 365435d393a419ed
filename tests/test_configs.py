"""The experiment packs in configs/ are valid sweep files with the promised shape."""

import tomllib
from pathlib import Path

import pytest

from gossiplab.config import load_config
from gossiplab.experiments.sweep import load_sweep

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.glob("*.toml"))


def _is_sweep(path: Path) -> bool:
    raw = tomllib.loads(path.read_text())
    return "sweep" in raw or "grid" in raw


PACKS = [p for p in ALL if _is_sweep(p)]
RUN_CONFIGS = [p for p in ALL if not _is_sweep(p)]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_run_configs_load(path):
    load_config(path)


def test_packs_exist():
    names = {p.name for p in PACKS}
    assert {"paper-cifar10.toml", "paper-cifar100.toml", "quick-digits-q.toml"} <= names
    assert any(n.startswith("quick-fmnist") for n in names)


@pytest.mark.parametrize("path", PACKS, ids=lambda p: p.name)
def test_pack_expands(path):
    spec = load_sweep(path)
    exp = spec.expand()
    counts = exp.counts()
    assert spec.baseline and counts["centralized"] >= 1 and counts["dsgd_mgs"] >= 6
    qs = {p.config.algorithm.gossip_steps for p in exp.points if p.algorithm == "dsgd_mgs"}
    assert len(qs) >= 2
    assert len(spec.seeds) >= 2
    if path.name.startswith("paper-"):
        cfg = exp.points[0].config
        assert cfg.model.name == "resnet18" and cfg.data.dataset.startswith("cifar")
        assert {1, 2, 4, 8, 16} <= qs and cfg.data.partition == "dirichlet"
        assert len({p.config.topology.name for p in exp.points if p.algorithm == "dsgd_mgs"}) >= 3
    else:
        cfg = exp.points[0].config
        assert cfg.data.dataset in ("digits", "fashion_mnist") and cfg.engine.device == "cpu"
        assert cfg.model.name in ("mlp", "cnn", "logreg")
