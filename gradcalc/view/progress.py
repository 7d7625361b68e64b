"""Progress on stderr for work that takes a while: a JSON Lines stream's running count.

Shown only when stderr is a terminal (a pipeline's stderr gets nothing), and it leaves no
trace on the screen when it ends; it never touches stdout, where the answers go.
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
