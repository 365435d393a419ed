"""Peak memory of one configuration in a fresh interpreter (run by benchmarks/capacity.py).

Usage: python benchmarks/memprobe.py '{"mode": "floor" | "run", "overrides": [...], "iterations": 2}'

* ``floor``: the same m models as plain ``nn.Module``s doing only forward/backward on a preloaded
  batch [m, b, ...] at the training batch, one after the other, single-threaded: what the models
  themselves need (parameters, gradients, one node's activations, the batch, torch itself).
* ``run``: the configured run (``run_experiment``, no output folder), evaluation included.

Prints one JSON line: peak resident memory (``VmHWM``, from the process start: imports count),
and the proportional set size (PSS) and RSS at the end.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def pss_kb() -> int | None:
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> None:
    spec = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F

    from gossiplab.config import load_config

    try:
        from gossiplab.setup import build_model_for, load_data
    except ImportError:  # an older checkout (benchmarks/capacity.py --baseline-src)
        from gossiplab.experiments.setup import build_model_for, load_data

    torch.set_num_threads(1)
    cfg = load_config(None, spec["overrides"])
    m, b = cfg.topology.nodes, cfg.optim.batch_size
    out: dict = {"mode": spec["mode"]}
    if spec["mode"] == "floor":
        ds = load_data(cfg)
        shape, classes = tuple(ds.input_shape), ds.num_classes
        del ds  # the floor holds one preloaded batch, not the dataset
        template = build_model_for(cfg, SimpleNamespace(input_shape=shape, num_classes=classes))
        models = [copy.deepcopy(template) for _ in range(m)]
        x = torch.randn(m, b, *shape)
        y = torch.randint(classes, (m, b))
        for _ in range(spec.get("iterations", 2)):
            for k, mod in enumerate(models):
                F.cross_entropy(mod(x[k]), y[k]).backward()
        out["d"] = sum(p.numel() for p in template.parameters())
    else:
        try:
            from gossiplab.run.runner import run_experiment
        except ImportError:
            from gossiplab.experiments.runner import run_experiment

        summary = run_experiment(cfg)
        out["status"] = summary["status"]
    out.update(peak_rss=status_kb("VmHWM") * 1024, rss=status_kb("VmRSS") * 1024,
               pss=(pss_kb() or 0) * 1024, seconds=time.perf_counter() - t0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
