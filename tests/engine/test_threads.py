"""The default thread count: one thread for small steps or busy machines, recorded with results."""

from __future__ import annotations

import json

import pytest
import torch

from gossiplab.config import load_config
from gossiplab.engine import threads as th
from gossiplab.run.runner import choose_run_threads, run_experiment
from gossiplab.setup import prepare


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_wins():
    assert th.choose_threads(3, None).threads == 3
    assert th.choose_threads(3, 1e15).reason == "engine.threads"


def test_small_steps_run_on_one_thread(monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 64)
    monkeypatch.setattr(th, "busy_cores", lambda window=0.05: 0.0)
    choice = th.choose_threads(0, th.PARALLEL_MIN_FLOPS / 10)
    assert choice.threads == 1 and "below" in choice.reason
    assert th.choose_threads(0, None).threads == 1  # unknown work: the safe choice


@pytest.mark.parametrize("busy, cap, expected", [
    (0.0, None, 8), (0.1, None, 8), (2.0, None, 6), (7.5, None, 1), (30.0, None, 1),
    (0.0, 2, 2), (5.0, 4, 3),
])
def test_large_steps_take_the_free_cores(monkeypatch, busy, cap, expected):
    monkeypatch.setattr(th, "usable_cores", lambda: 8)
    monkeypatch.setattr(th, "busy_cores", lambda window=0.05: busy)
    choice = th.choose_threads(0, th.PARALLEL_MIN_FLOPS * 10, cap=cap)
    assert choice.threads == expected
    assert choice.record()["free_cores"] == round(8 - busy, 2)


def test_accelerators_use_one_host_thread():
    assert th.choose_threads(0, 1e15, device="cuda").threads == 1


def test_busy_cores_is_a_nonnegative_estimate():
    busy = th.busy_cores(window=0.01)
    assert 0.0 <= busy < 10_000


def test_step_flops_scales_with_samples_and_model():
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    big = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1000), torch.nn.ReLU(),
                              torch.nn.Linear(1000, 10))
    f1 = th.step_flops(small, (1, 8, 8), 32)
    assert f1 == pytest.approx(3 * 2 * 64 * 10 * 32)
    assert th.step_flops(small, (1, 8, 8), 64) == pytest.approx(2 * f1)
    assert th.step_flops(big, (1, 8, 8), 32) > 100 * f1


def test_default_run_chooses_one_thread_and_records_it(tmp_path, restore_threads):
    """The README's default run (784-64-10-sized MLP work or less on 16 nodes) gains nothing from
    a second thread: it runs on one, whatever the machine, and says so in its outputs."""
    torch.set_num_threads(2)
    cfg = load_config(None, ["train.iterations=4", "eval.every=2"])
    setup = prepare(cfg)
    choice = choose_run_threads(setup)
    assert choice.threads == 1 and choice.step_gflops < th.PARALLEL_MIN_FLOPS / 1e9
    mlp784 = load_config(None, ["data.dataset='synthetic'", "data.synthetic_shape=[1,28,28]",
                                "model.hidden=[64]"])
    assert choose_run_threads(prepare(mlp784)).threads == 1
    summary = run_experiment(cfg, tmp_path / "out")
    assert torch.get_num_threads() == 1
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["setup"]["threads"]["threads"] == 1
    assert written["environment"]["threads"] == 1
    assert summary["threads"]["threads"] == 1 and "GFLOP" in summary["threads"]["reason"]


def test_explicit_engine_threads_is_recorded(tmp_path, restore_threads):
    cfg = load_config(None, ["train.iterations=2", "eval.every=2", "engine.threads=2"])
    summary = run_experiment(cfg, tmp_path / "out")
    assert summary["threads"] == {"threads": 2, "reason": "engine.threads", "step_gflops": None,
                                  "cores": None, "free_cores": None}
    assert torch.get_num_threads() == 2
