"""Splitting a training set across m nodes: IID, Dirichlet label skew (two kinds), shards.

Invariants (property-tested): no sample is on two nodes; every node holds at least one sample;
with ``samples_per_node = n`` every node holds exactly n; the split is a pure function of the
labels, the options and the data seed (kept apart from init and sampling seeds). Samples on no
node form ``pool``: fresh draws for stability twins come from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gossiplab.errors import ConfigError, unknown


@dataclass
class Partition:
    """Global training-set indices held by each node, and the unused remainder."""

    nodes: list[np.ndarray]
    pool: np.ndarray
    num_classes: int

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(ix) for ix in self.nodes])

    def union(self) -> np.ndarray:
        return np.concatenate(self.nodes)

    def label_histograms(self, labels: np.ndarray) -> np.ndarray:
        """[m, C] counts of each class on each node."""
        return np.stack([np.bincount(labels[ix], minlength=self.num_classes) for ix in self.nodes])

    def heterogeneity(self, labels: np.ndarray) -> dict:
        """Per-node label histograms and the mean total-variation distance between each node's
        label distribution and that of the union (0 = IID, 1 = disjoint supports)."""
        h = self.label_histograms(labels).astype(np.float64)
        p = h / h.sum(axis=1, keepdims=True)
        glob = h.sum(axis=0) / h.sum()
        tv = 0.5 * np.abs(p - glob).sum(axis=1)
        return {
            "mean_tv_distance": float(tv.mean()),
            "max_tv_distance": float(tv.max()),
            "classes_per_node": float((h > 0).sum(axis=1).mean()),
            "sizes": {"min": int(h.sum(1).min()), "max": int(h.sum(1).max()),
                      "mean": float(h.sum(1).mean())},
            "label_histograms": h.astype(int).tolist(),
        }


def _check_n(n: int | None, m: int, total: int) -> None:
    if n is not None:
        if n < 1:
            raise ConfigError(f"data.samples_per_node must be >= 1, got {n}")
        if n * m > total:
            raise ConfigError(
                f"data.samples_per_node = {n} with {m} nodes needs {n * m} training samples but "
                f"the dataset has {total} (at most {total // m} per node)"
            )
    elif total < m:
        raise ConfigError(f"topology.nodes = {m} but the dataset has only {total} training samples "
                          "(every node needs at least one)")


def iid(labels: np.ndarray, m: int, rng: np.random.Generator, n: int | None = None,
        **_: object) -> list[np.ndarray]:
    perm = rng.permutation(len(labels))
    if n is not None:
        return [perm[k * n:(k + 1) * n] for k in range(m)]
    return list(np.array_split(perm, m))


def _proportions(rng: np.random.Generator, alpha: float, k: int) -> np.ndarray:
    """Dir(alpha) proportions over k parts. numpy's draw overflows for alpha near the largest
    float (about 1e308: all zeros or NaN, which the splits below would turn into a silently
    wrong partition or a traceback): refused in one line instead."""
    p = rng.dirichlet(alpha * np.ones(k))
    if not (np.isfinite(p).all() and abs(float(p.sum()) - 1.0) < 1e-6):
        raise ConfigError(f"data.alpha = {alpha:g} is too large for a Dirichlet draw (it "
                          "overflows); from about 1e3 on the split is already close to IID")
    return p


def dirichlet(labels: np.ndarray, m: int, rng: np.random.Generator, n: int | None = None,
              alpha: float = 0.5, num_classes: int | None = None, **_: object) -> list[np.ndarray]:
    """Dirichlet(alpha) label skew.

    Without n: each class is split over nodes in Dir(alpha) proportions (Hsu et al., 2019), so
    node sizes vary; redrawn until every node holds a sample. With n: each node draws class
    proportions q_k ~ Dir(alpha) and fills its n slots class by class from q_k, restricted to
    classes with samples left (capacity-aware), so every node gets exactly n.
    """
    if not alpha > 0:
        raise ConfigError(f"data.alpha must be > 0, got {alpha}")
    c = int(num_classes or labels.max() + 1)
    by_class = [rng.permutation(np.flatnonzero(labels == k)) for k in range(c)]
    if n is None:
        for _attempt in range(1000):
            parts: list[list[np.ndarray]] = [[] for _ in range(m)]
            for idx in by_class:
                p = _proportions(rng, alpha, m)
                cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
                for k, chunk in enumerate(np.split(idx, cuts)):
                    parts[k].append(chunk)
            nodes = [np.concatenate(p) for p in parts]
            if min(len(x) for x in nodes) >= 1:
                return [rng.permutation(x) for x in nodes]
        raise ConfigError(
            f"Dirichlet(alpha={alpha}) split left a node empty 1000 times with {m} nodes; "
            "raise data.alpha, use fewer nodes or set data.samples_per_node"
        )
    left = [list(idx) for idx in by_class]
    counts = np.array([len(x) for x in left], dtype=np.float64)
    nodes = []
    for _k in range(m):
        q = _proportions(rng, alpha, c)
        take = np.zeros(c, dtype=int)
        need = n
        while need > 0:
            avail = counts - take
            w = q * (avail > 0)
            if w.sum() <= 0:  # all favoured classes exhausted: fall back to what is left
                w = (avail > 0).astype(np.float64)
            draw = rng.multinomial(need, w / w.sum())
            draw = np.minimum(draw, avail.astype(int))
            take += draw
            need -= int(draw.sum())
        chosen = []
        for cls in range(c):
            t = int(take[cls])
            if t:
                chosen.extend(left[cls][:t])
                left[cls] = left[cls][t:]
        counts -= take
        nodes.append(rng.permutation(np.array(chosen, dtype=np.int64)))
    return nodes


def shards(labels: np.ndarray, m: int, rng: np.random.Generator, n: int | None = None,
           shards_per_node: int = 2, **_: object) -> list[np.ndarray]:
    """Pathological non-IID split (McMahan et al., 2017): sort by label, cut into m*k shards,
    give each node k random shards, so a node sees about k classes."""
    k = int(shards_per_node)
    if k < 1:
        raise ConfigError(f"data.shards_per_node must be >= 1, got {k}")
    chosen = rng.permutation(len(labels))[: n * m] if n is not None else np.arange(len(labels))
    order = chosen[np.argsort(labels[chosen], kind="stable")]
    if n is not None:
        # m*k shards whose sizes let every node total exactly n
        sizes = [len(s) for s in np.array_split(np.arange(n), k)] * m
        cuts = np.cumsum(sizes)[:-1]
        pieces = np.split(order, cuts)
        perm = rng.permutation(m * k)
        # assign shards round-robin by position so each node gets one shard of each size slot
        slots = [[] for _ in range(m)]
        by_size: dict[int, list[int]] = {}
        for i in perm:
            by_size.setdefault(len(pieces[i]), []).append(i)
        for _size, ids in by_size.items():
            per = len(ids) // m
            for node in range(m):
                slots[node].extend(ids[node * per:(node + 1) * per])
        return [rng.permutation(np.concatenate([pieces[i] for i in s])) for s in slots]
    if len(order) < m * k:
        raise ConfigError(f"data.shards_per_node = {k} with {m} nodes needs {m * k} shards but the "
                          f"dataset has only {len(order)} training samples")
    pieces = np.array_split(order, m * k)
    perm = rng.permutation(m * k)
    return [rng.permutation(np.concatenate([pieces[i] for i in perm[j * k:(j + 1) * k]]))
            for j in range(m)]


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total`` in proportion to ``shares`` (Hamilton's method: floors, then
    the remainder to the largest fractional parts, ties to the lower index)."""
    w = np.asarray(shares, dtype=np.float64)
    w = w / w.sum() * total
    out = np.floor(w).astype(np.int64)
    rest = int(total - out.sum())
    if rest > 0:
        out[np.argsort(-(w - out), kind="stable")[:rest]] += 1
    return out


