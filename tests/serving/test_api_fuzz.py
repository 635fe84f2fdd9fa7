"""Schemathesis against the service's own OpenAPI document (GET /docs.json), through the ASGI app in
process, on a copy of the served workspace (/events pushes into its online store, /recommend appends to
its audit log). Given the documented API, when schemathesis generates valid and invalid requests for
every operation, then no answer is a 5xx, every status code and body is the documented one, invalid
requests get a 4xx, valid ones are accepted, and the bearer token is enforced.

Bounded and deterministic: at most MAX_EXAMPLES generated cases per operation and phase, a fixed seed,
derandomized Hypothesis, no example database, no deadline (about a minute on 2 cores)."""

from __future__ import annotations

import shutil
import zlib
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import pytest
import schemathesis

from cdp.workspace import Workspace
from tests.serving.conftest import forget_bentoml_metrics

pytestmark = pytest.mark.slow
TOKEN = "fuzz-token-0123456789"
SEED = 20260701
MAX_EXAMPLES = 50
FUZZ_CONFIG = {
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}},
    "phases": {"stateful": {"enabled": False}},
}
API = {"POST /recommend", "POST /events", "POST /admin/reload"}
PROBES = {"GET /healthz", "GET /livez", "GET /readyz", "GET /metrics"}
API_ERRORS = {"400", "401", "413", "415", "500", "503"}


@dataclass
class FuzzedService:
    schema: schemathesis.BaseSchema
    workspace: Workspace
    customer_ids: list[str]


@pytest.fixture(scope="module")
def fuzzed(served, tmp_path_factory):
    """The service on a private copy of the served workspace, and its schema as schemathesis loads it."""
    from _pytest.monkeypatch import MonkeyPatch
    from schemathesis.python.asgi import shutdown_lifespans

    workspace = Workspace.at(tmp_path_factory.mktemp("fuzz") / "ws")
    shutil.copytree(served.workspace.root, workspace.root, ignore=shutil.ignore_patterns("audit"))
    patch = MonkeyPatch()
    patch.setenv("CDP_WORKSPACE", str(workspace.root))
    patch.setenv("CDP_SERVING__API_TOKEN", TOKEN)
    from serving.service import RecommendationService

    forget_bentoml_metrics()
    config = schemathesis.Config.from_dict(FUZZ_CONFIG)
    schema = schemathesis.openapi.from_asgi("/docs.json", RecommendationService.to_asgi(), config=config)
    customer_ids = pd.read_parquet(workspace.outputs / "profiles.parquet")["customer_id"].head(200).tolist()
    yield FuzzedService(schema, workspace, customer_ids)
    shutdown_lifespans()
    forget_bentoml_metrics()
    patch.undo()


def with_known_customers(body, customer_ids: list[str]):
    """Swap each generated customer_id (a 1–64 character string) for a real one, picked by a checksum
    of the generated value so runs repeat: random ids are all cold starts, and the scored answer
    (scores, alternatives, reasons) must be fuzzed too; the generated source ids and e-mails stay
    unknown. The body's validity is unchanged."""
    if not isinstance(body, dict):
        return body
    for key in ("customers", "events"):
        items = body.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            value = item.get("customer_id") if isinstance(item, dict) else None
            if isinstance(value, str) and 1 <= len(value) <= 64:
                checksum = zlib.crc32(value.encode("utf-8", "surrogatepass"))
                item["customer_id"] = customer_ids[checksum % len(customer_ids)]
    return body


