import os

import pytest
import torch

# Small, deterministic, and quick on a 2-core machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def small_overrides():
    """Config overrides for a fast digits run."""
    return ["train.iterations=60", "eval.every=30", "topology.nodes=4", "optim.batch_size=8"]

# Subprocesses (CLI tests) must import the source tree under test, not another installed copy.
_SRC = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src")
os.environ["PYTHONPATH"] = os.pathsep.join([_SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