def stratified_dirichlet(labels: np.ndarray, m: int, rng: np.random.Generator, n: int | None = None,
                         alpha: float = 0.5, num_classes: int | None = None,
                         **_: object) -> list[np.ndarray]:
    """Dirichlet(alpha) label skew whose union S keeps the training set's label distribution.

    A stratified pool of m*n samples (all data without n) is drawn, each class in proportion to
    its share of the training set (Fashion-MNIST, CIFAR: equal to the test set's), so S's label
    mix does not move with alpha and the plain generalization gap needs no label matching. Each
    node draws class weights q_k ~ Dir(alpha); class c's pool is cut over the nodes in proportion
    to q_kc / sum_j q_jc. Node sizes therefore differ (their mean is n); a draw leaving a node with
    less than a quarter of the mean is redrawn (the split stays a pure function of the seed).
    """
    if not alpha > 0:
        raise ConfigError(f"data.alpha must be > 0, got {alpha}")
    c = int(num_classes or labels.max() + 1)
    total = n * m if n is not None else len(labels)
    freq = np.bincount(labels, minlength=c)
    quota = np.minimum(_largest_remainder(freq, total), freq)
    pools = [rng.permutation(np.flatnonzero(labels == k))[:quota[k]] for k in range(c)]
    floor = max(1, total // (4 * m))
    for _attempt in range(1000):
        q = np.nan_to_num(rng.dirichlet(alpha * np.ones(c), size=m)) + 1e-300
        share = q / q.sum(axis=0, keepdims=True)  # [m, c]: node k's cut of class c
        counts = np.stack([_largest_remainder(share[:, k], int(quota[k])) if quota[k] else
                           np.zeros(m, dtype=np.int64) for k in range(c)], axis=1)
        if counts.sum(axis=1).min() >= floor:
            break
    else:
        raise ConfigError(
            f"stratified Dirichlet(alpha={alpha}) split left a node with fewer than {floor} samples "
            f"1000 times with {m} nodes; raise data.alpha or data.samples_per_node, or use fewer "
            "nodes")
    cuts = np.cumsum(counts, axis=0)
    nodes = []
    for k in range(m):
        parts = [pools[cls][cuts[k, cls] - counts[k, cls]:cuts[k, cls]] for cls in range(c)]
        nodes.append(rng.permutation(np.concatenate(parts).astype(np.int64)))
    return nodes


PARTITIONERS: dict[str, Callable[..., list[np.ndarray]]] = {
    "iid": iid,
    "dirichlet": dirichlet,
    "stratified_dirichlet": stratified_dirichlet,
    "shards": shards,
}
"""Partitioners by name. Adding one is one function returning per-node index arrays."""


def partition(
    labels: np.ndarray | object,
    nodes: int,
    scheme: str = "iid",
    *,
    seed: int = 0,
    samples_per_node: int | None = None,
    alpha: float = 0.5,
    shards_per_node: int = 2,
    num_classes: int | None = None,
) -> Partition:
    """Split ``labels``' indices over ``nodes`` nodes; deterministic in ``seed``."""
    labels = np.asarray(labels, dtype=np.int64)
    if nodes < 1:
        raise ConfigError(f"topology.nodes must be >= 1, got {nodes}")
    if scheme not in PARTITIONERS:
        raise ConfigError(unknown("partition", scheme, PARTITIONERS, "data.partition"))
    _check_n(samples_per_node, nodes, len(labels))
    c = int(num_classes or (labels.max() + 1 if len(labels) else 1))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A27]))
    parts = PARTITIONERS[scheme](
        labels, nodes, rng, n=samples_per_node, alpha=alpha, shards_per_node=shards_per_node,
        num_classes=c,
    )
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    used = np.zeros(len(labels), dtype=bool)
    for p in parts:
        used[p] = True
    return Partition(nodes=parts, pool=np.flatnonzero(~used), num_classes=c)
