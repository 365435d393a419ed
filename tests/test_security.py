"""Security: no pickle from a user file is ever executed, and nothing a config names is written to.

Every loader of a user file is covered by a test with a crafted file (CIFAR batches:
tests/data/test_cifar.py and tests/test_bad_input.py; checkpoints: tests/test_checkpoint.py and
tests/run/test_checkpointing.py; .npy mixing matrices: tests/test_bad_input.py). The scan
below keeps new code from adding an unguarded loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gossiplab.cli import main
from gossiplab.config import load_config
from gossiplab.data.cifar import write_fake_cifar
from gossiplab.data.idx import write_idx
from run_outputs import tree

SRC = Path(__file__).resolve().parents[1] / "src" / "gossiplab"


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call of ``name(`` (up to the matching parenthesis)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
    return out


def test_no_unguarded_deserialisation_in_the_source():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(SRC)
        for args in _calls(text, "torch.load"):
            if "weights_only=True" not in args:
                problems.append(f"{rel}: torch.load without weights_only=True")
        for name in ("np.load", "numpy.load"):
            for args in _calls(text, name):
                if "allow_pickle=False" not in args:
                    problems.append(f"{rel}: {name} without allow_pickle=False")
        for bad in ("pickle.load(", "pickle.loads(", "cloudpickle", "import dill", "marshal.load",
                    "shelve.open", "yaml.load(", "yaml.unsafe_load"):
            if bad in text:
                problems.append(f"{rel}: uses {bad}")
        if re.search(r"(?<![\w.])(eval|exec)\(", text):
            problems.append(f"{rel}: eval/exec")
        if "pickle.Unpickler" in text and str(rel) != "data/cifar.py":
            problems.append(f"{rel}: a pickle.Unpickler outside the restricted CIFAR reader")
    assert problems == []


def test_the_scan_catches_what_it_should():
    assert _calls("x = torch.load(p, map_location=f(1))", "torch.load") == ["p, map_location=f(1)"]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _fashion(root: Path) -> None:
    rng = np.random.default_rng(0)
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    for split, n in (("train", 200), ("t10k", 16)):
        write_idx(d / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_config_paths_are_only_read_and_nothing_is_written_outside_out(
        tmp_path, monkeypatch, capsys, dataset):
    """data.root, topology.edge_file and topology.matrix_file point into inputs/; the run writes
    only into --out (cwd is the test folder, so a stray relative write would show too)."""
    import urllib.request

    import gossiplab.data.idx as idx

    inputs = tmp_path / "inputs"
    (inputs / "data").mkdir(parents=True)
    if dataset == "cifar10":  # download=true: the archive comes from the "network" into the cache
        sums = write_fake_cifar(tmp_path / "server", "cifar10")
        blob = (tmp_path / "server" / "cifar-10-python.tar.gz").read_bytes()

        class Response:
            def __init__(self):
                self.left = blob

            def read(self, n):
                chunk, self.left = self.left[:n], self.left[n:]
                return chunk

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
        import gossiplab.data.cifar as cifar

        real = cifar.load_cifar
        monkeypatch.setattr(cifar, "load_cifar",
                            lambda *a, **k: real(*a, **{**k, "checksums": sums}))
    else:
        _fashion(inputs / "data")
        monkeypatch.setattr(idx, "SYSTEM_DIR", tmp_path / "absent")
    (inputs / "g.edges").write_text("0 1\n1 2\n2 3\n3 0\n")
    (inputs / "w.txt").write_text("0.5 0.25 0 0.25\n0.25 0.5 0.25 0\n0 0.25 0.5 0.25\n"
                                  "0.25 0 0.25 0.5\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    before = _snapshot(inputs)
    rc = main(["run", "--quiet", "--out", "out", "--set", f"data.dataset={dataset}",
               "--set", f"data.root='{inputs / 'data'}'", "--set", "topology.name=file",
               "--set", "topology.nodes=4", "--set", f"topology.edge_file='{inputs / 'g.edges'}'",
               "--set", f"topology.matrix_file='{inputs / 'w.txt'}'", "--set", "optim.batch_size=2",
               "--set", "train.iterations=4", "--set", "eval.every=2", "--set", "model.name=logreg",
               *(["--set", "data.verify=false"] if dataset == "fashion_mnist" else [])])
    assert rc == 0, capsys.readouterr().err
    assert _snapshot(inputs) == before
    allowed = {"inputs", "out", "cache", "server", "absent"}
    assert {p.name for p in tmp_path.iterdir()} <= allowed
    if dataset == "cifar10":
        assert [p.name for p in cache.iterdir()] == ["cifar-10-python.tar.gz"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "ok"


def test_output_names_from_config_values_stay_inside_out(tmp_path, monkeypatch):
    """An algorithm registered under a hostile name: its checkpoint file is named safely."""
    from gossiplab import algorithms
    from gossiplab.run.runner import run_experiment

    class Hostile(algorithms.DSGDMGS):
        name = "../../../escaped"

    monkeypatch.setitem(algorithms.ALGORITHMS, Hostile.name, Hostile)
    cfg = load_config(None, ["topology.nodes=4", "optim.batch_size=8", "train.iterations=4",
                             f"algorithm.name='{Hostile.name}'",
                             "algorithm.compare_centralized=false"])
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    run_experiment(cfg, work / "out", checkpoint_every=2)
    assert sorted(tree(tmp_path)) == sorted(f"a/b/c/out/{f}" for f in tree(work / "out"))
    assert (work / "out" / "checkpoints" / "_escaped.pt").is_file()
