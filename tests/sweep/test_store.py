"""The results store: schema, atomic claims, leases, takeover of dead owners, one write per run."""

import json
import multiprocessing as mp
import os
import socket
import sqlite3
import time

import pytest

from gossiplab.errors import UserError
from gossiplab.sweep.spec import parse_sweep
from gossiplab.sweep.store import Owner, ResultsStore


def tiny_spec(n=6):
    return parse_sweep({"sweep": {"name": "s", "seeds": n}, "grid": {"algorithm.gossip_steps": [1]}})


def ok_payload(iterations=(0, 10)):
    hist = [{"algorithm": "dsgd_mgs", "iteration": i, "avg_model": {"test_acc": 0.5 + i / 100},
             "gen_gap_acc": 0.01, "consensus_distance": 1.0} for i in iterations]
    return {"status": "ok", "history": hist, "started": 1.0, "ended": 2.0, "wall_seconds": 1.0,
            "summary": {"algorithm": "dsgd_mgs", "final": hist[-1], "runs": {}},
            "environment": {"gossiplab": "x", "torch": "t", "python": "p", "host": "h", "threads": 1}}


@pytest.fixture
def store(tmp_path):
    spec = tiny_spec()
    with ResultsStore(tmp_path / "r.sqlite") as st:
        st.register_sweep(spec, spec.expand().points)
        yield st


def test_register_creates_pending_runs_and_indexed_key_columns(store, tmp_path):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = store.runs()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"pending"}
    assert {"algorithm.gossip_steps", "seeds.data", "topology.name"} <= set(store.key_columns())
    assert sorted(r["seeds.data"] for r in rows) == list(range(6))
    cfg = json.loads(rows[0]["config"])
    assert cfg["algorithm"]["compare_centralized"] is False
    # registering the same sweep again changes nothing
    spec = tiny_spec()
    store.register_sweep(spec, spec.expand().points)
    assert len(store.runs()) == 6 and len(store.sweeps()) == 1
    # a new swept key gets a column, back-filled for the runs already there
    spec2 = parse_sweep({"sweep": {"name": "s2"}, "grid": {"optim.lr": [0.1, 0.3]}})
    store.register_sweep(spec2, spec2.expand().points)
    lrs = [r["optim.lr"] for r in store.runs()]
    # lr=0.1 at seed 0 is the first sweep's seed-0 run: same config, same row
    assert len(lrs) == 7 and lrs.count(0.1) == 6 and lrs.count(0.3) == 1


def test_claim_finish_and_no_second_claim(store):
    me = Owner.me()
    rid = store.runs()[0]["id"]
    assert store.claim(rid, me) == "claimed"
    other = Owner("elsewhere", 1, "1")
    assert store.claim(rid, other) == "busy"
    assert store.finish(rid, me, ok_payload())
    assert store.claim(rid, other) == "finished"
    row = store.runs()[0]
    assert row["status"] == "ok" and row["attempts"] == 1 and row["final_test_acc"] == pytest.approx(0.6)
    assert [m["iteration"] for m in store.metrics([rid])] == [0, 10]
    assert store.integrity_ok()


def test_expired_lease_is_taken_over_and_the_late_result_is_discarded(store):
    rid = store.runs()[0]["id"]
    slow = Owner("other-host", 123, "1")  # another machine: judged by its lease only
    assert store.claim(rid, slow, lease=0.2) == "claimed"
    assert store.claim(rid, Owner.me()) == "busy"
    time.sleep(0.3)
    assert store.claim(rid, Owner.me()) == "claimed"
    assert store.finish(rid, slow, ok_payload((0, 5))) is False  # lost its claim: writes nothing
    assert store.metrics([rid]) == []
    assert store.finish(rid, Owner.me(), ok_payload())
    assert len(store.metrics([rid])) == 2 and store.runs()[0]["attempts"] == 2


def test_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(store):
    rid = store.runs()[0]["id"]
    p = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    p.start()
    p.join()
    dead = Owner(socket.gethostname(), p.pid, "12345")  # that pid is gone (or reused)
    assert dead.is_gone()
    assert store.claim(rid, dead, lease=3600) == "claimed"
    assert store.claim(rid, Owner.me()) == "claimed"
    live = Owner.me()
    assert not live.is_gone()


def test_renew_extends_and_release_returns_to_pending(store):
    me = Owner.me()
    ids = [r["id"] for r in store.runs()[:2]]
    for i in ids:
        store.claim(i, me, lease=0.2)
    store.renew(me, ids, lease=3600)
    time.sleep(0.3)
    assert store.claim(ids[0], Owner("other-host", 1, "1")) == "busy"
    store.release(me, ids)
    assert {r["status"] for r in store.runs() if r["id"] in ids} == {"pending"}


def _claimer(path, ids, out):
    with ResultsStore(path) as st:
        me = Owner.me()
        got = [i for i in ids if st.claim(i, me, lease=3600) == "claimed"]
        for i in got:
            st.finish(i, me, ok_payload())
    out.put((os.getpid(), got))


def test_concurrent_processes_claim_each_run_exactly_once(tmp_path):
    spec = tiny_spec(40)
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as st:
        st.register_sweep(spec, spec.expand().points)
        ids = [r["id"] for r in st.runs()]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(path), ids, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    claimed = [i for _, got in results for i in got]
    assert sorted(claimed) == sorted(ids)  # every run once, none twice
    with ResultsStore(path) as st:
        assert st.integrity_ok()
        rows = st.runs()
        assert {r["status"] for r in rows} == {"ok"} and {r["attempts"] for r in rows} == {1}
        assert len(st.metrics()) == 2 * len(ids)


def test_not_a_store_and_missing_store_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ResultsStore(tmp_path / "nope.sqlite", create=False)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(UserError, match="not a gossiplab results store"):
        ResultsStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(UserError, match="not a readable SQLite"):
        ResultsStore(junk)
