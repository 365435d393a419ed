"""Progress display as a training hook (rich), so long jobs always show where they are.

On a terminal: a rich progress bar, started with its first task (so an error raised before any
training prints no blank line left by an empty bar). Elsewhere (a log file, a pipe, a batch job):
plain lines every :data:`PLAIN_EVERY_S` seconds and at the end of each task, since a bar's
columns are cut to fit an unknown width there (``1500...``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gossiplab.run.loop import Hook

PLAIN_EVERY_S = 10.0


class LazyProgress(Progress):
    """A rich Progress that starts its live display with its first task, not on ``with``."""

    def __enter__(self) -> LazyProgress:
        return self

    def add_task(self, *args: Any, **kwargs: Any):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float = 0
    fields: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    printed: float = field(default_factory=time.monotonic)
    finished: bool = False


class PlainProgress:
    """The part of rich's Progress API the commands use, as plain periodic lines."""

    def __init__(self, console: Console, every: float = PLAIN_EVERY_S, unit: str = ""):
        self.console = console
        self.every = every
        self.unit = unit
        self.tasks: list[_PlainTask] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None: ...

    def stop(self) -> None:
        for t in range(len(self.tasks)):
            self._line(t, force=True)

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **fields: Any) -> int:
        self.tasks.append(_PlainTask(description, total, completed, fields))
        return len(self.tasks) - 1

    def advance(self, task: int, n: float = 1) -> None:
        self.tasks[task].completed += n
        self._line(task)

    def update(self, task: int, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, **fields: Any) -> None:
        t = self.tasks[task]
        if total is not None:
            t.total = total
        if completed is not None:
            t.completed = completed
        if advance:
            t.completed += advance
        t.fields.update(fields)
        self._line(task)

    def _line(self, task: int, force: bool = False) -> None:
        t = self.tasks[task]
        now = time.monotonic()
        done = t.total is not None and t.completed >= t.total
        if t.finished or not (force or done or now - t.printed >= self.every):
            return
        t.printed, t.finished = now, done
        total = f"/{t.total:,.0f}" if t.total is not None else ""
        extra = "  ".join(str(v) for v in t.fields.values() if v)
        self.console.print(f"{t.description}: {t.completed:,.0f}{total}{self.unit} "
                           f"{now - t.started:.0f} s" + (f"  {extra}" if extra else ""),
                           markup=False, highlight=False, soft_wrap=True)


def progress_for(console: Console, columns: list, unit: str = "") -> LazyProgress | PlainProgress:
    """A bar on a terminal, plain periodic lines elsewhere."""
    if not console.is_terminal and not console.quiet:
        return PlainProgress(console, unit=unit)
    return LazyProgress(*columns, console=console, transient=False)


def make_progress(console: Console | None = None) -> LazyProgress | PlainProgress:
    return progress_for(console or Console(stderr=True), [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ], unit=" iterations")


class ProgressHook(Hook):
    """Advances a rich progress bar every few steps; shows the latest test accuracy."""

    def __init__(self, progress: Progress | PlainProgress, label: str, every: int = 10):
        self.progress = progress
        self.label = label
        self.every = every
        self.task = None
        self._pending = 0

    def on_start(self, sim) -> None:
        total = sim.cfg.train.iterations
        self.task = self.progress.add_task(f"{self.label}", total=total, completed=sim.iteration,
                                           info="")

    def on_step(self, sim, loss: float) -> None:
        self._pending += 1
        if self._pending >= self.every:
            self.progress.advance(self.task, self._pending)
            self._pending = 0

    def on_eval(self, sim, record: dict) -> None:
        a = record["avg_model"]
        self.progress.update(self.task, info=f"test acc {a['test_acc']:.3f}  "
                                             f"loss {a['train_loss']:.3f}")

    def on_end(self, sim, result) -> None:
        self.progress.update(self.task, completed=sim.iteration)
        self._pending = 0
