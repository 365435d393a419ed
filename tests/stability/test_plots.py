"""The theory figure's title says what its line styles mean; run labels never name a folder."""

from pathlib import Path

from gossiplab.stability.compare import StabilityRun, _label
from gossiplab.stability.plots import THEORY_KEY, theory_title


def test_title_names_the_theory_line_only_when_drawn():
    drawn = theory_title("T", "trajectory", True, True, {"runs": [{"c_beta": 1.2}]})
    assert THEORY_KEY in drawn and "grey dashed: centralized" in drawn
    assert "dashed black" not in drawn  # the centralized run is the dashed line
    constant = theory_title("T", "trajectory", False, True, {"runs": [{"c_beta": None}]})
    assert "theory's slope" not in constant and "no theory slope" in constant
    assert "another schedule" in constant
    assert "no theory slope" not in theory_title("Q", "gossip steps", False, False, {"runs": []})


def test_a_lone_run_is_labelled_by_its_config_not_its_folder():
    cfg = {"topology.name": "ring", "topology.nodes": 16, "algorithm.gossip_steps": 1,
           "data.samples_per_node": 40}
    run = StabilityRun(path=Path("/tmp/stab"), config=cfg, summary={}, twins=[])
    _label([run])
    assert "stab" not in run.label and "ring" in run.label and "m=16" in run.label
