"""This process's place in a distributed run and every message it sends.

:func:`connect` joins the run (rendezvous, heartbeat, process group). :class:`Comm` knows the
layout (rank r holds the consecutive nodes ``block(r)``) and wraps every communication so that a
lost peer becomes a :class:`~gossiplab.errors.PeerLost` naming it: point-to-point batches
(gossip), all-reduces (centralized gradients, metrics) and small JSON values shared through the
store (decisions of rank 0, evaluation records).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import torch

from gossiplab.config import Config
from gossiplab.engine.liveness import Liveness, first_line
from gossiplab.engine.rendezvous import (
    Launch,
    bind_gloo,
    open_store,
    start_process_group,
    stop_process_group,
)
from gossiplab.errors import ConfigError, UserError

RENDEZVOUS_MIN = 60.0  # processes may start seconds apart: joining waits at least this long


def block(m: int, world: int, rank: int) -> tuple[int, int]:
    """Nodes [lo, hi) of ``rank``: m nodes in ``world`` consecutive blocks of near-equal size."""
    return rank * m // world, (rank + 1) * m // world


class Comm:
    """Rank, world, device, layout of the nodes, and communication that names lost peers."""

    def __init__(self, launch: Launch, *, nodes: int, backend: str, device: torch.device,
                 timeout: float, store, liveness: Liveness, hosts: list[str], closers: list):
        self.launch = launch
        self.rank = launch.rank
        self.world_size = launch.world_size
        self.nodes = nodes  # m: the layout of the run (a driver may train several node counts)
        self.backend = backend
        self.device = device
        self.timeout = timeout
        self.store = store
        self.liveness = liveness
        self.hosts = hosts
        self._closers = closers
        self._seq: dict[str, int] = {}
        self.p2p_bytes = 0  # bytes this rank sent in point-to-point messages
        self.p2p_messages = 0

    # -- layout ---------------------------------------------------------------------------------

    def block(self, rank: int | None = None) -> tuple[int, int]:
        return block(self.nodes, self.world_size, self.rank if rank is None else rank)

    def owner(self, node: int) -> int:
        """The rank holding ``node``."""
        r = node * self.world_size // self.nodes
        while block(self.nodes, self.world_size, r)[1] <= node:
            r += 1
        while block(self.nodes, self.world_size, r)[0] > node:
            r -= 1
        return r

    def describe(self, rank: int) -> str:
        lo, hi = self.block(rank)
        nodes = f"node {lo}" if hi - lo == 1 else f"nodes {lo}-{hi - 1}"
        host = self.hosts[rank] if 0 <= rank < len(self.hosts) else "?"
        return f"{nodes}, host {host}"

    @property
    def multi_machine(self) -> bool:
        return len(set(self.hosts)) > 1

    # -- tensors --------------------------------------------------------------------------------

    def exchange(self, sends: list[tuple[int, torch.Tensor]], recvs: list[tuple[int, torch.Tensor]],
                 what: str) -> None:
        """One batch of point-to-point messages (``batch_isend_irecv``), waited for."""
        import torch.distributed as dist

        ops = [dist.P2POp(dist.isend, t, p) for p, t in sends]
        ops += [dist.P2POp(dist.irecv, t, p) for p, t in recvs]
        if not ops:
            return
        peers = [p for p, _ in sends] + [p for p, _ in recvs]
        self.p2p_bytes += sum(t.numel() * t.element_size() for _, t in sends)
        self.p2p_messages += len(sends)
        try:
            works = dist.batch_isend_irecv(ops)
        except Exception as e:
            raise self.liveness.diagnose(None, what, e) from None
        if len(works) == len(ops):  # gloo: one work per message, so a failure names its peer
            for p, w in zip(peers, works, strict=True):
                try:
                    w.wait()
                except Exception as e:
                    raise self.liveness.diagnose(p, what, e) from None
        else:  # NCCL coalesces the batch into one work
            for w in works:
                try:
                    w.wait()
                except Exception as e:
                    raise self.liveness.diagnose(None, what, e) from None

    def all_reduce(self, t: torch.Tensor, what: str, op: str = "sum") -> torch.Tensor:
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        try:
            dist.all_reduce(t, op=ops[op])
        except Exception as e:
            raise self.liveness.diagnose(None, what, e) from None
        return t

    # -- small values through the store (JSON only) ---------------------------------------------

    def _key(self, name: str) -> str:
        n = self._seq.get(name, 0)
        self._seq[name] = n + 1
        return f"v/{name}/{n}"

    def share(self, name: str, value: Any = None, src: int = 0) -> Any:
        """``value`` of rank ``src``, on every rank (all ranks call this in the same order)."""
        key = self._key(name)
        if self.rank == src:
            self.store.set(key, json.dumps(value))
            return value
        self.liveness.wait_until(lambda: self.store.check([key]), [src], f"waiting for rank {src} ({name})")
        return json.loads(self.store.get(key))

    def gather(self, name: str, value: Any) -> list[Any]:
        """Every rank's ``value``, by rank, on every rank."""
        key = self._key(name)
        self.store.set(f"{key}/{self.rank}", json.dumps(value))
        keys = [f"{key}/{r}" for r in range(self.world_size)]
        self.liveness.wait_until(lambda: self.store.check(keys), range(self.world_size), name)
        return [json.loads(self.store.get(k)) for k in keys]

    def barrier(self, name: str) -> None:
        self.gather(name, None)

    # -- end --------------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Record that this rank stops on its own error (the others will name it)."""
        self.liveness.abort(self.rank, reason, failed=True)

    @property
    def hosts_store(self) -> bool:
        return self.liveness.store_host == self.rank

    def close(self, *, clean: bool = True) -> None:
        """Leave the run. The rank hosting the store leaves last: after a clean finish it waits
        for every rank to leave; after an error it lingers until the others have read why."""
        try:
            if clean:
                self.store.add("closed", 1)
                if self.hosts_store:
                    self.liveness.wait_until(lambda: self.store.add("closed", 0) >= self.world_size,
                                             range(self.world_size), "waiting for the other ranks to finish")
                stop_process_group()
            elif self.hosts_store:
                self.liveness.linger(self.timeout + 15.0)
        finally:
            self.liveness.stop()
            for c in self._closers:
                with contextlib.suppress(Exception):
                    c()


