"""Run a sweep: expand it, record it in the results store, skip what is finished, claim each
remaining run atomically, hand it to an executor, store its outcome, renew the claims of the runs
in flight, and show one progress bar (with ETA) for the whole sweep."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gossiplab.sweep.executors import Done
from gossiplab.sweep.executors import Progress as ProgressEvent
from gossiplab.sweep.spec import Expansion, SweepPoint, SweepSpec
from gossiplab.sweep.store import DEFAULT_LEASE, Owner, ResultsStore

RECHECK_SECONDS = 2.0  # how often runs claimed by another process are looked at again
# Runs of one group_key train together as replicas of one node matrix (run/replicas.py). A
# group holds at most MAX_REPLICAS runs whose step is mostly fixed cost (its arithmetic takes
# less than packs.STEP_OVERHEAD_S at packs.CORE_FLOPS): a wider group spreads each step's fixed
# cost (about 190 operator calls) over more runs. Measured on an Intel Xeon 2-core host, one
# group of quick-digits-q runs alone: 0.93 s per run in groups of 4, 0.85 (6), 0.79 (8), 0.73
# (12); whole sweeps, --jobs 2, stores equal: quick-digits-q 24.3/23.4 s (groups of at most 4),
# 19.9/19.9 s (8), 19.5/18.8 s (12); -hetero 28.9 -> 23.8 s, -scale 31.8 -> 29.1 s (4 -> 12).
# Runs with more arithmetic per step (quick-fmnist's 784-128-10 MLP: groups of 6 no faster per
# run than 4) gain nothing from width and keep groups of at most MIN_REPLICAS, which balance the
# workers better. (An older pass on an AMD EPYC host, with a costlier step, found 4 fastest.)
MAX_REPLICAS = 12
# ... and at least this many, where there are that many: a group of 3 runs costs little more than
# one run, three runs one after the other cost three.
MIN_REPLICAS = 4
STACKABLE_MODELS = ("logreg", "mlp")  # the bmm backend's models: one batched product per layer


def stackable(point: SweepPoint) -> bool:
    """Whether a run gains from training as a replica (models whose per-call cost dominates)."""
    cfg = point.config
    return (cfg.model.name in STACKABLE_MODELS and cfg.engine.backend in ("auto", "bmm")
            and cfg.engine.name == "simulator")


def group_width(point: SweepPoint) -> int:
    """The most runs like ``point`` that train as one group: :data:`MAX_REPLICAS` where its step
    is mostly fixed cost, else :data:`MIN_REPLICAS` (see above)."""
    from gossiplab.sweep.packs import CORE_FLOPS, STEP_OVERHEAD_S, run_step_flops

    flops = run_step_flops(point.config)
    if flops is not None and flops / CORE_FLOPS < STEP_OVERHEAD_S:
        return MAX_REPLICAS
    return MIN_REPLICAS


def plan_groups(points: list[SweepPoint], slots: int, max_replicas: int | None = None
                ) -> list[list[SweepPoint]]:
    """Split the runs into groups trained as replicas: runs of one group_key, in chunks of
    ceil(n / chunks) runs (the last one smaller), at most ``max_replicas`` (default:
    :func:`group_width`) in each, at least two chunks per worker (so two sweeps sharing a store
    share the work) where that leaves at least ``MIN_REPLICAS`` runs in each; the costliest
    groups first (so the last to finish are small)."""
    from gossiplab.run.replicas import group_key

    by_key: dict[str, list[SweepPoint]] = {}
    for p in points:
        key = group_key(p.config.to_dict()) if stackable(p) else p.run_id
        by_key.setdefault(key, []).append(p)
    groups: list[list[SweepPoint]] = []
    for members in by_key.values():
        # runs with the same gossip (differing in seeds) side by side: their rounds run as one
        # product (engine/replicas.py)
        members = sorted(members, key=lambda p: json.dumps(
            [p.config.topology.model_dump(mode="json"), p.config.algorithm.model_dump(mode="json"),
             p.config.engine.fuse_gossip], sort_keys=True))
        n = len(members)
        if max_replicas is not None:
            width = max(1, max_replicas)
        elif n > 1:
            width = group_width(members[0])
        else:  # a lone run: no width to choose (and no model built for its flop estimate)
            width = 1
        # at least two chunks per worker: a worker that finishes early, or another sweep sharing
        # the store, still finds a chunk to claim
        per_slot = max(2, -(-n // (max(1, slots) * width)))
        chunks = max(1, -(-n // width), min(max(1, slots) * per_slot, n // MIN_REPLICAS))
        # chunks of ceil(n / chunks), the last one smaller (18 Fashion-MNIST runs: 4,4,4,4,2).
        # Tried instead: near-equal chunks (4,4,4,3,3: 95.4 s against 81.9-84.2 s, the worker
        # with the odd chunk finishing last) and a multiple of the workers (six of 3: 92.5 s,
        # groups of 3 costing more per run)
        size = -(-n // chunks)
        groups += [members[i:i + size] for i in range(0, n, size)]
    groups.sort(key=lambda g: -sum(p.iterations * p.config.topology.nodes for p in g))
    return groups


@dataclass
class SweepOutcome:
    total: int
    finished_before: Counter = field(default_factory=Counter)
    executed: Counter = field(default_factory=Counter)  # outcomes of the runs this process ran
    finished_elsewhere: int = 0  # runs another process finished while this one waited
    lost_claims: int = 0  # results discarded because another process had taken the run over
    interrupted: bool = False
    wall_seconds: float = 0.0
    final: Counter = field(default_factory=Counter)  # status of every point at the end

    @property
    def complete(self) -> bool:
        return not self.interrupted and sum(self.final[s] for s in ("ok", "diverged", "failed")) \
            == self.total


def describe_point(p: SweepPoint) -> str:
    shown = {k: v for k, v in p.params.items() if v is not None}
    inner = ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"{p.algorithm} {p.run_id}" + (f" ({inner})" if inner else "")


def expansion_line(spec: SweepSpec, exp: Expansion) -> str:
    counts = ", ".join(f"{n} {a}" for a, n in exp.counts().items())
    seeds = f", {len(spec.seeds)} seed(s)" if spec.seeds is not None else ""
    dup = f"; {exp.duplicates} duplicate point(s) merged" if exp.duplicates else ""
    return f"sweep '{spec.name}': {len(exp.points)} runs ({counts}{seeds}{dup})"


def _progress(console: Console):
    from gossiplab.run.progress import progress_for

    return progress_for(console, [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[runs]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ], unit=" iterations")


def run_sweep(spec: SweepSpec, store: ResultsStore, executor, *, console: Console | None = None,
              retry_failed: bool = False, lease: float = DEFAULT_LEASE,
              expansion: Expansion | None = None, group: bool = True) -> SweepOutcome:
    """``group``: runs that differ only in shape-free values (run/replicas.py: group_key) train
    together as replicas where the executor can (``submit_group``); their results equal those of
    the runs made one by one."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    exp = expansion or spec.expand()
    points = exp.points
    store.register_sweep(spec, points)
    before = store.statuses(p.run_id for p in points)
    outcome = SweepOutcome(total=len(points))
    done_states = ("ok", "diverged", "failed") if not retry_failed else ("ok", "diverged")
    todo = [p for p in points if before[p.run_id] not in done_states]
    for p in points:
        if before[p.run_id] in done_states:
            outcome.finished_before[before[p.run_id]] += 1
    console.print(escape(expansion_line(spec, exp)))
    kept = ", ".join(f"{n} {s}" for s, n in sorted(outcome.finished_before.items()))
    console.print(escape(f"results {store.path}: {len(points) - len(todo)} finished" +
                  (f" ({kept})" if kept else "") + f", {len(todo)} to run"))
    if outcome.finished_before.get("failed") and not retry_failed:
        console.print(f"  {outcome.finished_before['failed']} failed run(s) kept; "
                      "--retry-failed runs them again")
    if not todo:
        outcome.final = Counter(store.statuses(p.run_id for p in points).values())
        outcome.wall_seconds = time.perf_counter() - t0
        return outcome

    owner = Owner.me()
    executor.start()
    console.print(f"executing on {executor.describe()}")
    total_iters = sum(p.iterations for p in todo)
    grouping = group and hasattr(executor, "submit_group")

    def planned(points: list[SweepPoint]) -> list[list[SweepPoint]]:
        return plan_groups(points, executor.slots) if grouping else [[p] for p in points]

    queue: deque[list[SweepPoint]] = deque(planned(todo))
    waiting: list[SweepPoint] = []
    inflight: dict[str, tuple[SweepPoint, int]] = {}
    finished = 0
    last_renew = last_recheck = time.monotonic()

    progress = _progress(console)

    def info() -> str:
        parts = [f"{len(inflight)} running"]
        if outcome.executed["failed"]:
            parts.append(f"[red]{outcome.executed['failed']} failed[/]")
        if outcome.executed["diverged"]:
            parts.append(f"[yellow]{outcome.executed['diverged']} diverged[/]")
        if waiting:
            parts.append(f"{len(waiting)} held by other sweeps")
        return ", ".join(parts)

    try:
        with progress:
            task = progress.add_task(f"sweep {spec.name}", total=total_iters,
                                     runs=f"runs 0/{len(todo)}", info="")

            def refresh() -> None:
                progress.update(task, runs=f"runs {finished}/{len(todo)}", info=info())

            while queue or inflight or waiting:
                while queue and executor.free_slots() > 0:
                    claimed: list[SweepPoint] = []
                    for p in queue.popleft():
                        state = store.claim(p.run_id, owner, lease, retry_failed=retry_failed)
                        if state == "claimed":
                            claimed.append(p)
                            inflight[p.run_id] = (p, 0)
                        elif state == "finished":  # another process finished it meanwhile
                            outcome.finished_elsewhere += 1
                            finished += 1
                            progress.advance(task, p.iterations)
                        else:
                            waiting.append(p)
                    if len(claimed) > 1:
                        executor.submit_group([(p.run_id, p.config.to_dict()) for p in claimed])
                    elif claimed:
                        executor.submit(claimed[0].run_id, claimed[0].config.to_dict())
                    refresh()
                if not inflight and not queue:
                    time.sleep(0.25)
                for ev in executor.poll(timeout=0.5) if inflight else []:
                    if ev.run_id not in inflight:
                        continue
                    p, reported = inflight[ev.run_id]
                    if isinstance(ev, ProgressEvent):
                        n = min(ev.iterations, p.iterations - reported)
                        inflight[ev.run_id] = (p, reported + n)
                        progress.advance(task, n)
                    elif isinstance(ev, Done):
                        del inflight[ev.run_id]
                        progress.advance(task, p.iterations - reported)
                        finished += 1
                        status = ev.payload["status"]
                        if store.finish(ev.run_id, owner, ev.payload):
                            outcome.executed[status] += 1
                            if status != "ok":
                                colour = "red" if status == "failed" else "yellow"
                                detail = escape(f"{describe_point(p)}: {ev.payload.get('error')}")
                                console.print(f"[{colour}]{status}[/]: {detail}")
                        else:
                            outcome.lost_claims += 1
                    refresh()
                now = time.monotonic()
                if inflight and now - last_renew > lease / 4:
                    store.renew(owner, inflight, lease)
                    last_renew = now
                if waiting and not queue and now - last_recheck > RECHECK_SECONDS:
                    queue.extend(planned(waiting))
                    waiting.clear()
                    last_recheck = now
                    refresh()
    except KeyboardInterrupt:
        outcome.interrupted = True
        # every claim this process holds, not only those in ``inflight``: the signal may land
        # between a claim's commit and its bookkeeping (or a result's and its store.finish)
        store.release(owner, [p.run_id for p in points])
    finally:
        executor.close()
    outcome.final = Counter(store.statuses(p.run_id for p in points).values())
    outcome.wall_seconds = time.perf_counter() - t0
    return outcome
