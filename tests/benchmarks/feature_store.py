"""Feature-store benchmarks: build, point-in-time retrieval, materialization and online latency.

Each step runs in a child process (fresh memory peak). Usage:
    python -m tests.benchmarks.feature_store --work DIR [--customers 1000000] [--materialize-customers 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from tests.benchmarks.run import CDP, measure

STEP = [sys.executable, "-m", "tests.benchmarks.feature_store", "step"]


def prepare_workspace(work: Path, customers: int) -> Path:
    """Simulate, ingest and resolve once (not part of any bar here)."""
    simulated, workspace = work / "simulated", work / "features-workspace"
    if not (simulated / "orders.parquet").exists():
        subprocess.run([*CDP, "simulate", "--customers", str(customers), "--out", str(simulated)], check=True,
                       stdout=subprocess.DEVNULL)
    if not (workspace / "data" / "outputs" / "identity_map.parquet").exists():
        for command in (["ingest", "--raw", str(simulated)], ["resolve"]):
            subprocess.run([*CDP, *command, "--workspace", str(workspace)], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return workspace


def retrieve(workspace: Path, rows: int) -> dict:
    """Historical retrieval of `rows` (customer, timestamp) rows through the churn FeatureService."""
    import warnings

    warnings.filterwarnings("ignore")
    from cdp.config import load_settings
    from cdp.workspace import Workspace
    from features.feature_store import get_training_features, open_feature_store

    space = Workspace.at(workspace)
    customers = pq.read_table(space.data / "features" / "purchase_history.parquet", columns=["customer_id", "event_timestamp"])
    frame = customers.to_pandas()
    latest = frame["event_timestamp"].max()
    ids = frame["customer_id"].drop_duplicates()
    entity = pd.DataFrame({"customer_id": ids.sample(rows, replace=len(ids) < rows, random_state=0).to_numpy()})
    entity["event_timestamp"] = latest + pd.to_timedelta(entity.index % 30, unit="D")
    store = open_feature_store(space, load_settings().features)
    started = time.perf_counter()
    result = get_training_features(store, "churn_v1", entity)
    return {"rows_in": rows, "rows_out": len(result), "columns": result.shape[1],
            "retrieval_seconds": round(time.perf_counter() - started, 2)}


def busy_seconds() -> float:
    """CPU seconds all processes have used since boot: user, nice, system, irq and softirq of /proc/stat."""
    user, nice, system, _, _, irq, softirq = (int(f) for f in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def percentiles(read, customers) -> dict:
    """p50/p99 in milliseconds of `read(customer)`, one call per customer, after 50 warm-up calls, and how
    many cores other processes kept busy meanwhile (on a shared machine they make the tail)."""
    for customer in customers[:50]:
        read(customer)
    timings = []
    started_all, busy, own = time.perf_counter(), busy_seconds(), sum(os.times()[:2])
    for customer in customers:
        started = time.perf_counter()
        read(customer)
        timings.append((time.perf_counter() - started) * 1000)
    others = (busy_seconds() - busy - (sum(os.times()[:2]) - own)) / (time.perf_counter() - started_all)
    series = pd.Series(timings)
    return {"p50_ms": round(series.quantile(0.5), 3), "p99_ms": round(series.quantile(0.99), 3),
            "cores_busy_elsewhere": round(max(others, 0.0), 2)}


def read_into_page_cache(path: Path) -> None:
    """Read a file once so that its pages are in the OS cache, as on a machine serving from it all day
    (this VM pages out file pages left cold for a while, and the online store is 1.3 GB at 1M customers)."""
    with path.open("rb") as handle:
        while handle.read(1 << 24):
            pass


def online_latency(workspace: Path, calls: int, online_store: str, redis: str) -> dict:
    """p50/p99 of one customer's full vector across every feature view (all FeatureServices' views):
    through cdp's `OnlineFeatureReader` (what `get_online_features` serves, a DataFrame included) and
    through Feast's own `get_online_features(...).to_dict()`, each on its own sample of customers."""
    import warnings

    warnings.filterwarnings("ignore")
    from cdp.config import FeatureSettings
    from cdp.workspace import Workspace
    from feature_repo.definitions import MODEL_FEATURE_VIEWS
    from features.feature_store import online_feature_reader, open_feature_store

    settings = FeatureSettings(online_store=online_store, redis_connection_string=redis)
    if online_store == "sqlite":
        read_into_page_cache(Workspace.at(workspace).feast / "online_store.db")
    store = open_feature_store(Workspace.at(workspace), settings)
    reader = online_feature_reader(store, list(MODEL_FEATURE_VIEWS))
    references = [f"{view.name}:{name}" for view, wanted in zip(reader.views, reader.positions, strict=True)
                  for _, name in wanted]
    ids = pd.read_parquet(Workspace.at(workspace).data / "features" / "purchase_history.parquet",
                          columns=["customer_id"])["customer_id"].drop_duplicates()
    # Ours first: Feast's run then starts with whatever pages ours brought into memory.
    fast = percentiles(lambda c: reader.read([c]), ids.sample(calls, replace=True, random_state=2).tolist())
    feast = percentiles(lambda c: store.get_online_features(features=references, entity_rows=[{"customer_id": c}]).to_dict(),
                        ids.sample(calls, replace=True, random_state=1).tolist())
    return {"online_store": online_store, "calls": calls, "features_per_vector": len(references),
            "views": len(reader.views), **fast, "feast": feast}


