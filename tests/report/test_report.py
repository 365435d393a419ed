"""The report from a small real sweep: every figure rendered (PNG + SVG), the HTML page references
only files that exist, tables and the sweep file are on the page; aggregation over seeds."""

import json
import re

import pytest
from rich.console import Console

from gossiplab.errors import UserError
from gossiplab.report.build import build_report
from gossiplab.report.data import aggregate
from gossiplab.report.figures import FIGURES
from gossiplab.sweep.executors import LocalExecutor
from gossiplab.sweep.scheduler import run_sweep
from gossiplab.sweep.spec import load_sweep
from gossiplab.sweep.store import ResultsStore
from sweep.helpers import gl, write_sweep  # tests/ is on sys.path (rootdir conftest)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Q x topology (Q = 0 runs once for both topologies), the baseline, two seeds, and
    lr/m/n/alpha/b varied together (one zip)."""
    tmp = tmp_path_factory.mktemp("rep")
    f = write_sweep(tmp / "small.toml", """
        [grid]
        "algorithm.gossip_steps" = [0, 4]
        "topology.name" = ["ring", "complete"]
        [[zip]]
        "optim.lr" = [0.05, 0.1]
        "topology.nodes" = [4, 6]
        "data.samples_per_node" = [40, 60]
        "data.alpha" = [0.3, 3.0]
        "optim.batch_size" = [8, 4]
    """, sweep="seeds = 2\nbaseline = true", iterations=40, every=20, name="small")
    db = tmp / "r.sqlite"
    with ResultsStore(db) as store:
        out = run_sweep(load_sweep(f), store, LocalExecutor(jobs=2, threads=1), console=Console(quiet=True))
    assert out.complete and out.final == {"ok": 16}
    return db


def test_every_figure_is_rendered_and_the_page_references_only_existing_files(results, tmp_path):
    rep = build_report(results, tmp_path / "out")
    assert rep.skipped == [], rep.skipped
    names = {f["name"] for f in rep.figures}
    assert names == set(FIGURES)
    for f in rep.figures:
        for key in ("png", "svg"):
            p = rep.out / f[key]
            assert p.stat().st_size > 5000, p
        assert (rep.out / f["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (rep.out / f["svg"]).read_text().lstrip().startswith(("<?xml", "<svg"))
    page = rep.html.read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    local = [r for r in refs if not r.startswith(("data:", "#", "http:", "https:"))]
    assert len(local) == 2 * len(rep.figures)
    for r in local:
        assert (rep.out / r).is_file(), r
    assert page.count("data:image/png;base64,") == len(rep.figures)  # self-contained
    for a in re.findall(r'href="#([^"]+)"', page):
        assert f'id="{a}"' in page
    # the tables and the sweep file are on the page
    assert "Results by configuration" in page and "ring" in page and "centralized" in page
    assert '&quot;algorithm.gossip_steps&quot; = [0, 4]' in page
    data = json.loads((rep.out / "report.json").read_text())
    assert data["status_counts"] == {"ok": 16}
    assert "algorithm.gossip_steps" in data["varied"] and "optim.lr" in data["varied"]
    row = next(r for r in data["summary"] if r["config"]["algorithm.name"] == "centralized")
    assert row["seeds"] == 2 and 0 < row["test_acc"]["mean"] <= 1


def test_figures_the_axes_do_not_support_are_skipped_with_a_reason(results, tmp_path):
    f = write_sweep(tmp_path / "q.toml", """
        [grid]
        "topology.name" = ["ring", "torus"]
    """, sweep="seeds = 1", iterations=20, every=10, name="notq")
    db = tmp_path / "r.sqlite"
    assert gl("sweep", str(f), "--db", str(db), "--threads", "1").returncode == 0
    r = gl("report", str(db), "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    skipped = {s["name"]: s["reason"] for s in rep["skipped"]}
    assert "q_accuracy_gap" in skipped and "gossip steps Q" in skipped["q_accuracy_gap"]
    assert "was not varied" in skipped["gap_vs_lr"]
    assert [f["name"] for f in rep["figures"]] == ["training_curves"]
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Figures skipped" in page and skipped["q_accuracy_gap"] in page.replace("&#x27;", "'")


def test_report_cli_errors_are_one_line(tmp_path, results):
    r = gl("report", str(tmp_path / "none.sqlite"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = gl("report", str(results), "--sweep", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no sweep named 'nope'" in r.stderr
    with pytest.raises(UserError, match="unknown interval"):
        build_report(results, tmp_path / "y", interval="ci99")


def test_aggregate_mean_std_and_t_interval():
    a = aggregate([1.0, 2.0, 3.0], "std")
    assert (a.mean, a.half, a.n) == (2.0, 1.0, 3)
    c = aggregate([1.0, 2.0, 3.0], "ci95")
    assert c.half == pytest.approx(4.302652729911275 / 3 ** 0.5)  # t_{0.975, 2} * s / sqrt(n)
    assert aggregate([5.0], "ci95").half == 0 and aggregate([], "std").n == 0
    assert aggregate([1.0, float("nan"), 3.0], "std").n == 2


def test_two_seed_report_says_so_and_keeps_intervals_in_range(results, tmp_path):
    """The fixture has 2 seeds: every figure and the table say so; accuracy intervals stay in
    [0, 1], positive quantities' above 0; the consensus figure starts after iteration 0."""
    rep = build_report(results, tmp_path / "few")
    data = json.loads((tmp_path / "few" / "report.json").read_text())
    for row in data["summary"]:
        acc, cons = row["test_acc"], row["consensus_distance"]
        assert acc["few_seeds"] and acc["n"] == 2
        assert 0.0 <= acc["interval"][0] <= acc["interval"][1] <= 1.0
        if cons["interval"] is not None and cons["mean"] > 0:
            assert cons["interval"][0] >= 0.0
    assert all("fewer than 3 seeds" in f["caption"] for f in rep.figures)
    page = rep.html.read_text()
    assert "(n=2)" in page and "fewer than 3 seeds" in page
    assert "consensus" in {f["name"] for f in rep.figures}
    svg = (tmp_path / "few" / "figures" / "consensus.svg").read_text()
    assert "iteration 0 is left out" in next(f["caption"] for f in rep.figures if f["name"] == "consensus")
    assert svg


def test_report_renders_in_a_real_browser(results, tmp_path):
    """Headless Chromium opens the page: every figure loads, none is wider than its column, and
    nothing sticks out of the page (wide tables scroll inside their own box)."""
    from report.browser import check_page, chromium

    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    rep = build_report(results, tmp_path / "browser")
    seen = check_page(rep.html)
    assert seen["images"] == len(rep.figures) > 0
    assert seen["broken"] == [] and seen["scaled"] == []
    assert seen["overflowing"] == [] and seen["pageWidth"] <= seen["viewport"]
    narrow = check_page(rep.html, width=700)  # a laptop split screen
    assert narrow["broken"] == [] and narrow["overflowing"] == [], narrow
