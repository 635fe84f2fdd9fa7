"""The audit log: pseudonymous JSON lines, appended in one write per call, rotated by size; and the
service writes one line per /recommend answer."""

from __future__ import annotations

import functools
import json
import shutil

import pandas as pd
import pytest
from starlette.testclient import TestClient

from cdp.config import PrivacySettings
from cdp.workspace import Workspace
from features.suppression import keyed_hash, read_salt
from serving.audit import (
    AuditLog,
    audit_files,
    audited_campaign,
    consent_entries,
    read_entries,
    recommendation_entries,
)

TOKEN = "audit-token"


def entry(number: int) -> dict:
    return {"event": "recommend", "sequence": number, "padding": "x" * 40}


def test_the_log_rotates_by_size_and_keeps_the_configured_number_of_files(tmp_path):
    # Given a small size limit and two backups
    path = tmp_path / "audit" / "audit.log"
    audit = AuditLog(path, max_bytes=1_000, backups=2, salt=b"s" * 32)
    # When many entries are appended, one call at a time
    for number in range(200):
        audit.append([entry(number)])
    audit.close()
    # Then there are the log and two rotated files, none much over the limit, and nothing older
    assert [p.name for p in audit_files(path)] == ["audit.log.2", "audit.log.1", "audit.log"]
    assert not path.with_name("audit.log.3").exists()
    assert all(p.stat().st_size < 1_000 + len(json.dumps(entry(0))) + 2 for p in audit_files(path))
    # and the entries kept are the newest, in order, every line whole
    numbers = [json.loads(line)["sequence"] for p in audit_files(path) for line in p.read_text().splitlines()]
    assert numbers == list(range(200 - len(numbers), 200)) and numbers[-1] == 199


def test_two_workers_appending_and_rotating_lose_and_tear_no_line(tmp_path):
    path = tmp_path / "audit.log"
    first, second = (AuditLog(path, max_bytes=5_000, backups=50, salt=b"s" * 32) for _ in range(2))
    for number in range(300):
        (first if number % 2 else second).append([entry(number), entry(number + 1000)])
    first.close()
    second.close()
    lines = [line for p in audit_files(path) for line in p.read_text().splitlines()]
    assert sorted(json.loads(line)["sequence"] for line in lines) == sorted([*range(300), *range(1000, 1300)])


def test_recommendation_entries_name_customers_by_pseudonym_only():
    answers = [{"customer_id": "C000000042", "found": True, "next_best_action": "push", "next_best_channel": "push",
                "holdout": False, "win_back": {"eligible": True, "action": "push_10pct"},
                "model_versions": {"churn": "3"}, "reference": {"email": "j***@example.com"}},
               {"customer_id": None, "found": False, "next_best_action": "none", "reference": {"email": "x***@y.z"}}]
    entries = recommendation_entries(answers, "spring", lambda c: f"hash-of-{c}", "2026-07-01T00:00:00Z")
    assert entries[0] == {"time": "2026-07-01T00:00:00Z", "event": "recommend", "subject": "hash-of-C000000042",
                          "found": True, "action": "push", "channel": "push", "policy_action": None,
                          "win_back": "push_10pct", "holdout": False, "campaign_id": "spring",
                          "model_versions": {"churn": "3"}}
    assert entries[1]["subject"] is None and "reference" not in entries[1]


@pytest.mark.parametrize(("context", "recorded"), [
    (None, "default"), ({}, "default"), ({"campaign_id": None}, "default"), ({"campaign_id": "spring"}, "spring"),
    ({"campaign_id": ""}, ""),
])
def test_the_audited_campaign_is_the_one_the_policy_hashes_the_holdout_with(context, recorded):
    # Given a request's context; then the audit records the campaign as serving/policy.py decides it
    # (`is not None`): an empty id, refused by the service, is not silently recorded as the default
    assert audited_campaign(context, "default") == recorded


@functools.cache
def _app():
    """One ASGI app per process: BentoML registers its metrics once (a second app: duplicated timeseries)."""
    from serving.service import RecommendationService

    return RecommendationService.to_asgi()


