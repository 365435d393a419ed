"""IDX files (MNIST / Fashion-MNIST format), optionally gzip-compressed, validated on read."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

from gossiplab.errors import DataError

# md5 of the *decompressed* payloads of the published Fashion-MNIST files (robust to re-gzipping,
# e.g. Debian's dataset-fashion-mnist package recompresses them).
FASHION_MNIST = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_DIRS = ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", ".")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_DTYPES = {0x08: np.uint8}


def read_idx_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or corrupted") from None


def parse_idx(data: bytes, source: str, *, ndim: int) -> np.ndarray:
    """Parse an IDX payload: magic 0x0000 <dtype> <ndim>, big-endian int32 dims, then the data."""
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, nd = int.from_bytes(data[:2], "big"), data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero != 0 or dtype_code not in _DTYPES or nd != ndim:
        expected = (0x08 << 8) | ndim
        raise DataError(
            f"{source}: wrong magic number {magic:#010x} (expected {expected:#010x}: "
            f"unsigned bytes, {ndim} dimensions)"
        )
    header = 4 + 4 * nd
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    size = math.prod(dims)
    if len(data) - header != size:
        raise DataError(
            f"{source}: wrong size: header says {dims} = {size} bytes of data, "
            f"file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(root: Path, stem: str) -> Path | None:
    for base in [root / d for d in FASHION_MNIST_DIRS] + [SYSTEM_DIR]:
        for name in (stem, stem + ".gz"):
            p = base / name
            if p.is_file():
                return p
    return None


def load_fashion_mnist(
    root: str | Path, *, checksums: dict[str, str] | None = None, verify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train [60000,1,28,28] uint8, y_train, x_test, y_test) from IDX files.

    Searched in ``root``, ``root/fashion-mnist`` and /usr/share/datasets/fashion-mnist (Debian's
    ``dataset-fashion-mnist``). Payload md5s are checked unless ``verify=False``.
    """
    root = Path(root)
    expected = {**FASHION_MNIST, **(checksums or {})}
    out = {}
    for stem in FASHION_MNIST:
        path = _find(root, stem)
        if path is None:
            raise DataError(
                f"fashion_mnist: {stem}[.gz] not found in {root}, {root / 'fashion-mnist'} or "
                f"{SYSTEM_DIR}; install Debian's dataset-fashion-mnist "
                "(apt-get install dataset-fashion-mnist) or put the four IDX files in "
                f"{root / 'fashion-mnist'}"
            )
        data = read_idx_bytes(path)
        if verify and stem in expected:
            got = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if got != expected[stem]:
                raise DataError(
                    f"{path}: checksum mismatch (payload md5 {got}, expected {expected[stem]}); "
                    "the file is corrupted: fetch it again"
                )
        arr = parse_idx(data, str(path), ndim=3 if "images" in stem else 1)
        out[stem] = arr
    xtr, ytr = out["train-images-idx3-ubyte"], out["train-labels-idx1-ubyte"]
    xte, yte = out["t10k-images-idx3-ubyte"], out["t10k-labels-idx1-ubyte"]
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if x.shape[1:] != (28, 28):
            raise DataError(f"fashion_mnist {split}: images are {list(x.shape[1:])}, expected "
                            "28x28")
        if len(x) != len(y):
            raise DataError(f"fashion_mnist {split}: {len(x)} images but {len(y)} labels")
        if y.size and y.max() >= 10:
            raise DataError(f"fashion_mnist {split}: label values out of range [0, 10): max {y.max()}")
    return xtr[:, None], ytr.astype(np.int64), xte[:, None], yte.astype(np.int64)


def write_idx(path: str | Path, arr: np.ndarray, *, compress: bool = False) -> None:
    """Write a uint8 array as an IDX file (for tests and for exporting data)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    payload = header + arr.tobytes()
    Path(path).write_bytes(gzip.compress(payload) if compress else payload)
