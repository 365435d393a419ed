"""Compressors for compressed gossip (CHOCO-SGD): what a node actually puts on the wire.

A compressor turns the rows of a ``[n, d]`` matrix into fixed-size byte payloads ``[n, e]``
(``uint8``) and back. ``encode`` is what the sender computes, ``decode`` what every receiver (and
the sender itself, to keep its copy equal) computes, so the simulator and the distributed engine
apply bitwise the same ``decode(encode(x))``. ``payload_bytes(d)`` is the size of one encoded row:
the bytes a node really sends to each neighbour, counted by the communication accounting.

* ``identity``: the raw values (4 d bytes in float32): CHOCO-SGD with it is plain gossip.
* ``top_k``: the k entries largest in magnitude of each row: k int32 indices + k values.
* ``random_k``: k entries at indices drawn from a seeded generator per (seed, call), the same for
  every node, so receivers regenerate the indices and only the k values travel (Koloskova et
  al. 2019's rand_k without rescaling, which keeps the operator contractive).
* ``quantize8``: per row the scale s = max |x_i| (one value) and round(127 x_i / s) as int8;
  d + 4 bytes in float32.
"""

from __future__ import annotations

import math

import torch

from gossiplab.errors import ConfigError, unknown


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    """[n, k] tensor -> [n, k * itemsize] uint8 view of its bytes."""
    return t.contiguous().view(torch.uint8)


def _from_bytes(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[n, k * itemsize] uint8 -> [n, k] values (a fresh, aligned copy: a column slice of a
    payload need not start on an element boundary)."""
    return b.flatten().clone().view(dtype).view(b.shape[0], -1)


class Compressor:
    """Base: subclasses define ``payload_bytes``, ``encode`` and ``decode``."""

    name = "base"

    def __init__(self, *, ratio: float = 0.01, seed: int = 0):
        self.ratio = ratio
        self.seed = seed

    def kept(self, d: int) -> int:
        """Entries kept per row by the sparsifiers: k = max(1, ceil(ratio * d))."""
        return max(1, min(d, math.ceil(self.ratio * d)))

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        raise NotImplementedError

    def encode(self, x: torch.Tensor, call: int) -> torch.Tensor:
        """[n, d] -> [n, payload_bytes(d)] uint8. ``call`` numbers the compressions of a run (the
        same on every node), for compressors that draw random numbers."""
        raise NotImplementedError

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype, call: int) -> torch.Tensor:
        """[n, e] uint8 -> [n, d] values."""
        raise NotImplementedError

    def compress(self, x: torch.Tensor, call: int) -> torch.Tensor:
        """decode(encode(x)): what every receiver reconstructs."""
        return self.decode(self.encode(x, call), x.shape[1], x.dtype, call)

    def describe(self) -> dict:
        return {"name": self.name, "ratio": self.ratio}


class Identity(Compressor):
    name = "identity"

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return d * torch.empty(0, dtype=dtype).element_size()

    def encode(self, x: torch.Tensor, call: int) -> torch.Tensor:
        return _as_bytes(x)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype, call: int) -> torch.Tensor:
        return _from_bytes(payload, dtype)


class TopK(Compressor):
    name = "top_k"

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return self.kept(d) * (4 + torch.empty(0, dtype=dtype).element_size())

    def encode(self, x: torch.Tensor, call: int) -> torch.Tensor:
        k = self.kept(x.shape[1])
        idx = torch.topk(x.abs(), k, dim=1, sorted=False).indices
        vals = torch.gather(x, 1, idx)
        return torch.cat([_as_bytes(idx.to(torch.int32)), _as_bytes(vals)], dim=1)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype, call: int) -> torch.Tensor:
        k = self.kept(d)
        idx = _from_bytes(payload[:, :4 * k], torch.int32).long()
        vals = _from_bytes(payload[:, 4 * k:], dtype)
        out = torch.zeros(payload.shape[0], d, dtype=dtype, device=payload.device)
        return out.scatter_(1, idx, vals)


class RandomK(Compressor):
    name = "random_k"

    def indices(self, d: int, call: int, device: torch.device) -> torch.Tensor:
        """The k indices of compression ``call`` (same for every node): a permutation prefix
        from a generator seeded with (seed, call)."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + call) % (2**63 - 1))
        return torch.randperm(d, generator=g)[:self.kept(d)].to(device)

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return self.kept(d) * torch.empty(0, dtype=dtype).element_size()

    def encode(self, x: torch.Tensor, call: int) -> torch.Tensor:
        return _as_bytes(x[:, self.indices(x.shape[1], call, x.device)])

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype, call: int) -> torch.Tensor:
        vals = _from_bytes(payload, dtype)
        out = torch.zeros(payload.shape[0], d, dtype=dtype, device=payload.device)
        out[:, self.indices(d, call, payload.device)] = vals
        return out


class Quantize8(Compressor):
    name = "quantize8"
    LEVELS = 127

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return d + torch.empty(0, dtype=dtype).element_size()

    def encode(self, x: torch.Tensor, call: int) -> torch.Tensor:
        scale = x.abs().amax(dim=1, keepdim=True)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.round(x / safe * self.LEVELS).clamp_(-self.LEVELS, self.LEVELS).to(torch.int8)
        return torch.cat([_as_bytes(scale), q.view(torch.uint8)], dim=1)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype, call: int) -> torch.Tensor:
        s = torch.empty(0, dtype=dtype).element_size()
        scale = _from_bytes(payload[:, :s], dtype)
        q = payload[:, s:].contiguous().view(torch.int8).to(dtype)
        return q * (scale / self.LEVELS)

    def describe(self) -> dict:
        return {"name": self.name, "bits": 8}


COMPRESSORS: dict[str, type[Compressor]] = {
    "identity": Identity,
    "top_k": TopK,
    "random_k": RandomK,
    "quantize8": Quantize8,
}
"""Compressors by name. Adding one is one subclass (payload size, encode, decode) registered here."""


def build_compressor(name: str, *, ratio: float = 0.01, seed: int = 0) -> Compressor:
    try:
        cls = COMPRESSORS[name]
    except KeyError:
        raise ConfigError(unknown("compressor", name, COMPRESSORS, "algorithm.compressor")) from None
    return cls(ratio=ratio, seed=seed)
