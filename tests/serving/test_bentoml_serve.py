"""Integration: `cdp serve` starts a real `bentoml serve` process (2 workers, the default) on a copy of the
served workspace; BentoML's own client calls it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bentoml
import httpx
import pytest

from cdp.workspace import Workspace

pytestmark = pytest.mark.slow
TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Server:
    url: str
    workspace: Workspace
    log: Path
    temporary: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    workspace = Workspace.at(root / "ws")
    shutil.copytree(served.workspace.root, workspace.root, ignore=shutil.ignore_patterns("audit"))
    port, log = free_port(), root / "server.log"
    (root / "tmp").mkdir()
    # As a shell starts it: not with the Prometheus directory Feast's import set in this test process
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")}
    environment = {**inherited, "CDP_SERVING__API_TOKEN": TOKEN, "TMPDIR": str(root / "tmp")}
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "cdp.cli", "serve", "--workspace", str(workspace.root),
                                    "--port", str(port)], env=environment, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"`cdp serve` exited with {process.returncode}: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("the service did not become ready within 120 s")
            time.sleep(0.5)
        yield Server(url, workspace, log, root / "tmp")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_bentoml_client_gets_recommendations(server, served):
    import pandas as pd

    customer = pd.read_parquet(served.workspace.outputs / "profiles.parquet")["customer_id"].iloc[0]
    with bentoml.SyncHTTPClient(server.url, token=TOKEN) as client:
        answer = client.recommend(customers=[{"customer_id": customer}, {"customer_id": "C999999999"}])
    recommendations = answer["recommendations"]
    assert [r["customer_id"] for r in recommendations] == [customer, "C999999999"]
    assert recommendations[1]["found"] is False
    # ...and answering it put no library's deprecation warning in the server's log
    assert "Deprecat" not in server.log.read_text(errors="replace")


def test_the_running_service_refuses_calls_without_the_token(server):
    response = httpx.post(f"{server.url}/recommend", json={"customers": [{"customer_id": "C1"}]})
    assert response.status_code == 401
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_the_running_service_logs_a_refused_body_without_its_values(server):
    # Given a client's invalid body with an e-mail in it
    email = "j.bailey40@hotmail.co.uk"
    response = httpx.post(f"{server.url}/recommend", headers=AUTH,
                          json={"customers": [{"email": email}, {"email": "x"}]})
    assert response.status_code == 400
    # Then the server's log says it was refused (once the worker's line reaches the file), without the
    # e-mail and without a traceback
    _until(lambda: "client error on /recommend" in server.log.read_text(errors="replace"), seconds=30)
    text = server.log.read_text(errors="replace")
    assert email not in text and "Traceback" not in text


def _answers(server: Server, count: int) -> list[httpx.Response]:
    """`count` one-customer requests, each on a new connection: they land on either worker."""
    return [httpx.post(f"{server.url}/recommend", headers=AUTH, timeout=30,
                       json={"customers": [{"customer_id": "C000000001"}]}) for _ in range(count)]


def _until(condition, seconds: float = 120):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"not within {seconds} s")
        time.sleep(1)


def test_a_reload_reaches_both_workers(server):
    from training.tracking import CHAMPION, REGISTERED_MODELS, use_workspace_tracking

    registry, name = use_workspace_tracking(server.workspace), REGISTERED_MODELS["propensity"]
    version = registry.get_model_version_by_alias(name, CHAMPION).version
    try:
        # Given the propensity champion withdrawn from the registry of the running 2-worker service
        registry.delete_registered_model_alias(name, CHAMPION)
        # When one worker is asked to reload
        reloaded = httpx.post(f"{server.url}/admin/reload", headers=AUTH, json={}, timeout=120)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["generation"] >= 1 and "every other worker" in reloaded.json()["message"]
        assert any("propensity" in p for p in reloaded.json()["problems"])
        # Then both workers soon say so: every answer is the 503 naming the missing model
        _until(lambda: all(r.status_code == 503 for r in _answers(server, 12)))
        # and when the champion is back, one reload brings both back
        registry.set_registered_model_alias(name, CHAMPION, version)
        assert httpx.post(f"{server.url}/admin/reload", headers=AUTH, json={}, timeout=120).status_code == 200
        _until(lambda: all(r.status_code == 200 and "propensity" in r.json()["recommendations"][0]["model_versions"]
                           for r in _answers(server, 12)))
    finally:
        registry.set_registered_model_alias(name, CHAMPION, version)


def test_workers_leave_no_temporary_metrics_directories(server):
    # Given the running service (its processes' temporary directory is the server's own)
    # Then no worker made a Feast metrics directory of its own: one left behind per killed worker
    assert not list(server.temporary.glob("feast_metrics_*"))


def test_requests_of_every_kind_at_once_are_all_answered(server, served):
    import concurrent.futures

    import pandas as pd

    # Given the running service, one-customer and 200-customer requests, pushes and probes all at once
    # (small requests run on each worker's event loop, large ones and pushes in a thread, taking turns)
    customers = pd.read_parquet(served.workspace.outputs / "profiles.parquet")["customer_id"].tolist()
    now = int(time.time())

    def call(kind: str, index: int) -> tuple[str, int]:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            if kind == "one":
                response = client.post("/recommend", json={"customers": [{"customer_id": customers[index]}]})
            elif kind == "many":
                chunk = customers[index * 200:(index + 1) * 200]
                response = client.post("/recommend", json={"customers": [{"customer_id": c} for c in chunk]})
            elif kind == "push":
                response = client.post("/events", json={"events": [
                    {"customer_id": customers[-1 - index], "last_visit_epoch_seconds": now}]})
            else:
                response = client.get("/readyz")
        if response.status_code != 200:
            failures.append((kind, index, response.status_code, response.text[:300]))
        return kind, response.status_code

    calls = [("one", i) for i in range(60)] + [("many", i) for i in range(6)] + [("push", i) for i in range(12)] \
        + [("probe", i) for i in range(12)]
    failures = []
    # When they are sent from 12 threads
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answered = list(pool.map(lambda c: call(*c), calls))
    # Then every one is answered 200
    assert [status for _, status in answered] == [200] * len(calls), failures[:5]
    assert "Traceback" not in server.log.read_text(errors="replace")
