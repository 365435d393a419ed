"""The ``gossiplab`` command. Each subcommand lives in ``gossiplab.commands.<name>`` and registers
itself; bad input of any kind ends in one line on stderr and exit status 2 (``--debug`` shows the
traceback)."""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import os
import sqlite3
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from gossiplab import __version__
from gossiplab.errors import UserError

# Subcommand modules, in the order `gossiplab --help` lists them. Adding a command is one module
# with ``register(subparsers)`` and one line here.
COMMAND_MODULES = [
    "gossiplab.commands.run",
    "gossiplab.commands.topology",
    "gossiplab.commands.config",
    "gossiplab.commands.stability",
    "gossiplab.commands.theory",
    "gossiplab.commands.launch",
    "gossiplab.commands.sweep",
    "gossiplab.commands.packs",
    "gossiplab.commands.report",
    "gossiplab.commands.export",
    "gossiplab.commands.study",
    "gossiplab.commands.compare",
]


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes end like every other bad input: one line, exit status 2 (argparse
    would print the usage first)."""

    def error(self, message: str):  # type: ignore[override]
        msg = message if message.isprintable() else message.encode("unicode_escape").decode("ascii")
        self.exit(2, f"gossiplab: error: {self.prog}: {msg} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gossiplab",
        description="Decentralized SGD with multiple gossip steps: simulate, measure, compare.",
    )
    parser.add_argument("--version", action="version", version=f"gossiplab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """gossiplab's own warnings as one line on stderr; others as Python prints them."""
    from gossiplab.setup import GossipWarning

    if issubclass(category, GossipWarning):
        print(f"gossiplab: warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def _error_line(msg: str) -> None:
    """The error line in one write: processes sharing a terminal or pipe (the ranks under torchrun)
    cannot interleave their lines, as print's separate write of the newline allowed."""
    sys.stderr.write(f"gossiplab: error: {msg}\n")
    sys.stderr.flush()


@contextmanager
def _collector_paused(active: bool) -> Iterator[None]:
    """The program's imports (torch's among them, through the command modules, and the chosen
    command's ``PRELOAD``) with the garbage collector off: they create several hundred thousand
    objects and no garbage, and the collector's passes over them cost about a sixth of the
    import time (measured). Afterwards the imported objects are frozen (no later collection
    walks them) and the collector is on again."""
    if not active or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None  # (the console script; callers in a process pass argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _one_line_warning
    debug = "--debug" in argv
    with _collector_paused(as_program):
        if as_program and argv and f"gossiplab.commands.{argv[0]}" in COMMAND_MODULES:
            # a command may start slow background work (sweep: its workers' imports) before the
            # parser's imports; only as the program (callers in a process keep their own state)
            module = importlib.import_module(f"gossiplab.commands.{argv[0]}")
            if hasattr(module, "start_early"):
                module.start_early(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        for name in getattr(sys.modules.get(getattr(args.func, "__module__", "")), "PRELOAD", ()):
            importlib.import_module(name)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if debug:
            traceback.print_exc()
        msg = str(e)
        if not msg.isprintable():  # one line, whatever a file name or value held
            msg = msg.encode("unicode_escape").decode("ascii")
        _error_line(msg)
        return e.exit_status
    except sqlite3.DatabaseError as e:  # a results store damaged in a way no check foresaw
        if debug:
            traceback.print_exc()
        from gossiplab.sweep.store import safe_sqlite_message

        _error_line(f"a results store is damaged or unreadable ({safe_sqlite_message(e)})")
        return 2
    except KeyboardInterrupt:
        print("gossiplab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`gossiplab topology ... --json | head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        if debug:  # a path the OS refuses by length, wherever the command first touched it
            traceback.print_exc()
        from gossiplab.errors import shown

        _error_line(f"file name too long for this system: {shown(repr(str(e.filename or '')), 100)}")
        return 2
    finally:
        if as_program:
            # The interpreter's last garbage collection then skips every object alive now
            # (torch's alone took 0.3-0.4 s at exit); they are still freed at exit. Not for
            # callers that go on (frozen garbage would never be collected).
            gc.freeze()
