"""Parquet columns of nested types (list, struct, map): a contract or custom column that holds them
fails its table with a message naming the file and the column, and the other tables still load; a
column the contract ignores stays ignored (user test: one such column crashed the whole ingest)."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.ingest import ingest_directory

NESTED = {
    "list": pa.array([["gold", "vip"], ["silver"]], pa.list_(pa.string())),
    "struct": pa.array([{"k": 1}, {"k": 2}], pa.struct([("k", pa.int64())])),
    "map": pa.array([[("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int64())),
}


def _orders(**columns) -> pa.Table:
    return pa.table({"order_id": ["o1", "o2"], "source": ["web", "web"], "source_id": ["w1", "w2"],
                     "ordered_at": ["2025-01-01", "2025-01-02"], "amount": [10.0, 5.0], **columns})


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_a_nested_custom_column_fails_customers_only_naming_file_and_column(
        kind, raw_dir, workspace, ingest_settings, caplog):
    # Given customers whose custom column `attr` holds a nested type, and valid orders beside them
    customers = raw_dir / "customers.parquet"
    pq.write_table(pa.table({"source": ["web", "web"], "source_id": ["w1", "w2"], "attr": NESTED[kind]}), customers)
    pq.write_table(_orders(), raw_dir / "orders.parquet")
    # When ingested
    with caplog.at_level(logging.ERROR, logger="cdp.ingest"):
        report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then customers fails, naming the file and the column, and saying no row went anywhere
    failed = {t.table: t for t in report.tables}["customers"]
    assert failed.status == "failed" and str(customers.resolve()) in failed.error
    assert "column attr (" in failed.error and "none of the file's 2 rows was loaded or quarantined" in failed.error
    assert (failed.read, failed.loaded, failed.quarantined) == (0, 0, 0)
    assert failed.error in caplog.text
    # and the orders load, the lake has no customers table, and no staging is left behind
    assert {t.table: t.status for t in report.tables}["orders"] == "ok"
    assert pd.read_parquet(workspace.lake_table("orders"))["order_id"].tolist() == ["o1", "o2"]
    assert not workspace.lake_table("customers").exists()
    assert not (workspace.lake / ".staging").exists()


def test_a_nested_contract_column_fails_its_table(raw_dir, workspace, ingest_settings):
    # Given orders whose order_id is a list of strings
    pq.write_table(_orders().set_column(0, "order_id", NESTED["list"]), raw_dir / "orders.parquet")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the table fails naming order_id (a contract column: flattening, not dropping, is the fix)
    assert report.status == "failed" and "column order_id (list<" in report.error
    assert "or drop it" not in report.error
    assert not workspace.lake_table("orders").exists()


def test_a_nested_column_the_contract_ignores_is_kept_as_json_in_a_quarantined_record(
        raw_dir, workspace, ingest_settings):
    # Given orders with an extra nested column (order lines) and one row with a negative amount
    lines = pa.array([[{"sku": "a"}], [{"sku": "b"}, {"sku": "c"}]], pa.list_(pa.struct([("sku", pa.string())])))
    pq.write_table(_orders(lines=lines).set_column(4, "amount", pa.array([10.0, -1.0])), raw_dir / "orders.parquet")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the column is ignored, the good row loads, and the bad row's record keeps the lines as JSON
    assert (report.status, report.ignored_columns, report.loaded, report.quarantined) == ("ok", ["lines"], 1, 1)
    record = json.loads(pd.read_parquet(workspace.quarantine / "orders.parquet")["record"].iloc[0])
    assert record["lines"] == [{"sku": "b"}, {"sku": "c"}]


def test_a_pyarrow_error_no_check_foresaw_fails_that_table_only_without_quoting_values(
        raw_dir, workspace, ingest_settings, monkeypatch, caplog):
    # Given customers and orders, and a pyarrow failure while validating customers whose message quotes a value
    from features.ingest import pipeline

    real_validate = pipeline.validate_batch

    def validate(raw, rows, contract, *args, **kwargs):
        if contract.name == "customers":
            raise pa.ArrowNotImplementedError("Function 'x' has no kernel matching input 'q@example.com'")
        return real_validate(raw, rows, contract, *args, **kwargs)

    monkeypatch.setattr(pipeline, "validate_batch", validate)
    pq.write_table(pa.table({"source": ["web"], "source_id": ["w1"], "email": ["q@example.com"]}),
                   raw_dir / "customers.parquet")
    pq.write_table(_orders(), raw_dir / "orders.parquet")
    # When ingested
    with caplog.at_level(logging.INFO, logger="cdp.ingest"):
        report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then customers fails naming its file, orders load, and the value is in neither the report nor the log
    statuses = {t.table: t for t in report.tables}
    assert statuses["customers"].status == "failed" and "customers.parquet: cannot be ingested" in statuses["customers"].error
    assert statuses["orders"].status == "ok" and statuses["orders"].loaded == 2
    assert "q@example.com" not in caplog.text
    assert "q@example.com" not in (workspace.reports / "ingest.json").read_text()
    assert not (workspace.lake / ".staging").exists()