def run_schemathesis(schema) -> tuple[Counter, list[str]]:
    """Every phase schemathesis runs by default (examples, coverage, fuzzing) with every default check;
    returns the test cases per operation and one readable entry (with a curl line) per problem.

    The engine, not `schemathesis.pytest.from_fixture`: that one sets `Function._nodeid`, which pytest 9
    no longer has."""
    from schemathesis.engine import Status, events, from_schema

    cases: Counter = Counter()
    problems: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases[event.recorder.label] += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        problems.append(f"{event.recorder.label} [{event.phase}] {check.name}: {failure.title}\n"
                                        f"{failure.message}\n{check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: {event.info.title}\n{event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return cases, list(dict.fromkeys(problems))


def test_the_schema_documents_every_route_its_auth_and_its_errors(fuzzed):
    document = fuzzed.schema.raw_schema
    operations = {f"{method.upper()} {path}": operation for path, item in document["paths"].items()
                  for method, operation in item.items()}
    assert set(operations) == API | PROBES
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for name in API:
        assert operations[name]["security"] == [{"bearerAuth": []}], name
        assert set(operations[name]["responses"]) >= API_ERRORS, name
        assert "404" not in operations[name]["responses"], f"{name}: BentoML's generic 404 is never answered"
    for name in PROBES:
        assert operations[name]["security"] == [], f"{name} is open"
    assert operations["GET /readyz"]["responses"].keys() == {"200", "503"}
    assert operations["POST /recommend"]["requestBody"]["required"] is True


def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzzed):
    # Given the documented API, with real customers among the generated ones
    fuzzed.schema.hook("map_body")(lambda context, body: with_known_customers(body, fuzzed.customer_ids))
    # When schemathesis runs every phase and check on every operation
    cases, problems = run_schemathesis(fuzzed.schema)
    # Then every operation was exercised and nothing failed
    assert set(cases) == API | PROBES and all(cases[name] > 0 for name in API), cases
    assert not problems, f"{len(problems)} problems:\n\n" + "\n\n".join(problems)


@pytest.mark.parametrize("context", [
    None,
    {"campaign_id": "☃ spring-🌸", "campaign_type": "win_back"},
    {"allowed_channels": []},
    {"allowed_channels": ["sms", "sms", "push"]},
    {"campaign_id": None, "allowed_channels": None},
], ids=["no context", "unicode campaign", "no channel allowed", "repeated channels", "null fields"])
def test_scored_answers_match_the_documented_schema(fuzzed, context):
    # Given real customers (scored answers: scores, alternatives, win-back, reasons) and a context
    body = {"customers": [{"customer_id": c} for c in fuzzed.customer_ids[:20]], "context": context}
    # When campaign tools ask
    case = fuzzed.schema["/recommend"]["POST"].Case(body=body, media_type="application/json")
    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
    # Then the answer passes every check, schema conformance included, and real customers are scored
    answers = response.json()["recommendations"]
    assert [a["customer_id"] for a in answers] == fuzzed.customer_ids[:20]
    assert any(a["found"] and a["scores"] for a in answers)


def test_several_events_for_one_customer_are_merged_into_one_push(fuzzed):
    # Given two events for one customer in one call (a consent change, then an order)
    customer = fuzzed.customer_ids[0]
    body = {"events": [{"customer_id": customer, "latest_sms_consent": 0},
                       {"customer_id": customer, "last_order_epoch_seconds": 1_782_000_000},
                       {"customer_id": customer, "latest_sms_consent": 1}]}
    # When they are pushed
    case = fuzzed.schema["/events"]["POST"].Case(body=body, media_type="application/json")
    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
    # Then all are accepted (not a 500 from a duplicated index) and the later consent wins
    assert response.json()["accepted"] == 3
    from cdp.config import load_settings
    from feature_repo.definitions import REALTIME_VIEW
    from features.feature_store import open_feature_store

    store = open_feature_store(fuzzed.workspace, load_settings().features)
    online = store.get_online_features(features=[f"{REALTIME_VIEW}:latest_sms_consent"],
                                       entity_rows=[{"customer_id": customer}]).to_dict()
    assert online["latest_sms_consent"] == [1]


def test_readyz_on_a_service_that_is_not_ready_answers_as_documented(tmp_path, monkeypatch):
    # Given the service on an empty workspace (no identity map, models or online store)
    monkeypatch.setenv("CDP_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("CDP_SERVING__API_TOKEN", TOKEN)
    from schemathesis.checks import not_a_server_error
    from schemathesis.python.asgi import shutdown_lifespans

    from serving.service import RecommendationService

    forget_bentoml_metrics()
    expected_503 = {"excluded_checks": [not_a_server_error]}
    try:
        schema = schemathesis.openapi.from_asgi("/docs.json", RecommendationService.to_asgi(),
                                                config=schemathesis.Config.from_dict(FUZZ_CONFIG))
        # When a probe and a campaign tool call it
        probe = schema["/readyz"]["GET"].Case().call_and_validate(**expected_503)
        asked = schema["/recommend"]["POST"].Case(body={"customers": [{"customer_id": "C1"}]}, media_type="application/json")
        answer = asked.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, **expected_503)
    finally:
        shutdown_lifespans()
        forget_bentoml_metrics()
    # Then both say 503 in the documented shape, /readyz with what is missing
    assert probe.status_code == 503 and "identity_map" in " ".join(probe.json()["problems"])
    assert answer.status_code == 503 and answer.json()["error"]
