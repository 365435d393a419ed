"""Naming the lost rank: abort records, heartbeats and waits, on a real store (in process)."""

import contextlib
import datetime
import json
import threading
import time

import pytest
import torch.distributed as dist

from gossiplab.engine import liveness as lv
from gossiplab.errors import PeerLost

from ._launch import free_port


@pytest.fixture
def store():
    s = dist.TCPStore("127.0.0.1", free_port(), is_master=True, wait_for_workers=False,
                      timeout=datetime.timedelta(seconds=10))
    return dist.PrefixStore("t", s)


def rank_of(store, rank, world=4, timeout=2.0):
    return lv.Liveness(store, store, rank, world, timeout, lambda r: f"node {r}, host h", store_host=None)


def test_a_peer_that_recorded_why_it_stopped_is_not_blamed(store):
    rank_of(store, 2).lost(3, "its connection closed (the process died)", "gossip round 7")
    err = rank_of(store, 1).diagnose(2, "gossip round 7", RuntimeError("Connection closed by peer"))
    assert err.rank == 3 and str(err).startswith("lost rank 3 (node 3, host h): its connection closed")
    # the record is JSON (no pickle travels between ranks) and names the root for the next rank
    recs = [json.loads(line) for line in store.get("aborts").decode().splitlines()]
    why = "its connection closed (the process died)"
    assert recs == [{"rank": 2, "root": 3, "reason": why, "failed": False},
                    {"rank": 1, "root": 3, "reason": why, "failed": False}]


def test_a_peer_that_vanished_without_a_record_is_the_lost_one(store):
    err = rank_of(store, 0).diagnose(1, "gossip round 3", RuntimeError("Connection reset by peer"))
    assert err.rank == 1 and "died" in str(err) and "gossip round 3" in str(err)
    err = rank_of(store, 2).diagnose(3, "round 1", RuntimeError("Timed out waiting 2000ms for recv"))
    assert err.rank == 3 and "did not answer for 2 s" in str(err)


def test_a_failed_collective_names_the_rank_whose_heartbeat_stopped(store):
    ranks = [rank_of(store, r) for r in range(3)]
    ranks[0].start()
    ranks[2].start()
    ranks[1]._beat()  # rank 1 beat once, then went silent
    try:
        err = ranks[0].diagnose(None, "iteration 5 (loss)", RuntimeError("Connection closed by peer"))
    finally:
        ranks[0].stop()
        ranks[2].stop()
    assert isinstance(err, PeerLost) and err.rank == 1 and "no heartbeat" in str(err)


def test_waiting_on_a_silent_rank_ends_after_the_timeout(store):
    waiting, silent = rank_of(store, 0, timeout=1.0), rank_of(store, 1, timeout=1.0)
    silent._beat()
    with pytest.raises(PeerLost, match=r"lost rank 1 \(node 1, host h\): no heartbeat for 1 s"):
        waiting.wait_until(lambda: False, [1], "waiting for rank 1 (eval)")


def test_waiting_ends_when_another_rank_records_an_abort(store):
    waiting, failing = rank_of(store, 0, timeout=30), rank_of(store, 2)
    failing.start()
    failing.abort(2, "ConfigError: bad", failed=True)
    try:
        with pytest.raises(PeerLost, match=r"rank 2 \(node 2, host h\) failed: ConfigError: bad") as e:
            waiting.wait_until(lambda: False, [1, 2], "barrier")
    finally:
        failing.stop()
    assert e.value.rank == 2


def test_a_value_shared_just_before_the_abort_is_still_received(store):
    """Rank 0 publishes its decision (e.g. its own UserError) and then aborts; a waiter that first
    looks while the key is missing and next sees the abort must still get the value (the race
    that turned rank 1's exit code 2 into 3 under load)."""
    waiting, failing = rank_of(store, 1, timeout=30), rank_of(store, 0)
    looks = []

    def ready():
        looks.append(1)
        if len(looks) == 1:  # between this first look and the next: share, then abort
            store.set("start", "decision")
            failing.abort(0, "UserError: bad --resume", failed=True)
            return False
        return store.check(["start"])

    waiting.wait_until(ready, [0], "waiting for rank 0 (start)")
    assert store.get("start") == b"decision" and len(looks) == 2
    # with nothing shared, the abort still ends the wait
    with pytest.raises(PeerLost, match=r"rank 0 \(node 0, host h\) failed: UserError: bad --resume"):
        waiting.wait_until(lambda: False, [0], "waiting for rank 0 (next)")


TIMED_OUT = RuntimeError("Timed out waiting 2000ms for recv")


@contextlib.contextmanager
def beating(store, rank):
    """A rank whose heartbeat thread runs while the block does."""
    r = rank_of(store, rank)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def test_a_peer_that_did_not_answer_but_still_beats_is_given_time_to_say_why(store):
    """A cut link: rank 1 waits on rank 2 (across the cut) and so does not answer rank 0, but its
    heartbeat goes on; it records the rank it lost when its own wait times out, after rank 0's
    grace. Rank 0 names that rank, not rank 1 (a two-host test failed so)."""
    with beating(store, 1) as peer:
        later = threading.Timer(2.5, lambda: peer.lost(
            2, "it did not answer for 2 s (hung or stopped)", "gossip round 4"))
        later.start()
        t = time.monotonic()
        try:
            err = rank_of(store, 0).diagnose(1, "gossip round 4", TIMED_OUT)
        finally:
            later.cancel()
    assert err.rank == 2 and str(err).startswith("lost rank 2 (node 2, host h)"), str(err)
    assert time.monotonic() - t < 2 + 2 + 1  # within grace + the peer's own timeout


def test_a_peer_that_beats_but_never_says_why_is_blamed_after_grace_and_timeout(store):
    with beating(store, 1):
        t = time.monotonic()
        err = rank_of(store, 0).diagnose(1, "gossip round 4", TIMED_OUT)
    assert err.rank == 1 and "did not answer for 2 s" in str(err)
    assert 2 + 2 - 0.5 < time.monotonic() - t < 2 + 2 + 2
