"""Running sweeps: outcomes stored per run (ok, diverged, failed), the sweep goes on, reruns skip
what is finished, a dead worker costs only its own run."""

import json
import time

import pytest
from rich.console import Console

from gossiplab.sweep.executors import Done, LocalExecutor, fair_threads
from gossiplab.sweep.scheduler import run_sweep
from gossiplab.sweep.spec import load_sweep
from gossiplab.sweep.store import ResultsStore

from .helpers import gl, write_sweep


def test_diverging_and_failing_runs_are_recorded_and_the_sweep_finishes(tmp_path):
    f = write_sweep(tmp_path / "s.toml", """
        [[zip]]  # lr 1e6 with 64 hidden units diverges (NaN loss) within a few iterations
        "optim.lr" = [0.1, 1e6]
        "model.hidden" = [[16], [64]]
        [[zip]]
        "optim.batch_size" = [8, 100000]
        "eval.every" = [30, 20]
    """, iterations=60)
    spec = load_sweep(f)
    with ResultsStore(tmp_path / "r.sqlite") as store:
        out = run_sweep(spec, store, LocalExecutor(jobs=1, threads=1), console=Console(quiet=True))
        assert out.complete and out.total == 4
        rows = {(r["optim.lr"], r["optim.batch_size"]): r for r in store.runs()}
        ok, div = rows[(0.1, 8)], rows[(1e6, 8)]
        assert ok["status"] == "ok" and ok["final_test_acc"] > 0.3 and ok["error"] is None
        assert [m["iteration"] for m in store.metrics([ok["id"]])] == [0, 30, 60]
        assert div["status"] == "diverged" and 0 <= div["diverged_at"] < 60
        assert "diverged at iteration" in div["error"]
        for lr in (0.1, 1e6):
            bad = rows[(lr, 100000)]
            assert bad["status"] == "failed"
            assert "batch_size = 100000 is larger than the smallest node" in bad["error"]
            assert "Traceback" in bad["traceback"]
        assert ok["torch_version"] and ok["gossiplab_version"] and ok["host"] and ok["threads"] >= 1
        assert ok["started"] <= ok["ended"]
        assert json.loads(ok["setup"])["topology"]["nodes"] == 4
        assert out.executed == {"ok": 1, "diverged": 1, "failed": 2}
        # a rerun does nothing: every run is finished (failed ones are kept unless asked)
        again = run_sweep(spec, store, LocalExecutor(jobs=1, threads=1), console=Console(quiet=True))
        assert sum(again.executed.values()) == 0 and again.finished_before["failed"] == 2
        assert {r["attempts"] for r in store.runs()} == {1}
        retry = run_sweep(spec, store, LocalExecutor(jobs=1, threads=1), console=Console(quiet=True),
                          retry_failed=True)
        assert retry.executed == {"failed": 2}
        assert store.integrity_ok()


