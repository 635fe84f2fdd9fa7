"""Start-up faults through the service's ASGI app: given a workspace whose online store or champion
model is missing, /readyz answers 503 with what is missing and the command that fixes it, and the
process keeps serving (liveness stays up: a clear failure, not a crash loop)."""

from __future__ import annotations

import functools
import shutil

import pytest
from starlette.testclient import TestClient

from cdp.workspace import Workspace

pytestmark = pytest.mark.slow


def _copy(served, tmp_path) -> Workspace:
    shutil.copytree(served.workspace.root, tmp_path / "ws")
    return Workspace.at(tmp_path / "ws")


@functools.cache
def _app():
    """One ASGI app per process (BentoML registers its metrics once); each TestClient start-up runs
    the service's __init__ again, on the workspace CDP_WORKSPACE names then."""
    from serving.service import RecommendationService

    return RecommendationService.to_asgi()


def _readiness(workspace: Workspace, monkeypatch) -> tuple[int, dict | str, int]:
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("CDP_SERVING__API_TOKEN", "test-token")
    with TestClient(_app(), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        body = ready.json() if ready.headers.get("content-type", "").startswith("application/json") else ready.text
        return ready.status_code, body, client.get("/livez").status_code


def test_a_missing_online_store_is_a_clear_503_not_a_crash(served, tmp_path, monkeypatch):
    # Given: the online store file is gone
    workspace = _copy(served, tmp_path)
    (workspace.feast / "online_store.db").unlink()
    # When
    status, body, alive = _readiness(workspace, monkeypatch)
    # Then
    assert status == 503 and alive == 200
    assert body["ready"] is False
    assert any("online store" in p and "cdp features materialize" in p for p in body["problems"]), body


def test_a_never_materialized_online_store_says_so(served, tmp_path, monkeypatch):
    workspace = _copy(served, tmp_path)
    (workspace.feast / "materialized.json").unlink()
    status, body, alive = _readiness(workspace, monkeypatch)
    assert status == 503 and alive == 200
    assert any("never materialized" in p and "cdp features materialize" in p for p in body["problems"]), body


def test_a_missing_champion_alias_names_the_model_and_the_command(served, tmp_path, monkeypatch):
    # Given: the churn model has no champion alias in the registry
    from training.tracking import CHAMPION, REGISTERED_MODELS, use_workspace_tracking

    workspace = _copy(served, tmp_path)
    use_workspace_tracking(workspace).delete_registered_model_alias(REGISTERED_MODELS["churn"], CHAMPION)
    # When
    status, body, alive = _readiness(workspace, monkeypatch)
    # Then
    assert status == 503 and alive == 200
    assert any("churn" in p and "cdp train churn" in p for p in body["problems"]), body
    assert not any("propensity" in p for p in body["problems"]), "only the missing model is named"


def test_a_complete_workspace_is_ready(served, monkeypatch):
    status, body, alive = _readiness(served.workspace, monkeypatch)
    assert (status, alive) == (200, 200)
