"""Partitioner invariants as properties: disjoint, sized as asked, reproducible from the data seed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossiplab.data.partition import partition
from gossiplab.errors import ConfigError

labels_st = st.integers(2, 10).flatmap(
    lambda c: st.lists(st.integers(0, c - 1), min_size=40, max_size=400).map(np.array)
)


@settings(max_examples=60, deadline=None)
@given(
    labels=labels_st,
    m=st.integers(1, 12),
    scheme=st.sampled_from(["iid", "dirichlet", "stratified_dirichlet", "shards"]),
    alpha=st.floats(0.05, 10),
    k=st.integers(1, 3),
    use_n=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_partition_invariants(labels, m, scheme, alpha, k, use_n, seed):
    n = max(1, len(labels) // (m + 1)) if use_n else None
    if scheme == "shards" and n is not None:
        n = max(n, k)
    try:
        p = partition(labels, m, scheme, seed=seed, samples_per_node=n, alpha=alpha,
                      shards_per_node=k)
    except ConfigError:
        # only legitimate refusals: not enough data or an unsatisfiable split
        assume_refusal_is_reasonable(labels, m, scheme, n, k)
        return
    allidx = np.concatenate(p.nodes + [p.pool])
    # no sample on two nodes, nothing lost, nothing invented
    assert len(allidx) == len(labels)
    assert len(np.unique(allidx)) == len(labels)
    assert len(p.nodes) == m
    assert all(len(ix) >= 1 for ix in p.nodes)
    if n is not None and scheme != "stratified_dirichlet":
        assert all(len(ix) == n for ix in p.nodes)
    if n is not None and scheme == "stratified_dirichlet":
        assert len(p.union()) == n * m  # sizes differ, their mean is n
    # reproducible from the data seed
    q = partition(labels, m, scheme, seed=seed, samples_per_node=n, alpha=alpha,
                  shards_per_node=k)
    assert all(np.array_equal(a, b) for a, b in zip(p.nodes, q.nodes, strict=True))
    het = p.heterogeneity(labels)
    assert 0.0 <= het["mean_tv_distance"] <= 1.0


def assume_refusal_is_reasonable(labels, m, scheme, n, k):
    if n is not None and n * m > len(labels):
        return
    if scheme == "shards" and len(labels) < m * k:
        return
    if scheme == "dirichlet" and n is None:
        return  # a node left empty after many redraws (tiny data, many nodes)
    if scheme == "stratified_dirichlet":
        return  # a node below a quarter of the mean size after many redraws
    raise AssertionError(f"unexpected refusal: {scheme} m={m} n={n} k={k} N={len(labels)}")


def test_different_seeds_differ_and_iid_is_balanced():
    labels = np.repeat(np.arange(10), 100)
    a = partition(labels, 10, "iid", seed=0)
    b = partition(labels, 10, "iid", seed=1)
    assert not np.array_equal(a.nodes[0], b.nodes[0])
    assert a.heterogeneity(labels)["mean_tv_distance"] < 0.2


def test_dirichlet_skew_grows_as_alpha_shrinks():
    labels = np.repeat(np.arange(10), 200)
    tv = [partition(labels, 16, "dirichlet", alpha=a, seed=0, samples_per_node=100)
          .heterogeneity(labels)["mean_tv_distance"] for a in (100.0, 1.0, 0.05)]
    assert tv[0] < tv[1] < tv[2]


def test_shards_give_about_k_classes_per_node():
    labels = np.repeat(np.arange(10), 100)
    p = partition(labels, 10, "shards", shards_per_node=2, seed=0)
    assert p.heterogeneity(labels)["classes_per_node"] <= 2.0
    p = partition(labels, 10, "shards", shards_per_node=2, seed=0, samples_per_node=50)
    assert all(len(ix) == 50 for ix in p.nodes)


def test_too_many_samples_per_node_is_an_error():
    with pytest.raises(ConfigError, match="needs 400 training samples"):
        partition(np.zeros(100, dtype=int), 4, "iid", samples_per_node=100)


def test_unknown_partition():
    with pytest.raises(ConfigError, match="unknown partition"):
        partition(np.zeros(10, dtype=int), 2, "bogus")


@pytest.mark.parametrize("alpha", [0.03, 0.1, 1.0, 1000.0])
@pytest.mark.parametrize(("m", "n"), [(16, 250), (64, 100), (7, 33)])
def test_stratified_dirichlet_keeps_the_test_sets_label_distribution(alpha, m, n):
    """Fashion-MNIST's shape: train and test share their (balanced) label distribution; S's label
    distribution equals the test set's within rounding (one sample per class), at every alpha."""
    train = np.repeat(np.arange(10), 1000)
    test = np.repeat(np.arange(10), 100)
    p = partition(train, m, "stratified_dirichlet", alpha=alpha, seed=3, samples_per_node=n)
    s = np.bincount(train[p.union()], minlength=10)
    assert s.sum() == m * n
    expected = np.bincount(test, minlength=10) / len(test) * m * n
    assert np.all(np.abs(s - expected) < 1.0)
    assert p.sizes.min() >= (m * n) // (4 * m)


def test_stratified_dirichlet_follows_an_unbalanced_label_mix_and_skews_with_alpha():
    train = np.concatenate([np.full(3000, 0), np.full(1000, 1), np.full(2000, 2)])
    p = partition(train, 8, "stratified_dirichlet", alpha=0.3, seed=0, samples_per_node=150)
    assert np.array_equal(np.bincount(train[p.union()]), [600, 200, 400])
    tv = [partition(train, 8, "stratified_dirichlet", alpha=a, seed=0, samples_per_node=150)
          .heterogeneity(train)["mean_tv_distance"] for a in (100.0, 1.0, 0.05)]
    assert tv[0] < tv[1] < tv[2]
    sizes = partition(train, 8, "stratified_dirichlet", alpha=0.05, seed=0,
                      samples_per_node=150).sizes
    assert sizes.min() < sizes.max()  # node sizes differ under skew
