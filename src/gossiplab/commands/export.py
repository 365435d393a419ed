"""`gossiplab export`: a results store as flat tables (CSV, or Parquet with pyarrow)."""

from __future__ import annotations

from rich.console import Console


def register(sub) -> None:
    p = sub.add_parser("export", help="export a results store to CSV (or Parquet)")
    p.add_argument("db", metavar="RESULTS.sqlite", help="results store written by `gossiplab sweep`")
    p.add_argument("--out", "-o", default="export", metavar="DIR",
                   help="folder for runs.<fmt> and metrics.<fmt> (default: export)")
    p.add_argument("--format", "-f", default="csv", help="csv (default) | parquet")
    p.add_argument("--sweep", default=None, metavar="NAME", help="only the runs of this sweep")
    p.set_defaults(func=run)


def run(args) -> int:
    from gossiplab.sweep.export import export

    for path in export(args.db, args.out, args.format, args.sweep):
        Console(soft_wrap=True, highlight=False).print(f"wrote {path}")
    return 0
