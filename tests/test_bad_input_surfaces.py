"""Bad input on every surface, crafted and generated: config files and --set, sweep files,
topology files, results stores, run and stability folders, checkpoints.

Every case goes through ``gossiplab.cli.main`` (the installed command's code) in this process.
Each must end in exit status 2 with exactly one line on stderr naming the problem (``clean``),
or, for generated input that happens to be valid, exit 0; never a traceback, never a hang
(an alarm ends a case after 120 s), never the content of a file it read (a secret line is
planted in the files), nothing written to ``--out``.

``GOSSIPLAB_BAD_INPUT_LOG=FILE`` writes the tally (inputs by surface, how many ended in one
clean line) for docs/reliability.md."""

from __future__ import annotations

import atexit
import collections
import json
import os
import pickle
import random
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossiplab.cli import main

SECRET = "root:$6$s3cr3t-hash-never-printed:19000:0:99999:7:::"
TALLY: collections.Counter = collections.Counter()
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _write_tally() -> None:
    path = os.environ.get("GOSSIPLAB_BAD_INPUT_LOG")
    if path and TALLY:
        surfaces = sorted({s for s, _ in TALLY})
        rows = {s: {k: TALLY[s, k] for k in ("clean", "valid", "unclean")} for s in surfaces}
        Path(path).write_text(json.dumps(rows, indent=2) + "\n")


atexit.register(_write_tally)


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang("a case ran for 120 s (hang)")


def call(capsys, argv: list[str], surface: str, *, valid_ok: bool = False, out: Path | None = None):
    """Run the CLI; count and check the outcome. Returns (status, stderr, stdout)."""
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(120)
    try:
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own refusals
            rc = e.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    clean = (rc == 2 and len(lines) == 1 and lines[0].startswith("gossiplab: error: ")
             and "Traceback" not in cap.err)
    leaked = SECRET in cap.err or SECRET in cap.out or "s3cr3t" in cap.err
    wrote = out is not None and out.exists() and any(out.iterdir())
    kind = "clean" if clean and not leaked and not wrote else (
        "valid" if rc == 0 and valid_ok and not leaked else "unclean")
    TALLY[surface, kind] += 1
    assert kind != "unclean", (argv, rc, cap.err[-2000:], "leaked" if leaked else "",
                               "wrote" if wrote else "")
    return rc, cap.err, cap.out


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _secret_file(tmp: Path) -> Path:
    p = tmp / "shadow"
    p.write_text(f"{SECRET}\ndaemon:*:19000:0:99999:7:::\n")
    return p


# -- config files and --set -----------------------------------------------------------------------

CONFIG_TEXTS = {
    "string for a count": '[topology]\nnodes = "4"\n',
    "string for a rate": '[optim]\nlr = "0.1"\n',
    "string for Q": '[algorithm]\ngossip_steps = "1"\n',
    "seed beyond 64 bits": "[seeds]\ninit = 18446744073709551616\n",
    "lr 1e308": "[optim]\nlr = 1e308\n",
    "stability seed -1": "[stability]\nseed = -1\n",
    "timeout inf": "[engine]\ntimeout = inf\n",
    "hidden 1e9": "[model]\nhidden = [1000000000]\n",
    "cnn width 1e6": '[model]\nname = "cnn"\nwidth = 1000000\n',
    "synthetic 1e10 samples": '[data]\ndataset = "synthetic"\nsynthetic_train = 10000000000\n',
    "threads 100000": "[engine]\nthreads = 100000\n",
    "Q 1e9": "[algorithm]\ngossip_steps = 1000000000\n",
    "nodes 1e7": "[topology]\nnodes = 10000000\n",
    "perturbations 1e9": "[stability]\nperturbations = 1000000000\n",
    "arrays nested 5000 deep": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "tables nested 5000 deep": "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n",
    "invalid TOML": "[optim\nlr = 0.1\n",
    "unknown key": "[optim]\nlrr = 0.1\n",
    "section as a number": "optim = 3\n",
    "not UTF-8": b"[optim]\nlr = 0.1 # \xff\xfe\n",
    "huge file": "#" * (2 << 20) + "\n",
    "integer of 5,000 digits": "[train]\niterations = " + "9" * 5000 + "\n",
    "iterations 1e50": "[train]\niterations = " + "1" + "0" * 50 + "\n",
    "q_early 1e12": '[algorithm]\nname = "q_schedule"\nq_schedule = "decreasing"\nq_early = 1000000000000\n',
    "consensus_cap 1e12": '[algorithm]\nname = "consensus_q"\nconsensus_cap = 1000000000000\n',
    "compute_seconds inf": "[network]\ncompute_seconds = inf\n",
    "wan_latency 1e308": "[network]\nwan_latency = 1e308\n",
    "synthetic_noise inf": '[data]\ndataset = "synthetic"\nsynthetic_noise = inf\n',
    "weight_decay 1e308": "[optim]\nweight_decay = 1e308\n",
    "record_points 1e12": "[stability]\nrecord_points = 1000000000000\n",
    "hessian_points 1e12": "[stability]\nhessian_points = 1000000000000\n",
}


