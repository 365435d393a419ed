"""Atomic file writes: a crash mid-write leaves the previous file intact, never a half-written one."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from gossiplab.errors import UserError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` via a temporary file in the same folder, fsync, then rename over the target.

    The file gets the permissions of a plainly created one (0666 minus the umask), not the
    temporary file's private 0600. On any failure the temporary file is removed and the previous
    ``path`` (if any) is left untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def _unlink_quietly(p: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(p)


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporary files :func:`atomic_write` left in ``folder`` when its process was killed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file() and not p.is_symlink())


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete the leftovers of killed atomic writes in ``folder``; returns how many."""
    found = stale_temp_files(folder)
    for p in found:
        _unlink_quietly(str(p))
    return len(found)


def remove_file(path: str | Path) -> None:
    """Delete ``path`` if it exists; failure (read-only folder, ...) is a :class:`UserError`."""
    path = Path(path)
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"cannot remove {path}: {e.strerror or e}") from e


_UNSAFE = re.compile(r"(?:[^A-Za-z0-9._-]|\.\.)+")


def safe_filename(name: str) -> str:
    """A single path component derived from a config value: only ``[A-Za-z0-9._-]`` survive (runs of
    anything else, and of ``..``, become ``_``), no leading dot, never empty, at most 100
    characters. Whatever the value, the result names a file *inside* the folder it is joined to."""
    s = _UNSAFE.sub("_", str(name)).lstrip(".")[:100]
    return s if s.strip("_") else "_"


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json_line(obj: Any) -> str:
    return json.dumps(obj, default=_json_default) + "\n"


class JsonlWriter:
    """Append-only JSON-lines log, flushed and fsynced per record so a kill loses at most one line."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        if self.path.is_symlink():
            raise UserError(f"cannot write {self.path}: it is a symbolic link; refusing to write "
                            "through it")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        flags |= getattr(os, "O_NOFOLLOW", 0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a" if append else "w", encoding="utf-8",  # noqa: SIM115
                           opener=lambda p, _: os.open(p, flags, 0o644))
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e}") from e

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._f.write(to_json_line(record))
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e}") from e

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ---------------------------------------------------------------------------------------

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    for unit, k in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n} bytes"


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (``what`` names it in
    messages, e.g. "config file"). A FIFO, device or folder is refused without blocking; a
    larger file is refused before it is read. Never quotes the content."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise UserError(f"{what} {path} is {_size(st.st_size)}, more than the {_size(limit)} "
                            f"a {what} may hold")
        chunks, total = [], 0
        while True:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            except OSError as e:
                raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise UserError(f"{what} {path} is more than the {_size(limit)} a {what} may hold")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str, limit: int, expected: str = "text") -> str:
    """:func:`read_bytes`, decoded as UTF-8; bytes that are not UTF-8 are refused naming the
    line and byte, never quoting them."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{what} {path}: line {line} (byte {e.start}) is not UTF-8; expected "
                        f"{expected}") from None


def read_json(path: str | Path, what: str, limit: int = 256 * MIB) -> Any:
    """A JSON file written by gossiplab; damage is reported naming the file, line and column
    (never the content)."""
    text = read_text(path, what, limit, expected="JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path} is damaged: invalid JSON at line {e.lineno}, column "
                        f"{e.colno} ({e.msg})") from None
    except RecursionError:
        raise UserError(f"{what} {path} is damaged: JSON nested too deeply") from None


def memory_bytes() -> int:
    """Physical memory of this machine (a generous stand-in where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 * GIB
