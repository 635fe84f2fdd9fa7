"""`make bench`: the performance bars, measured on this machine; results as JSON, never asserted in tests.

Each benchmark runs the real CLI in a child process and records wall time and peak memory next to
its bar. Run one with `--only NAME`; scale down with `--customers` / `--order-rows` for a quick look.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

CDP = [sys.executable, "-m", "cdp.cli"]


def measure(command: list[str]) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.measure", "--", *command],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def bench_simulate(work: Path, customers: int) -> dict:
    """Bar: `cdp simulate --customers 1000000` in <= 5 min with <= 8 GB peak."""
    out = work / "simulated"
    result = measure([*CDP, "simulate", "--customers", str(customers), "--out", str(out), "--format", "parquet"])
    rows = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in sorted(out.glob("*.parquet"))}
    return {
        "name": "simulate",
        "customers": customers,
        **result,
        "rows": rows,
        "bar": {"seconds": 300, "peak_rss_gb": 8, "at_customers": 1_000_000},
        "meets_bar": customers >= 1_000_000 and result["exit_code"] == 0
        and result["seconds"] <= 300 and result["peak_rss_gb"] <= 8,
    }


def write_orders_csv(source: Path | None, target: Path, rows: int) -> int:
    """A CSV of exactly `rows` orders: simulated orders repeated with distinct ids when needed."""
    if source is None or not source.exists():
        sim = target.parent / "sim-for-orders"
        subprocess.run([*CDP, "simulate", "--customers", "100000", "--out", str(sim)], check=True,
                       stdout=subprocess.DEVNULL)
        source = sim / "orders.parquet"
    orders = pq.read_table(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    copy = 0
    with arrow_csv.CSVWriter(target, orders.schema) as writer:
        while written < rows:
            part = orders.slice(0, min(orders.num_rows, rows - written))
            if copy:
                suffix = pa.scalar(f"-r{copy}")
                part = part.set_column(0, "order_id", pc.binary_join_element_wise(part["order_id"], suffix, ""))
            writer.write_table(part)
            written += part.num_rows
            copy += 1
    return written


def bench_ingest(work: Path, order_rows: int) -> dict:
    """Bar: ingesting 10M order rows from CSV in <= 60 s with <= 4 GB peak."""
    raw = work / "orders-raw"
    written = write_orders_csv(work / "simulated" / "orders.parquet", raw / "orders.csv", order_rows)
    workspace = work / "ingest-workspace"
    result = measure([*CDP, "ingest", "--raw", str(raw), "--workspace", str(workspace)])
    report = json.loads((workspace / "data" / "reports" / "ingest.json").read_text())["tables"][0]
    return {
        "name": "ingest_orders_csv",
        "order_rows": written,
        "csv_gb": round((raw / "orders.csv").stat().st_size / 1024**3, 3),
        **result,
        "report": {k: report[k] for k in ("read", "loaded", "quarantined", "lake_rows", "reader", "seconds")},
        "rows_per_second": round(written / result["seconds"]),
        "bar": {"seconds": 60, "peak_rss_gb": 4, "at_rows": 10_000_000},
        "meets_bar": written >= 10_000_000 and result["exit_code"] == 0
        and result["seconds"] <= 60 and result["peak_rss_gb"] <= 4,
    }


def bench_identity(work: Path, records: int) -> dict:
    """Bar: 1M identity records resolved in <= 5 min with <= 8 GB peak."""
    simulated = work / "simulated"
    if not (simulated / "customers.parquet").exists():
        subprocess.run([*CDP, "simulate", "--customers", str(max(records * 62 // 100, 1000)), "--out", str(simulated)],
                       check=True, stdout=subprocess.DEVNULL)
    raw = work / "identity-raw"
    raw.mkdir(parents=True, exist_ok=True)
    customers = pq.read_table(simulated / "customers.parquet")
    pq.write_table(customers.slice(0, min(records, customers.num_rows)), raw / "customers.parquet")
    shutil.copy(simulated / "links.parquet", raw / "links.parquet")
    workspace = work / "identity-workspace"
    subprocess.run([*CDP, "ingest", "--raw", str(raw), "--workspace", str(workspace)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = measure([*CDP, "resolve", "--workspace", str(workspace)])
    report = json.loads((workspace / "data" / "reports" / "identity.json").read_text())
    evaluation = subprocess.run(
        [*CDP, "evaluate", "identity", "--truth", str(simulated), "--workspace", str(workspace)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    scores = json.loads((workspace / "data" / "reports" / "identity_evaluation.json").read_text())
    resolved = report["records"]
    return {
        "name": "identity",
        "records": resolved,
        **result,
        "customers": report["customers"],
        "candidate_pairs": report["candidate_pairs"],
        "pairwise_at_this_scale": scores["all_records"]["pairwise"],
        "note": "customers are the first N rows of a simulated base, so some people have only part of their records",
        "bar": {"seconds": 300, "peak_rss_gb": 8, "at_records": 1_000_000},
        "meets_bar": resolved >= 1_000_000 and result["exit_code"] == 0 and evaluation.returncode == 0
        and result["seconds"] <= 300 and result["peak_rss_gb"] <= 8,
    }


def bench_identity_vs_splink(work: Path, customers: int) -> dict:
    """Bars: on 20k simulated people, our F1 >= Splink's and our wall time <= Splink's."""
    from tests.benchmarks.identity_vs_splink import bench_identity_vs_splink as compare

    result = compare(work / "splink", customers=customers)
    result["meets_bar"] = bool(result["ours_f1_ge_splink"] and result["ours_faster"])
    result["seconds"] = result["ours"]["seconds"]
    result["peak_rss_gb"] = None
    return result


def bench_features(work: Path, customers: int) -> dict:
    """Bars: features for 1M customers in <= 10 min; retrieval of 1M rows <= 2 min; materializing 1M
    customers <= 3 min; one customer's full online vector p99 <= 2 ms (SQLite), <= 3 ms (Redis)."""
    from tests.benchmarks.feature_store import bench_feature_store

    result = bench_feature_store(work, customers, materialize_customers=min(customers, 20_000))
    result["seconds"] = result["build"]["seconds"]
    result["peak_rss_gb"] = result["build"]["peak_rss_gb"]
    result["meets_bar"] = bool(
        result["build"]["seconds"] <= 600 and result["historical_retrieval"]["seconds"] <= 120
        and all(result[f"materialize_{s}"]["extrapolated_seconds_for_1m"] <= 180 for s in ("sqlite", "redis"))
        and result["online_sqlite"]["p99_ms"] <= 2 and result["online_redis"]["p99_ms"] <= 3
    )
    return result


