"""CIFAR loading on small files in the exact published format; checksums and pickles refused."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from gossiplab.data.cifar import (
    SPECS,
    load_cifar,
    md5,
    python2_pickle,
    safe_load_batch,
    write_fake_cifar,
)
from gossiplab.errors import DataError


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_loads_generated_archive(tmp_path, name):
    sums = write_fake_cifar(tmp_path, name, n_train=50, n_test=20)
    xtr, ytr, xte, yte = load_cifar(name, tmp_path, download=False, checksums=sums)
    assert xtr.shape == (50, 3, 32, 32) and xtr.dtype == np.uint8
    assert xte.shape == (20, 3, 32, 32)
    assert ytr.max() < SPECS[name].num_classes
    assert len(ytr) == 50 and len(yte) == 20


def test_loads_extracted_folder(tmp_path):
    sums = write_fake_cifar(tmp_path, "cifar10", as_archive=False)
    xtr, *_ = load_cifar("cifar10", tmp_path, download=False, checksums=sums)
    assert xtr.shape[0] == 50


def test_image_layout_is_channel_planes(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", as_archive=False)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(),
                       encoding="latin1")
    xtr, *_ = load_cifar("cifar10", tmp_path, download=False, verify=False)
    # row 0 of the file: 1024 red, then 1024 green, then 1024 blue values, row-major 32x32
    np.testing.assert_array_equal(xtr[0, 1].reshape(-1), raw["data"][0, 1024:2048])


def test_wrong_checksum_is_refused(tmp_path):
    sums = write_fake_cifar(tmp_path, "cifar10")
    bad = dict(sums, **{"cifar-10-python.tar.gz": "0" * 32})
    with pytest.raises(DataError, match="checksum mismatch"):
        load_cifar("cifar10", tmp_path, download=False, checksums=bad)


def test_published_checksums_refuse_fake_files(tmp_path):
    write_fake_cifar(tmp_path, "cifar10")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_cifar("cifar10", tmp_path, download=False)


def test_truncated_archive_is_refused(tmp_path):
    write_fake_cifar(tmp_path, "cifar10")
    p = tmp_path / "cifar-10-python.tar.gz"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable"):
        load_cifar("cifar10", tmp_path, download=False, verify=False)


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/gossiplab_pwned",))


def test_python3_protocol2_pickles_of_arrays_are_refused_too():
    # a Python 3 pickle of an array reaches for _codecs.encode: not in the CIFAR format, refused
    blob = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, protocol=2)
    with pytest.raises(DataError, match="_codecs.encode"):
        safe_load_batch(blob, "py3")


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = "/tmp/gossiplab_pwned"
    import os

    if os.path.exists(marker):
        os.unlink(marker)
    evil = pickle.dumps({b"data": Boom(), b"labels": [0]}, protocol=2)
    with pytest.raises(DataError, match="not allowed"):
        safe_load_batch(evil, "evil")
    assert not os.path.exists(marker)

    # the same payload inside a well-formed archive, with matching checksums
    folder = tmp_path / "cifar-10-batches-py"
    sums = write_fake_cifar(tmp_path, "cifar10", as_archive=False)
    (folder / "data_batch_1").write_bytes(evil)
    sums["data_batch_1"] = md5(evil)
    with pytest.raises(DataError, match="not allowed"):
        load_cifar("cifar10", tmp_path, download=False, checksums=sums)
    assert not os.path.exists(marker)


def test_labels_out_of_range_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    sums = write_fake_cifar(tmp_path, "cifar10", as_archive=False)
    entry = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    blob = python2_pickle(entry)
    (folder / "test_batch").write_bytes(blob)
    sums["test_batch"] = md5(blob)
    with pytest.raises(DataError, match="out of range"):
        load_cifar("cifar10", tmp_path, download=False, checksums=sums)


def test_missing_files_name_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz.*c58f30108f718f92721af3b95e74349a"):
        load_cifar("cifar10", tmp_path, download=False)


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.request

    def fail(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="could not be downloaded"):
        load_cifar("cifar10", tmp_path, download=True)
    assert not list(tmp_path.rglob("*.part"))


def test_archive_missing_member(tmp_path):
    p = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="has no member"):
        load_cifar("cifar10", tmp_path, download=False, verify=False)


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_goes_to_the_cache_never_into_data_root(tmp_path, monkeypatch):
    import urllib.request

    src = tmp_path / "server"
    sums = write_fake_cifar(src, "cifar10")
    blob = (src / "cifar-10-python.tar.gz").read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(blob))
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "root"
    root.mkdir()
    xtr, *_ = load_cifar("cifar10", root, download=True, checksums=sums)
    assert xtr.shape == (50, 3, 32, 32)
    assert list(root.iterdir()) == []  # data.root is only read
    assert (tmp_path / "cache" / "cifar-10-python.tar.gz").read_bytes() == blob
    # a second load reads the cached archive, no network
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded again"))
    load_cifar("cifar10", root, download=True, checksums=sums)


def test_corrupted_download_is_not_kept(tmp_path, monkeypatch):
    import urllib.request

    src = tmp_path / "server"
    sums = write_fake_cifar(src, "cifar10")
    blob = (src / "cifar-10-python.tar.gz").read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(blob[:-10]))
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="download .* is corrupted"):
        load_cifar("cifar10", tmp_path / "root", download=True, checksums=sums)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing that looks like the archive
