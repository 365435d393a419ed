"""A full disk or a read-only output folder during `gossiplab run`: one clear error (exit 2),
nothing half-written that looks complete (no summary.json, every checkpoint whole, no temporary
files), earlier results untouched, and after freeing space `--resume` finishes the run with the
same result as an uninterrupted one.

Simulated by making the OS calls fail (always run), and for real on a small tmpfs in a private
mount namespace (`unshare -rm`; skipped where that is not allowed)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gossiplab.checkpoint import load_checkpoint
from gossiplab.cli import main
from run_outputs import assert_same_run, tree

ARGS = ["--quiet", "--set", "topology.nodes=4", "--set", "optim.batch_size=8",
        "--set", "train.iterations=40", "--set", "eval.every=15", "--set", "optim.momentum=0.9",
        "--checkpoint-every", "6"]


def run(out, *extra):
    return main(["run", "--out", str(out), *ARGS, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert run(out) == 0
    return out


def assert_nothing_looks_complete(out: Path) -> None:
    assert not (out / "summary.json").exists()
    for p in (out / "checkpoints").glob("*.pt") if (out / "checkpoints").exists() else []:
        st = load_checkpoint(p)  # whole and readable
        assert bool(torch.isfinite(st["sim"]["params"]).all())
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"


@pytest.fixture(scope="module")
def fsync_calls(reference, tmp_path_factory):
    """How many fsyncs a run does (the same every time for the same config)."""
    real, n = os.fsync, [0]

    def counting(fd):
        n[0] += 1
        return real(fd)

    os.fsync = counting
    try:
        assert run(tmp_path_factory.mktemp("count") / "run") == 0
    finally:
        os.fsync = real
    return n[0]


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.4, 0.75, 1.0])
def test_disk_full_at_any_write_loses_nothing(reference, fsync_calls, tmp_path, monkeypatch,
                                              capsys, fraction):
    """The disk fills up at the k-th write (config.json, a metrics line, a checkpoint, the
    summary, ... depending on k) and stays full."""
    k = min(int(fraction * fsync_calls), fsync_calls - 1)
    real, n = os.fsync, [0]

    def full(fd):
        n[0] += 1
        if n[0] > k:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    out = tmp_path / "run"
    monkeypatch.setattr(os, "fsync", full)
    rc = run(out)
    monkeypatch.undo()
    err = capsys.readouterr().err
    if rc == 0:  # only a best-effort folder fsync failed: the files themselves are complete
        assert k >= fsync_calls - 2
    else:
        assert rc == 2 and "No space left on device" in err and "Traceback" not in err
        assert str(out) in err  # names the file it could not write
        assert len(err.strip().splitlines()) == 1
        assert_nothing_looks_complete(out)
        # space freed: the same command with --resume finishes the run
        assert run(out, "--resume") == 0
    assert_same_run(reference, out)


def _read_only(monkeypatch, folder: Path) -> None:
    """Every OS call that would change something under ``folder`` fails with EROFS."""
    folder = str(folder.resolve())

    def inside(path) -> bool:
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:  # a file descriptor
            return False
        return p == folder or p.startswith(folder + os.sep)

    def guard(name, writes=lambda *a, **k: True):
        real = getattr(os, name)

        def fake(*a, **k):
            if any(inside(x) for x in a[:2] if isinstance(x, str | bytes | os.PathLike)) \
                    and writes(*a, **k):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), a[0])
            return real(*a, **k)

        monkeypatch.setattr(os, name, fake)

    guard("open", lambda path, flags, *a, **k: flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    for name in ("unlink", "mkdir", "rename", "replace", "rmdir"):
        guard(name)


def test_read_only_output_folder_for_a_new_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    _read_only(monkeypatch, out)
    rc = run(out)
    err = capsys.readouterr().err
    assert rc == 2 and "Read-only file system" in err and str(out) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.undo()
    assert list(out.iterdir()) == []


def test_read_only_folder_keeps_earlier_results_on_overwrite(reference, tmp_path, monkeypatch,
                                                             capsys):
    out = shutil.copytree(reference, tmp_path / "run")
    before = tree(out)
    _read_only(monkeypatch, out)
    rc = run(out, "--overwrite", "--set", "optim.lr=0.05")
    err = capsys.readouterr().err
    assert rc == 2 and "Read-only file system" in err and "Traceback" not in err
    monkeypatch.undo()
    assert tree(out) == before  # the finished run is intact, byte for byte


def test_read_only_folder_on_resume_changes_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real, n = os.fsync, [0]

    def full(fd):  # interrupt the run half-way with a full disk
        n[0] += 1
        if n[0] > 12:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert run(out) == 2
    monkeypatch.undo()
    before = tree(out)
    _read_only(monkeypatch, out)
    rc = run(out, "--resume")
    err = capsys.readouterr().err
    assert rc == 2 and "Read-only file system" in err and "Traceback" not in err
    monkeypatch.undo()
    assert tree(out) == before


# -- the real thing: a tiny tmpfs in a private mount namespace ---------------------------------------


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        r = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


needs_unshare = pytest.mark.skipif(not _can_unshare(),
                                   reason="no private mount namespace (unshare -rm) here")


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "T": str(tmp_path), "ARGS": " ".join(ARGS)}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env=env, timeout=600)


@needs_unshare
def test_real_full_disk_then_resume_after_freeing_space(tmp_path):
    # 200 KiB holds config.json and metrics but not a checkpoint of the 4 node models + momentum
    script = """
        set -u
        mkdir -p "$T/mnt" "$T/final"
        mount -t tmpfs -o size=200k tmpfs "$T/mnt"
        $PY -m gossiplab run --out "$T/mnt/run" $ARGS 2> "$T/err1"; echo $? > "$T/rc1"
        ls -A "$T/mnt/run" "$T/mnt/run/checkpoints" > "$T/listing" 2>&1
        cp -a "$T/mnt/run" "$T/after_failure"
        mount -o remount,size=64m "$T/mnt"
        $PY -m gossiplab run --out "$T/mnt/run" --resume $ARGS 2> "$T/err2"; echo $? > "$T/rc2"
        cp -a "$T/mnt/run/." "$T/final/"
        $PY -m gossiplab run --out "$T/uninterrupted" $ARGS
    """
    r = _in_namespace(script, tmp_path)
    assert r.returncode == 0, r.stderr
    err1 = (tmp_path / "err1").read_text()
    assert (tmp_path / "rc1").read_text().strip() == "2", err1
    assert "No space left on device" in err1 and "Traceback" not in err1
    assert_nothing_looks_complete(tmp_path / "after_failure")
    assert (tmp_path / "after_failure" / "config.json").exists()
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "err2").read_text()
    # the reference from a process like these (same thread count), not from the test process
    assert_same_run(tmp_path / "uninterrupted", tmp_path / "final")


@needs_unshare
def test_real_read_only_folder_keeps_earlier_results(reference, tmp_path):
    script = """
        set -u
        mkdir -p "$T/mnt"
        mount -t tmpfs tmpfs "$T/mnt"
        cp -a "$T/ref" "$T/mnt/run"
        mount -o remount,ro "$T/mnt"
        $PY -m gossiplab run --out "$T/mnt/run" --overwrite $ARGS --set optim.lr=0.05 \
            2> "$T/err"; echo $? > "$T/rc"
        $PY -m gossiplab run --out "$T/mnt/new" $ARGS 2> "$T/err_new"; echo $? > "$T/rc_new"
        mkdir -p "$T/after"; cp -a "$T/mnt/run/." "$T/after/"
    """
    shutil.copytree(reference, tmp_path / "ref")
    r = _in_namespace(script, tmp_path)
    assert r.returncode == 0, r.stderr
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "2" and "Read-only file system" in err
    assert "Traceback" not in err
    assert (tmp_path / "rc_new").read_text().strip() == "2"
    assert "Read-only file system" in (tmp_path / "err_new").read_text()
    assert tree(tmp_path / "after") == tree(reference)
