import os
import pickle

import pytest
import torch

from gossiplab.checkpoint import load_checkpoint, save_checkpoint
from gossiplab.config import load_config
from gossiplab.engine.simulator import Simulator
from gossiplab.errors import UserError
from gossiplab.experiments.setup import prepare


def test_simulator_state_roundtrips_through_a_checkpoint(tmp_path):
    sim = Simulator(prepare(load_config(None, ["topology.nodes=4", "optim.batch_size=8"])))
    for _ in range(3):
        sim.step()
    save_checkpoint(tmp_path / "c.pt", {"sim": sim.state_dict()})
    state = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(state["sim"]["params"], sim.stack.params)
    assert state["sim"]["iteration"] == 3


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/gossiplab_ckpt_pwned",))


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = "/tmp/gossiplab_ckpt_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"format": "gossiplab-checkpoint-1", "x": Evil()}, protocol=2))
    with pytest.raises(UserError, match="corrupted or not a gossiplab checkpoint"):
        load_checkpoint(p)
    assert not os.path.exists(marker)


def test_garbage_and_missing_checkpoints(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupted"):
        load_checkpoint(tmp_path / "g.pt")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
