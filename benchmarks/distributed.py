"""Distributed-engine measurements, written to docs/benchmarks-distributed.md.

    python benchmarks/distributed.py [--procs 4] [--also 2] [--iterations 300] [--reps 400]

Starts ``--procs`` ranks of itself on loopback (gloo, one thread each) and measures, side by side
in the same run:

1. gossip bytes sent per iteration per node, against the theory Q x degree x d x 4 bytes;
2. the time of one gossip round (``NeighbourMixer``: plan, pack, ``batch_isend_irecv``, weighted
   sum) against raw gloo point-to-point for the same buffers (the same ``batch_isend_irecv`` with
   pre-built buffers and nothing else), on a ring with one node per process;
3. iteration time of the distributed engine against the simulator for the same config (the
   simulator runs afterwards, alone, in the parent process).

Timings are medians over blocks of repetitions, the two variants of a comparison interleaved
block by block so that load from other processes hits both alike. ``--also N`` repeats the
gossip-round comparison with N processes (e.g. one per core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BASE = ["engine.threads=1", "eval.every=100000", "algorithm.compare_centralized=false"]
# (label, overrides): the default experiment (digits, MLP 64, ring, m = 16, Q = 1) and variants.
ITERATION_CONFIGS = [
    ("default: ring, m=16, Q=1", []),
    ("ring, m=16, Q=4", ["algorithm.gossip_steps=4"]),
    ("exp_onepeer, m=16, Q=1", ["topology.name='exp_onepeer'"]),
    ("ring, m=procs (1 node/process), Q=1", ["topology.nodes={procs}"]),
    ("centralized, m=16", ["algorithm.name='centralized'"]),
]
BYTES_CONFIGS = [  # one node per process: measured bytes against Q x degree x d x 4
    ("ring", 2, 1), ("ring", 2, 4), ("exp_onepeer", 1, 1), ("exp_onepeer", 1, 4),
]
BLOCK_BYTES = [("ring", 16, 1), ("exp_onepeer", 16, 1), ("torus", 16, 1)]  # blocks of nodes
ROUND_SIZES = [4_810, 100_000, 1_000_000]  # floats per buffer (4810 = the default MLP's d)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cfg_of(overrides: list[str], procs: int):
    from gossiplab.config import load_config

    return load_config(None, BASE + [o.format(procs=procs) for o in overrides])


def blocks_median(fn_a, fn_b, reps: int, blocks: int = 8, sync=None) -> tuple[float, float]:
    """Median over blocks of the mean seconds per call of a and b, interleaved."""
    ta, tb = [], []
    per = max(1, reps // blocks)
    for _ in range(blocks):
        for fn, acc in ((fn_a, ta), (fn_b, tb)):
            if sync:
                sync()
            t0 = time.perf_counter()
            for _ in range(per):
                fn()
            acc.append((time.perf_counter() - t0) / per)
    return statistics.median(ta), statistics.median(tb)


def raw_exchange(send, recv_l, recv_r, left: int, right: int):
    """Plain gloo point-to-point: send to each ring neighbour, receive from each (one peer when
    the ring has 2 nodes, as the gossip round does)."""
    import torch.distributed as dist

    peers = [(left, recv_l)] if left == right else [(left, recv_l), (right, recv_r)]

    def raw():
        ops = [dist.P2POp(dist.isend, send, p) for p, _ in peers]
        ops += [dist.P2POp(dist.irecv, buf, p) for p, buf in peers]
        for w in dist.batch_isend_irecv(ops):
            w.wait()

    return raw


# -- worker (one rank) ---------------------------------------------------------------------------


def worker(args) -> None:
    import torch
    import torch.distributed as dist

    from gossiplab.engine.comm import connect
    from gossiplab.engine.distributed import DistributedEngine, LocalShard
    from gossiplab.engine.p2p import NeighbourMixer
    from gossiplab.setup import prepare
    from gossiplab.topology import build_topology

    torch.set_num_threads(1)
    procs = int(os.environ["WORLD_SIZE"])
    comm = connect(cfg_of(["topology.nodes={procs}"], procs))
    results: dict = {"bytes": [], "block_bytes": [], "round": [], "iteration": []}

    def engine_for(overrides: list[str]):
        cfg = cfg_of(overrides, procs)
        comm.nodes = cfg.topology.nodes
        setup = prepare(cfg)
        shard = LocalShard.from_setup(setup, *comm.block())
        return cfg, DistributedEngine(setup, None, comm=comm, shard=shard)

    def run_steps(engine, n):
        dist.barrier()
        t0 = time.perf_counter()
        b0 = engine.mixer.bytes_sent
        for _ in range(n):
            engine.step()
        return time.perf_counter() - t0, engine.mixer.bytes_sent - b0

    # 1. bytes, one node per process
    for topo, degree, q in [] if args.rounds_only else BYTES_CONFIGS:
        cfg, eng = engine_for([f"topology.name='{topo}'", "topology.nodes={procs}",
                               f"algorithm.gossip_steps={q}"])
        n = 20
        _, sent = run_steps(eng, n)
        per_rank = comm.gather("bytes", sent / n)
        results["bytes"].append({"topology": topo, "degree": degree, "Q": q, "d": eng.stack.d,
                                 "measured": per_rank, "theory": q * degree * eng.stack.d * 4})
    for topo, m, q in [] if args.rounds_only else BLOCK_BYTES:
        cfg, eng = engine_for([f"topology.name='{topo}'", f"topology.nodes={m}",
                               f"algorithm.gossip_steps={q}"])
        n = 20
        _, sent = run_steps(eng, n)
        per_rank = comm.gather("block-bytes", sent / n)
        w = eng.setup.topology.matrix(0)
        degree = float(((w != 0).sum(1) - 1).mean())
        results["block_bytes"].append({"topology": topo, "m": m, "Q": q, "d": eng.stack.d,
                                       "per_node": sum(per_rank) / m,
                                       "theory_per_node": q * degree * eng.stack.d * 4})

    # 2. one gossip round against raw gloo point-to-point, ring, one node per process
    comm.nodes = procs
    ring = build_topology("ring", procs)
    mixer = NeighbourMixer(ring, comm)
    left, right = (comm.rank - 1) % procs, (comm.rank + 1) % procs
    for size in ROUND_SIZES:
        x = torch.randn(1, size)
        raw = raw_exchange(x.view(-1), torch.empty(size), torch.empty(size), left, right)

        def gossip(x=x):
            mixer(x, 0)

        for _ in range(10):
            raw()
            gossip()
        reps = max(16, args.reps if size < 500_000 else args.reps // 8)
        t_mix, t_raw = blocks_median(gossip, raw, reps, sync=dist.barrier)
        results["round"].append({"floats": size, "bytes": size * 4,
                                 "gossip": comm.gather("t-mix", t_mix), "raw": comm.gather("t-raw", t_raw)})

    # the per-iteration bookkeeping all-reduce (one float64), against a gossip round of the MLP
    loss = torch.zeros(1, dtype=torch.float64)
    x = torch.randn(1, ROUND_SIZES[0])
    t_ar, t_mix = blocks_median(lambda: dist.all_reduce(loss), lambda: mixer(x, 0), args.reps,
                                sync=dist.barrier)
    results["allreduce"] = {"allreduce": comm.gather("t-ar", t_ar), "gossip": comm.gather("t-mix2", t_mix)}

    if args.rounds_only:
        if comm.rank == 0:
            Path(args.result).write_text(json.dumps(results))
        comm.close()
        return

    # 3. iteration time
    for label, overrides in ITERATION_CONFIGS:
        cfg, eng = engine_for(overrides)
        run_steps(eng, 10)
        secs, _ = run_steps(eng, args.iterations)
        per = comm.gather("iter", secs / args.iterations)
        results["iteration"].append({"label": label, "overrides": overrides, "m": cfg.topology.nodes,
                                     "distributed": max(per)})
    if comm.rank == 0:
        Path(args.result).write_text(json.dumps(results))
    comm.close()


# -- parent --------------------------------------------------------------------------------------


class _NoWireComm:
    """Rank 0 of a ring of 4 whose exchange only fills the receive buffers (no messages): what a
    gossip round costs the engine beyond the transport."""

    rank, world_size, nodes = 0, 4, 4

    def block(self, rank=None):
        r = self.rank if rank is None else rank
        return r, r + 1

    def exchange(self, sends, recvs, what):
        for _, t in recvs:
            t.fill_(1.0)


def engine_work_per_round(size: int, reps: int = 2000) -> float:
    import torch

    from gossiplab.engine.p2p import NeighbourMixer
    from gossiplab.topology import build_topology

    torch.set_num_threads(1)
    mixer = NeighbourMixer(build_topology("ring", 4), _NoWireComm())
    x = torch.randn(1, size)
    n = max(20, reps if size < 500_000 else reps // 20)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            mixer(x, 0)
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def simulator_iteration(overrides: list[str], procs: int, iterations: int, threads: int) -> float:
    import torch

    from gossiplab.engine.simulator import Simulator
    from gossiplab.setup import prepare

    cfg = cfg_of(overrides + [f"engine.threads={threads}"], procs)
    sim = Simulator(prepare(cfg))
    torch.set_num_threads(threads)
    for _ in range(10):
        sim.step()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iterations // 3):
            sim.step()
        times.append((time.perf_counter() - t0) / (iterations // 3))
    return statistics.median(times)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}; {os.cpu_count()} cores; Linux {platform.release()}; Python "
            f"{platform.python_version()}; torch {torch.__version__}")


def us(s: float) -> str:
    return f"{s * 1e6:,.0f} µs" if s < 0.01 else f"{s * 1e3:,.1f} ms"


def round_table(rounds: list[dict]) -> list[str]:
    lines = ["| buffer | gossip round | raw gloo p2p | ratio gossip / raw |", "|---|---|---|---|"]
    for r in rounds:
        g, w = statistics.median(r["gossip"]), statistics.median(r["raw"])
        lines.append(f"| {r['floats']:,} floats ({r['bytes'] / 1e6:.2f} MB) | {us(g)} | {us(w)} | "
                     f"{g / w:.2f} |")
    return lines


def report(res: dict, sim: dict, args, load: tuple, also: dict | None) -> str:
    p = args.procs
    lines = [
        "# Distributed engine: measurements",
        "",
        f"Generated by `python benchmarks/distributed.py --procs {p} --iterations {args.iterations} "
        f"--reps {args.reps}` ({time.strftime('%Y-%m-%d %H:%M')}).",
        "",
        f"**Machine:** {machine()}. {p} ranks on loopback (gloo), one torch thread each.",
        "",
        f"**Caveat: this machine has 2 cores and is shared** by several people working at once: "
        f"load average {load[0]:.1f} at the start and {load[1]:.1f} at the end, and {p} ranks on 2 "
        "cores are oversubscribed by themselves. Absolute times are therefore noisy and pessimistic; "
        "ratios are taken side by side in the same run (interleaved blocks, medians) and are the "
        "figures to read. Byte counts are exact.",
        "",
        "## 1. Gossip bytes per iteration per node",
        "",
        "One node per process; measured = bytes this rank put into `isend` per iteration (the "
        "engine's counter), theory = Q x degree x d x 4 bytes (float32).",
        "",
        "| topology | Q | degree | d | measured (each rank) | theory | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in res["bytes"]:
        meas = sorted(set(b["measured"]))
        ratio = max(meas) / b["theory"]
        lines.append(f"| {b['topology']} | {b['Q']} | {b['degree']} | {b['d']:,} | "
                     f"{', '.join(f'{v:,.0f}' for v in meas)} | {b['theory']:,} | {ratio:.3f} |")
    lines += [
        "",
        f"Blocks of nodes (m = 16 on {p} processes): an edge inside a block costs nothing, and a row "
        "needed by several nodes of the same peer is sent once.",
        "",
        "| topology | m | Q | d | measured per node | theory if every edge crossed processes | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in res["block_bytes"]:
        lines.append(f"| {b['topology']} | {b['m']} | {b['Q']} | {b['d']:,} | {b['per_node']:,.0f} | "
                     f"{b['theory_per_node']:,.0f} | {b['per_node'] / b['theory_per_node']:.3f} |")
    lines += [
        "",
        "Besides gossip, every iteration all-reduces the batch loss (one float64: 8 bytes in, the "
        "mean loss the simulator reports and the same divergence stop on every rank), and "
        "evaluations all-reduce the mean model and send the scored nodes' rows to rank 0.",
        "",
        "## 2. One gossip round against raw gloo point-to-point",
        "",
        f"Ring, one node per process ({p} processes): each rank sends its buffer to both neighbours "
        "and receives theirs. *gossip* = `NeighbourMixer(x, r)` (cached plan, received rows written "
        "in place, one `batch_isend_irecv`, the weighted sum W_r[i, :] x); *raw* = the same "
        "`batch_isend_irecv` of pre-built buffers and nothing else. Median over ranks of each "
        "rank's median block time.",
        "",
        *round_table(res["round"]),
    ]
    if also:
        lines += [
            "",
            f"The same with {args.also} processes (one per core; with {args.also} nodes the ring has "
            "one neighbour). A round of a small buffer costs a few milliseconds in both variants, "
            "whatever its size: on this loaded machine a rank woken by a message waits for a core "
            "(a scheduler time slice); it is not the engine's cost, since raw gloo pays the same.",
            "",
            *round_table(also["round"]),
        ]
    lines += [
        "",
        "What the engine adds to the transport, measured without it (one process, the exchange "
        "replaced by filling the receive buffers): plan lookup, packing, receive buffers, the "
        "weighted sum `W_own x + W_recv received`, byte counting. This is the part of a round "
        "that is the engine's own, and it is stable on a loaded machine:",
        "",
        "| buffer | engine work per round (no transport) |",
        "|---|---|",
    ]
    for size, secs in sorted(res["engine_work"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {int(size):,} floats | {us(secs)} |")
    ar = res["allreduce"]
    a, g = statistics.median(ar["allreduce"]), statistics.median(ar["gossip"])
    lines += [
        "",
        f"The per-iteration bookkeeping all-reduce (one float64 over {p} ranks) takes {us(a)}, "
        f"against {us(g)} for a gossip round of the default MLP in the same interleaved run "
        f"(ratio {a / g:.2f}).",
    ]
    lines += [
        "",
        "## 3. Iteration time: distributed engine against the simulator",
        "",
        f"Same config (digits, MLP 64, batch 16 per node, no evaluation inside the timed loop), "
        f"{args.iterations} iterations after 10 warm-up ones. Distributed: {p} processes x 1 thread, "
        "the slowest rank's mean. Simulator: one process, alone, with 1 and with 2 threads.",
        "",
        "| config | distributed | simulator, 1 thread | simulator, 2 threads "
        "| distributed / simulator (1 thread) |",
        "|---|---|---|---|---|",
    ]
    for it in res["iteration"]:
        s1, s2 = sim[it["label"]]
        lines.append(f"| {it['label'].replace('procs', str(p))} | {us(it['distributed'])} | {us(s1)} | "
                     f"{us(s2)} | {it['distributed'] / s1:.2f} |")
    lines += [
        "",
        "The simulator with 2 threads is often *slower* than with 1 here: its two OpenMP threads "
        "wait for each other while other people's processes hold the two cores.",
    ]
    lines += [
        "",
        "Reading: on one 2-core machine the distributed engine cannot beat the simulator, which "
        "does all nodes' work in a few large tensor operations and never waits for a message; "
        f"here {p} processes share 2 cores and every gossip round is a synchronisation between "
        "neighbours. The engine exists to run the same algorithm where each node has its own "
        "machine or GPU, and the point of these numbers is the overhead it adds: byte counts at the "
        "theoretical minimum, and per gossip round the engine's own work (the no-transport table: "
        "microseconds for the default model, about one pass over the received rows for large "
        "ones) on top of the raw point-to-point exchange it is built on.",
        "",
    ]
    return "\n".join(lines)


def spawn(n: int, args, rounds_only: bool = False) -> dict:
    """Run ``n`` worker ranks of this script; rank 0's results."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        port = free_port()
        procs = []
        for r in range(n):
            env = {**os.environ, "RANK": str(r), "WORLD_SIZE": str(n), "LOCAL_RANK": str(r),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", "--result", str(result), "--procs", str(n),
                 "--iterations", str(args.iterations), "--reps", str(args.reps)]
                + (["--rounds-only"] if rounds_only else []), env=env))
        codes = [p.wait() for p in procs]
        if any(codes):
            sys.exit(f"a rank failed (exit codes {codes})")
        return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--reps", type=int, default=400, help="gossip rounds timed per buffer size")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-distributed.md"))
    ap.add_argument("--also", type=int, default=2,
                    help="also time the gossip round with this many processes (0: skip)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    load0 = os.getloadavg()[0]
    res = spawn(args.procs, args)
    also = spawn(args.also, args, rounds_only=True) if args.also else None
    sim = {}
    for label, overrides in ITERATION_CONFIGS:
        sim[label] = tuple(simulator_iteration(overrides, args.procs, args.iterations, t) for t in (1, 2))
    res["engine_work"] = {size: engine_work_per_round(size) for size in ROUND_SIZES}
    text = report(res, sim, args, (load0, os.getloadavg()[0]), also)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