def test_cli_sweep_exit_status_counts_and_dry_run(tmp_path):
    f = write_sweep(tmp_path / "s.toml", """
        [grid]
        "optim.batch_size" = [8, 100000]
    """, sweep="seeds = 1\nbaseline = true")
    dry = gl("sweep", str(f), "--db", str(tmp_path / "r.sqlite"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "4 runs (2 centralized, 2 dsgd_mgs, 1 seed(s))" in dry.stdout
    assert not (tmp_path / "r.sqlite").exists()
    r = gl("sweep", str(f), "--db", str(tmp_path / "r.sqlite"), "--jobs", "2", "--threads", "1")
    assert r.returncode == 1, r.stderr  # some runs failed: the sweep is not all green
    assert "4 runs" in r.stderr and "0 finished, 4 to run" in r.stderr
    assert "2 failed, 2 ok" in r.stderr
    again = gl("sweep", str(f), "--db", str(tmp_path / "r.sqlite"))
    assert "4 finished (2 failed, 2 ok), 0 to run" in again.stderr
    bad = gl("sweep", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr


def test_a_worker_that_dies_fails_only_its_run_and_is_replaced(tmp_path):
    from gossiplab.config import from_dict

    cfg = from_dict({"train": {"iterations": 100000}, "topology": {"nodes": 4},
                     "optim": {"batch_size": 8}, "algorithm": {"compare_centralized": False}})
    ex = LocalExecutor(jobs=1, threads=1)
    ex.start()
    try:
        ex.submit("long", cfg.to_dict())
        deadline = time.monotonic() + 60
        while not any(e.run_id == "long" for e in ex.poll(0.2)):  # wait for its first progress
            assert time.monotonic() < deadline
        ex._workers[0].proc.kill()
        events = []
        while not any(isinstance(e, Done) for e in events):
            events += ex.poll(1.0)
            assert time.monotonic() < deadline
        done = next(e for e in events if isinstance(e, Done))
        assert done.run_id == "long" and done.payload["status"] == "failed"
        assert "worker process died" in done.payload["error"]
        short = from_dict({"train": {"iterations": 20}, "topology": {"nodes": 4},
                           "optim": {"batch_size": 8}, "algorithm": {"compare_centralized": False}})
        ex.submit("short", short.to_dict())  # the replacement worker takes the next run
        events = []
        while not any(isinstance(e, Done) for e in events):
            events += ex.poll(1.0)
            assert time.monotonic() < deadline
        assert next(e for e in events if isinstance(e, Done)).payload["status"] == "ok"
    finally:
        ex.close()


def test_fair_share_of_threads():
    assert fair_threads(1) >= 1 and fair_threads(1000) == 1
    assert fair_threads(2) * 2 <= max(2, fair_threads(1))


def test_grouped_sweep_stores_the_results_of_the_runs_made_one_by_one(tmp_path):
    f = write_sweep(tmp_path / "s.toml", """
        [grid]
        "algorithm.gossip_steps" = [0, 1, 4]
        "topology.name" = ["ring", "exponential"]
    """, sweep="seeds = 2\nbaseline = true", iterations=40, every=20)
    spec = load_sweep(f)
    stored = {}
    for group in (True, False):
        with ResultsStore(tmp_path / f"{group}.sqlite") as store:
            out = run_sweep(spec, store, LocalExecutor(jobs=2, threads=1), console=Console(quiet=True),
                            group=group)
            assert out.complete and out.executed == {"ok": 12}
            stored[group] = {(m["run_id"], m["iteration"]): {k: v for k, v in json.loads(m["record"]).items()
                                                             if k != "elapsed"}
                             for m in store.metrics()}
    assert len(stored[True]) == 12 * 3 and stored[True] == stored[False]


def test_workers_see_the_current_folder_and_environment(tmp_path, monkeypatch):
    """Workers are forked from a fork server started by the first sweep of the process; a later
    sweep's workers still run in its folder and environment (the digits split is cached under
    the GOSSIPLAB_CACHE of the time)."""
    first = write_sweep(tmp_path / "a.toml", "", iterations=2, every=2)
    with ResultsStore(tmp_path / "a.sqlite") as store:  # (starts the fork server, if not yet)
        assert run_sweep(load_sweep(first), store, LocalExecutor(jobs=1, threads=1),
                         console=Console(quiet=True)).complete
    later = tmp_path / "later"
    later.mkdir()
    monkeypatch.chdir(later)
    monkeypatch.setenv("GOSSIPLAB_CACHE", str(later / "cache"))
    f = write_sweep(later / "b.toml", "", iterations=2, every=2)
    with ResultsStore(later / "b.sqlite") as store:
        assert run_sweep(load_sweep(f), store, LocalExecutor(jobs=1, threads=1),
                         console=Console(quiet=True)).complete
        (run,) = store.runs()
    assert run["status"] == "ok", run["error"]
    assert any((later / "cache").rglob("*")), "the worker used another cache folder"


def test_fork_server_imports_without_the_collector_then_turns_it_on():
    """The fork server imports the worker modules with the garbage collector off (first module)
    and freezes them, then turns it on (last module): its children start with it on."""
    import gc

    from gossiplab.sweep.executors import WORKER_MODULES, worker_context

    assert WORKER_MODULES[0] == "gossiplab.sweep.preload_begin"
    assert WORKER_MODULES[-1] == "gossiplab.sweep.preload"
    ctx = worker_context()
    if ctx.get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform")
    with ctx.Pool(1) as pool:
        assert pool.apply(gc.isenabled) is True
        assert pool.apply(gc.get_freeze_count) > 10_000  # torch's objects, frozen in the server


def test_an_interrupt_between_a_claim_and_its_bookkeeping_gives_the_claim_back(tmp_path):
    """Ctrl-C or SIGTERM can land after a claim is committed but before the scheduler records
    it as in flight (and so after a result arrives but before it is stored): the interrupted
    sweep still gives back every claim it holds."""
    f = write_sweep(tmp_path / "s.toml", """
        [grid]
        "algorithm.gossip_steps" = [1, 2, 4, 8]
    """, iterations=20)
    spec = load_sweep(f)

    class InterruptedStore(ResultsStore):
        claims = 0

        def claim(self, *args, **kwargs):
            state = super().claim(*args, **kwargs)  # committed
            InterruptedStore.claims += 1
            if InterruptedStore.claims == 2:
                raise KeyboardInterrupt  # before the scheduler has seen the claim
            return state

    class Idle:  # an executor that never gets to run anything
        slots = 1

        def start(self): ...
        def describe(self): return "nothing"
        def free_slots(self): return 1
        def submit(self, run_id, config): raise AssertionError("interrupted before submitting")
        def submit_group(self, items): raise AssertionError("interrupted before submitting")
        def poll(self, timeout): return []
        def close(self): ...

    with InterruptedStore(tmp_path / "r.sqlite") as store:
        out = run_sweep(spec, store, Idle(), console=Console(quiet=True))
        assert out.interrupted and InterruptedStore.claims == 2
        assert {r["status"] for r in store.runs()} == {"pending"}
        assert {r["owner"] for r in store.runs()} == {None}
