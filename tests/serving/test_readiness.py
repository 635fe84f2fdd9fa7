"""Start-up faults through the service's ASGI app: given a workspace whose online store or champion
model is missing, /readyz answers 503 with what is missing and the command that fixes it, and the
process keeps serving (liveness stays up: a clear failure, not a crash loop)."""

from __future__ import annotations

import functools
import json
import logging
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


def test_an_invalid_configuration_is_a_503_naming_it_without_its_values(served, monkeypatch, caplog):
    # Given a configuration error in the environment, beside a Redis URL holding a password
    monkeypatch.setenv("CDP_POLICY__CONSENT_MODE", "bogus")
    monkeypatch.setenv("CDP_FEATURES__REDIS_CONNECTION_STRING", "redis://default:S3cretPassw0rd@localhost:6391")
    # When the service starts (a worker's __init__)
    with caplog.at_level(logging.INFO):
        status, body, alive = _readiness(served.workspace, monkeypatch)
    # Then it stays up and says what is wrong at /readyz (before, the error escaped __init__: BentoML restarted
    # the worker in a loop, logging a traceback that quoted the URL with its password)
    assert status == 503 and alive == 200
    assert any("policy.consent_mode" in p for p in body["problems"]), body
    assert "S3cretPassw0rd" not in caplog.text and "S3cretPassw0rd" not in json.dumps(body)
    # ...and an API call with the token gets the same 503, not "no API token configured" (a 401 misled)
    recommend = _calls(served.workspace, monkeypatch)["recommend"]
    assert recommend.status_code == 503 and "policy.consent_mode" in recommend.text, recommend.text


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


# --- not ready means not answering: the API says 503 with /readyz's problems, and touches nothing ---
TOKEN = {"Authorization": "Bearer test-token"}


def _calls(workspace: Workspace, monkeypatch) -> dict[str, object]:
    """/readyz, /recommend and /events on the service started on `workspace`."""
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("CDP_SERVING__API_TOKEN", "test-token")
    with TestClient(_app(), raise_server_exceptions=False) as client:
        return {"readyz": client.get("/readyz"),
                "recommend": client.post("/recommend", json={"customers": [{"customer_id": "C000000001"}]},
                                         headers=TOKEN),
                "events": client.post("/events", json={"events": [{"customer_id": "C000000001",
                                                                   "latest_email_consent": 0}]}, headers=TOKEN)}


def test_without_an_online_store_the_api_answers_503_and_creates_no_file(served, tmp_path, monkeypatch):
    # Given: the online store file is gone
    workspace = _copy(served, tmp_path)
    store = workspace.feast / "online_store.db"
    store.unlink()
    # When campaign tools call the service
    answers = _calls(workspace, monkeypatch)
    # Then /recommend and /events say 503 with the problem /readyz names and the command that fixes it
    problems = answers["readyz"].json()["problems"]
    for name in ("recommend", "events"):
        response = answers[name]
        assert response.status_code == 503, (name, response.text)
        assert response.json()["problems"] == problems, name
        assert "online store" in response.json()["error"] and "cdp features materialize" in response.json()["error"]
    # and no empty store file was left behind
    assert not store.exists()


def test_without_a_champion_recommend_answers_503_like_readyz_and_events_still_get_through(
        served, tmp_path, monkeypatch):
    # Given: the propensity model has no champion alias (docs/serving.md: 503 while a champion is missing)
    from training.tracking import CHAMPION, REGISTERED_MODELS, use_workspace_tracking

    workspace = _copy(served, tmp_path)
    use_workspace_tracking(workspace).delete_registered_model_alias(REGISTERED_MODELS["propensity"], CHAMPION)
    # When campaign tools call the service
    answers = _calls(workspace, monkeypatch)
    # Then /recommend says what /readyz says, not `none` for everyone
    assert answers["readyz"].status_code == 503
    recommend = answers["recommend"]
    assert recommend.status_code == 503, recommend.text
    assert any("propensity" in p and "cdp train propensity" in p for p in recommend.json()["problems"])
    assert recommend.json()["problems"] == answers["readyz"].json()["problems"]
    # and a consent withdrawal still reaches the online store, which is there
    assert answers["events"].status_code == 200, answers["events"].text


def test_orders_only_data_is_served_without_a_propensity_model(served, tmp_path, monkeypatch):
    # Given a shop without touches (orders-only data): no propensity champion can be trained
    from training.tracking import CHAMPION, REGISTERED_MODELS, use_workspace_tracking

    workspace = _copy(served, tmp_path)
    use_workspace_tracking(workspace).delete_registered_model_alias(REGISTERED_MODELS["propensity"], CHAMPION)
    workspace.lake_table("touches").unlink()
    # When campaign tools call the service
    answers = _calls(workspace, monkeypatch)
    # Then it is ready and answers churn and CLV, recommending no contact and saying why
    assert answers["readyz"].status_code == 200, answers["readyz"].text
    assert answers["recommend"].status_code == 200, answers["recommend"].text
    answer = answers["recommend"].json()["recommendations"][0]
    assert answer["found"] and answer["next_best_action"] == "none"
    assert answer["no_contact_reason"].startswith("no propensity model")
    assert answer["scores"]["clv"] is not None


