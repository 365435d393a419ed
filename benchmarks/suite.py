"""The benchmark items of issue 6, one function each. Every function measures side by side (see
harness.compare), appends a markdown section to the report and its raw numbers to report.data."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common_pattern import CommonPattern
from harness import Settings, Timings, compare, ms, probe, ratio, table

from gossiplab.config import load_config
from gossiplab.engine.nodestack import BACKENDS, NodeStack, bmm_supported
from gossiplab.engine.simulator import Simulator
from gossiplab.gossip import PlainGossip
from gossiplab.metrics import Evaluator
from gossiplab.run.runner import run_experiment
from gossiplab.setup import prepare

# The small CNN on CIFAR-10-shaped data (3x32x32, 10 classes, pad-4 crop + flip), synthetic so that
# no download is needed: the cost of every step is that of CIFAR-10.
CNN = ["data.dataset='synthetic'", "data.synthetic_shape=[3, 32, 32]", "data.synthetic_train=4096",
       "data.augment=true", "data.partition='iid'", "model.name='cnn'", "optim.batch_size=32",
       "optim.lr=0.02", "topology.name='ring'"]
# The MLP on digits: the default run (m = 16, ring, Q = 1, Dirichlet(0.3), b = 16).
MLP: list[str] = []
MLP_IID = ["data.partition='iid'"]  # 64 nodes: the Dirichlet split leaves some nodes < b samples


@dataclass
class Report:
    settings: Settings
    quick: bool
    plots: Path
    sections: list[str] = field(default_factory=list)
    targets: list[list[str]] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.sections.append(text.strip() + "\n")

    def target(self, what: str, measured: str, ok: bool) -> None:
        self.targets.append([what, measured, "met" if ok else "**not met**"])


def simulator(overrides: list[str], m: int, q: int = 1, extra: tuple[str, ...] = ()) -> Simulator:
    cfg = load_config(None, [*overrides, f"topology.nodes={m}", f"algorithm.gossip_steps={q}", *extra])
    return Simulator(prepare(cfg))


def preloaded(sim: Simulator) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration's per-model batch, sampled, augmented and normalised ahead of time."""
    pos = sim.sampler.sample()
    aug = sim.data.sample_augmentation(pos.numel(), sim.sampler.generator)
    return sim.algorithm.arrange(*sim.data.batch(pos, aug))


class PlainLoop:
    """The models' own cost: m ordinary ``nn.Module``s (own parameters), forward/backward on a
    preloaded batch, nothing else."""

    def __init__(self, sim: Simulator, x: torch.Tensor, y: torch.Tensor):
        self.models = [copy.deepcopy(sim.stack.template) for _ in range(sim.stack.models)]
        self.x, self.y = x, y

    def __call__(self) -> None:
        for model, xb, yb in zip(self.models, self.x, self.y, strict=True):
            model.zero_grad()
            F.cross_entropy(model(xb), yb).backward()


def backend_alone(sim: Simulator, x: torch.Tensor, y: torch.Tensor):
    fn = BACKENDS[sim.backend_name]
    return lambda: fn(sim.stack, x, y)


def gossip_alone(sim: Simulator):
    return lambda: sim.algorithm.communicate(sim.stack.params, sim.net, 0, 0)


def its(t: Timings, name: str) -> str:
    return f"{1 / t.median(name):.3g}"


# -- 1. engine overhead ---------------------------------------------------------------------------


