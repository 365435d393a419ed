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
  rank that went silent;
* a rank on the same machine whose process is gone is noticed at once (its pid, checked against
  its start time, is published in the store), even in a wait on the store;
* a rank stopped by its launcher (torchrun stops the other processes of a machine when one dies)
  records that it was *stopped*, so the others do not blame it but the process that died first;
* a watchdog ends a process whose store stopped answering (a cut link: the store's reads have no
  timeout of their own) within ``engine.timeout``, with one line naming the store and exit 3.

Only JSON travels through the store: nothing a peer sends is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
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
        self._last_ok = time.monotonic()  # when the heartbeat thread last heard from the store
        self.aborted = False
        self.procs: dict[int, tuple[str, int, int]] = {}  # rank -> (machine id, pid, start time)

    # -- heartbeat ------------------------------------------------------------------------------

    def start(self) -> None:
        self._beat()
        self._thread = threading.Thread(target=self._run, name="gossiplab-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        # add, not set: add waits for the store's answer, so a beat proves the store is reachable
        self._beats = int(self._beat_store.add(f"hb/{self.rank}", 1))
        self._last_ok = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self._beat()
            except Exception:  # the store is gone; the main thread notices on its next wait
                return

    def stop(self) -> None:
        self._stop.set()

    # -- the store itself -----------------------------------------------------------------------

    def watch_store(self, where: str, limit: float | None = None) -> None:
        """Start the watchdog: when no heartbeat reached the store for ``limit`` seconds (default
        ``timeout``), print one line naming the store (and the rank hosting it) and end the
        process with exit status 3. A thread blocked in a store read (no timeout there) cannot
        be woken, so the process ends itself."""
        limit = self.timeout if limit is None else limit

        def watch() -> None:
            while not self._stop.wait(0.25):
                silent = time.monotonic() - self._last_ok
                if silent > limit + HEARTBEAT:
                    if self._stop.is_set():
                        return
                    host = (f"hosted by rank {self.store_host} ({self.describe(self.store_host)})"
                            if self.store_host is not None else "hosted by torchrun's agent on "
                            f"the machine of rank 0 ({self.describe(0)})")
                    msg = (f"lost the rendezvous store at {where} ({host}): no answer for "
                           f"{silent:.0f} s (network cut, or that machine or process stopped); "
                           f"rank {self.rank} stops")
                    _die(msg, 3)

        threading.Thread(target=watch, name="gossiplab-store-watchdog", daemon=True).start()

    # -- processes on this machine --------------------------------------------------------------

    def publish_process(self) -> None:
        """Tell the others this process's (machine id, pid, start time): a rank on the same
        machine notices at once when it is gone."""
        me = process_identity(os.getpid())
        if me is not None:
            self.store.set(f"proc/{self.rank}", json.dumps(me))

    def load_processes(self) -> None:
        here = machine_id()
        for r in range(self.world):
            key = f"proc/{r}"
            if r != self.rank and self.store.check([key]):
                mid, pid, start = json.loads(self.store.get(key))
                if mid == here:
                    self.procs[r] = (mid, int(pid), int(start))

    def dead(self, ranks: Iterable[int]) -> list[int]:
        """Those of ``ranks`` on this machine whose process has ended."""
        return [r for r in ranks if r in self.procs
                and process_identity(self.procs[r][1]) != list(self.procs[r])]

    # -- stopped by a signal --------------------------------------------------------------------

    def on_termination(self) -> None:
        """On SIGTERM or SIGHUP (torchrun stopping this machine's processes after one died; a
        launcher killed): record that this rank was *stopped* (so nobody blames it), then end.
        Signals reach a helper thread through a wakeup pipe, so this works while the main
        thread waits inside gloo or the store."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        names = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
        for sig in names:
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)

        def watch() -> None:
            while True:
                data = os.read(r, 1)
                if not data:
                    return
                sig = data[0]
                if sig not in (signal.SIGTERM, signal.SIGHUP):
                    continue
                name = names.get(signal.Signals(sig), str(sig))
                rec = json.dumps({"rank": self.rank, "root": None, "stopped": True,
                                  "reason": f"stopped by {name}"})
                causes: list[str] = []

                def record_and_read_cause(rec: str = rec, causes: list[str] = causes) -> None:
                    self._beat_store.append("aborts", rec + "\n")
                    causes.extend(self._head(int(r["root"]), r["reason"], bool(r.get("failed")))
                                  for r in self.aborts(store=self._beat_store).values()
                                  if r.get("root") is not None)

                t = threading.Thread(target=record_and_read_cause, daemon=True)
                t.start()
                t.join(1.0)  # the store may be unreachable: do not wait for it
                stopped = f"rank {self.rank} stopped by {name}"
                # the launcher stops a machine's processes when one of them stopped: name the cause
                # another rank recorded first, as the ranks that saw it do
                _die(f"{causes[0]}; {stopped} (its launcher stopped it after that)" if causes
                     else stopped, 128 + sig)

        threading.Thread(target=watch, name="gossiplab-signals", daemon=True).start()

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

    def aborts(self, *, stopped: bool = False, store=None) -> dict[int, dict]:
        """Abort records of the other ranks, by the rank that wrote them, in the order written;
        with ``stopped``, the ranks stopped by a signal (they are no cause), else the others.
        ``store``: the connection to read them with (default: the calling thread's)."""
        store = self.store if store is None else store
        if not store.check(["aborts"]):
            return {}
        out: dict[int, dict] = {}
        for line in store.get("aborts").decode().splitlines():
            try:
                rec = json.loads(line)
                out.setdefault(int(rec["rank"]), rec)
            except (ValueError, KeyError, TypeError):
                continue
        out.pop(self.rank, None)
        return {r: rec for r, rec in out.items() if bool(rec.get("stopped")) == stopped}

    # -- errors ---------------------------------------------------------------------------------

    def lost(self, root: int | None, reason: str, what: str, failed: bool = False) -> PeerLost:
        """The error naming the lost rank; recorded first so that the others name it too."""
        self.abort(root, reason, failed)
        if root is None:
            return PeerLost(f"rank {self.rank} lost contact with the other ranks during {what}: {reason}")
        return PeerLost(f"{self._head(root, reason, failed)}; rank {self.rank} stops (it was in "
                        f"{what})", root)

    def _head(self, root: int, reason: str, failed: bool) -> str:
        """What happened to ``root``, as every rank that names it says it."""
        return (f"rank {root} ({self.describe(root)}) failed: {reason}" if failed
                else f"lost rank {root} ({self.describe(root)}): {reason}")

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
                stopped = self.aborts(stopped=True)
                gone = [r for r in self.dead(others) if r not in stopped]
                if gone and (peer is None or peer in gone or peer in stopped):
                    recs = self.aborts()
                    if gone[0] in recs:  # it stopped on purpose, naming its cause: name that
                        return self._from_records(recs, what, prefer=gone[0])
                    return self.lost(gone[0], "its process ended (it died)", what)
                waited = time.monotonic() - start
                if (timed_out and peer is not None and peer not in stopped
                        and grace <= waited < grace + self.timeout
                        and self.heartbeats([peer]).get(peer) != base.get(peer)):
                    # The peer did not answer but its heartbeat moves: it is alive and itself
                    # waiting on another rank (a cut link), and records which when its own wait
                    # times out; a hung or stopped process stops beating too.
                    time.sleep(0.05)
                    continue
                if peer is not None and peer not in stopped and waited >= grace:
                    why = (f"it did not answer for {self.timeout:g} s (hung or stopped)" if timed_out
                           else "its connection closed (the process died)")
                    return self.lost(peer, why, what)
                if (peer is None or peer in stopped) and waited >= SILENT:
                    # the peer was stopped by its launcher: the cause is a rank that went
                    # silent without saying why
                    now = self.heartbeats(others)
                    silent = [r for r in others if now.get(r) == base.get(r) and r not in stopped]
                    if silent:
                        return self.lost(silent[0], f"it stopped (no heartbeat for {SILENT:g} s)", what)
                if time.monotonic() > deadline:
                    if stopped:  # no other cause found: the signal itself was the cause
                        root = peer if peer in stopped else min(stopped)
                        return self.lost(root, stopped[root]["reason"], what)
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
        others = [r for r in range(self.world) if r != self.rank]
        last: dict[int, int | None] = {}
        moved = dict.fromkeys(others, time.monotonic())
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
                    beats = self.heartbeats(others)
                    for r in others:
                        if beats.get(r) != last.get(r):
                            last[r], moved[r] = beats.get(r), now
                    stopped = self.aborts(stopped=True)
                    gone = [r for r in self.dead(others) if r not in stopped]
                    if gone:
                        recs = self.aborts()
                        if gone[0] in recs:  # it stopped on purpose, naming its cause: name that
                            raise self._from_records(recs, what, prefer=gone[0])
                        raise self.lost(gone[0], "its process ended (it died)", what)
                    if stopped:  # a launcher stopped a rank: the cause went silent unannounced
                        silent = [r for r in others if r not in stopped and now - moved[r] > SILENT]
                        if silent:
                            raise self.lost(silent[0], f"it stopped (no heartbeat for {SILENT:g} s)",
                                            what)
                        quiet = [r for r in stopped if now - moved.get(r, now) > SILENT + 1.0]
                        if quiet:  # nobody else went silent: the signal itself was the cause
                            raise self.lost(quiet[0], stopped[quiet[0]]["reason"], what)
                    stale = [r for r in ranks if r not in stopped and now - moved[r] > self.timeout]
                    if stale:
                        raise self.lost(stale[0], f"no heartbeat for {self.timeout:g} s", what)
                    next_check = now + HEARTBEAT / 2
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        except PeerLost:
            raise
        except Exception as e:
            raise self._store_lost(what, first_line(e)) from None


def _die(message: str, status: int) -> None:
    """One line on stderr, then end the process at once (threads blocked in C++ cannot be
    joined)."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"gossiplab: error: {message}\n")
        sys.stderr.flush()
    os._exit(status)


def machine_id() -> str | None:
    """This machine and process namespace: pids are comparable only between processes that
    share both (boot id and pid namespace). None where unknown (not Linux)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def process_identity(pid: int) -> list | None:
    """``[machine id, pid, start time]`` of a live (not zombie) process, None when it is gone
    or unknowable."""
    mid = machine_id()
    if mid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # a zombie has ended; its parent did not reap it yet
        return None
    return [mid, pid, int(fields[19])]
