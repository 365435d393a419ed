"""Small sweep files and subprocess helpers shared by the sweep/store/report tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TINY_BASE = """\
train.iterations = {iterations}
eval.every = {every}
topology.nodes = 4
optim.batch_size = 8
model.hidden = [16]
eval.node_samples = 200
"""


def write_sweep(path: Path, tables: str, *, sweep: str = "", base: str = "", iterations: int = 60,
                every: int = 30, name: str = "t") -> Path:
    """A sweep file on digits with tiny runs: [sweep] (name + ``sweep``), [base] (tiny defaults +
    ``base``), then ``tables`` ([grid], [[zip]])."""
    d = textwrap.dedent
    path.write_text(f'[sweep]\nname = "{name}"\n{d(sweep).strip()}\n\n[base]\n'
                    f"{TINY_BASE.format(iterations=iterations, every=every)}{d(base).strip()}\n\n"
                    f"{d(tables).strip()}\n")
    return path


def gl(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gossiplab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def popen(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gossiplab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
