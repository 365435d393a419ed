"""Evaluation: label-matched test scores reweight the test set to the training union's labels."""

import numpy as np
import pytest
import torch
from torch import nn

from gossiplab.config import EvalConfig
from gossiplab.data.datasets import load_dataset
from gossiplab.metrics import Evaluator, gaps, label_matching_weights, score


def _model(ds):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(ds.input_shape)), ds.num_classes))


def test_weights_make_the_test_label_distribution_that_of_s():
    w = label_matching_weights(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1, 2]), 3)
    np.testing.assert_allclose(w, [0.75 / 0.2, 0.25 / 0.6, 0.0])


def test_matched_scores_equal_plain_ones_when_s_has_the_test_labels():
    ds = load_dataset("synthetic", num_train=300, num_test=200, num_classes=4, shape=(1, 4, 4))
    # S = a copy of the test labels' distribution: every class in the test proportions
    train_idx = np.concatenate([np.flatnonzero(ds.y_train.numpy() == c)[:int((ds.y_test == c).sum())]
                                for c in range(4)])
    ev = Evaluator(ds, train_idx, EvalConfig())
    if not np.allclose(np.bincount(ds.y_train.numpy()[train_idx], minlength=4),
                       np.bincount(ds.y_test.numpy(), minlength=4)):
        pytest.skip("not enough training samples of some class to copy the test distribution")
    s = ev.score_module(_model(ds))
    assert s["test_loss_matched"] == pytest.approx(s["test_loss"], rel=1e-9)
    assert s["test_acc_matched"] == pytest.approx(s["test_acc"], rel=1e-9)


def test_matched_scores_with_a_one_class_union_are_the_scores_on_that_class():
    ds = load_dataset("synthetic", num_train=300, num_test=200, num_classes=4, shape=(1, 4, 4))
    train_idx = np.flatnonzero(ds.y_train.numpy() == 2)
    ev = Evaluator(ds, train_idx, EvalConfig())
    model = _model(ds)
    s = ev.score_module(model)
    only = ds.y_test == 2
    loss, acc = score(model, ds, ds.x_test[only], ds.y_test[only])
    assert s["test_loss_matched"] == pytest.approx(loss, rel=1e-9)
    assert s["test_acc_matched"] == pytest.approx(acc, rel=1e-9)
    g = gaps(s)
    assert g["gen_gap_loss_matched"] == pytest.approx(loss - s["train_loss"])
    assert g["gen_gap_acc_matched"] == pytest.approx(s["train_acc"] - acc)
