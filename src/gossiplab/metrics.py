"""Evaluation: the averaged model and the per-node models on train (union of the nodes' data) and
test, generalization gaps, and consensus distance, batched so that evaluation stays cheap."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gossiplab.config import EvalConfig
from gossiplab.data.datasets import Dataset

EVAL_SUBSAMPLE_SEED = 7  # fixed: the per-node evaluation subsample never changes between runs


@torch.no_grad()
def score(module: nn.Module, ds: Dataset, x: torch.Tensor, y: torch.Tensor,
          batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``module`` on stored inputs ``x`` with labels ``y``."""
    loss, correct, counts = score_per_class(module, ds, x, y, batch_size)
    n = max(int(counts.sum()), 1)
    return float(loss.sum()) / n, float(correct.sum()) / n


@torch.no_grad()
def score_per_class(module: nn.Module, ds: Dataset, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class summed cross-entropy, correct predictions and sample counts ([C] each)."""
    c = ds.num_classes
    loss = torch.zeros(c, dtype=torch.float64, device=y.device)
    correct = torch.zeros(c, dtype=torch.float64, device=y.device)
    for i in range(0, len(y), batch_size):
        out = module(ds.normalise(x[i:i + batch_size]))
        yb = y[i:i + batch_size]
        loss += torch.bincount(yb, F.cross_entropy(out, yb, reduction="none").double(), c)
        correct += torch.bincount(yb, (out.argmax(1) == yb).double(), c)
    counts = torch.bincount(y, minlength=c).double()
    return loss.cpu().numpy(), correct.cpu().numpy(), counts.cpu().numpy()


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
    most ``max_nodes`` evenly spaced nodes are scored."""

    def __init__(self, dataset: Dataset, train_indices: np.ndarray, cfg: EvalConfig):
        self.ds = dataset
        self.cfg = cfg
        dev = dataset.x_train.device
        tr = torch.as_tensor(np.sort(train_indices), device=dev)
        self.x_train, self.y_train = dataset.x_train[tr], dataset.y_train[tr]
        rng = np.random.default_rng(EVAL_SUBSAMPLE_SEED)
        ntr = min(cfg.node_samples, len(tr))
        nte = min(cfg.node_samples, len(dataset.y_test))
        sub_tr = torch.as_tensor(np.sort(rng.choice(len(tr), ntr, replace=False)), device=dev)
        sub_te = torch.as_tensor(np.sort(rng.choice(len(dataset.y_test), nte, replace=False)),
                                 device=dev)
        self.node_x_train, self.node_y_train = self.x_train[sub_tr], self.y_train[sub_tr]
        self.node_x_test, self.node_y_test = dataset.x_test[sub_te], dataset.y_test[sub_te]
        self._avg_row: torch.Tensor | None = None
        self._avg_module: nn.Module | None = None
        # Under label skew with a fixed n per node, S's label distribution (that of the mixture
        # (1/m) sum_k D_k the nodes sample from) can differ from the test set's; the test scores
        # reweighted per class to S's labels estimate the population risk of that mixture, so
        # the *_matched gaps measure generalization without the label shift.
        self.class_weights = label_matching_weights(
            self.y_train.cpu().numpy(), dataset.y_test.cpu().numpy(), dataset.num_classes)

    def node_ids(self, models: int) -> list[int]:
        return scored_nodes(models, self.cfg.max_nodes)

    def score_module(self, module: nn.Module, full: bool = True) -> dict[str, float]:
        bs = self.cfg.batch_size
        if full:
            trl, tra = score(module, self.ds, self.x_train, self.y_train, bs)
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

    def average_module(self, stack, vector: torch.Tensor) -> nn.Module:
        if self._avg_module is None or self._avg_row is None or self._avg_row.shape != vector.shape:
            self._avg_row = torch.empty_like(vector)
            self._avg_module = stack.bound_module(self._avg_row)
        self._avg_row.copy_(vector)
        return self._avg_module

    def evaluate(self, sim) -> dict:
        """Metrics of replica 0 of a :class:`~gossiplab.engine.simulator.Simulator`."""
        k = sim.models_per_replica
        params = sim.replica_params(0)
        return self.report(sim.stack, params.mean(0),
                           (sim.stack.modules[i] for i in self.node_ids(k)),
                           sim.stack.consensus_distance(slice(0, k)))

    def report(self, stack, average: torch.Tensor, node_modules, consensus: float) -> dict:
        """The metrics record from the averaged parameter vector, the modules of the scored nodes
        (those of :meth:`node_ids`, in order; any iterable) and the consensus distance. Engines
        that hold the models elsewhere (the distributed engine) assemble these and call this."""
        avg = self.score_module(self.average_module(stack, average), full=True)
        node_scores = [self.score_module(mod, full=False) for mod in node_modules]
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
