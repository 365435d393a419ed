"""Datasets as in-memory tensors with per-batch normalisation, chosen by name.

Images stay in their compact stored dtype (uint8 for CIFAR and Fashion-MNIST) and are converted
and normalised per mini-batch, so a 50,000-image CIFAR set costs 150 MB, not 600 MB.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gossiplab.errors import ConfigError, unknown

# Largest normalised copy of a training set kept for :meth:`Dataset.train_batch`: small, since it
# pays only where a step's arithmetic is tiny (MLPs on small data; digits: 0.5 MB) and counts
# against the memory of every run (1,024 CIFAR-shaped images would be 12.6 MB).
MODEL_INPUT_CACHE_BYTES = 8 << 20


@dataclass
class Dataset:
    """Train and test tensors plus what is needed to turn a stored batch into model input."""

    name: str
    x_train: torch.Tensor  # [N, C, H, W], stored dtype
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    scale: float  # multiply stored values by this to get [0, 1]
    mean: tuple[float, ...]  # per channel, after scaling
    std: tuple[float, ...]
    augment: bool = False  # pad-4 crop + flip is meaningful for this data (natural images)
    _model_input: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        for k in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, k, getattr(self, k).to(device))
        self._model_input = None
        return self

    def train_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Model input for training samples ``idx`` (no augmentation): :meth:`normalise` of
        ``x_train[idx]``, gathered from a normalised copy of the training set when that copy
        is small (digits: 0.5 MB; at most :data:`MODEL_INPUT_CACHE_BYTES`): the same values, one
        gather instead of a gather, a conversion and three passes per mini-batch."""
        cached = self._model_input
        if cached is None and self.x_train.numel() * 4 <= MODEL_INPUT_CACHE_BYTES:
            cached = self._model_input = self.normalise(self.x_train)
        # index_select, not cached[idx]: the same rows, 5x faster for a 4-d tensor on CPU
        if cached is not None:
            return cached.index_select(0, idx)
        return self.normalise(self.x_train.index_select(0, idx), inplace=True)  # our own copy

    def normalise(self, xb: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Stored batch -> float32 model input (scaled to [0,1], then per-channel standardised).

        ``inplace``: a float32 ``xb`` that the caller owns is normalised in place (same values).
        """
        if inplace and xb.dtype == torch.float32:
            x = xb.mul_(self.scale)
        else:
            x = xb.to(torch.float32) * self.scale  # a new tensor: the rest runs in place on it
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, device=x.device).view(shape)
        std = torch.tensor(self.std, device=x.device).view(shape)
        return x.sub_(mean).div_(std)


def _stats(x: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.astype(np.float64) * scale
    axes = (0,) + tuple(range(2, x.ndim))
    mean = xf.mean(axis=axes)
    std = xf.std(axis=axes)
    std[std == 0] = 1.0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _make(name, xtr, ytr, xte, yte, num_classes, scale, augment=False) -> Dataset:
    mean, std = _stats(xtr, scale)
    return Dataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(xtr)),
        y_train=torch.from_numpy(np.asarray(ytr, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(xte)),
        y_test=torch.from_numpy(np.asarray(yte, dtype=np.int64)),
        num_classes=num_classes,
        scale=scale,
        mean=mean,
        std=std,
        augment=augment,
    )


DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 20250101  # fixed: the held-out test split never changes between runs


def cache_dir() -> Path:
    """Where derived data is cached: $GOSSIPLAB_CACHE, else $XDG_CACHE_HOME/gossiplab, else
    ~/.cache/gossiplab."""
    env = os.environ.get("GOSSIPLAB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gossiplab"


def _digits_split() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    y = d.target.astype(np.int64)
    return tuple(train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    ))


def load_digits_dataset(**_: object) -> Dataset:
    """scikit-learn's digits: 1,797 real 8x8 grey images (values 0..16), 10 classes, shipped with
    scikit-learn so it works offline. A fixed stratified 20% is the held-out test set.

    The split is cached (:func:`cache_dir`, 120 kB) because importing scikit-learn takes over a
    second, most of a default run's start-up; the cache holds exactly what the split returns."""
    path = cache_dir() / f"digits-{DIGITS_SPLIT_SEED}-{DIGITS_TEST_FRACTION}.npz"
    parts = None
    try:
        with np.load(path, allow_pickle=False) as f:
            parts = tuple(f[k] for k in ("xtr", "xte", "ytr", "yte"))
        if parts[0].shape[1:] != (1, 8, 8) or len(parts[0]) + len(parts[1]) != 1797:
            parts = None
    except (OSError, ValueError, KeyError):
        parts = None
    if parts is None:
        parts = _digits_split()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, **dict(zip(("xtr", "xte", "ytr", "yte"), parts, strict=True)))
            os.replace(tmp, path)
        except OSError:  # a read-only home: no cache, same data
            pass
    xtr, xte, ytr, yte = parts
    return _make("digits", xtr, ytr, xte, yte, 10, scale=1.0 / 16.0)


def load_fashion_mnist_dataset(root: str = "data", verify: bool = True, **_: object) -> Dataset:
    from gossiplab.data.idx import load_fashion_mnist

    xtr, ytr, xte, yte = load_fashion_mnist(root, verify=verify)
    return _make("fashion_mnist", xtr, ytr, xte, yte, 10, scale=1.0 / 255.0)


def _cifar(name: str):
    def load(root: str = "data", download: bool = True, verify: bool = True, **_: object):
        from gossiplab.data.cifar import SPECS, load_cifar

        xtr, ytr, xte, yte = load_cifar(name, root, download=download, verify=verify)
        return _make(name, xtr, ytr, xte, yte, SPECS[name].num_classes, 1.0 / 255.0, augment=True)

    load.__doc__ = f"{name.upper()} from the python-version archive (see gossiplab.data.cifar)."
    return load


def make_synthetic(
    num_train: int = 2000, num_test: int = 1000, num_classes: int = 10,
    shape: tuple[int, ...] = (1, 8, 8), noise: float = 1.0, seed: int = 0, **_: object,
) -> Dataset:
    """Gaussian class clusters in input space: x = mu_y + noise * eps. Deterministic in ``seed``.

    For tests and benchmarks: any size or image shape, no files, a known Bayes-optimal structure.
    """
    if num_train < 1 or num_test < 1 or num_classes < 2:
        raise ConfigError("synthetic data needs num_train >= 1, num_test >= 1, num_classes >= 2")
    g = torch.Generator().manual_seed(seed)
    dim = int(np.prod(shape))
    mu = torch.randn(num_classes, dim, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(num_classes, (n,), generator=g)
        x = mu[y] + noise * torch.randn(n, dim, generator=g)
        return x.view(n, *shape).contiguous(), y

    xtr, ytr = draw(num_train)
    xte, yte = draw(num_test)
    c = shape[0]
    return Dataset(
        name="synthetic", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
        num_classes=num_classes, scale=1.0, mean=(0.0,) * c,
        std=(float(np.sqrt(1.0 + noise**2)),) * c,
    )


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits_dataset,
    "fashion_mnist": load_fashion_mnist_dataset,
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "synthetic": make_synthetic,
}
"""Datasets by name. Adding one is one loader function returning a :class:`Dataset`."""


def load_dataset(name: str, **options: object) -> Dataset:
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ConfigError(unknown("dataset", name, DATASETS, "data.dataset")) from None
    if "root" in options and options["root"] is not None:
        options["root"] = str(Path(str(options["root"])).expanduser())
    return loader(**options)
