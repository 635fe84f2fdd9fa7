"""A reload reaches every worker: the worker that takes POST /admin/reload announces a new generation in
the workspace's reload marker; every other worker's engine notices it (one os.stat per request) and loads
the champions in the background, answering meanwhile with the models it has."""

from __future__ import annotations

import shutil
import threading

import pytest

from cdp.workspace import Workspace
from serving.engine import announce_reload, marker_signature, read_reload_generation


def test_each_announcement_is_a_new_generation_written_whole(tmp_path):
    # Given no marker yet
    path = tmp_path / "serving" / "reload.json"
    assert read_reload_generation(path) == 0 and marker_signature(path) is None
    # When reloads are announced, from several threads at once
    threads = [threading.Thread(target=announce_reload, args=(path,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    generation, signature = announce_reload(path)
    # Then each counted once, the file is whole, and the signature returned is the file's
    assert generation == read_reload_generation(path) == 9
    assert signature == marker_signature(path)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_reload_in_one_worker_reaches_the_others(served, tmp_path):
    from cdp.config import load_settings
    from serving.engine import RecommendationEngine
    from training.tracking import CHAMPION, REGISTERED_MODELS, use_workspace_tracking

    # Given two workers' engines on one workspace whose churn model lost its champion: both not ready
    workspace = Workspace.at(tmp_path / "ws")
    shutil.copytree(served.workspace.root, workspace.root, ignore=shutil.ignore_patterns("audit"))
    registry, name = use_workspace_tracking(workspace), REGISTERED_MODELS["churn"]
    version = registry.get_model_version_by_alias(name, CHAMPION).version
    registry.delete_registered_model_alias(name, CHAMPION)
    settings = load_settings()
    first, second = (RecommendationEngine.load(workspace, settings) for _ in range(2))
    for engine in (first, second):
        engine.readiness()
        assert any("cdp train churn" in p for p in engine.problems)
    assert first.follow_reloads() is None, "nothing announced yet"
    # When the champion is back and the first worker reloads
    registry.set_registered_model_alias(name, CHAMPION, version)
    versions, generation = first.reload()
    assert "churn" in versions and first.problems == [] and first.generation == generation
    # Then the second, at its next request, loads it in the background, still answering meanwhile
    loading = second.follow_reloads()
    assert loading is not None
    customer = sorted(second.identity.customers)[0]
    assert len(second.recommend([{"customer_id": customer}])) == 1
    loading.join(timeout=180)
    assert not loading.is_alive()
    # and answers from the same champions, ready, at the announced generation
    assert second.generation == generation and second.problems == []
    assert second.recommend([{"customer_id": customer}])[0]["model_versions"] == versions
    # and once up to date neither reloads again
    assert second.follow_reloads() is None and first.follow_reloads() is None


def test_an_unchanged_marker_is_only_stat_ed(tmp_path, monkeypatch):
    """Given an engine whose marker did not change, the per-request check stats the marker and reads
    nothing (its cost is measured with the service's latency in the serving benchmark, not here)."""
    from cdp.config import load_settings
    from serving import engine as engine_module
    from serving.engine import LoadedModels, RecommendationEngine, reload_marker

    workspace = Workspace.at(tmp_path)
    announce_reload(reload_marker(workspace))
    engine = RecommendationEngine(workspace, load_settings(), None, None, LoadedModels({}, {}, {}))
    reads = []
    monkeypatch.setattr(engine_module, "read_reload_generation", lambda path: reads.append(path) or 0)
    for _ in range(100):
        assert engine.follow_reloads() is None
    assert reads == []


def test_a_failed_follow_is_tried_again_and_a_reload_during_start_up_is_followed(tmp_path, monkeypatch):
    from cdp.config import load_settings
    from serving import engine as engine_module
    from serving.engine import LoadedModels, RecommendationEngine, reload_marker

    monkeypatch.setattr(engine_module, "RELOAD_RETRY_SECONDS", 0.0)
    workspace = Workspace.at(tmp_path)
    marker = reload_marker(workspace)
    # Given a worker that read the marker (generation 0, none yet) before its models loaded, and a
    # reload announced by another worker while they were loading
    seen_at_start = (marker_signature(marker), read_reload_generation(marker))
    announce_reload(marker)
    engine = RecommendationEngine(workspace, load_settings(), None, None, LoadedModels({}, {}, {}), seen_at_start)
    # When its first follow fails (the registry busy), then the next one works
    attempts = []

    def load(_workspace):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("database is locked")
        return LoadedModels({}, {"churn": "2"}, {})

    monkeypatch.setattr(RecommendationEngine, "_load_models", staticmethod(load))
    monkeypatch.setattr(RecommendationEngine, "readiness", lambda self: [])
    first = engine.follow_reloads()
    first.join(timeout=10)
    assert engine.generation == 0, "the failed load left the old models and generation"
    second = engine.follow_reloads()
    # Then the reload announced during start-up was followed, on the second try
    assert second is not None
    second.join(timeout=10)
    assert len(attempts) == 2 and engine.generation == 1 and engine.follow_reloads() is None
