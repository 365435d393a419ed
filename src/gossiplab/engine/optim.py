"""SGD (momentum, Nesterov, weight decay) on the whole [models, d] matrix: one fused update."""

from __future__ import annotations

from functools import partial

import torch

from gossiplab.engine.runtime import run_in_workers, single_threaded

PARALLEL_MIN_ELEMENTS = 1 << 18  # smaller matrices are updated in the calling thread


class MatrixSGD:
    """In-place SGD on ``params`` using ``grads``; state has the same [models, d] shape."""

    def __init__(self, params: torch.Tensor, grads: torch.Tensor, *, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        self.params = params
        self.grads = grads
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.buf = torch.zeros_like(params) if momentum > 0 else None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """On CPU, large matrices are updated in contiguous pieces side by side by
        :func:`~gossiplab.engine.runtime.run_in_workers` (elementwise: the same values), so that
        a step starts no intra-op parallel region whose idle threads would then spin on the
        cores the engine's workers need."""
        n = self.params.numel()
        workers = min(torch.get_num_threads(), n // PARALLEL_MIN_ELEMENTS)
        if self.params.device.type != "cpu" or not self.params.is_contiguous():
            self._update(lr, self.params, self.grads, self.buf)
            return
        if workers <= 1:
            with single_threaded():
                self._update(lr, self.params, self.grads, self.buf)
            return
        flat = [t.view(-1) if t is not None else None for t in (self.params, self.grads, self.buf)]
        bounds = [n * w // workers // 64 * 64 for w in range(workers)] + [n]
        run_in_workers([partial(self._update, lr, *(None if t is None else t[lo:hi] for t in flat))
                        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])

    def _update(self, lr: float, p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor | None) -> None:
        with torch.no_grad():  # grad mode is per thread
            if self.weight_decay:
                g.add_(p, alpha=self.weight_decay)
            if buf is not None:
                buf.mul_(self.momentum).add_(g)
                g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.add_(g, alpha=-lr)

    def state_dict(self) -> dict:
        return {"buf": None if self.buf is None else self.buf.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("buf") is not None:
            assert self.buf is not None
            self.buf.copy_(state["buf"])