def test_a_model_the_last_training_skipped_for_want_of_data_is_not_waited_for(served, tmp_path, monkeypatch):
    # Given touches in the lake but too few controlled campaign days: training skipped propensity, saying why
    from training.pipeline import ModelReport, record_untrainable
    from training.tracking import CHAMPION, REGISTERED_MODELS, use_workspace_tracking

    workspace = _copy(served, tmp_path)
    use_workspace_tracking(workspace).delete_registered_model_alias(REGISTERED_MODELS["propensity"], CHAMPION)
    record_untrainable(workspace, [ModelReport("propensity", "skipped", "propensity: 1 usable day(s) of controlled "
                                                                       "campaigns; two are needed")])
    # When the service starts
    answers = _calls(workspace, monkeypatch)
    # Then it is ready, answering without a contact; and a later successful training takes the marker off
    assert answers["readyz"].status_code == 200, answers["readyz"].text
    assert answers["recommend"].json()["recommendations"][0]["no_contact_reason"].startswith("no propensity model")
    record_untrainable(workspace, [ModelReport("propensity", "trained")])
    assert _readiness(workspace, monkeypatch)[0] == 503


def test_a_store_emptied_while_reachable_is_found_by_the_worker_a_request_reaches(served, monkeypatch, caplog):
    from cdp.config import load_settings
    from serving.engine import EngineNotReadyError, RecommendationEngine

    # Given a ready engine whose store is then emptied while it still answers (Redis flushed, or restarted
    # empty): no probe reaches this worker
    engine = RecommendationEngine.load(served.workspace, load_settings())
    assert engine.readiness() == []
    customers = sorted(engine.identity.customers)[:3]
    read = engine.online_columns
    monkeypatch.setattr(engine, "online_columns", lambda ids: (read(ids)[0], [False] * len(ids)))
    engine._store_checked_at = 0.0  # the last check longer ago than the re-check interval
    # When a request finds none of its customers
    with caplog.at_level(logging.INFO, logger="cdp.serving"), pytest.raises(EngineNotReadyError, match="holds no features"):
        engine.recommend([{"customer_id": c} for c in customers])
    # Then it is a 503 naming the empty store (it answered everyone with the cold start), logged once; and when
    # the store holds them again, the worker says it is ready
    monkeypatch.setattr(engine, "online_columns", read)
    with caplog.at_level(logging.INFO, logger="cdp.serving"):
        assert engine.readiness() == []
    assert "holds no features" in caplog.text and "answers again: ready" in caplog.text


def test_a_store_that_fails_mid_service_makes_the_engine_not_ready_until_it_is_back(served, monkeypatch):
    import redis

    from cdp.config import load_settings
    from serving import engine as engine_module
    from serving.engine import EngineNotReadyError, RecommendationEngine

    # Given a ready engine
    engine = RecommendationEngine.load(served.workspace, load_settings())
    assert engine.readiness() == []
    customer = sorted(engine.identity.customers)[0]
    # When its online store stops answering (Redis down)
    def down(_ids):
        raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:6390. Connection refused.")

    monkeypatch.setattr(engine, "online_columns", down)
    # Then the request is not ready (a 503 in the service), naming the store, and so are the next ones
    with pytest.raises(EngineNotReadyError, match="online store .* unreadable: ConnectionError"):
        engine.recommend([{"customer_id": customer}])
    with pytest.raises(EngineNotReadyError, match="unreadable"):
        engine.require_ready()
    # When it is back, the next re-check finds it and requests are answered again
    monkeypatch.undo()
    monkeypatch.setattr(engine_module, "STORE_RECHECK_SECONDS", 0.0)
    engine.require_ready()
    assert engine.problems == [] and engine.recommend([{"customer_id": customer}])[0]["found"]


