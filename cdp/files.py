"""Files readers never see half-written: written beside the target, then renamed over it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path


def temporary_beside(path: Path) -> Path:
    """A hidden name next to `path`, unique to this process (the rename stays on one file system)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


def remove_abandoned_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files (`temporary_beside`) under `directory` whose writer is no longer running:
    a process killed mid-write leaves a partial copy of a table — other people's rows, which no later
    rewrite or erasure would see. A running writer's files are left alone."""
    removed = []
    for path in directory.rglob(".*.tmp") if directory.is_dir() else ():
        found = _TEMPORARY.match(path.name)
        if found is None or not path.is_file() or _running(int(found.group(1))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
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
