"""Figures of a stability run: twin distances, loss stability, generalization gap and consensus
against the iteration, on log-log axes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from gossiplab.config import BASELINE
from gossiplab.fileio import atomic_write


def trajectory(records: list[dict], value) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``value(record)`` (a list or a number) over records at each iteration."""
    acc: dict[int, list[float]] = defaultdict(list)
    for r in records:
        v = value(r)
        acc[r["iteration"]].extend(x for x in (v if isinstance(v, list) else [v]) if x is not None)
    its = np.array(sorted(acc))
    return its, np.array([np.mean(acc[i]) if acc[i] else np.nan for i in its])


def _loglog(ax, x, y, **kw):
    ok = (x > 0) & np.isfinite(y) & (y > 0)
    if ok.any():
        ax.loglog(x[ok], y[ok], **kw)


def figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 80) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))


def plot_run(summary: dict, repetitions: list[dict], path: str | Path) -> None:
    plt = figure()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    names = list(summary["stability"])
    for ci, name in enumerate(names):
        col = f"C{ci}"
        recs = [r for rep in repetitions for r in rep["algorithms"][name]["twins"]]
        if not recs:
            continue
        x, y = trajectory(recs, lambda r: r["avg_dist"])
        _loglog(axes[0], x, y, label=f"{name}: averaged model", color=col)
        x, y = trajectory(recs, lambda r: r["node_dist"])
        _loglog(axes[0], x, y, ls="--", label=f"{name}: node models", color=col)
        x, y = trajectory(recs, lambda r: [abs(a - b) for a, b in
                                           zip(r["loss_replaced_twin"], r["loss_replaced"], strict=True)])
        _loglog(axes[1], x, y, label=f"{name}: on z_i", color=col)
        x, y = trajectory(recs, lambda r: r["loss_test_abs"])
        _loglog(axes[1], x, y, ls="--", label=f"{name}: on test", color=col)
        x, y = trajectory(recs, lambda r: r["gen_gap"])
        _loglog(axes[2], x, y, label=name, color=col)
        x, y = trajectory(recs, lambda r: r["gen_gap_matched"])
        _loglog(axes[2], x, y, ls="--", label=f"{name}: label-matched test", color=col)
        cons = [r for rep in repetitions for r in rep["algorithms"][name]["consensus"]]
        if cons:
            for key, ls in (("measured", "-"), ("recursion_bound", "--"), ("steady_state", ":")):
                x, y = trajectory(cons, lambda r, k=key: r[k])
                _loglog(axes[3], x, y, ls=ls, color=col, label=f"{name}: {key.replace('_', ' ')}")
    titles = ["model stability ||x - x'||^2", "loss stability |l - l'|", "generalization gap (loss)",
              "consensus distance"]
    for ax, t in zip(axes, titles, strict=True):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("iteration t", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


# -- theory against measurement -------------------------------------------------------------------

QUANTITY_TITLES = {
    "stability": "model stability eps = sqrt(E||A(S)-A(S^(ij))||^2)",
    "node_stability": "node models sqrt(E (1/m) sum_k ||x_k-x'_k||^2)",
    "loss_stability": "loss stability E|l(A(S);z_i) - l(A(S^(ij));z_i)|",
    "gen_gap": "generalization gap (label-matched)",
}


THEORY_STYLE = (0, (6, 2, 1, 2))  # dash-dot: no measured line uses it
THEORY_KEY = "black dash-dot: the theory's slope"


def _slope_line(ax, x: np.ndarray, y: np.ndarray, slope: float, label: str, **kw) -> bool:
    """A line of the given log-log slope through the geometric centre of the points (x, y);
    False when there is no point to draw it through."""
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 1:
        return False
    lx, ly = np.log(x[ok]), np.log(y[ok])
    xs = np.array([x[ok].min(), x[ok].max()])
    ax.loglog(xs, np.exp(ly.mean() + slope * (np.log(xs) - lx.mean())), "k", ls=THEORY_STYLE,
              lw=1.2, label=label, **kw)
    return True


def theory_title(factor: str, what: str, slopes_drawn: bool, central_drawn: bool, result: dict) -> str:
    """The figure's title says what its line styles mean, and why a theory slope is missing."""
    parts = [f"measured against {factor} ({what})"]
    if slopes_drawn:
        parts.append(THEORY_KEY)
    elif factor != "Q":
        constant = any(r.get("c_beta") is None for r in result.get("runs", []))
        parts.append("no theory slope: the bound needs a step size c/(t+1)" + (
            " and these runs use another schedule" if constant else ""))
    if central_drawn:
        parts.append("grey dashed: centralized")
    return "; ".join(parts)


def plot_factor(result: dict, factor: str, path: str | Path) -> bool:
    """Figure of the measured quantities against ``factor`` with the theory's slopes; False if
    there is nothing to draw for this factor."""
    from matplotlib.ticker import NullFormatter

    from gossiplab.stability.compare import FACTORS, QUANTITIES

    rows = [r for r in result["rows"] if r["factor"] == factor and r["fit"] is not None]
    if not rows:
        return False
    quantities = [q for q in QUANTITIES if any(r["quantity"] == q for r in rows)]
    plt = figure()
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.2 * len(quantities), 3.4), squeeze=False)
    axes = axes[0]
    slopes_drawn = central_drawn = False
    for ax, q in zip(axes, quantities, strict=True):
        ax.set_title(QUANTITY_TITLES[q], fontsize=9)
        ax.set_xlabel({"T": "iteration t", "n": "n (samples per node)", "m": "m (nodes)",
                       "Q": "Q (gossip steps per iteration)"}[factor], fontsize=8)
        ax.tick_params(labelsize=7)
        qrows = [r for r in rows if r["quantity"] == q]
        if factor == "T":
            for i, r in enumerate(qrows):
                f = r["fit"]
                central = r["algorithm"] == BASELINE
                central_drawn |= central
                ax.loglog(f["x"], f["y"], color="0.3" if central else f"C{i % 10}",
                          ls="--" if central else "-", lw=1,
                          label=(f"centralized ({r['group']})" if central else r["group"]))
            ths = [r["theory"] for r in qrows if r["theory"] is not None]
            if ths and qrows:
                f = qrows[0]["fit"]
                slopes_drawn |= _slope_line(ax, np.array(f["x"]), np.array(f["y"]),
                                            float(np.median(ths)), f"theory slope {np.median(ths):.2f}")
        elif factor in ("n", "m"):
            for i, r in enumerate(qrows):
                f = r["fit"]
                col = f"C{i % 10}"
                ax.loglog(f["x"], f["y"], "o-", color=col, ms=4, lw=1,
                          label=f"{r['algorithm']} ({r['group']}): slope {f['slope']:.2f}")
                if r["theory"] is not None:
                    slopes_drawn |= _slope_line(ax, np.array(f["x"]), np.array(f["y"]), r["theory"],
                                                f"theory {r['theory']:.2f}", alpha=0.7)
        else:  # Q: Q >= 1 on a log axis; Q = 0 and centralized as horizontal lines
            for i, r in enumerate(qrows):
                col = f"C{i % 10}"
                f = r["fit"]
                ax.loglog(f["x"], f["y"], "o-", color=col, ms=4, lw=1,
                          label=f"{r['group']}: slope {f['slope']:.2f}")
                by_q = r.get("by_Q", {})
                if "0" in by_q and by_q["0"]["value"] > 0:
                    ax.axhline(by_q["0"]["value"], color=col, ls=":", lw=1, label=f"Q=0 ({r['group']})")
                cen = next((v["centralized"] for v in by_q.values() if v["centralized"]), None)
                if cen and cen > 0:
                    ax.axhline(cen, color=col, ls="--", lw=0.8, alpha=0.6,
                               label=f"centralized ({r['group']})")
        if ax.get_xscale() == "log":
            ax.xaxis.set_minor_formatter(NullFormatter())
        if factor != "T" and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    if factor == "T":  # many curves: one legend beside the panels
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
    fig.suptitle(theory_title(factor, FACTORS.get(factor, "trajectory"), slopes_drawn, central_drawn,
                              result), fontsize=9)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return True
