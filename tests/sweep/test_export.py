"""Exporting a results store to CSV (and Parquet when pyarrow is installed)."""

import csv
import importlib.util

import pytest

from gossiplab.sweep.export import export
from gossiplab.sweep.spec import parse_sweep
from gossiplab.sweep.store import Owner, ResultsStore

from .helpers import gl
from .test_store import ok_payload


@pytest.fixture
def db(tmp_path):
    spec = parse_sweep({"sweep": {"name": "e", "seeds": 2, "baseline": True},
                        "grid": {"algorithm.gossip_steps": [1, 4]}})
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as st:
        st.register_sweep(spec, spec.expand().points)
        me = Owner.me()
        first = st.runs()[0]["id"]
        st.claim(first, me)
        st.finish(first, me, ok_payload((0, 10, 20)))
    return path


def test_csv_has_one_row_per_run_and_per_evaluation(db, tmp_path):
    r = gl("export", str(db), "--out", str(tmp_path / "ex"))
    assert r.returncode == 0, r.stderr
    runs = list(csv.DictReader((tmp_path / "ex" / "runs.csv").read_text().splitlines()))
    assert len(runs) == 6
    assert {"id", "status", "config.algorithm.gossip_steps", "config.seeds.data",
            "torch_version"} <= set(runs[0])
    done = [x for x in runs if x["status"] == "ok"]
    assert len(done) == 1 and float(done[0]["final.avg_model.test_acc"]) == pytest.approx(0.7)
    metrics = list(csv.DictReader((tmp_path / "ex" / "metrics.csv").read_text().splitlines()))
    assert [int(m["iteration"]) for m in metrics] == [0, 10, 20]
    assert {m["run_id"] for m in metrics} == {done[0]["id"]}


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed")
def test_parquet(db, tmp_path):
    import pyarrow.parquet as pq

    export(db, tmp_path / "pq", "parquet")
    assert pq.read_table(tmp_path / "pq" / "runs.parquet").num_rows == 6


def test_bad_format_is_a_one_line_error(db, tmp_path):
    r = gl("export", str(db), "--format", "xlsx", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown format 'xlsx'" in r.stderr


def test_times_are_iso_utc_and_baselines_leave_ignored_keys_empty(db, tmp_path):
    from datetime import datetime

    export(db, tmp_path / "iso")
    runs = list(csv.DictReader((tmp_path / "iso" / "runs.csv").read_text().splitlines()))
    for row in runs:
        created = datetime.fromisoformat(row["created"])  # ISO 8601 ...
        assert row["created"].endswith("Z") and created.utcoffset().total_seconds() == 0  # ... UTC
    done = next(x for x in runs if x["status"] == "ok")
    assert done["started"].endswith("Z") and done["ended"] >= done["started"]
    central = [x for x in runs if x["algorithm"] == "centralized"]
    dsgd = [x for x in runs if x["algorithm"] != "centralized"]
    assert central and dsgd
    for row in central:  # a centralized run has no topology and no gossip steps
        assert row["config.topology.name"] == "" and row["config.algorithm.gossip_steps"] == ""
        assert row["config.topology.nodes"] != ""  # m still shapes its batch
    assert {x["config.algorithm.gossip_steps"] for x in dsgd} == {"1", "4"}
    assert all(x["config.topology.name"] for x in dsgd)
