"""docs/study.md: the regime map, the seven claims in each regime (informative and trained to
overfit), the paper-scale sections and the gossip-schemes study, from the results stores; the
settings are read from the sweep configs, not restated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossiplab.config import read_toml
from gossiplab.errors import UserError
from gossiplab.report.data import Results, group
from gossiplab.report.study.claims import CLAIMS, Analysis
from gossiplab.report.study.common import (
    ACC,
    GAP,
    Context,
    Section,
    open_results,
    render,
    summary,
    summary_cell,
    table,
    wall,
)
from gossiplab.report.study.regime import regime_section
from gossiplab.report.study.schemes import schemes_section, stability_section
from gossiplab.report.study.stats import NOT_RUN


@dataclass
class Regime:
    """One setting the seven claims are tested in: its stores, its sweep configs, its figures."""

    key: str
    title: str
    results: Path
    configs: Path
    figures: str  # sub-folder of the figure folder ('' = the folder itself)
    reading: str


def regimes(results: Path, configs: Path) -> list[Regime]:
    return [
        Regime("informative", "Informative regime", results / "informative",
               configs / "informative", "informative",
               "chosen from the regime map: decentralization costs accuracy here"),
        Regime("overfit", "Trained to overfit", results, configs, "",
               "the original study's regime: trained far past the point where DSGD catches up"),
    ]


def base_settings(path: Path) -> dict[str, Any]:
    """The settings of a base config, by short name (m, n, alpha, ...), read from the file."""
    d = read_toml(path) if path.is_file() else {}

    def get(section: str, name: str, default: Any = None) -> Any:
        return d.get(section, {}).get(name, default)

    return {"dataset": get("data", "dataset"), "partition": get("data", "partition"),
            "alpha": get("data", "alpha"), "n": get("data", "samples_per_node"),
            "topology": get("topology", "name"), "m": get("topology", "nodes"),
            "model": get("model", "name"), "hidden": get("model", "hidden"),
            "lr": get("optim", "lr"), "b": get("optim", "batch_size"),
            "T": get("train", "iterations")}


def describe(path: Path) -> str:
    """One sentence of a base config's setting, from the file itself."""
    s = base_settings(path)
    if s["m"] is None:
        return f"(`{path}` not found)"
    model = (f"an MLP (784-{'-'.join(map(str, s['hidden'] or [64]))}-10)" if s["model"] == "mlp"
             else f"a {s['model']}")
    passes = s["T"] * s["b"] / s["n"] if s["n"] and s["T"] and s["b"] else math.nan
    return (f"{s['dataset']}, {model} on every node, {s['m']} nodes with n = {s['n']} samples "
            f"each under Dirichlet({s['alpha']:g}) label skew ({s['partition']}), {s['topology']}, "
            f"constant learning rate {s['lr']:g}, batch {s['b']} per node, T = {s['T']} "
            f"iterations (about {passes:.0f} passes over the union S) (`{path}`)")


def config_means(res: Results) -> list[tuple[float, float, float]]:
    """(mean train loss, mean gap, mean test accuracy) of every configuration of a sweep (all keys
    but the seeds), centralized runs included."""
    keys = sorted({k for r in res.ok for k in r.params if not k.startswith("seeds.")})
    out = []
    for rs in group(res.ok, keys).values():
        vals = [(r.final.get("train_loss", math.nan), r.final.get(GAP, math.nan),
                 r.final.get(ACC, math.nan)) for r in rs]
        out.append(tuple(float(np.nanmean([v[i] for v in vals])) for i in range(3)))
    return out


def synthesis(stores: list[tuple[str, Results]]) -> list[str]:
    """How the gap moves with the fit of S across every sweep: the measured pattern behind the
    verdicts, computed rather than asserted."""
    from scipy.stats import spearmanr

    rows, rhos = [], []
    for name, res in stores:
        pts = [p for p in config_means(res) if all(math.isfinite(v) for v in p)]
        if len(pts) < 4:
            continue
        rho, pval = spearmanr([p[0] for p in pts], [p[1] for p in pts])
        rhos.append(float(rho))
        accs, gaps = [p[2] for p in pts], [p[1] for p in pts]
        ptxt = "< 1e-6" if pval < 1e-6 else f"= {pval:.1g}"
        rows.append([f"study-{name}", len(pts), f"{rho:+.2f} (p {ptxt})",
                     f"{min(gaps):.3f} .. {max(gaps):.3f}", f"{min(accs):.3f} .. {max(accs):.3f}"])
    if not rows:
        return []
    strong = sum(1 for r in rhos if r <= -0.5)
    lead = (f"In {strong} of {len(rhos)} sweeps the generalization gap is strongly rank-correlated "
            "with how well the averaged model fits S (Spearman rho <= -0.5 between the train loss "
            "and the gap across the sweep's configurations): whatever lets the averaged model fit "
            "the union of the nodes' data better widens the gap. The paper's claims bound the gap "
            "from above through stability; at this scale the measured gap tracks the fit."
            if strong * 2 > len(rhos) else
            f"The gap is strongly rank-correlated with the train loss (rho <= -0.5) in only {strong} "
            f"of {len(rhos)} sweeps: the fit of S alone does not explain the verdicts.")
    return [lead, "",
            *table(["sweep", "configurations", "rho(train loss, gap)", "gap range",
                    "test accuracy range"], rows)]


