"""Evaluation: the averaged model and the per-node models on train (union of the nodes' data) and
test, generalization gaps, and consensus distance, batched so that evaluation stays cheap.

Memory: evaluation keeps no copy of the training data (it gathers each batch by index), and its
batch is sized from the model (:func:`eval_batch_size`) so that its activations take no more than
one node's forward/backward at the training batch, which the run needs anyway.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gossiplab.config import EvalConfig
from gossiplab.data.datasets import MODEL_INPUT_CACHE_BYTES, Dataset
from gossiplab.engine.nodestack import bmm_logits_t

EVAL_SUBSAMPLE_SEED = 7  # fixed: the per-node evaluation subsample never changes between runs
EVAL_MIN_BYTES = 8 << 20  # an evaluation batch may always take this much activation memory
EVAL_MAX_BATCH = 8192


def activation_bytes(template: nn.Module, input_shape: tuple[int, ...],
                     device: torch.device | str = "cpu") -> tuple[int, int]:
    """Per-sample activation bytes of ``template``: (kept for backward in training = the sum of
    every leaf module's output, live at once in a no-grad forward = the largest input + output of
    one leaf module). Measured by one forward pass on two zero samples with hooks."""
    total = [0]
    live = [int(np.prod(input_shape)) * 4]

    def hook(mod, inputs, out) -> None:
        n_out = out.numel() // 2 * out.element_size() if torch.is_tensor(out) else 0
        n_in = sum(t.numel() // 2 * t.element_size() for t in inputs if torch.is_tensor(t))
        total[0] += n_out
        live[0] = max(live[0], n_in + n_out)

    leaves = [m for m in template.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            template(torch.zeros(2, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return max(total[0], 1), max(live[0], 1)


def eval_batch_size(template: nn.Module, input_shape: tuple[int, ...], train_batch: int,
                    models_at_once: int = 1, device: torch.device | str = "cpu") -> int:
    """Evaluation batch such that its activations (``models_at_once`` models side by side) take
    at most what one node's forward/backward at ``train_batch`` keeps, or EVAL_MIN_BYTES."""
    kept, live = activation_bytes(template, input_shape, device)
    budget = max(EVAL_MIN_BYTES, train_batch * kept)
    return int(min(EVAL_MAX_BATCH, max(1, budget // (live * max(1, models_at_once)))))


@torch.no_grad()
def score(module: nn.Module, ds: Dataset, x: torch.Tensor, y: torch.Tensor,
          batch_size: int = 2048, index: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``module`` on stored inputs ``x`` with labels ``y``
    (or on ``x[index]``, labels ``y`` = those of ``index``, gathered batch by batch)."""
    loss, correct, counts = score_per_class(module, ds, x, y, batch_size, index)
    n = max(int(counts.sum()), 1)
    return float(loss.sum()) / n, float(correct.sum()) / n


@torch.no_grad()
def score_per_class(module: nn.Module, ds: Dataset, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int = 2048, index: torch.Tensor | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class summed cross-entropy, correct predictions and sample counts ([C] each)."""
    c = ds.num_classes
    loss = torch.zeros(c, dtype=torch.float64, device=y.device)
    correct = torch.zeros(c, dtype=torch.float64, device=y.device)
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size] if index is None else x[index[i:i + batch_size]]
        out = module(ds.normalise(xb, inplace=index is not None))
        yb = y[i:i + batch_size]
        loss += torch.bincount(yb, F.cross_entropy(out, yb, reduction="none").double(), c)
        correct += torch.bincount(yb, (out.argmax(1) == yb).double(), c)
    counts = torch.bincount(y, minlength=c).double()
    return loss.cpu().numpy(), correct.cpu().numpy(), counts.cpu().numpy()


@torch.no_grad()
def score_stacked(template: nn.Sequential, rows: dict[str, torch.Tensor], ds: Dataset,
                  x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  index: torch.Tensor | None = None, class_weights: np.ndarray | None = None,
                  normalised: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean cross-entropy and accuracy of S Flatten/Linear/ReLU models at once (``rows``: their
    [S, *shape] parameters by name), one batched product per layer: ([S], [S], and with
    ``class_weights`` the cross-entropy with each sample weighted by its class's weight, else
    None). ``normalised``: ``x`` is already model input (:meth:`Dataset.normalise`d)."""
    first = next(iter(rows.values()))
    n_models = first.shape[0]
    w = None if class_weights is None else torch.as_tensor(class_weights, device=y.device)
    wloss = torch.zeros(n_models, dtype=torch.float64, device=y.device)
    loss = torch.zeros(n_models, dtype=torch.float64, device=y.device)
    correct = torch.zeros(n_models, dtype=torch.float64, device=y.device)
    for i in range(0, len(y), batch_size):
        if normalised:
            xb = x[i:i + batch_size]
        else:
            xb = x[i:i + batch_size] if index is None else x.index_select(0, index[i:i + batch_size])
            xb = ds.normalise(xb, inplace=index is not None)
        logits = bmm_logits_t(template, rows, xb.reshape(1, xb.shape[0], -1).expand(n_models, -1, -1))
        yb = y[i:i + batch_size]
        label = yb.view(1, 1, -1).expand(n_models, 1, -1)
        # [S, classes, batch]: softmax and max over the middle dimension (fast on CPU)
        per_sample = torch.log_softmax(logits, 1).gather(1, label).squeeze(1).neg_().double()
        loss += per_sample.sum(1)
        if w is not None:
            wloss += (per_sample * w[yb]).sum(1)
        correct += predicted(logits, label).double().sum(1)
    n = max(len(y), 1)
    weighted = None
    if w is not None:
        wloss /= max(float(w[y].sum()), 1e-300)
        weighted = wloss.cpu().numpy()
    return (loss / n).cpu().numpy(), (correct / n).cpu().numpy(), weighted


def predicted(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """[S, batch] booleans: ``argmax`` over classes of ``logits`` [S, classes, batch] equals
    ``label`` [S, 1, batch]. Exactly argmax's answer (the first of tied maxima wins), computed as
    "the label's logit is the maximum and no other logit ties it", with argmax itself only for
    samples with a tie: ``argmax`` over a middle dimension takes 50x the time of ``amax`` on CPU."""
    top = logits == logits.amax(1, keepdim=True)
    hit = top.gather(1, label).squeeze(1)
    tied = top.sum(1) > 1
    if bool(tied.any()):
        return torch.where(tied, logits.argmax(1) == label.squeeze(1), hit)
    return hit


def scored_nodes(models: int, max_nodes: int) -> list[int]:
    """The nodes whose own models are scored: all of them, or ``max_nodes`` evenly spaced."""
    if models <= max_nodes:
        return list(range(models))
    return sorted({int(round(v)) for v in np.linspace(0, models - 1, max_nodes)})


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def gaps(avg: dict[str, float]) -> dict[str, float]:
    """Generalization gap, oriented so that larger = worse generalization: test minus train in
    cross-entropy, and test minus train in 0-1 error (= train_acc - test_acc). With the
    label-matched test scores (see :class:`Evaluator`) also ``gen_gap_{loss,acc}_matched``."""
    out = {
        "gen_gap_loss": avg["test_loss"] - avg["train_loss"],
        "gen_gap_acc": avg["train_acc"] - avg["test_acc"],
    }
    if "test_loss_matched" in avg:
        out["gen_gap_loss_matched"] = avg["test_loss_matched"] - avg["train_loss"]
        out["gen_gap_acc_matched"] = avg["train_acc"] - avg["test_acc_matched"]
    return out


def label_matching_weights(train_labels: np.ndarray, test_labels: np.ndarray,
                           num_classes: int) -> np.ndarray:
    """Per-class weights w_c = p_S(c) / p_test(c) that make the test set's label distribution that
    of the training union S (zero for classes absent from S; classes absent from the test set
    cannot be represented and are dropped)."""
    ps = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    pt = np.bincount(test_labels, minlength=num_classes).astype(np.float64)
    ps /= max(ps.sum(), 1.0)
    pt /= max(pt.sum(), 1.0)
    return np.divide(ps, pt, out=np.zeros_like(ps), where=pt > 0)


class Evaluator:
    """Scores a simulator's models. The averaged model sees all of S (the union of the nodes'
    training data) and the whole test set; per-node models see a fixed subsample of each, and at
    most ``max_nodes`` evenly spaced nodes are scored.

    Inputs are gathered from the dataset batch by batch (no copy of S is kept). Models of
    Flatten/Linear/ReLU layers (logreg, mlp) score all the scored nodes at once, one batched
    product per layer; others one node after the other through a scratch module.
    ``eval.batch_size = 0`` sizes the batch from the model (:func:`eval_batch_size`).
    """

    def __init__(self, dataset: Dataset, train_indices: np.ndarray, cfg: EvalConfig,
                 train_batch: int = 32):
        self.ds = dataset
        self.cfg = cfg
        self.train_batch = train_batch
        dev = dataset.x_train.device
        tr = torch.as_tensor(np.sort(train_indices), device=dev)
        self.train_index = None if len(tr) == len(dataset.y_train) else tr  # None: all of them
        self.y_train = dataset.y_train if self.train_index is None else dataset.y_train[tr]
        rng = np.random.default_rng(EVAL_SUBSAMPLE_SEED)
        ntr = min(cfg.node_samples, len(tr))
        nte = min(cfg.node_samples, len(dataset.y_test))
        sub_tr = torch.as_tensor(np.sort(rng.choice(len(tr), ntr, replace=False)), device=dev)
        sub_te = torch.as_tensor(np.sort(rng.choice(len(dataset.y_test), nte, replace=False)),
                                 device=dev)
        self.node_x_train, self.node_y_train = dataset.x_train[tr[sub_tr]], dataset.y_train[tr[sub_tr]]
        self.node_x_test, self.node_y_test = dataset.x_test[sub_te], dataset.y_test[sub_te]
        self._avg_row: torch.Tensor | None = None
        self._avg_module: nn.Module | None = None
        self._node_row: torch.Tensor | None = None
        self._node_module: nn.Module | None = None
        self._batch: dict[int, int] = {}
        self._normalised_nodes: tuple[torch.Tensor, ...] | None = None
        # Under label skew with a fixed n per node, S's label distribution (that of the mixture
        # (1/m) sum_k D_k the nodes sample from) can differ from the test set's; the test scores
        # reweighted per class to S's labels estimate the population risk of that mixture, so
        # the *_matched gaps measure generalization without the label shift.
        self.class_weights = label_matching_weights(
            self.y_train.cpu().numpy(), dataset.y_test.cpu().numpy(), dataset.num_classes)

    @property
    def x_train(self) -> torch.Tensor:
        """S's stored inputs (a copy when S is not the whole training set: only for callers that
        need them as one tensor; evaluation itself gathers batch by batch)."""
        return self.ds.x_train if self.train_index is None else self.ds.x_train[self.train_index]

    def node_ids(self, models: int) -> list[int]:
        return scored_nodes(models, self.cfg.max_nodes)

    def batch_size(self, template: nn.Module, models_at_once: int = 1) -> int:
        if self.cfg.batch_size:
            return self.cfg.batch_size
        bs = self._batch.get(models_at_once)
        if bs is None:
            bs = self._batch[models_at_once] = eval_batch_size(
                template, self.ds.input_shape, self.train_batch, models_at_once,
                self.ds.x_train.device)
        return bs

    def score_module(self, module: nn.Module, full: bool = True) -> dict[str, float]:
        bs = self.batch_size(module)
        if full:
            trl, tra = score(module, self.ds, self.ds.x_train, self.y_train, bs, self.train_index)
            loss, correct, counts = score_per_class(module, self.ds, self.ds.x_test, self.ds.y_test, bs)
            n = max(counts.sum(), 1.0)
            wn = max(float((self.class_weights * counts).sum()), 1e-300)
            return {"train_loss": trl, "train_acc": tra,
                    "test_loss": float(loss.sum() / n), "test_acc": float(correct.sum() / n),
                    "test_loss_matched": float((self.class_weights * loss).sum() / wn),
                    "test_acc_matched": float((self.class_weights * correct).sum() / wn)}
        trl, tra = score(module, self.ds, self.node_x_train, self.node_y_train, bs)
        loss, correct, counts = score_per_class(module, self.ds, self.node_x_test,
                                                self.node_y_test, bs)
        n = max(counts.sum(), 1.0)
        wn = max(float((self.class_weights * counts).sum()), 1e-300)
        return {"train_loss": trl, "train_acc": tra,
                "test_loss": float(loss.sum() / n), "test_acc": float(correct.sum() / n),
                "test_loss_matched": float((self.class_weights * loss).sum() / wn)}

    def _node_inputs(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The per-node subsamples' inputs, normalised once when both copies together are small
        (at most MODEL_INPUT_CACHE_BYTES: the same values, no conversion at every evaluation);
        else the stored ones. Returns (train, test, normalised)."""
        if self._normalised_nodes is None:
            n = self.node_x_train.numel() + self.node_x_test.numel()
            self._normalised_nodes = (
                (self.ds.normalise(self.node_x_train), self.ds.normalise(self.node_x_test))
                if n * 4 <= MODEL_INPUT_CACHE_BYTES else ())
        if self._normalised_nodes:
            return (*self._normalised_nodes, True)
        return self.node_x_train, self.node_x_test, False

    def score_rows(self, stack, rows) -> list[dict[str, float]]:
        """Node scores (on the fixed subsamples) of the models whose parameters are ``rows`` (a
        [S, d] tensor or a sequence of length-d rows)."""
        from gossiplab.engine.nodestack import bmm_supported

        if bmm_supported(stack.template) and len(rows) > 1:
            views = stack.stacked_views(rows if torch.is_tensor(rows) else torch.stack(list(rows)))
            bs = self.batch_size(stack.template, len(rows))
            x_train, x_test, ready = self._node_inputs()
            trl, tra, _ = score_stacked(stack.template, views, self.ds, x_train,
                                        self.node_y_train, bs, normalised=ready)
            tel, tea, telm = score_stacked(stack.template, views, self.ds, x_test,
                                           self.node_y_test, bs, class_weights=self.class_weights,
                                           normalised=ready)
            return [{"train_loss": float(trl[i]), "train_acc": float(tra[i]),
                     "test_loss": float(tel[i]), "test_acc": float(tea[i]),
                     "test_loss_matched": float(telm[i])}
                    for i in range(len(rows))]
        if self._node_module is None or self._node_row is None \
                or self._node_row.shape != rows[0].shape:
            self._node_row = torch.empty_like(rows[0])
            self._node_module = stack.bound_module(self._node_row)
        out = []
        for r in rows:
            self._node_row.copy_(r)
            out.append(self.score_module(self._node_module, full=False))
        return out

    def average_module(self, stack, vector: torch.Tensor) -> nn.Module:
        if self._avg_module is None or self._avg_row is None or self._avg_row.shape != vector.shape:
            self._avg_row = torch.empty_like(vector)
            self._avg_module = stack.bound_module(self._avg_row)
        self._avg_row.copy_(vector)
        return self._avg_module

    def evaluate(self, sim, replica: int = 0) -> dict:
        """Metrics of replica ``replica`` of a :class:`~gossiplab.engine.simulator.Simulator`
        (or of any engine with its ``stack`` and ``models_per_replica``)."""
        k = sim.models_per_replica
        rows = slice(replica * k, (replica + 1) * k)
        params = sim.stack.params[rows]
        return self.report(sim.stack, params.mean(0), [params[i] for i in self.node_ids(k)],
                           sim.stack.consensus_distance(rows))

    def report(self, stack, average: torch.Tensor, node_rows, consensus: float) -> dict:
        """The metrics record from the averaged parameter vector, the parameter rows of the
        scored nodes (those of :meth:`node_ids`, in order) and the consensus distance. Engines
        that hold the models elsewhere (the distributed engine) assemble these and call this."""
        avg = self.score_module(self.average_module(stack, average), full=True)
        node_scores = self.score_rows(stack, node_rows)
        for s in node_scores:  # per-node gaps, so that the worst node's gap is recorded too
            s["gen_gap_loss"] = s["test_loss"] - s["train_loss"]
            s["gen_gap_acc"] = s["train_acc"] - s["test_acc"]
            s["gen_gap_loss_matched"] = s["test_loss_matched"] - s["train_loss"]
        nodes = {key: _stats([s[key] for s in node_scores]) for key in node_scores[0]}
        return {
            "avg_model": avg,
            "nodes": nodes,
            **gaps(avg),
            "consensus_distance": consensus,
        }
