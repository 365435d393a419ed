"""Time the README's first command (`gossiplab run`) idle and beside busy processes, and write
the "Default run under load" section of docs/benchmarks.md (the rest of that file is
benchmarks/run.py's; each keeps the other's part).

    python benchmarks/default_run.py                 # default threads, 0 and 2 busy processes
    python benchmarks/default_run.py --threads 0 2   # also the old default (2 OpenMP threads)
    python benchmarks/default_run.py --nice -19      # root: the run and the busy processes ahead
                                                     # of everything else on a shared machine

Every row is one run in a fresh process (start-up included); the load average before it and the
CPU time it used are recorded, since on a shared machine the wall time depends on both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sections import write_section

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- default-run section: written by benchmarks/default_run.py -->"
END = "<!-- end of default-run section -->"


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(threads: int, busy: int, nice: int = 0) -> dict:
    def prio() -> None:
        if sys.platform.startswith("linux"):  # die with this script, even on kill -9
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if nice:
            os.nice(nice)

    spinners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"], preexec_fn=prio)
                for _ in range(busy)]
    try:
        time.sleep(1.0 if busy else 0.0)
        load = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "gossiplab", "run", "--quiet", "--out", f"{tmp}/out"]
            if threads:
                cmd += ["--set", f"engine.threads={threads}"]
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            cpu0, t0 = children_cpu(), time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, preexec_fn=prio)
            wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
            chosen = json.loads(Path(f"{tmp}/out/summary.json").read_text())["threads"]
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    return {"setting": "default (0)" if not threads else f"engine.threads = {threads}",
            "busy": busy, "nice": nice, "load": load, "wall": wall, "cpu": cpu, "threads": chosen["threads"],
            "reason": chosen["reason"]}


def section(rows: list[dict]) -> str:
    lines = [BEGIN, "## Default run under load (`gossiplab run`, issue 16)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
             "`python benchmarks/default_run.py`: the README's first command in a fresh process "
             "(start-up included), beside 0 or 2 busy processes (`python -c 'while 1: pass'`) on "
             f"{len(os.sched_getaffinity(0))} cores. The load average is the 1/5/15-minute one "
             "just before the run (other users' work included); the thread count is what the run "
             "chose and recorded (`summary.json`: `threads`).", "",
             *(["A nice value other than 0 applied to the run and the busy processes alike (with "
                "scheduler autogroups, nice orders processes only within their own session).", ""]
               if any(r.get("nice") for r in rows) else []),
             "| engine.threads | busy processes added | nice | load average before | wall time | "
             "CPU time | threads used | why |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        load = " / ".join(f"{v:.1f}" for v in r["load"])
        lines.append(f"| {r['setting']} | {r['busy']} | {r.get('nice', 0)} | {load} | {r['wall']:.1f} s "
                     f"| {r['cpu']:.1f} s | {r['threads']} | {r['reason']} |")
    lines += ["", "Wall time above the CPU time means the run waited for a core: with a load average "
              "of L on 2 cores a process gets about 2/L of one. The CPU time is what the run costs "
              "whatever the load. A process with 2 threads is given a larger share of a contended "
              "machine than one with 1 (same CPU time, shorter wall time, taken from the other "
              "processes); the default takes one thread for small steps all the same, since the "
              "second one does no useful work there. Before issue 16 the default was torch's 2 "
              "OpenMP threads with their idle threads spinning: on 2026-12-01 01:10 UTC (load "
              "average 6-12) the same run reported 236 s of wall time beside two busy processes, "
              "against 22 s with "
              "`--set engine.threads=1`; idle OpenMP threads now sleep (OMP_WAIT_POLICY=PASSIVE, "
              "set by `import gossiplab`), and a forced 2-thread run no longer collapses.",
              END, ""]
    return "\n".join(lines)




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[0],
                   help="engine.threads settings to time (0 = the default choice)")
    p.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="busy processes to add")
    p.add_argument("--nice", type=int, nargs="+", default=[0],
                   help="niceness of the run and the busy processes (negative needs root)")
    p.add_argument("--also-nice0", action="store_true",
                   help="also time the default at nice 0 (competing with the whole machine's load)")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = p.parse_args(argv)
    rows = []
    plan = [(nice, busy, threads) for nice in args.nice for busy in args.busy for threads in args.threads]
    if args.also_nice0:
        plan += [(0, busy, 0) for busy in args.busy if (0, busy, 0) not in plan]
    for nice, busy, threads in plan:
        r = one_run(threads, busy, nice)
        rows.append(r)
        print(f"{r['setting']}, {busy} busy, nice {nice}: {r['wall']:.1f} s wall, "
              f"{r['cpu']:.1f} s CPU, load {r['load'][0]:.1f}, {r['threads']} thread(s)", flush=True)
    write_section(Path(args.out), section(rows), BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