def choose_backend(name: str, device: torch.device) -> str:
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise ConfigError("engine.dist_backend = 'nccl' needs engine.device = 'cuda' "
                          "(NCCL moves GPU tensors)")
    if name == "gloo" and device.type == "cuda":
        raise ConfigError("engine.dist_backend = 'gloo' cannot send GPU tensors point-to-point; "
                          "use 'nccl' (or 'auto') with engine.device = 'cuda'")
    return name


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of this rank: ``cuda`` becomes ``cuda:<local rank>`` (one GPU per process)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("engine.device = 'cuda' but no CUDA device is available here")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def connect(cfg: Config) -> Comm:
    """Join the run described by the environment: rendezvous, heartbeat, process group."""
    import torch.distributed as dist

    launch = Launch.from_env()
    e = cfg.engine
    m = cfg.topology.nodes
    if m < launch.world_size:
        raise ConfigError(
            f"topology.nodes = {m} is smaller than the {launch.world_size} processes; every process "
            f"needs at least one node (run at most {m} processes)"
        )
    device = rank_device(e.device, launch.local_rank)
    backend = choose_backend(e.dist_backend, device)
    timeout = e.timeout
    joining = max(timeout, RENDEZVOUS_MIN)
    store, sock = open_store(launch, joining)
    beat_store, _ = open_store(launch, joining, server=False)
    prefix = f"gossiplab/{launch.attempt}"
    main, beats = dist.PrefixStore(prefix, store), dist.PrefixStore(prefix, beat_store)
    hosts: list[str] = []
    closers = [sock.close] if sock is not None else []
    comm_ref: list[Comm] = []

    def describe(r: int) -> str:
        return comm_ref[0].describe(r) if comm_ref else f"rank {r}"

    liveness = Liveness(main, beats, launch.rank, launch.world_size, timeout, describe,
                        store_host=None if launch.agent_store else 0)
    main.set(f"host/{launch.rank}", socket.gethostname())
    liveness.publish_process()
    liveness.start()
    liveness.on_termination()
    _join(main, launch, joining)
    liveness.watch_store(launch.where)
    liveness.load_processes()
    hosts = [main.get(f"host/{r}").decode() for r in range(launch.world_size)]
    comm = Comm(launch, nodes=m, backend=backend, device=device, timeout=timeout, store=main,
                liveness=liveness, hosts=hosts, closers=closers)
    comm_ref.append(comm)
    try:
        bind_gloo(launch, comm.multi_machine)
        start_process_group(launch, backend, store, timeout)
    except BaseException:
        comm.close(clean=False)
        raise
    return comm


def _join(store, launch: Launch, timeout: float) -> None:
    """Wait (at most ``timeout``) until every process has reached the store."""
    store.add("joined", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            joined = store.add("joined", 0)
        except Exception as e:
            raise UserError(f"rendezvous at {launch.where} failed: {first_line(e)}") from None
        if joined >= launch.world_size:
            return
        if time.monotonic() > deadline:
            raise UserError(
                f"rendezvous at {launch.where}: only {joined} of {launch.world_size} processes "
                f"joined within {timeout:g} s; start all of them with the same "
                "MASTER_ADDR, MASTER_PORT and WORLD_SIZE"
            )
        time.sleep(0.05)
