"""`gossiplab launch`: start the ranks of a distributed run on this machine, on loopback only.

The single-machine alternative to ``torchrun --standalone``: N processes of ``gossiplab
COMMAND...`` with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and MASTER_PORT set; rank 0
hosts the rendezvous store on 127.0.0.1 only and gloo binds to the loopback interface, so the run
opens no port on the network (torchrun's store listens on all interfaces).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from gossiplab.errors import UserError, shown

HANG_GUARD = 120.0  # after a rank failed, the others get this long to stop by themselves


def register(sub) -> None:
    p = sub.add_parser("launch", help="start N ranks of a distributed run on this machine (loopback only)")
    p.add_argument("--nproc-per-node", "-n", type=int, required=True, metavar="N",
                   help="number of processes (ranks)")
    p.add_argument("--port", type=int, default=0, help="rendezvous port on 127.0.0.1 (default: a free one)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="the gossiplab command every rank runs, e.g. run --engine distributed --out DIR")
    p.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with(parent: int):
    """For the child between fork and exec: ask Linux to SIGKILL it when this launcher dies
    (kill -9 included), as sweep workers do; the death signal survives the exec."""

    def arm() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return  # not Linux: the ranks stop when they lose each other (engine.timeout)
        if os.getppid() != parent:  # the launcher died before the request took effect
            os._exit(1)

    return arm


MAX_RANKS = 256


def _not_distributed(cmd: list[str]) -> str | None:
    """Why ``cmd`` is not one rank of a distributed run, or None. N copies of anything else
    would race on one output (N simulator runs writing one --out), or nest launchers. The
    engine is resolved as `gossiplab run` resolves it (--engine, else --config and --set)."""
    from gossiplab.commands.common import add_config_options, config_from_args

    if cmd[0] != "run":
        return f"the ranks run `gossiplab run` with the distributed engine, not `{shown(cmd[0], 40)}`"
    p = argparse.ArgumentParser(prog="gossiplab run", add_help=False, exit_on_error=False)
    add_config_options(p)
    p.add_argument("--engine")
    try:
        known, _ = p.parse_known_args(cmd[1:])
    except argparse.ArgumentError as e:
        raise UserError(f"launch: the ranks' command: {shown(e, 200)}") from None
    engine = known.engine or config_from_args(known).engine.name
    if engine != "distributed":
        return "the ranks' run must use the distributed engine (--engine distributed)"
    return None


def run(args) -> int:
    n = args.nproc_per_node
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not 1 <= n <= MAX_RANKS:
        raise UserError(f"--nproc-per-node must be between 1 and {MAX_RANKS} (one process per rank "
                        f"on this machine), got {n}")
    if not cmd:
        raise UserError("launch: give the command for the ranks, e.g. "
                        "`gossiplab launch -n 4 run --engine distributed`")
    problem = _not_distributed(cmd)
    if problem:
        raise UserError(f"launch: {problem}; e.g. `gossiplab launch -n {n} run --engine distributed "
                        "--out DIR`")
    port = args.port or _free_port()
    procs = []
    for r in range(n):
        env = {**os.environ, "RANK": str(r), "WORLD_SIZE": str(n), "LOCAL_RANK": str(r),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        env.setdefault("OMP_NUM_THREADS", "1")
        for k in ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"):
            env.pop(k, None)
        procs.append(subprocess.Popen([sys.executable, "-m", "gossiplab", *cmd], env=env,
                                      preexec_fn=_die_with(os.getpid())))

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed_at = None
        while any(p.poll() is None for p in procs):
            if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > HANG_GUARD:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    codes = [p.returncode for p in procs]
    bad = [c for c in codes if c != 0]
    if bad:
        print(f"gossiplab launch: exit codes by rank {codes}", file=sys.stderr)
        return bad[0] if bad[0] > 0 else 1
    return 0
