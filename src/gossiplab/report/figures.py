"""The report's figures, each a function in FIGURES that draws from the results or raises
:class:`Skip` with the reason the swept axes do not support it. Adding a figure is one decorated
function. Lines are means over seeds; bands are the report's interval (std or 95% CI), kept
inside each quantity's range (report/intervals.py); a figure with a summary over fewer than 3
seeds says so."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gossiplab.config import BASELINE  # noqa: E402
from gossiplab.report.data import (  # noqa: E402
    METRICS,
    Q_KEY,
    TOPOLOGY_KEY,
    Results,
    Run,
    matches,
    record_value,
)
from gossiplab.report.intervals import FEW_NOTE, FEW_SEEDS, Interval, ranged
from gossiplab.sweep.spec import baseline_ignores  # noqa: E402

MAX_ROWS = 4  # panel rows (slices of the other varied axes) per figure
MAX_LINES = 5  # Q values drawn as separate lines where each Q is a line
SHORT = {"topology.nodes": "m", "data.samples_per_node": "n", "data.alpha": "alpha",
         "optim.lr": "lr", "optim.batch_size": "b", Q_KEY: "Q", TOPOLOGY_KEY: "topology",
         "data.dataset": "data", "model.name": "model", "train.iterations": "T"}
Q_LABEL = "Q (gossip steps per iteration)"


class Skip(Exception):  # noqa: N818 - a reason, not an error
    """This figure does not apply to these results; the message says why."""


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    fig: Any  # matplotlib.figure.Figure


FigureFn = Callable[[Results], list[Figure]]
FIGURES: dict[str, tuple[str, FigureFn]] = {}


def figure(name: str, title: str) -> Callable[[FigureFn], FigureFn]:
    def deco(fn: FigureFn) -> FigureFn:
        FIGURES[name] = (title, fn)
        return fn
    return deco


# -- helpers ------------------------------------------------------------------------------------


def short(key: str) -> str:
    return SHORT.get(key, key)


def label_of(where: dict[str, Any]) -> str:
    return ", ".join(f"{short(k)}={'any' if v is None else v}" for k, v in where.items())


def dsgd(res: Results) -> list[Run]:
    return [r for r in res.ok if r.algorithm != BASELINE]


def central(res: Results) -> list[Run]:
    return [r for r in res.ok if r.algorithm == BASELINE]


def need_varied(res: Results, key: str, runs: list[Run], what: str) -> list[Any]:
    vals = res.values(key, runs)
    if len(vals) < 2:
        shown = f"only {vals[0]}" if vals else "left unset"
        raise Skip(f"{what} ({key}) was not varied ({shown})")
    return vals


def slice_keys(res: Results, exclude: set[str]) -> list[str]:
    dropped = set(exclude)
    for k in exclude:
        dropped |= res.covarying(k)
    return [k for k in res.varied() if k not in dropped]


def slices(res: Results, exclude: set[str], runs: list[Run]) -> tuple[list[dict[str, Any]], str]:
    """Combinations of the varied axes other than ``exclude`` (one row of panels each), and a note
    when some were left out."""
    keys = slice_keys(res, exclude)
    combos: list[dict[str, Any]] = []
    for r in runs:
        if any(k in r.ignored for k in keys):  # e.g. Q = 0 ignores topology keys: in every slice
            continue
        d = {k: r.value(k) for k in keys}
        if d not in combos:
            combos.append(d)
    combos.sort(key=lambda d: [str(v) for v in d.values()])
    note = ""
    if len(combos) > MAX_ROWS:
        note = f" Showing {MAX_ROWS} of {len(combos)} combinations of {', '.join(keys)}."
        combos = combos[:MAX_ROWS]
    return combos or [{}], note


def pick(values: list[Any], k: int = MAX_LINES) -> list[Any]:
    """At most ``k`` values, evenly spread, always keeping the first and the last."""
    if len(values) <= k:
        return values
    idx = sorted({int(round(i)) for i in np.linspace(0, len(values) - 1, k)})
    return [values[i] for i in idx]


def panels(rows: int, cols: int, w: float = 4.3, h: float = 3.1):
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows + 0.4), squeeze=False)
    return fig, axes


# Successive lines of one panel differ in marker and dash as well as colour, so lines that
# coincide (ring and torus at large Q) stay visible; a line equal to an earlier one says so.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
DASHES = ("-", (0, (5, 2)), (0, (2, 1.5)), (0, (6, 2, 1.5, 2)), (0, (1, 1)))


def note_seeds(fig, n: int) -> None:
    """Remember the smallest seed count a figure summarises (see :func:`finish`)."""
    if n > 0:
        fig._gossiplab_min_seeds = min(getattr(fig, "_gossiplab_min_seeds", n), n)


def min_seeds(fig) -> int | None:
    return getattr(fig, "_gossiplab_min_seeds", None)


def band(ax, xs: list[float], aggs: list[Interval], **kw) -> None:
    pts = [(x, a) for x, a in zip(xs, aggs, strict=True) if a.n > 0 and math.isfinite(a.mean)]
    if not pts:
        return
    x = np.array([p[0] for p in pts], dtype=float)
    m = np.array([p[1].mean for p in pts])
    lo = np.array([p[1].lo if p[1].n > 1 else p[1].mean for p in pts])
    hi = np.array([p[1].hi if p[1].n > 1 else p[1].mean for p in pts])
    for _, a in pts:
        note_seeds(ax.figure, a.n)
    k = len([ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")])
    label = kw.pop("label", None)
    if label is not None:
        for other in ax.get_lines():
            ox, oy = (np.asarray(v, dtype=float) for v in other.get_data())
            if (other.get_label() and not other.get_label().startswith("_") and ox.shape == x.shape
                    and np.allclose(ox, x) and np.allclose(oy, m, rtol=1e-9, atol=1e-12)):
                label = f"{label} (= {other.get_label()})"
                break
    kw.setdefault("marker", MARKERS[k % len(MARKERS)])
    kw.setdefault("ls", DASHES[k % len(DASHES)])
    (line,) = ax.plot(x, m, ms=4.5 if k == 0 else 3.5, lw=1.6, alpha=0.9, mfc="none" if k % 2 else None,
                      label=label, **kw)
    if (hi > lo).any():
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)


def reference(ax, a: Interval, label: str = "centralized") -> None:
    if a.n == 0 or not math.isfinite(a.mean):
        return
    note_seeds(ax.figure, a.n)
    ax.axhline(a.mean, color="black", ls="--", lw=1.2, label=label)
    if a.n > 1 and a.hi > a.lo:
        ax.axhspan(a.lo, a.hi, color="black", alpha=0.08, lw=0)


def set_axis(ax, values: list[Any], label: str, axis: str = "x") -> None:
    nums = [float(v) for v in values if isinstance(v, int | float)]
    pos = [v for v in nums if v > 0]
    if pos and len(pos) >= 2 and max(pos) / min(pos) >= 4:
        if len(pos) < len(nums):  # zero present (Q = 0): log past 1, linear below
            ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
        else:
            ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in pos) else 10)
        ax.set_xticks(nums)
        ax.set_xticklabels([f"{v:g}" for v in nums])
        ax.minorticks_off()
    ax.set_xlabel(label)


def finish(fig, axes, title: str) -> None:
    few = (min_seeds(fig) or FEW_SEEDS) < FEW_SEEDS
    fig.suptitle(title + (f"\n({FEW_NOTE}: n = {min_seeds(fig)})" if few else ""), fontsize=11,
                 color="black")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
        ax.grid(True, alpha=0.3)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 6),
                   fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if handles else 0, 1, 0.93 if few else 0.96))


def colours(n: int, cmap: str = "viridis") -> list:
    return [plt.get_cmap(cmap)(v) for v in np.linspace(0.05, 0.85, max(n, 1))]


def curve_intervals(res: Results, runs: list[Run], path: str, kind: str = "positive"
                    ) -> tuple[np.ndarray, list[Interval]]:
    """Per evaluated iteration, the mean over runs (seeds) of a metric with its interval."""
    by_it: dict[int, list[float]] = {}
    for r in runs:
        for rec in res.curves(r.id):
            by_it.setdefault(int(rec["iteration"]), []).append(record_value(rec, path))
    its = sorted(by_it)
    return np.array(its, dtype=float), [ranged(by_it[i], kind, res.interval) for i in its]


def mean_curve(res: Results, runs: list[Run], path: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs (seeds) of a metric against iteration."""
    its, ivs = curve_intervals(res, runs, path)
    return its, np.array([a.mean for a in ivs])


