"""A small simulated retailer over two years, ingested, resolved and trained once per session."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdp.config import Settings, load_settings
from cdp.workspace import Workspace
from features.identity.store import run_identity_resolution
from features.ingest import ingest_directory
from features.simulator import SimulationParameters, simulate_to_directory
from training.pipeline import ModelReport, train_models

AS_OF = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
SMALL = {"snapshot_count": 4, "propensity_touch_days": 8, "propensity_validation_days": 2, "minimum_rows": 100,
         "max_rounds": 300, "threads": 2}


@dataclass
class TrainedWorkspace:
    raw: Path
    workspace: Workspace
    settings: Settings
    reports: list[ModelReport]


def prepare_workspace(raw: Path, root: Path, settings: Settings) -> Workspace:
    workspace = Workspace.at(root)
    ingest_directory(raw, workspace, settings.ingest)
    run_identity_resolution(workspace, settings.identity)
    return workspace


@pytest.fixture(scope="session")
def small_settings() -> Settings:
    return load_settings(training=SMALL)


@pytest.fixture(scope="session")
def simulated_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("retailer") / "raw"
    simulate_to_directory(SimulationParameters(customers=2500, seed=5), raw)
    return raw


@pytest.fixture(scope="session")
def trained(tmp_path_factory, simulated_raw, small_settings) -> TrainedWorkspace:
    workspace = prepare_workspace(simulated_raw, tmp_path_factory.mktemp("trained"), small_settings)
    reports = train_models(workspace, small_settings, AS_OF)
    return TrainedWorkspace(simulated_raw, workspace, small_settings, reports)
