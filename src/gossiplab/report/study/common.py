"""What every study section shares: stores, run selection, tables, figures, and the verdict panel
(performance and generalization gap, averaged model and node models, DSGD and decentralization's
own share)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gossiplab.report.data import Results, Run, load_results  # noqa: E402
from gossiplab.report.study.stats import UNSURE, Est, agree, direction  # noqa: E402
from gossiplab.sweep.store import ResultsStore  # noqa: E402

GAP = "gen_gap_loss_matched"
GAP_PLAIN = "gen_gap_loss"
GAP_LABEL = "generalization gap (test - train loss, label-matched)"
ACC = "test_acc"
NOT_RECORDED = "not recorded"

KEYS = {"Q": "algorithm.gossip_steps", "topology": "topology.name", "gossip": "algorithm.gossip",
        "m": "topology.nodes", "n": "data.samples_per_node", "alpha": "data.alpha",
        "lr": "optim.lr", "b": "optim.batch_size", "T": "train.iterations",
        "partition": "data.partition", "model": "model.name"}


def key(name: str) -> str:
    return KEYS[name]


def open_results(path: Path) -> Results | None:
    if not path.is_file():
        return None
    return load_results(ResultsStore(path, create=False))


def select(res: Results | list[Run], algorithm: str | None = None, **where: Any) -> list[Run]:
    runs = res.ok if isinstance(res, Results) else res
    return [r for r in runs if (algorithm is None or r.algorithm == algorithm)
            and all(r.value(k) == v for k, v in where.items())]


def sel(res: Results | list[Run], algorithm: str | None = None, **where: Any) -> list[Run]:
    """Runs of ``algorithm`` whose swept values match (short names: Q, topology, m, n, ...)."""
    return select(res, algorithm, **{key(k): v for k, v in where.items()})


def values(runs: list[Run], name: str) -> list[Any]:
    return sorted({r.value(key(name)) for r in runs if r.value(key(name)) is not None})


def wall(runs: list[Run]) -> float:
    return float(sum(r.wall_seconds or 0.0 for r in runs))


# -- the document's pieces -----------------------------------------------------------------------


@dataclass
class Section:
    key: str
    title: str
    claim: str
    sweep: str
    verdict: str = UNSURE
    reason: str = ""
    body: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)
    runs: int = 0
    wall: float = 0.0
    panels: list[tuple[str, Panel]] = field(default_factory=list)  # (what it measures, panel)

    @property
    def panel(self) -> Panel | None:
        """The primary panel (the first): the one the overview table quotes."""
        return self.panels[0][1] if self.panels else None


@dataclass
class Context:
    results: Path
    figures: Path
    rel: str  # figure folder relative to the document

    def sub(self, name: str) -> Context:
        return Context(self.results, self.figures / name, f"{self.rel}/{name}")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def save(ctx: Context, sec: Section, fig, name: str, caption: str) -> None:
    ctx.figures.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(ctx.figures / name, dpi=110)
    plt.close(fig)
    sec.figures.append((name, caption))


def errorbar(ax, xs, ests: list[Est], **kw) -> None:
    m = np.array([e.mean for e in ests])
    lo = np.array([e.mean - e.lo if e.n >= 2 else 0 for e in ests])
    hi = np.array([e.hi - e.mean if e.n >= 2 else 0 for e in ests])
    ax.errorbar(xs, m, yerr=[lo, hi], marker="o", capsize=3, **kw)


def ref_band(ax, est: Est, label: str = "centralized") -> None:
    ax.axhline(est.mean, color="black", ls="--", lw=1, label=label)
    if est.n >= 2:
        ax.axhspan(est.lo, est.hi, color="black", alpha=0.08)


def render(sec: Section, rel: str, heading: str, *, quote: bool = True, verdict: bool = True,
           hours: bool = False) -> list[str]:
    """A section of the document: heading, the claim, the sweep, the verdicts, body and figures."""
    time = f"{sec.wall / 3600:.1f} h" if hours else f"{sec.wall / 60:.0f} min"
    lines = [heading, ""]
    if quote:
        lines += [f"> {sec.claim}", ""]
    lines += [f"Sweep `{sec.sweep}` ({sec.runs} runs, {time} of run time).", ""]
    for what, panel in sec.panels:
        if what:
            lines += [f"*{what}.*", ""]
        lines += panel.render()
    if verdict:
        lines += [f"**Detailed reading: {sec.verdict}.** {sec.reason[:1].upper()}{sec.reason[1:]}",
                  ""]
    lines += sec.body
    for name, caption in sec.figures:
        lines += [f"![{sec.key}]({rel}/{name})", "", f"*{caption}*", ""]
    return lines


# -- the verdict panel -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    """Which metrics measure one kind of model: the averaged model, the mean over the node models,
    or the worst node (lowest accuracy, highest loss and gap)."""

    name: str
    acc: str
    loss: str
    gap: str


def models(matched: bool) -> list[Models]:
    """The three model views; ``matched``: gaps with the test set reweighted to S's labels (for
    partitions whose S does not keep the test set's label mix)."""
    g = "_matched" if matched else ""
    return [Models("averaged model", "test_acc", "test_loss", GAP if matched else GAP_PLAIN),
            Models("node models (mean)", "node_test_acc_mean", "node_test_loss_mean",
                   f"node_gap{g}_mean"),
            Models("worst node", "node_test_acc_min", "node_test_loss_max", f"node_gap{g}_max")]


