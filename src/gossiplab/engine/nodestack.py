"""All node models as the rows of one [models, d] parameter matrix.

Gradients and optimizer state have the same shape, so the optimizer step and every gossip round
are single tensor operations whatever the number of nodes. Per-node forward/backward uses either
a python loop over lightweight modules whose parameters *are* views into the matrix rows (fastest
for convolutions on CPU), or ``torch.func.vmap`` over the stacked parameters (one batched kernel
per layer: the right choice on GPUs and for small dense models).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ParamSpec:
    name: str  # qualified name, e.g. "features.0.weight"
    shape: torch.Size
    offset: int
    numel: int


class NodeStack:
    """``models`` copies of ``template`` stored as rows of ``params`` (and ``grads``)."""

    def __init__(self, template: nn.Module, models: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.template = template.to(device=self.device, dtype=dtype)
        self.specs: list[ParamSpec] = []
        off = 0
        for name, p in self.template.named_parameters():
            self.specs.append(ParamSpec(name, p.shape, off, p.numel()))
            off += p.numel()
        self.d = off
        self.models = models
        flat = torch.nn.utils.parameters_to_vector(self.template.parameters()).detach()
        self.params = flat.expand(models, self.d).clone()
        self.grads = torch.zeros_like(self.params)
        self._modules: list[nn.Module] | None = None

    # -- views ---------------------------------------------------------------------------------

    def row_views(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter-shaped views into one row (a length-d vector)."""
        return {s.name: row[s.offset:s.offset + s.numel].view(s.shape) for s in self.specs}

    def stacked_views(self, mat: torch.Tensor) -> dict[str, torch.Tensor]:
        """[models, *shape] views into a [models, d] matrix (for vmap)."""
        n = mat.shape[0]
        return {s.name: mat[:, s.offset:s.offset + s.numel].view(n, *s.shape) for s in self.specs}

    def bound_module(self, row: torch.Tensor, grad_row: torch.Tensor | None = None) -> nn.Module:
        """A module whose parameters are views of ``row`` (writes to the row show up in the
        module and vice versa); gradients accumulate in place into ``grad_row``."""
        mod = copy.deepcopy(self.template)
        views = self.row_views(row)
        gviews = self.row_views(grad_row) if grad_row is not None else None
        for s in self.specs:
            owner_name, _, attr = s.name.rpartition(".")
            owner = mod.get_submodule(owner_name) if owner_name else mod
            p = nn.Parameter(views[s.name], requires_grad=grad_row is not None)
            if gviews is not None:
                p.grad = gviews[s.name]
            owner._parameters[attr] = p
        return mod

    @property
    def modules(self) -> list[nn.Module]:
        """One module per row, bound to ``params``/``grads`` (built on first use)."""
        if self._modules is None:
            self._modules = [self.bound_module(self.params[k], self.grads[k])
                             for k in range(self.models)]
        return self._modules

    def consensus_distance(self, rows: slice | None = None) -> float:
        """(1/m) sum_k ||x_k - mean x||^2 over the given rows."""
        p = self.params if rows is None else self.params[rows]
        return float(((p - p.mean(0, keepdim=True)) ** 2).sum(1).mean())


# -- per-node forward/backward ------------------------------------------------------------------


def loop_forward_backward(stack: NodeStack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradients of each model's mean cross-entropy on its own batch, into ``stack.grads``.

    ``x``: [models, B, ...], ``y``: [models, B]. Returns the [models] batch losses.
    """
    stack.grads.zero_()
    losses = torch.empty(stack.models, device=stack.device)
    for k, mod in enumerate(stack.modules):
        loss = F.cross_entropy(mod(x[k]), y[k])
        loss.backward()
        losses[k] = loss.detach()
    return losses


def vmap_forward_backward(stack: NodeStack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Same as :func:`loop_forward_backward` with one vmapped call over all models."""
    from torch.func import functional_call, grad_and_value, vmap

    template = stack.template

    def loss_fn(params: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor):
        return F.cross_entropy(functional_call(template, params, (xb,)), yb)

    params = {k: v.detach() for k, v in stack.stacked_views(stack.params).items()}
    grads, losses = vmap(grad_and_value(loss_fn))(params, x, y)
    gviews = stack.stacked_views(stack.grads)
    for name, g in grads.items():
        gviews[name].copy_(g)
    return losses.detach()


BACKENDS = {"loop": loop_forward_backward, "vmap": vmap_forward_backward}


def choose_backend(name: str, device: torch.device) -> str:
    """'auto': vmap on accelerators, the loop on CPU (vmap lowers convs to slower grouped convs)."""
    if name != "auto":
        return name
    return "vmap" if device.type != "cpu" else "loop"
