"""`gossiplab topology`: spectral summary of a graph's mixing matrix, and a picture of it."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

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


def register(sub) -> None:
    p = sub.add_parser("topology", help="lambda, spectral gap and contraction of a topology")
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
                   help="gossip steps Q for which to report lambda^Q")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="save a picture of the graph")
    p.set_defaults(func=run)


def run(args) -> int:
    topo = build_topology(
        args.name, args.nodes, mixing=args.mixing, laziness=args.laziness, seed=args.seed,
        er_p=args.er_p, shape=tuple(args.shape) if args.shape else None,
        edge_file=args.edge_file, matrix_file=args.matrix_file,
    )
    info = topo.summary(tuple(args.steps))
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
    for q, c in info["contraction"].items():
        t.add_row(f"contraction lambda^Q, Q={q}", f"{c:.4g}")
    if args.plot:
        t.add_row("picture", args.plot)
    Console().print(t)
    return 0
