"""The results store: one SQLite file (WAL mode), the single source for reports and exports.

Tables
* ``runs``: one row per run, keyed by the hash of its resolved config: the config as JSON, one
  indexed column per swept key (named like the key, e.g. ``"algorithm.gossip_steps"``; NULL where
  a centralized run ignores the key), status (pending | running | ok | diverged | failed), error,
  diverged_at, claim owner and lease, start/end time, package/torch/python versions, host.
* ``metrics``: one row per (run, evaluation): the main metrics as columns, the whole record as JSON.
* ``summaries``: one row per finished run: final metrics as columns and the run's summary as JSON.
* ``sweeps`` / ``sweep_runs``: each sweep file seen (its text) and the runs it asked for.

Safety. Every change is one transaction (``BEGIN IMMEDIATE``), so killing a process at any moment
(kill -9 included) leaves the file consistent: a run's metrics, summary and final status land
together or not at all. Runs are claimed atomically: a claim sets status 'running' with an owner
(host, pid, process start time) and a lease that the owner renews; a claim whose lease expired, or
whose owner process on this host is gone, can be taken over. Two sweeps sharing a file therefore
never run the same config twice at the same time and never write a run twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossiplab.catalogue import CATALOGUE, STORE_COLUMNS
from gossiplab.errors import UserError
from gossiplab.sweep.spec import SweepPoint, SweepSpec, get_dotted, param_value

SCHEMA_VERSION = 1
FINISHED = ("ok", "diverged", "failed")
STATUSES = ("pending", "running", *FINISHED)
DEFAULT_LEASE = 120.0  # seconds a claim stays valid without renewal

# metric columns: column name -> path in an evaluation record (from the metric catalogue)
METRIC_COLUMNS = {name: CATALOGUE[name][0] for name in STORE_COLUMNS}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'ok', 'diverged', 'failed')),
    error TEXT,
    traceback TEXT,
    diverged_at INTEGER,
    owner TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    wall_seconds REAL,
    gossiplab_version TEXT,
    torch_version TEXT,
    python_version TEXT,
    host TEXT,
    threads INTEGER,
    setup TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (id),
    iteration INTEGER NOT NULL,
    {metric_columns},
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, iteration)
);
CREATE TABLE IF NOT EXISTS summaries (
    run_id TEXT PRIMARY KEY REFERENCES runs (id),
    {metric_columns},
    eval_seconds REAL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    file TEXT,
    source TEXT,
    spec TEXT NOT NULL,
    axes TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (name, spec_hash)
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    run_id TEXT NOT NULL REFERENCES runs (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, run_id)
);
""".replace("{metric_columns}", ",\n    ".join(f"{c} REAL" for c in METRIC_COLUMNS))

