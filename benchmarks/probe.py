"""One memory/page-fault measurement in a fresh interpreter (run by harness.probe).

Usage: python benchmarks/probe.py '{"overrides": [...], "variant": "engine", "iterations": 5}'

Prints one JSON line: the resident memory before training (after imports and data loading), the
peak of one plain model's forward/backward on one batch above it (a node's activations), the
peak of training above it, and minor page faults and seconds per iteration.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common_pattern import CommonPattern  # noqa: E402

from gossiplab.config import load_config  # noqa: E402
from gossiplab.engine.simulator import Simulator  # noqa: E402
from gossiplab.gossip import GossipScheme  # noqa: E402
from gossiplab.setup import build_model_for, prepare  # noqa: E402


def status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    spec = json.loads(sys.argv[1])
    cfg = load_config(None, spec["overrides"])
    setup = prepare(cfg)
    ds, b = setup.dataset, cfg.optim.batch_size
    x = ds.normalise(ds.x_train[:b])
    y = ds.y_train[:b]
    base = status_kb("VmRSS")
    reset_peak()
    model = build_model_for(cfg, ds)
    F.cross_entropy(model(x), y).backward()
    node_peak = status_kb("VmHWM") - base
    del model
    base2 = status_kb("VmRSS")
    reset_peak()
    if spec["variant"] == "engine":
        sim = Simulator(setup)
        step, d = sim.step, sim.stack.d
        if spec.get("protocol_gossip"):  # gossip through mix(x, r) as non-plain schemes do
            gossip = sim.algorithm.gossip
            gossip.apply_ = types.MethodType(GossipScheme.apply_, gossip)
    else:
        runner = CommonPattern(setup)
        step, d = runner.step, sum(p.numel() for p in runner.models[0].parameters())
    for _ in range(spec.get("warmup", 2)):
        step()
    f0, t0 = faults(), time.perf_counter()
    n = spec["iterations"]
    for _ in range(n):
        step()
    seconds = (time.perf_counter() - t0) / n
    print(json.dumps({
        "base_rss": base * 1024, "node_peak": node_peak * 1024,
        "train_peak": (status_kb("VmHWM") - base2) * 1024, "faults_per_iteration": (faults() - f0) / n,
        "seconds_per_iteration": seconds, "d": d, "models": cfg.topology.nodes,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
