"""Progress bars (rich) for training and probes; silent when disabled (tests, pipes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


class Advance:
    """Callable that advances one bar: ``advance(n)``; ``describe(text)`` changes its label."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress = progress
        self._task = task

    def __call__(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)


class ProgressReporter:
    """One rich ``Progress`` display shared by the trainer and the probes of a run."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self._console = console or Console(stderr=True)

    @contextmanager
    def __call__(self, description: str, total: int) -> Iterator[Advance]:
        """A bar of ``total`` steps labelled ``description``; removed when done."""
        if not self.enabled:
            yield Advance(None, None)
            return
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield Advance(progress, task)
