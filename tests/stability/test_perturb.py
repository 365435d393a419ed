"""Perturbations (j, i) and twin datasets S^(ij)."""

import numpy as np
import pytest

from gossiplab.data.partition import partition
from gossiplab.errors import ConfigError
from gossiplab.stability.perturb import draw_perturbations, twin_indices


def labels(n=600, c=10, seed=0):
    return np.random.default_rng(seed).integers(0, c, n)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_fresh_samples_are_held_out_and_follow_the_node_labels(scheme):
    y = labels()
    part = partition(y, 6, scheme, seed=1, samples_per_node=40, alpha=0.2)
    perts = draw_perturbations(part, y, 50, seed=3)
    used = set(np.concatenate(part.nodes).tolist())
    for p in perts:
        assert part.nodes[p.node][p.position] == p.replaced
        assert p.fresh in set(part.pool.tolist()) and p.fresh not in used
        assert y[p.fresh] == p.label
        assert p.label in set(y[part.nodes[p.node]].tolist())  # node j's label distribution
    assert len({p.node for p in perts}) > 1 and len({p.position for p in perts}) > 1


def test_draws_are_deterministic_in_the_seed():
    y = labels()
    part = partition(y, 4, "iid", seed=0, samples_per_node=50)
    assert draw_perturbations(part, y, 10, seed=(0, 1)) == draw_perturbations(part, y, 10, seed=(0, 1))
    assert draw_perturbations(part, y, 10, seed=(0, 1)) != draw_perturbations(part, y, 10, seed=(0, 2))


def test_twin_differs_from_s_in_exactly_one_position():
    y = labels()
    part = partition(y, 4, "iid", seed=0, samples_per_node=50)
    perts = draw_perturbations(part, y, 5, seed=0)
    for p, twin in zip(perts, twin_indices(part, perts), strict=True):
        diffs = [(k, int(np.flatnonzero(a != b)[0])) for k, (a, b) in enumerate(zip(part.nodes, twin,
                                                                                    strict=True))
                 if (a != b).any()]
        assert diffs == [(p.node, p.position)]
        assert twin[p.node][p.position] == p.fresh
    assert part.nodes[perts[0].node][perts[0].position] == perts[0].replaced  # S untouched


def test_no_held_out_samples_is_a_clear_error():
    y = labels(100)
    part = partition(y, 4, "iid", seed=0)
    with pytest.raises(ConfigError, match="samples_per_node"):
        draw_perturbations(part, y, 3)
