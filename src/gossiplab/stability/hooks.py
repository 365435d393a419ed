"""Training hooks of a stability run: twin distances and loss stability, the consensus recursion
beside the measured consensus distance, and smoothness probes along the trajectory."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from gossiplab.metrics import Evaluator
from gossiplab.run.loop import Hook
from gossiplab.stability.perturb import Perturbation
from gossiplab.stability.smoothness import max_sample_gradient_norm, model_loss, top_hessian_eigenvalue
from gossiplab.theory import consensus_steady_state, gossip_contraction

Emit = Callable[[dict], None]


def record_points(iterations: int, count: int) -> list[int]:
    """0, T and about ``count`` log-spaced iterations in between (for fits against t)."""
    pts = {0, iterations}
    pts.update(int(v) for v in np.round(np.geomspace(1, max(iterations, 1), max(count, 2))))
    return sorted(p for p in pts if 0 <= p <= iterations)


def probe_points(iterations: int, count: int) -> list[int]:
    """``count`` evenly spaced iterations from 0 to T (smoothness probes)."""
    if count <= 0:
        return []
    if count == 1:
        return [iterations]
    return sorted({int(v) for v in np.round(np.linspace(0, iterations, count))})


def _forward_rows(sim, rows: torch.Tensor, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Logits [R, N, C] of the models in ``rows`` ([R, d] flat parameters) on shared inputs x."""
    from torch.func import functional_call, vmap

    views = sim.stack.stacked_views(rows)
    template = sim.stack.template

    def f(p, xb):
        return functional_call(template, p, (xb,))

    outs = [vmap(f, in_dims=(0, None))(views, x[i:i + chunk]) for i in range(0, len(x), chunk)]
    return torch.cat(outs, 1)


def label_matching_weights(y_train: torch.Tensor, y_test: torch.Tensor, classes: int) -> torch.Tensor:
    """Weights on test samples that give each class the share it has in the training set S:
    sum_i w_i l_i = sum_y pi_S(y) (mean test loss of class y). Under label skew the union S of
    the nodes' data does not follow the test set's label distribution; the weighted test loss
    estimates the risk on the mixture of the nodes' distributions (labels from S, inputs given the
    label as in the test set), the population the twins' fresh samples come from."""
    pi_s = torch.bincount(y_train, minlength=classes).double()
    pi_s /= pi_s.sum()
    cnt = torch.bincount(y_test, minlength=classes).double()
    w = torch.where(cnt > 0, pi_s / cnt.clamp(min=1), torch.zeros_like(cnt))[y_test]
    return (w / w.sum()).to(torch.float32)


class StabilityRecorder(Hook):
    """At the given iterations, compares replica 0 (the run on S) with each twin r (on S^(ij)):
    per-node ||x_k - x'_k||^2, averaged-model ||xbar - xbar'||^2, and the loss stability of the
    averaged models on the replaced sample z_i and on a fixed test subsample; also replica 0's
    averaged-model train/test loss (the generalization gap along t)."""

    def __init__(self, perturbations: list[Perturbation], points: Iterable[int],
                 evaluator: Evaluator, emit: Emit | None = None, tags: dict | None = None,
                 per_node: bool = True):
        self.perturbations = perturbations
        self.points = set(points)
        self.evaluator = evaluator
        self.emit = emit
        self.tags = tags or {}
        self.per_node = per_node
        self.records: list[dict] = []

    def on_start(self, sim) -> None:
        ds = sim.setup.dataset
        ev = self.evaluator
        idx = torch.as_tensor([p.replaced for p in self.perturbations], dtype=torch.int64,
                              device=ds.x_train.device)
        self.x_rep, self.y_rep = ds.normalise(ds.x_train[idx]), ds.y_train[idx]
        self.x_te, self.y_te = ds.normalise(ev.node_x_test), ev.node_y_test
        self.x_tr, self.y_tr = ds.normalise(ev.node_x_train), ev.node_y_train
        self.test_weights = label_matching_weights(ev.y_train, self.y_te, ds.num_classes)
        if sim.iteration in self.points:
            self.record(sim)

    def on_step(self, sim, loss: float) -> None:
        if sim.iteration in self.points:
            self.record(sim)

    @torch.no_grad()
    def record(self, sim) -> dict:
        k, r = sim.models_per_replica, sim.replicas
        p = sim.stack.params.view(r, k, -1)
        diff = p[1:] - p[:1]
        node = (diff * diff).sum(-1)  # [K, k]
        avg = p.mean(1)  # [R, d]
        d_avg = avg[1:] - avg[:1]
        avg_dist = (d_avg * d_avg).sum(-1)
        te = _forward_rows(sim, avg, self.x_te)  # [R, N, C]
        l_te = F.cross_entropy(te.flatten(0, 1), self.y_te.repeat(r), reduction="none").view(r, -1)
        tr0 = _forward_rows(sim, avg[:1], self.x_tr)[0]
        train_loss = float(F.cross_entropy(tr0, self.y_tr))
        test_loss = float(l_te[0].mean())
        test_matched = float((l_te[0] * self.test_weights).sum())
        rec = {
            **self.tags,
            "algorithm": sim.name,
            "iteration": sim.iteration,
            "lr": sim.lr(),
            "avg_dist": avg_dist.tolist(),
            "node_dist": node.mean(1).tolist(),
        }
        if self.per_node:
            rec["node_dists"] = node.tolist()
        if r > 1:
            on_rep = _forward_rows(sim, avg, self.x_rep)  # [R, K, C]
            ids = torch.arange(r - 1, device=on_rep.device)
            base = F.cross_entropy(on_rep[0], self.y_rep, reduction="none")
            twin = F.cross_entropy(on_rep[ids + 1, ids], self.y_rep, reduction="none")
            rec["loss_replaced"] = base.tolist()
            rec["loss_replaced_twin"] = twin.tolist()
            rec["loss_test_abs"] = (l_te[1:] - l_te[:1]).abs().mean(1).tolist()
        else:
            rec["loss_replaced"] = rec["loss_replaced_twin"] = rec["loss_test_abs"] = []
        rec.update(train_loss=train_loss, test_loss=test_loss, gen_gap=test_loss - train_loss,
                   test_loss_matched=test_matched, gen_gap_matched=test_matched - train_loss)
        self.records.append(rec)
        if self.emit:
            self.emit(rec)
        return rec


