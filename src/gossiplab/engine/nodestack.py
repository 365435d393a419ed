"""All node models as the rows of one [models, d] parameter matrix.

Gradients and optimizer state have the same shape, so the optimizer step and every gossip round
are single tensor operations whatever the number of nodes. Per-node forward/backward backends:

* ``loop``: a python loop over lightweight modules whose parameters *are* views into the rows;
* ``threads``: the same loop split over one single-threaded worker per intra-op thread (small
  convolutions scale poorly over intra-op threads; independent nodes scale well);
* ``bmm``: models made only of Flatten/Linear/ReLU (logreg, mlp) run as one batched matrix
  product per layer over all nodes, forward and a written-out backward (no per-node python
  overhead, no autograd);
* ``vmap``: ``torch.func.vmap`` over the stacked parameters (any model; one batched kernel per
  layer: the right choice on GPUs; on CPU it lowers convolutions to slower grouped convolutions).

``choose_backend('auto', ...)`` picks bmm where it applies, else vmap on accelerators, else
threads (or the loop with one thread).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from gossiplab.engine.runtime import run_in_workers

SCRATCH_BYTES = 8 << 20  # row-wise passes over the matrix use temporaries of about this size


def scratch_rows(mat: torch.Tensor) -> int:
    """Rows of ``mat`` that fit in SCRATCH_BYTES (at least one)."""
    return max(1, SCRATCH_BYTES // max(1, mat.shape[1] * mat.element_size()))


def all_finite(mat: torch.Tensor) -> bool:
    """No NaN/inf in a [rows, d] matrix, checked a few rows at a time (no [rows, d] mask)."""
    step = scratch_rows(mat)
    return all(bool(torch.isfinite(mat[i:i + step]).all()) for i in range(0, mat.shape[0], step))


def like(value: object, ref: torch.Tensor, what: str) -> None:
    """Raise ValueError unless ``value`` is a tensor of ``ref``'s shape and dtype (a state read
    back from a checkpoint: ``copy_`` would broadcast a scalar or convert integers silently)."""
    if not torch.is_tensor(value):
        raise ValueError(f"{what} is not a tensor")
    if value.shape != ref.shape or value.dtype != ref.dtype:
        raise ValueError(f"{what} is {value.dtype} {tuple(value.shape)}, not "
                         f"{ref.dtype} {tuple(ref.shape)}")


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
        self._param_views: dict[str, torch.Tensor] | None = None
        self._grad_views: dict[str, torch.Tensor] | None = None

    # -- views ---------------------------------------------------------------------------------

    def row_views(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter-shaped views into one row (a length-d vector)."""
        return {s.name: row[s.offset:s.offset + s.numel].view(s.shape) for s in self.specs}

    def stacked_views(self, mat: torch.Tensor) -> dict[str, torch.Tensor]:
        """[models, *shape] views into a [models, d] matrix (for vmap)."""
        n = mat.shape[0]
        return {s.name: mat[:, s.offset:s.offset + s.numel].view(n, *s.shape) for s in self.specs}

    @property
    def param_views(self) -> dict[str, torch.Tensor]:
        """:meth:`stacked_views` of ``params``, made once (a step's backends read them every
        iteration; ``params`` is updated in place, never replaced)."""
        if self._param_views is None:
            self._param_views = self.stacked_views(self.params)
        return self._param_views

    @property
    def grad_views(self) -> dict[str, torch.Tensor]:
        """:meth:`stacked_views` of ``grads``, made once."""
        if self._grad_views is None:
            self._grad_views = self.stacked_views(self.grads)
        return self._grad_views

    def bound_module(self, row: torch.Tensor, grad_row: torch.Tensor | None = None) -> nn.Module:
        """A module whose parameters are views of ``row`` (writes to the row show up in the
        module and vice versa); gradients accumulate in place into ``grad_row``."""
        # copy the module structure but not the parameter data, which the views replace
        mod = copy.deepcopy(self.template, memo={id(p): None for p in self.template.parameters()})
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
        """(1/m) sum_k ||x_k - mean x||^2 over the given rows, a few rows at a time (the
        temporaries stay about SCRATCH_BYTES, not a copy of the matrix; each row's sum is the
        same operation as over the whole matrix)."""
        p = self.params if rows is None else self.params[rows]
        mean = p.mean(0, keepdim=True)
        step = scratch_rows(p)
        sums = torch.cat([(p[i:i + step] - mean).pow_(2).sum(1) for i in range(0, p.shape[0], step)])
        return float(sums.mean())


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


