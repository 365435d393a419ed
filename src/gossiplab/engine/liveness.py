"""Noticing a lost process: heartbeats and abort records in the rendezvous store.

A rank that stops (killed, crashed, hung, or failed with its own error) must make every other rank
stop with an error naming it, within ``engine.timeout``, never a silent hang:

* gloo waits carry the timeout, so a wait on a dead or stuck peer fails (at once when the peer's
  process is gone: its connections close);
* a rank that stops first appends an *abort record* to the store (the rank it blames and why), so
  the ranks that fail after it (their peer closed its connections) name the root cause, not the
  neighbour that merely stopped before them;
* a heartbeat thread bumps a counter per rank every second. Waits that are not gloo's (the others
  wait while rank 0 evaluates) and failures that name no peer (a collective) use it to find the
  rank that went silent.

Only JSON travels through the store: nothing a peer sends is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable

from gossiplab.errors import PeerLost

HEARTBEAT = 1.0  # seconds between heartbeats
SILENT = 3.5  # after a failure, a rank whose heartbeat did not move for this long is the lost one
PEER_GRACE = 1.0  # after a peer's connection closed: how long to look for its abort record


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


class Liveness:
    """Heartbeats, abort records and waits that know who is still there.

    ``store`` is used by the calling thread, ``beat_store`` (a second connection) by the heartbeat
    thread. ``describe(rank)`` says where a rank is (its nodes and host) for error messages.
    ``store_host`` is the rank whose process hosts the store (None: torchrun's agent hosts it).
    """

    def __init__(self, store, beat_store, rank: int, world: int, timeout: float,
                 describe: Callable[[int], str], store_host: int | None):
        self.store = store
        self._beat_store = beat_store
        self.rank = rank
        self.world = world
        self.timeout = timeout
        self.describe = describe
        self.store_host = store_host
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beats = 0
        self.aborted = False

    # -- heartbeat ------------------------------------------------------------------------------

    def start(self) -> None:
        self._beat()
        self._thread = threading.Thread(target=self._run, name="gossiplab-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self._beats += 1
        self._beat_store.set(f"hb/{self.rank}", str(self._beats))

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self._beat()
            except Exception:  # the store is gone; the main thread notices on its next wait
                return

    def stop(self) -> None:
        self._stop.set()

    def heartbeats(self, ranks: Iterable[int]) -> dict[int, int]:
        out = {}
        for r in ranks:
            key = f"hb/{r}"
            if self.store.check([key]):
                out[r] = int(self.store.get(key))
        return out

    # -- abort records --------------------------------------------------------------------------

    def abort(self, root: int | None, reason: str, failed: bool = False) -> None:
        """Tell the others why this rank stops (``root``: the rank it blames, itself for its own
        error, None when unknown; ``failed``: the root failed with an error rather than
        vanished). Best effort: the store may be gone too."""
        if self.aborted:
            return
        self.aborted = True
        rec = json.dumps({"rank": self.rank, "root": root, "reason": reason, "failed": failed})
        with contextlib.suppress(Exception):
            self.store.append("aborts", rec + "\n")

    def aborts(self) -> dict[int, dict]:
        """Abort records of the other ranks, by the rank that wrote them."""
        if not self.store.check(["aborts"]):
            return {}
        out: dict[int, dict] = {}
        for line in self.store.get("aborts").decode().splitlines():
            try:
                rec = json.loads(line)
                out.setdefault(int(rec["rank"]), rec)
            except (ValueError, KeyError, TypeError):
                continue
        out.pop(self.rank, None)
        return out

    # -- errors ---------------------------------------------------------------------------------

    def lost(self, root: int | None, reason: str, what: str, failed: bool = False) -> PeerLost:
        """The error naming the lost rank; recorded first so that the others name it too."""
        self.abort(root, reason, failed)
        if root is None:
            return PeerLost(f"rank {self.rank} lost contact with the other ranks during {what}: {reason}")
        head = (f"rank {root} ({self.describe(root)}) failed: {reason}" if failed
                else f"lost rank {root} ({self.describe(root)}): {reason}")
        return PeerLost(f"{head}; rank {self.rank} stops (it was in {what})", root)

    def _from_records(self, recs: dict[int, dict], what: str, prefer: int | None = None) -> PeerLost:
        if prefer is not None and prefer in recs:
            rec = recs[prefer]
        else:  # a record that names its root beats one that does not
            rec = min(recs.values(), key=lambda r: (r.get("root") is None, r["rank"]))
        root = rec.get("root")
        return self.lost(None if root is None else int(root), rec["reason"], what,
                         bool(rec.get("failed")))

    def _store_lost(self, what: str, detail: str) -> PeerLost:
        self.aborted = True  # nothing can be recorded any more
        if self.store_host is not None and self.store_host != self.rank:
            return PeerLost(
                f"lost rank {self.store_host} ({self.describe(self.store_host)}): the rendezvous "
                f"store it hosts stopped answering ({detail}); rank {self.rank} stops (it was in "
                f"{what})", self.store_host)
        return PeerLost(f"the rendezvous store stopped answering ({detail}); rank {self.rank} stops "
                        f"(it was in {what})")

    def diagnose(self, peer: int | None, what: str, exc: BaseException) -> PeerLost:
        """Turn a failed wait into the error naming the lost rank.

        ``peer``: the rank the failed operation talked to (None for a collective). A record from
        that peer (or, for a collective, from anyone) names the root cause; otherwise a peer whose
        connection closed died, a peer that timed out hung, and for a collective the rank whose
        heartbeat stopped is the lost one.
        """
        detail = first_line(exc)
        timed_out = "timed out" in detail.lower() or "timeout" in detail.lower()
        others = [r for r in range(self.world) if r != self.rank]
        grace = min(self.timeout, 5.0) if timed_out else PEER_GRACE
        start = time.monotonic()
        deadline = start + max(grace, SILENT + 1.0, min(self.timeout, 10.0))
        try:
            base = self.heartbeats(others)
            while True:
                recs = self.aborts()
                if recs and (peer is None or peer in recs):
                    return self._from_records(recs, what, prefer=peer)
                waited = time.monotonic() - start
                if peer is not None and waited >= grace:
                    why = (f"it did not answer for {self.timeout:g} s (hung or stopped)" if timed_out
                           else "its connection closed (the process died)")
                    return self.lost(peer, why, what)
                if peer is None and waited >= SILENT:
                    now = self.heartbeats(others)
                    silent = [r for r in others if now.get(r) == base.get(r)]
                    if silent:
                        return self.lost(silent[0], f"it stopped (no heartbeat for {SILENT:g} s)", what)
                if time.monotonic() > deadline:
                    return self.lost(None, detail, what)
                time.sleep(0.05)
        except PeerLost:
            raise
        except Exception as e:  # the store itself is gone
            return self._store_lost(what, first_line(e))

    def linger(self, limit: float) -> None:
        """For the rank hosting the store, stopping on an error: wait (at most ``limit`` s) until
        every other rank has recorded its own stop or gone silent, so that they can still read
        the records that name the lost rank."""
        others = [r for r in range(self.world) if r != self.rank]
        start = time.monotonic()
        last: dict[int, int | None] = {}
        moved = dict.fromkeys(others, start)
        with contextlib.suppress(Exception):
            while time.monotonic() - start < limit:
                recs = self.aborts()
                now = time.monotonic()
                beats = self.heartbeats(others)
                for r in others:
                    if beats.get(r) != last.get(r):
                        last[r], moved[r] = beats.get(r), now
                if all(r in recs or now - moved[r] > SILENT for r in others):
                    return
                time.sleep(0.1)

    def wait_until(self, ready: Callable[[], bool], ranks: Iterable[int], what: str) -> None:
        """Poll ``ready()`` until true. Stops with :class:`PeerLost` when any rank records an abort
        or one of ``ranks`` sends no heartbeat for ``timeout`` seconds (a long wait on a live
        rank, e.g. rank 0 evaluating, is fine)."""
        ranks = [r for r in ranks if r != self.rank]
        last: dict[int, int | None] = {}
        moved = dict.fromkeys(ranks, time.monotonic())
        pause, next_check = 0.001, 0.0
        try:
            while not ready():
                recs = self.aborts()
                if recs:
                    if ready():  # set before the abort (e.g. rank 0 sharing its own error): the
                        return  # wait succeeded; the next wait meets the abort
                    raise self._from_records(recs, what)
                now = time.monotonic()
                if now >= next_check:
                    beats = self.heartbeats(ranks)
                    for r in ranks:
                        if beats.get(r) != last.get(r):
                            last[r], moved[r] = beats.get(r), now
                    stale = [r for r in ranks if now - moved[r] > self.timeout]
                    if stale:
                        raise self.lost(stale[0], f"no heartbeat for {self.timeout:g} s", what)
                    next_check = now + HEARTBEAT / 2
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        except PeerLost:
            raise
        except Exception as e:
            raise self._store_lost(what, first_line(e)) from None
