"""Where does decentralization cost? The regime map: DSGD at Q = 1 minus centralized SGD, paired by
seed, over the cells of the map sweeps (nodes, topology, Dirichlet alpha, learning rate, T, model),
as a heat map and a table; the cells that qualify as informative base regimes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from gossiplab.report.data import Run
from gossiplab.report.study.common import Context, Section, save, sel, table, wall
from gossiplab.report.study.stats import Est, mean_of, paired

COST = 0.02  # a base regime must cost at least this much node-mean test accuracy at Q = 1
CELL_KEYS = ("model", "m", "n", "topology", "alpha", "lr", "T")


@dataclass
class Cell:
    """One cell of the map: its settings, DSGD's and centralized's runs, and the paired costs."""

    where: dict[str, Any]
    dsgd: list[Run]
    cen: list[Run]

    def cost(self, metric: str) -> Est:
        return paired(self.dsgd, self.cen, metric)

    @property
    def qualifies(self) -> bool:
        c = self.cost("node_test_acc_mean")
        return c.n >= 2 and c.mean <= -COST and c.hi < 0

    def label(self) -> str:
        w = self.where
        return (f"{w['model']}, m = {w['m']}, n = {w['n']}, {w['topology']}, alpha {w['alpha']:g}, "
                f"lr {w['lr']:g}, T = {w['T']}")


def cells(runs: list[Run]) -> list[Cell]:
    """Every DSGD setting in ``runs`` with the centralized runs it is paired with."""
    out = []
    dsgd = sel(runs, "dsgd_mgs")
    seen = set()
    for r in dsgd:
        where = {k: r.value(_k(k)) for k in CELL_KEYS}
        tag = tuple(where.values())
        if tag in seen:
            continue
        seen.add(tag)
        d = sel(dsgd, **where)
        c = sel(sel(runs, "centralized"), **{k: v for k, v in where.items() if k != "topology"})
        out.append(Cell(where, d, c))
    return sorted(out, key=lambda c: tuple(str(v) for v in c.where.values()))


def _k(name: str) -> str:
    from gossiplab.report.study.common import key
    return key(name)


def matching(cs: list[Cell], settings: dict[str, Any]) -> Cell | None:
    """The cell whose settings equal ``settings`` (short names; missing keys match anything)."""
    for c in cs:
        if all(c.where.get(k) == v for k, v in settings.items() if k in c.where):
            return c
    return None


def heat_map(cs: list[Cell], ctx: Context, sec: Section) -> None:
    rows = sorted({(c.where["model"], c.where["m"], c.where["topology"]) for c in cs},
                  key=lambda t: (t[0] != "mlp", t[1], t[2]))
    cols = sorted({(c.where["alpha"], c.where["lr"], c.where["T"]) for c in cs})
    fig, axes = plt.subplots(2, 1, figsize=(3 + 1.2 * len(cols), 2 * (1.4 + 0.6 * len(rows))),
                             squeeze=False)
    for ax, metric, title in ((axes[0][0], "test_acc", "averaged model"),
                              (axes[1][0], "node_test_acc_mean", "node models (mean)")):
        grid = np.full((len(rows), len(cols)), np.nan)
        marks = [["" for _ in cols] for _ in rows]
        for c in cs:
            i = rows.index((c.where["model"], c.where["m"], c.where["topology"]))
            j = cols.index((c.where["alpha"], c.where["lr"], c.where["T"]))
            e = c.cost(metric)
            grid[i, j] = 100 * e.mean
            marks[i][j] = f"{100 * e.mean:+.1f}" + ("" if e.sign() else "\n(n.s.)")
        lim = max(2.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 2.0
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                dark = np.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * lim
                ax.text(j, i, marks[i][j], ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(cols)), [f"a={a:g}\nlr={lr:g}\nT={t}" for a, lr, t in cols],
                      fontsize=7)
        ax.set_yticks(range(len(rows)), [f"{mo} m={m} {t}" for mo, m, t in rows], fontsize=7)
        ax.set_title(f"Q = 1 minus centralized: test accuracy, {title} (points)", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.03)
    save(ctx, sec, fig, "regime-map.png", "The accuracy cost of decentralization at Q = 1: DSGD "
         "minus centralized SGD, paired by seed (mean over seeds, in points of test accuracy; "
         "'n.s.': the 95% interval contains 0), for the averaged model and the mean over node "
         "models, over nodes m x topology (rows) and Dirichlet alpha x learning rate x T "
         "(columns).")


def regime_section(runs: list[Run], ctx: Context, chosen: dict[str, Any] | None,
                   sweeps: str, confirm: list[Run] | None = None) -> Section:
    """The map's section; ``chosen``: the base regime's settings, looked up among the cells;
    ``confirm``: runs of the claim sweeps at exactly that setting (more seeds), whose Q = 1 cost
    is quoted beside the map's."""
    sec = Section("map", "Where decentralization costs: the regime map",
                  "The accuracy cost of decentralization at Q = 1 (DSGD minus centralized SGD, "
                  "paired by seed) over nodes, topology, heterogeneity, learning rate, training "
                  "length and model.", sweeps)
    sec.runs, sec.wall = len(runs), wall(runs)
    cs = cells(runs)
    if not cs:
        sec.body = ["(No regime-map results.)", ""]
        return sec
    heat_map(cs, ctx, sec)
    rows = []
    for c in cs:
        w = c.where
        rows.append([w["model"], w["m"], w["n"], w["topology"], f"{w['alpha']:g}", f"{w['lr']:g}",
                     w["T"], len(c.dsgd), mean_of(c.cen, "node_test_acc_mean").fmt_plain(3),
                     c.cost("test_acc").fmt(3), c.cost("node_test_acc_mean").fmt(3),
                     c.cost("node_test_acc_min").fmt(3),
                     c.cost("gen_gap_loss_matched").fmt(3), "yes" if c.qualifies else ""])
    good = [c for c in cs if c.qualifies]
    seeds = sorted({len(c.dsgd) for c in cs})
    sec.body += [
        f"Each cell pairs DSGD (Q = 1) with centralized mini-batch SGD on the same partition, "
        f"initialisation and batches ({'/'.join(map(str, seeds))} seeds per cell); costs are DSGD "
        "minus centralized, mean and 95% interval over seeds. A cell *qualifies* as an informative "
        f"base regime when the node-mean cost is at least {100 * COST:.0f} points with an "
        "interval excluding 0.",
        "",
        *table(["model", "m", "n", "topology", "alpha", "lr", "T", "seeds",
                "centralized node-mean acc", "cost: averaged model", "cost: node mean",
                "cost: worst node", "gap difference (label-matched)", "qualifies"], rows),
        f"{len(good)} of {len(cs)} cells qualify.",
    ]
    worst = min(cs, key=lambda c: c.cost("node_test_acc_mean").mean)
    best = max(cs, key=lambda c: c.cost("node_test_acc_mean").mean)
    sec.body += [f"The largest node-mean cost: {worst.label()}, "
                 f"{worst.cost('node_test_acc_mean').fmt(3)}; the smallest: {best.label()}, "
                 f"{best.cost('node_test_acc_mean').fmt(3)}.", ""]
    if chosen is not None:
        c = matching(cs, chosen)
        if c is None:
            sec.body += ["The informative base regime (configs/study/informative/_base.toml) is "
                         "not a cell of the map.", ""]
        else:
            sec.body += [
                f"**Chosen base regime** (`configs/study/informative/_base.toml`): {c.label()}. "
                f"Its Q = 1 cost: node mean {c.cost('node_test_acc_mean').fmt(3)}, averaged model "
                f"{c.cost('test_acc').fmt(3)}, worst node {c.cost('node_test_acc_min').fmt(3)} "
                f"({'qualifies' if c.qualifies else 'does not qualify on the map alone'})."]
            more = [x for x in cells(confirm or []) if all(x.where.get(k) == v
                                                          for k, v in c.where.items())]
            if more:
                x = more[0]
                sec.body += [
                    f" With the {len(x.dsgd)} seeds of the claim sweeps at exactly this setting "
                    f"(`configs/study/informative/study-q.toml`, Q = 1 and centralized), the cost "
                    f"is: node mean {x.cost('node_test_acc_mean').fmt(3)}, averaged model "
                    f"{x.cost('test_acc').fmt(3)}, worst node {x.cost('node_test_acc_min').fmt(3)} "
                    f"({'qualifies' if x.qualifies else 'does not qualify'})."]
            sec.body += [""]
    return sec


def fmt_points(e: Est) -> str:
    if math.isnan(e.mean):
        return "-"
    return f"{100 * e.mean:+.1f} [{100 * e.lo:+.1f}, {100 * e.hi:+.1f}]"
