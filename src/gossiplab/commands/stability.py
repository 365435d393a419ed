"""`gossiplab stability`: measure on-average model stability, loss stability, the error
decomposition and smoothness of one configuration (twins batched as replicas)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gossiplab.commands.common import add_config_options, config_from_args
from gossiplab.config import BASELINE, from_dict, merge


def register(sub) -> None:
    p = sub.add_parser("stability", help="measure stability, generalization/optimization/excess "
                                         "error and smoothness with twin runs on S^(ij)")
    add_config_options(p)
    p.add_argument("--perturbations", "-K", type=int, metavar="K",
                   help="perturbations (twins) per repetition (= stability.perturbations)")
    p.add_argument("--out", "-o", metavar="DIR",
                   help="output folder for config.json, metrics.jsonl, stability.jsonl, "
                        "summary.json, stability.png (default: runs/stability-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or table")
    p.set_defaults(func=run)


def _interval(e: dict | None, fmt: str = "{:.3g}") -> str:
    if not e or e.get("mean") is None:
        return "-"
    s = fmt.format(e["mean"])
    if e.get("ci"):
        s += f" [{fmt.format(e['ci'][0])}, {fmt.format(e['ci'][1])}]"
    return s


def _num(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def summary_table(summary: dict) -> Table:
    stab, dec = summary["stability"], summary["decomposition"]
    conf = int(round(100 * summary["confidence"]))
    t = Table(title=f"stability (mean [{conf}% interval]; {summary['perturbations']} twins x "
                    f"{summary['repetitions']} repetition(s))", title_justify="left")
    t.add_column("quantity")
    for name in stab:
        t.add_column(name, justify="right")
    rows = [
        ("E||A(S) - A(S^(ij))||^2 (averaged model)", lambda n: _interval(stab[n]["avg_model"])),
        ("(1/m) sum_k ||x_k - x'_k||^2 (nodes)", lambda n: _interval(stab[n]["node_models"])),
        ("|l(A(S);z_i) - l(A(S^(ij));z_i)|", lambda n: _interval(stab[n]["loss_stability"]["replaced_abs"])),
        ("  signed (estimates E gen. gap)",
         lambda n: _interval(stab[n]["loss_stability"]["replaced_signed"])),
        ("mean |l - l'| on test", lambda n: _interval(stab[n]["loss_stability"]["test_abs"])),
        ("generalization gap (test - train loss)", lambda n: _interval(dec[n]["gen_gap"])),
        ("  test reweighted to S's labels", lambda n: _interval(dec[n]["gen_gap_label_matched"])),
        ("optimization error", lambda n: _interval(dec[n]["optimization_error"])),
        ("excess error", lambda n: _interval(dec[n]["excess_error"])),
        ("beta (max top Hessian eigenvalue)", lambda n: _num(summary["smoothness"][n]["beta"])),
    ]
    for label, get in rows:
        t.add_row(label, *[get(n) for n in stab])
    th = summary["theory"]
    if th.get("c_beta") is not None:
        ex = th["exponents"]
        t.add_row("c*beta (c = optim.lr)", *[f"{th['c_beta']:.3g}"] * len(stab))
        t.add_row("theory exponent of T",
                  *[f"{ex['centralized' if n == BASELINE else 'decentralized']['T']:.3f}" for n in stab])
    for n, c in summary["consensus"].items():
        t.add_row(f"consensus: measured / recursion bound / steady state ({n})",
                  *[f"{c['measured']['mean']:.3g} / {c['recursion_bound']['mean']:.3g} / "
                    f"{c['steady_state']['mean']:.3g}" if k == n else "" for k in stab])
    return t


def run(args) -> int:
    from gossiplab.run.progress import ProgressHook, make_progress
    from gossiplab.stability.run import check_stability_dir, run_stability

    cfg = config_from_args(args)
    if args.perturbations is not None:
        cfg = from_dict(merge(cfg.to_dict(), {"stability": {"perturbations": args.perturbations}}))
    out = Path(args.out) if args.out else Path("runs") / time.strftime("stability-%Y%m%d-%H%M%S")
    check_stability_dir(out, args.overwrite)
    console = Console(stderr=True, quiet=args.quiet)
    progress = make_progress(console)
    with progress:
        summary = run_stability(
            cfg, out, overwrite=args.overwrite,
            progress=None if args.quiet else (lambda label: [ProgressHook(progress, label)]),
        )
    if not args.quiet:
        c = Console()
        c.print(summary_table(summary))
        for note in summary["theory"]["notes"]:
            c.print(f"note: {note}")
        c.print(f"total wall time {summary['wall_seconds']:.1f} s; results in {out}/")
    if summary["status"] != "ok":
        Console(stderr=True).print("[yellow]warning:[/] a run diverged; see summary.json")
    return 0