def bench_training(work: Path, customers: int, as_of: str = "2026-07-01") -> dict:
    """Bar: a full retrain of all three models on 100k simulated customers in <= 10 min.
    Measured twice: from an empty feature store (snapshots built inside) and as a retrain."""
    simulated, workspace = work / f"training-sim-{customers}", work / f"training-workspace-{customers}"
    subprocess.run([*CDP, "simulate", "--customers", str(customers), "--out", str(simulated)], check=True,
                   stdout=subprocess.DEVNULL)
    for command in (["ingest", "--raw", str(simulated)], ["resolve"]):
        subprocess.run([*CDP, *command, "--workspace", str(workspace)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    train = [*CDP, "train", "all", "--as-of", as_of, "--workspace", str(workspace)]
    first = measure(train)
    retrain = measure(train)
    evaluation = subprocess.run([*CDP, "evaluate", "models", "--truth", str(simulated), "--workspace", str(workspace)],
                                capture_output=True, text=True)
    report = workspace / "data" / "reports" / "model_evaluation.json"
    oracle = json.loads(report.read_text()) if evaluation.returncode == 0 else {"error": evaluation.stderr[-2000:]}
    return {
        "name": "training", "customers": customers, "seconds": retrain["seconds"], "peak_rss_gb": retrain["peak_rss_gb"],
        "first_training_with_feature_snapshots": first, "retrain": retrain, "against_oracle": oracle,
        "bar": {"seconds": 600, "at_customers": 100_000},
        "meets_bar": customers >= 100_000 and max(first["seconds"], retrain["seconds"]) <= 600
        and first["exit_code"] == retrain["exit_code"] == 0,
    }


BENCHMARKS = {
    "simulate": lambda work, args: bench_simulate(work, args.customers),
    "ingest": lambda work, args: bench_ingest(work, args.order_rows),
    "identity": lambda work, args: bench_identity(work, args.identity_records),
    "identity_vs_splink": lambda work, args: bench_identity_vs_splink(work, args.splink_customers),
    "features": lambda work, args: bench_features(work, args.customers),
    "training": lambda work, args: bench_training(work, args.training_customers),
    "scoring": lambda work, args: _bench_scoring(work, args),
}


def _bench_scoring(work: Path, args) -> dict:
    from tests.benchmarks.scoring import bench_scoring

    return bench_scoring(work, args.customers, args.scoring_training_customers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--order-rows", type=int, default=10_000_000)
    parser.add_argument("--identity-records", type=int, default=1_000_000)
    parser.add_argument("--splink-customers", type=int, default=20_000)
    parser.add_argument("--training-customers", type=int, default=100_000)
    parser.add_argument("--scoring-training-customers", type=int, default=20_000,
                        help="Size of the base the scoring benchmark's models are trained on.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated data (in --out/work).")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work" if args.keep else Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for name in args.only or list(BENCHMARKS):
            print(f"== {name}", flush=True)
            result = BENCHMARKS[name](work, args)
            result["machine"] = machine()
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
            print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2), flush=True)
            results.append(result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {r["name"]: {"seconds": r["seconds"], "peak_rss_gb": r["peak_rss_gb"], "meets_bar": r["meets_bar"]}
               for r in results}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
