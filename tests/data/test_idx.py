import numpy as np
import pytest

from gossiplab.data.idx import FASHION_MNIST, SYSTEM_DIR, load_fashion_mnist, parse_idx, write_idx
from gossiplab.errors import DataError


def _write_fake(root, n=30, compress=True, labels=None):
    d = root / "fashion-mnist"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sfx = ".gz" if compress else ""
    for split, count in (("train", n), ("t10k", n // 2)):
        write_idx(d / f"{split}-images-idx3-ubyte{sfx}",
                  rng.integers(0, 256, (count, 28, 28)), compress=compress)
        lab = rng.integers(0, 10, count) if labels is None else labels[:count]
        write_idx(d / f"{split}-labels-idx1-ubyte{sfx}", lab, compress=compress)
    return d


@pytest.mark.parametrize("compress", [True, False])
def test_roundtrip(tmp_path, compress):
    _write_fake(tmp_path, compress=compress)
    xtr, ytr, xte, yte = load_fashion_mnist(tmp_path, verify=False)
    assert xtr.shape == (30, 1, 28, 28) and xte.shape == (15, 1, 28, 28)
    assert ytr.dtype == np.int64


def test_checksum_checked(tmp_path):
    _write_fake(tmp_path)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_fashion_mnist(tmp_path)


def test_wrong_magic_and_wrong_size():
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + b"\x01\x02\x03"
    assert parse_idx(good, "x", ndim=1).tolist() == [1, 2, 3]
    with pytest.raises(DataError, match="wrong magic"):
        parse_idx(bytes([0, 0, 9, 1]) + good[4:], "x", ndim=1)
    with pytest.raises(DataError, match="wrong magic"):
        parse_idx(good, "x", ndim=3)
    with pytest.raises(DataError, match="wrong size"):
        parse_idx(good[:-1], "x", ndim=1)


def test_labels_out_of_range(tmp_path):
    _write_fake(tmp_path, labels=np.full(30, 12))
    with pytest.raises(DataError, match="out of range"):
        load_fashion_mnist(tmp_path, verify=False)


def test_truncated_gzip(tmp_path):
    d = _write_fake(tmp_path)
    p = d / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_fashion_mnist(tmp_path, verify=False)


@pytest.mark.skipif(not (SYSTEM_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package(tmp_path):
    xtr, ytr, xte, yte = load_fashion_mnist(tmp_path)
    assert xtr.shape == (60000, 1, 28, 28) and xte.shape == (10000, 1, 28, 28)
    assert np.bincount(ytr).tolist() == [6000] * 10
    assert set(FASHION_MNIST) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