def threads_forward_backward(stack: NodeStack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Same as :func:`loop_forward_backward`, with the nodes split into contiguous blocks, one per
    intra-op thread, each run by a worker limited to one thread. Every node's computation is the
    single-threaded loop's, so results equal ``loop`` at one thread bitwise."""
    workers = min(torch.get_num_threads(), stack.models)
    if workers <= 1 or stack.device.type != "cpu":
        return loop_forward_backward(stack, x, y)
    mods = stack.modules
    losses = torch.empty(stack.models, device=stack.device)

    def run(lo: int, hi: int) -> None:
        stack.grads[lo:hi].zero_()  # here, not in one parallel region before
        for k in range(lo, hi):
            loss = F.cross_entropy(mods[k](x[k]), y[k])
            loss.backward()
            losses[k] = loss.detach()

    bounds = [stack.models * w // workers for w in range(workers + 1)]
    run_in_workers([partial(run, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])
    return losses


BMM_LAYERS = (nn.Flatten, nn.Linear, nn.ReLU)

# The bmm backend writes a weight's gradient straight into its view of the gradient matrix (rows
# of d entries apart) from this many entries per model on: the product then spares a pass over
# [models, out, in] (0.6-0.75x the time from 16k entries: a 128x784 layer of 64 models took 4.3
# ms instead of 6.2 ms), the same bits. Below it MKL writes a strided output slowly (up to 3x
# for a 10x64 layer), so the product goes to a buffer of its own and is copied (measured).
DIRECT_GRAD_MIN_ENTRIES = 16384


def bmm_supported(template: nn.Module) -> bool:
    """True for an ``nn.Sequential`` of Flatten (from dim 1) / Linear / ReLU layers."""
    return isinstance(template, nn.Sequential) and all(
        isinstance(layer, BMM_LAYERS)
        and (not isinstance(layer, nn.Flatten) or (layer.start_dim, layer.end_dim) == (1, -1))
        for layer in template
    )


def bmm_logits_t(template: nn.Sequential, params: dict[str, torch.Tensor], x: torch.Tensor,
                 saved: list[tuple[int, torch.Tensor]] | None = None) -> torch.Tensor:
    """The logits of S :func:`bmm_supported` models at once, feature-major: ``x`` [S, batch,
    features] (sample-major, as stored), ``params`` their stacked [S, *shape] parameters by name;
    returns [S, classes, batch]. One batched product per layer, each computing W h + b on
    [S, features, batch] activations: with few classes the last product is 2x faster than
    h W^T + b on [S, batch, features] (MKL is slow at outputs 10 columns wide), and softmax,
    max and the backward pass then reduce over a middle dimension, which is faster on CPU than
    over a short last one (measured). ``saved`` (for a backward pass) receives (layer, its input)
    per Linear and (layer, its output) per ReLU, in order, all [S, features, batch]."""
    h = x.transpose(1, 2)
    owned = False  # h is a product made here (no one else holds it): ReLU may run in place
    for i, layer in enumerate(template):
        if isinstance(layer, nn.Linear):
            if saved is not None:
                saved.append((i, h))
            weight = params[f"{i}.weight"]
            bias = params.get(f"{i}.bias")
            h = torch.bmm(weight, h) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, h)
            owned = True
        elif isinstance(layer, nn.ReLU):
            # in place on a product made here: the backward pass needs only the ReLU's output
            # (a pass and an allocation fewer: 0.19 ms instead of 0.38 ms for 16 models x 64
            # units x 1,000 evaluated samples); the same values
            h = h.relu_() if owned else torch.relu(h)
            owned = True
            if saved is not None:
                saved.append((i, h))
    return h


def bmm_forward_backward(stack: NodeStack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Same as :func:`loop_forward_backward` for :func:`bmm_supported` models: every layer is one
    batched matrix product over all models, forward and backward, and every model gets the
    gradient of its own mean loss. The backward pass is written out (softmax minus one-hot,
    then per Linear one product for the weights, a sum for the bias and one product for the
    layer's input; a mask per ReLU): the same products autograd would run, without its
    bookkeeping, which costs about a third of a step for small models (docs/benchmarks.md).
    Activations and their gradients are feature-major ([S, features, batch]; see
    :func:`bmm_logits_t`), so a weight's gradient is one product in the weight's own layout."""
    if not bmm_supported(stack.template):
        raise ValueError("the bmm backend needs an nn.Sequential of Flatten/Linear/ReLU layers")
    with torch.no_grad():
        params = stack.param_views
        gviews = stack.grad_views
        saved: list[tuple[int, torch.Tensor]] = []
        logits = bmm_logits_t(stack.template, params, x.reshape(x.shape[0], x.shape[1], -1), saved)
        first_linear = next(i for i, layer in enumerate(stack.template) if isinstance(layer, nn.Linear))
        batch = logits.shape[2]
        log_p = torch.log_softmax(logits, 1)  # [models, classes, batch]
        target = y.reshape(y.shape[0], 1, batch)
        losses = log_p.gather(1, target).squeeze(1).mean(1).neg_()
        g = log_p.exp_()  # d(mean loss)/d(logits) = (softmax - one-hot) / batch
        g.scatter_add_(1, target, torch.full(target.shape, -1.0, dtype=g.dtype, device=g.device))
        g = g.div_(batch)
        for i, act in reversed(saved):
            if isinstance(stack.template[i], nn.ReLU):
                # g where the unit was active, else 0: one pass (g * (act > 0) takes three)
                g = torch.ops.aten.threshold_backward(g, act, 0)
                continue
            gview = gviews[f"{i}.weight"]
            if gview[0].numel() >= DIRECT_GRAD_MIN_ENTRIES:
                torch.bmm(g, act.transpose(1, 2), out=gview)
            else:
                gview.copy_(torch.bmm(g, act.transpose(1, 2)))
            if f"{i}.bias" in gviews:
                gviews[f"{i}.bias"].copy_(g.sum(2))
            if i != first_linear:
                g = torch.bmm(params[f"{i}.weight"].transpose(1, 2), g)
    return losses


BACKENDS = {
    "loop": loop_forward_backward,
    "threads": threads_forward_backward,
    "bmm": bmm_forward_backward,
    "vmap": vmap_forward_backward,
}


def choose_backend(name: str, device: torch.device, template: nn.Module | None = None) -> str:
    """'auto': bmm for Flatten/Linear/ReLU models (given ``template``); otherwise vmap on
    accelerators, and on CPU the per-node loop, split over threads when there are several (vmap
    lowers convolutions to slower grouped convolutions on CPU)."""
    if name != "auto":
        return name
    if template is not None and bmm_supported(template):
        return "bmm"
    if device.type != "cpu":
        return "vmap"
    return "threads" if torch.get_num_threads() > 1 else "loop"