def test_a_consent_sent_while_the_store_is_down_is_kept_for_the_next_materialize(served, tmp_path, monkeypatch):
    import redis

    from cdp.config import load_settings
    from features.feature_store import push_log_entries
    from serving.engine import EngineNotReadyError, RecommendationEngine

    # Given a ready engine on a workspace of its own, whose online store then stops answering
    workspace = _copy(served, tmp_path)
    engine = RecommendationEngine.load(workspace, load_settings())
    customer = sorted(engine.identity.customers)[0]

    def down(*_args, **_kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:6390. Connection refused.")

    monkeypatch.setattr(engine.store, "get_online_features", down)
    pushed_before = len(push_log_entries(workspace)[0])  # the shared workspace may hold other tests' pushes
    # When a consent withdrawal arrives through /events
    with pytest.raises(EngineNotReadyError, match="unreadable"):
        engine.apply_events([{"customer_id": customer, "latest_email_consent": 0}])
    # Then the caller hears 503, and the withdrawal is in the push log all the same
    entries, _ = push_log_entries(workspace)
    assert [(e["customer_id"], e["fields"]) for e in entries[pushed_before:]] == [(customer, {"latest_email_consent": 0})]


def test_the_next_request_after_a_materialize_carries_the_new_feature_moment(served, tmp_path):
    import json

    from cdp.config import load_settings
    from serving.engine import RecommendationEngine

    # Given a ready engine, and then a materialize of a later snapshot (its record rewritten)
    workspace = _copy(served, tmp_path)
    engine = RecommendationEngine.load(workspace, load_settings())
    engine.require_ready()
    record = workspace.feast / "materialized.json"
    written = json.loads(record.read_text())
    record.write_text(json.dumps({**written, "features_as_of": "2027-01-01T00:00:00+00:00"}))
    # When the next request arrives (no /readyz probe in between)
    engine.require_ready()
    # Then it answers with the new moment
    assert engine.features_as_of == "2027-01-01T00:00:00+00:00"


def test_a_stale_online_store_is_warned_about_once_not_at_every_recheck(tmp_path, caplog):
    import json
    import logging

    from cdp.config import load_settings
    from serving.engine import IdentityLookup, LoadedModels, RecommendationEngine

    # Given a workspace whose online store was loaded years ago
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    (workspace.feast / "materialized.json").write_text(json.dumps(
        {"materialized_at": "2020-01-01T00:00:00+00:00", "snapshots_until": "2020-01-01T00:00:00+00:00",
         "online_store": "sqlite"}))
    engine = RecommendationEngine(workspace, load_settings(), None, IdentityLookup({}, {}, set(), None),
                                  LoadedModels({}, {}, {}))
    # When the store is checked again and again (as /readyz probes do, every 5 s)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            engine.readiness()
    # Then its staleness is logged once
    assert sum("days ago" in record.getMessage() for record in caplog.records) == 1


# --- an id retired by a merge: its events go to the customer it was merged into ---
def test_events_for_an_id_retired_by_a_merge_update_the_survivor(served, tmp_path, monkeypatch):
    import pandas as pd

    from cdp.config import load_settings
    from cdp.files import write_json
    from feature_repo.definitions import REALTIME_VIEW
    from features.feature_store import open_feature_store
    from features.identity.store import identity_paths, read_identity_state

    # Given a workspace whose last resolution merged C999999990 into a known customer
    workspace = _copy(served, tmp_path)
    survivor = pd.read_parquet(workspace.outputs / "identity_map.parquet")["customer_id"].iloc[0]
    state = read_identity_state(workspace)
    write_json(identity_paths(workspace)["state"], {**state, "merged_into": {"C999999990": survivor}})
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("CDP_SERVING__API_TOKEN", "test-token")
    # When a campaign tool still holding the retired id withdraws the customer's push consent
    with TestClient(_app(), raise_server_exceptions=False) as retired_client:
        response = retired_client.post("/events", headers=TOKEN, json={"events": [
            {"customer_id": "C999999990", "latest_push_consent": 0}]})
        answered = retired_client.post("/recommend", headers=TOKEN,
                                       json={"customers": [{"customer_id": "C999999990"}]})
    answer = answered.json()["recommendations"][0]
    # Then the withdrawal lands on the survivor's online row, and the response says where it went
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1 and response.json()["refused"] == []
    assert response.json()["redirected"] == [{"customer_id": "C999999990", "applied_to": survivor}]
    store = open_feature_store(workspace, load_settings().features)
    rows = store.get_online_features(features=[f"{REALTIME_VIEW}:latest_push_consent"],
                                     entity_rows=[{"customer_id": survivor}, {"customer_id": "C999999990"}]).to_dict()
    assert rows["latest_push_consent"] == [0, None], "the survivor's row is updated and no row made for the old id"
    from features.feature_store import push_log_entries

    logged = push_log_entries(workspace)[0][-1]
    assert (logged["customer_id"], logged["sent_as"], logged["fields"]) == (survivor, ["C999999990"],
                                                                          {"latest_push_consent": 0})
    # ...and the retired id is answered as the survivor, never on push
    assert answer["customer_id"] == survivor and answer["next_best_channel"] != "push"
