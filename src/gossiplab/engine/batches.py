"""Mini-batch sampling over the nodes' local data, vectorised across nodes.

The sampler draws *positions* in each node's local dataset ([m, b]) from the sampling seed only;
:class:`NodeData` maps positions to samples. Replicas (stability twins) share positions and
augmentation but may hold a different sample at one position, which is exactly S vs S^(ij).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from gossiplab.data.augment import apply_crop_flip, sample_crop_flip
from gossiplab.data.datasets import Dataset
from gossiplab.engine.nodestack import like
from gossiplab.engine.runtime import run_in_workers

BLOCK_ELEMENTS = 1 << 20  # batches are prepared in blocks of about this many input values,
PARALLEL_MIN_ELEMENTS = 1 << 15  # by several workers from this size on (many short intra-op
# parallel regions stall whenever another process takes one of their threads' cores)


class BatchSampler:
    """Draws b positions per node per iteration.

    ``uniform``: i.i.d. uniform with replacement (the sampling the stability analysis assumes).
    ``shuffle``: each node walks a fresh random permutation of its data, epoch after epoch.
    """

    def __init__(self, sizes: np.ndarray | list[int], batch_size: int, *, mode: str = "uniform",
                 seed: int = 0, device: torch.device | str = "cpu"):
        self.sizes = torch.as_tensor(np.asarray(sizes), dtype=torch.int64)
        self.m = len(self.sizes)
        self.b = batch_size
        self.mode = mode
        self.generator = torch.Generator().manual_seed(int(seed) + 0x5A3)
        self.device = torch.device(device)
        self._perms: list[torch.Tensor] = []
        self._cursor = torch.zeros(self.m, dtype=torch.int64)
        if mode == "shuffle":
            self._perms = [torch.randperm(int(n), generator=self.generator) for n in self.sizes]
        elif mode != "uniform":
            raise ValueError(f"unknown sampling mode {mode!r}")

    def sample(self) -> torch.Tensor:
        """[m, b] int64 positions (position p of node k is its p-th local sample)."""
        if self.mode == "uniform":
            u = torch.rand(self.m, self.b, generator=self.generator, dtype=torch.float64)
            pos = (u * self.sizes[:, None]).long()
            return torch.minimum(pos, self.sizes[:, None] - 1).to(self.device)
        out = torch.empty(self.m, self.b, dtype=torch.int64)
        for k in range(self.m):
            n = int(self.sizes[k])
            filled = 0
            while filled < self.b:
                c = int(self._cursor[k])
                take = min(self.b - filled, n - c)
                out[k, filled:filled + take] = self._perms[k][c:c + take]
                filled += take
                if c + take >= n:
                    self._perms[k] = torch.randperm(n, generator=self.generator)
                    self._cursor[k] = 0
                else:
                    self._cursor[k] = c + take
        return out.to(self.device)

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "cursor": self._cursor.clone(),
            "perms": [p.clone() for p in self._perms],
        }

    def load_state_dict(self, state: dict) -> None:
        like(state["cursor"], self._cursor, "sampler cursor")
        if len(state["perms"]) != len(self._perms):
            raise ValueError("sampler permutations do not match the nodes")
        for p, ref in zip(state["perms"], self._perms, strict=True):
            like(p, ref, "sampler permutation")
        self.generator.set_state(state["generator"])
        self._cursor = state["cursor"].clone()
        self._perms = [p.clone() for p in state["perms"]]


class NodeData:
    """The nodes' local datasets as index tables into the dataset tensors.

    ``tables``: [replicas, m, n_max] global training indices (padded); replica r, node k,
    position p holds sample ``tables[r, k, p]``.
    """

    def __init__(self, dataset: Dataset, node_indices: list[np.ndarray],
                 replica_indices: list[list[np.ndarray]] | None = None, *,
                 augment: bool = False, device: torch.device | str = "cpu"):
        self.dataset = dataset
        self.device = torch.device(device)
        self.augment = augment
        reps = [node_indices] + list(replica_indices or [])
        self.m = len(node_indices)
        self.sizes = np.array([len(ix) for ix in node_indices])
        for r in reps:
            if [len(ix) for ix in r] != list(self.sizes):
                raise ValueError("every replica must hold the same number of samples per node")
        nmax = int(self.sizes.max())
        tab = np.zeros((len(reps), self.m, nmax), dtype=np.int64)
        for r, rep in enumerate(reps):
            for k, ix in enumerate(rep):
                tab[r, k, : len(ix)] = ix
        self.tables = torch.from_numpy(tab).to(self.device)

    @property
    def replicas(self) -> int:
        return self.tables.shape[0]

    def batch(self, positions: torch.Tensor, aug_params: torch.Tensor | None = None, *,
              workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-ready inputs [R, m, b, ...] and labels [R, m, b] for the given positions.

        On CPU, large batches are prepared in blocks of nodes written straight into the output
        (the temporaries of gathering, cropping and normalising stay block-sized), and all but
        tiny ones are shared out to up to ``workers`` single-threaded workers by
        :func:`~gossiplab.engine.runtime.run_in_workers`. Every step is per sample, so the values
        are the same whatever the blocks.
        """
        m, b = positions.shape
        per_node = self.replicas * b * int(np.prod(self.dataset.input_shape))
        total = m * per_node
        workers = max(1, min(workers, m)) if total >= PARALLEL_MIN_ELEMENTS else 1
        if self.device.type != "cpu" or (workers == 1 and total < BLOCK_ELEMENTS):
            return self._batch(positions, aug_params, slice(0, m))
        blocks = max(workers, -(-total // BLOCK_ELEMENTS))
        blocks = min(m, -(-blocks // workers) * workers)  # a multiple of workers where possible
        bounds = [m * i // blocks for i in range(blocks + 1)]
        x = torch.empty(self.replicas, m, b, *self.dataset.input_shape)
        y = torch.empty(self.replicas, m, b, dtype=torch.int64)

        def run(part: list[tuple[int, int]]) -> None:
            for lo, hi in part:
                aug = None if aug_params is None else aug_params[lo * b:hi * b]
                x[:, lo:hi], y[:, lo:hi] = self._batch(positions[lo:hi], aug, slice(lo, hi))

        pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
        share = [len(pairs) * w // workers for w in range(workers + 1)]
        run_in_workers([partial(run, pairs[lo:hi]) for lo, hi in zip(share[:-1], share[1:], strict=True)
                        if hi > lo])
        return x, y

    def _batch(self, positions: torch.Tensor, aug_params: torch.Tensor | None, nodes: slice
               ) -> tuple[torch.Tensor, torch.Tensor]:
        m, b = positions.shape
        idx = torch.gather(self.tables[:, nodes], 2, positions.expand(self.replicas, m, b))
        flat = idx.reshape(-1)
        if aug_params is not None:  # on stored pixels, so padding is black as in torchvision
            x = apply_crop_flip(self.dataset.x_train.index_select(0, flat),
                                aug_params.repeat(self.replicas, 1))
            x = self.dataset.normalise(x, inplace=True)  # x is this function's own copy
        else:
            x = self.dataset.train_batch(flat)
        y = self.dataset.y_train.index_select(0, flat)
        return x.view(self.replicas, m, b, *x.shape[1:]), y.view(self.replicas, m, b)

    def sample_augmentation(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        if not self.augment:
            return None
        return sample_crop_flip(n, 4, generator)
