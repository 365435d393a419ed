"""Build a report folder from a results store:

    OUT/index.html         one self-contained page (figures embedded, tables, sweep files)
    OUT/figures/NAME.png   every figure as PNG ...
    OUT/figures/NAME.svg   ... and SVG
    OUT/report.json        the same content, machine-readable (aggregates, figures, skipped)
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gossiplab
from gossiplab.errors import UserError
from gossiplab.fileio import atomic_write, atomic_write_json, atomic_write_text
from gossiplab.report import html
from gossiplab.report.data import (
    ALGO_KEY,
    INTERVALS,
    METRICS,
    Results,
    aggregate,
    group,
    load_results,
)
from gossiplab.report.figures import FIGURES, Skip, min_seeds, plt
from gossiplab.report.intervals import FEW_NOTE, FEW_SEEDS
from gossiplab.sweep.store import ResultsStore

SUMMARY_METRICS = ("test_acc", "train_acc", "gen_gap_acc", "gen_gap_loss", "gen_gap_loss_matched",
                   "consensus_distance")


@dataclass
class Report:
    out: Path
    html: Path
    figures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _save(fig, path_png: Path, path_svg: Path) -> None:
    for path, fmt, kw in ((path_png, "png", {"dpi": 110}), (path_svg, "svg", {})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, **kw)
        atomic_write(path, lambda f, b=buf: f.write(b.getvalue()))
    plt.close(fig)


def summary_table(res: Results) -> tuple[list[str], list[list[Any]], list[dict[str, Any]], int]:
    keys = [ALGO_KEY, *res.varied()]
    header = ["algorithm", *keys[1:], "seeds", *[METRICS[m][1] for m in SUMMARY_METRICS], "wall s"]
    rows, records = [], []
    groups = group(res.ok, keys)
    for values in sorted(groups, key=lambda t: [("" if v is None else str(v)) for v in t]):
        runs = groups[values]
        aggs = {m: res.agg(runs, m) for m in SUMMARY_METRICS}
        wall = aggregate((r.wall_seconds or float("nan") for r in runs), "std")
        rows.append([*("-" if v is None else v for v in values), len(runs),
                     *[aggs[m].fmt(4 if m != "consensus_distance" else 6) for m in SUMMARY_METRICS],
                     f"{wall.mean:.1f}"])
        records.append({"config": dict(zip(keys, values, strict=True)), "seeds": len(runs),
                        "runs": [r.id for r in runs],
                        **{m: {"mean": aggs[m].mean, "half_width": aggs[m].half, "n": aggs[m].n,
                               "interval": [aggs[m].lo, aggs[m].hi] if aggs[m].n > 1 else None,
                               "few_seeds": aggs[m].few}
                           for m in SUMMARY_METRICS}})
    return header, rows, records, len(keys)


def build_report(db: str | Path, out: str | Path | None = None, *, sweep: str | None = None,
                 interval: str = "ci95", only: list[str] | None = None) -> Report:
    if interval not in INTERVALS:
        raise UserError(f"--interval: unknown interval '{interval}' (one of: {', '.join(INTERVALS)})")
    if only:
        unknown = [n for n in only if n not in FIGURES]
        if unknown:
            raise UserError(f"--figures: unknown figure(s) {unknown} (known: {', '.join(FIGURES)})")
    db = Path(db)
    out = Path(out) if out is not None else db.with_name(f"{db.stem}-report")
    figdir = out / "figures"
    with ResultsStore(db, create=False) as store:
        res = load_results(store, sweep, interval)
        if not res.runs:
            which = f" for sweep '{sweep}'" if sweep else ""
            raise UserError(f"{db}: no runs in this results store{which}")
        report = Report(out=out, html=out / "index.html")
        for name, (title, fn) in FIGURES.items():
            if only and name not in only:
                continue
            try:
                figs = fn(res) if res.ok else []
                if not res.ok:
                    raise Skip("no run finished with status ok")
            except Skip as s:
                report.skipped.append({"name": name, "title": title, "reason": str(s)})
                continue
            for f in figs:
                n = min_seeds(f.fig)
                if n is not None and n < FEW_SEEDS:
                    f.caption += f" Note: {FEW_NOTE} (n = {n} here)."
                png, svg = figdir / f"{f.name}.png", figdir / f"{f.name}.svg"
                _save(f.fig, png, svg)
                report.figures.append({"name": f.name, "title": f.title, "caption": f.caption,
                                       "png": f"figures/{png.name}", "svg": f"figures/{svg.name}"})
        header, rows, records, left = summary_table(res)
        problems = [[r.id, r.status, f"{r.algorithm} " + ", ".join(
            f"{k}={r.value(k)}" for k in res.varied() if r.value(k) is not None),
            r.error or (f"diverged at iteration {r.diverged_at}" if r.status == "diverged" else "")]
            for r in res.runs if r.status in ("diverged", "failed")]
        counts = res.by_status()
        compute = sum(r.wall_seconds or 0 for r in res.runs)
        title = "gossiplab report: " + ", ".join(s["name"] for s in res.sweeps) if res.sweeps \
            else f"gossiplab report: {db.name}"
        ctx = {
            "title": title,
            "subtitle": f"From {db} ({len(res.runs)} runs), generated "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')} by gossiplab {gossiplab.__version__}.",
            "overview": [
                ["runs by status", ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))],
                ["runs by algorithm", ", ".join(f"{n} {a}" for a, n in sorted(
                    _count(r.algorithm for r in res.runs).items()))],
                ["in figures and tables", f"{counts.get('ok', 0)} ok runs; unfinished, diverged and "
                 "failed runs are left out"],
                ["compute (sum of run wall times)", f"{compute:.0f} s"],
                ["seeds per configuration", ", ".join(sorted({str(r[left]) for r in rows})) or "-"],
                ["figures", f"{len(report.figures)} drawn, {len(report.skipped)} skipped"],
            ],
            "varied": res.varied(),
            "interval": INTERVALS[interval] + " (accuracies clipped to [0, 1]; losses and "
                        "distances on the log scale, so never below 0)"
                        + (f"; (n=k) marks a summary over fewer than {FEW_SEEDS} seeds: its "
                           "interval is unreliable" if any(r[left] < FEW_SEEDS for r in rows) else ""),
            "figures": report.figures,
            "skipped": report.skipped,
            "summary_header": header,
            "summary_rows": rows,
            "summary_left": left,
            "problems": problems,
            "sweeps": [{"name": s["name"], "file": s["file"], "source": s["source"],
                        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(s["created"]))}
                       for s in res.sweeps],
        }
        atomic_write_text(report.html, html.page(out, ctx))
        atomic_write_json(out / "report.json", {
            "results": str(db), "sweeps": [s["name"] for s in res.sweeps], "interval": interval,
            "status_counts": counts, "varied": res.varied(), "figures": report.figures,
            "skipped": report.skipped, "summary": records,
        })
    return report


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out
