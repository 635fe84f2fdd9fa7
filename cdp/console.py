"""Terminal output: Rich progress bars on a terminal, plain log lines everywhere else."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
answer_console = Console(soft_wrap=True)
"""A query's answer (`cdp identity explain`): on stdout, so it pipes to a file, and unwrapped there."""
log = logging.getLogger("cdp")


def configure_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("cdp").setLevel(level)


class StepProgress:
    """Advance a task; on a terminal a bar moves, elsewhere a line is logged every 10%."""

    def __init__(self, progress: Progress | None, description: str) -> None:
        self._progress = progress
        self._description = description
        self._tasks: dict[str, int] = {}
        self._logged: dict[str, int] = {}
        self._started = time.perf_counter()

    def update(self, done: float, total: float, label: str | None = None) -> None:
        key = label or self._description
        if self._progress is not None:
            if key not in self._tasks:
                self._tasks[key] = self._progress.add_task(key, total=total)
            self._progress.update(self._tasks[key], completed=done, total=total)
            return
        decile = int(10 * done / total) if total else 10
        if decile > self._logged.get(key, -1):
            self._logged[key] = decile
            log.info("%s: %d%% (%.0f s)", key, 10 * decile, time.perf_counter() - self._started)


@contextmanager
def step_progress(description: str) -> Iterator[StepProgress]:
    if not console.is_terminal:
        yield StepProgress(None, description)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        yield StepProgress(progress, description)