@pytest.mark.parametrize("name", list(CONFIG_TEXTS))
def test_bad_config_files(capsys, tmp_path, name):
    text = CONFIG_TEXTS[name]
    f = tmp_path / "c.toml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    call(capsys, ["run", "--quiet", "--out", str(out), "--config", str(f)], "config files and --set",
         out=out)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder", "missing", "secret"])
def test_config_file_that_is_not_a_config(capsys, tmp_path, kind):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "p", "folder": tmp_path,
            "missing": tmp_path / "none.toml", "secret": _secret_file(tmp_path)}[kind]
    if kind == "fifo":
        _fifo(path)
    out = tmp_path / "out"
    call(capsys, ["run", "--quiet", "--out", str(out), "--config", str(path)], "config files and --set",
         out=out)


SET_VALUES = [
    "seeds.init=18446744073709551616", "optim.lr=1e308", "stability.seed=-1", "engine.timeout=inf",
    "engine.timeout=nan", "model.hidden=[1000000000]", "model.width=1000000", "engine.threads=100000",
    "data.synthetic_train=10000000000", "algorithm.gossip_steps=1000000000", "topology.nodes=10000000",
    "stability.perturbations=1000000000", "optim.lr=fast", "topology.nodes=2.5", "optim.lr.x=3",
    "novalue", "a..b=1", "topology.name=file", "topology.edge_file=/dev/zero",
    "train.iterations=" + "9" * 5000, "train.iterations=" + "9" * 50,
    "network.compute_seconds=inf", "stability.reference_iterations=1000000000000000",
]


@pytest.mark.parametrize("assignment", SET_VALUES)
def test_bad_set_values(capsys, tmp_path, assignment):
    extra = []
    if assignment == "model.width=1000000":
        extra = ["--set", "model.name=cnn"]
    if assignment.startswith("data.synthetic"):
        extra = ["--set", "data.dataset=synthetic"]
    if assignment.startswith("topology.edge_file"):
        extra = ["--set", "topology.name=file"]
    out = tmp_path / "out"
    call(capsys, ["run", "--quiet", "--out", str(out), "--set", assignment, *extra],
         "config files and --set", out=out)


KEYS = ["topology.nodes", "optim.lr", "algorithm.gossip_steps", "seeds.init", "engine.timeout",
        "engine.threads", "model.hidden", "model.width", "data.synthetic_train", "stability.seed",
        "stability.perturbations", "optim.batch_size", "data.alpha", "topology.laziness",
        "train.iterations", "topology.name", "data.dataset", "optim.schedule", "nodes", "optim"]
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=12),
    st.lists(st.integers(min_value=-(2**40), max_value=2**40), max_size=3),
    st.dictionaries(st.sampled_from(["x", "nodes", "lr"]), st.integers(), max_size=2),
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return "inf" if v == float("inf") else "-inf" if v == -float("inf") else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


@SETTINGS
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4))
def test_generated_config_files(capsys, tmp_path, pairs):
    f = tmp_path / "g.toml"
    lines = []
    for key, value in dict(pairs).items():
        lines.append(f"{json.dumps(key) if '.' in key else key} = {_toml_value(value)}")
    f.write_text("\n".join(lines) + "\n")
    call(capsys, ["config", "show", "--config", str(f)], "config files and --set", valid_ok=True)


@SETTINGS
@given(key=st.sampled_from(KEYS), value=st.text(max_size=20).filter(lambda s: "\x00" not in s))
def test_generated_set_options(capsys, key, value):
    call(capsys, ["config", "show", "--set", f"{key}={value}"], "config files and --set", valid_ok=True)


