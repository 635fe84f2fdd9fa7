"""Files readers never see half-written: written beside the target, then renamed over it."""

from __future__ import annotations

import json
import os
from pathlib import Path


def temporary_beside(path: Path) -> Path:
    """A hidden name next to `path`, unique to this process (the rename stays on one file system)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json(path: Path, document: dict) -> None:
    """Atomic: a temporary file renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    temporary.write_text(json.dumps(document, indent=2, default=str, ensure_ascii=False))
    os.replace(temporary, path)
