"""Atomic writes under failure: an exception, a kill, a full disk or a read-only folder mid-write
leaves the previous file intact and nothing half-written under the real name."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossiplab.errors import UserError
from gossiplab.fileio import (
    JsonlWriter,
    atomic_write,
    atomic_write_json,
    remove_file,
    remove_stale_temp_files,
    safe_filename,
    stale_temp_files,
)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_exception_mid_write_keeps_the_previous_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_json(p, {"v": 1})

    def half(f):
        f.write(b'{"v": ')
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_write(p, half)
    assert p.read_text() == '{\n  "v": 1\n}\n'
    assert _leftovers(tmp_path) == []


def test_kill_mid_write_keeps_the_previous_file(tmp_path):
    """A real SIGKILL after half the bytes are on disk (fsynced): the target still holds the old
    content; the only trace is a hidden temporary file, which resume cleans up."""
    p = tmp_path / "f.bin"
    p.write_bytes(b"old" * 1000)
    code = textwrap.dedent(f"""
        import os, signal
        from gossiplab.fileio import atomic_write
        def half(f):
            f.write(b"new" * 500)
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write({str(p)!r}, half)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -signal.SIGKILL
    assert p.read_bytes() == b"old" * 1000
    stale = stale_temp_files(tmp_path)
    assert len(stale) == 1 and stale[0].read_bytes() == b"new" * 500
    assert remove_stale_temp_files(tmp_path) == 1 and _leftovers(tmp_path) == []


def _failing(monkeypatch, call: str, err: int, after: int = 0):
    """Make ``os.<call>`` fail with ``err`` from its (after+1)-th use on."""
    real = getattr(os, call)
    count = {"n": 0}

    def fake(*a, **k):
        count["n"] += 1
        if count["n"] > after:
            raise OSError(err, os.strerror(err))
        return real(*a, **k)

    monkeypatch.setattr(os, call, fake)
    return count


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_full_disk_is_a_clear_error_and_keeps_the_previous_file(tmp_path, monkeypatch, call):
    p = tmp_path / "summary.json"
    atomic_write_json(p, {"v": 1})
    _failing(monkeypatch, call, errno.ENOSPC)
    with pytest.raises(UserError, match=f"cannot write {p}: No space left on device"):
        atomic_write_json(p, {"v": 2})
    monkeypatch.undo()
    assert p.read_text() == '{\n  "v": 1\n}\n'
    assert _leftovers(tmp_path) == []


def test_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    _failing(monkeypatch, "open", errno.EROFS)  # mkstemp and JsonlWriter both open via os.open
    with pytest.raises(UserError, match="cannot write .*summary.json: Read-only file system"):
        atomic_write_json(tmp_path / "summary.json", {"v": 1})
    with pytest.raises(UserError, match="cannot write .*metrics.jsonl: Read-only file system"):
        JsonlWriter(tmp_path / "metrics.jsonl")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_remove_file_failure_is_a_clear_error(tmp_path, monkeypatch):
    p = tmp_path / "summary.json"
    p.write_text("{}")
    _failing(monkeypatch, "unlink", errno.EROFS)
    with pytest.raises(UserError, match="cannot remove .*Read-only file system"):
        remove_file(p)
    monkeypatch.undo()
    assert p.exists()
    remove_file(tmp_path / "absent.json")  # nothing to remove is fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_real_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    atomic_write_json(ro / "summary.json", {"v": 1})
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            atomic_write_json(ro / "summary.json", {"v": 2})
    finally:
        ro.chmod(0o755)
    assert (ro / "summary.json").read_text() == '{\n  "v": 1\n}\n'


def test_jsonl_full_disk_mid_line_is_a_clear_error(tmp_path, monkeypatch):
    w = JsonlWriter(tmp_path / "m.jsonl")
    w.write({"a": 1})
    _failing(monkeypatch, "fsync", errno.ENOSPC)
    with pytest.raises(UserError, match="No space left on device"):
        w.write({"a": 2})
    monkeypatch.undo()
    w.close()


def test_atomic_files_get_ordinary_permissions(tmp_path):
    atomic_write_json(tmp_path / "s.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_writes_never_go_through_a_symlink(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(outside)
    (run / "summary.json").symlink_to(outside)
    with pytest.raises(UserError, match="symbolic link"):
        JsonlWriter(run / "metrics.jsonl")
    atomic_write_json(run / "summary.json", {"v": 1})  # replaces the link itself
    assert outside.read_text() == "precious"
    assert not (run / "summary.json").is_symlink()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_safe_filename_is_always_one_harmless_component(name):
    s = safe_filename(name)
    assert s and "/" not in s and "\\" not in s and "\0" not in s
    assert not s.startswith(".") and s not in (".", "..") and len(s) <= 100
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in s)


@pytest.mark.parametrize("name, expected", [
    ("dsgd_mgs", "dsgd_mgs"), ("../../etc/passwd", "_etc_passwd"), ("/abs", "_abs"),
    ("..", "_"), ("", "_"), ("a b\nc", "a_b_c"), (".hidden", "hidden"),
])
def test_safe_filename_examples(name, expected):
    assert safe_filename(name) == expected
