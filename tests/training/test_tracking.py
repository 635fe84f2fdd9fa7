"""Where MLflow keeps a workspace's runs and artifacts."""

from __future__ import annotations

from cdp.workspace import Workspace
from training.tracking import use_workspace_tracking


def test_every_experiment_of_a_new_workspace_keeps_its_artifacts_inside_it(tmp_path, monkeypatch):
    # Given a new workspace, and a command run from another directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    workspace = Workspace.at(tmp_path / "ws")
    # When tracking is set up for it
    client = use_workspace_tracking(workspace)
    # Then MLflow's own Default experiment, like ours, points inside the workspace, and nothing is made here
    locations = {e.name: e.artifact_location for e in client.search_experiments()}
    assert "Default" in locations and len(locations) == 2
    assert all(location.startswith(workspace.mlruns.as_uri()) for location in locations.values()), locations
    assert list(elsewhere.iterdir()) == []


def test_opening_the_registry_prints_no_library_deprecation_warning(tmp_path):
    import subprocess
    import sys

    # Given a fresh process that imports Feast (which resets warning filters) and opens a workspace's registry
    script = ("import feast\nfrom cdp.workspace import Workspace\nfrom training.tracking import use_workspace_tracking\n"
              f"use_workspace_tracking(Workspace.at({str(tmp_path / 'ws')!r})).search_experiments()\n")
    # When it runs
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    # Then SQLAlchemy's deprecation of MLflow's loader is not shown to the user
    assert "noload" not in printed, printed


def test_a_copied_workspace_loads_and_logs_its_own_models_not_the_originals(trained, tmp_path):
    import shutil
    import sqlite3

    from training.tracking import CHAMPION, REGISTERED_MODELS, load_model

    # Given a copy of a trained workspace, then a copy of that copy, the first copy gone
    first = Workspace.at(tmp_path / "first")
    shutil.copytree(trained.workspace.root, first.root)
    use_workspace_tracking(first)
    second = Workspace.at(tmp_path / "second")
    shutil.copytree(first.root, second.root)
    shutil.rmtree(first.root)
    # When the second copy's tracking is opened
    client = use_workspace_tracking(second)
    # Then its champions load from its own files
    assert load_model(REGISTERED_MODELS["churn"], CHAMPION).task == "churn"
    # ...and no location in its store names another directory: not the original, not the first copy
    with sqlite3.connect(second.mlruns / "mlflow.db") as connection:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                              ("model_versions", "storage_location"), ("logged_models", "artifact_location")):
            locations = [row[0] for row in connection.execute(f"SELECT {column} FROM {table}")]
            assert locations and all(loc.startswith(second.mlruns.as_uri() + "/") for loc in locations), (table, locations)
    assert {e.name for e in client.search_experiments()} >= {"Default", "customer-models"}
