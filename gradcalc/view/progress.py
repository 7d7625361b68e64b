"""Progress on stderr for work that takes a while: a JSON Lines stream's running count, and
a fit's epochs.

Shown only when stderr is a terminal (a pipeline's stderr gets nothing), and it leaves no
trace on the screen when it ends; it never touches stdout, where the answers go. rich is
imported only for progress that is shown (it costs a piped or --json run about 25 ms).
"""
from __future__ import annotations

import sys
import time


class StreamProgress:
    """`gradcalc -` on a terminal: requests answered, failed, and the rate."""

    def __init__(self, enabled: bool | None = None):
        self.status = None
        self.count = self.failed = 0
        self.start = time.monotonic()
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            # (imported here: rich costs a redirected stream's start-up about 15 ms)
            from .style import StatusLine
            self.status = StatusLine("JSON Lines: waiting for requests")
            self.status.start()

    def answered(self, ok: bool):
        self.count += 1
        self.failed += not ok
        if self.status is not None:
            rate = self.count / max(time.monotonic() - self.start, 1e-9)
            self.status.update(f"JSON Lines: {self.count:,} answered ({self.failed:,} failed), "
                               f"{rate:,.0f}/s")

    def close(self):
        if self.status is not None:
            self.status.stop()
            self.status = None


class FitProgress:
    """`gradcalc fit`'s bar on a terminal: the epoch, the last batch loss, the rate and the
    elapsed time; nothing when disabled."""

    def __init__(self, epochs: int, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TextColumn, TimeElapsedColumn)

            from .style import make_console
            self.bar = Bar(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(),
                           TextColumn("loss {task.fields[loss]}"),
                           TextColumn("{task.fields[rate]} steps/s"), TimeElapsedColumn(),
                           console=make_console(stderr=True), transient=True,
                           redirect_stdout=False, redirect_stderr=False)
            self.task = self.bar.add_task("fit", total=epochs, loss="-", rate="-")
            self.steps = 0

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False

    def step(self, epoch: int, batch: int, loss: float):
        if self.bar is None:
            return
        self.steps += 1
        elapsed = self.bar.tasks[0].elapsed or 0.0
        rate = f"{self.steps / elapsed:.0f}" if elapsed > 0 else "-"
        self.bar.update(self.task, loss=f"{loss:.6g}", rate=rate)

    def epoch(self, e):
        if self.bar is not None:
            self.bar.update(self.task, completed=e.epoch, loss=f"{e.loss:.6g}")
