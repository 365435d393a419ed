"""Every algorithm with its own state resumes bitwise: crash in the middle of a run (after a
checkpoint, so the algorithm's buffers and the communication ledger must come back from it),
resume, and the finished folder equals an uninterrupted run's (final models bitwise, metrics,
communication accounting included, up to wall-clock fields)."""

import pytest

from gossiplab.config import load_config
from gossiplab.run.runner import run_experiment
from run_outputs import assert_same_run

from .test_checkpointing import Crash, crash_hooks

BASE = ["topology.nodes=4", "optim.batch_size=8", "train.iterations=24", "eval.every=10",
        "optim.momentum=0.9", "algorithm.compare_centralized=false", "engine.threads=1"]
CASES = {
    "gradient_tracking": ["algorithm.gossip_steps=2"],
    "gossip_pga": ["algorithm.period=4"],
    "local_steps": ["algorithm.period=3"],
    "q_schedule": ["algorithm.q_schedule='decreasing'", "algorithm.q_early=3"],
    "consensus_q": ["algorithm.consensus_target=0.0005", "algorithm.consensus_cap=4"],
    "choco": ["algorithm.compressor='random_k'", "algorithm.gossip_steps=2"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_crash_then_resume_equals_uninterrupted_run(name, tmp_path):
    cfg = load_config(None, [*BASE, f"algorithm.name='{name}'", *CASES[name]])
    ref = tmp_path / "ref"
    run_experiment(cfg, ref, checkpoint_every=5)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(cfg, out, checkpoint_every=5, hooks=crash_hooks(name, 13))
    summary = run_experiment(cfg, out, checkpoint_every=5, resume=True)
    assert summary["resumed_from"][name] == 10
    assert summary["final"]["comm_rounds"] > 0
    assert_same_run(ref, out)
