import os

import pytest
import torch

# Small, deterministic, and quick on a 2-core machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def small_overrides():
    """Config overrides for a fast digits run."""
    return ["train.iterations=60", "eval.every=30", "topology.nodes=4", "optim.batch_size=8"]