@SETTINGS
@given(blob=st.binary(max_size=300))
def test_generated_config_bytes(capsys, tmp_path, blob):
    f = tmp_path / "b.toml"
    f.write_bytes(blob)
    call(capsys, ["config", "show", "--config", str(f)], "config files and --set", valid_ok=True)


# -- sweep files ------------------------------------------------------------------------------------

TINY = ("[base]\ntrain.iterations = 4\neval.every = 2\ntopology.nodes = 4\noptim.batch_size = 8\n"
        "model.hidden = [8]\neval.node_samples = 50\n")
SWEEP_TEXTS = {
    "seeds 1e11": '[sweep]\nname = "s"\nseeds = 100000000000\n' + TINY,
    "grid of 4e7 points": '[sweep]\nname = "s"\n' + TINY + "[grid]\n" + "".join(
        f'"{k}" = {list(range(1, 81))}\n' for k in
        ("train.iterations", "eval.every", "optim.batch_size", "eval.node_samples")),
    "string for a count": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"topology.nodes" = ["4", "8"]\n',
    "string for a rate": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"optim.lr" = ["0.1"]\n',
    "unknown table": '[sweep]\nname = "s"\n[bogus]\nx = 1\n',
    "unknown key in base": '[sweep]\nname = "s"\n[base]\noptim.lrr = 1\n',
    "axis not a list": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"optim.lr" = 0.1\n',
    "zip of unequal lengths": '[sweep]\nname = "s"\n' + TINY + '[zip]\n"optim.lr" = [0.1, 0.2]\n'
                              '"optim.batch_size" = [4]\n',
    "seeds repeated": '[sweep]\nname = "s"\nseeds = [1, 1]\n' + TINY,
    "nested 5000 deep": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "not UTF-8": b'[sweep]\nname = "\xff"\n',
    "config pointing at /dev/zero": '[sweep]\nname = "s"\nconfig = "/dev/zero"\n',
    "invalid TOML": "[sweep\n",
    "unknown topology in the grid": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"topology.name" = '
                                    '["ring", "moon"]\n',
    "unknown model in the grid": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"model.name" = ["mlp", "zzz"]\n',
    "empty [[zip]]": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"optim.lr" = [0.1]\n[[zip]]\n',
    "seed_keys a number": '[sweep]\nname = "s"\nseed_keys = 5\n' + TINY,
    "config a number": '[sweep]\nname = "s"\nconfig = 5\n' + TINY,
    "base a number": 'base = 5\n[sweep]\nname = "s"\n',
    "name a table": '[sweep]\nname = {a = 1}\n' + TINY,
    "one axis twice": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"optim.lr" = [0.1]\n'
                      'optim.lr = [0.2, 0.3]\n',
    "integer of 5,000 digits": '[sweep]\nname = "s"\n' + TINY + '[grid]\n"train.iterations" = ['
                               + "9" * 5000 + "]\n",
}


@pytest.mark.parametrize("name", list(SWEEP_TEXTS))
def test_bad_sweep_files(capsys, tmp_path, name):
    text = SWEEP_TEXTS[name]
    f = tmp_path / "s.toml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    call(capsys, ["sweep", str(f), "--dry-run", "--db", str(tmp_path / "r.sqlite")], "sweep files")
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder"])
def test_sweep_file_that_is_not_a_file(capsys, tmp_path, kind):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "p", "folder": tmp_path}[kind]
    if kind == "fifo":
        _fifo(path)
    call(capsys, ["sweep", str(path), "--dry-run", "--db", str(tmp_path / "r.sqlite")], "sweep files")


# -- topology files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["edge", "matrix"])
@pytest.mark.parametrize("kind", ["secret", "/dev/zero", "fifo", "folder", "huge", "binary", "missing"])
def test_bad_topology_files(capsys, tmp_path, which, kind):
    path = {"secret": None, "/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "p",
            "folder": tmp_path, "huge": tmp_path / "huge", "binary": tmp_path / "b",
            "missing": tmp_path / "none"}[kind]
    if kind == "secret":
        path = _secret_file(tmp_path)
    elif kind == "fifo":
        _fifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(300 << 20)  # sparse: 300 MiB of zeros, more than either file may hold
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4 + SECRET.encode())
    flag = "--edge-file" if which == "edge" else "--matrix-file"
    call(capsys, ["topology", "file", "--nodes", "4", flag, str(path)], "topology files")
    # the same file through a run's config
    key = "edge_file" if which == "edge" else "matrix_file"
    out = tmp_path / "out"
    call(capsys, ["run", "--quiet", "--out", str(out), "--set", "topology.name=file",
                  "--set", "topology.nodes=4", "--set", f"topology.{key}='{path}'"], "topology files",
         out=out)


