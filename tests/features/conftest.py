"""A small simulated retailer, ingested once per test module."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cdp.config import load_settings
from cdp.workspace import Workspace
from features.ingest import ingest_directory
from features.simulator import SimulationParameters, simulate_to_directory


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[Path, Workspace]:
    root = tmp_path_factory.mktemp("identity")
    raw = root / "raw"
    simulate_to_directory(
        SimulationParameters(customers=1500, seed=11, start=dt.date(2025, 1, 1), end=dt.date(2025, 6, 30)), raw
    )
    workspace = Workspace.at(root / "workspace")
    ingest_directory(raw, workspace, load_settings().ingest)
    return raw, workspace
