"""Compressors: the payload is exactly ``payload_bytes`` per row, decoding inverts what the
compressor promises to keep, and nothing else survives."""

import pytest
import torch

from gossiplab.compression import COMPRESSORS, build_compressor
from gossiplab.errors import ConfigError

D = 50


@pytest.fixture
def x():
    return torch.randn(6, D, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_payload_has_the_announced_size(name, x):
    c = build_compressor(name, ratio=0.1, seed=1)
    p = c.encode(x, call=3)
    assert p.dtype == torch.uint8 and p.shape == (6, c.payload_bytes(D))
    assert c.decode(p, D, x.dtype, 3).shape == x.shape


def test_sizes():
    assert build_compressor("identity").payload_bytes(D) == 4 * D
    assert build_compressor("top_k", ratio=0.1).payload_bytes(D) == 5 * 8  # 5 (index, value)
    assert build_compressor("random_k", ratio=0.1).payload_bytes(D) == 5 * 4  # values only
    assert build_compressor("quantize8").payload_bytes(D) == D + 4


def test_identity_is_exact(x):
    assert torch.equal(build_compressor("identity").compress(x, 0), x)


def test_top_k_keeps_the_largest_entries(x):
    out = build_compressor("top_k", ratio=0.1).compress(x, 0)
    assert ((out != 0).sum(1) == 5).all()
    for row, orig in zip(out, x, strict=True):
        kept = torch.topk(orig.abs(), 5).indices
        assert torch.equal(row[kept], orig[kept])


def test_random_k_same_columns_for_every_node_new_columns_per_call(x):
    c = build_compressor("random_k", ratio=0.1, seed=4)
    a, b = c.compress(x, 0), c.compress(x, 1)
    cols_a = (a != 0).any(0).nonzero().flatten()
    assert len(cols_a) == 5 and ((a != 0) == (a != 0)[:1]).all()
    assert not torch.equal(cols_a, (b != 0).any(0).nonzero().flatten())
    assert torch.equal(a[:, cols_a], x[:, cols_a])
    assert torch.equal(c.compress(x, 0), a)  # reproducible from (seed, call)


def test_quantize8_error_is_half_a_level(x):
    out = build_compressor("quantize8").compress(x, 0)
    scale = x.abs().amax(1, keepdim=True)
    assert ((out - x).abs() <= scale / 127 / 2 + 1e-6).all()
    assert torch.equal(build_compressor("quantize8").compress(torch.zeros(2, D), 0), torch.zeros(2, D))


def test_unknown_compressor_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of"):
        build_compressor("top-k")
