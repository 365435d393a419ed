"""Measured smoothness: the largest Hessian eigenvalue (power iteration on Hessian-vector
products) and the largest per-sample gradient norm, so that c*beta and L are numbers per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gossiplab.engine.nodestack import NodeStack


@dataclass
class PowerResult:
    eigenvalue: float  # signed Rayleigh quotient at the final vector (largest |eigenvalue|)
    iterations: int
    converged: bool


def top_hessian_eigenvalue(loss: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
                           iterations: int = 50, tol: float = 1e-4, seed: int = 0) -> PowerResult:
    """Power iteration v <- H v / ||H v|| with H = Hessian of ``loss`` at the flat vector ``x``
    (Hessian-vector products by double backward; the graph is built once). Converges to the
    eigenvalue of largest modulus, i.e. the local smoothness ||H||_2; returns it signed."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(x), x, create_graph=True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    v /= v.norm()
    lam = 0.0
    for k in range(1, iterations + 1):
        (hv,) = torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True)
        new = float(torch.dot(v, hv))
        norm = hv.norm()
        if not torch.isfinite(norm) or float(norm) == 0.0:
            return PowerResult(new, k, float(norm) == 0.0)
        v = hv.detach() / norm
        if k > 1 and abs(new - lam) <= tol * max(abs(new), 1e-12):
            return PowerResult(new, k, True)
        lam = new
    return PowerResult(lam, iterations, False)


def model_loss(stack: NodeStack, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor],
                                                                              torch.Tensor]:
    """Mean cross-entropy on (x, y) (model-ready inputs) as a function of a flat parameter row."""
    from torch.func import functional_call

    def f(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(stack.template, stack.row_views(flat), (x,)), y)

    return f


def max_sample_gradient_norm(template: nn.Module, stack: NodeStack, flat: torch.Tensor,
                             x: torch.Tensor, y: torch.Tensor, chunk: int = 256) -> float:
    """Largest ||grad_w l(w; z)|| over the samples (x, y): a lower estimate of the Lipschitz
    constant L at w (per-sample gradients with torch.func.vmap)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in stack.row_views(flat.detach()).items()}

    def one(p, xb, yb):
        return F.cross_entropy(functional_call(template, p, (xb[None],)), yb[None])

    best = 0.0
    for i in range(0, len(y), chunk):
        gs = vmap(grad(one), in_dims=(None, 0, 0))(params, x[i:i + chunk], y[i:i + chunk])
        sq = sum((g.reshape(g.shape[0], -1) ** 2).sum(1) for g in gs.values())
        best = max(best, float(sq.max().sqrt()))
    return best
