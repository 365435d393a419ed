"""CIFAR-10/100 from the standard python-version archives, checksummed, without running pickles.

The batch files are pickles of a dict holding a numpy array and lists. They are read with a
restricted unpickler that admits exactly the globals such files contain (numpy's array
reconstruction), so a crafted file cannot execute code.

``data.root`` is only ever read. A missing archive is downloaded into the user's cache folder
(:func:`cache_dir`), never into ``data.root``, and only moved into place once its md5 matches.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gossiplab.errors import DataError


@dataclass(frozen=True)
class CifarSpec:
    name: str
    archive: str
    archive_md5: str
    url: str
    folder: str
    train: tuple[tuple[str, str], ...]
    test: tuple[tuple[str, str], ...]
    label_key: str
    num_classes: int


CIFAR10 = CifarSpec(
    name="cifar10",
    archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train=(
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ),
    test=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
    label_key="labels",
    num_classes=10,
)

CIFAR100 = CifarSpec(
    name="cifar100",
    archive="cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    folder="cifar-100-python",
    train=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
    test=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    label_key="fine_labels",
    num_classes=100,
)

SPECS = {"cifar10": CIFAR10, "cifar100": CIFAR100}

# Exactly the globals a CIFAR batch pickle references: numpy's array reconstruction (under its
# numpy 1.x and 2.x module paths). Nothing else, so no pickle can reach a callable with effects.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed in a CIFAR batch")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core"):]  # numpy 2 home, no warning
        return super().find_class(module, name)


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


def safe_load_batch(data: bytes, source: str) -> dict:
    """Unpickle one CIFAR batch with :class:`RestrictedUnpickler`; refuse anything else.

    The published files were written by Python 2; ``latin1`` maps their byte strings 1:1, which
    is what numpy needs to rebuild the arrays (numpy's documented way to read such pickles).
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{source}: refused: {_one_line(e)}") from None
    except Exception as e:  # truncated or garbled pickles raise many types
        raise DataError(f"{source}: not a readable CIFAR batch ({type(e).__name__}: "
                        f"{_one_line(e)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{source}: not a CIFAR batch (a {type(obj).__name__}, expected a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _parse_batch(entry: dict, spec: CifarSpec, source: str) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in entry or spec.label_key not in entry:
        raise DataError(f"{source}: missing 'data' or '{spec.label_key}' entry")
    x = entry["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{source}: 'data' is not a uint8 array of shape [N, 3072]")
    y = np.asarray(entry[spec.label_key], dtype=np.int64)
    if y.shape != (x.shape[0],):
        raise DataError(f"{source}: {len(y)} labels for {x.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        raise DataError(
            f"{source}: label values out of range [0, {spec.num_classes}): "
            f"min {y.min()}, max {y.max()}"
        )
    return x.reshape(-1, 3, 32, 32), y


def cache_dir() -> Path:
    """Where downloads go: ``$GOSSIPLAB_CACHE``, else ``$XDG_CACHE_HOME/gossiplab``, else
    ``~/.cache/gossiplab``. Never a folder named by the config."""
    env = os.environ.get("GOSSIPLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gossiplab"


def _download(spec: CifarSpec, dest: Path, root: Path, expected_md5: str | None,
              timeout: float = 20.0) -> None:
    """Fetch the archive to a private temporary file next to ``dest``; move it into place only
    when complete and (if ``expected_md5``) matching, so a failed or corrupt download leaves
    nothing behind that looks like the archive."""
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        digest = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(spec.url, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
            f.flush()
            os.fsync(f.fileno())
        if expected_md5 is not None and digest.hexdigest() != expected_md5:
            raise DataError(f"{spec.name}: the download from {spec.url} is corrupted (md5 "
                            f"{digest.hexdigest()}, expected {expected_md5}); try again later")
        os.replace(tmp, dest)
        tmp = None
    except OSError as e:
        raise DataError(
            f"{spec.name}: {spec.archive} not found in {root} and could not be downloaded ({e}); "
            f"put {spec.archive} (md5 {spec.archive_md5}) or the extracted folder "
            f"'{spec.folder}/' in {root}"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def load_cifar(
    name: str,
    root: str | Path,
    *,
    download: bool = True,
    checksums: dict[str, str] | None = None,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test) as uint8 [N,3,32,32] and int64 arrays.

    Looks for ``root/<folder>/`` (extracted) first, then ``root/<archive>``, then the archive in
    :func:`cache_dir`; downloads it there when allowed and reachable (``root`` is never written).
    ``checksums`` (file name -> md5) overrides the published md5s (used by tests with generated
    files); ``verify=False`` skips them.
    """
    spec = SPECS[name]
    root = Path(root)
    expected = {spec.archive: spec.archive_md5, **dict(spec.train), **dict(spec.test)}
    if checksums is not None:
        expected = {**expected, **checksums}

    def check(fname: str, data: bytes, source: str) -> None:
        if verify and fname in expected and md5(data) != expected[fname]:
            raise DataError(
                f"{source}: checksum mismatch (md5 {md5(data)}, expected {expected[fname]}); "
                "the file is corrupted or truncated: delete it and fetch it again"
            )

    files: dict[str, bytes] = {}
    folder = root / spec.folder
    wanted = [f for f, _ in spec.train + spec.test]
    if folder.is_dir() and all((folder / f).is_file() for f in wanted):
        for f in wanted:
            data = _read(folder / f)
            check(f, data, str(folder / f))
            files[f] = data
    else:
        archive = root / spec.archive
        if not archive.is_file():
            cached = cache_dir() / spec.archive
            if not cached.is_file():
                if not download:
                    raise DataError(
                        f"{spec.name}: expected {archive} (md5 {spec.archive_md5}) or the "
                        f"extracted folder {folder}/; download it from {spec.url} and put it there"
                    )
                _download(spec, cached, root, expected[spec.archive] if verify else None)
            archive = cached
        blob = _read(archive)
        check(spec.archive, blob, str(archive))
        try:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                for f in wanted:
                    try:
                        member = tar.getmember(f"{spec.folder}/{f}")
                    except KeyError:
                        raise DataError(f"{archive}: has no member {spec.folder}/{f}") from None
                    fh = tar.extractfile(member)
                    if fh is None:
                        raise DataError(f"{archive}: {spec.folder}/{f} is not a regular file")
                    data = fh.read()
                    check(f, data, f"{archive}:{spec.folder}/{f}")
                    files[f] = data
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DataError(f"{archive}: not a readable .tar.gz archive ({_one_line(e)})") from None

    def stack(names: tuple[tuple[str, str], ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f, _ in names:
            x, y = _parse_batch(safe_load_batch(files[f], f), spec, f)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = stack(spec.train)
    x_test, y_test = stack(spec.test)
    return x_train, y_train, x_test, y_test


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler that writes strings as Python 2 ``str`` (BINSTRING opcodes) and numpy
    under its 1.x module path: the byte layout of the published CIFAR batch files."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):  # noqa: D401 - pickle API
        module = getattr(obj, "__module__", "")
        if module.startswith("numpy._core"):
            qual = name or obj.__qualname__
            self.write(pickle.GLOBAL + f"numpy.core{module[len('numpy._core'):]}\n{qual}\n"
                       .encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type] = save_global


def python2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Python2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_fake_cifar(
    root: str | Path, name: str = "cifar10", *, n_train: int = 50, n_test: int = 20,
    seed: int = 0, as_archive: bool = True,
) -> dict[str, str]:
    """Write a small CIFAR dataset in the exact published format (protocol-2 pickles of dicts with
    bytes keys and a uint8 [N, 3072] array, inside a .tar.gz). Returns the md5 of every file, to be
    passed as ``checksums``. For tests and demos; the images are random."""
    spec = SPECS[name]
    root = Path(root)
    rng = np.random.default_rng(seed)
    folder = root / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    sums: dict[str, str] = {}
    batches = [(f, n_train // len(spec.train)) for f, _ in spec.train] + [
        (f, n_test) for f, _ in spec.test
    ]
    for fname, n in batches:
        entry = {
            "batch_label": f"training batch {fname}",
            spec.label_key: rng.integers(0, spec.num_classes, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        data = python2_pickle(entry)
        (folder / fname).write_bytes(data)
        sums[fname] = md5(data)
    if as_archive:
        archive = root / spec.archive
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname=spec.folder)
        sums[spec.archive] = md5(archive.read_bytes())
        for fname, _ in batches:
            (folder / fname).unlink()
        folder.rmdir()
    return sums
