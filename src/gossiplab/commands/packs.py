"""`gossiplab packs`: the sweeps and configs that ship with gossiplab, with run counts and time."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def register(sub) -> None:
    p = sub.add_parser("packs", help="list the sweep packs and study configs shipped with gossiplab")
    p.add_argument("name", nargs="?", help="show one pack's file instead (its text; with --path, "
                   "its location, e.g. to copy it: cp $(gossiplab packs NAME --path) my.toml)")
    p.add_argument("--path", action="store_true", help="print only the pack's file path")
    p.add_argument("--no-estimate", action="store_true",
                   help="skip the time estimate (which builds each model once)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gossiplab.sweep.packs import estimate_seconds, find_pack, human_duration, list_packs, packs_dir
    from gossiplab.sweep.spec import load_sweep

    if args.name is not None:  # ("" is a name too, and no pack has it)
        pack = find_pack(args.name)
        print(pack.path if args.path else pack.path.read_text(), end="\n" if args.path else "")
        return 0
    if args.path:
        print(packs_dir())
        return 0
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)
    packs = list_packs()
    sweeps = Table(title="sweep packs (gossiplab sweep --pack NAME [--set K=V] [--seeds N] "
                         "[--where K=V1,V2] [--dry-run])", title_justify="left")
    for c in ("name", "runs", "iterations", "expected time", "description"):
        sweeps.add_column(c, justify="right" if c in ("runs", "iterations") else "left")
    for p in (p for p in packs if p.kind == "sweep"):
        exp = load_sweep(p.path).expand()
        iters = sum(pt.iterations for pt in exp.points)
        if p.expected:
            expected = p.expected
        elif args.no_estimate:
            expected = "-"
        else:
            est = estimate_seconds(exp.points)
            expected = "unknown" if est is None else f"~{human_duration(est)} on one core (estimate)"
            if est is not None and est > 2 * 86400:
                expected += "; GPU-scale"
        sweeps.add_row(p.name, str(len(exp.points)), f"{iters:,}", expected, p.description)
    console.print(sweeps)
    configs = [p for p in packs if p.kind == "config"]
    if configs:
        t = Table(title="run configs (gossiplab run --config $(gossiplab packs NAME --path))",
                  title_justify="left")
        t.add_column("name")
        t.add_column("description")
        for p in configs:
            t.add_row(p.name, p.description)
        console.print(t)
    console.print(f"packs folder: {packs_dir()}", markup=False)
    return 0
