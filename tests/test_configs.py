"""The experiment packs in configs/ are valid sweep files with the promised shape."""

import tomllib
from pathlib import Path

import pytest

from gossiplab.config import load_config
from gossiplab.sweep.spec import load_sweep

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


STUDY = sorted((CONFIGS / "study").glob("study-*.toml"))


def test_one_study_sweep_per_claim():
    names = {p.stem for p in STUDY}
    assert {"study-q", "study-gap", "study-lr", "study-alpha", "study-scale", "study-topology",
            "study-batch"} <= names


@pytest.mark.parametrize("path", STUDY, ids=lambda p: p.name)
def test_study_sweeps_expand_with_baseline_and_seeds(path):
    spec = load_sweep(path)
    exp = spec.expand()
    assert spec.baseline and len(spec.seeds) >= 3
    assert exp.counts()["centralized"] >= 3 and exp.counts()["dsgd_mgs"] >= 6
    cfg = exp.points[0].config
    assert cfg.data.dataset in ("digits", "fashion_mnist") and cfg.engine.device == "cpu"


def test_study_base_loads():
    load_config(CONFIGS / "study" / "_base.toml")


GPU_STUDY = sorted((CONFIGS / "study" / "gpu").glob("study-*.toml"))


def test_every_study_sweep_has_a_paper_scale_version():
    # the regime map's CNN cells have none of their own: the paper-scale map is a ResNet already
    assert {p.stem.removesuffix("-cifar10") for p in GPU_STUDY} >= (
        {p.stem for p in STUDY} - {"study-schemes", "study-map-cnn"})


INFORMATIVE = sorted((CONFIGS / "study" / "informative").glob("study-*.toml"))


def test_the_informative_regime_has_all_seven_claims():
    assert {p.stem for p in INFORMATIVE} == {"study-q", "study-gap", "study-lr", "study-alpha",
                                             "study-scale", "study-topology", "study-batch"}
    load_config(CONFIGS / "study" / "informative" / "_base.toml")


@pytest.mark.parametrize("path", INFORMATIVE, ids=lambda p: p.name)
def test_informative_sweeps_pair_every_run_with_centralized_over_five_seeds(path):
    exp = load_sweep(path).expand()
    assert len(load_sweep(path).seeds) >= 5
    seeds = {p.config.seeds.data for p in exp.points if p.config.algorithm.name == "centralized"}
    assert seeds == {p.config.seeds.data for p in exp.points}


@pytest.mark.parametrize("path", GPU_STUDY, ids=lambda p: p.name)
def test_paper_scale_study_sweeps_are_resnet18_on_cifar(path):
    exp = load_sweep(path).expand()
    for p in exp.points:
        cfg = p.config
        assert cfg.model.name == "resnet18" and cfg.data.dataset in ("cifar10", "cifar100")
        assert cfg.engine.device == "cuda"
        n = cfg.data.samples_per_node
        assert n is None or n * cfg.topology.nodes <= 50_000


@pytest.mark.parametrize("base", ["_base-cifar10.toml", "_base-cifar100.toml"])
def test_paper_scale_bases_load(base):
    cfg = load_config(CONFIGS / "study" / "gpu" / base)
    assert cfg.model.name == "resnet18"
