"""`gossiplab topology`: spectral summary of a graph's mixing matrix, what each gossip scheme's Q
rounds achieve on it, and a picture of it."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from gossiplab.config import MAX_GOSSIP_STEPS
from gossiplab.errors import UserError
from gossiplab.topology import ALL_TOPOLOGIES, MIXING_RULES, build_topology, draw


def _steps(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if q < 0:
        raise argparse.ArgumentTypeError(f"gossip steps must be >= 0, got {q}")
    return q


MAX_NODES = 1024  # dense eigendecompositions and scheme polynomials: O(m^3) time, O(m^2) memory


def register(sub) -> None:
    p = sub.add_parser("topology", help="lambda, spectral gap and what each gossip scheme achieves")
    p.add_argument("name", help=f"one of: {', '.join(ALL_TOPOLOGIES)}")
    p.add_argument("--nodes", "-m", type=int, default=16, help="number of nodes (default 16)")
    p.add_argument("--mixing", default="metropolis", help=f"one of: {', '.join(MIXING_RULES)}")
    p.add_argument("--laziness", type=float, default=0.0)
    p.add_argument("--er-p", type=float, default=0.3, help="edge probability (erdos_renyi)")
    p.add_argument("--seed", type=int, default=0, help="graph seed (erdos_renyi)")
    p.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"), help="torus/grid shape")
    p.add_argument("--edge-file", help="edge list for 'file'")
    p.add_argument("--matrix-file", help="mixing matrix (.npy or text) for 'file'")
    p.add_argument("-Q", "--steps", type=_steps, nargs="+", default=[1, 2, 4, 8, 16],
                   help="gossip rounds Q for which to report each scheme's contraction")
    p.add_argument("--tol", type=float, nargs="+", default=[1e-3, 1e-6],
                   help="tolerances for which to report the rounds each scheme needs (default 1e-3 1e-6)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="save a picture of the graph")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.nodes > MAX_NODES:
        raise UserError(f"--nodes {args.nodes:,}: the spectral summary handles at most {MAX_NODES:,} "
                        "nodes (dense eigendecompositions, minutes already at that size)")
    if max(args.steps) > MAX_GOSSIP_STEPS:
        raise UserError(f"-Q {max(args.steps):,}: gossip rounds must be at most {MAX_GOSSIP_STEPS:,}")
    topo = build_topology(
        args.name, args.nodes, mixing=args.mixing, laziness=args.laziness, seed=args.seed,
        er_p=args.er_p, shape=tuple(args.shape) if args.shape else None,
        edge_file=args.edge_file, matrix_file=args.matrix_file,
    )
    if min(args.steps) < 0:
        raise UserError(f"-Q: gossip rounds must be >= 0, got {min(args.steps)}")
    if not all(0.0 < t < 1.0 for t in args.tol):
        raise UserError(f"--tol: tolerances must lie in (0, 1), got {' '.join(map(str, args.tol))}")
    info = topo.summary(tuple(args.steps))
    from gossiplab.gossip import compare_schemes  # (torch: not when the parser is built)

    info["gossip"] = compare_schemes(topo, args.steps, args.tol)
    if args.plot:
        try:
            draw(topo, args.plot)
        except (OSError, ValueError) as e:  # unwritable folder, unknown image format
            raise UserError(f"--plot {args.plot}: cannot save the picture ({e})") from None
        info["plot"] = args.plot
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    t = Table(title=f"topology {topo.name}", title_justify="left", show_header=False)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("nodes", str(info["nodes"]))
    t.add_row("edges" + (" per round" if topo.time_varying else ""), str(info["edges"]))
    d = info["degree"]
    t.add_row("degree min/mean/max", f"{d['min']} / {d['mean']:.2f} / {d['max']}")
    t.add_row("mixing rule", info["mixing"])
    t.add_row("lambda = max(|l2|, |lm|)" + (" per round" if topo.time_varying else ""),
              f"{info['lambda']:.6f}")
    t.add_row("spectral gap 1 - lambda", f"{info['spectral_gap']:.6f}")
    if args.plot:
        t.add_row("picture", args.plot)
    console = Console()
    console.print(t)
    console.print(_scheme_table(info["gossip"], args.steps, args.tol))
    ex = info["gossip"]["exact"]
    if ex["available"]:
        console.print(
            f"exact averaging: {ex['distinct_eigenvalues']} distinct eigenvalues -> "
            f"{ex['exact_rounds']} rounds (factors in {ex['order']} order); residual "
            f"{ex['residual']:.1e}, float32 error about {ex['float32_error']:.1e} x ||x||"
        )
    for name, e in info["gossip"].items():
        if not e["available"]:
            console.print(f"{name}: n/a: {e['reason']}")
    console.print("contraction: worst-case factor ||p(W) - J|| by which Q rounds shrink the distance "
                  "to the average. exact with Q < K-1 runs the better of its Leja prefix (*) and "
                  "Chebyshev (c); 'in N': only N rounds are needed and used.")
    return 0


def _scheme_table(schemes: dict, steps: list[int], tols: list[float]) -> Table:
    """Rows: contraction after each Q, then rounds to each tolerance; one column per scheme."""
    t = Table(title="gossip schemes", title_justify="left")
    t.add_column("")
    for name in schemes:
        t.add_column(name, justify="right")
    marks = {"leja_prefix": "*", "chebyshev": "c", "exact": ""}

    def cell(e: dict, q: int) -> str:
        if not e["available"]:
            return "n/a"
        c = f"{e['contraction'][str(q)]:.3g}"
        mode = e.get("mode", {}).get(str(q))
        if mode is not None:
            c += marks[mode]
            if e["rounds"][str(q)] != q:
                c += f" in {e['rounds'][str(q)]}"
        return c

    for q in steps:
        t.add_row(f"contraction, Q={q}", *[cell(e, q) for e in schemes.values()])
    for tol in tols:
        key = f"{tol:g}"
        t.add_row(f"rounds to {key}", *[
            "n/a" if not e["available"] else
            "never" if e["rounds_to"][key] is None else str(e["rounds_to"][key])
            for e in schemes.values()
        ])
    return t
