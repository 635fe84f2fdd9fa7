"""Shared fixtures: every test gets its own workspace under pytest's tmp_path; a small simulated
retailer over two years is ingested, resolved, trained and served once per session."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from cdp.config import IngestSettings, Settings, load_settings
from cdp.workspace import Workspace

# The same examples on every run, so that a merge is judged on the code and not on which random cases
# Hypothesis happened to draw; `HYPOTHESIS_PROFILE=explore make test` searches afresh (and keeps failures
# in .hypothesis/ to replay).
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore")
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


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



AS_OF = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
SMALL = {"snapshot_count": 4, "propensity_touch_days": 8, "propensity_validation_days": 2, "minimum_rows": 100,
         "max_rounds": 300, "threads": 2}


@dataclass
class TrainedWorkspace:
    raw: Path
    workspace: Workspace
    settings: Settings
    reports: list  # training.pipeline.ModelReport


def prepare_workspace(raw: Path, root: Path, settings: Settings) -> Workspace:
    from features.identity.store import run_identity_resolution
    from features.ingest import ingest_directory

    workspace = Workspace.at(root)
    ingest_directory(raw, workspace, settings.ingest)
    run_identity_resolution(workspace, settings.identity)
    return workspace


@pytest.fixture(scope="session")
def small_settings() -> Settings:
    return load_settings(training=SMALL)


@pytest.fixture(scope="session")
def simulated_raw(tmp_path_factory) -> Path:
    from features.simulator import SimulationParameters, simulate_to_directory

    raw = tmp_path_factory.mktemp("retailer") / "raw"
    simulate_to_directory(SimulationParameters(customers=2500, seed=5), raw)
    return raw


@pytest.fixture(scope="session")
def trained(tmp_path_factory, simulated_raw, small_settings) -> TrainedWorkspace:
    from training.pipeline import train_models

    workspace = prepare_workspace(simulated_raw, tmp_path_factory.mktemp("trained"), small_settings)
    reports = train_models(workspace, small_settings, AS_OF)
    return TrainedWorkspace(simulated_raw, workspace, small_settings, reports)


@pytest.fixture(scope="session")
def served(trained) -> TrainedWorkspace:
    """The trained workspace with features as of AS_OF in the online store (what the service reads)."""
    from features.feature_store import apply_feature_definitions, materialize_online
    from features.feature_tables import ensure_feature_snapshots

    ensure_feature_snapshots(trained.workspace, [AS_OF])
    apply_feature_definitions(trained.workspace, trained.settings.features)
    materialize_online(trained.workspace, trained.settings.features, AS_OF)
    return trained
