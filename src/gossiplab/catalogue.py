"""The metric catalogue: every metric of an evaluation record named once (torch-free, so that
reading a results store or drawing a report needs no training code)."""

from __future__ import annotations

CATALOGUE: dict[str, tuple[str, str]] = {
    # name: (path in an evaluation record, label)
    "test_acc": ("avg_model.test_acc", "test accuracy"),
    "train_acc": ("avg_model.train_acc", "train accuracy"),
    "test_loss": ("avg_model.test_loss", "test loss"),
    "train_loss": ("avg_model.train_loss", "train loss"),
    "gen_gap_acc": ("gen_gap_acc", "gen. gap (0-1 error)"),
    "gen_gap_loss": ("gen_gap_loss", "gen. gap (loss)"),
    "consensus_distance": ("consensus_distance", "consensus distance"),
    "test_loss_matched": ("avg_model.test_loss_matched", "test loss (label-matched)"),
    "test_acc_matched": ("avg_model.test_acc_matched", "test accuracy (label-matched)"),
    "gen_gap_loss_matched": ("gen_gap_loss_matched", "gen. gap (loss, label-matched)"),
    "gen_gap_acc_matched": ("gen_gap_acc_matched", "gen. gap (0-1 error, label-matched)"),
    "rounds": ("rounds", "gossip rounds (total)"),
    "iteration": ("iteration", "iterations"),
    "lr": ("lr", "learning rate"),
    "elapsed": ("elapsed", "wall time (s)"),
    "train_batch_loss": ("train_batch_loss", "train batch loss"),
    "node_test_acc_mean": ("nodes.test_acc.mean", "node test accuracy (mean)"),
    "node_test_acc_min": ("nodes.test_acc.min", "node test accuracy (min)"),
    "node_test_acc_max": ("nodes.test_acc.max", "node test accuracy (max)"),
    "node_test_loss_mean": ("nodes.test_loss.mean", "node test loss (mean)"),
    "node_test_loss_max": ("nodes.test_loss.max", "node test loss (max)"),
    "node_train_loss_mean": ("nodes.train_loss.mean", "node train loss (mean)"),
    "node_gap_mean": ("nodes.gen_gap_loss.mean", "node gen. gap (loss, mean)"),
    "node_gap_max": ("nodes.gen_gap_loss.max", "node gen. gap (loss, max)"),
    "node_gap_matched_mean": ("nodes.gen_gap_loss_matched.mean",
                              "node gen. gap (loss, label-matched, mean)"),
    "node_gap_matched_max": ("nodes.gen_gap_loss_matched.max",
                             "node gen. gap (loss, label-matched, max)"),
}
"""Every metric of an evaluation record, once: its path in the record and its label. The results
store's columns (:data:`STORE_COLUMNS`), the report's metrics (:data:`REPORT_METRICS`) and the run
summary table (:data:`SUMMARY_ROWS`) are selections from it; a new metric is added here (and
computed in :meth:`gossiplab.metrics.Evaluator.report`)."""

STORE_COLUMNS = ("rounds", "lr", "elapsed", "train_batch_loss", "train_loss", "train_acc",
                 "test_loss", "test_acc", "gen_gap_loss", "gen_gap_acc", "consensus_distance",
                 "node_test_acc_mean", "node_test_acc_min", "node_test_acc_max")
REPORT_METRICS = ("test_acc", "train_acc", "test_loss", "train_loss", "gen_gap_acc", "gen_gap_loss",
                  "consensus_distance", "test_loss_matched", "test_acc_matched",
                  "gen_gap_loss_matched", "gen_gap_acc_matched", "rounds", "iteration",
                  "node_test_acc_mean", "node_test_acc_min", "node_test_loss_mean",
                  "node_test_loss_max", "node_train_loss_mean", "node_gap_mean", "node_gap_max",
                  "node_gap_matched_mean", "node_gap_matched_max")
SUMMARY_ROWS = (("test_acc", "{:.4f}"), ("train_acc", "{:.4f}"), ("test_loss", "{:.4f}"),
                ("train_loss", "{:.4f}"), ("gen_gap_loss", "{:+.4f}"), ("gen_gap_acc", "{:+.4f}"),
                (("node_test_acc_min", "node_test_acc_max"), None),
                ("consensus_distance", "{:.3g}"))
"""The `gossiplab run` table: a metric and its format, or a (min, max) pair shown as a range."""
