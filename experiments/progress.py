"""Progress of long work: a rich bar with an ETA on a terminal, plain periodic lines otherwise.

Logs and CI output get one line per step of about a tenth of the work, and one at least every
``interval`` seconds while work is counted, never redrawn bars.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["ProgressReporter"]


class ProgressReporter:
    """Count units of work done out of ``total`` and show it.

    Parameters
    ----------
    total : int
        Units of work (episodes, cells, ...).
    description : str
        What is being counted, shown before the count.
    enabled : bool
        ``False`` shows nothing.
    stream : file, optional
        Where to write (default ``sys.stderr``); a terminal gets a rich bar.
    initial : int
        Units already done before this run (resumed work): counted as done, left out of the ETA.
    interval : float
        Off a terminal, the most seconds between two lines while units are counted (a tenth of a
        large total may take hours).
    """

    def __init__(
        self,
        total: int,
        description: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        initial: int = 0,
        interval: float = 10.0,
    ) -> None:
        self.total = max(int(total), 0)
        self.description = description
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.initial = min(max(int(initial), 0), self.total)
        self.done = self.initial
        self.interval = float(interval)
        self._start = time.monotonic()
        self._last_line = self._start
        self._next_line = 0
        self._rich: Any = None
        self._task: Any = None
        self._postfix = ""

    def __enter__(self) -> ProgressReporter:
        if self.enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[postfix]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._rich.start()
            self._task = self._rich.add_task(
                self.description, total=self.total, completed=self.initial, postfix=""
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.stop()

    def update(self, done: int, postfix: str = "") -> None:
        """Set the count of finished units (and a short status text)."""
        self.done = min(int(done), self.total)
        self._postfix = postfix
        if not self.enabled:
            return
        if self._rich is not None and self._task is not None:
            self._rich.update(self._task, completed=self.done, postfix=postfix)
            return
        step = max(1, self.total // 10)
        now = time.monotonic()
        if (
            self.done >= self._next_line
            or self.done == self.total
            or now - self._last_line >= self.interval
        ):
            elapsed = now - self._start
            fresh = self.done - self.initial
            eta = elapsed / fresh * (self.total - self.done) if fresh > 0 else float("nan")
            eta_text = f"{eta:.0f} s" if eta == eta else "-"
            tail = f"  {postfix}" if postfix else ""
            print(
                f"{self.description}: {self.done}/{self.total}  elapsed {elapsed:.0f} s  "
                f"eta {eta_text}{tail}",
                file=self.stream,
                flush=True,
            )
            self._last_line = now
            self._next_line = (self.done // step + 1) * step

    def advance(self, n: int = 1, postfix: str = "") -> None:
        """Count ``n`` more finished units."""
        self.update(self.done + n, postfix)
