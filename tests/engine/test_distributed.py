"""The distributed engine against the simulator: 4 processes on loopback (gloo), same config and
seeds, same answer. One launch trains every case (ring and time-varying one-peer exponential
graphs, Q in {1, 3}, one node per process and blocks of nodes, a stateful scheme that mixes two
vectors per round, and the centralized baseline);
each case is then replayed by the simulator in this process and compared.

Tolerance (float32, 20 iterations): final parameters within atol 1e-5 + rtol 1e-4 of the
simulator's, metrics within 1e-5 (measured differences are about 1e-7: the only source is
floating-point summation order, in W x and in the all-reduces).
"""

import json
from pathlib import Path

import pytest
import torch

from gossiplab.config import load_config
from gossiplab.engine.simulator import Simulator
from gossiplab.run.loop import train
from gossiplab.setup import prepare

from . import _launch, _schemes

WORLD = 4
COMMON = [
    "data.dataset='synthetic'", "data.synthetic_train=600", "data.synthetic_test=200",
    "model.hidden=[16]", "train.iterations=20", "eval.every=10", "optim.batch_size=8",
    "eval.node_samples=100", "engine.threads=1", "optim.lr=0.2",
]
CASES = {
    # one node per process
    "ring-q1": ["topology.name='ring'", "topology.nodes=4", "algorithm.gossip_steps=1"],
    "onepeer-q1": ["topology.name='exp_onepeer'", "topology.nodes=4", "algorithm.gossip_steps=1",
                   "data.sampling='shuffle'"],
    # blocks of nodes per process (6 nodes: uneven blocks 1, 2, 1, 2; 16 nodes: 4 per process,
    # Q = 3 < log2(16) rounds, so the one-peer graph does not average exactly)
    "ring-q3": ["topology.name='ring'", "topology.nodes=6", "algorithm.gossip_steps=3",
                "optim.momentum=0.9", "optim.weight_decay=0.001"],
    "onepeer-q3": ["topology.name='exp_onepeer'", "topology.nodes=16", "algorithm.gossip_steps=3",
                   "data.augment=true", "optim.schedule='inverse_t'", "data.samples_per_node=30"],
    # a stateful scheme mixing two vectors per round (the shape of Chebyshev / finite-time gossip)
    "two-term-q3": ["topology.name='ring'", "topology.nodes=8", "algorithm.gossip_steps=3",
                    "algorithm.gossip='test_two_term'", "data.partition='iid'"],
    # the built-in accelerated and finite-time schemes (ring of 8: 5 distinct eigenvalues, so
    # exact averaging takes K - 1 = 4 rounds)
    "chebyshev-q3": ["topology.name='ring'", "topology.nodes=8", "algorithm.gossip_steps=3",
                     "algorithm.gossip='chebyshev'"],
    "exact-q4": ["topology.name='ring'", "topology.nodes=8", "algorithm.gossip_steps=4",
                 "algorithm.gossip='exact'"],
}
ALGORITHMS = ("dsgd_mgs", "centralized")


@pytest.fixture(scope="module", autouse=True)
def two_term_scheme():
    """The test-only scheme, registered only while these tests run (the registry is global)."""
    from gossiplab.gossip import SCHEMES

    _schemes.register()
    yield
    SCHEMES.pop(_schemes.TwoTerm.name, None)


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("agree")
    cases = out / "cases.json"
    cases.write_text(json.dumps({k: COMMON + v for k, v in CASES.items()}))
    ranks = _launch.run([str(out), str(cases)], WORLD, timeout=600,
                        script=Path(_launch.__file__).with_name("_agree.py"))
    for r in ranks:
        assert r.returncode == 0, f"rank {r.rank} failed:\n{r.stderr[-3000:]}"
    return out


def _simulate(case: str, algorithm: str):
    cfg = load_config(None, COMMON + CASES[case])
    setup = prepare(cfg)
    sim = Simulator(setup, algorithm)
    return sim, train(setup, algorithm, sim=sim)


def _floats(rec: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            out.update(_floats(v, f"{prefix}{k}."))
        elif k != "elapsed":
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", list(CASES))
def test_distributed_engine_agrees_with_simulator(distributed_runs, case, algorithm):
    sim, result = _simulate(case, algorithm)
    states = [torch.load(distributed_runs / f"{case}.{algorithm}.rank{r}.pt") for r in range(WORLD)]
    if algorithm == "centralized":  # one model, identical on every rank
        for s in states[1:]:
            assert torch.equal(s["params"], states[0]["params"])
        params = states[0]["params"]
    else:
        params = torch.cat([s["params"] for s in states])
        blocks = [s["block"] for s in states]
        assert blocks[0][0] == 0 and blocks[-1][1] == sim.stack.models
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
    assert states[0]["rounds"] == sim.round
    torch.testing.assert_close(params, sim.stack.params, rtol=1e-4, atol=1e-5)
    assert not torch.equal(sim.stack.params, sim.stack.params[:1].expand_as(sim.stack.params)) \
        or algorithm == "centralized"  # the nodes did disagree: the comparison is not vacuous

    history = json.loads((distributed_runs / f"{case}.{algorithm}.json").read_text())
    assert [r["iteration"] for r in history] == [r["iteration"] for r in result.history] == [0, 10, 20]
    for got, want in zip(history, result.history, strict=True):
        g, w = _floats(got), _floats(want)
        assert g.keys() == w.keys()
        for k in w:
            if isinstance(w[k], float):
                assert g[k] == pytest.approx(w[k], rel=1e-5, abs=1e-5), (k, g[k], w[k])
            else:
                assert g[k] == w[k], k


def test_gossip_traffic_is_neighbours_only(distributed_runs):
    """Bytes sent in gossip: ring with one node per process = 2 neighbours x d x 4 bytes per
    round; a one-peer exponential graph sends to one peer per round."""
    d = 64 * 16 + 16 + 16 * 10 + 10
    for case, degree in (("ring-q1", 2), ("onepeer-q1", 1)):
        cfg = load_config(None, COMMON + CASES[case])
        q, t = cfg.algorithm.gossip_steps, cfg.train.iterations
        for r in range(WORLD):
            s = torch.load(distributed_runs / f"{case}.dsgd_mgs.rank{r}.pt")
            assert s["params"].shape == (1, d)
            assert s["bytes"] == t * q * degree * d * 4