# -- Q ------------------------------------------------------------------------------------------


Q_METRICS = ("test_acc", "gen_gap_acc", "gen_gap_loss")


@figure("q_accuracy_gap", "Test accuracy and generalization gap against Q")
def q_accuracy_gap(res: Results) -> list[Figure]:
    runs = dsgd(res)
    qs = need_varied(res, Q_KEY, runs, "the number of gossip steps Q")
    topologies = res.values(TOPOLOGY_KEY, runs)
    rows, note = slices(res, {Q_KEY, TOPOLOGY_KEY}, runs)
    cent = central(res)
    fig, axes = panels(len(rows), len(Q_METRICS))
    for i, where in enumerate(rows):
        sub = [r for r in runs if matches(r, where)]
        ref = [r for r in cent if matches(r, where)]
        for j, metric in enumerate(Q_METRICS):
            ax = axes[i][j]
            for c, topo in zip(colours(len(topologies), "tab10"), topologies, strict=True):
                line = [r for r in sub if matches(r, {TOPOLOGY_KEY: topo})]
                band(ax, qs, [res.agg([r for r in line if r.value(Q_KEY) == q], metric) for q in qs],
                     label=str(topo), color=c)
            if ref:
                reference(ax, res.agg(ref, metric))
            set_axis(ax, qs, Q_LABEL)
            ax.set_ylabel(METRICS[metric][1])
            if where:
                ax.set_title(label_of(where), fontsize=9)
    finish(fig, axes, "Final test accuracy and generalization gap against Q (one line per topology)")
    cap = ("Averaged model at the end of training; lines: mean over seeds per topology, bands: "
           f"{interval_text(res)}; dashed: centralized mini-batch SGD on the same data and batches"
           + ("" if cent else " (no centralized runs in these results)") + "." + note)
    return [Figure("q_accuracy_gap", "Test accuracy and generalization gap against Q", cap, fig)]


