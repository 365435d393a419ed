"""Packs ship with the package and a sweep shrinks from the command line (--set, --seeds, --where)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gossiplab.errors import ConfigError, UserError
from gossiplab.sweep.packs import estimate_seconds, find_pack, list_packs, packs_dir
from gossiplab.sweep.spec import load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_packs_are_the_repository_configs():
    assert packs_dir().resolve() == (ROOT / "configs").resolve()
    names = {p.name for p in list_packs()}
    assert {"quick-digits-q", "paper-cifar10", "study/study-q", "stability-digits"} <= names
    assert not any(n.rsplit("/", 1)[-1].startswith("_") for n in names)  # bases are not packs
    assert find_pack("quick-digits-q").kind == "sweep"
    assert find_pack("study/study-q.toml").name == "study/study-q"
    assert find_pack("quick-fmnist-cnn.toml").name == "quick-fmnist-cnn"  # a unique basename is enough
    with pytest.raises(UserError, match="'study-q' names several packs"):  # ambiguous: not a guess
        find_pack("study-q")
    assert find_pack("stability-digits").kind == "config"


def test_ambiguous_basename_is_refused_with_the_candidates(monkeypatch):
    from gossiplab.sweep import packs

    two = [packs.Pack("a/x", Path("a/x.toml"), "sweep", "", ""),
           packs.Pack("b/x", Path("b/x.toml"), "sweep", "", "")]
    monkeypatch.setattr(packs, "list_packs", lambda: two)
    with pytest.raises(UserError, match=r"'x' names several packs \(a/x, b/x\); give the full name"):
        packs.find_pack("x")


def test_unknown_pack_is_one_line_with_a_suggestion():
    with pytest.raises(UserError, match=r"no sweep pack named 'quick-digit-q' \(did you mean "
                                        r"'quick-digits-q'\?\)"):
        find_pack("quick-digit-q", kind="sweep")


def test_estimate_grows_with_the_work():
    spec = load_sweep(find_pack("quick-digits-q").path)
    full = estimate_seconds(spec.expand().points)
    short = estimate_seconds(spec.narrowed(overrides=["train.iterations=150"]).expand().points)
    assert full is not None and short is not None and 0 < short < full / 5


@pytest.fixture
def qspec():
    return load_sweep(find_pack("quick-digits-q").path)


def test_set_applies_to_every_run(qspec):
    exp = qspec.narrowed(overrides=["train.iterations=40", "optim.lr=0.05"]).expand()
    assert len(exp.points) == len(qspec.expand().points)
    assert {p.config.train.iterations for p in exp.points} == {40}
    assert {p.config.optim.lr for p in exp.points} == {0.05}


def test_seeds_and_where_shrink_the_grid(qspec):
    full = qspec.expand()
    small = qspec.narrowed(seeds=1, where=["algorithm.gossip_steps=1,4",
                                           "topology.name=ring"]).expand()
    assert {p.config.seeds.data for p in small.points} == {0}
    dsgd = [p for p in small.points if p.algorithm == "dsgd_mgs"]
    assert sorted(p.config.algorithm.gossip_steps for p in dsgd) == [1, 4]
    assert {p.config.topology.name for p in dsgd} == {"ring"}
    assert sum(p.algorithm == "centralized" for p in small.points) == 1
    # a shrunk sweep's runs are the full sweep's runs: stored results are reused
    assert {p.run_id for p in small.points} <= {p.run_id for p in full.points}


def test_where_on_a_zip_keeps_positions():
    spec = parse_sweep({"sweep": {"name": "z"}, "base": {"train": {"iterations": 5}},
                        "grid": {"algorithm.gossip_steps": [1, 2]},
                        "zip": [{"optim.lr": [0.1, 0.05, 0.01], "optim.batch_size": [8, 16, 32]}]})
    exp = spec.narrowed(where=["optim.batch_size=32,8"]).expand()
    assert sorted({(p.config.optim.lr, p.config.optim.batch_size) for p in exp.points}) == [
        (0.01, 32), (0.1, 8)]
    assert len(exp.points) == 4


def test_where_keeps_list_values_whole():
    """--where model.hidden=[32,32],[64]: commas inside brackets belong to a value."""
    spec = parse_sweep({"sweep": {"name": "h"}, "base": {"train": {"iterations": 5}},
                        "grid": {"model.hidden": [[32, 32], [64], [16]]}})
    exp = spec.narrowed(where=["model.hidden=[32,32],[64]"]).expand()
    assert sorted(p.config.model.hidden for p in exp.points) == [[32, 32], [64]]
    assert len(spec.narrowed(where=["model.hidden=[32, 32]"]).expand().points) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"overrides": ["algorithm.gossip_steps=2"]}, "is an axis of this sweep; keep some of its values"),
    ({"overrides": ["seeds.data=3"]}, "use --seeds N"),
    ({"overrides": ["optim.lrr=1"]}, "unknown config key 'optim.lrr'"),
    ({"where": ["optim.lr=0.1"]}, "not an axis of this sweep"),
    ({"where": ["algorithm.gossip_steps=3"]}, r"3 not among its values \[0, 1, 2, 4, 8, 16\]"),
    ({"where": ["algorithm.gossip_steps"]}, "expects key=value"),
    ({"seeds": 0}, "--seeds must be >= 1"),
])
def test_bad_narrowing_is_one_line(qspec, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        qspec.narrowed(**kwargs)


def _gl(*args, cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-m", "gossiplab", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_dry_run_of_a_shrunk_pack(tmp_path):
    r = _gl("sweep", "--pack", "quick-digits-q", "--seeds", "1", "--where",
            "algorithm.gossip_steps=1,4", "--where", "topology.name=ring",
            "--set", "train.iterations=30", "--dry-run", cwd=tmp_path, pythonpath=ROOT / "src")
    assert r.returncode == 0, r.stderr
    assert "3 runs" in r.stdout  # centralized + Q in {1, 4} on the ring, one seed
    r = _gl("sweep", "--pack", "quick-digits-q", "--where", "topology.name=star", "--dry-run",
            cwd=tmp_path, pythonpath=ROOT / "src")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "star not among" in r.stderr
    r = _gl("sweep", "--dry-run", cwd=tmp_path, pythonpath=ROOT / "src")
    assert r.returncode == 2 and "--pack NAME" in r.stderr


@pytest.mark.slow
def test_packs_travel_in_the_wheel(tmp_path):
    """pip's wheel of the project carries the packs: from another folder, with only the wheel's
    files importable, `gossiplab packs` lists them and `sweep --pack` runs one."""
    if subprocess.run([sys.executable, "-c", "import setuptools"]).returncode != 0:
        pytest.skip("setuptools is not installed (needed to build the wheel)")
    src = tmp_path / "src"  # a clean copy: no build/ or egg-info from the checkout
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "results", "runs", "docs", "tests", "__pycache__", "*.sqlite"))
    wheels = tmp_path / "wheels"
    b = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(wheels), str(src)], capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stderr[-2000:]
    (wheel,) = wheels.glob("gossiplab-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert "gossiplab/packs/quick-digits-q.toml" in names
    in_repo = {p.path.relative_to(packs_dir()).as_posix() for p in list_packs()}
    assert {f"gossiplab/packs/{n}" for n in in_repo} <= set(names)  # every pack, any depth
    assert "gossiplab/packs/study/study-q.toml" in names and "gossiplab/packs/study/_base.toml" in names
    assert not (site / "gossiplab" / "packs").is_symlink()
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = _gl("packs", "--no-estimate", cwd=work, pythonpath=site)
    assert r.returncode == 0, r.stderr
    assert "quick-digits-q" in r.stdout and "study/study-q" in r.stdout and str(site) in r.stdout
    r = _gl("sweep", "--pack", "study/study-q", "--seeds", "1", "--dry-run", cwd=work, pythonpath=site)
    assert r.returncode == 0, r.stderr  # its [sweep] config = "_base.toml" resolves inside the wheel
    r = _gl("sweep", "--pack", "quick-digits-q", "--seeds", "1", "--where", "topology.name=ring",
            "--where", "algorithm.gossip_steps=1", "--set", "train.iterations=20", "--set",
            "eval.every=10", "--quiet", cwd=work, pythonpath=site)
    assert r.returncode == 0, r.stderr
    assert (work / "quick-digits-q.sqlite").exists() and "2 run(s) executed" in r.stderr
