"""The GPU path, measured: the vmap backend and the distributed engine on NCCL, ResNet-18 on
CIFAR-shaped data, m = 16 and m = 64, images per second against the per-node compute floor.

    python benchmarks/gpu.py [--ms 16,64] [--batch 32] [--iterations 20] [--no-write]

Needs a CUDA device (exits with a one-line message otherwise). Three figures per m:

* **floor**: one ResNet-18 (GroupNorm) forward/backward at the training batch on the card, timed
  with CUDA events after warm-up; the per-node compute floor of m nodes is m such passes one after
  the other: images/s = b / (time of one pass).
* **vmap**: the simulator with ``engine.backend = "vmap"`` on ``cuda``: one batched call over all m
  models per layer, the full iteration (sampling, gathering, forward/backward, SGD, gossip, Q = 1,
  ring), median iteration after warm-up.
* **NCCL**: the distributed engine (``engine.name = "distributed"``, ``engine.dist_backend =
  "nccl"``) started by ``gossiplab launch``. NCCL needs one GPU per rank; with ``torch.cuda.
  device_count()`` GPUs it runs that many ranks (at most m), each holding a block of nodes on its
  own card; on a one-GPU machine that is one rank holding all m nodes (the engine's overhead over
  the simulator, not the network). Its images/s come from the run's wall time without evaluation.

The table goes into docs/benchmarks.md (section between the markers below) and raw numbers into
docs/benchmarks-gpu.json, naming the card.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sections import write_section

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- gpu section: written by benchmarks/gpu.py -->"
END = "<!-- end of gpu section -->"
PER_NODE = 64


def overrides(m: int, b: int, iterations: int, device: str = "cuda") -> list[str]:
    return ['data.dataset="synthetic"', 'data.partition="iid"', "data.synthetic_shape=[3,32,32]",
            f"data.synthetic_train={m * PER_NODE}", "data.synthetic_test=256", "data.augment=false",
            'model.name="resnet18"', f"topology.nodes={m}", 'topology.name="ring"',
            f"optim.batch_size={b}", "algorithm.gossip_steps=1", f"train.iterations={iterations}",
            f"eval.every={iterations}", "eval.at_start=false", "eval.node_samples=64",
            "eval.max_nodes=2", "algorithm.compare_centralized=false", f'engine.device="{device}"']


def floor(b: int, iterations: int) -> float:
    """Seconds of one ResNet-18 forward/backward at batch b on the card (median)."""
    import torch
    import torch.nn.functional as F

    from gossiplab.models import build_model

    model = build_model("resnet18", (3, 32, 32), 10).cuda()
    x = torch.randn(b, 3, 32, 32, device="cuda")
    y = torch.randint(10, (b,), device="cuda")
    times = []
    for i in range(iterations + 5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        F.cross_entropy(model(x), y).backward()
        end.record()
        torch.cuda.synchronize()
        if i >= 5:
            times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def vmap(m: int, b: int, iterations: int) -> float:
    """Seconds per simulator iteration with the vmap backend (median after warm-up)."""
    import torch

    from gossiplab.config import load_config
    from gossiplab.engine.simulator import Simulator
    from gossiplab.setup import prepare

    cfg = load_config(None, [*overrides(m, b, iterations), 'engine.backend="vmap"'])
    sim = Simulator(prepare(cfg))
    times = []
    for i in range(iterations + 3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        sim.step()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def nccl(m: int, b: int, iterations: int) -> tuple[float, int]:
    """Seconds per iteration of the distributed engine on NCCL (wall time of training, without
    evaluation), and the number of ranks."""
    import torch

    ranks = max(1, min(torch.cuda.device_count(), m))
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "gossiplab", "launch", "-n", str(ranks), "run", "--engine",
                "distributed", "--out", tmp, "-q", "--no-checkpoint"]
        for o in [*overrides(m, b, iterations), 'engine.dist_backend="nccl"']:
            args += ["--set", o]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
        if r.returncode:
            raise RuntimeError(f"NCCL run failed: {r.stderr[-1500:]}")
        s = json.loads((Path(tmp) / "summary.json").read_text())
    run = s["runs"]["dsgd_mgs"]
    return (run["wall_seconds"] - run["eval_seconds"]) / iterations, ranks




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ms", default="16,64")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing measured", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(0)
    b = args.batch
    t_node = floor(b, args.iterations)
    rows, raw = [], {"card": card, "torch": torch.__version__, "batch": b, "floor_seconds": t_node}
    for m in (int(v) for v in args.ms.split(",")):
        t_vmap = vmap(m, b, args.iterations)
        try:
            t_nccl, ranks = nccl(m, b, args.iterations)
        except RuntimeError as e:
            t_nccl, ranks = None, 0
            raw[f"nccl_error_m{m}"] = str(e)
        floor_ips = b / t_node
        row = [m, f"{floor_ips:,.0f}", f"{m * b / t_vmap:,.0f}", f"{m * b / t_vmap / floor_ips:.2f}",
               "-" if t_nccl is None else f"{m * b / t_nccl:,.0f} ({ranks} rank(s))",
               "-" if t_nccl is None else f"{m * b / t_nccl / floor_ips:.2f}"]
        rows.append(row)
        raw[f"m{m}"] = {"vmap_seconds": t_vmap, "nccl_seconds": t_nccl, "ranks": ranks}
        print(row, flush=True)
    head = ["m", "floor img/s (one node's fwd/bwd)", "vmap img/s", "vmap / floor", "NCCL img/s",
            "NCCL / floor"]
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                      + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
    text = "\n".join([BEGIN, f"## GPU: {card} (benchmarks/gpu.py)", "",
                      f"ResNet-18 (GroupNorm), CIFAR-shaped synthetic data, batch {b}, ring, Q = 1; "
                      f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch "
                      f"{torch.__version__}. See the script's docstring for what each column is.", "",
                      table, "", END, ""])
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", text, BEGIN, END)
        (ROOT / "docs" / "benchmarks-gpu.json").write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
