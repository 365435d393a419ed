"""`gossiplab study`: docs/study.md (the paper's claims, tested) from the results stores."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("study", help="assess the source paper's claims from the study results "
                                     "(writes docs/study.md and its figures)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="folder of the study stores: study-<claim>.sqlite (trained to overfit), "
                        "informative/study-<claim>.sqlite, study-map*.sqlite (default results)")
    p.add_argument("--out", default="docs/study.md", metavar="FILE.md",
                   help="the document to write (default docs/study.md)")
    p.add_argument("--figures", metavar="DIR",
                   help="folder for its figures (default: figures/study beside the document)")
    p.add_argument("--configs", default=None, metavar="DIR",
                   help="the study's sweep configs, whose base settings the document quotes "
                        "(default configs/study)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from gossiplab.errors import UserError
    from gossiplab.report.study import build_study

    if args.configs is not None and not Path(args.configs).is_dir():
        # given by hand: a typo would silently drop the quoted settings (the default may be absent)
        raise UserError(f"--configs: sweep config folder not found: {args.configs}")
    out = build_study(args.results, args.out, args.figures, args.configs or "configs/study")
    print(f"wrote {out}")
    return 0
