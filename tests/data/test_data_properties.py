"""Property-based: generated and mutated IDX payloads, CIFAR batch pickles and archives either load
or fail with a DataError; never another exception, never code from a pickle."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gossiplab.data.cifar import (
    SPECS,
    _parse_batch,
    load_cifar,
    python2_pickle,
    safe_load_batch,
    write_fake_cifar,
)
from gossiplab.data.idx import parse_idx
from gossiplab.errors import DataError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def idx_payloads(draw):
    """Mostly well-formed IDX payloads, each with one possible defect (type code, dimension count,
    a huge dimension, a body a few bytes off, truncation)."""
    ndim = draw(st.integers(1, 4))
    dims = [draw(st.integers(0, 5)) for _ in range(ndim)]
    if draw(st.integers(0, 7)) == 0:
        dims[draw(st.integers(0, ndim - 1))] = draw(st.sampled_from([2**31, 2**32 - 1]))
    code = 0x08 if draw(st.integers(0, 3)) else draw(st.sampled_from([0x09, 0x0B, 0x0D]))
    header = bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    n = int(np.prod(dims)) if max(dims) < 6 else 3
    delta = 0 if draw(st.integers(0, 2)) else draw(st.sampled_from([-2, -1, 1, 2]))
    data = header + draw(st.binary(min_size=max(0, n + delta), max_size=max(0, n + delta)))
    if draw(st.integers(0, 7)) == 0:
        data = data[:draw(st.integers(0, len(data) - 1))]
    expected = ndim if draw(st.integers(0, 3)) else draw(st.integers(1, 3))
    return data, expected


@SETTINGS
@given(st.one_of(idx_payloads(), st.tuples(st.binary(max_size=40), st.integers(1, 3))))
def test_idx_parse_loads_or_refuses(payload):
    data, ndim = payload
    try:
        arr = parse_idx(data, "f.idx", ndim=ndim)
    except DataError as e:
        assert str(e).startswith("f.idx: ") and "\n" not in str(e)
        event(str(e).split(":")[1].split("(")[0].strip()[:20])
        return
    event("parsed")
    assert arr.dtype == np.uint8 and arr.ndim == ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    assert list(arr.shape) == dims and len(data) == 4 + 4 * ndim + arr.size


GOOD_BATCH = python2_pickle({"batch_label": "b", "labels": [1, 2, 3],
                             "data": np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072) % 251,
                             "filenames": ["a", "b", "c"]})


@st.composite
def mutated(draw, blob: bytes):
    b = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del b[i:i + draw(st.integers(1, 64))]
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(b)


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/gossiplab_prop_pwned",))


EVIL = pickle.dumps({"data": Boom(), "labels": [0]}, protocol=2)


@SETTINGS
@given(st.one_of(mutated(GOOD_BATCH), st.binary(max_size=200), mutated(EVIL), st.just(GOOD_BATCH)))
def test_cifar_batch_loads_or_refuses_and_never_runs_code(blob):
    marker = "/tmp/gossiplab_prop_pwned"
    try:
        entry = safe_load_batch(blob, "data_batch_1")
        x, y = _parse_batch(entry, SPECS["cifar10"], "data_batch_1")
    except DataError as e:
        assert str(e).startswith("data_batch_1: ") and "\n" not in str(e)
        event("refused")
    else:
        event("loaded")
        assert x.shape == (len(y), 3, 32, 32) and x.dtype == np.uint8
        assert y.size == 0 or (y.min() >= 0 and y.max() < 10)
    assert not os.path.exists(marker)


_ARCHIVE_DIR = tempfile.mkdtemp(prefix="gl-cifar-prop-")
_SUMS = write_fake_cifar(_ARCHIVE_DIR, "cifar10", n_train=10, n_test=4)
ARCHIVE = (Path(_ARCHIVE_DIR) / "cifar-10-python.tar.gz").read_bytes()


def _raw_tar_with(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.just(ARCHIVE), mutated(ARCHIVE), st.binary(max_size=300),
                 st.builds(_raw_tar_with, st.sampled_from(["cifar-10-batches-py/data_batch_1",
                                                           "../../escape", "/abs"]),
                           st.binary(max_size=50))),
       st.booleans())
def test_cifar_archive_loads_or_refuses(blob, verify):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "cifar-10-python.tar.gz").write_bytes(blob)
        before = sorted(p.name for p in Path(d).rglob("*"))
        try:
            load_cifar("cifar10", d, download=False, verify=verify, checksums=_SUMS)
        except DataError as e:
            assert "\n" not in str(e)
            event("refused")
        else:
            event("loaded")
        assert sorted(p.name for p in Path(d).rglob("*")) == before  # nothing extracted to disk


GZ_IDX = __import__("gzip").compress(bytes([0, 0, 8, 1]) + (200).to_bytes(4, "big") + bytes(range(200)))


@SETTINGS
@given(mutated(GZ_IDX))
def test_damaged_gzip_idx_files_are_refused(blob):
    from gossiplab.data.idx import read_idx_bytes

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t10k-labels-idx1-ubyte.gz"
        p.write_bytes(blob)
        try:
            data = read_idx_bytes(p)
            parse_idx(data, str(p), ndim=1)
        except DataError as e:
            assert str(p) in str(e)
            event("refused")
        else:
            event("loaded")
