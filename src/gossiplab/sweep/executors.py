"""Where the runs of a sweep execute. An executor takes (run id, resolved config) tasks and reports
progress and outcomes; the scheduler owns the results store, so workers never touch it (they may be
on other machines).

* ``local``: long-lived worker processes on this machine, each pinned to a fair share of the cores
  (torch threads); a worker that dies takes only its own run with it (recorded as failed) and is
  replaced; workers die with the sweep process.
* ``ray``: one Ray task per run on a Ray cluster (``--address``) or a local Ray instance.

Adding one is a class with ``slots``, ``submit``, ``poll`` and ``close`` registered in EXECUTORS.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection, wait
from typing import Any

from gossiplab.errors import UserError


@dataclass
class Progress:
    run_id: str
    iterations: int  # iterations done since the last report


@dataclass
class Done:
    run_id: str
    payload: dict[str, Any]


Event = Progress | Done


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fair_threads(jobs: int) -> int:
    """Torch threads per worker so that ``jobs`` workers share this machine's cores."""
    return max(1, cpu_count() // max(1, jobs))


def task_threads(config: dict[str, Any], explicit: int | None, fair: int) -> int:
    """Threads for one run: --threads if given, else the config's engine.threads if set, else 0:
    the run chooses from its work per step and the free cores, at most the fair share (``cap``
    of :func:`execute`)."""
    return explicit or int(config.get("engine", {}).get("threads") or 0)


# -- running one run (in a worker) ----------------------------------------------------------------

_DATASETS: dict[str, Any] = {}


def _dataset_for(cfg) -> Any:
    """Datasets are loaded once per worker and reused by its later runs (the last two kept)."""
    import json

    from gossiplab.setup import load_data

    d = cfg.data
    key = json.dumps([d.dataset, d.root, d.download, d.verify] + (
        [d.synthetic_train, d.synthetic_test, d.synthetic_classes, d.synthetic_shape,
         d.synthetic_noise, cfg.seeds.data] if d.dataset == "synthetic" else []))
    if key not in _DATASETS:
        while len(_DATASETS) >= 2:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = load_data(cfg)
    return _DATASETS[key]


class _Collect:
    """Hook: a run's evaluation records, and its iterations reported every half second."""

    def __init__(self, history: list[dict], report: Callable[[int], None] | None):
        self.history = history
        self.report = report
        self.pending = 0
        self.last = time.monotonic()

    def on_start(self, sim) -> None: ...

    def on_step(self, sim, loss: float) -> None:
        self.pending += 1
        if self.report is not None and time.monotonic() - self.last > 0.5:
            self.report(self.pending)
            self.pending, self.last = 0, time.monotonic()

    def on_eval(self, sim, record: dict) -> None:
        self.history.append(record)

    def on_end(self, sim, result) -> None:
        if self.report is not None and self.pending:
            self.report(self.pending)
        self.pending = 0


def _outcome(payload: dict[str, Any], summary: dict[str, Any], setup) -> None:
    payload.update(status=summary["status"], diverged_at=summary["diverged_at"], summary=summary,
                   setup={**{k: v for k, v in setup.describe().items()
                             if k != "label_histograms"}, "threads": summary.get("threads")})
    if summary["status"] == "diverged":
        payload["error"] = f"diverged at iteration {summary['diverged_at']}"


def _finished(payload: dict[str, Any]) -> dict[str, Any]:
    from gossiplab.run.runner import environment

    payload["environment"] = environment()
    payload["ended"] = time.time()
    payload["wall_seconds"] = payload["ended"] - payload["started"]
    return payload


def _config(config: dict[str, Any], threads: int):
    import torch

    from gossiplab.config import from_dict

    cfg = from_dict(config)
    if threads:  # the executor's choice; the run's identity (its config hash) is unchanged
        torch.set_num_threads(threads)
        cfg.engine.threads = threads
    return cfg


def execute(config: dict[str, Any], threads: int = 0,
            report: Callable[[int], None] | None = None, cap: int | None = None) -> dict[str, Any]:
    """Run one sweep point; never raises for a failing run: returns its outcome as a payload.
    ``threads``: a count to use (0: the run chooses, at most ``cap``)."""
    from gossiplab.run.runner import run_experiment
    from gossiplab.setup import prepare

    history: list[dict] = []
    payload: dict[str, Any] = {"started": time.time(), "history": history}
    try:
        cfg = _config(config, threads)
        setup = prepare(cfg, dataset=_dataset_for(cfg))
        summary = run_experiment(cfg, None, setup=setup,
                                 hooks=lambda name: [_Collect(history, report)], thread_cap=cap)
        _outcome(payload, summary, setup)
    except Exception as e:  # a failing run is recorded, and the sweep goes on
        payload.update(status="failed", error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc())
    return _finished(payload)


def execute_group(tasks: list[tuple[str, dict[str, Any]]], threads: int = 0,
                  report: Callable[[str, int], None] | None = None, cap: int | None = None
                  ) -> list[tuple[str, dict[str, Any]]]:
    """Run sweep points of one :func:`~gossiplab.run.replicas.group_key` as replicas of one node
    matrix (run/replicas.py): each gets the payload :func:`execute` would give it (its history
    equals that of the run made alone), plus ``replicas`` = the group's size. Never raises; when
    the group cannot be set up together, its runs are made one by one."""
    from gossiplab.run.replicas import run_replicas
    from gossiplab.setup import prepare

    def one_by_one() -> list[tuple[str, dict[str, Any]]]:
        return [(rid, execute(c, threads, None if report is None else partial(report, rid), cap))
                for rid, c in tasks]

    if len(tasks) == 1:
        return one_by_one()
    started = time.time()
    histories: list[list[dict]] = [[] for _ in tasks]
    try:
        cfgs = [_config(c, threads) for _, c in tasks]
        setups = [prepare(c, dataset=_dataset_for(c)) for c in cfgs]
    except Exception:  # a bad point among them: each run is made (and fails) alone
        return one_by_one()

    def hooks(r: int, name: str) -> list:
        rid = tasks[r][0]
        return [_Collect(histories[r], None if report is None else partial(report, rid))]

    try:
        summaries = run_replicas(cfgs, setups, hooks=hooks, thread_cap=cap)
    except Exception as e:
        payloads = [{"status": "failed", "error": f"{type(e).__name__}: {e}",
                     "traceback": traceback.format_exc()} for _ in tasks]
    else:
        payloads = [{} for _ in tasks]
        for payload, summary, setup in zip(payloads, summaries, setups, strict=True):
            _outcome(payload, summary, setup)
    out = []
    for (rid, _), payload, history in zip(tasks, payloads, histories, strict=True):
        payload.update(started=started, history=history, replicas=len(tasks))
        out.append((rid, _finished(payload)))
    return out


def failed_payload(error: str) -> dict[str, Any]:
    now = time.time()
    return {"status": "failed", "error": error, "started": now, "ended": now, "history": []}


# -- local worker processes -----------------------------------------------------------------------

# What a worker imports before its first run. A fork server imports them once, while the sweep
# process reads and expands the sweep, and forks every worker with them loaded: a spawned worker
# spent about 1.5 s importing them after the sweep was expanded (docs/benchmarks.md).
WORKER_MODULES = ("gossiplab.sweep.preload_begin", "gossiplab", "torch", "scipy.sparse",
                  "gossiplab.sweep.executors", "gossiplab.setup", "gossiplab.run.runner",
                  "gossiplab.run.replicas", "gossiplab.engine.simulator", "gossiplab.metrics",
                  "gossiplab.sweep.preload")


def worker_context():
    """The start method of local workers: a fork server where the platform has one (a clean
    single-purpose process that has imported :data:`WORKER_MODULES` and never run torch, so no
    thread pool or device state is forked), else spawn."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_MODULES))
    return ctx


def warm_up() -> None:
    """Start the fork server now (it returns at once), so that its imports overlap with what this
    process does before the first run (reading, expanding and registering the sweep)."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _die_with_parent(parent: int) -> None:
    """Workers must not outlive the sweep (kill -9 included). A worker's parent process is the
    sweep (spawn) or the fork server, which exits when the sweep does: ask Linux to kill us when
    it dies, and watch both the sweep and the parent as a fallback."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    ppid = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != ppid or not _alive(parent)

    if orphaned() or ppid == 1:  # (the parent died before prctl: we were handed to init)
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if orphaned():
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker_main(conn: Connection, threads: int, parent: int, cwd: str,
                 environ: dict[str, str]) -> None:
    _die_with_parent(parent)
    # A forked worker starts in the fork server's folder and environment, which are those of the
    # first sweep of this process: take the current ones (relative paths, GOSSIPLAB_CACHE, ...).
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    gc.enable()  # (the fork server imports with it off: sweep/preload_begin.py)
    import torch

    cap = threads  # this worker's fair share: the most a run may choose by default
    torch.set_num_threads(threads)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        items, threads = task
        for run_id, payload in execute_group(items, threads, cap=cap,
                                             report=lambda r, n: conn.send(("progress", r, n))):
            conn.send(("done", run_id, payload))


class _Worker:
    """One worker process and its pipe. The process starts in the background: starting it waits
    for the fork server's imports (about 1.5 s at a sweep's start), and meanwhile the scheduler
    claims the worker's first runs (so a second sweep on the same store finds the others)."""

    def __init__(self, ctx, threads: int):
        self.conn, self._child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, daemon=True, name="gossiplab-sweep-worker",
                                args=(self._child, threads, os.getpid(), os.getcwd(),
                                      dict(os.environ)))
        self.task: set[str] | None = None  # the run ids it is running (one group), None when idle
        self._error: BaseException | None = None
        self._starting: threading.Thread | None = threading.Thread(target=self._start, daemon=True)
        self._starting.start()

    def _start(self) -> None:
        try:
            self.proc.start()
        except BaseException as e:  # raised again by ready(), in the scheduler's thread
            self._error = e

    def ready(self) -> _Worker:
        """This worker, once its process has started."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
            self._child.close()
            if self._error is not None:
                raise self._error
        return self


class LocalExecutor:
    """``jobs`` worker processes on this machine, each started clean (:func:`worker_context`)."""

    name = "local"

    def __init__(self, jobs: int = 1, threads: int | None = None, **_: Any):
        if jobs < 1:
            raise UserError("--jobs must be >= 1")
        self.jobs = jobs
        self.explicit_threads = threads
        self.threads = threads or fair_threads(jobs)
        self._ctx = worker_context()
        self._workers: list[_Worker] = []

    @property
    def slots(self) -> int:
        return self.jobs

    def describe(self) -> str:
        if self.explicit_threads:
            return f"{self.jobs} local worker(s), {self.threads} thread(s) each"
        return (f"{self.jobs} local worker(s), up to {self.threads} thread(s) each (the config's "
                "engine.threads where set, else chosen per run from its work per step and the free "
                "cores)")

    def start(self) -> None:
        self._workers = [_Worker(self._ctx, self.threads) for _ in range(self.jobs)]

    def free_slots(self) -> int:
        return sum(w.task is None for w in self._workers)

    def submit(self, run_id: str, config: dict[str, Any]) -> None:
        self.submit_group([(run_id, config)])

    def submit_group(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Runs of one :func:`~gossiplab.run.replicas.group_key`, trained together as replicas in
        one worker (one slot); each reports its own progress and outcome."""
        w = next(w for w in self._workers if w.task is None).ready()
        w.task = {run_id for run_id, _ in items}
        threads = task_threads(items[0][1], self.explicit_threads, self.threads)
        with contextlib.suppress(OSError):  # a dead worker is reported by poll()
            w.conn.send((items, threads))

    def poll(self, timeout: float) -> list[Event]:
        busy = [w.ready() for w in self._workers if w.task is not None]
        if not busy:
            time.sleep(min(timeout, 0.05))
            return []
        ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout)
        events: list[Event] = []
        for w in busy:
            if w.conn in ready or w.proc.sentinel in ready:
                events += self._drain(w)
        return events

    def _drain(self, w: _Worker) -> list[Event]:
        events: list[Event] = []
        try:
            while w.conn.poll():
                kind, run_id, data = w.conn.recv()
                if kind == "progress":
                    events.append(Progress(run_id, data))
                else:
                    events.append(Done(run_id, data))
                    if w.task is not None:
                        w.task.discard(run_id)
                        w.task = w.task or None
        except (EOFError, OSError):
            pass
        if w.task is not None and not w.proc.is_alive():
            w.proc.join()
            events += [Done(run_id, failed_payload(
                f"worker process died (exit code {w.proc.exitcode}) while running this config"))
                for run_id in sorted(w.task)]
            self._workers[self._workers.index(w)] = _Worker(self._ctx, self.threads)
        return events

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(Exception):
                w.ready()
            with contextlib.suppress(OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 5
        for w in self._workers:
            if w.proc.pid is None:  # (its start failed)
                continue
            if w.task is not None:
                w.proc.kill()
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
        self._workers = []


# -- Ray --------------------------------------------------------------------------------------


class RayExecutor:
    """One Ray task per run. ``address`` None starts a local Ray instance; 'auto' or 'host:port'
    joins a running cluster (every node needs gossiplab installed and the data under data.root)."""

    name = "ray"

    def __init__(self, jobs: int | None = None, threads: int | None = None,
                 address: str | None = None, **_: Any):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'gossiplab[ray]'") from None
        self.ray = ray
        self.address = address
        self.explicit_threads = threads
        self.threads = threads or 1
        self.jobs = jobs
        self._refs: dict[Any, str] = {}
        self._remote = None
        self._started_ray = False

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(f"cannot start/join Ray at {self.address or 'local'}: {e}") from None
            self._started_ray = True
        if self.jobs is None:
            total = int(ray.cluster_resources().get("CPU", 1))
            self.jobs = max(1, total // self.threads)
        self._remote = ray.remote(num_cpus=self.threads, max_retries=0)(execute)

    @property
    def slots(self) -> int:
        return int(self.jobs or 1)

    def describe(self) -> str:
        return f"Ray ({self.address or 'local instance'}), {self.slots} concurrent run(s), " \
               f"{self.threads} CPU(s) each"

    def free_slots(self) -> int:
        return self.slots - len(self._refs)

    def submit(self, run_id: str, config: dict[str, Any]) -> None:
        assert self._remote is not None
        self._refs[self._remote.remote(config, task_threads(config, self.explicit_threads, self.threads),
                                       cap=self.threads)] \
            = run_id

    def poll(self, timeout: float) -> list[Event]:
        if not self._refs:
            time.sleep(min(timeout, 0.05))
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        events: list[Event] = []
        for ref in ready:
            run_id = self._refs.pop(ref)
            try:
                payload = self.ray.get(ref)
            except Exception as e:  # the task's worker crashed or the node was lost
                payload = failed_payload(f"Ray task failed: {type(e).__name__}: {e}")
            events.append(Done(run_id, payload))
        return events

    def close(self) -> None:
        for ref in list(self._refs):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()  # disconnects from a cluster; stops a local instance we started


EXECUTORS: dict[str, type] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: str, **kwargs: Any):
    if name not in EXECUTORS:
        raise UserError(f"--executor: unknown executor '{name}' (one of: {', '.join(EXECUTORS)})")
    return EXECUTORS[name](**kwargs)
