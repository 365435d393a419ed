"""Evaluation: label-matched test scores reweight the test set to the training union's labels."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


def _five_different_mlps():
    """Synthetic data and a stack of 5 MLPs whose rows differ (each perturbed at random)."""
    from gossiplab.engine.nodestack import NodeStack
    from gossiplab.models import build_model

    ds = load_dataset("synthetic", num_train=300, num_test=200, num_classes=4, shape=(1, 4, 4))
    torch.manual_seed(0)
    stack = NodeStack(build_model("mlp", ds.input_shape, 4, hidden=(8,)), 5)
    with torch.no_grad():
        stack.params.add_(torch.randn_like(stack.params))
    return ds, stack


def test_stacked_node_scores_equal_per_module_scores_to_rounding():
    ds, stack = _five_different_mlps()
    ev = Evaluator(ds, np.arange(300), EvalConfig(node_samples=150, batch_size=64))
    stacked = ev.score_rows(stack, stack.params)
    one_by_one = [ev.score_module(stack.modules[k], full=False) for k in range(5)]
    assert len({s["train_loss"] for s in stacked}) == 5  # the rows really differ
    for a, b in zip(stacked, one_by_one, strict=True):
        assert a["train_acc"] == b["train_acc"] and a["test_acc"] == b["test_acc"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
        assert a["test_loss_matched"] == pytest.approx(b["test_loss_matched"], rel=1e-6)


def test_node_gaps_are_recorded_per_node_and_label_matched():
    from gossiplab.engine.nodestack import NodeStack
    from gossiplab.models import build_model

    ds = load_dataset("synthetic", num_train=300, num_test=200, num_classes=4, shape=(1, 4, 4))
    torch.manual_seed(1)
    stack = NodeStack(build_model("mlp", ds.input_shape, 4, hidden=(8,)), 4)
    with torch.no_grad():
        stack.params.add_(torch.randn_like(stack.params))
    # S holds classes 0 and 1 only: label matching weights the test set to those classes
    train_idx = np.flatnonzero(ds.y_train.numpy() < 2)
    ev = Evaluator(ds, train_idx, EvalConfig(node_samples=100, batch_size=64))
    rec = ev.report(stack, stack.params.mean(0), [stack.params[k] for k in range(4)], 0.0)
    scores = [ev.score_module(stack.modules[k], full=False) for k in range(4)]
    per_node = [s["test_loss"] - s["train_loss"] for s in scores]
    matched = [s["test_loss_matched"] - s["train_loss"] for s in scores]
    assert rec["nodes"]["gen_gap_loss"]["max"] == pytest.approx(max(per_node), rel=1e-6)
    assert rec["nodes"]["gen_gap_loss"]["mean"] == pytest.approx(np.mean(per_node), rel=1e-6)
    assert rec["nodes"]["gen_gap_loss_matched"]["max"] == pytest.approx(max(matched), rel=1e-6)
    # matched test loss = the per-class mean test losses weighted by S's label mix (the node
    # test subsample is the whole test set here: node_samples >= its size)
    ev = Evaluator(ds, train_idx, EvalConfig(node_samples=200, batch_size=64))
    p_s = np.bincount(ds.y_train.numpy()[train_idx], minlength=4) / len(train_idx)
    per_class = [score(stack.modules[0], ds, ds.x_test[ds.y_test == c], ds.y_test[ds.y_test == c])[0]
                 for c in range(4)]
    expected = float(sum(p_s[c] * per_class[c] for c in range(4)))
    assert ev.score_module(stack.modules[0], full=False)["test_loss_matched"] == pytest.approx(
        expected, rel=1e-6)


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("lenet", (3, 32, 32)),
                                         ("resnet18", (3, 32, 32))])
def test_eval_batch_keeps_activations_within_one_training_forward_backward(name, shape):
    from gossiplab.metrics import EVAL_MIN_BYTES, activation_bytes, eval_batch_size
    from gossiplab.models import build_model

    model = build_model(name, shape, 10)
    kept, live = activation_bytes(model, shape)
    assert live <= kept
    bs = eval_batch_size(model, shape, train_batch=32)
    assert bs * live <= max(EVAL_MIN_BYTES, 32 * kept)
    assert bs == 8192 or (bs + 1) * live > max(EVAL_MIN_BYTES, 32 * kept)  # as large as allowed


def test_evaluation_keeps_no_copy_of_the_training_union():
    ds = load_dataset("synthetic", num_train=300, num_test=200, num_classes=4, shape=(1, 4, 4))
    everything = Evaluator(ds, np.arange(300), EvalConfig())
    assert everything.train_index is None and everything.x_train is ds.x_train
    part = Evaluator(ds, np.arange(0, 300, 2), EvalConfig(batch_size=7))
    model = _model(ds)
    s = part.score_module(model)
    loss, acc = score(model, ds, ds.x_train[::2], ds.y_train[::2])
    assert s["train_loss"] == pytest.approx(loss, rel=1e-6) and s["train_acc"] == pytest.approx(acc)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(2, 6), st.integers(1, 9), st.integers(0, 2**31 - 1),
       st.booleans())
def test_predicted_is_argmax_including_ties(models, classes, batch, seed, coarse):
    """The fast accuracy count equals argmax == label exactly; coarse (integer) logits make
    tied maxima common, where argmax's first-index rule decides."""
    from gossiplab.metrics import predicted

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(models, classes, batch, generator=g)
    if coarse:
        logits = logits.mul(1.5).round()
    label = torch.randint(0, classes, (batch,), generator=g).view(1, 1, -1).expand(models, 1, -1)
    expected = logits.transpose(1, 2).argmax(2) == label.squeeze(1)
    assert torch.equal(predicted(logits, label), expected)


def test_node_scores_with_normalised_inputs_cached_equal_the_stored_path(monkeypatch):
    """The per-node subsamples are normalised once when small; scores equal those computed
    from the stored inputs at every evaluation (the path for large inputs)."""
    import gossiplab.metrics as metrics

    ds, stack = _five_different_mlps()
    cached = Evaluator(ds, np.arange(300), EvalConfig(node_samples=150, batch_size=64))
    a = cached.score_rows(stack, stack.params)
    assert cached._node_inputs()[2]
    monkeypatch.setattr(metrics, "MODEL_INPUT_CACHE_BYTES", 0)
    stored = Evaluator(ds, np.arange(300), EvalConfig(node_samples=150, batch_size=64))
    b = stored.score_rows(stack, stack.params)
    assert not stored._node_inputs()[2]
    assert a == b