class ConsensusTracker(Hook):
    """Runs the consensus recursion r_{t+1} = kappa_t (r_t + eta_t zeta_t) of
    :func:`gossiplab.theory.consensus_recursion` online, with zeta_t the measured root mean square
    deviation of the nodes' update directions (gradient + weight decay) of replica 0, and records
    it at the given iterations beside the measured consensus distance and the steady state
    (kappa eta zeta / (1 - kappa))^2. The bound holds for plain SGD (no momentum)."""

    def __init__(self, points: Iterable[int], emit: Emit | None = None, tags: dict | None = None,
                 ema: float = 0.98):
        self.points = set(points)
        self.emit = emit
        self.tags = tags or {}
        self.ema = ema
        self.records: list[dict] = []
        self._kappa: dict[tuple[int, int], float] = {}

    def on_start(self, sim) -> None:
        self.k = sim.models_per_replica
        self.enabled = sim.algorithm.gossip is not None and self.k > 1
        self.applies = sim.cfg.optim.momentum == 0
        self.r = float(np.sqrt(sim.stack.consensus_distance(slice(0, self.k))))
        self.zeta2 = None

    def kappa(self, sim, q: int, round0: int) -> float:
        topo = sim.setup.topology
        key = (q, round0 % topo.period)
        if key not in self._kappa:
            self._kappa[key] = gossip_contraction(topo, q, round0)
        return self._kappa[key]

    @torch.no_grad()
    def on_step(self, sim, loss: float) -> None:
        if not self.enabled:
            return
        lr = sim.schedule(sim.iteration - 1)
        g = sim.stack.grads[: self.k]
        zeta = float(((g - g.mean(0, keepdim=True)) ** 2).sum(1).mean().sqrt())
        q = sim.algorithm.gossip.rounds()
        kap = self.kappa(sim, q, sim.round - q)
        self.r = kap * (self.r + lr * zeta)
        self.zeta2 = zeta**2 if self.zeta2 is None else self.ema * self.zeta2 + (1 - self.ema) * zeta**2
        if sim.iteration in self.points:
            steady = consensus_steady_state(kap, lr, float(np.sqrt(self.zeta2)))
            rec = {
                **self.tags,
                "algorithm": sim.name,
                "iteration": sim.iteration,
                "measured": sim.stack.consensus_distance(slice(0, self.k)),
                "recursion_bound": self.r**2,
                "steady_state": steady if np.isfinite(steady) else None,  # None: no gossip
                "zeta": float(np.sqrt(self.zeta2)),
                "contraction": kap,
                "bound_applies": self.applies,
            }
            self.records.append(rec)
            if self.emit:
                self.emit(rec)


class SmoothnessProbe(Hook):
    """At the given iterations: the largest-modulus Hessian eigenvalue of the training loss (on
    the evaluator's fixed train subsample) at replica 0's averaged model, by power iteration, and
    the largest per-sample gradient norm there (a Lipschitz estimate)."""

    def __init__(self, points: Iterable[int], evaluator: Evaluator, *, iterations: int = 30,
                 seed: int = 0, tags: dict | None = None):
        self.points = set(points)
        self.evaluator = evaluator
        self.iterations = iterations
        self.seed = seed
        self.tags = tags or {}
        self.records: list[dict] = []

    def on_start(self, sim) -> None:
        ds = sim.setup.dataset
        self.x = ds.normalise(self.evaluator.node_x_train)
        self.y = self.evaluator.node_y_train
        if sim.iteration in self.points:
            self.probe(sim)

    def on_step(self, sim, loss: float) -> None:
        if sim.iteration in self.points:
            self.probe(sim)

    def probe(self, sim) -> dict:
        w = sim.average_model(0).detach()
        res = top_hessian_eigenvalue(model_loss(sim.stack, self.x, self.y), w,
                                     iterations=self.iterations, seed=self.seed)
        lip = max_sample_gradient_norm(sim.stack.template, sim.stack, w, self.x, self.y)
        rec = {**self.tags, "algorithm": sim.name, "iteration": sim.iteration,
               "top_eigenvalue": res.eigenvalue, "beta": abs(res.eigenvalue),
               "power_iterations": res.iterations, "converged": res.converged,
               "max_grad_norm": lip}
        self.records.append(rec)
        return rec