def overhead(rep: Report) -> None:
    s = rep.settings
    qs = (1, 4, 16)
    rows, raw = [], {}
    cases = [("small CNN", CNN, m) for m in ((4, 16) if rep.quick else (4, 16, 64))]
    cases.append(("MLP, digits", MLP, 16))
    for label, over, m in cases:
        sims = {q: simulator(over, m, q) for q in qs}
        x, y = preloaded(sims[1])
        variants = {"floor": PlainLoop(sims[1], x, y), "backend": backend_alone(sims[1], x, y)}
        variants.update({f"Q={q}": sims[q].step for q in qs})
        t = compare(variants, s)
        raw[f"{label} m={m}"] = t.seconds
        for q in qs:
            r_floor, r_back = t.ratio(f"Q={q}", "floor")[0], t.ratio(f"Q={q}", "backend")[0]
            rows.append([label, m, q, sims[q].backend_name, ms(t, "floor"), ms(t, "backend"),
                         ms(t, f"Q={q}"), ratio(t, f"Q={q}", "floor"), ratio(t, f"Q={q}", "backend")])
            if label == "small CNN" and m == 16:
                limit = 1.10 if q <= 4 else 1.25
                worst = max(r_floor, r_back)
                rep.target(f"overhead over the compute floor, small CNN, m = 16, Q = {q}: "
                           f"<= {round(100 * (limit - 1))}%",
                           f"{100 * (r_floor - 1):+.1f}% vs the plain loop, "
                           f"{100 * (r_back - 1):+.1f}% vs the backend alone", worst <= limit)
        del sims, variants
    rep.data["overhead"] = raw
    rep.add(f"""
## 1. Engine overhead

A full DSGD-MGS iteration (sampling, augmentation, forward/backward, optimizer, Q gossip rounds,
bookkeeping: `Simulator.step`) against the compute floor, the same per-node forward/backward passes
alone on a preloaded batch, measured two ways: **plain loop** = m ordinary `nn.Module`s in a python
loop (what the models cost in any code), **backend alone** = the engine's own forward/backward
backend on the same preloaded batch (isolates everything else the iteration does). Ring topology;
the small CNN on CIFAR-10-shaped data with augmentation (b = 32), the MLP on digits (the default
run: b = 16, Dirichlet(0.3) split). Ratios > 1 are overhead; the target counts the larger of the two.

{table(["model", "m", "Q", "backend", "floor: plain loop", "backend alone", "iteration",
        "iteration / plain loop", "iteration / backend"], rows)}
""")


