"""`gossiplab report`: figures, tables and one HTML page from a results store."""

from __future__ import annotations

from rich.console import Console


def register(sub) -> None:
    p = sub.add_parser("report", help="figures (PNG/SVG) and an HTML page from a results store")
    p.add_argument("db", metavar="RESULTS.sqlite", help="results store written by `gossiplab sweep`")
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="output folder (default: <RESULTS>-report next to the store)")
    p.add_argument("--sweep", default=None, metavar="NAME", help="only the runs of this sweep")
    p.add_argument("--interval", default="ci95",
                   help="band around the mean over seeds: ci95 (95%% t-interval, default) | std")
    p.add_argument("--figures", nargs="+", default=None, metavar="NAME",
                   help="draw only these figures (default: every figure the results support)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gossiplab.report.build import build_report

    rep = build_report(args.db, args.out, sweep=args.sweep, interval=args.interval, only=args.figures)
    console = Console(soft_wrap=True, highlight=False)
    for f in rep.figures:
        console.print(f"figure  {f['name']:<22} {rep.out / f['png']}")
    for s in rep.skipped:
        console.print(f"skipped {s['name']:<22} {s['reason']}")
    console.print(f"report: {rep.html}")
    return 0