def _service_workspace(served, tmp_path, monkeypatch) -> Workspace:
    """A copy of the served workspace without its audit log, which the service started next serves."""
    workspace = Workspace.at(tmp_path / "ws")
    shutil.copytree(served.workspace.root, workspace.root, ignore=shutil.ignore_patterns("audit"))
    monkeypatch.setenv("CDP_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("CDP_SERVING__API_TOKEN", TOKEN)
    return workspace


@pytest.mark.slow
def test_a_recommend_call_writes_one_audit_line_per_answer(served, tmp_path, monkeypatch):
    # Given the service on a copy of the served workspace
    workspace = _service_workspace(served, tmp_path, monkeypatch)
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet")
    with_email = profiles.dropna(subset=["email"]).iloc[3]

    # When a campaign tool asks about a customer id, an e-mail and an unknown customer
    with TestClient(_app(), raise_server_exceptions=False) as client:
        response = client.post("/recommend", headers={"Authorization": f"Bearer {TOKEN}"}, json={
            "customers": [{"customer_id": "C000000001"}, {"email": with_email["email"]}, {"customer_id": "nobody"}],
            "context": {"campaign_id": "autumn"}})
    assert response.status_code == 200, response.text
    answers = response.json()["recommendations"]
    # Then the log has one entry per answer, with the pseudonym, decision, holdout, campaign and models
    privacy = PrivacySettings()
    entries = list(read_entries(workspace, privacy))
    assert len(entries) == 3
    salt = read_salt(workspace, privacy)
    assert [e["subject"] for e in entries] == [keyed_hash(salt, "customer", a["customer_id"]) for a in answers]
    assert [e["action"] for e in entries] == [a["next_best_action"] for a in answers]
    assert [e["holdout"] for e in entries] == [a["holdout"] for a in answers]
    assert {e["campaign_id"] for e in entries} == {"autumn"}
    assert entries[0]["model_versions"] == answers[0]["model_versions"] and entries[0]["model_versions"]
    # and no raw id or e-mail
    text = (workspace.root / privacy.audit_log).read_text()
    assert "C000000001" not in text and with_email["email"] not in text and with_email["customer_id"] not in text


def test_consent_entries_say_what_changed_through_what_and_for_whom_only_by_pseudonym():
    # Given pushed updates: a withdrawal, a grant with a moment beside it, a moment alone, a refused one,
    # and one under a retired id
    updates = [{"customer_id": "C1", "latest_email_consent": 0},
               {"customer_id": "C2", "latest_sms_consent": 1, "last_visit_epoch_seconds": 1},
               {"customer_id": "C3", "last_order_epoch_seconds": 1},
               {"customer_id": "C4", "latest_push_consent": 0},
               {"customer_id": "C5", "latest_push_consent": 1},
               {"customer_id": "C6", "latest_email_consent": 0, "latest_sms_consent": 1}]
    # When written as audit entries, C4 refused, C6 refused as not in the online store yet (its withdrawal kept)
    entries = consent_entries(updates, "POST /events", lambda c: f"p:{c}", "t", refused={"C4", "C6"},
                              redirected={"C5": "C9"}, pending={"C6"})
    # Then one per consent change applied, under the customer it was applied to, with the door it came through
    assert entries == [
        {"time": "t", "event": "consent", "subject": "p:C1", "changes": {"email": "withdrawn"}, "via": "POST /events"},
        {"time": "t", "event": "consent", "subject": "p:C2", "changes": {"sms": "granted"}, "via": "POST /events"},
        {"time": "t", "event": "consent", "subject": "p:C9", "changes": {"push": "granted"}, "via": "POST /events"},
        {"time": "t", "event": "consent", "subject": "p:C6", "changes": {"email": "withdrawn"}, "via": "POST /events",
         "applied": "at the next materialize"},
    ]


@pytest.mark.slow
def test_a_consent_change_through_the_service_is_audited(served, tmp_path, monkeypatch):
    # Given the service on a copy of the served workspace
    workspace = _service_workspace(served, tmp_path, monkeypatch)

    # When a customer withdraws e-mail consent through /events
    with TestClient(_app(), raise_server_exceptions=False) as client:
        response = client.post("/events", headers={"Authorization": f"Bearer {TOKEN}"},
                               json={"events": [{"customer_id": "C000000001", "latest_email_consent": 0}]})
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    # Then the audit log has the change, by pseudonym (the push log alone kept no source, and an erasure deletes it)
    privacy = PrivacySettings()
    entries = [e for e in read_entries(workspace, privacy) if e["event"] == "consent"]
    salt = read_salt(workspace, privacy)
    assert entries == [{"time": entries[0]["time"], "event": "consent", "subject": keyed_hash(salt, "customer", "C000000001"),
                        "changes": {"email": "withdrawn"}, "via": "POST /events"}]
    assert "C000000001" not in (workspace.root / privacy.requests_log).read_text()
