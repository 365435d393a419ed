"""Bad algorithm settings end in one line naming the key, exit 2, before any training."""

import pytest

from gossiplab.cli import main


@pytest.mark.parametrize("sets, words", [
    (["algorithm.name=choco", "algorithm.gossip=chebyshev"], "algorithm.gossip"),
    (["algorithm.name=consensus_q", "algorithm.gossip=exact"], "algorithm.gossip"),
    (["algorithm.name=choco", "algorithm.compressor=top-k"], "algorithm.compressor"),
    (["algorithm.name=gradient_trackin"], "algorithm.name"),
    (["algorithm.name=gossip_pga", "algorithm.period=0"], "algorithm.period"),
    (["algorithm.name=choco", "algorithm.consensus_step=1.5"], "algorithm.consensus_step"),
    (["algorithm.name=q_schedule", "algorithm.q_schedule=linear"], "algorithm.q_schedule"),
])
def test_bad_settings_are_one_line(sets, words, tmp_path, capsys):
    argv = ["run", "--quiet", "--out", str(tmp_path / "r")]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "r").exists()  # nothing written