def test_a_matrix_file_of_strings_is_refused_without_its_entries(capsys, tmp_path):
    """numpy's own message quotes the entry it could not convert: never shown."""
    import numpy as np

    path = tmp_path / "w.npy"
    np.save(path, np.array([[SECRET, "a"], ["b", "c"]]))
    _, err, _ = call(capsys, ["topology", "file", "--nodes", "2", "--matrix-file", str(path)],
                     "topology files")
    assert "not numeric" in err


@SETTINGS
@given(lines=st.lists(st.one_of(st.text(max_size=20), st.just(SECRET),
                                st.tuples(st.integers(-3, 6), st.integers(-3, 6)).map(
                                    lambda t: f"{t[0]} {t[1]}")),
                      max_size=8))
def test_generated_edge_lists_never_print_a_line(capsys, tmp_path, lines):
    f = tmp_path / "g.edges"
    f.write_text("\n".join(lines) + "\n")
    call(capsys, ["topology", "file", "--nodes", "4", "--edge-file", str(f), "--json"], "topology files",
         valid_ok=True)


def test_topology_command_bounds(capsys):
    for argv in (["topology", "ring", "--nodes", "16", "-Q", "1000000000"],
                 ["topology", "ring", "--nodes", "5000"], ["topology", "ring", "--nodes", "10000000"]):
        call(capsys, argv, "topology files")


# -- results stores -------------------------------------------------------------------------------

