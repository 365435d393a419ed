"""Per-rank checkpoint files: naming, the two generations kept, clearing, assembling the models,
and the metrics kept before a resume (in process, no training)."""

import json

import pytest
import torch

from gossiplab.checkpoint import save_checkpoint
from gossiplab.errors import UserError
from gossiplab.run import rank_checkpoints as ckpt
from gossiplab.run.distributed import _keep_metrics


def fake_state(rank, it, replicated=False):
    return {"params": torch.full((1 if replicated else 2, 3), float(10 * it + rank)),
            "replicated": replicated, "iteration": it}


def test_last_two_generations_are_kept_and_the_common_newest_is_loaded(tmp_path):
    ckpt.write_run_info(tmp_path, {"config_hash": "h", "world_size": 2, "nodes": 4})
    for it in (10, 20, 30):
        for r in (0, 1):
            if it == 30 and r == 1:
                continue  # rank 1 was killed before writing iteration 30
            save_checkpoint(ckpt.path(tmp_path, "dsgd_mgs", r, it), fake_state(r, it))
            ckpt.prune(tmp_path, "dsgd_mgs", r)
    assert ckpt.iterations(tmp_path, "dsgd_mgs", 0) == [20, 30]
    assert ckpt.iterations(tmp_path, "dsgd_mgs", 1) == [10, 20]
    it, models = ckpt.load_models(tmp_path, "dsgd_mgs")
    assert it == 20 and models.shape == (4, 3)
    assert models[:2].eq(200).all() and models[2:].eq(201).all()  # rank order = node order


def test_a_replicated_model_is_returned_once(tmp_path):
    ckpt.write_run_info(tmp_path, {"config_hash": "h", "world_size": 3, "nodes": 3})
    for r in range(3):
        save_checkpoint(ckpt.path(tmp_path, "centralized", r, 5), fake_state(0, 5, replicated=True))
    it, models = ckpt.load_models(tmp_path, "centralized")
    assert it == 5 and models.shape == (1, 3)


def test_clear_and_missing_runs(tmp_path):
    with pytest.raises(UserError, match="no distributed run"):
        ckpt.load_models(tmp_path, "dsgd_mgs")
    ckpt.write_run_info(tmp_path, {"config_hash": "h", "world_size": 2, "nodes": 2})
    for r in (0, 1):
        save_checkpoint(ckpt.path(tmp_path, "dsgd_mgs", r, 1), fake_state(r, 1))
    ckpt.clear(tmp_path, rank=1)
    assert ckpt.iterations(tmp_path, "dsgd_mgs", 0) == [1] and ckpt.iterations(tmp_path, "dsgd_mgs", 1) == []
    with pytest.raises(UserError, match="no iteration of dsgd_mgs is checkpointed by all 2 ranks"):
        ckpt.load_models(tmp_path, "dsgd_mgs")
    ckpt.clear(tmp_path)
    assert ckpt.read_run_info(tmp_path) is None and ckpt.iterations(tmp_path, "dsgd_mgs", 0) == []


def test_resume_keeps_finished_algorithms_and_earlier_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = [{"algorithm": "dsgd_mgs", "iteration": i} for i in (0, 10, 20, 30)]
    recs += [{"algorithm": "centralized", "iteration": i} for i in (0, 10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"algorithm": "centr')  # cut line
    _keep_metrics(path, "centralized", 10)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == recs[:5]
    _keep_metrics(path, "dsgd_mgs", 0)  # no checkpoint: the algorithm starts over
    assert [json.loads(line) for line in path.read_text().splitlines()] == [recs[4]]
