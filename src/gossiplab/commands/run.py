"""`gossiplab run`: one experiment, DSGD-MGS beside its centralized baseline."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gossiplab.commands.common import add_config_options, config_from_args
from gossiplab.errors import UserError
from gossiplab.fileio import read_json


def _interval(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


# Imported by the CLI before the command runs, with the garbage collector paused (cli.main).
PRELOAD = ("gossiplab.run.runner", "gossiplab.run.progress")


def register(sub) -> None:
    p = sub.add_parser("run", help="train DSGD-MGS (and the centralized baseline) once")
    add_config_options(p)
    p.add_argument("--out", "-o", metavar="DIR",
                   help="output folder for config.json, metrics.jsonl, summary.json "
                        "(default: runs/<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--resume", action="store_true",
                   help="finish the interrupted run in --out from its checkpoints (its own config; "
                        "the result equals that of an uninterrupted run); both engines")
    p.add_argument("--checkpoint-every", type=_interval, metavar="N",
                   help="save a checkpoint every N iterations (default: every eval.every)")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="write no checkpoints (such a run cannot be resumed)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or table")
    p.add_argument("--engine", choices=["simulator", "distributed"],
                   help="shorthand for --set engine.name=...; 'distributed' runs under torchrun, "
                        "one process per node or block of nodes")
    p.set_defaults(func=run)


def _label(cfg, name: str) -> str:
    from gossiplab.algorithms import ALGORITHMS

    if name in ALGORITHMS and not ALGORITHMS[name].uses_gossip:
        return name
    t = cfg.topology
    return f"{name} ({t.name}, m={t.nodes}, Q={cfg.algorithm.gossip_steps})"


def summary_table(cfg, summary: dict) -> Table:
    runs = summary["runs"]
    table = Table(title="final metrics (averaged model)", title_justify="left")
    table.add_column("metric")
    for name in runs:
        table.add_column(_label(cfg, name), justify="right")
    from gossiplab.catalogue import CATALOGUE, SUMMARY_ROWS
    from gossiplab.sweep.spec import get_dotted

    for metric, fmt in SUMMARY_ROWS:
        label = "node test acc (min..max)" if fmt is None else CATALOGUE[metric][1]  # a range
        cells = []
        for r in runs.values():
            f = r["final"]
            if f is None:
                cells.append("-")
                continue
            if fmt is None:
                lo, hi = (get_dotted(f, CATALOGUE[m][0]) for m in metric)
                cells.append(f"{lo:.3f}..{hi:.3f}")
            else:
                cells.append(fmt.format(get_dotted(f, CATALOGUE[metric][0])))
        table.add_row(label, *cells)
    table.add_row("status", *[r["status"] + (f" @{r['diverged_at']}" if r["diverged_at"] is not None
                                             else "") for r in runs.values()])
    table.add_row("wall time (s)", *[f"{r['wall_seconds']:.1f}" for r in runs.values()])
    return table


def _resume_config(args, out: Path):
    from gossiplab.run.checkpointing import config_differences, read_run_config

    if args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    cfg = read_run_config(out)
    if args.config or args.overrides:
        given = config_from_args(args)
        if given.config_hash() != cfg.config_hash():
            raise UserError(
                f"--resume: the given config differs from that of the run in {out} "
                f"({', '.join(config_differences(cfg, given))}); leave out --config/--set to resume "
                "with the run's own config"
            )
    return cfg


def run(args) -> int:
    from gossiplab.run.progress import ProgressHook, make_progress
    from gossiplab.run.runner import check_output_dir, run_experiment

    if args.engine:
        args.overrides = [*args.overrides, f"engine.name='{args.engine}'"]
    if not args.resume or args.config or args.overrides:
        cfg = config_from_args(args)
        if cfg.engine.name == "distributed":
            return run_distributed_command(args, cfg)
    resume = args.resume
    if resume and not args.out:
        raise UserError("--resume needs --out DIR, the folder of the interrupted run")
    if resume and not (Path(args.out) / "config.json").exists():
        # killed before it wrote anything: there is nothing to resume, so start it
        Console(stderr=True, soft_wrap=True).print(f"nothing to resume in {args.out}/ yet; starting the run")
        resume = False
    if resume:
        out = Path(args.out)
        cfg = _resume_config(args, out)
        if cfg.engine.name == "distributed":
            return run_distributed_command(args, cfg)
        done = out / "summary.json"
        if done.is_file():
            Console(stderr=True, soft_wrap=True).print(
                f"the run in {out}/ is already complete; nothing to resume")
            if not args.quiet:
                _print_summary(cfg, read_json(done, "summary"), out)
            return 0
    else:
        cfg = config_from_args(args)
        out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        check_output_dir(out, args.overwrite)
    every = None if args.no_checkpoint else (args.checkpoint_every or cfg.eval.every)
    console = Console(stderr=True, quiet=args.quiet)
    progress = make_progress(console)
    try:
        with progress:
            summary = run_experiment(
                cfg, out, overwrite=args.overwrite, resume=resume, checkpoint_every=every,
                hooks=lambda name: [] if args.quiet else [ProgressHook(progress, _label(cfg, name))],
            )
    except KeyboardInterrupt:
        how = (f"; finish it with: gossiplab run --out {out} --resume" if every and
               (out / "config.json").exists() else " (no checkpoints were written: nothing to resume)")
        print(f"gossiplab: interrupted{how}", file=sys.stderr)
        return 130
    if resume and not args.quiet:
        Console(stderr=True, soft_wrap=True).print("resumed: " + ", ".join(
            f"{n} from iteration {it}" for n, it in summary["resumed_from"].items()))
    if not args.quiet:
        _print_summary(cfg, summary, out)
    for name, r in summary["runs"].items():
        if r["status"] != "ok":
            ck = summary.get("checkpoints", {}).get(name)
            kept = (f"; last good state (iteration {ck['iteration']}) kept in {out / ck['path']}"
                    if ck else "")
            Console(stderr=True, soft_wrap=True).print(
                f"[yellow]warning:[/] {name} diverged at iteration {r['diverged_at']}{kept}")
    return 0


def _print_summary(cfg, summary: dict, out: Path) -> None:
    out_console = Console()
    out_console.print(summary_table(cfg, summary))
    out_console.print(f"total wall time {summary['wall_seconds']:.1f} s; results in {out}/")


def run_distributed_command(args, cfg) -> int:
    """One rank of a distributed run (launched by torchrun). Rank 0 shows progress, writes the
    results and prints the table. A failure after joining ends the process at once (after its
    one-line error), so that no rank can hang in communication teardown."""
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's own retry chatter
    from gossiplab.run.distributed import run_distributed
    from gossiplab.run.progress import ProgressHook, make_progress

    rank = os.environ.get("RANK", "0")
    quiet = args.quiet or rank != "0"
    progress = make_progress(Console(stderr=True, quiet=quiet))
    try:
        with progress:
            summary = run_distributed(
                cfg, args.out, overwrite=args.overwrite, resume=args.resume,
                hooks=lambda name: [] if quiet else [ProgressHook(progress, _label(cfg, name))],
            )
    except BaseException as e:  # noqa: BLE001 - every failure ends this rank, with one line
        if args.debug or not isinstance(e, UserError | KeyboardInterrupt):
            traceback.print_exc()
        msg = "interrupted" if isinstance(e, KeyboardInterrupt) else f"error: {e}"
        print(f"gossiplab: {msg}" + ("" if rank == "0" else f" [rank {rank}]"), file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.exit_status if isinstance(e, UserError) else 130 if isinstance(e, KeyboardInterrupt)
                 else 1)
    if summary is not None and not args.quiet:
        _print_summary(cfg, summary, Path(summary["distributed"]["out"]))
    return 0
