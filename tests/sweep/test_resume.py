"""Interrupting sweeps for real: kill -9 of the sweep process midway, then a rerun completes it with
no duplicate and no lost run; two sweep processes on one results file at once."""

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from gossiplab.errors import UserError
from gossiplab.sweep.store import ResultsStore

from .helpers import gl, popen, write_sweep

RUNS = 8
EVALS = 3  # iterations 0, 250, 500


def sweep_file(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "s.toml", """
        [grid]
        "algorithm.gossip_steps" = [1, 2, 4, 8]
    """, sweep="seeds = 2", iterations=500, every=250)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> set[int]:
    """Children, grandchildren, ...: the workers are children of a fork server."""
    out: set[int] = set()
    todo = children(pid)
    while todo:
        c = todo.pop()
        if c not in out:
            out.add(c)
            todo += children(c)
    return out


def snapshot(db: Path) -> dict[str, dict]:
    """The runs in the store; empty while the sweep process is still creating it."""
    try:
        with ResultsStore(db, create=False) as st:
            return {r["id"]: r for r in st.runs()}
    except UserError as e:
        if "empty file" in str(e):
            return {}
        raise


def check_complete(db: Path) -> dict[str, dict]:
    with ResultsStore(db, create=False) as st:
        assert st.integrity_ok()
        rows = {r["id"]: r for r in st.runs()}
        assert len(rows) == RUNS and {r["status"] for r in rows.values()} == {"ok"}
        metrics = st.metrics()
        assert len(metrics) == RUNS * EVALS  # no lost and no duplicated evaluation
        assert len({(m["run_id"], m["iteration"]) for m in metrics}) == RUNS * EVALS
        n = st.db.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
        assert n == RUNS
    return rows


def killable(rows: dict[str, dict]) -> bool:
    """Midway: at least 2 runs finished and at least one claimed and still running."""
    statuses = [r["status"] for r in rows.values()]
    return statuses.count("ok") >= 2 and "running" in statuses


def test_sigkill_midway_then_rerun_completes_without_duplicates(tmp_path):
    f, db = sweep_file(tmp_path), tmp_path / "r.sqlite"
    proc = popen("sweep", str(f), "--db", str(db), "--jobs", "1", "--threads", "1")
    deadline = time.monotonic() + 300
    workers: set[int] = set()
    try:
        while True:
            assert proc.poll() is None, proc.communicate()
            workers |= descendants(proc.pid)
            if db.exists() and killable(snapshot(db)):
                # Freeze the sweep (it alone writes the store), then look again: a group can
                # finish between one look and the kill, so kill only a state seen while frozen.
                os.kill(proc.pid, signal.SIGSTOP)
                if killable(snapshot(db)):
                    break
                os.kill(proc.pid, signal.SIGCONT)
            assert time.monotonic() < deadline, "sweep too slow"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert len(workers) >= 2 and proc.pid not in workers  # (the fork server and the worker)
    t = time.monotonic()
    while any(alive(w) for w in workers):  # the workers die with the sweep
        assert time.monotonic() - t < 15, "worker outlived its killed sweep"
        time.sleep(0.1)

    before = snapshot(db)
    finished = {i: r for i, r in before.items() if r["status"] == "ok"}
    stale = [i for i, r in before.items() if r["status"] == "running"]
    assert 2 <= len(finished) < RUNS and stale  # killed midway, with a run in flight
    with ResultsStore(db, create=False) as st:
        assert st.integrity_ok()

    r = gl("sweep", str(f), "--db", str(db), "--jobs", "1", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert f"{len(finished)} finished (" in r.stderr
    assert f"{RUNS - len(finished)} run(s) executed" in r.stderr
    after = check_complete(db)
    for i, row in finished.items():  # finished runs were not run again
        assert after[i]["ended"] == row["ended"] and after[i]["attempts"] == 1
    for i in stale:  # the claim of the killed process was taken over
        assert after[i]["attempts"] == 2


def test_two_sweeps_on_one_results_file_share_the_work(tmp_path):
    f, db = sweep_file(tmp_path), tmp_path / "r.sqlite"
    procs = [popen("sweep", str(f), "--db", str(db), "--jobs", "1", "--threads", "1") for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    executed = [int(re.search(r"(\d+) run\(s\) executed", err).group(1)) for _, err in outs]
    assert sum(executed) == RUNS  # every run executed once, by one of the two
    assert all(n >= 1 for n in executed), executed  # and both did work
    rows = check_complete(db)
    assert {r["attempts"] for r in rows.values()} == {1}


def test_sigterm_gives_the_runs_in_flight_back_and_exits_130(tmp_path):
    f, db = sweep_file(tmp_path), tmp_path / "r.sqlite"
    proc = popen("sweep", str(f), "--db", str(db), "--jobs", "1", "--threads", "1")
    deadline = time.monotonic() + 300
    try:
        while not (db.exists() and any(r["status"] == "running" for r in snapshot(db).values())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "sweep too slow"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    rows = snapshot(db)
    assert not [r for r in rows.values() if r["status"] == "running"]  # claims given back
    assert {r["status"] for r in rows.values()} <= {"ok", "pending"}
    with ResultsStore(db, create=False) as st:
        assert st.integrity_ok()
