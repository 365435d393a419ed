"""Joining a distributed run: read the launch (torchrun's environment), reach the rendezvous store,
start the torch.distributed process group. Every failure ends in one clear :class:`UserError`.

Loopback by default: without torchrun the rendezvous address defaults to 127.0.0.1, rank 0's
store listens on that address only, and when the address is a loopback one gloo's data
connections are bound to the loopback interface too (``GLOO_SOCKET_IFNAME``), so a single-machine
run opens no port on the network. (torchrun's own agent store listens on all interfaces; see the
README, "Running across processes and machines".)
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass

from gossiplab.errors import UserError

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 29500
TORCHRUN_HINT = "torchrun --standalone --nproc-per-node 4 -m gossiplab run --engine distributed"


@dataclass(frozen=True)
class Launch:
    """Where this process sits in the run, from the environment torchrun sets (or the same
    variables set by hand: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)."""

    rank: int
    world_size: int
    local_rank: int
    addr: str
    port: int
    agent_store: bool  # torchrun's agent hosts the store; every worker is a client
    attempt: int  # torchrun restart count: keys of a restarted attempt never mix with the last

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Launch:
        env = dict(os.environ if env is None else env)
        if "RANK" not in env or "WORLD_SIZE" not in env:
            raise UserError(
                "engine.name = 'distributed' runs one process per rank: launch it with torchrun, "
                f"e.g. `{TORCHRUN_HINT}` (or set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)"
            )

        def integer(name: str, default: int | None = None) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                if default is None:
                    raise UserError(f"environment variable {name} is not set")
                return default
            try:
                return int(raw)
            except ValueError:
                raise UserError(f"environment variable {name} must be an integer, got {raw!r}") from None

        rank, world = integer("RANK"), integer("WORLD_SIZE")
        if world < 1 or not 0 <= rank < world:
            raise UserError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent "
                            "(need 0 <= RANK < WORLD_SIZE)")
        port = integer("MASTER_PORT", DEFAULT_PORT)
        if not 0 < port < 65536:
            raise UserError(f"MASTER_PORT={port} is not a TCP port (1..65535)")
        return cls(
            rank=rank, world_size=world, local_rank=integer("LOCAL_RANK", rank),
            addr=env.get("MASTER_ADDR") or DEFAULT_ADDR, port=port,
            agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
            attempt=integer("TORCHELASTIC_RESTART_COUNT", 0),
        )

    @property
    def where(self) -> str:
        return f"{self.addr}:{self.port}"


def resolve(addr: str, port: int) -> list[str]:
    """IP addresses of ``addr``; a UserError when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"rendezvous address MASTER_ADDR={addr!r} does not resolve ({e.strerror})") from None
    return sorted({str(i[4][0]) for i in infos})


def is_loopback(addr: str, port: int = DEFAULT_PORT) -> bool:
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in resolve(addr, port))


def loopback_interface() -> str | None:
    names = [n for _, n in socket.if_nameindex()]
    for cand in ("lo", "lo0"):
        if cand in names:
            return cand
    return next((n for n in names if n.startswith("lo")), None)


def bind_gloo(launch: Launch, multi_machine: bool) -> None:
    """Loopback rendezvous: bind gloo's data connections to the loopback interface. Otherwise check
    that gloo would not listen on a loopback address that other machines cannot reach."""
    if os.environ.get("GLOO_SOCKET_IFNAME"):
        return
    if is_loopback(launch.addr, launch.port):
        iface = loopback_interface()
        if iface:
            os.environ["GLOO_SOCKET_IFNAME"] = iface
        return
    if multi_machine:
        host = socket.gethostname()
        try:
            own = resolve(host, launch.port)
        except UserError:
            own = []
        if own and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in own):
            raise UserError(
                f"this machine's name {host!r} resolves to {', '.join(own)}: gloo would listen on "
                "loopback and the other machines could not connect; set GLOO_SOCKET_IFNAME to the "
                "network interface that reaches them (e.g. GLOO_SOCKET_IFNAME=eth0)"
            )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_store(launch: Launch, timeout: float, *, server: bool | None = None):
    """``(store, listening_socket)``: a client of the rendezvous store, or on rank 0 without
    torchrun's agent store its server, listening on the rendezvous address only (keep the socket
    open as long as the store; it is None for a client)."""
    from torch.distributed import TCPStore

    td = datetime.timedelta(seconds=timeout)
    host_server = (launch.rank == 0 and not launch.agent_store) if server is None else server
    resolve(launch.addr, launch.port)
    if not host_server:
        try:
            return TCPStore(launch.addr, launch.port, is_master=False, timeout=td), None
        except Exception as e:  # torch raises DistNetworkError / RuntimeError / TimeoutError
            raise UserError(
                f"rendezvous: cannot reach the store at {launch.where} within {timeout:g} s "
                f"({_first_line(e)}); is rank 0 running, are MASTER_ADDR/MASTER_PORT right and the "
                "port open?"
            ) from None
    sock = _listen(launch)
    try:
        store = TCPStore(launch.addr, launch.port, is_master=True, timeout=td, wait_for_workers=False,
                         master_listen_fd=sock.fileno())
    except Exception as e:
        sock.close()
        raise UserError(f"rendezvous: cannot start the store on {launch.where} ({_first_line(e)})") from None
    return store, sock


def _listen(launch: Launch) -> socket.socket:
    addrs = resolve(launch.addr, launch.port)
    last: OSError | None = None
    for a in addrs:
        fam = socket.AF_INET6 if ":" in a else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((a, launch.port))
            sock.listen(128)
            sock.set_inheritable(True)
            return sock
        except OSError as e:
            sock.close()
            last = e
    assert last is not None
    if last.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
        raise UserError(
            f"rendezvous: port {launch.port} on {launch.addr} is already in use (another run?); "
            "choose another MASTER_PORT or --rdzv-endpoint port"
        )
    if last.errno in (99, 49):  # EADDRNOTAVAIL
        raise UserError(
            f"rendezvous: MASTER_ADDR={launch.addr} is not an address of this machine, and rank 0 "
            "hosts the store; start rank 0 on that machine or fix MASTER_ADDR"
        )
    raise UserError(f"rendezvous: cannot listen on {launch.where} ({last.strerror or last})")


def start_process_group(launch: Launch, backend: str, store, timeout: float) -> None:
    import torch.distributed as dist

    try:
        dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=launch.rank,
                                world_size=launch.world_size,
                                timeout=datetime.timedelta(seconds=timeout))
    except Exception as e:
        raise UserError(f"cannot start the {backend} process group via {launch.where}: "
                        f"{_first_line(e)}") from None


def stop_process_group() -> None:
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        if dist.is_initialized():
            dist.destroy_process_group()
