"""One lock file, one holder: how processes on this machine take turns with a shared file."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path, when_waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (made if missing, directory too) until the block ends.
    `when_waiting` is called once if another process holds it, before waiting: to say why nothing moves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if when_waiting is not None:
                when_waiting()
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