def interval_text(res: Results) -> str:
    return "95% t-interval over seeds" if res.interval == "ci95" else "± one std over seeds"


def _partner_index(res: Results) -> tuple[dict[tuple, Run], list[str]]:
    keys = [k for k in res.varied() if not baseline_ignores(k)]
    index = {}
    for r in central(res):
        index[(tuple(r.value(k) for k in keys), r.seeds)] = r
    return index, keys


@figure("q_gap_to_centralized", "Gap to centralized against Q")
def q_gap_to_centralized(res: Results) -> list[Figure]:
    runs = dsgd(res)
    qs = need_varied(res, Q_KEY, runs, "the number of gossip steps Q")
    if not central(res):
        raise Skip("no centralized runs (set sweep.baseline = true)")
    index, keys = _partner_index(res)
    pairs = []
    for r in runs:
        c = index.get((tuple(r.value(k) for k in keys), r.seeds))
        if c is not None:
            pairs.append((r, c))
    if not pairs:
        raise Skip("no decentralized run has a centralized run with the same config and seeds")
    topologies = res.values(TOPOLOGY_KEY, runs)
    rows, note = slices(res, {Q_KEY, TOPOLOGY_KEY}, runs)
    fig, axes = panels(len(rows), len(Q_METRICS))
    for i, where in enumerate(rows):
        sub = [(r, c) for r, c in pairs if matches(r, where)]
        for j, metric in enumerate(Q_METRICS):
            ax = axes[i][j]
            for col, topo in zip(colours(len(topologies), "tab10"), topologies, strict=True):
                aggs = [ranged([r.final[metric] - c.final[metric] for r, c in sub
                                if r.value(Q_KEY) == q and matches(r, {TOPOLOGY_KEY: topo})],
                               "signed", res.interval)
                        for q in qs]
                band(ax, qs, aggs, label=str(topo), color=col)
            ax.axhline(0, color="black", lw=0.9, ls="--")
            set_axis(ax, qs, Q_LABEL)
            ax.set_ylabel(f"{METRICS[metric][1]}: DSGD-MGS − centralized", fontsize=8)
            if where:
                ax.set_title(label_of(where), fontsize=9)
    finish(fig, axes, "Gap to centralized training against Q (paired by seed)")
    cap = ("Difference between DSGD-MGS and the centralized run with the same data partition, "
           "batches and initialisation (same seeds), at the end of training; 0 = no gap. "
           f"Bands: {interval_text(res)} of the paired differences." + note)
    return [Figure("q_gap_to_centralized", "Gap to centralized against Q", cap, fig)]


