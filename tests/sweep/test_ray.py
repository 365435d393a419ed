"""The Ray executor runs the same sweep on a (here: local) Ray instance, into the same store."""

import pytest
from rich.console import Console

from gossiplab.sweep.scheduler import run_sweep
from gossiplab.sweep.spec import load_sweep
from gossiplab.sweep.store import ResultsStore

from .helpers import write_sweep

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'gossiplab[ray]')")


def test_ray_executor_runs_a_sweep_on_a_local_ray_instance(tmp_path):
    from gossiplab.sweep.executors import RayExecutor

    f = write_sweep(tmp_path / "s.toml", """
        [grid]
        "algorithm.gossip_steps" = [1, 2]
        "optim.batch_size" = [8, 100000]
    """, sweep="baseline = true")
    spec = load_sweep(f)
    ex = RayExecutor(jobs=2, threads=1)
    with ResultsStore(tmp_path / "r.sqlite") as store:
        out = run_sweep(spec, store, ex, console=Console(quiet=True))
        assert not ray.is_initialized()  # the local instance it started is shut down
        assert out.complete and out.total == 6
        rows = store.runs()
        ok = [r for r in rows if r["status"] == "ok"]
        failed = [r for r in rows if r["status"] == "failed"]
        assert len(ok) == 3 and len(failed) == 3
        assert all("larger than the smallest node" in r["error"] for r in failed)
        assert all(r["threads"] == 1 and r["torch_version"] for r in ok)
        assert len(store.metrics([r["id"] for r in ok])) == 3 * 3  # iterations 0, 30, 60
        assert store.integrity_ok()
