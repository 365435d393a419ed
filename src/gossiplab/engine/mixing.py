"""One gossip round in the simulator: a single (sparse or dense) matrix product over all nodes."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from gossiplab.engine.runtime import run_in_workers, single_threaded
from gossiplab.topology import Topology

# Use a sparse W when it is at most this dense and large enough for sparse (COO) kernels to pay off.
SPARSE_MAX_DENSITY = 0.15
SPARSE_MIN_NODES = 32
# Cost per column of x of applying an operator, in ns on one CPU core (measured; only the ratios
# matter): BLAS runs a dense [rows, rows] product at about DENSE_NS_PER_MAC per multiply-add;
# torch's COO ``sparse.mm`` costs about a pass per row plus a little per non-zero.
DENSE_NS_PER_MAC = 0.06
SPARSE_NS_PER_ROW = 1.1
SPARSE_NS_PER_NONZERO = 0.05
# ``rounds_`` pushes column blocks of about this many bytes through all rounds while they are in cache.
CHUNK_BYTES = 1 << 19
# A fused product of more rounds than this is built by repeated squaring (log2(Q) products), not
# round by round.
SQUARING_MIN_STEPS = 16


def exact_stochastic(w: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """W as the engine applies it in ``dtype``: off-diagonal entries rounded to multiples of
    ``u = eps / 2`` (exact in ``dtype``) and each diagonal entry set to 1 minus the rest of its
    column (also exact). Every column then sums to exactly 1 (and every row, W being symmetric),
    so a round keeps the node average up to the rounding of the product itself. Cast entry by
    entry instead, a metropolis ring's float32 rows sum to 1 + 3e-8 and every round scales the
    average by that much: a drift of 7e-4 over 24,000 rounds."""
    u = float(torch.finfo(dtype).eps) / 2
    q = np.round(np.asarray(w, dtype=np.float64) / u) * u
    diag = np.diag_indices(q.shape[0])
    q[diag] = 0.0
    q[diag] = 1.0 - q.sum(axis=0)  # multiples of u summed in float64: exact
    return q


def _matrix_power(a, k: int):
    """``a^k`` (scipy sparse, k >= 1) by repeated squaring."""
    result = None
    while k:
        if k & 1:
            result = a if result is None else a @ result
        k >>= 1
        if k:
            a = a @ a
    return result


def centred_product(op: torch.Tensor, xr: torch.Tensor, out: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """W x for [replicas, m, w] blocks ``xr``, computed as c + W (x - c) with c each replica's
    first row (node 0's parameters). ``op`` is a dense operator as :meth:`MatrixMixer.operator`
    makes it, [W | 1] ([m, m + 1], or [replicas, m, m + 1] with one W per replica), or a sparse
    W, block-diagonal over the replicas. Equal to W x in exact arithmetic for any row c (W's
    rows sum to exactly 1), but the product's rounding errors now scale with the nodes'
    disagreement (|x_l - x_0| is at most twice the largest distance to the average), not with
    the values themselves, and average out: over 24,000 float32 rounds the average moves by
    ~1e-6 instead of drifting by ~2e-4 (plain product of the exact W) or ~1e-3 (W cast entry
    by entry); tests/engine/test_mixing_precision.py. The distributed engine centres on its
    rank's mean row for the same reason.

    Dense: one product of [W | 1] with [x - c; c] (c enters through the column of ones), into
    ``out`` when given (``xr`` itself too: [x - c; c] is a buffer of its own). Centring on a
    row, not on the column means, spares a pass over x; c inside the product spares the copy
    of c into the output that ``baddbmm`` makes and its second read (a group of 12 digits-MLP
    replicas: 4.39 ms per step instead of 4.67 ms, the same bits as ``baddbmm``). Every caller (the
    single run, stability twins, independent replicas) goes through here, so all compute the
    same bits."""
    if op.is_sparse:
        c = xr[:, :1].clone()
        y = torch.sparse.mm(op, (xr - c).flatten(0, 1)).unflatten(0, xr.shape[:2])
        return y.add_(c) if out is None else torch.add(y, c, out=out)  # (one pass, not two)
    r, m, w = xr.shape
    stacked = xr.new_empty(r, m + 1, w)
    torch.sub(xr, xr[:, :1], out=stacked[:, :m])
    stacked[:, m:].copy_(xr[:, :1])
    if op.dim() == 2:
        op = op.expand(r, *op.shape)
    return torch.bmm(op, stacked, out=out)


def centred_rounds_(ops: list[torch.Tensor], xr: torch.Tensor, width: int,
                    starts: list[int] | None = None) -> None:
    """In place: xr <- ops[-1] ... ops[0] xr for [replicas, m, d] blocks, column block by column
    block (``width`` columns, starting at ``starts``: all by default), each product a
    :func:`centred_product`. Each block's last product writes into ``xr`` itself (no copy
    back). The single run's rounds and the replicas' batched rounds both run here, so they
    compute the same bits."""
    for c in range(0, xr.shape[2], width) if starts is None else starts:
        y = xr[:, :, c:c + width]
        for op in ops[:-1]:
            y = centred_product(op, y)
        # the last product writes into xr itself (a block's columns are rows of d entries apart,
        # which costs a product of a block's size nothing: the same bits, no copy back)
        centred_product(ops[-1], y, out=xr[:, :, c:c + width])


class MatrixMixer:
    """Applies W_r to a [replicas * m, d] parameter matrix (replicas mix independently).

    Dense W uses one ``matmul``; sparse W (few edges, many nodes) a COO ``sparse.mm``. The choice
    is made once per distinct W by density (override with ``sparse=True/False``).

    ``mixer(x, r)`` is the ``mix(x, r)`` protocol of :mod:`gossiplab.gossip` (returns W_r x).
    ``mixer.rounds_(x, r0, steps)`` runs several plain rounds in place: column block by column
    block (no [rows, d] temporary), and with ``fuse`` as one product by W_{r0+steps-1}...W_{r0}
    whenever that product costs less than the rounds one by one (equal up to float rounding).
    """

    def __init__(self, topology: Topology, *, replicas: int = 1, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, sparse: bool | None = None, fuse: bool = True,
                 chunk_bytes: int = CHUNK_BYTES):
        self.topology = topology
        self.replicas = replicas
        self.device = torch.device(device)
        self.dtype = dtype
        self.sparse = sparse
        self.fuse = fuse
        self.chunk_bytes = chunk_bytes
        self._cache: dict[int, torch.Tensor] = {}
        self._plans: dict[tuple[int, int], list[torch.Tensor]] = {}

    def _use_sparse(self, w: np.ndarray) -> bool:
        if self.sparse is not None:
            return self.sparse
        m = w.shape[0]
        density = np.count_nonzero(w) / (m * m)
        return m >= SPARSE_MIN_NODES and density <= SPARSE_MAX_DENSITY

    def _to_operator(self, w: np.ndarray) -> torch.Tensor:
        w = exact_stochastic(w, self.dtype)
        if self._use_sparse(w):
            if self.replicas > 1:
                w = np.kron(np.eye(self.replicas), w)
            dense = torch.as_tensor(w, dtype=self.dtype)
            return dense.to_sparse().coalesce().to(self.device)
        # dense: [W | 1], the form centred_product multiplies [x - c; c] by
        return torch.as_tensor(np.hstack([w, np.ones((w.shape[0], 1))]), dtype=self.dtype,
                               device=self.device)

    def operator(self, r: int) -> torch.Tensor:
        """Torch form of W_r: sparse W (block-diagonal over replicas), or dense [W | 1] (W with
        a column of ones: see :func:`centred_product`)."""
        key = r % self.topology.period
        op = self._cache.get(key)
        if op is None:
            op = self._cache[key] = self._to_operator(self.topology.matrix(r))
        return op

    def _cost(self, op: torch.Tensor) -> float:
        if op.is_sparse:
            return SPARSE_NS_PER_ROW * op.shape[0] + SPARSE_NS_PER_NONZERO * op._nnz()
        return DENSE_NS_PER_MAC * op.shape[0] ** 2 * self.replicas  # dense W acts on each replica

    def plan(self, round0: int, steps: int) -> list[torch.Tensor]:
        """Operators whose successive application computes W_{round0+steps-1} ... W_{round0}:
        one per round, or their product when that is cheaper (and ``fuse`` is on)."""
        key = (round0 % self.topology.period, steps)  # W_r depends on r only modulo the period
        ops = self._plans.get(key)
        if ops is None:
            ops = [self.operator(round0 + q) for q in range(steps)]
            if self.fuse and steps > 1:
                fused = self._to_operator(self.product(round0, steps))
                if self._cost(fused) < sum(self._cost(o) for o in ops):
                    ops = [fused]
            self._plans[key] = ops
        return ops

    def product(self, round0: int, steps: int) -> np.ndarray:
        """W_{round0+steps-1} ... W_{round0} in float64: round by round (sparse products, cheap
        while the product stays sparse) for few rounds; for many, the product C of one period of
        W (starting at round0) raised to steps // period by repeated squaring, times the first
        steps % period factors, so Q = 10^6 costs about 20 products, not 10^6."""
        import scipy.sparse as sp  # here: scipy costs a tenth of a second at start-up

        def rounds(n: int):
            prod = sp.identity(self.topology.nodes, format="csr")
            for q in range(n):
                prod = sp.csr_array(self.topology.matrix(round0 + q)) @ prod
            return prod

        period = self.topology.period
        if steps < max(SQUARING_MIN_STEPS, 2 * period):
            return rounds(steps).toarray()
        full, rest = divmod(steps, period)
        cycle = sp.csr_array(rounds(period).toarray())
        return (rounds(rest) @ _matrix_power(cycle, full)).toarray()

    def column_width(self, rows: int, element_size: int) -> int:
        """Columns of a [rows, d] matrix that ``rounds_`` pushes through all rounds at once."""
        return max(1, self.chunk_bytes // (rows * element_size))

    def __call__(self, x: torch.Tensor, r: int) -> torch.Tensor:
        xr = x.unflatten(0, (self.replicas, x.shape[0] // self.replicas))
        return centred_product(self.operator(r), xr).flatten(0, 1)

    @torch.no_grad()
    def rounds_(self, x: torch.Tensor, round0: int, steps: int) -> torch.Tensor:
        """In place: x <- W_{round0+steps-1} ... W_{round0} x for a [rows, d] matrix; returns x.

        On CPU the column blocks are shared out to :func:`run_in_workers` (one single-threaded
        worker per intra-op thread): many small parallel regions scale poorly, blocks scale well.
        """
        if steps == 0:
            return x
        ops = self.plan(round0, steps)
        width = self.column_width(x.shape[0], x.element_size())
        starts = list(range(0, x.shape[1], width))
        # at least two blocks per worker, so that handing work over stays cheap
        workers = max(1, min(torch.get_num_threads(), len(starts) // 2)) if x.device.type == "cpu" else 1

        xr = x.unflatten(0, (self.replicas, x.shape[0] // self.replicas))

        def run(part: list[int]) -> None:
            with torch.no_grad():  # grad mode is per thread
                centred_rounds_(ops, xr, width, part)

        if workers == 1:
            if x.device.type == "cpu":
                with single_threaded():
                    run(starts)
            else:
                run(starts)
            return x
        bounds = [len(starts) * w // workers for w in range(workers + 1)]
        run_in_workers([partial(run, starts[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])
        return x