@figure("consensus", "Consensus distance over iterations for several Q")
def consensus(res: Results) -> list[Figure]:
    runs = dsgd(res)
    qs = need_varied(res, Q_KEY, runs, "the number of gossip steps Q")
    topologies = res.values(TOPOLOGY_KEY, runs)[:MAX_ROWS]
    rows, note = slices(res, {Q_KEY, TOPOLOGY_KEY}, runs)
    rows = rows[:2]
    shown = pick(qs, 6)
    res.prefetch_curves(r.id for r in runs if r.value(Q_KEY) in shown)
    fig, axes = panels(len(rows), len(topologies))
    drawn = False
    for i, where in enumerate(rows):
        for j, topo in enumerate(topologies):
            ax = axes[i][j]
            for col, q in zip(colours(len(shown)), shown, strict=True):
                sel = [r for r in runs if matches(r, {**where, TOPOLOGY_KEY: topo})
                       and r.value(Q_KEY) == q]
                its, ivs = curve_intervals(res, sel, "consensus_distance")
                vals = np.array([a.mean for a in ivs])
                keep = (vals > 0) & (its > 0)  # iteration 0: one shared init, distance 0 + rounding
                if keep.any():
                    band(ax, list(its[keep]), [a for a, k in zip(ivs, keep, strict=True) if k],
                         color=col, label=f"Q={q}", marker=".")
                    drawn = True
            ax.set_yscale("log")
            ax.set_xlabel("iteration")
            ax.set_ylabel("consensus distance (1/m) Σ‖x_k − x̄‖²", fontsize=8)
            ax.set_title(label_of({TOPOLOGY_KEY: topo, **where}), fontsize=9)
    if not drawn:
        plt.close(fig)
        raise Skip("no positive consensus distance recorded (every run reached exact consensus)")
    finish(fig, axes, "Consensus distance over iterations (mean over seeds)")
    cap = (f"Distance of the node models to their average at each evaluation, for Q in {shown}"
           f" (log scale; mean over seeds, bands: {interval_text(res)} on the log scale; iteration"
           " 0 is left out: every node starts from the same model, so its distance is 0 up to"
           " rounding; Q with exact averaging, consensus distance 0, are not drawn)." + note)
    return [Figure("consensus", "Consensus distance over iterations for several Q", cap, fig)]


# -- the gap against the other axes --------------------------------------------------------------

GAP_AXES = (
    ("gap_vs_lr", "optim.lr", "learning rate"),
    ("gap_vs_nodes", "topology.nodes", "node count m"),
    ("gap_vs_samples", "data.samples_per_node", "per-node samples n"),
    ("gap_vs_alpha", "data.alpha", "Dirichlet alpha"),
    ("gap_vs_batch", "optim.batch_size", "batch size b"),
)
GAP_METRICS = ("gen_gap_acc", "gen_gap_loss", "test_acc")


