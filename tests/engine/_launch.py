"""Start the ranks of a distributed run as plain subprocesses on loopback (what torchrun does,
without its agent, so the engine's own failure handling is what the tests see).

Run as a script, it is one rank of ``gossiplab`` with an optional fault injected into the engine:
``python _launch.py [--fault kill|stop --fault-rank R --fault-at T] -- run --engine distributed ...``
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
SRC = str(HERE.parents[2] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Rank:
    proc: subprocess.Popen
    rank: int
    stdout: str = ""
    stderr: str = ""
    ended: float | None = None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def start(argv: list[str], world: int, *, fault: tuple | None = None,
          extra_env: dict[str, str] | None = None, script: Path | None = None,
          per_rank=None) -> list[Rank]:
    """``world`` ranks of ``gossiplab ARGV`` (or of ``python SCRIPT ARGV``) on a fresh port.
    ``fault``: (kind, rank, iteration[, algorithm[, where]]); ``per_rank(r)``: (host name or
    None, extra arguments) for rank r."""
    port = free_port()
    ranks = []
    for r in range(world):
        env = {**os.environ, "RANK": str(r), "WORLD_SIZE": str(world), "LOCAL_RANK": str(r),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
               **(extra_env or {})}
        for k in ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "GLOO_SOCKET_IFNAME"):
            env.pop(k, None)
        if script is not None:
            cmd = [sys.executable, str(script), *argv]
        else:
            cmd = [sys.executable, str(HERE)]
            if fault is not None:
                cmd += ["--fault", fault[0], "--fault-rank", str(fault[1]), "--fault-at", str(fault[2])]
                cmd += ["--fault-algo", fault[3]] if len(fault) > 3 else []
                cmd += ["--fault-where", fault[4]] if len(fault) > 4 else []
            host, extra = per_rank(r) if per_rank is not None else (None, [])
            cmd += ["--hostname", host] if host else []
            cmd += ["--", *argv, *extra]
        ranks.append(Rank(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True), r))
    return ranks


def wait(ranks: list[Rank], timeout: float, *, skip: set[int] = frozenset()) -> None:
    """Wait for every rank not in ``skip``; a hang guard kills everything and fails."""
    deadline = time.monotonic() + timeout
    for rk in ranks:
        if rk.rank in skip:
            continue
        try:
            rk.stdout, rk.stderr = rk.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            for other in ranks:
                other.proc.kill()
            tails = "\n".join(f"[{o.rank}] {o.proc.communicate()[1][-2000:]}" for o in ranks)
            raise AssertionError(f"rank {rk.rank} still running after {timeout} s (hang); "
                                 f"stderr:\n{tails}") from e
        rk.ended = time.monotonic()


def run(argv: list[str], world: int, timeout: float = 240.0, **kw) -> list[Rank]:
    ranks = start(argv, world, **kw)
    wait(ranks, timeout)
    return ranks


def _inject(kind: str, rank: int, at: int, algo: str = "dsgd_mgs", where: str = "step") -> None:
    """Make ``rank`` SIGKILL or SIGSTOP itself at iteration ``at`` of ``algo``: at the start of
    the step (``where="step"``), or right after writing its checkpoint at that iteration, before
    the barrier that follows (``where="checkpoint"``)."""
    import signal

    sig = signal.SIGKILL if kind == "kill" else signal.SIGSTOP
    if where == "step":
        from gossiplab.engine import distributed

        step = distributed.DistributedEngine.step

        def faulty(self):
            if self.comm.rank == rank and self.iteration == at and self.name == algo:
                os.kill(os.getpid(), sig)
            return step(self)

        distributed.DistributedEngine.step = faulty
    else:
        from gossiplab.run import rank_checkpoints

        on_eval = rank_checkpoints.CheckpointHook.on_eval

        def faulty_eval(self, sim, record):
            if self.rank == rank and sim.iteration == at and sim.name == algo:
                sync, self.sync = self.sync, None
                on_eval(self, sim, record)
                self.sync = sync
                os.kill(os.getpid(), sig)
            return on_eval(self, sim, record)

        rank_checkpoints.CheckpointHook.on_eval = faulty_eval


if __name__ == "__main__":
    args = sys.argv[1:]
    sep = args.index("--")
    opts, rest = args[:sep], args[sep + 1:]
    o = dict(zip(opts[::2], opts[1::2], strict=True))
    if "--hostname" in o:  # pretend to be another machine (its host name, and no pid checks
        from gossiplab.engine import liveness  # across machines)

        socket.gethostname = lambda name=o["--hostname"]: name
        liveness.machine_id = lambda name=o["--hostname"]: f"pretend-{name}"
    if "--fault" in o:
        _inject(o["--fault"], int(o["--fault-rank"]), int(o["--fault-at"]),
                o.get("--fault-algo", "dsgd_mgs"), o.get("--fault-where", "step"))
    from gossiplab.cli import main

    sys.exit(main(rest))
