"""Shared fixtures: every test gets its own workspace under pytest's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp.config import IngestSettings, load_settings
from cdp.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "workspace")


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    path = tmp_path / "raw"
    path.mkdir()
    return path


@pytest.fixture
def ingest_settings() -> IngestSettings:
    return load_settings().ingest

