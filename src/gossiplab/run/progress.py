"""Progress display as a training hook (rich), so long jobs always show where they are."""

from __future__ import annotations

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


def make_progress(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console or Console(stderr=True),
        transient=False,
    )


class ProgressHook(Hook):
    """Advances a rich progress bar every few steps; shows the latest test accuracy."""

    def __init__(self, progress: Progress, label: str, every: int = 10):
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
