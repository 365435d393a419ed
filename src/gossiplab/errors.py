"""Error types. A :class:`UserError` is the user's to fix: the CLI prints its message and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class UserError(Exception):
    """Bad input (config, file, data). Printed as one line, exit status 2, no traceback."""

    exit_status = 2


class ConfigError(UserError):
    """A configuration value or key is invalid."""


class TopologyError(UserError):
    """A graph or mixing matrix violates a required property."""


class DataError(UserError):
    """A dataset file is missing, truncated, corrupted or not in the expected format."""


class Diverged(Exception):
    """Training produced a NaN or inf loss or parameter; carries the iteration where it happened."""

    def __init__(self, iteration: int, what: str = "loss"):
        super().__init__(f"training diverged at iteration {iteration}: non-finite {what}")
        self.iteration = iteration
        self.what = what


class PeerLost(UserError):
    """A distributed run lost a process (it died, hung or failed): printed as one line naming the
    lost rank, exit status 3. ``rank`` is None when the lost rank could not be identified."""

    exit_status = 3

    def __init__(self, message: str, rank: int | None = None):
        super().__init__(message)
        self.rank = rank


def shown(text: Any, limit: int = 300) -> str:
    """User text for a one-line message: control characters (newlines...) escaped, and text
    over ``limit`` characters cut in the middle (a 5,000-digit value is not worth a screen)."""
    s = str(text)
    s = s if s.isprintable() else s.encode("unicode_escape").decode("ascii")
    if len(s) > limit:
        s = f"{s[:limit - 60]}...[{len(s):,} characters]...{s[-30:]}"
    return s


def closest(name: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``name`` (a likely typo), or None."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = closest(name, choices)
    return f" (did you mean '{close}'?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str], key: str | None = None) -> str:
    """The one message of every registry for a name it lacks:
    ``KEY: unknown KIND 'NAME' (did you mean 'X'?); choose one of: A, B, C``."""
    choices = sorted(choices)
    where = f"{key}: " if key else ""
    return (f"{where}unknown {kind} '{shown(name)}'{did_you_mean(str(name), choices)}; "
            f"choose one of: {', '.join(choices)}")