Effect = Callable[[str, bool], Est]
"""effect(metric, share): the claim's effect on a metric, measured on DSGD's runs (share False) or
on DSGD minus centralized paired by seed (share True)."""


def _verdict(est: Est, claimed: int) -> str:
    return NOT_RECORDED if est.n == 0 else direction(est, claimed)


@dataclass
class Panel:
    """Two verdicts per claim, side by side: performance (test accuracy and loss: the excess-risk
    side) and the generalization gap, for each model view and for DSGD as measured and
    decentralization's own share."""

    effect_label: str  # what one number in the table is, e.g. "slope per doubling of Q"
    perf_sign: int  # the sign the claim predicts for test accuracy (loss: the opposite)
    gap_sign: int  # the sign the claim predicts for the gap
    rows: list[list[str]] = field(default_factory=list)
    verdicts: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (view, models, side)
    note: str = ""
    share_note: str = ""
    digits: int = 4
    share_signs: tuple[int, int] | None = None
    tag: str = ""  # names the panel in the overview when a claim has several that differ

    @classmethod
    def build(cls, effect: Effect, effect_label: str, perf_sign: int, gap_sign: int,
              matched: bool, share: bool = True, note: str = "", share_note: str = "",
              digits: int = 4, share_signs: tuple[int, int] | None = None) -> Panel:
        """``share_signs``: (accuracy, gap) signs the claim predicts for the share view when they
        differ from DSGD's own (claim 5: DSGD's gap falls more slowly with m than centralized's)."""
        p = cls(effect_label, perf_sign, gap_sign, note=note, share_note=share_note,
                digits=digits, share_signs=share_signs if share else None)
        views = [("DSGD", False)] + ([("decentralization's share", True)] if share else [])
        for view, sh in views:
            ps, gs = share_signs if sh and share_signs else (perf_sign, gap_sign)
            for mv in models(matched):
                acc, loss, gap = effect(mv.acc, sh), effect(mv.loss, sh), effect(mv.gap, sh)
                plain = ""
                if gap.n == 0 and "_matched" in mv.gap:  # stores from before node gaps were
                    gap = effect(mv.gap.replace("_matched", ""), sh)  # label-matched
                    plain = " (plain gap)" if gap.n else ""
                va, vl = _verdict(acc, ps), _verdict(loss, -ps)
                perf = (NOT_RECORDED if acc.n == 0 and loss.n == 0
                        else agree([v for v in (va, vl) if v != NOT_RECORDED]))
                vg = _verdict(gap, gs)
                p.verdicts[(view, mv.name, "performance")] = perf
                p.verdicts[(view, mv.name, "gap")] = vg
                p.rows.append([view, mv.name, acc.fmt(digits), loss.fmt(digits), f"**{perf}**",
                               gap.fmt(digits) + plain, f"**{vg}**"])
        return p

    def verdict(self, side: str, models_: str = "averaged model", view: str = "DSGD") -> str:
        return self.verdicts.get((view, models_, side), NOT_RECORDED)

    def render(self) -> list[str]:
        arrow = {1: "rise", -1: "fall"}
        lines = [f"Effects ({self.effect_label}; mean and 95% interval over seeds). The claim "
                 f"predicts that test accuracy should {arrow[self.perf_sign]}, test loss "
                 f"{arrow[-self.perf_sign]} and the gap {arrow[self.gap_sign]}"
                 + (f" (share rows: accuracy should {arrow[self.share_signs[0]]}, loss "
                    f"{arrow[-self.share_signs[0]]}, gap {arrow[self.share_signs[1]]})"
                    if self.share_signs else "")
                 + ". Performance holds "
                 "when accuracy or loss establishes the predicted direction and neither "
                 "contradicts it.", ""]
        if self.note:
            lines += [self.note, ""]
        lines += table(["view", "models", "test accuracy", "test loss", "performance verdict",
                        "generalization gap", "gap verdict"], self.rows)
        if self.share_note:
            lines += [self.share_note, ""]
        return lines


def summary_cell(p: Panel | None, side: str) -> str:
    """'averaged / node mean' verdicts of one side, for the overview table."""
    if p is None:
        return "-"
    a, n = p.verdict(side), p.verdict(side, "node models (mean)")
    return a if a == n else f"{a} / {n}"


def summary(sec: Section, side: str) -> str:
    """The overview cell of a claim: one verdict pair when all its panels agree, else each
    panel's by its tag."""
    cells = [(p.tag, summary_cell(p, side)) for _, p in sec.panels]
    if not cells:
        return sec.verdict
    if len({c for _, c in cells}) == 1:
        return cells[0][1]
    return "; ".join(f"{t or i + 1}: {c}" for i, (t, c) in enumerate(cells))