def assess(sec: Section, res: Results, ctx: Context, fn: Analysis) -> Section:
    """Run one claim's analysis over its store into ``sec``."""
    sec.runs, sec.wall = len(res.ok), wall(res.ok)
    fn(res, ctx, sec)
    return sec


# -- paper scale (GPU) ---------------------------------------------------------------------------------

GPU_DATASETS = ("cifar10", "cifar100")


def gpu_sections(results: Path, ctx: Context) -> list[str]:
    """The same analyses over the paper-scale stores results/gpu/study-<claim>-<dataset>.sqlite
    (made by configs/study/gpu/), each claim's figures in their own folder."""
    lines: list[str] = []
    for dataset in GPU_DATASETS:
        found = []
        gmap = open_results(results / "gpu" / f"study-map-{dataset}.sqlite")
        if gmap is not None and gmap.ok:
            msec = regime_section(gmap.ok, ctx.sub(f"gpu-{dataset}"), None,
                                  f"configs/study/gpu/study-map-{dataset}.toml")
            lines += render(msec, f"{ctx.rel}/gpu-{dataset}", f"### {dataset.upper()}: regime map",
                            verdict=False, hours=True)
        for key_, title, text, fn in CLAIMS:
            res = open_results(results / "gpu" / f"study-{key_}-{dataset}.sqlite")
            if res is None or not res.ok:
                continue
            sub = ctx.sub(f"gpu-{dataset}")
            sec = Section(key_, title, text, f"configs/study/gpu/study-{key_}-{dataset}.toml")
            found.append((assess(sec, res, sub, fn), sub))
        if not found:
            continue
        lines += [f"### {dataset.upper()}", "",
                  *table(["claim", "performance (averaged / node mean)",
                          "gap (averaged / node mean)", "runs"],
                         [[s.title, summary_cell(s.panel, "performance"),
                           summary_cell(s.panel, "gap"), s.runs] for s, _ in found])]
        for sec, sub in found:
            lines += render(sec, sub.rel, f"#### {sec.title}", quote=False, hours=True)
    if not lines:
        return ["No paper-scale results yet: this document was generated on a machine without a "
                "GPU. The CIFAR-10/100 ResNet-18 versions of the sweeps are in `configs/study/gpu/`; "
                "run them into `results/gpu/` (`gossiplab sweep configs/study/gpu/study-q-cifar10.toml "
                "--db results/gpu/study-q-cifar10.sqlite`, and so on) and rerun `gossiplab study`: "
                "their verdicts appear here, beside the CPU ones. The device of every run is recorded "
                "in its store (`runs.setup`).", ""]
    return lines


# -- document ------------------------------------------------------------------------------------------


