"""`gossiplab compare`: docs/comparison.md (what buys the decentralization gap back, and at what
communication cost) from the comparison sweeps' results store."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare the algorithms against centralized SGD in accuracy, "
                                       "bytes and modeled time (writes docs/comparison.md)")
    p.add_argument("--db", default="results/comparison.sqlite", metavar="FILE",
                   help="results store of the configs/comparison sweeps (default "
                        "results/comparison.sqlite)")
    p.add_argument("--out", default="docs/comparison.md", metavar="FILE.md",
                   help="the document to write (default docs/comparison.md)")
    p.add_argument("--figures", metavar="DIR",
                   help="folder for its figure (default: figures/comparison beside the document)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gossiplab.report.comparison import build_comparison

    out = build_comparison(args.db, args.out, args.figures)
    print(f"wrote {out}")
    return 0
