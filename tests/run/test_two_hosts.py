"""Two real hosts: two network namespaces joined by a veth pair, each with its own address, host
name and process namespace, running the README's several-machines recipe with torchrun
(2 machines x 2 processes). A normal run must equal the simulator; a rank killed with -9 and
the link taken down must each end every process on both hosts within ``engine.timeout`` + 10 s,
with exit status 3 and one line naming the right rank (or, behind the cut, the store and rank 0).

Needs root and ``ip netns`` (skipped with the reason otherwise). The stop times are measured
(``GOSSIPLAB_TWO_HOSTS_LOG=FILE`` appends them as JSON lines for docs/reliability.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gossiplab.cli import main as cli_main

pytestmark = pytest.mark.slow

TIMEOUT = 10  # engine.timeout of these runs
SETS = [
    "data.dataset='synthetic'", "data.synthetic_train=600", "data.synthetic_test=200",
    "model.hidden=[16]", "topology.nodes=8", "algorithm.gossip_steps=2", "optim.batch_size=8",
    "data.samples_per_node=40", "train.iterations=40", "eval.every=10", "eval.node_samples=100",
    "engine.threads=1", f"engine.timeout={TIMEOUT}",
]
ARGS = [a for s in SETS for a in ("--set", s)]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    name = f"glprobe{uuid.uuid4().hex[:6]}"
    r = _sh("ip", "netns", "add", name)
    if r.returncode != 0:
        return f"`ip netns add` is not allowed here ({r.stderr.strip()[:200]})"
    try:
        r = _sh("ip", "netns", "exec", name, "unshare", "--uts", "--pid", "--fork", "--mount-proc", "true")
        if r.returncode != 0:
            return f"`unshare --uts --pid` is not allowed here ({r.stderr.strip()[:200]})"
    finally:
        _sh("ip", "netns", "del", name)
    return None


class Hosts:
    """Namespaces ``<tag>a`` (10.77.x.1, host name hosta) and ``<tag>b`` (10.77.x.2, hostb)."""

    def __init__(self, tmp: Path):
        tag = uuid.uuid4().hex[:5]
        self.ns = [f"gl{tag}a", f"gl{tag}b"]
        self.ifs = [f"v{tag}a", f"v{tag}b"]
        net = 100 + int(tag, 16) % 100
        self.addrs = [f"10.77.{net}.1", f"10.77.{net}.2"]
        self.tmp = tmp
        for ns in self.ns:
            self._ok("ip", "netns", "add", ns)
        self._ok("ip", "link", "add", self.ifs[0], "type", "veth", "peer", "name", self.ifs[1])
        for ns, i, a in zip(self.ns, self.ifs, self.addrs, strict=True):
            self._ok("ip", "link", "set", i, "netns", ns)
            self._ok("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", i)
            self._ok("ip", "-n", ns, "link", "set", i, "up")
            self._ok("ip", "-n", ns, "link", "set", "lo", "up")

    def _ok(self, *cmd: str) -> None:
        r = _sh(*cmd)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"

    def close(self) -> None:
        for ns in self.ns:
            _sh("ip", "netns", "del", ns)

    def cut(self) -> None:
        self._ok("ip", "-n", self.ns[1], "link", "set", self.ifs[1], "down")

    def start(self, i: int, out: Path, argv: list[str], port: int) -> subprocess.Popen:
        """Host ``i``: torchrun with the README's several-machines recipe, in its own network,
        UTS and pid namespaces."""
        torchrun = (f"{sys.executable} -m torch.distributed.run --nnodes 2 --nproc-per-node 2 "
                    f"--node-rank {i} --master-addr {self.addrs[0]} --master-port {port}")
        inner = (f"hostname host{'ab'[i]} && GLOO_SOCKET_IFNAME={self.ifs[i]} {torchrun} -m gossiplab "
                 + " ".join(_quote(a) for a in ["run", "--engine", "distributed", "--quiet",
                                                 "--out", str(out), *argv]))
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME"):
            env.pop(k, None)
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns[i], "unshare", "--uts", "--pid", "--fork", "--mount-proc",
             "sh", "-c", inner + "; exit $?"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.tmp,
            start_new_session=True)


def _quote(a: str) -> str:
    return "'" + a.replace("'", "'\\''") + "'"


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(c) for c in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def _rank_pids(host: subprocess.Popen) -> dict[int, int]:
    """Global pid of each gossiplab rank under ``host`` (from its RANK variable)."""
    found = {}
    for p in _descendants(host.pid):
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"gossiplab" in cmd and b"RANK" in env and b"torch.distributed.run" not in cmd:
            found[int(env[b"RANK"])] = p
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    alive.append(p)
        except OSError:
            pass
    return alive


def _log(entry: dict) -> None:
    path = os.environ.get("GOSSIPLAB_TWO_HOSTS_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


@pytest.fixture
def hosts(tmp_path):
    why = _why_not()
    if why:
        pytest.skip(why)
    h = Hosts(tmp_path)
    yield h
    h.close()


def _run_pair(hosts: Hosts, tmp: Path, argv: list[str], fault=None, guard: float = 120.0):
    """Start both hosts; when the ranks are training, apply ``fault(hosts, procs)``; return
    (procs, outputs, seconds from the fault until every process of both hosts had ended)."""
    port = 29400 + int(uuid.uuid4().hex[:3], 16) % 500
    outs = [tmp / "A", tmp / "B"]
    procs = [hosts.start(i, outs[i], argv, port) for i in range(2)]
    fault_at = None
    try:
        if fault is not None:
            deadline = time.monotonic() + guard
            while not (outs[0] / "metrics.jsonl").exists() or not (outs[0] / "metrics.jsonl").read_text():
                assert all(p.poll() is None for p in procs), "a host ended before training"
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.1)
            fault_at = time.monotonic()
            fault(hosts, procs)
        every = [p.pid for p in procs] + [d for p in procs for d in _descendants(p.pid)]
        deadline = time.monotonic() + guard
        while _alive(every) and time.monotonic() < deadline:
            every += [d for p in procs for d in _descendants(p.pid) if d not in every]
            time.sleep(0.05)
        stopped = time.monotonic() - fault_at if fault_at is not None else None
        left = _alive(every)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    outputs = [p.communicate(timeout=60) for p in procs]
    assert not left, f"processes still running after {guard} s: {left}; stderr:\n" + "\n".join(
        e[-3000:] for _, e in outputs)
    return procs, outputs, outs, stopped


def _errors(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("gossiplab: error:")]


def test_two_hosts_equal_the_simulator(hosts, tmp_path):
    procs, outputs, outs, _ = _run_pair(hosts, tmp_path, ARGS)
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for _, e in outputs]
    sim = tmp_path / "sim"
    assert cli_main(["run", "--quiet", "--out", str(sim), *ARGS]) == 0
    got = [json.loads(x) for x in (outs[0] / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(x) for x in (sim / "metrics.jsonl").read_text().splitlines()]
    assert [(r["algorithm"], r["iteration"]) for r in got] == [(r["algorithm"], r["iteration"]) for r in want]
    for g, w in zip(got, want, strict=True):
        assert g["avg_model"]["train_loss"] == pytest.approx(w["avg_model"]["train_loss"], rel=1e-5)
        assert g["avg_model"]["test_acc"] == pytest.approx(w["avg_model"]["test_acc"], abs=0.006)
        assert g["consensus_distance"] == pytest.approx(w["consensus_distance"], rel=1e-4, abs=1e-9)
    d = json.loads((outs[0] / "summary.json").read_text())["distributed"]
    assert d["hosts"] == ["hosta", "hosta", "hostb", "hostb"]
    assert d["out_by_host"] == {"hosta": str(outs[0]), "hostb": str(outs[1])}
    # each machine kept its checkpoints in its own --out
    assert {p.name.split(".")[1] for p in (outs[1] / "checkpoints").glob("*.pt")} == {"rank0002", "rank0003"}
    assert not (outs[1] / "summary.json").exists()


def test_kill_9_of_a_rank_stops_both_hosts_naming_it(hosts, tmp_path):
    killed = {}

    def kill(h, procs):
        pids = _rank_pids(procs[1])
        killed["pid"] = pids[3]
        os.kill(pids[3], signal.SIGKILL)

    procs, outputs, _, stopped = _run_pair(hosts, tmp_path, ARGS + ["--set", "train.iterations=100000"],
                                           fault=kill)
    _log({"fault": "kill -9 of rank 3 (host b)", "seconds_until_every_process_ended": stopped})
    assert all(p.returncode != 0 for p in procs)
    a, b = (_errors(err) for _, err in outputs)
    named = "lost rank 3 (nodes 6-7, host hostb)"
    assert len(a) == 2 and all(named in ln for ln in a), outputs[0][1][-3000:]
    # on host b, rank 2 names rank 3 too, unless torchrun stopped it first (it says so)
    assert len(b) == 1 and (named in b[0] or "rank 2 stopped by SIGTERM" in b[0]), outputs[1][1][-3000:]
    assert stopped < TIMEOUT + 10, stopped


def test_a_cut_link_stops_both_hosts_naming_what_each_lost(hosts, tmp_path):
    procs, outputs, _, stopped = _run_pair(hosts, tmp_path, ARGS + ["--set", "train.iterations=100000"],
                                           fault=lambda h, p: h.cut())
    _log({"fault": "link down between host a and host b", "seconds_until_every_process_ended": stopped})
    assert all(p.returncode != 0 for p in procs)
    a, b = (_errors(err) for _, err in outputs)
    assert len(a) == 2 and len(b) == 2, outputs
    # host a (holding the store) names a rank of host b; host b names the store and rank 0
    assert all("host hostb)" in ln and "lost rank" in ln for ln in a), a
    assert all("lost the rendezvous store" in ln and "rank 0 (nodes 0-1, host hosta)" in ln for ln in b), b
    assert stopped < TIMEOUT + 10, stopped
