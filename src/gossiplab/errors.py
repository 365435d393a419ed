"""Error types. A :class:`UserError` is the user's to fix: the CLI prints its message and exits 2."""

from __future__ import annotations


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
