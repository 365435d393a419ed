"""`gossiplab theory`: measured stability and generalization gap against T, n, m and Q beside
the theory's exponents, from the folders written by `gossiplab stability`."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

THEORY_FILES = ("theory.json", "theory.md")


def register(sub) -> None:
    p = sub.add_parser("theory", help="fit measured stability / generalization gap against T, n, m, "
                                      "Q and compare with the theory's exponents")
    p.add_argument("paths", nargs="+", metavar="DIR",
                   help="`gossiplab stability` output folders, or folders that contain them")
    p.add_argument("--out", "-o", metavar="DIR",
                   help="folder for theory.json, theory.md and the figures vs_T.png, vs_n.png, "
                        "vs_m.png, vs_Q.png (default: runs/theory-<timestamp>)")
    p.add_argument("--t-min-fraction", type=float, default=0.1, metavar="F",
                   help="fit against t over iterations >= F*T (default 0.1: the last decade)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--quiet", "-q", action="store_true", help="no table on stdout")
    p.set_defaults(func=run)


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def _ci(ci) -> str:
    return "-" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def markdown_table(result: dict) -> str:
    lines = ["| factor | quantity | algorithm | runs | measured exponent | interval | R^2 | theory | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['factor']} | {r['quantity']} | {r['algorithm']} | {r['group']} | "
                     f"{_fmt(r['measured'])} | {_ci(r['ci'])} | {_fmt(r['r2'])} | "
                     f"{_fmt(r['theory']) if r['factor'] != 'Q' else 'decreasing'} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def consensus_markdown(result: dict) -> str:
    lines = ["| run | lambda^Q | measured consensus | recursion bound | steady state | "
             "measured / bound | measured / steady state |", "|---|---|---|---|---|---|---|"]
    for c in result["consensus"]:
        lines.append(f"| {c['run']} | {c['contraction_Q']:.3g} | {_fmt(c['measured'], '.3g')} | "
                     f"{_fmt(c['recursion_bound'], '.3g')} | {_fmt(c['steady_state'], '.3g')} | "
                     f"{_fmt(c['measured_over_bound'], '.3f')} | "
                     f"{_fmt(c['measured_over_steady_state'], '.3f')} |")
    return "\n".join(lines) + "\n"


def q_values_markdown(result: dict) -> str:
    """Measured values at each Q (and centralized) for every Q sweep."""
    rows = [r for r in result["rows"] if r["factor"] == "Q" and r.get("by_Q")]
    if not rows:
        return ""
    qs = sorted({int(q) for r in rows for q in r["by_Q"]})
    lines = ["| quantity | runs | " + " | ".join(f"Q={q}" for q in qs) + " | centralized |",
             "|---|---|" + "---|" * (len(qs) + 1)]
    for r in rows:
        by = r["by_Q"]
        cen = next((v["centralized"] for v in by.values() if v["centralized"] is not None), None)
        cells = [_fmt(by[str(q)]["value"], ".3g") if str(q) in by else "-" for q in qs]
        lines.append(f"| {r['quantity']} | {r['group']} | " + " | ".join(cells) + f" | {_fmt(cen, '.3g')} |")
    return "\n".join(lines) + "\n"


def rich_table(result: dict) -> Table:
    conf = int(round(100 * result["confidence"]))
    t = Table(title=f"measured log-log exponents ({conf}% bootstrap interval) against the theory's",
              title_justify="left")
    for col in ("factor", "quantity", "algorithm", "runs", "measured", "interval", "R^2", "theory",
                "verdict"):
        t.add_column(col, justify="right" if col in ("measured", "R^2", "theory") else "left")
    for r in result["rows"]:
        t.add_row(r["factor"], r["quantity"], r["algorithm"], r["group"], _fmt(r["measured"]),
                  _ci(r["ci"]), _fmt(r["r2"]),
                  _fmt(r["theory"]) if r["factor"] != "Q" else "decreasing", r["verdict"])
    return t


def run(args) -> int:
    from gossiplab.errors import UserError
    from gossiplab.fileio import atomic_write_json, atomic_write_text
    from gossiplab.stability.compare import compare, find_runs
    from gossiplab.stability.plots import plot_factor

    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    if not 0 <= args.t_min_fraction < 1:
        raise UserError(f"--t-min-fraction must be in [0, 1), got {args.t_min_fraction}")
    out = Path(args.out) if args.out else Path("runs") / time.strftime("theory-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    existing = [f for f in THEORY_FILES if (out / f).exists()]
    if existing and not args.overwrite:
        raise UserError(f"--out {out} already holds results ({', '.join(existing)}); choose another "
                        "directory or pass --overwrite")
    runs = find_runs(args.paths)
    try:
        result = compare(runs, confidence=args.confidence, t_min_fraction=args.t_min_fraction)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as e:
        # the files parsed but their records do not have the shape `gossiplab stability` writes
        where = ", ".join(str(r.path) for r in runs)
        missing = f" (missing {e.args[0]!r})" if isinstance(e, KeyError) and isinstance(
            e.args[0], str) and len(e.args[0]) < 60 else ""
        raise UserError(f"stability results in {where} are damaged or from another version: "
                        f"a record is missing a field or has a value of the wrong type "
                        f"({type(e).__name__}{missing})") from None
    figures = {}
    for factor in ("T", "n", "m", "Q"):
        path = out / f"vs_{factor}.png"
        if plot_factor(result, factor, path):
            figures[factor] = str(path)
    result["figures"] = figures
    atomic_write_json(out / "theory.json", result)
    text = markdown_table(result)
    if q_values_markdown(result):
        text += "\nValues at T by Q (stability quantities are roots of mean squares):\n\n"
        text += q_values_markdown(result)
    if result["consensus"]:
        text += "\nConsensus distance at T against the recursion of `gossiplab.theory`:\n\n"
        text += consensus_markdown(result)
    atomic_write_text(out / "theory.md", text)
    if not args.quiet:
        c = Console(width=200)
        c.print(rich_table(result))
        c.print(f"{len(runs)} stability run(s); figures: {', '.join(figures.values()) or 'none'}; "
                f"table: {out / 'theory.md'}")
    return 0
