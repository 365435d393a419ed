"""Perturbations (node j, position i) and the twin datasets S^(ij) they define.

S^(ij) is S with sample i of node j replaced by a fresh sample z' from node j's distribution,
held out from every node's training set. Fresh samples come from ``Partition.pool`` (training
samples on no node; the test set is never used). Under label skew node j's distribution is its
label distribution: z' gets a label drawn from node j's label histogram (restricted to labels the
pool holds), independently of the replaced sample, and is a uniformly drawn pool sample of that
label. Pairs (j, i) are uniform over all sum_j n_j positions, so the mean over perturbations
estimates (1/mn) sum_{j,i} E ||A(S) - A(S^(ij))||^2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gossiplab.data.partition import Partition
from gossiplab.errors import ConfigError


@dataclass(frozen=True)
class Perturbation:
    node: int  # j
    position: int  # i: position in node j's local data
    replaced: int  # global training index of the replaced sample z_i
    fresh: int  # global training index of the fresh sample z'
    label: int  # label of z' (drawn from node j's label distribution)

    def to_dict(self) -> dict:
        return asdict(self)


def draw_perturbations(part: Partition, labels: np.ndarray, count: int, seed: int | tuple = 0
                       ) -> list[Perturbation]:
    """``count`` independent perturbations of the partition (deterministic in ``seed``)."""
    labels = np.asarray(labels)
    if len(part.pool) == 0:
        n_total = len(labels)
        m = len(part.nodes)
        raise ConfigError(
            "stability needs training samples held out from every node for the fresh samples of "
            f"S^(ij), but all {n_total} are on nodes; set data.samples_per_node below "
            f"{n_total // m} (e.g. --set data.samples_per_node={max(1, n_total // (2 * m))})"
        )
    key = seed if isinstance(seed, tuple) else (seed,)
    rng = np.random.default_rng(np.random.SeedSequence([*key, 0x57AB]))
    pool_by_label = {int(c): part.pool[labels[part.pool] == c] for c in np.unique(labels[part.pool])}
    sizes = part.sizes
    out = []
    for _ in range(count):
        j = int(rng.choice(len(sizes), p=sizes / sizes.sum()))
        i = int(rng.integers(sizes[j]))
        hist = np.bincount(labels[part.nodes[j]], minlength=part.num_classes).astype(np.float64)
        avail = np.array([hist[c] if c in pool_by_label else 0.0 for c in range(len(hist))])
        if avail.sum() == 0:
            raise ConfigError(
                f"no held-out training sample has a label that node {j} holds; fresh samples for "
                "S^(ij) cannot follow its distribution (lower data.samples_per_node)"
            )
        c = int(rng.choice(len(avail), p=avail / avail.sum()))
        fresh = int(rng.choice(pool_by_label[c]))
        out.append(Perturbation(node=j, position=i, replaced=int(part.nodes[j][i]), fresh=fresh,
                                label=c))
    return out


def twin_indices(part: Partition, perturbations: list[Perturbation]) -> list[list[np.ndarray]]:
    """Per-node index lists of each twin dataset S^(ij) (one replica per perturbation)."""
    twins = []
    for p in perturbations:
        nodes = [ix.copy() for ix in part.nodes]
        nodes[p.node][p.position] = p.fresh
        twins.append(nodes)
    return twins
