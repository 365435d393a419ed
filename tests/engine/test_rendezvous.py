"""Joining a run: the launch environment, the store on loopback, and one clear error for every
unusable address or port (in process, no training)."""

import socket

import pytest

from gossiplab.engine.comm import _join
from gossiplab.engine.rendezvous import Launch, bind_gloo, loopback_interface, open_store
from gossiplab.errors import UserError

from ._launch import free_port


def launch(**kw):
    base = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    return Launch.from_env({**base, **kw})


def test_without_torchrun_the_error_says_how_to_launch():
    with pytest.raises(UserError, match="torchrun --standalone --nproc-per-node"):
        Launch.from_env({})
    with pytest.raises(UserError, match="RANK=3 and WORLD_SIZE=2"):
        Launch.from_env({"RANK": "3", "WORLD_SIZE": "2"})
    with pytest.raises(UserError, match="MASTER_PORT"):
        Launch.from_env({"RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "http"})


def test_rendezvous_defaults_to_loopback():
    la = Launch.from_env({"RANK": "1", "WORLD_SIZE": "2"})
    assert la.addr == "127.0.0.1" and la.local_rank == 1 and not la.agent_store


def test_store_listens_on_the_rendezvous_address_only():
    la = launch()
    store, sock = open_store(la, 5)
    try:
        assert sock.getsockname()[:2] == ("127.0.0.1", la.port)
        store.set("k", "v")
        client, none = open_store(la, 5, server=False)
        assert none is None and client.get("k") == b"v"
    finally:
        sock.close()


def test_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        la = launch(MASTER_PORT=str(busy.getsockname()[1]))
        with pytest.raises(UserError, match=f"port {la.port} on 127.0.0.1 is already in use"):
            open_store(la, 2)


def test_unresolvable_or_foreign_address_is_a_clear_error():
    with pytest.raises(UserError, match="does not resolve"):
        open_store(launch(MASTER_ADDR="no-such-host.invalid"), 2)
    with pytest.raises(UserError, match="not an address of this machine"):
        open_store(launch(MASTER_ADDR="192.0.2.77"), 2)  # TEST-NET-1: never local


def test_unreachable_store_is_a_clear_error():
    la = launch(RANK="1", WORLD_SIZE="2")  # nobody listens on this fresh port
    with pytest.raises(UserError, match=r"cannot reach the store at 127\.0\.0\.1:\d+ within 1 s"):
        open_store(la, 1)


def test_missing_processes_are_named_by_count():
    la = launch(WORLD_SIZE="3")
    store, sock = open_store(la, 5)
    try:
        with pytest.raises(UserError, match="only 1 of 3 processes joined within 0.5 s"):
            _join(store, la, 0.5)
    finally:
        sock.close()


def test_gloo_binds_to_loopback_for_a_loopback_rendezvous(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    bind_gloo(launch(MASTER_ADDR="localhost"), multi_machine=False)
    import os

    assert os.environ.get("GLOO_SOCKET_IFNAME") == loopback_interface()


def test_several_machines_with_a_loopback_hostname_is_refused(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")
    with pytest.raises(UserError, match="GLOO_SOCKET_IFNAME"):
        bind_gloo(launch(MASTER_ADDR="192.0.2.1"), multi_machine=True)