_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def _col(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ValueError(f"not a config key: {key!r}")
    return f'"{key}"'


def _sql_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return json.dumps(v)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def metric_values(record: dict[str, Any] | None) -> list[float | None]:
    return [_num(get_dotted(record or {}, path)) for path in METRIC_COLUMNS.values()]


# -- claim owners ---------------------------------------------------------------------------------


def _start_ticks(pid: int) -> str | None:
    """Process start time (clock ticks since boot) from /proc, to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _start_ticks(os.getpid()) or "?")

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.start}"

    @classmethod
    def parse(cls, s: str | None) -> Owner | None:
        try:
            host, pid, start = (s or "").rsplit("/", 2)
            return cls(host, int(pid), start)
        except ValueError:
            return None

    def is_gone(self) -> bool:
        """True only when this owner is certainly dead: a process on this host that no longer
        exists (or whose pid now belongs to another process). Owners on other hosts are judged by
        their lease alone."""
        if self.host != socket.gethostname():
            return False
        if self.start != "?":
            return _start_ticks(self.pid) != self.start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False


# -- the store -----------------------------------------------------------------------------------


def safe_sqlite_message(e: BaseException) -> str:
    """SQLite's message without any stored text it quotes ("... with text '...'")."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return msg.split(" with text ", 1)[0][:200]


class ResultsStore:
    """A results file. Use as a context manager; one instance per process/thread."""

    def __init__(self, path: str | Path, *, create: bool = True, busy_timeout: float = 60.0):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise UserError(f"results file not found: {self.path}")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create {self.path.parent}: {e.strerror or e}") from e
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"{self.path}: not a results store (not a regular file)")
        try:
            self.db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a readable SQLite results file "
                            f"({safe_sqlite_message(e)})") from None
        except UnicodeDecodeError as e:  # a damaged schema table
            raise UserError(f"{self.path}: damaged results store: its table list is not UTF-8 "
                            f"(byte {e.start})") from None
        if tables and "meta" not in tables:
            raise UserError(f"{self.path}: an SQLite file but not a gossiplab results store")
        if not tables:
            if not create:
                raise UserError(f"{self.path}: empty file, not a gossiplab results store")
            with self.transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
        if not create:  # a reader (report, export, --dry-run): refuse a damaged file up front
            self.check_damage()
        version = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is not None and not str(version[0]).strip().isdigit():
            raise UserError(f"{self.path}: damaged results store: its schema version is not a number")
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise UserError(f"{self.path}: results store schema {version and version[0]} is newer "
                            f"than this gossiplab understands ({SCHEMA_VERSION})")

    def close(self) -> None:
        self.db.close()

    JSON_COLUMNS = {"runs": ("config",), "metrics": ("record",), "summaries": ("summary",),
                    "sweeps": ("spec", "axes")}
    # the JSON type each JSON column holds (a store written by gossiplab never holds another)
    JSON_TYPES = {"config": dict, "record": dict, "summary": dict, "spec": dict, "axes": list}

    @staticmethod
    def _json_shape_problem(name: str, value: Any) -> str | None:
        """What is wrong with the parsed JSON of column ``name``, or None."""
        want = ResultsStore.JSON_TYPES.get(name)
        if want is not None and not isinstance(value, want):
            return f"holds a JSON {type(value).__name__}, not a JSON " \
                   f"{'object' if want is dict else 'array'}"
        if name == "config" and any(not isinstance(v, dict) for v in value.values()):
            return "holds a config whose sections are not all tables"
        if name == "config" and not {"algorithm", "topology", "train"} <= set(value):
            return "holds a config without its algorithm, topology and train sections"
        if name == "record" and not isinstance(value.get("iteration", 0), int):
            return "holds a record whose iteration is not an integer"
        if name in ("record", "summary") and any(
                k in value and not isinstance(value[k], dict) for k in ("avg_model", "final", "nodes")):
            return "holds a record whose model scores are not tables"
        return None

    def check_damage(self) -> None:
        """Refuse a damaged store with one line naming the file and what is wrong (never the
        stored text): SQLite's own check, the tables of the schema, every text value UTF-8,
        every JSON column valid JSON."""
        import re

        where = f"{self.path}: damaged results store"
        try:
            bad = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if bad != "ok":
                raise UserError(f"{where} (SQLite's check: {str(bad).splitlines()[0][:160]})")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            need = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA)
            missing = [t for t in need if t not in tables]
            if missing:
                raise UserError(f"{where}: table(s) {', '.join(missing)} missing")
            self.db.text_factory = bytes
            try:
                for table in need:
                    json_cols = self.JSON_COLUMNS.get(table, ())
                    numeric = {str(r[1], "utf-8", "replace")
                               for r in self.db.execute(f"PRAGMA table_info({table})")
                               if str(r[2], "ascii", "replace").upper() in ("REAL", "INTEGER")}
                    cur = self.db.execute(f"SELECT rowid, * FROM {table}")  # noqa: S608 - schema names
                    names = [d[0] for d in cur.description]
                    for row in cur:
                        for name, value in zip(names, row, strict=True):
                            if not isinstance(value, bytes):
                                continue
                            at = f"{table}.{name}, row {row[0]}"
                            if name in numeric:  # text where the schema has a number
                                raise UserError(f"{where}: {at} holds text, not a number")
                            try:
                                text = value.decode("utf-8")
                            except UnicodeDecodeError as e:
                                raise UserError(f"{where}: {at} is not UTF-8 text (byte {e.start})"
                                                ) from None
                            if name in json_cols:
                                try:
                                    problem = self._json_shape_problem(name, json.loads(text))
                                except ValueError as e:
                                    pos = (f" (line {e.lineno}, column {e.colno})"
                                           if isinstance(e, json.JSONDecodeError) else "")
                                    raise UserError(f"{where}: {at} is not valid JSON{pos}") from None
                                except RecursionError:
                                    raise UserError(f"{where}: {at} is JSON nested too deeply") from None
                                if problem:
                                    raise UserError(f"{where}: {at} {problem}")
            finally:
                self.db.text_factory = str
        except sqlite3.DatabaseError as e:
            raise UserError(f"{where} ({safe_sqlite_message(e)})") from None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front (no deadlock on lock upgrade)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- columns ---------------------------------------------------------------------------------

    def key_columns(self) -> list[str]:
        cols = [r["name"] for r in self.db.execute("PRAGMA table_info(runs)")]
        return [c for c in cols if "." in c]

    def _ensure_key_columns(self, db: sqlite3.Connection, keys: Iterable[str]) -> None:
        have = set(self.key_columns())
        for key in keys:
            if key in have:
                continue
            col = _col(key)
            db.execute(f"ALTER TABLE runs ADD COLUMN {col}")
            index = "runs_" + key.replace(".", "__")
            db.execute(f'CREATE INDEX IF NOT EXISTS "{index}" ON runs ({col})')
            # back-fill runs stored before this key was swept
            for row in db.execute("SELECT id, config FROM runs").fetchall():
                value = _sql_value(param_value(json.loads(row["config"]), key))
                db.execute(f"UPDATE runs SET {col} = ? WHERE id = ?", (value, row["id"]))
            have.add(key)

    # -- sweeps ----------------------------------------------------------------------------------

    def register_sweep(self, spec: SweepSpec, points: list[SweepPoint]) -> int:
        """Record the sweep and insert every point not yet known as a 'pending' run."""
        now = time.time()
        keys = spec.indexed_keys()
        with self.transaction() as db:
            self._ensure_key_columns(db, keys)
            db.execute(
                "INSERT OR IGNORE INTO sweeps (name, spec_hash, file, source, spec, axes, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.name, spec.spec_hash(), spec.path, spec.source, json.dumps(spec.to_json()),
                 json.dumps(spec.axes()), now))
            sweep_id = db.execute("SELECT id FROM sweeps WHERE name = ? AND spec_hash = ?",
                                  (spec.name, spec.spec_hash())).fetchone()[0]
            cols = ", ".join(_col(k) for k in keys)
            marks = ", ".join("?" for _ in keys)
            for pos, p in enumerate(points):
                resolved = p.config.to_dict()
                db.execute(
                    f"INSERT OR IGNORE INTO runs (id, algorithm, config, status, created, {cols}) "
                    f"VALUES (?, ?, ?, 'pending', ?, {marks})",
                    (p.run_id, p.algorithm, json.dumps(resolved, sort_keys=True), now,
                     *[_sql_value(param_value(resolved, k)) for k in keys]))
                db.execute("INSERT OR IGNORE INTO sweep_runs VALUES (?, ?, ?)", (sweep_id, p.run_id, pos))
        return sweep_id

    def sweeps(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM sweeps ORDER BY id")]

    def sweep_ids(self, name: str | None) -> list[int] | None:
        """Ids of the sweeps called ``name`` (None = all)."""
        if name is None:
            return None
        ids = [r[0] for r in self.db.execute("SELECT id FROM sweeps WHERE name = ?", (name,))]
        if not ids:
            known = ", ".join(sorted({s["name"] for s in self.sweeps()})) or "none"
            raise UserError(f"{self.path}: no sweep named '{name}' (known: {known})")
        return ids

    # -- claims ----------------------------------------------------------------------------------

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        ids = list(run_ids)
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT id, status FROM runs WHERE id IN ({', '.join('?' for _ in chunk)})"
            out.update({r[0]: r[1] for r in self.db.execute(q, chunk)})
        return out

    def claim(self, run_id: str, owner: Owner, lease: float = DEFAULT_LEASE,
              retry_failed: bool = False) -> str:
        """Try to take a run. Returns 'claimed', 'finished' (nothing to do) or 'busy' (a live claim
        by another process)."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT status, owner, lease_until FROM runs WHERE id = ?",
                             (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            status = row["status"]
            if status in ("ok", "diverged") or (status == "failed" and not retry_failed):
                return "finished"
            if status == "running" and row["owner"] != str(owner):
                other = Owner.parse(row["owner"])
                if (row["lease_until"] or 0) > now and not (other and other.is_gone()):
                    return "busy"
            db.execute("UPDATE runs SET status = 'running', owner = ?, lease_until = ?, "
                       "attempts = attempts + 1, started = ?, error = NULL, traceback = NULL "
                       "WHERE id = ?", (str(owner), now + lease, now, run_id))
        return "claimed"

    def renew(self, owner: Owner, run_ids: Iterable[str], lease: float = DEFAULT_LEASE) -> None:
        ids = list(run_ids)
        if not ids:
            return
        with self.transaction() as db:
            db.executemany("UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ? "
                           "AND status = 'running'",
                           [(time.time() + lease, i, str(owner)) for i in ids])

    def release(self, owner: Owner, run_ids: Iterable[str]) -> None:
        """Give claims back (interrupted sweep): the runs become pending again."""
        ids = list(run_ids)
        if not ids:
            return
        with self.transaction() as db:
            db.executemany("UPDATE runs SET status = 'pending', owner = NULL, lease_until = NULL "
                           "WHERE id = ? AND owner = ? AND status = 'running'",
                           [(i, str(owner)) for i in ids])

    def finish(self, run_id: str, owner: Owner, payload: dict[str, Any]) -> bool:
        """Store a run's outcome, metrics and summary in one transaction. Returns False (and
        writes nothing) when this owner no longer holds the claim (it expired and another process
        took the run over)."""
        env = payload.get("environment") or {}
        summary = payload.get("summary")
        final = (summary or {}).get("final")
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE runs SET status = ?, error = ?, traceback = ?, diverged_at = ?, owner = NULL, "
                "lease_until = NULL, started = ?, ended = ?, wall_seconds = ?, gossiplab_version = ?, "
                "torch_version = ?, python_version = ?, host = ?, threads = ?, setup = ? "
                "WHERE id = ? AND owner = ? AND status = 'running'",
                (payload["status"], payload.get("error"), payload.get("traceback"),
                 payload.get("diverged_at"), payload.get("started"), payload.get("ended"),
                 payload.get("wall_seconds"), env.get("gossiplab"), env.get("torch"),
                 env.get("python"), env.get("host"), env.get("threads"),
                 json.dumps(payload.get("setup")) if payload.get("setup") else None,
                 run_id, str(owner)))
            if cur.rowcount != 1:
                return False
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM summaries WHERE run_id = ?", (run_id,))
            cols = ", ".join(METRIC_COLUMNS)
            marks = ", ".join("?" for _ in METRIC_COLUMNS)
            db.executemany(
                f"INSERT INTO metrics (run_id, iteration, {cols}, record) VALUES (?, ?, {marks}, ?)",
                [(run_id, int(r["iteration"]), *metric_values(r), json.dumps(r))
                 for r in payload.get("history") or []])
            if summary is not None:
                db.execute(
                    f"INSERT INTO summaries (run_id, {cols}, eval_seconds, summary) "
                    f"VALUES (?, {marks}, ?, ?)",
                    (run_id, *metric_values(final),
                     (summary.get("runs", {}).get(summary.get("algorithm"), {}) or {}).get("eval_seconds"),
                     json.dumps(summary)))
        return True

    # -- reading ---------------------------------------------------------------------------------

    def _where(self, sweep_ids: list[int] | None, statuses: Iterable[str] | None) -> tuple[str, list]:
        clauses, args = [], []
        if sweep_ids is not None:
            clauses.append(f"runs.id IN (SELECT run_id FROM sweep_runs WHERE sweep_id IN "
                           f"({', '.join('?' for _ in sweep_ids)}))")
            args += sweep_ids
        if statuses is not None:
            st = list(statuses)
            clauses.append(f"runs.status IN ({', '.join('?' for _ in st)})")
            args += st
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def runs(self, sweep_ids: list[int] | None = None,
             statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Runs joined with their final summary (None for unfinished runs), in creation order."""
        where, args = self._where(sweep_ids, statuses)
        cols = ", ".join(f"summaries.{c} AS final_{c}" for c in METRIC_COLUMNS)
        q = (f"SELECT runs.*, {cols}, summaries.summary AS summary FROM runs "
             f"LEFT JOIN summaries ON summaries.run_id = runs.id{where} ORDER BY runs.created, runs.rowid")
        return [dict(r) for r in self.db.execute(q, args)]

    def metrics(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        if run_ids is None:
            q, args = "SELECT * FROM metrics ORDER BY run_id, iteration", []
            return [dict(r) for r in self.db.execute(q, args)]
        ids = list(run_ids)
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = (f"SELECT * FROM metrics WHERE run_id IN ({', '.join('?' for _ in chunk)}) "
                 "ORDER BY run_id, iteration")
            out += [dict(r) for r in self.db.execute(q, chunk)]
        return out

    def counts(self, sweep_ids: list[int] | None = None) -> dict[str, int]:
        where, args = self._where(sweep_ids, None)
        rows = self.db.execute(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", args)
        return {r[0]: r[1] for r in rows}

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
