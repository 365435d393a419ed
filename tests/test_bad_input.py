"""Every kind of bad input, end to end through the command line (``gossiplab.cli.main``, the code
path of the installed command): one line naming the field or file and the problem, exit status 2,
no traceback, and nothing written to the output folder. ``--debug`` shows the traceback."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from gossiplab.cli import main
from gossiplab.data.cifar import md5, python2_pickle, write_fake_cifar
from gossiplab.data.idx import write_idx

RUN = ["run", "--quiet"]


def run_cli(capsys, tmp_path, args):
    out = tmp_path / "out"
    rc = main([*[a.replace("{tmp}", str(tmp_path)) for a in args], "--out", str(out)]
              if args[:1] == ["run"] else [a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    return rc, err, out


def assert_clear_error(rc, err, out, expected):
    assert rc == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gossiplab: error: "), err
    assert not out.exists() or not any(out.iterdir()), "bad input left files behind"


# -- config ---------------------------------------------------------------------------------------

CONFIG_CASES = [
    (["optim.lrr=0.1"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (["topolgy.nodes=4"], "unknown config key 'topolgy' (did you mean 'topology'?)"),
    (["nodes=4"], "did you mean 'topology.nodes'"),
    (["optim.lr='fast'"], "config optim.lr: Input should be a valid number"),
    (["topology.nodes=2.5"], "config topology.nodes: Input should be a valid integer"),
    (["topology.nodes=true"], "config topology.nodes: expected a number, got a boolean"),
    (["model.hidden=5"], "config model.hidden: Input should be a valid list"),
    (["model.hidden=[true]"], "config model.hidden: expected a number, got a boolean"),
    (["data.augment=3"], "config data.augment: Input should be a valid boolean"),
    (["topology.nodes=0"], "config topology.nodes: Input should be greater than or equal to 1"),
    (["topology.nodes=-3"], "config topology.nodes: Input should be greater than or equal to 1"),
    (["algorithm.gossip_steps=-1"], "config algorithm.gossip_steps: Input should be greater than"),
    (["data.alpha=0"], "config data.alpha: Input should be greater than 0"),
    (["data.alpha=-0.5"], "config data.alpha: Input should be greater than 0"),
    (["data.alpha=inf"], "config data.alpha: Input should be a finite number"),
    (["data.alpha=1.7e308"], "data.alpha = 1.7e+308 is too large for a Dirichlet draw"),
    (["data.alpha=1.7e308", "data.samples_per_node=50"],
     "data.alpha = 1.7e+308 is too large for a Dirichlet draw"),
    (["optim.lr=0"], "config optim.lr: Input should be greater than 0"),
    (["optim.lr=-0.1"], "config optim.lr: Input should be greater than 0"),
    (["optim.lr=nan"], "config optim.lr"),
    (["optim.momentum=1"], "config optim.momentum: Input should be less than 1"),
    (["optim.batch_size=0"], "config optim.batch_size"),
    (["optim.batch_size=500"], "optim.batch_size = 500 is larger than the smallest node's data"),
    (["data.samples_per_node=500"], "data.samples_per_node = 500 with 16 nodes needs 8000"),
    (["data.samples_per_node=0"], "config data.samples_per_node"),
    (["topology.nodes=5000"], "topology.nodes = 5000 but the dataset has only 1437"),
    (["train.iterations=0"], "config train.iterations"),
    (["eval.every=0"], "config eval.every"),
    (["seeds.data=-1"], "config seeds.data: Input should be greater than or equal to 0"),
    (["topology.name='moon'"], "topology.name: unknown topology 'moon'"),
    (["topology.name=rign"], "topology.name: unknown topology 'rign' (did you mean 'ring'?)"),
    (["model.name=mpl"], "model.name: unknown model 'mpl' (did you mean 'mlp'?)"),
    (["data.dataset=cifar"], "data.dataset: unknown dataset 'cifar' (did you mean 'cifar10'?)"),
    (["algorithm.name=dsgd"], "algorithm.name: unknown algorithm 'dsgd' (did you mean"),
    (["algorithm.gossip=fancy"], "algorithm.gossip: unknown gossip scheme 'fancy'"),
    (["topology.mixing=metro"], "topology.mixing: unknown mixing rule 'metro'"),
    (["data.partition=bogus"], "data.partition: unknown partition 'bogus'"),
    (["optim.schedule=warp"], "config optim.schedule: Input should be 'constant'"),
    (["engine.device=tpu"], "engine.device: unknown device 'tpu'"),
    (["topology.shape=[1,2,3]"], "config topology.shape: List should have at most 2 items"),
    (["topology.shape=[-4,-4]"], "config topology.shape.0: Input should be greater than"),
    (["topology.name=torus", "topology.shape=[3,3]"], "topology.shape [3, 3] has 9 cells but nodes"),
    (["topology.name=torus", "topology.nodes=13"], "cannot lay 13 nodes on a 2-D grid"),
    (["topology.name=hypercube", "topology.nodes=6"], "needs a power-of-two node count"),
    (["topology.name=erdos_renyi", "topology.er_p=0.05"], "is not connected: "),
    (["topology.er_p=0"], "config topology.er_p"),
    (["topology.laziness=1"], "config topology.laziness: Input should be less than 1"),
    (["topology.name=file"], "topology.name = 'file' needs topology.edge_file"),
    (["model.hidden=[-1]"], "config model.hidden.0: Input should be greater than or equal to 1"),
    (["model.hidden=[0]"], "config model.hidden.0"),
    (["model.name=resnet18", "model.width=8", "model.gn_groups=3", "data.dataset=synthetic",
      "data.synthetic_shape=[3,8,8]"], "model.gn_groups = 3 must divide model.width = 8"),
    (["model.name=cnn", "data.dataset=synthetic", "data.synthetic_shape=[5]"],
     "model 'cnn' needs [C, H, W] images"),
    (["data.dataset=synthetic", "data.synthetic_shape=[0]"], "config data.synthetic_shape: must be"),
    (["data.dataset=synthetic", "data.synthetic_shape=[64]", "data.augment=true"],
     "data.augment needs image data"),
    (["data.dataset=synthetic", "data.synthetic_classes=1"], "config data.synthetic_classes"),
    (["data.partition=shards", "data.shards_per_node=1000"], "data.shards_per_node = 1000 with 16"),
    (["novalue"], "--set expects key=value"),
    (["optim=3"], "config key 'optim' must be a section"),
    (["optim.lr.x=3"], "config optim.lr: Input should be a valid number"),
    (["a..b=1"], "--set: malformed key"),
]


@pytest.mark.parametrize("overrides, expected", CONFIG_CASES,
                         ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_config_values(capsys, tmp_path, overrides, expected):
    args = [*RUN, *[a for o in overrides for a in ("--set", o)]]
    assert_clear_error(*run_cli(capsys, tmp_path, args), expected)


def test_no_cuda_is_a_clear_error(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    rc, err, out = run_cli(capsys, tmp_path, [*RUN, "--set", "engine.device=cuda"])
    assert_clear_error(rc, err, out, "engine.device = 'cuda' but no CUDA device")


CONFIG_FILES = [
    (b'[optim]\nlr = 0.1\nbatchsize = 8\n', "unknown config key 'optim.batchsize' (did you mean"),
    (b'[optim\nlr = ', "invalid TOML"),
    (b'\xff\xfe[optim]\n', "line 1 (byte 0) is not UTF-8; expected TOML text"),
    (b'[topology]\nnodes = "four"\n', "config topology.nodes: Input should be a valid integer"),
    (b'topology = 3\n', "config key 'topology' must be a section"),
]


@pytest.mark.parametrize("content, expected", CONFIG_FILES, ids=[c[1][:30] for c in CONFIG_FILES])
def test_bad_config_files(capsys, tmp_path, content, expected):
    (tmp_path / "c.toml").write_bytes(content)
    rc, err, out = run_cli(capsys, tmp_path, [*RUN, "--config", "{tmp}/c.toml"])
    assert_clear_error(rc, err, out, expected)
    assert str(tmp_path / "c.toml") in err or "config key" in err or "config topology" in err


@pytest.mark.parametrize("path, expected", [("{tmp}/none.toml", "config file not found"),
                                            ("{tmp}", "is a folder, not a regular file")])
def test_missing_or_unreadable_config_file(capsys, tmp_path, path, expected):
    assert_clear_error(*run_cli(capsys, tmp_path, [*RUN, "--config", path]), expected)


# -- graphs and mixing matrices from files --------------------------------------------------------

W4 = "0.5 0.25 0 0.25\n0.25 0.5 0.25 0\n0 0.25 0.5 0.25\n0.25 0 0.25 0.5\n"  # ring of 4, valid


def _npy(arr, **kw):
    def write(path):
        np.save(path, arr, **kw)
    return write


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/gossiplab_npy_pwned",))


GRAPH_CASES = [
    # (edge file, matrix file, expected message)
    ("0 1 2\n", None, "line 1: expected two node ids 'u v', found 3 fields"),
    ("0 x\n", None, "line 1: expected two node ids 'u v' (integers)"),
    ("0 -1\n", None, "line 1: negative node id"),
    ("0 1\n1 1\n2 3\n3 0\n", None, "line 2: self-loop 1-1 is not allowed"),
    ("# nothing\n\n", None, "contains no edges"),
    ("0 1\n1 9\n", None, "line 2: node 9 but nodes = 4"),
    ("0 1\n2 3\n", None, "is not connected: 2 components (sizes 2, 2; node 2 cannot reach node 0)"),
    ("0 1\n1 2\n", None, "is not connected: 2 components (sizes 3, 1; node 3 cannot reach node 0)"),
    (b"\xff\xfe0 1\n", None, "line 1 (byte 0) is not UTF-8"),
    (None, W4.replace("0.5 0.25 0 0.25", "0.5 0.35 0 0.15"),
     "is not symmetric: |W[0,"),
    (None, W4.replace("0.5", "0.6", 1).replace("0.5 0.25 0 0.25", "0.6 0.25 0 0.25"),
     "is not doubly stochastic: row 0 sums to 1.1"),
    (None, "1.1 -0.1 0 0\n-0.1 0.6 0.5 0\n0 0.5 0 0.5\n0 0 0.5 0.5\n",
     "is not non-negative: W[0,1] = -0.1"),
    (None, "0.5 0.5 0\n0.5 0 0.5\n0 0.5 0.5\n", "has wrong size: 3x3 but nodes = 4"),
    (None, "0.5 0.5 0 0\n0.5 0.5 0 0\n", "is not square: shape (2, 4)"),
    (None, "0.5 0.5\n0.5 0.5 0\n", "is not a rectangular table of numbers"),
    (None, "0.5 half 0 0\n", "line 1: expected numbers separated by spaces or commas"),
    (None, W4.replace("0.5", "nan", 1), "has non-finite entries"),
    (None, "0.5 0.5 0 0\n0.5 0.5 0 0\n0 0 0.5 0.5\n0 0 0.5 0.5\n",
     "does not connect the nodes: its nonzero pattern has 2 components"),
    ("0 1\n1 2\n2 3\n", W4, "is not supported on the graph's edges: W[0,3] = 0.25"),
    (None, _npy(np.eye(4) * (1 + 1j)), "is not real-valued"),
    (None, _npy(np.ones((4, 4, 1))), "is not square: shape (4, 4, 1)"),
    (None, _npy(np.array([Evil()], dtype=object), allow_pickle=True),
     "it holds Python objects (a pickle), refused"),
    (None, lambda p: p.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'"), "cannot read mixing"),
]


@pytest.mark.parametrize("edges, matrix, expected", GRAPH_CASES, ids=[c[2][:40] for c in GRAPH_CASES])
def test_bad_graph_and_matrix_files(capsys, tmp_path, edges, matrix, expected):
    marker = "/tmp/gossiplab_npy_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    args = [*RUN, "--set", "topology.name=file", "--set", "topology.nodes=4",
            "--set", "optim.batch_size=4"]
    files = []
    for name, spec in (("g.edges", edges), ("w.npy" if callable(matrix) else "w.txt", matrix)):
        if spec is None:
            continue
        p = tmp_path / "in" / name
        p.parent.mkdir(exist_ok=True)
        if callable(spec):
            spec(p)
        elif isinstance(spec, bytes):
            p.write_bytes(spec)
        else:
            p.write_text(spec)
        files.append(p)
        key = "edge_file" if name == "g.edges" else "matrix_file"
        args += ["--set", f"topology.{key}='{p}'"]
    rc, err, out = run_cli(capsys, tmp_path, args)
    assert_clear_error(rc, err, out, expected)
    assert any(str(p) in err for p in files), "the message names the file"
    assert not os.path.exists(marker)


def test_valid_matrix_file_runs(capsys, tmp_path):
    (tmp_path / "w.txt").write_text(W4)
    rc = main([*RUN, "--out", str(tmp_path / "out"), "--set", "topology.name=file",
               "--set", "topology.nodes=4", "--set", f"topology.matrix_file='{tmp_path}/w.txt'",
               "--set", "train.iterations=3", "--no-checkpoint"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("args, expected", [
    (["topology", "file", "--nodes", "4", "--edge-file", "{tmp}/none"], "edge list not found: {tmp}/none"),
    (["topology", "torus", "--shape", "-4", "-4"], "topology.shape must be [rows, cols] with positive"),
    (["topology", "ring", "--laziness", "1.5"], "topology.laziness must be in [0, 1)"),
    (["topology", "ring", "--nodes", "0"], "nodes must be >= 1"),
    (["topology", "ring", "--mixing", "metro"], "unknown mixing rule 'metro'"),
    (["topology", "ring", "--plot", "{tmp}/x.xyz"], "--plot {tmp}/x.xyz: cannot save the picture"),
])
def test_bad_topology_command_input(capsys, tmp_path, args, expected):
    rc, err, out = run_cli(capsys, tmp_path, args)
    assert_clear_error(rc, err, out, expected.replace("{tmp}", str(tmp_path)))


# -- data files -------------------------------------------------------------------------------------


def _fashion(root, *, magic=None, size_delta=0, labels=None, shape=(28, 28), truncate=None):
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, *shape)), compress=True)
        lab = rng.integers(0, 10, n) if labels is None else np.full(n, labels)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", lab, compress=True)
    p = d / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    if magic is not None:
        raw = magic + raw[4:]
    if size_delta:
        raw = raw[:size_delta] if size_delta < 0 else raw + b"\0" * size_delta
    p.write_bytes(gzip.compress(raw))
    if truncate:
        img = d / "train-images-idx3-ubyte.gz"
        img.write_bytes(img.read_bytes()[:truncate])


def _cifar(root, *, bad_labels=False, evil=False, bad_data=False, truncate=False):
    write_fake_cifar(root, "cifar10", as_archive=not (bad_labels or evil or bad_data))
    batch = root / "cifar-10-batches-py" / "test_batch"
    if bad_labels:
        batch.write_bytes(python2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}))
    if bad_data:
        batch.write_bytes(python2_pickle({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    if evil:
        batch.write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}, protocol=2))
    if truncate:
        a = root / "cifar-10-python.tar.gz"
        a.write_bytes(a.read_bytes()[:300])


DATA_CASES = [
    ("fashion_mnist", lambda r: None, ["data.verify=true"],
     "fashion_mnist: train-images-idx3-ubyte[.gz] not found"),
    ("fashion_mnist", _fashion, [], "checksum mismatch (payload md5"),
    ("fashion_mnist", lambda r: _fashion(r, truncate=200), ["data.verify=false"],
     "the file is truncated or corrupted"),
    ("fashion_mnist", lambda r: _fashion(r, magic=b"\0\0\x08\x03"), ["data.verify=false"],
     "wrong magic number 0x00000803 (expected 0x00000801"),
    ("fashion_mnist", lambda r: _fashion(r, size_delta=-3), ["data.verify=false"],
     "wrong size: header says [40] = 40 bytes of data, file has 37"),
    ("fashion_mnist", lambda r: _fashion(r, labels=12), ["data.verify=false"],
     "label values out of range [0, 10): max 12"),
    ("fashion_mnist", lambda r: _fashion(r, shape=(32, 32)), ["data.verify=false"],
     "images are [32, 32], expected 28x28"),
    ("cifar10", lambda r: None, ["data.download=false"], "cifar10: expected"),
    ("cifar10", lambda r: write_fake_cifar(r, "cifar10"), [], "checksum mismatch (md5"),
    ("cifar10", lambda r: _cifar(r, truncate=True), ["data.verify=false"],
     "not a readable .tar.gz archive"),
    ("cifar10", lambda r: _cifar(r, bad_labels=True), ["data.verify=false"],
     "test_batch: label values out of range [0, 10): min 0, max 10"),
    ("cifar10", lambda r: _cifar(r, bad_data=True), ["data.verify=false"],
     "'data' is not a uint8 array of shape [N, 3072]"),
    ("cifar10", lambda r: _cifar(r, evil=True), ["data.verify=false"],
     "refused: global 'posix.system' is not allowed"),
]


@pytest.mark.parametrize("dataset, make, extra, expected", DATA_CASES,
                         ids=[f"{c[0]}-{c[3][:30]}" for c in DATA_CASES])
def test_bad_data_files(capsys, tmp_path, monkeypatch, dataset, make, extra, expected):
    import urllib.request

    import gossiplab.data.idx as idx

    monkeypatch.setattr(idx, "SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    marker = "/tmp/gossiplab_npy_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    args = [*RUN, "--set", f"data.dataset={dataset}", "--set", f"data.root='{root}'"]
    args += [a for e in extra for a in ("--set", e)]
    assert_clear_error(*run_cli(capsys, tmp_path, args), expected)
    assert not os.path.exists(marker)


def test_cifar_download_failure_names_the_file_and_where_to_put_it(capsys, tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(tmp_path / "cache"))
    rc, err, out = run_cli(capsys, tmp_path, [*RUN, "--set", "data.dataset=cifar10",
                                              "--set", f"data.root='{tmp_path}/data'"])
    assert_clear_error(rc, err, out, "could not be downloaded (network unreachable); put "
                       "cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a)")


def test_md5_of_generated_batches_is_checked_when_given(tmp_path):
    # the CLI path above uses the published md5s; the generated-file path has its own
    sums = write_fake_cifar(tmp_path, "cifar10")
    assert md5((tmp_path / "cifar-10-python.tar.gz").read_bytes()) == sums["cifar-10-python.tar.gz"]


# -- --debug ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    [*RUN, "--set", "optim.lrr=1"],
    [*RUN, "--set", "topology.name=file", "--set", "topology.edge_file='{tmp}/none'"],
    ["topology", "hypercube", "--nodes", "6"],
])
def test_debug_shows_the_traceback(capsys, tmp_path, args):
    rc = main(["--debug", *[a.replace("{tmp}", str(tmp_path)) for a in args]])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback (most recent call last)" in err and "gossiplab: error:" in err


def test_control_characters_in_a_name_stay_on_one_line(capsys, tmp_path):
    rc, err, out = run_cli(capsys, tmp_path, ["topology", "ri\nng", "--json"])
    assert_clear_error(rc, err, out, "unknown topology 'ri\\nng'")