def build_study(results: str | Path = "results", out: str | Path = "docs/study.md",
                figures: str | Path | None = None, configs: str | Path = "configs/study") -> Path:
    results, out, configs = Path(results), Path(out), Path(configs)
    if not results.is_dir():
        raise UserError(f"results folder not found: {results}")
    figdir = Path(figures) if figures else out.parent / "figures" / "study"
    ctx = Context(results=results, figures=figdir,
                  rel=str(Path(figdir).resolve().relative_to(out.parent.resolve()))
                  if Path(figdir).resolve().is_relative_to(out.parent.resolve()) else str(figdir))
    assessed: dict[tuple[str, str], Section] = {}
    stores: list[tuple[str, Results]] = []
    found = []
    for rg in regimes(results, configs):
        rctx = ctx.sub(rg.figures) if rg.figures else ctx
        any_store = False
        for key_, title, text, fn in CLAIMS:
            sweep = rg.configs / f"study-{key_}.toml"
            sec = Section(key_, title, text, str(sweep))
            res = open_results(rg.results / f"study-{key_}.sqlite")
            if res is None or not res.ok:
                sec.verdict = NOT_RUN
                sec.reason = f"no results: `{rg.results / f'study-{key_}.sqlite'}` is missing or empty"
            else:
                any_store = True
                stores.append((f"{key_} ({rg.key})", res))
                assess(sec, res, rctx, fn)
            assessed[(rg.key, key_)] = sec
        if any_store:
            found.append((rg, rctx))
    lines = [
        "# The source paper's claims, tested",
        "",
        "Generated by `gossiplab study` from the results stores in `results/` (do not edit by "
        "hand; to reproduce the runs: `bash configs/study/run-all.sh`). Source paper: *Unveiling "
        "the Power of Multiple Gossip Steps: A Stability-Based Generalization Analysis in "
        "Decentralized Training* (NeurIPS 2025).",
        "",
        "**Regimes.** Every claim is tested in two settings, each the base of its sweeps (a sweep "
        "changes only what it varies):",
        "",
    ]
    for rg, _ in found:
        lines += [f"- *{rg.title}* ({rg.reading}): {describe(rg.configs / '_base.toml')}.", ""]
    lines += [
        "Seeds: each configuration runs with the number of seeds its sweep file states (5-8 for "
        "the claims, 3 for the regime map and the gossip-schemes sweep); seed s sets the data, "
        "init and sampling seeds, and centralized mini-batch SGD on the same partition and "
        "batches is run for every seed.",
        "",
        "**Measures.** Performance: test accuracy and test loss. Generalization gap: test loss "
        "minus train loss, train loss on S (the union of the nodes' data). Each for the averaged "
        "model, the node models (mean over nodes, scored on fixed 1000-sample subsets of S and of "
        "the test set) and the worst node. With n fixed per node under label skew, S's labels "
        "follow the nodes' mixture, not the test set's; the test loss is then reweighted per "
        "class to S's labels (*label-matched*); the partition `stratified_dirichlet` keeps S's "
        "label mix equal to the test set's, so there the plain gap is valid as it stands. "
        "*Decentralization's share* of an effect is the effect on DSGD minus centralized, paired "
        "by seed. Effects are computed within a seed and summarised over seeds as mean [95% "
        "t-interval]; a verdict is *holds* / *does not hold* when the interval excludes 0 on the "
        "predicted / the other side, else *inconclusive*.",
        "",
        "## Verdicts",
        "",
        "Performance and gap verdicts of each claim (DSGD's own effect; 'a / b' = averaged model / "
        "node mean where they differ; a claim measured in several ways, e.g. per partition or "
        "design, lists each where they differ); the claim sections give the worst node, "
        "decentralization's share and the intervals deciding each.",
        "",
    ]
    spent = []
    for rg, _ in found:
        runs = [sec for (k, _), sec in assessed.items() if k == rg.key]
        spent.append(f"{rg.title.lower()} {sum(x.runs for x in runs)} runs, "
                     f"{sum(x.wall for x in runs) / 3600:.1f} h")
    maps = [r for name in ("study-map", "study-map-cnn")
            if (r := open_results(results / f"{name}.sqlite")) is not None]
    if maps:
        spent.append(f"regime map {sum(len(m.ok) for m in maps)} runs, "
                     f"{sum(wall(m.ok) for m in maps) / 3600:.1f} h")
    lines += [f"**Compute** (sum of the runs' own wall times; the sweeps ran two at a time on a "
              f"shared 2-core machine): {'; '.join(spent)}.", ""]
    head = ["#", "claim"]
    for rg, _ in found:
        head += [f"{rg.title}: performance", f"{rg.title}: gap"]
    rows = []
    for i, (key_, title, _, _) in enumerate(CLAIMS):
        row = [i + 1, title]
        for rg, _ in found:
            s = assessed[(rg.key, key_)]
            row += [summary(s, "performance"), summary(s, "gap")]
        rows.append(row)
    lines += table(head, rows)
    mapres = [r for name in ("study-map", "study-map-cnn")
              if (r := open_results(results / f"{name}.sqlite")) is not None]
    if mapres:
        chosen = base_settings(configs / "informative" / "_base.toml")
        chosen = {k: v for k, v in chosen.items() if k in ("model", "m", "n", "topology", "alpha",
                                                           "lr", "T") and v is not None}
        q1 = open_results(results / "informative" / "study-q.sqlite")
        confirm = [r for r in q1.ok if r.value("algorithm.gossip_steps") in (1, None)] if q1 else []
        msec = regime_section([r for res in mapres for r in res.ok], ctx, chosen or None,
                              "configs/study/study-map.toml, configs/study/study-map-cnn.toml",
                              confirm)
        lines += render(msec, ctx.rel, f"## {msec.title}", verdict=False)
    for i, (key_, title, text, _) in enumerate(CLAIMS):
        lines += [f"## {i + 1}. {title}", "", f"> {text}", ""]
        for rg, rctx in found:
            s = assessed[(rg.key, key_)]
            if s.verdict == NOT_RUN:
                lines += [f"### {rg.title}", "", f"{s.reason}.", ""]
                continue
            lines += render(s, rctx.rel, f"### {rg.title}", quote=False)
    together = synthesis(stores)
    if together:
        lines += ["## What the sweeps show together", "", *together]
    lines += ["## Paper scale (GPU)", "", *gpu_sections(results, ctx)]
    lines += ["## Stability against the theory", "", *stability_section(
        results / "stability-digits" / "theory" / "theory.json")]
    schemes = open_results(results / "study-schemes.sqlite")
    if schemes is not None and schemes.ok:
        sec = schemes_section(schemes, ctx, results / "stability-schemes")
        lines += render(sec, ctx.rel, f"## {sec.title}", verdict=False)
    if (results / "comparison.sqlite").is_file():
        from gossiplab.report.comparison import study_section

        lines += ["## What else buys the gap back, and at what communication cost", "",
                  *study_section(results / "comparison.sqlite", out)]
    from gossiplab.fileio import atomic_write_text

    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    return out
