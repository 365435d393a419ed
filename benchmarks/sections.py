"""docs/benchmarks.md is written by several scripts, each owning one section between its own
markers; replacing a section leaves the others as they are."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, text: str, begin: str, end: str) -> None:
    """Replace the text between ``begin`` and ``end`` (markers included) by ``text``, which
    carries both markers; append it when the file has no such section yet."""
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + text.rstrip("\n") + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)