class PhaseClock:
    """Times the phases of real ``Simulator.step`` calls by wrapping the simulator's parts."""

    PHASES = ("sample + gather + augment + normalise", "forward/backward", "optimizer step", "gossip")

    def __init__(self, sim: Simulator):
        self.current = dict.fromkeys(self.PHASES, 0.0)
        for obj, attr, phase in ((sim.sampler, "sample", 0), (sim.data, "sample_augmentation", 0),
                                 (sim.data, "batch", 0), (sim, "_forward_backward", 1),
                                 (sim.optimizer, "step", 2), (sim.algorithm, "communicate", 3)):
            setattr(obj, attr, self.wrap(getattr(obj, attr), self.PHASES[phase]))
        self.sim = sim

    def wrap(self, fn, phase: str):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - t0
        return timed

    def iterations(self, n: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {k: [] for k in (*self.PHASES, "rest", "iteration")}
        for _ in range(n):
            self.current = dict.fromkeys(self.PHASES, 0.0)
            t0 = time.perf_counter()
            self.sim.step()
            total = time.perf_counter() - t0
            for k, v in self.current.items():
                out[k].append(v)
            out["rest"].append(total - sum(self.current.values()))
            out["iteration"].append(total)
        return out


def breakdown(rep: Report) -> None:
    """Where an iteration's time goes: the phases of real iterations, and the old gossip path."""
    rows, raw = [], {}
    for label, over, m, q in (("small CNN", CNN, 16, 4), ("MLP, digits", MLP, 16, 1)):
        sim = simulator(over, m, q)
        clock = PhaseClock(sim)
        clock.iterations(2)  # warm up
        budget = 2 * rep.settings.repeats * rep.settings.block_s  # seconds of iterations
        phases = clock.iterations(min(400, max(10, int(budget / clock.iterations(1)["iteration"][0]))))
        raw[label] = phases
        total = float(np.median(phases["iteration"]))
        name = f"{label}, m = {m}, Q = {q}"
        for k, v in phases.items():
            lo, med, hi = np.percentile(v, [25, 50, 75])
            rows.append([name, f"**{k}**" if k == "iteration" else k,
                         f"{1e3 * med:.3g} ms ({1e3 * lo:.3g}–{1e3 * hi:.3g})", f"{100 * med / total:.0f}%"])

        old = simulator(over, m, q, ("engine.fuse_gossip=false",))

        def old_gossip(sim=old):  # one mix(x, r) call per round, a new [m, d] tensor each
            with torch.no_grad():
                sim.stack.params.copy_(sim.algorithm.gossip.apply(sim.stack.params, sim.mixer, 0))

        t = compare({"engine": gossip_alone(sim), "old": old_gossip}, rep.settings)
        raw[label + " gossip paths"] = t.seconds
        rows.append([name, "*for comparison:* gossip as Q calls of mix(x, r), unfused", ms(t, "old"),
                     f"{ratio(t, 'old', 'engine')} x the engine's"])
    rep.data["breakdown"] = raw
    rep.add(f"""
### Where the time goes

The phases of real iterations (`Simulator.step`, its parts wrapped with timers; medians over
iterations, shares of the median iteration). "rest" is the step's own bookkeeping (loss checks,
learning rate, counters). The last row of each block compares the engine's gossip (in place,
fused) with the per-round `mix(x, r)` path it replaced, side by side.

{table(["configuration", "phase", "time", "share"], rows)}
""")


# -- 2. against the common research-code pattern -------------------------------------------------


def common_pattern(rep: Report) -> None:
    rows, raw = [], {}
    cases = [("MLP, digits", MLP_IID, 64, 4), ("small CNN", CNN, 64, 4), ("MLP, digits", MLP, 16, 1)]
    if rep.quick:
        cases = [("MLP, digits", MLP_IID, 64, 4), ("small CNN", CNN, 16, 4)]
    few = Settings(repeats=min(rep.settings.repeats, 5), block_s=rep.settings.block_s,
                   warmup=rep.settings.warmup)  # the baseline is slow and the gap is wide
    for label, over, m, q in cases:
        sim = simulator(over, m, q)
        base = CommonPattern(sim.setup)
        t = compare({"gossiplab": sim.step, "common": base.step}, few)
        raw[f"{label} m={m} Q={q}"] = t.seconds
        speed = t.ratio("common", "gossiplab")
        rows.append([label, m, q, sim.backend_name, its(t, "gossiplab"), its(t, "common"),
                     ratio(t, "common", "gossiplab")])
        if m == 64 and q == 4:
            need = 3.0 if label.startswith("MLP") else 1.0
            rep.target(f"vs the common pattern, {label}, m = 64, Q = 4, ring: "
                       f"{'>= 3x' if need > 1 else 'faster'} iterations/s",
                       f"{speed[0]:.1f}x ({speed[1]:.1f}–{speed[2]:.1f})",
                       speed[0] >= need if need > 1 else speed[0] > 1.0)
        del sim, base
    rep.data["common_pattern"] = raw
    rep.add(f"""
## 2. Against the common research-code pattern

The baseline (`benchmarks/common_pattern.py`) is what much decentralized/federated research code
does: one deep-copied `nn.Module` per node with its own `torch.optim.SGD`, and each gossip round
replaces every node's `state_dict` by the W-weighted sum of its neighbours' `state_dict`s, tensor
by tensor. It gets every advantage: preloaded per-node tensors (no DataLoader), gossiplab's own
vectorised sampling and augmentation, only the non-zeros of W visited. Same model, data, m, Q,
topology (ring) and learning rate.

{table(["model", "m", "Q", "gossiplab backend", "gossiplab it/s", "common pattern it/s",
        "speed-up (median, IQR)"], rows)}
""")


# -- 3. scaling ----------------------------------------------------------------------------------


def scaling(rep: Report) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms_ = (4, 16, 64, 256) if rep.quick else (4, 8, 16, 32, 64, 128, 256)
    variants, sims = {}, {}
    for m in ms_:
        over = ["data.dataset='synthetic'", "data.synthetic_shape=[1, 8, 8]",
                f"data.synthetic_train={64 * m}", "data.partition='iid'"]
        sims[m] = simulator(over, m, 1)
        variants[f"it m={m}"] = sims[m].step
        variants[f"gossip m={m}"] = gossip_alone(sims[m])
    tm = compare(variants, rep.settings)
    rows_m = []
    for m in ms_:
        nnz = int(np.count_nonzero(sims[m].setup.topology.w))
        g = tm.median(f"gossip m={m}")
        kind = "sparse" if sims[m].mixer.plan(0, 1)[0].is_sparse else "dense"
        rows_m.append([m, nnz, kind,
                       ms(tm, f"it m={m}"), f"{1e6 * tm.median(f'it m={m}') / m:.3g} µs",
                       ms(tm, f"gossip m={m}"), f"{1e9 * g / (nnz * sims[m].stack.d):.3g} ns"])
    d_mlp = sims[ms_[0]].stack.d
    del sims, variants

    qs = (1, 4, 16, 64) if rep.quick else (1, 2, 4, 8, 16, 32, 64)
    fused, plain = simulator(CNN, 16, 1), simulator(CNN, 16, 1, ("engine.fuse_gossip=false",))
    variants = {}
    for q in qs:
        for name, sim in (("fused", fused), ("unfused", plain)):
            def it(sim=sim, q=q):
                sim.algorithm.gossip = PlainGossip(sim.setup.topology, q)
                sim.step()

            def gossip(sim=sim, q=q):
                sim.algorithm.gossip = PlainGossip(sim.setup.topology, q)
                sim.algorithm.communicate(sim.stack.params, sim.net, 0, 0)

            variants[f"it {name} Q={q}"] = it
            variants[f"gossip {name} Q={q}"] = gossip
    tq = compare(variants, rep.settings)
    d_cnn = fused.stack.d
    rows_q = [[q, ms(tq, f"it fused Q={q}"), ms(tq, f"it unfused Q={q}"), ms(tq, f"gossip fused Q={q}"),
               ms(tq, f"gossip unfused Q={q}"), f"{1e3 * tq.median(f'gossip unfused Q={q}') / q:.3g} ms"]
              for q in qs]
    del fused, plain, variants
    rep.data["scaling_m"], rep.data["scaling_q"] = tm.seconds, tq.seconds

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    it = [1e3 * tm.median(f"it m={m}") for m in ms_]
    go = [1e3 * tm.median(f"gossip m={m}") for m in ms_]
    axes[0].loglog(ms_, it, "o-", label="iteration")
    axes[0].loglog(ms_, go, "s-", label="gossip (1 round)")
    axes[0].loglog(ms_, [it[-1] * m / ms_[-1] for m in ms_], "k:", label="linear in m")
    axes[0].set(xlabel="nodes m", ylabel="ms", title=f"MLP (d = {d_mlp}), ring, Q = 1")
    for name, style in (("fused", "o-"), ("unfused", "s--")):
        axes[1].loglog(qs, [1e3 * tq.median(f"it {name} Q={q}") for q in qs], style,
                       label=f"iteration, {name}")
        axes[1].loglog(qs, [1e3 * tq.median(f"gossip {name} Q={q}") for q in qs], style, alpha=0.5,
                       label=f"gossip, {name}")
    axes[1].set(xlabel="gossip rounds Q", ylabel="ms", title=f"small CNN (d = {d_cnn}), ring, m = 16")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    rep.plots.mkdir(parents=True, exist_ok=True)
    fig.savefig(rep.plots / "scaling.png", dpi=110)
    plt.close(fig)

    rep.add(f"""
## 3. Scaling

![scaling](benchmarks/scaling.png)

**In m** (MLP on digits-shaped synthetic data, 64 samples per node, b = 16, ring, Q = 1): iteration
time and one gossip round alone. Gossip per non-zero of W and parameter shows that a round costs
about nnz(W) x d (dense W below 32 nodes costs m^2 x d instead; the sparse COO kernel has a
per-row cost as well).

{table(["m", "nnz(W)", "W", "iteration", "per node", "gossip round", "gossip / (nnz x d)"], rows_m)}

**In Q** (small CNN, m = 16, ring): `fused` is the engine's default (the Q plain rounds as one
product by W^Q when that is cheaper: at m = 16 always one dense round, so gossip cost stays flat
in Q); `unfused` runs the rounds one by one (`engine.fuse_gossip = false`): its gossip cost is
Q x (one round), the last column staying constant. (Below 32 nodes W is applied as a dense
product, m^2 x d multiply-adds per round.)

{table(["Q", "iteration, fused", "iteration, unfused", "gossip, fused", "gossip, unfused",
        "unfused gossip / Q"], rows_q)}
""")


# -- 4. memory -------------------------------------------------------------------------------------


def memory(rep: Report) -> None:
    it = 1 if rep.quick else 3
    m = 16 if rep.quick else 64
    cases = [("small CNN", CNN, "engine", ()), ("small CNN", CNN, "engine", ("optim.momentum=0.9",)),
             ("small CNN", CNN, "common", ()), ("MLP, digits", MLP_IID, "engine", ())]
    rows, raw = [], []
    for label, over, variant, extra in cases:
        spec = {"overrides": [*over, f"topology.nodes={m}", "algorithm.gossip_steps=4", *extra],
                "variant": variant, "iterations": it, "warmup": 1}
        r = probe(spec)
        states = 2 + (1 if extra else 0)  # params + grads (+ momentum)
        floor = r["models"] * r["d"] * 4 * states + r["node_peak"]
        r.update(label=label, extra=list(extra), floor=floor)
        raw.append(r)
        who = "gossiplab" if variant == "engine" else "common pattern"
        rows.append([label, who + (" (momentum 0.9)" if extra else ""), m, f"{r['d']:,}",
                     f"{r['models'] * r['d'] * 4 * states / 2**20:.0f} MB + {r['node_peak'] / 2**20:.0f} MB",
                     f"{r['train_peak'] / 2**20:.0f} MB", f"{r['train_peak'] / floor:.2f}"])
        if label == "small CNN" and variant == "engine" and not extra and m == 64:
            rep.target("peak memory at m = 64 (small CNN): <= 1.3x the floor",
                       f"{r['train_peak'] / floor:.2f}x", r["train_peak"] / floor <= 1.3)

    # malloc tuning: page faults and time per iteration, in alternating fresh processes, for the
    # engine's plain gossip (in place) and for the mix(x, r) protocol other schemes use (a new
    # [m, d] tensor per round)
    pf: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(1 if rep.quick else 3):
        for path in ("in place", "mix(x, r)"):
            for tune in (False, True):
                spec = {"overrides": [*CNN, "topology.nodes=16", "algorithm.gossip_steps=4",
                                      f"engine.tune_malloc={str(tune).lower()}"],
                        "variant": "engine", "protocol_gossip": path != "in place",
                        "iterations": 2 if rep.quick else 5, "warmup": 1}
                pf.setdefault((path, tune), []).append(probe(spec))
    raw.append({"malloc": {f"{k[0]}, tuned={k[1]}": v for k, v in pf.items()}})
    mrows = [[path, "raised" if tune else "glibc default",
              f"{np.median([r['faults_per_iteration'] for r in v]):,.0f}",
              f"{1e3 * np.median([r['seconds_per_iteration'] for r in v]):.3g} ms",
              f"{np.median([r['train_peak'] for r in v]) / 2**20:.0f} MB"] for (path, tune), v in pf.items()]
    rep.data["memory"] = raw
    rep.add(f"""
## 4. Memory

Peak resident memory of training (Linux `VmHWM`, reset after imports and data loading; a fresh
process per row, a few iterations, Q = 4 on a ring) against the floor: m x d x 4 bytes x
(parameters + gradients + optimizer state) plus one node's activations (the peak of one plain
model's forward/backward on one batch, measured in the same process; it includes the batch itself
and torch's first-use allocations).

{table(["model", "who", "m", "d", "floor (states + one node)", "peak", "peak / floor"], rows)}

**malloc tuning** (small CNN, m = 16, Q = 4; fresh processes, alternated; medians): glibc
serves blocks above 32 MB with `mmap` and returns them on `free`, so a buffer that size
allocated every step is faulted in again every step. The engine's plain gossip runs in place and
allocates none; gossip schemes that use the `mix(x, r)` protocol (a new [m, d] tensor per round,
35 MB here) do, and so do large batches. The engine raises glibc's mmap/trim thresholds at start
(`engine.tune_malloc`, on by default).

{table(["gossip path", "malloc thresholds", "minor page faults / iteration", "time / iteration",
        "peak"], mrows)}
""")


# -- 5. backends: loop, threads, bmm, vmap (and the GPU) -------------------------------------------


def backends(rep: Report) -> None:
    rows, raw = [], {}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for label, over, m in (("small CNN", CNN, 16), ("MLP, digits", MLP, 16)):
            sim = simulator(over, m, 1)
            x, y = (t.to(device) for t in preloaded(sim))
            names = ["loop", "vmap"] + (["threads"] if device.type == "cpu" else [])
            names += ["bmm"] if bmm_supported(sim.stack.template) else []
            stacks, first = {}, {}
            for n in names:
                stacks[n] = NodeStack(sim.stack.template, m, device=device)
                t0 = time.perf_counter()
                BACKENDS[n](stacks[n], x, y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                first[n] = time.perf_counter() - t0
            calls = {n: (lambda f=BACKENDS[n], s=stacks[n], x=x, y=y: f(s, x, y)) for n in names}
            t = compare(calls, rep.settings)
            raw[f"{device.type} {label}"] = {"steady": t.seconds, "first_call": first}
            for n in names:
                rows.append([device.type, label, m, n, f"{1e3 * first[n]:.3g} ms", ms(t, n),
                             ratio(t, n, "loop")])
    rep.data["backends"] = raw
    gpu = ("" if torch.cuda.is_available() else
           "\nNo GPU on this machine: the GPU rows appear when the command runs where CUDA is available.\n")
    rep.add(f"""
## 5. Backends: loop, threads, bmm, vmap (the GPU path)

Per-node forward/backward of one iteration's preloaded batch into the gradient matrix. `auto`
(the default `engine.backend`) picks bmm for Flatten/Linear/ReLU models on any device, vmap for
other models on GPUs, and on CPU `threads` (one single-threaded worker per intra-op thread, each on
a block of nodes) or the plain loop with one thread. First call: a fresh stack's first call
(vmap traces the model). Ratio: steady-state time over the loop's.
{gpu}
{table(["device", "model", "m", "backend", "first call", "steady state", "time / loop"], rows)}
""")


# -- 6. evaluation ---------------------------------------------------------------------------------


def evaluation(rep: Report) -> None:
    fractions, walls = [], []
    for _ in range(1 if rep.quick else 3):
        summary = run_experiment(load_config(None, []))
        runs = summary["runs"].values()
        fractions.append(sum(r["eval_seconds"] for r in runs) / summary["wall_seconds"])
        walls.append(summary["wall_seconds"])
    frac = float(np.median(fractions))
    rep.target("the default `gossiplab run` spends < 20% of its time in evaluation",
               f"{100 * frac:.1f}% of {np.median(walls):.1f} s", frac < 0.20)

    rows, raw = [], {"default_run_fraction": fractions, "default_run_wall": walls}
    cases = [("MLP, synthetic 8x8", ["data.dataset='synthetic'", "data.partition='iid'",
                                     "data.synthetic_train=16384"], 256),
             ("small CNN", CNN, 16)]
    few = Settings(repeats=min(rep.settings.repeats, 3), block_s=0.2, warmup=1)  # evaluations are slow
    for label, over, m in cases:
        sim = simulator(over, m, 1)
        cfg = sim.cfg
        variants = {"iteration": sim.step}
        for name, k in (("evaluation", cfg.eval.max_nodes), ("evaluation, all nodes", m)):
            if name == "evaluation" or m > cfg.eval.max_nodes:
                ev = Evaluator(sim.setup.dataset, sim.setup.partition.union(),
                               cfg.eval.model_copy(update={"max_nodes": k}))
                variants[name] = lambda ev=ev, sim=sim: ev.evaluate(sim)
        t = compare(variants, few)
        raw[label] = t.seconds
        per = cfg.eval.every
        for name in variants:
            if name == "iteration":
                continue
            e, i = t.median(name), t.median("iteration")
            scored = m if name.endswith("all nodes") else min(cfg.eval.max_nodes, m)
            rows.append([label, m, f"{scored} nodes", ms(t, name), f"{e / i:.1f}",
                         f"{100 * e / (e + per * i):.1f}%"])
    rep.data["evaluation"] = raw
    rep.add(f"""
## 6. Evaluation cost

The default `gossiplab run` (digits, MLP, m = 16, 1,500 iterations of DSGD-MGS and of the
centralized baseline, an evaluation every 150): evaluation takes **{100 * frac:.1f}%** of its total
wall time (median of {len(fractions)} runs of {np.median(walls):.1f} s, setup included).

Evaluation scores the averaged model on all of S and the test set, and per-node models on a fixed
subsample (`eval.node_samples` = 1,000 of each) of at most `eval.max_nodes` = 16 evenly spaced
nodes (Flatten/Linear/ReLU models: all of them in one batched product per layer); the batch is
sized from the model (`eval.batch_size` = 0: activations at most one node's forward/backward at
the training batch, at least 8 MiB). One evaluation against one iteration, and the share of run
time at the default `eval.every` = 150:

{table(["model", "m", "per-node models scored", "one evaluation", "= iterations",
        "share at eval.every = 150"], rows)}
""")


SECTIONS = {
    "overhead": overhead,
    "breakdown": breakdown,
    "common_pattern": common_pattern,
    "scaling": scaling,
    "memory": memory,
    "backends": backends,
    "evaluation": evaluation,
}