def subset_workspace(source: Path, target: Path, customers: int) -> Path:
    """A workspace whose feature tables hold only `customers` customers (for materialization)."""
    features = target / "data" / "features"
    features.mkdir(parents=True, exist_ok=True)
    chosen = None
    for table in sorted((source / "data" / "features").glob("*.parquet")):
        frame = pd.read_parquet(table)
        if chosen is None:
            chosen = frame["customer_id"].drop_duplicates().head(customers)
        frame[frame["customer_id"].isin(chosen)].to_parquet(features / table.name, index=False)
    return target


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, f"127.0.0.1:{port}"


def bench_feature_store(work: Path, customers: int, materialize_customers: int, as_of: str = "2026-06-30") -> dict:
    workspace = prepare_workspace(work, customers)
    build = measure([*CDP, "features", "build", "--as-of", as_of, "--workspace", str(workspace)])
    build_rows = pq.ParquetFile(workspace / "data" / "features" / "purchase_history.parquet").metadata.num_rows
    subprocess.run([*CDP, "features", "apply", "--workspace", str(workspace)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    retrieval = measure([*STEP, "retrieve", str(workspace), str(customers)])
    retrieval.update(json.loads((workspace / "retrieve.json").read_text()))
    small = subset_workspace(workspace, work / "materialize-workspace", materialize_customers)
    results = {"name": "feature_store", "customers": build_rows, "build": {**build, "bar_seconds": 600},
               "historical_retrieval": {**retrieval, "bar_seconds": 120}}
    redis_process, redis = start_redis(work)
    try:
        # SQLite (the packed store, bulk-loaded) on the whole base; Redis (Feast's own materialize, about
        # 1 ms per customer) on a subset, extrapolated.
        for online_store, target, count in (("sqlite", workspace, build_rows), ("redis", small, materialize_customers)):
            environment = ["env", f"CDP_FEATURES__ONLINE_STORE={online_store}", f"CDP_FEATURES__REDIS_CONNECTION_STRING={redis}"]
            subprocess.run([*environment, *CDP, "features", "apply", "--workspace", str(target)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            materialize = measure([*environment, *CDP, "features", "materialize", "--workspace", str(target)])
            per_customer = materialize["seconds"] / count
            latency = measure([*STEP, "online", str(target), "3000", online_store, redis])
            latency.update(json.loads((target / f"online-{online_store}.json").read_text()))
            results[f"materialize_{online_store}"] = {
                **materialize, "customers": count,
                "extrapolated_seconds_for_1m": round(per_customer * 1_000_000), "bar_seconds_for_1m": 180,
            }
            results[f"online_{online_store}"] = {**latency, "customers_in_store": count,
                                                 "bar_p99_ms": 2 if online_store == "sqlite" else 3}
    finally:
        redis_process.terminate()
    return results


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "step":
        kind, workspace = sys.argv[2], Path(sys.argv[3])
        if kind == "retrieve":
            (workspace / "retrieve.json").write_text(json.dumps(retrieve(workspace, int(sys.argv[4]))))
        else:
            result = online_latency(workspace, int(sys.argv[4]), sys.argv[5], sys.argv[6])
            (workspace / f"online-{sys.argv[5]}.json").write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--materialize-customers", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/feature_store.json"))
    args = parser.parse_args()
    result = bench_feature_store(args.work, args.customers, args.materialize_customers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
