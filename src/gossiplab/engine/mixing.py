"""One gossip round in the simulator: a single (sparse or dense) matrix product over all nodes."""

from __future__ import annotations

import numpy as np
import torch

from gossiplab.topology import Topology

# Use a sparse W when it is at most this dense and large enough for sparse (COO) kernels to pay off.
SPARSE_MAX_DENSITY = 0.15
SPARSE_MIN_NODES = 32


class MatrixMixer:
    """Applies W_r to a [replicas * m, d] parameter matrix (replicas mix independently).

    Dense W uses one ``matmul``; sparse W (few edges, many nodes) a COO ``sparse.mm``. The choice
    is made once per distinct W by density (override with ``sparse=True/False``).
    """

    def __init__(self, topology: Topology, *, replicas: int = 1, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, sparse: bool | None = None):
        self.topology = topology
        self.replicas = replicas
        self.device = torch.device(device)
        self.dtype = dtype
        self.sparse = sparse
        self._cache: dict[int, torch.Tensor] = {}

    def _use_sparse(self, w: np.ndarray) -> bool:
        if self.sparse is not None:
            return self.sparse
        m = w.shape[0]
        density = np.count_nonzero(w) / (m * m)
        return m >= SPARSE_MIN_NODES and density <= SPARSE_MAX_DENSITY

    def operator(self, r: int) -> torch.Tensor:
        """Torch form of W_r (block-diagonal over replicas when sparse)."""
        key = r % self.topology.period
        op = self._cache.get(key)
        if op is None:
            w = self.topology.matrix(r)
            if self._use_sparse(w):
                if self.replicas > 1:
                    w = np.kron(np.eye(self.replicas), w)
                dense = torch.as_tensor(w, dtype=self.dtype)
                op = dense.to_sparse().coalesce().to(self.device)
            else:
                op = torch.as_tensor(w, dtype=self.dtype, device=self.device)
            self._cache[key] = op
        return op

    def __call__(self, x: torch.Tensor, r: int) -> torch.Tensor:
        op = self.operator(r)
        if op.is_sparse:
            return torch.sparse.mm(op, x) if x.dim() == 2 else op @ x
        if self.replicas == 1:
            return op @ x
        m = op.shape[0]
        return (op @ x.view(self.replicas, m, -1)).view_as(x)