STORE_SWEEP = '[sweep]\nname = "s"\n' + TINY + '[grid]\n"algorithm.gossip_steps" = [1, 2]\n'


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    (d / "s.toml").write_text(STORE_SWEEP)
    assert main(["sweep", str(d / "s.toml"), "--db", str(d / "r.sqlite"), "--jobs", "1",
                 "--threads", "1", "--quiet"]) == 0
    with sqlite3.connect(d / "r.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return d


def _damage_sql(db: Path, sql: str) -> None:
    con = sqlite3.connect(db)
    con.executescript(sql)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


STORE_DAMAGE = {
    "runs.config broken JSON": "UPDATE runs SET config = '{\"data\": ' WHERE rowid = 1",
    "metrics.record broken JSON": "UPDATE metrics SET record = '[1, 2' WHERE rowid = 1",
    "summaries.summary broken JSON": "UPDATE summaries SET summary = 'nul' WHERE rowid = 1",
    "runs.config not UTF-8": "UPDATE runs SET config = CAST(X'7B22FF22' AS TEXT) WHERE rowid = 1",
    "metrics.record not UTF-8": "UPDATE metrics SET record = CAST(X'FE' AS TEXT) WHERE rowid = 1",
    "summaries.summary not UTF-8": "UPDATE summaries SET summary = CAST(X'C3' AS TEXT) WHERE rowid = 1",
    "runs.algorithm not UTF-8": "UPDATE runs SET algorithm = CAST(X'FF' AS TEXT) WHERE rowid = 1",
    "table metrics dropped": "DROP TABLE metrics",
    "table summaries dropped": "DROP TABLE summaries",
    "table sweeps dropped": "PRAGMA foreign_keys=OFF; DROP TABLE sweep_runs; DROP TABLE sweeps",
    "schema version not a number": "UPDATE meta SET value = 'abc' WHERE key = 'schema_version'",
    "runs.config a number": "UPDATE runs SET config = '5' WHERE rowid = 1",
    "runs.config empty": "UPDATE runs SET config = '{}' WHERE rowid = 1",
    "runs.config section a number": "UPDATE runs SET config = '{\"topology\": 5}' WHERE rowid = 1",
    "metrics.record a list": "UPDATE metrics SET record = '[]' WHERE rowid = 1",
    "metrics.record iteration text": "UPDATE metrics SET record = '{\"iteration\": \"abc\"}' WHERE rowid = 1",
    "metrics.record scores a number": "UPDATE metrics SET record = '{\"avg_model\": 5}' WHERE rowid = 1",
    "summaries.summary a number": "UPDATE summaries SET summary = '3' WHERE rowid = 1",
    "runs.created text": "UPDATE runs SET created = 'zz' WHERE rowid = 1",
    "runs.lease_until text": "UPDATE runs SET lease_until = 'abc' WHERE rowid = 1",
}
STORE_COMMANDS = {
    "report": lambda d, db: ["report", str(db), "--out", str(d / "rep")],
    "export": lambda d, db: ["export", str(db), "--out", str(d / "exp")],
    "sweep --dry-run": lambda d, db: ["sweep", str(d / "s.toml"), "--dry-run", "--db", str(db)],
}


@pytest.mark.parametrize("command", list(STORE_COMMANDS))
@pytest.mark.parametrize("damage", list(STORE_DAMAGE))
def test_damaged_results_stores(capsys, tmp_path, store, damage, command):
    db = tmp_path / "r.sqlite"
    db.write_bytes((store / "r.sqlite").read_bytes())
    (tmp_path / "s.toml").write_text(STORE_SWEEP)
    _damage_sql(db, STORE_DAMAGE[damage])
    before = db.read_bytes()
    _, err, _ = call(capsys, STORE_COMMANDS[command](tmp_path, db), "results stores")
    assert str(db) in err, "the message names the file"
    assert db.read_bytes() == before, "a damaged store is left as it was"


@pytest.mark.parametrize("seed", range(12))
def test_byte_flipped_results_stores(capsys, tmp_path, store, seed):
    """Random bytes overwritten in the file: refused in one line, or (damage in unused space)
    read as usual."""
    rng = random.Random(seed)
    data = bytearray((store / "r.sqlite").read_bytes())
    for _ in range(8):
        at = rng.randrange(100, len(data))
        data[at] = rng.randrange(256)
    db = tmp_path / "r.sqlite"
    db.write_bytes(bytes(data))
    (tmp_path / "s.toml").write_text(STORE_SWEEP)
    for command in STORE_COMMANDS.values():
        call(capsys, command(tmp_path, db), "results stores", valid_ok=True)


@pytest.mark.parametrize("kind", ["truncated", "empty", "/dev/zero", "fifo", "text"])
def test_results_store_that_is_not_a_store(capsys, tmp_path, store, kind):
    db = tmp_path / "r.sqlite"
    if kind == "truncated":
        db.write_bytes((store / "r.sqlite").read_bytes()[:3000])
    elif kind == "empty":
        db.write_bytes(b"")
    elif kind == "/dev/zero":
        db = Path("/dev/zero")
    elif kind == "fifo":
        _fifo(db)
    else:
        db.write_text(SECRET + "\n")
    call(capsys, ["export", str(db), "--out", str(tmp_path / "exp")], "results stores")


def test_a_secret_edge_file_in_a_sweep_never_reaches_the_store_export_or_report(capsys, tmp_path):
    secret = _secret_file(tmp_path)
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nname = "s"\n' + TINY + 'topology.name = "file"\n'
                 f'topology.edge_file = "{secret}"\n[grid]\n"algorithm.gossip_steps" = [1]\n')
    db = tmp_path / "r.sqlite"
    main(["sweep", str(f), "--db", str(db), "--jobs", "1", "--threads", "1", "--quiet"])
    capsys.readouterr()
    con = sqlite3.connect(db)
    rows = con.execute("SELECT status, error, traceback FROM runs").fetchall()
    con.close()
    assert rows and all(r[0] == "failed" for r in rows)
    assert all("line 1: expected two node ids" in r[1] for r in rows), rows
    assert not any("s3cr3t" in (r[1] or "") + (r[2] or "") for r in rows)
    assert main(["export", str(db), "--out", str(tmp_path / "exp")]) == 0
    for p in (tmp_path / "exp").iterdir():
        assert "s3cr3t" not in p.read_text()
    main(["report", str(db), "--out", str(tmp_path / "rep")])
    for p in (tmp_path / "rep").rglob("*"):
        if p.is_file() and p.suffix in (".html", ".json", ".md", ".csv", ".txt"):
            assert "s3cr3t" not in p.read_text(errors="replace"), p


# -- run folders, stability folders, checkpoints ----------------------------------------------------

