"""Integration: `cdp serve` starts a real `bentoml serve` process; BentoML's own client calls it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import bentoml
import httpx
import pytest

pytestmark = pytest.mark.slow
TOKEN = "integration-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(served):
    port = free_port()
    environment = {**os.environ, "CDP_SERVING__API_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "cdp.cli", "serve", "--workspace", str(served.workspace.root),
                                "--port", str(port)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"`cdp serve` exited with {process.returncode}: {process.stdout.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("the service did not become ready within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_bentoml_client_gets_recommendations(server, served):
    import pandas as pd

    customer = pd.read_parquet(served.workspace.outputs / "profiles.parquet")["customer_id"].iloc[0]
    with bentoml.SyncHTTPClient(server, token=TOKEN) as client:
        answer = client.recommend(customers=[{"customer_id": customer}, {"customer_id": "C999999999"}])
    recommendations = answer["recommendations"]
    assert [r["customer_id"] for r in recommendations] == [customer, "C999999999"]
    assert recommendations[1]["found"] is False


def test_the_running_service_refuses_calls_without_the_token(server):
    response = httpx.post(f"{server}/recommend", json={"customers": [{"customer_id": "C1"}]})
    assert response.status_code == 401
    assert httpx.get(f"{server}/healthz").status_code == 200
