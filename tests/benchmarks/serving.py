"""Service latency and throughput: `cdp serve` in its own process, load from this one over loopback.

Usage: python -m tests.benchmarks.serving --workspace W [--rate 100 --seconds 60] [--out FILE]
The workspace must hold trained champions and a materialized online store (`cdp run`).
Bars (issue 6): single-customer /recommend p50 <= 5 ms and p99 <= 15 ms at 100 requests/s for 60 s
with zero errors; >= 300 requests/s sustained; a 100-customer request p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

TOKEN = "benchmark-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(workspace: Path, port: int) -> subprocess.Popen:
    environment = {**os.environ, "CDP_SERVING__API_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "cdp.cli", "serve", "--workspace", str(workspace), "--port", str(port)],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError("the service did not become ready in 180 s")


def summarize(latencies_ms: list[float], errors: int, seconds: float) -> dict:
    series = np.asarray(latencies_ms)
    return {"requests": len(series) + errors, "errors": errors, "seconds": round(seconds, 1),
            "achieved_rate": round((len(series) + errors) / seconds, 1),
            "p50_ms": round(float(np.percentile(series, 50)), 2) if len(series) else None,
            "p99_ms": round(float(np.percentile(series, 99)), 2) if len(series) else None,
            "max_ms": round(float(series.max()), 2) if len(series) else None}


async def open_loop(url: str, bodies: list[dict], rate: float, seconds: float) -> dict:
    """Requests start on a fixed schedule (not when the previous one ends), so a slow server shows."""
    latencies, errors = [], 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=200)) as client:
        async def one(body):
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await client.post(url, json=body, headers=headers)
                if response.status_code != 200:
                    errors += 1
                    return
                latencies.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                errors += 1

        tasks, begin = [], time.perf_counter()
        total = int(rate * seconds)
        for index in range(total):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[index % len(bodies)])))
        await asyncio.gather(*tasks)
        return summarize(latencies, errors, time.perf_counter() - begin)


async def closed_loop(url: str, bodies: list[dict], concurrency: int, seconds: float) -> dict:
    """As fast as the service answers, `concurrency` requests in flight: sustained throughput."""
    latencies, errors = [], 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker(offset: int):
            nonlocal errors
            index = offset
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=bodies[index % len(bodies)], headers=headers)
                    if response.status_code == 200:
                        latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                index += concurrency

        begin = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return summarize(latencies, errors, time.perf_counter() - begin)


def bench_service(workspace: Path, rate: float, seconds: float, throughput_seconds: float) -> dict:
    ids = pd.read_parquet(workspace / "data" / "outputs" / "identity_map.parquet", columns=["customer_id"])
    customers = ids["customer_id"].drop_duplicates().sample(2000, replace=True, random_state=0).tolist()
    single = [{"customers": [{"customer_id": c}]} for c in customers]
    hundred = [{"customers": [{"customer_id": c} for c in customers[i:i + 100]]} for i in range(0, 1900, 100)]
    port = free_port()
    url = f"http://127.0.0.1:{port}/recommend"
    process = start_service(workspace, port)
    try:
        asyncio.run(open_loop(url, single, 20, 5))  # warm-up
        paced = asyncio.run(open_loop(url, single, rate, seconds))
        throughput = asyncio.run(closed_loop(url, single, 8, throughput_seconds))
        batch = asyncio.run(open_loop(url, hundred, 5, 20))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "name": "serving",
        "single_customer_at_rate": {**paced, "target_rate": rate, "bar": {"p50_ms": 5, "p99_ms": 15, "errors": 0}},
        "sustained_throughput": {**throughput, "concurrency": 8, "bar_requests_per_second": 300},
        "hundred_customers": {**batch, "bar_p50_ms": 50},
        "meets_bar": bool(paced["errors"] == 0 and paced["p50_ms"] <= 5 and paced["p99_ms"] <= 15
                          and throughput["achieved_rate"] >= 300 and batch["p50_ms"] <= 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--throughput-seconds", type=float, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench-results/serving.json"))
    args = parser.parse_args()
    result = bench_service(args.workspace.resolve(), args.rate, args.seconds, args.throughput_seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