RUN = ["--set", "train.iterations=4", "--set", "eval.every=2", "--set", "topology.nodes=4",
       "--set", "optim.batch_size=8", "--set", "model.hidden=[8]", "--set", "eval.node_samples=50"]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run folder with config.json and checkpoints but no summary (as after a kill)."""
    d = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", "--quiet", "--out", str(d), *RUN]) == 0
    (d / "summary.json").unlink()
    return d


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/gossiplab_surfaces_pwned",))


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


RUN_DAMAGE = {
    "config.json broken JSON": lambda d: (d / "config.json").write_text('{"config": '),
    "config.json not UTF-8": lambda d: (d / "config.json").write_bytes(b'{"config": "\xff"}'),
    "config.json a list": lambda d: (d / "config.json").write_text("[1, 2]"),
    "config.json without hash": lambda d: (d / "config.json").write_text('{"config": {}}'),
    "config.json a FIFO": lambda d: ((d / "config.json").unlink(), _fifo(d / "config.json")),
    "config.json nested deep": lambda d: (d / "config.json").write_text("[" * 100000 + "]" * 100000),
    "checkpoint random bytes": lambda d: [p.write_bytes(os.urandom(999)) for p in d.rglob("*.pt")],
    "checkpoint truncated": lambda d: [p.write_bytes(p.read_bytes()[:500]) for p in d.rglob("*.pt")],
    "checkpoint a pickle of code": lambda d: [p.write_bytes(pickle.dumps({"x": _Evil()}, protocol=2))
                                              for p in d.rglob("*.pt")],
    "checkpoint a torch.save of code": lambda d: [torch.save({"x": _Evil()}, p) for p in d.rglob("*.pt")],
    "checkpoint a FIFO": lambda d: [(p.unlink(), _fifo(p)) for p in d.rglob("*.pt")],
    "checkpoint another format": lambda d: [torch.save({"format": "x"}, p) for p in d.rglob("*.pt")],
    # well-formed checkpoints holding values no run writes (resumed silently before, or tracebacks)
    "params a scalar": lambda d: _edit_checkpoints(
        d, lambda s: s["sim"].update(params=torch.tensor(0.0))),
    "params one row": lambda d: _edit_checkpoints(
        d, lambda s: s["sim"].update(params=s["sim"]["params"][0])),
    "params int64": lambda d: _edit_checkpoints(
        d, lambda s: s["sim"].update(params=s["sim"]["params"].long())),
    "params NaN": lambda d: _edit_checkpoints(d, lambda s: s["sim"]["params"].fill_(float("nan"))),
    "iteration -5": lambda d: _edit_checkpoints(d, lambda s: (s.update(iteration=-5),
                                                              s["sim"].update(iteration=-5))),
    "iteration 1e12": lambda d: _edit_checkpoints(d, lambda s: (s.update(iteration=10**12),
                                                                s["sim"].update(iteration=10**12))),
    "status unknown": lambda d: _edit_checkpoints(d, lambda s: s["result"].update(status="banana")),
    "sampler cursor a list": lambda d: _edit_checkpoints(
        d, lambda s: s["sim"]["sampler"].update(cursor=[1, 2])),
    "history of numbers": lambda d: _edit_checkpoints(d, lambda s: s["result"].update(history=[1, 2, 3])),
    "history of empty records": lambda d: _edit_checkpoints(d, lambda s: s["result"].update(history=[{}])),
    "ledger counts of another shape": lambda d: _edit_checkpoints(
        d, lambda s: s["sim"]["ledger"].update(messages=[1])),
    "algorithm a 5,000-character name": lambda d: _edit_checkpoints(
        d, lambda s: s.update(algorithm="x" * 5000)),
}


def _edit_checkpoints(d: Path, edit) -> None:
    from gossiplab.checkpoint import load_checkpoint, save_checkpoint

    p = d / "checkpoints" / "centralized.pt"  # the algorithm that trains last
    if p.exists():
        state = load_checkpoint(p)
        state["done"] = False  # so that resuming restores the training state
        edit(state)
        save_checkpoint(p, state)


@pytest.mark.parametrize("damage", list(RUN_DAMAGE))
def test_damaged_run_folders_on_resume(capsys, tmp_path, interrupted_run, damage):
    d = _copy(interrupted_run, tmp_path / "out")
    assert list(d.rglob("*.pt")), "the interrupted run has checkpoints"
    RUN_DAMAGE[damage](d)
    _, err, _ = call(capsys, ["run", "--quiet", "--out", str(d), "--resume", *RUN],
                     "run folders and checkpoints")
    assert not (d / "summary.json").exists()
    assert len(err) < 600, "a stored value is not echoed whole"
    assert not os.path.exists("/tmp/gossiplab_surfaces_pwned")


STAB = ["--set", "engine.threads=1", "--set", "topology.nodes=4", "--set", "data.samples_per_node=20",
        "--set", "optim.batch_size=4", "--set", "train.iterations=20", "--set", "eval.every=10",
        "--set", "model.hidden=[8]", "--set", "stability.hessian_points=0",
        "--set", "stability.reference_iterations=0", "--set", "stability.record_points=3"]


@pytest.fixture(scope="module")
def stability_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("stab") / "q1"
    assert main(["stability", "--quiet", "-K", "2", "--out", str(d), *STAB]) == 0
    return d


def _edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _edit_twins(path: Path, edit=lambda rec: rec.pop("avg_dist", None)) -> None:
    lines = path.read_text().splitlines()
    out = []
    for ln in lines:
        rec = json.loads(ln)
        if rec.get("kind") == "twins":
            edit(rec)
        out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")


def _edit_iterations(d: Path, t) -> None:
    _edit_json(d / "config.json", lambda c: {**c, "config": {**c["config"], "train": {
        **c["config"]["train"], "iterations": t}}})


STAB_DAMAGE = {
    "summary.json broken JSON": lambda d: (d / "summary.json").write_text('{"kind": "stab'),
    "summary.json not UTF-8": lambda d: (d / "summary.json").write_bytes(b'{"kind": "\xff"}'),
    "summary.json a list": lambda d: (d / "summary.json").write_text("[]"),
    "summary.json without stability": lambda d: _edit_json(d / "summary.json",
                                                           lambda s: {**s, "stability": None}),
    "summary.json wrong types": lambda d: _edit_json(d / "summary.json",
                                                     lambda s: {**s, "theory": {"n": "many"}}),
    "summary.json a FIFO": lambda d: ((d / "summary.json").unlink(), _fifo(d / "summary.json")),
    "config.json broken JSON": lambda d: (d / "config.json").write_text("{"),
    "config.json sections not tables": lambda d: _edit_json(d / "config.json",
                                                            lambda c: {**c, "config": {"a": 1}}),
    "stability.jsonl broken line": lambda d: (d / "stability.jsonl").write_text(
        (d / "stability.jsonl").read_text() + '{"kind": "tw\n'),
    "stability.jsonl not UTF-8": lambda d: (d / "stability.jsonl").write_bytes(b"\xff\xfe\n"),
    "stability.jsonl twins with string iteration": lambda d: (d / "stability.jsonl").write_text(
        '{"kind": "twins", "iteration": "3", "algorithm": "dsgd_mgs"}\n'),
    "stability.jsonl twins missing a field": lambda d: _edit_twins(d / "stability.jsonl"),
    "stability.jsonl huge": lambda d: os.truncate(d / "stability.jsonl", 300 << 20),
    # read as "not enough points" before, never as damage
    "config.json iterations -5": lambda d: _edit_iterations(d, -5),
    "config.json iterations 1e30": lambda d: _edit_iterations(d, 10**30),
    "stability.jsonl twins at iteration -3": lambda d: _edit_twins(
        d / "stability.jsonl", lambda rec: rec.update(iteration=-3)),
    "stability.jsonl NaN distances": lambda d: _edit_twins(
        d / "stability.jsonl", lambda rec: rec.update(avg_dist=[float("nan")])),
}


@pytest.mark.parametrize("damage", list(STAB_DAMAGE))
def test_damaged_stability_folders_for_theory(capsys, tmp_path, stability_run, damage):
    d = _copy(stability_run, tmp_path / "q1")
    STAB_DAMAGE[damage](d)
    out = tmp_path / "theory"
    _, err, _ = call(capsys, ["theory", str(d), "--out", str(out), "--quiet"], "stability folders",
                     out=out)
    assert "no `gossiplab stability` results found" not in err, "a damaged folder is reported as damaged"


@pytest.mark.parametrize("argv", [["stability", "-K", "1e9"], ["bogus"], ["topology", "ring", "-Q", "x"],
                                  ["run", "--checkpoint-every", "-3"], ["sweep", "--jobs", "many"],
                                  ["packs", "", "--path"]])
def test_command_line_mistakes_are_one_line(capsys, argv):
    """argparse prints its usage before the error; gossiplab's parser says it in one line."""
    call(capsys, argv, "config files and --set")


