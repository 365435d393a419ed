import io
import os
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gossiplab.checkpoint import load_checkpoint, save_checkpoint
from gossiplab.config import load_config
from gossiplab.engine.simulator import Simulator
from gossiplab.errors import UserError
from gossiplab.setup import prepare


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
    z = tmp_path / "evil-zip.pt"
    torch.save({"format": "gossiplab-checkpoint-1", "x": Evil()}, z)
    for f in (p, z):
        with pytest.raises(UserError, match="holds code .* and is refused") as e:
            load_checkpoint(f)
        # the message says what the file is; it never passes on torch's advice to retry unsafely
        assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(marker)


def test_garbage_and_missing_checkpoints(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupted"):
        load_checkpoint(tmp_path / "g.pt")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


# -- property-based: damaged files are refused with a UserError, never another exception ---------


def _valid_blob() -> bytes:
    buf = io.BytesIO()
    torch.save({"format": "gossiplab-checkpoint-1", "iteration": 3,
                "sim": {"params": torch.arange(12.0).view(3, 4)}, "history": [{"a": 1.5}]}, buf)
    return buf.getvalue()


VALID = _valid_blob()


@st.composite
def damaged(draw):
    b = bytearray(VALID)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["flip", "cut", "truncate"]))
        if op == "flip":
            b[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del b[i:i + draw(st.integers(1, 40))]
        else:
            del b[i:]
            break
    return bytes(b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(damaged(), st.binary(max_size=300), st.just(VALID)))
def test_damaged_checkpoints_load_or_are_refused(blob):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.pt"
        p.write_bytes(blob)
        try:
            state = load_checkpoint(p)
        except UserError as e:
            assert str(p) in str(e) and "\n" not in str(e)
            event("refused")
        else:
            event("loaded")
            assert isinstance(state, dict) and state["format"] == "gossiplab-checkpoint-1"
