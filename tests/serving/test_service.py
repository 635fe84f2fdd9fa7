"""The BentoML service through its ASGI app: real models from the MLflow registry, real Feast online
store, real policy. Given a trained and materialized workspace, when campaign tools call it, then..."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from starlette.testclient import TestClient

pytestmark = pytest.mark.slow
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(served):
    from _pytest.monkeypatch import MonkeyPatch

    patch = MonkeyPatch()
    patch.setenv("CDP_WORKSPACE", str(served.workspace.root))
    patch.setenv("CDP_SERVING__API_TOKEN", TOKEN)
    from serving.service import RecommendationService

    with TestClient(RecommendationService.to_asgi(), raise_server_exceptions=False) as test_client:
        yield test_client
    patch.undo()


@pytest.fixture(scope="module")
def known(served) -> dict:
    """A few real references: customer ids, a record's (source, source_id) and an e-mail."""
    identity = pd.read_parquet(served.workspace.outputs / "identity_map.parquet")
    profiles = pd.read_parquet(served.workspace.outputs / "profiles.parquet")
    with_email = profiles.dropna(subset=["email"]).iloc[0]
    record = identity.iloc[10]
    return {"customer_ids": profiles["customer_id"].head(1000).tolist(), "record": record,
            "email_customer": with_email["customer_id"], "email": with_email["email"]}


def recommend(client, customers, context=None, headers=AUTH):
    body = {"customers": customers}
    if context is not None:
        body["context"] = context
    return client.post("/recommend", json=body, headers=headers)


def test_probes_and_docs_are_open_everything_else_needs_the_token(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs.json").status_code == 200
    assert recommend(client, [{"customer_id": "C000000001"}], headers={}).status_code == 401
    assert recommend(client, [{"customer_id": "C000000001"}], headers={"Authorization": "Bearer nope"}).status_code == 401


def test_answers_come_back_in_request_order_with_scores_action_and_reasons(client, known):
    references = [{"customer_id": c} for c in known["customer_ids"][:20]]
    response = recommend(client, references)
    assert response.status_code == 200, response.text
    answers = response.json()["recommendations"]
    assert [a["customer_id"] for a in answers] == known["customer_ids"][:20]
    found = [a for a in answers if a["found"]]
    assert found, "no known customer found in the online store"
    for answer in found:
        assert 0 <= answer["scores"]["churn_probability"] <= 1
        assert answer["next_best_action"] == "none" or answer["next_best_channel"] in ("email", "push", "sms")
        assert set(answer["model_versions"]) == {"churn", "propensity", "clv"}
        assert answer["reasons"]["churn"], "every scored customer gets churn reasons"
        assert isinstance(answer["alternatives"], list) and answer["alternatives"]


def test_source_ids_and_emails_resolve_through_the_identity_map(client, known):
    record = known["record"]
    answers = recommend(client, [{"source": record["source"], "source_id": record["source_id"]},
                                 {"email": known["email"].upper()}]).json()["recommendations"]
    assert answers[0]["customer_id"] == record["customer_id"]
    assert answers[1]["customer_id"] == known["email_customer"]
    assert known["email"] not in str(answers)  # the e-mail is echoed masked only


def test_unknown_customers_get_the_cold_start_answer(client):
    answers = recommend(client, [{"customer_id": "C999999999"}, {"email": "nobody@example.org"},
                                 {"customer_id": "Ωmega-☃"}]).json()["recommendations"]
    assert [a["found"] for a in answers] == [False, False, False]
    assert all(a["next_best_action"] == "none" and "cold start" in a["no_contact_reason"] for a in answers)


@pytest.mark.parametrize("body", [
    {},
    {"customers": []},
    {"customers": [{"customer_id": "C1", "email": "a@b.co"}]},
    {"customers": [{"source": "web"}]},
    {"customers": [{"customer_id": 12}]},
    {"customers": [{"customer_id": "C1", "shoe_size": 9}]},
    {"customers": "C1"},
    {"customers": [{"customer_id": f"C{i}"} for i in range(1001)]},
    {"customers": [{"customer_id": "C1"}], "context": {"allowed_channels": ["pigeon"]}},
])
def test_malformed_requests_get_a_4xx_with_a_message(client, body):
    response = client.post("/recommend", json=body, headers=AUTH)
    assert 400 <= response.status_code < 500, response.text
    assert response.text


def test_oversized_bodies_are_refused_before_parsing(client):
    response = client.post("/recommend", content=b"x" * 1_100_000, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413


def test_a_consent_withdrawn_through_events_is_honoured_on_the_next_call(client, known):
    # Given: a customer for whom the policy recommends a channel
    answers = recommend(client, [{"customer_id": c} for c in known["customer_ids"]]).json()["recommendations"]
    target = next((a for a in answers if a["found"] and a["next_best_channel"] and not a["holdout"]), None)
    if target is None:
        pytest.fail("no customer with a recommended channel among 1,000; the test proves nothing")
    channel = target["next_best_channel"]
    # When: the consent on that channel is withdrawn
    pushed = client.post("/events", json={"events": [{"customer_id": target["customer_id"],
                                                      f"latest_{channel}_consent": 0}]}, headers=AUTH)
    assert pushed.status_code == 200, pushed.text
    # Then: the next answer never uses it
    after = recommend(client, [{"customer_id": target["customer_id"]}]).json()["recommendations"][0]
    assert after["next_best_channel"] != channel
    assert all(not (alt["action"].split(":")[0] == channel and alt["eligible"]) for alt in after["alternatives"])


def test_reload_swaps_in_the_champions(client):
    response = client.post("/admin/reload", json={}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert set(response.json()["model_versions"]) == {"churn", "propensity", "clv"}


def test_no_raw_pii_in_logs(client, known, caplog):
    with caplog.at_level(logging.DEBUG):
        recommend(client, [{"email": known["email"]}])
    assert known["email"] not in caplog.text