@pytest.mark.parametrize("option", [["--jobs", "100000"], ["--threads", "100000"], ["--lease", "nan"],
                                    ["--lease", "inf"], ["--lease", "1e308"], ["--lease", "3"],
                                    ["--seeds", "1000000"]])
def test_sweep_options_out_of_range(capsys, tmp_path, option):
    """Refused up front, --dry-run too (100,000 workers ran out of files; --seeds counts with
    the grid: 10 values x 10^6 seeds expanded 10^7 points before)."""
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nname = "s"\n' + TINY + '[grid]\n"optim.lr" = '
                 + str([0.1 * i for i in range(1, 11)]) + "\n")
    db = tmp_path / "r.sqlite"
    _, err, _ = call(capsys, ["sweep", str(f), "--db", str(db), "--dry-run", *option], "sweep files")
    assert option[0] in err
    assert not db.exists()


def test_where_one_does_not_select_true(capsys, tmp_path):
    """1 == True in Python; as a sweep value 1 is not true."""
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nname = "s"\n' + TINY + '[grid]\n"data.augment" = [true, false]\n')
    _, err, _ = call(capsys, ["sweep", str(f), "--dry-run", "--db", str(tmp_path / "r.sqlite"),
                              "--where", "data.augment=1"], "sweep files")
    assert "not among its values" in err


