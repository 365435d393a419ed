import numpy as np
import pytest
import torch

from gossiplab.data.augment import apply_crop_flip, sample_crop_flip
from gossiplab.data.datasets import load_dataset
from gossiplab.errors import ConfigError


def test_digits_fixed_split():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert len(a.y_train) + len(a.y_test) == 1797
    assert len(a.y_test) == 360
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    assert a.input_shape == (1, 8, 8)
    x = a.normalise(a.x_train)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2


def test_synthetic_is_deterministic_in_seed():
    a = load_dataset("synthetic", seed=1, num_train=50, num_test=10, shape=(3, 4, 4))
    b = load_dataset("synthetic", seed=1, num_train=50, num_test=10, shape=(3, 4, 4))
    c = load_dataset("synthetic", seed=2, num_train=50, num_test=10, shape=(3, 4, 4))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.input_shape == (3, 4, 4)


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        load_dataset("digit")


def test_crop_flip_matches_a_naive_implementation():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    params = sample_crop_flip(6, 4, g)
    out = apply_crop_flip(x, params, pad=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        dy, dx, flip = params[i].tolist()
        ref = padded[i, :, dy:dy + 8, dx:dx + 8]
        if flip:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    assert params[:, :2].min() >= 0 and params[:, :2].max() <= 8


def test_zero_offset_no_flip_is_identity():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    params = torch.tensor([[4, 4, 0], [4, 4, 1]])
    out = apply_crop_flip(x, params)
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[1].flip(-1))
    assert np.isfinite(out.numpy()).all()


def test_normalise_in_place_gives_the_same_values_and_leaves_other_dtypes_alone():
    from gossiplab.data.datasets import make_synthetic

    ds = make_synthetic(num_train=20, num_test=5, shape=(3, 4, 4))
    ds.scale, ds.mean, ds.std = 0.5, (0.1, 0.2, 0.3), (1.5, 2.0, 2.5)
    x = ds.x_train[:6].clone()
    ref = ds.normalise(x)
    assert torch.equal(x, ds.x_train[:6])  # out of place: input untouched
    out = ds.normalise(x, inplace=True)
    assert out.data_ptr() == x.data_ptr() and torch.equal(out, ref)
    u8 = torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8)
    kept = u8.clone()
    assert ds.normalise(u8, inplace=True).dtype == torch.float32 and torch.equal(u8, kept)


def test_digits_cached_split_equals_the_split(tmp_path, monkeypatch):
    from gossiplab.data import datasets

    monkeypatch.setenv("GOSSIPLAB_CACHE", str(tmp_path))
    fresh = datasets.load_digits_dataset()  # computes the split and writes the cache
    assert list(tmp_path.glob("digits-*.npz"))
    cached = datasets.load_digits_dataset()
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(fresh, k), getattr(cached, k))
    xtr, xte, ytr, yte = datasets._digits_split()
    assert torch.equal(cached.x_train, torch.from_numpy(xtr)) and cached.mean == fresh.mean