def _gap_vs(axis: str, what: str, name: str) -> FigureFn:
    def draw(res: Results) -> list[Figure]:
        xs = need_varied(res, axis, res.ok, what)
        co = res.covarying(axis)
        runs = dsgd(res)
        series_keys = [k for k in (TOPOLOGY_KEY, Q_KEY) if k in res.varied() and k not in co]
        rows, note = slices(res, {axis, TOPOLOGY_KEY, Q_KEY}, res.ok)
        qs = pick(res.values(Q_KEY, runs), 4)
        series = []
        for r in runs:
            s = tuple(r.value(k) for k in series_keys)
            if s not in series and (Q_KEY not in series_keys or r.value(Q_KEY) in qs):
                series.append(s)
        series.sort(key=lambda s: [str(v) if not isinstance(v, int | float) else f"{v:012.4f}" for v in s])
        cent = central(res)
        fig, axes = panels(len(rows), len(GAP_METRICS))
        for i, where in enumerate(rows):
            for j, metric in enumerate(GAP_METRICS):
                ax = axes[i][j]
                for col, s in zip(colours(len(series), "tab10" if len(series) <= 10 else "viridis"), series,
                                  strict=True):
                    sel = [r for r in runs if matches(r, where)
                           and all(r.value(k) == v for k, v in zip(series_keys, s, strict=True))]
                    band(ax, xs, [res.agg([r for r in sel if r.value(axis) == x], metric) for x in xs],
                         color=col, label="DSGD-MGS " + label_of(dict(zip(series_keys, s, strict=True))))
                ref = [r for r in cent if matches(r, where)]
                if ref:
                    band(ax, xs, [res.agg([r for r in ref if r.value(axis) == x], metric) for x in xs],
                         color="black", ls="--", label="centralized")
                set_axis(ax, xs, what)
                ax.set_ylabel(METRICS[metric][1])
                if where:
                    ax.set_title(label_of(where), fontsize=9)
        finish(fig, axes, f"Generalization gap against {what}")
        cap = (f"Final generalization gap (0-1 error and loss) and test accuracy against {what} ({axis}); "
               f"lines: mean over seeds, bands: {interval_text(res)}.")
        if co:
            cap += f" {', '.join(sorted(co))} varied together with {axis} (zipped axes)."
        if Q_KEY in series_keys and len(qs) < len(res.values(Q_KEY, runs)):
            cap += f" Q shown: {qs}."
        return [Figure(name, f"Generalization gap against {what}", cap + note, fig)]
    return draw


for _name, _axis, _what in GAP_AXES:
    figure(_name, f"Generalization gap against {_what}")(_gap_vs(_axis, _what, _name))


# -- training curves -----------------------------------------------------------------------------


@figure("training_curves", "Training curves")
def training_curves(res: Results) -> list[Figure]:
    runs = dsgd(res)
    cent = central(res)
    if not runs and not cent:
        raise Skip("no finished runs")
    topologies = res.values(TOPOLOGY_KEY, runs)[:MAX_ROWS] or [None]
    rows, note = slices(res, {Q_KEY, TOPOLOGY_KEY}, runs or cent)
    where = rows[0]
    if len(rows) > 1:
        note = f" Shown for {label_of(where)} ({len(rows)} combinations of the other axes exist)."
    shown = pick(res.values(Q_KEY, runs), MAX_LINES)
    cols = (("train loss", "avg_model.train_loss"), ("test loss", "avg_model.test_loss"))
    fig, axes = panels(len(topologies), len(cols))
    ref = [r for r in cent if matches(r, where)]
    res.prefetch_curves([r.id for r in runs if matches(r, where)] + [r.id for r in ref])
    for i, topo in enumerate(topologies):
        for j, (label, path) in enumerate(cols):
            ax = axes[i][j]
            for col, q in zip(colours(len(shown)), shown, strict=True):
                sel = [r for r in runs if matches(r, {**where, TOPOLOGY_KEY: topo})
                       and r.value(Q_KEY) == q]
                its, ivs = curve_intervals(res, sel, path)
                if len(its):
                    band(ax, list(its), ivs, color=col, label=f"DSGD-MGS Q={q}", marker=None)
            if ref:
                its, ivs = curve_intervals(res, ref, path)
                band(ax, list(its), ivs, color="black", ls="--", marker=None, label="centralized")
            ax.set_xlabel("iteration")
            ax.set_ylabel(f"{label} (averaged model)")
            ax.set_yscale("log")
            title = label_of({TOPOLOGY_KEY: topo} if topo is not None else {})
            ax.set_title(title, fontsize=9)
    finish(fig, axes, "Training curves: train and test loss of the averaged model (mean over seeds)")
    cap = ("Cross-entropy of the averaged model on the union of the nodes' data and on the test set; "
           f"lines: mean over seeds, bands: {interval_text(res)} (on the log scale)." + note)
    return [Figure("training_curves", "Training curves", cap, fig)]