@pytest.mark.parametrize("command", ["run", "report", "sweep"])
def test_a_file_name_too_long_is_one_line(capsys, tmp_path, command):
    long = tmp_path / ("c" * 300)
    argv = {"run": ["run", "--quiet", "--set", "train.iterations=2", "--out", str(long)],
            "report": ["report", f"{long}.sqlite"],
            "sweep": ["sweep", "--pack", "quick-digits-q", "--dry-run", "--db", f"{long}.sqlite"]}
    _, err, _ = call(capsys, argv[command], "config files and --set")
    assert "too long" in err and len(err) < 300


@pytest.mark.parametrize("cmd", [["-n", "100000", "run", "--engine", "distributed"],
                                 ["-n", "2", "run", "--quiet"],
                                 ["-n", "2", "run", "--engine", "simulator"],
                                 ["-n", "2", "launch", "-n", "2", "run", "--engine", "distributed"],
                                 ["-n", "2", "report", "x.sqlite"],
                                 ["-n", "2", "run", "--config", "CONFIG"]])
def test_launch_refuses_what_is_not_one_distributed_run(capsys, tmp_path, cmd):
    """N copies of a simulator run raced on one --out, nested launchers multiplied, and 100,000
    ranks hung: refused before any process starts."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nname = "simulator"\n')
    argv = ["launch", *[str(cfg) if a == "CONFIG" else a for a in cmd], "--out", str(tmp_path / "o")]
    call(capsys, argv, "config files and --set")
    assert not (tmp_path / "o").exists()


def test_launch_reads_the_engine_from_the_config_file(tmp_path):
    from gossiplab.commands.launch import _not_distributed

    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nname = "distributed"\n')
    assert _not_distributed(["run", "--config", str(cfg)]) is None
    assert _not_distributed(["run", "-c", str(cfg), "--quiet"]) is None
    assert _not_distributed(["run", "--set", "engine.name=distributed"]) is None
    assert _not_distributed(["run", "--engine=distributed"]) is None
    assert _not_distributed(["run", "--engine", "simulator"]) is not None


def test_stability_twins_are_counted_in_the_memory_check(capsys, tmp_path):
    """K = 100,000 is allowed, but K + 1 twins of m models must fit: refused before anything is
    allocated or written (was an allocation failure's traceback after config.json)."""
    out = tmp_path / "out"
    _, err, _ = call(capsys, ["stability", "--quiet", "-K", "100000", "--out", str(out), *STAB,
                              "--set", "model.hidden=[512, 512]"], "stability folders", out=out)
    assert "twins" in err and not out.exists()


def test_stability_perturbations_bounded(capsys, tmp_path):
    out = tmp_path / "out"
    call(capsys, ["stability", "--quiet", "-K", "1000000000", "--out", str(out)], "stability folders",
         out=out)


def test_fifo_results_are_never_opened_for_reading_blocking(tmp_path):
    """Sanity of the FIFO helper itself: it is a FIFO (the cases above would hang otherwise)."""
    assert stat.S_ISFIFO(_fifo(tmp_path / "f").stat().st_mode)
