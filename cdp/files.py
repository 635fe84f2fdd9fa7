"""Files readers never see half-written: written beside the target, then renamed over it."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def temporary_beside(path: Path, tag: str | None = None) -> Path:
    """A hidden name next to `path`, unique to this process on this host (the rename stays on one file
    system): `.<name>.<pid>@<host>[.<tag>].tmp`, so that `remove_abandoned_temporaries` can tell whether
    its writer still runs. `tag`: several at once in one process (threads)."""
    return path.with_name(f".{path.name}.{os.getpid()}@{_host()}{'.' + tag if tag else ''}.tmp")


_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9-]+))?(?:\.\w+)?\.tmp$")
FOREIGN_TEMPORARY_SECONDS = 24 * 3600
"""A temporary file of another host is taken for abandoned once untouched this long (its writer there
cannot be asked whether it still runs)."""


def remove_abandoned_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files (`temporary_beside`) under `directory` whose writer is gone: a process
    killed mid-write leaves a partial copy of a table — other people's rows, which no later rewrite or
    erasure would see. A writer of this host still running keeps its files; one of another host (a shared
    disk) keeps them until they are a day old."""
    removed = []
    for path in directory.rglob(".*.tmp") if directory.is_dir() else ():
        found = _TEMPORARY.match(path.name)
        if found is None or not path.is_file():
            continue
        if found["host"] not in (None, _host()):
            if time.time() - path.stat().st_mtime < FOREIGN_TEMPORARY_SECONDS:
                continue
        elif _running(int(found["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether a process of this host has that id (one that cannot be asked counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's; not a process id at all
        return True
    return True


def write_json(path: Path, document: dict, mode: int | None = None) -> None:
    """Atomic: a temporary file renamed over the target. `mode`: its permissions (set before anything is
    written, so the content is never readable more widely)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    if mode is not None:
        temporary.unlink(missing_ok=True)
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    temporary.write_text(json.dumps(document, indent=2, default=str, ensure_ascii=False))
    os.replace(temporary, path)
