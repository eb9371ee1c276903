"""A progress line for long maps: a bar in a terminal, sparse lines in a batch log."""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Report how many items are done, how fast, and how long is left.

    Parameters
    ----------
    label : str
        What is counted, at the start of every report.
    total : int or None
        How many items there are, if known.
    enabled : bool or None
        ``None``: report only when ``stream`` is a terminal.
    stream : file, optional
        Where to write; ``sys.stderr`` by default.
    interval : float, optional
        Seconds between reports: 0.1 in a terminal (one redrawn line), 30
        in a log (one line each).
    """

    def __init__(self, label, total=None, *, enabled=None, stream=None, interval=None):
        self.stream = stream or sys.stderr
        terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = terminal if enabled is None else enabled
        self.terminal = terminal
        self.interval = interval if interval is not None else (0.1 if terminal else 30.0)
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last = self.started

    def update(self, done: int = 1, failed: int = 0) -> None:
        """Count ``done`` more items, ``failed`` of them failures."""
        self.done += done
        self.failed += failed
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._write(final=False)

    def close(self) -> None:
        """Write the final report."""
        if self.enabled:
            self._write(final=True)

    def line(self) -> str:
        """The report as text."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            width = 24
            filled = int(width * self.done / self.total)
            text = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
        else:
            text = f"{self.label} {self.done} done"
        text += f" {rate:.1f}/s {_duration(elapsed)}"
        if self.total and rate > 0 and self.done < self.total:
            text += f" eta {_duration((self.total - self.done) / rate)}"
        if self.failed:
            text += f" ({self.failed} failed)"
        return text

    def _write(self, final: bool) -> None:
        if self.terminal:
            end = "\n" if final else ""
            self.stream.write(f"\r{self.line()}\x1b[K{end}")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
