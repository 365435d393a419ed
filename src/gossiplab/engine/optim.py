"""SGD (momentum, Nesterov, weight decay) on the whole [models, d] matrix: one fused update."""

from __future__ import annotations

import torch


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
        g = self.grads
        if self.weight_decay:
            g.add_(self.params, alpha=self.weight_decay)
        if self.buf is not None:
            self.buf.mul_(self.momentum).add_(g)
            g = g.add(self.buf, alpha=self.momentum) if self.nesterov else self.buf
        self.params.add_(g, alpha=-lr)

    def state_dict(self) -> dict:
        return {"buf": None if self.buf is None else self.buf.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("buf") is not None:
            assert self.buf is not None
            self.buf.copy_(state["buf"])
