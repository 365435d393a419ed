"""Export a results store to flat tables: ``runs`` (one row per run: status, provenance, every
config key as ``config.<section>.<key>``, final metrics as ``final.<metric>``) and ``metrics``
(one row per run and evaluation, every record field flattened). CSV always; Parquet when pyarrow
is installed (``pip install 'gossiplab[parquet]'``).

Times (created, started, ended) are ISO 8601 in UTC. A config key a run ignores (a centralized
run's topology and gossip keys, local SGD's topology: :func:`gossiplab.sweep.spec.ignores`) is
exported empty, not as the default value it was normalised to."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gossiplab.errors import UserError
from gossiplab.fileio import atomic_write, atomic_write_text
from gossiplab.sweep.spec import flatten, ignores
from gossiplab.sweep.store import ResultsStore

RUN_FIELDS = ("id", "status", "algorithm", "error", "diverged_at", "attempts", "created", "started",
              "ended", "wall_seconds", "gossiplab_version", "torch_version", "python_version", "host",
              "threads")
FORMATS = ("csv", "parquet")
TIME_FIELDS = ("created", "started", "ended")


def iso_utc(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC with milliseconds (``2026-12-01T02:05:09.123Z``)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def run_rows(store: ResultsStore, sweep_ids: list[int] | None = None) -> list[dict[str, Any]]:
    rows = []
    for r in store.runs(sweep_ids):
        row = {k: (iso_utc(r[k]) if k in TIME_FIELDS else r[k]) for k in RUN_FIELDS}
        config = json.loads(r["config"])
        row.update({f"config.{k}": (None if ignores(config, k) else
                                    json.dumps(v) if isinstance(v, list) else v)
                    for k, v in flatten(config).items()})
        summary = json.loads(r["summary"]) if r["summary"] else {}
        row.update({f"final.{k}": v for k, v in flatten(summary.get("final") or {}).items()})
        rows.append(row)
    return rows


def metric_rows(store: ResultsStore, run_ids: list[str]) -> list[dict[str, Any]]:
    return [{"run_id": m["run_id"], **flatten(json.loads(m["record"]))} for m in store.metrics(run_ids)]


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def write_table(rows: list[dict[str, Any]], path: Path, fmt: str) -> None:
    cols = _columns(rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(path, buf.getvalue())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows])
    atomic_write(path, lambda f: pq.write_table(table, f))


def export(db: str | Path, out: str | Path, fmt: str = "csv", sweep: str | None = None) -> list[Path]:
    if fmt not in FORMATS:
        raise UserError(f"--format: unknown format '{fmt}' (one of: {', '.join(FORMATS)})")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError("--format parquet needs pyarrow: pip install 'gossiplab[parquet]'") from None
    out = Path(out)
    with ResultsStore(db, create=False) as store:
        ids = store.sweep_ids(sweep)
        runs = run_rows(store, ids)
        metrics = metric_rows(store, [r["id"] for r in runs])
    written = []
    for name, rows in (("runs", runs), ("metrics", metrics)):
        path = out / f"{name}.{fmt}"
        write_table(rows, path, fmt)
        written.append(path)
    return written
