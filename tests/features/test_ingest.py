"""Ingestion: contract checks, quarantine with reasons, PII nulling, idempotent upserts."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import CONTRACTS
from features.ingest import TableFileError, ingest_directory, ingest_table

ORDERS_HEADER = "order_id,source,source_id,ordered_at,amount,channel,items,discount\n"


def lake(workspace, table: str) -> pd.DataFrame:
    return pd.read_parquet(workspace.lake_table(table))


def quarantine(workspace, table: str) -> pd.DataFrame:
    return pd.read_parquet(workspace.quarantine / f"{table}.parquet")


def test_clean_orders_load_typed_and_in_utc(raw_dir, workspace, ingest_settings):
    # Given orders with a naive, a Z and an offset timestamp
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER
        + "o1,web,w1,2025-01-01T10:00:00,10.50,web,1,0\n"
        + "o2,WEB, w2 ,2025-01-01T10:00:00Z,5,Store,2,1.5\n"
        + "o3,app,a1,2025-01-01T12:00:00+02:00,7,,,\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then every row loads, typed, with timestamps normalized to UTC
    orders = lake(workspace, "orders").set_index("order_id")
    assert report.tables[0].read == report.tables[0].loaded == 3
    assert str(orders["ordered_at"].dtype) == "datetime64[us, UTC]"
    assert (orders["ordered_at"] == pd.Timestamp("2025-01-01 10:00", tz="UTC")).all()
    assert orders.loc["o2", "source"] == "web" and orders.loc["o2", "source_id"] == "w2"
    assert orders.loc["o2", "channel"] == "store"
    assert orders.loc["o1", "amount"] == 10.5
    assert pd.isna(orders.loc["o3", "items"]) and pd.isna(orders.loc["o3", "channel"])


def test_bad_rows_are_quarantined_with_file_row_column_and_reason(raw_dir, workspace, ingest_settings):
    # Given one good row and one bad row of each kind
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER
        + "o1,web,w1,2025-01-01T10:00:00Z,10,web,1,0\n"  # row 1 good
        + "o2,web,w1,yesterday,10,web,1,0\n"  # row 2 bad timestamp
        + "o3,web,w1,2025-01-01,-4,web,1,0\n"  # row 3 negative amount
        + "o4,web,,2025-01-01,4,web,1,0\n"  # row 4 missing source_id
        + "o5,web,w1,2025-01-01,4,fax,1,0\n"  # row 5 unknown channel
        + "o6,web,w1\n"  # row 6 too few fields
        + "o7,web,w1,2025-01-01,4,web,1.5,0\n"  # row 7 fractional items
        + "o8,web,w1,1899-01-01,4,web,1,0\n"  # row 8 absurd date
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then only the good row loads and each bad one says where and why
    assert (report.read, report.loaded, report.quarantined) == (8, 1, 7)
    bad = quarantine(workspace, "orders").set_index("row")
    assert set(bad["file"]) == {str((raw_dir / "orders.csv").resolve())}
    expected = {
        2: ("ordered_at", "not a real ISO-8601 timestamp"),
        3: ("amount", "must be >= 0"),
        4: ("source_id", "required value is missing"),
        5: ("channel", "not one of app, phone, store, web"),
        6: ("", "expected 8 fields, found 3"),
        7: ("items", "not a whole number"),
        8: ("ordered_at", "outside 1970-01-01"),
    }
    for row, (column, reason) in expected.items():
        assert bad.loc[row, "columns"] == column
        assert reason in bad.loc[row, "reason"]
    assert json.loads(bad.loc[2, "record"])["ordered_at"] == "yesterday"
    assert json.loads(bad.loc[6, "record"]) == {"raw_text": "o6,web,w1"}


def test_invalid_pii_is_nulled_and_kept_aside_not_logged(raw_dir, workspace, ingest_settings, caplog):
    # Given customers whose optional PII is partly invalid, plus a custom attribute
    (raw_dir / "customers.csv").write_text(
        "source,source_id,first_name,email,phone,date_of_birth,loyalty_tier\n"
        "web,w1,Ann,ann@example.com,+44 7700 900123,1980-02-29,gold\n"
        "web,w2,Ζωή,zoe-at-example,call me,2999-01-01,\n"
        "crm,c1,,,,1980-02-30,silver\n"
    )
    # When ingested
    with caplog.at_level(logging.DEBUG):
        report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then no record is lost, the bad values are null, and the originals are kept in quarantine
    assert (report.read, report.loaded, report.quarantined) == (3, 3, 0)
    assert report.nulled_values == {"email": 1, "phone": 1, "date_of_birth": 2}
    customers = lake(workspace, "customers").set_index("source_id")
    assert customers.loc["w2", "first_name"] == "Ζωή"
    assert customers.loc[["w2", "c1"], ["email", "phone", "date_of_birth"]].isna().all().all()
    assert customers.loc["w1", "email"] == "ann@example.com"
    assert customers.loc["w1", "loyalty_tier"] == "gold" and report.custom_columns == ["loyalty_tier"]
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet")
    assert set(nulled["original_value"]) == {"zoe-at-example", "call me", "2999-01-01", "1980-02-30"}
    assert set(nulled["row"]) == {2, 3}
    # ...and the log names counts, never the values
    assert "zoe-at-example" not in caplog.text and "call me" not in caplog.text


def test_a_quarantined_row_keeps_its_invalid_pii_as_a_reason_not_as_a_nulled_value(raw_dir, workspace, ingest_settings):
    # Given one row with only an invalid e-mail, one with an invalid e-mail and an unreadable timestamp
    (raw_dir / "customers.csv").write_text(
        "source,source_id,first_name,email,updated_at\n"
        "web,w1,Ann,ann-at-example,2025-01-01T00:00:00Z\n"
        "web,w2,Bo,bo-at-example,last tuesday\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the first loads with its e-mail nulled (and kept aside); the second is quarantined whole, both
    # problems named, and is not counted among nulled values
    assert (report.loaded, report.quarantined, report.nulled_values) == (1, 1, {"email": 1})
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet")
    assert nulled["row"].tolist() == [1]
    bad = quarantine(workspace, "customers").set_index("row")
    assert "updated_at" in bad.loc[2, "reason"] and "email" in bad.loc[2, "reason"]
    assert json.loads(bad.loc[2, "record"])["email"] == "bo-at-example"


def test_a_quote_left_open_loses_no_row_silently(raw_dir, workspace, ingest_settings):
    # Given a returns file whose second record opens a quote it never closes
    (raw_dir / "returns.csv").write_text('order_id,returned_at,amount\no1,2025-01-05,3\n"o2,2025-01-06,4\n'
                                         "o3,2025-01-07,5\no4,2025-01-08,6\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the first row loads, and the open record is quarantined with the rows it swallowed and why
    assert (report.read, report.loaded, report.quarantined) == (2, 1, 1)
    bad = quarantine(workspace, "returns")
    assert "unterminated quote" in bad["reason"].iloc[0]
    assert json.loads(bad["record"].iloc[0])["raw_text"] == '"o2,2025-01-06,4\no3,2025-01-07,5\no4,2025-01-08,6'


def test_a_superseded_row_keeps_its_invalid_pii_in_its_record_not_among_nulled_values(raw_dir, workspace,
                                                                                      ingest_settings):
    # Given a record sent twice in one file, the first time with an invalid e-mail
    (raw_dir / "customers.csv").write_text("source,source_id,first_name,email\n"
                                           "web,w1,Ann,ann-at-example\nweb,w1,Ann,ann@example.com\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the first is quarantined as superseded with its values as read, and nothing counts as nulled
    assert (report.loaded, report.quarantined, report.nulled_values) == (1, 1, {})
    assert not (workspace.quarantine / "customers.nulled.parquet").exists() or \
        pd.read_parquet(workspace.quarantine / "customers.nulled.parquet").empty
    assert json.loads(quarantine(workspace, "customers")["record"].iloc[0])["email"] == "ann-at-example"


def test_missing_required_column_fails_only_that_table(raw_dir, workspace, ingest_settings):
    # Given an orders file without `amount` and a valid returns file
    (raw_dir / "orders.csv").write_text("order_id,source,source_id,ordered_at\no1,web,w1,2025-01-01\n")
    (raw_dir / "returns.csv").write_text("order_id,returned_at,amount\no1,2025-01-05,3\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then orders fails with a message naming the file and the column; returns still loads
    by_table = {t.table: t for t in report.tables}
    assert by_table["orders"].status == "failed"
    assert "orders.csv" in by_table["orders"].error and "amount" in by_table["orders"].error
    assert by_table["returns"].loaded == 1
    assert not workspace.lake_table("orders").exists()


def test_a_semicolon_separated_file_is_told_what_separates_it(raw_dir, workspace, ingest_settings):
    # Given a returns file exported with ';' (a spreadsheet's default in much of Europe)
    (raw_dir / "returns.csv").write_text("order_id;returned_at;amount\no1;2025-01-05;3\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the error names the missing columns and the likely cause
    error = report.tables[0].error
    assert "missing required column(s)" in error and "separated by ';'" in error and "comma-separated" in error


def test_a_file_without_its_header_row_is_refused_without_quoting_its_first_line(raw_dir, workspace, ingest_settings,
                                                                                 caplog):
    # Given a customers export whose first line is a customer, not the header
    (raw_dir / "customers.csv").write_text("web,W1,Jane,Doe,jane.doe@example.com,07700 900123\n")
    # When ingested
    with caplog.at_level("INFO"):
        report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the error says the header seems missing, and neither it, the log nor the report holds her data
    error = report.tables[0].error
    assert "missing required column(s) source, source_id" in error and "is the header row missing?" in error
    saved = "".join(p.read_text() for p in workspace.reports.rglob("*.json"))
    assert "is the header row missing?" in saved
    for text in (error, caplog.text, saved):
        assert "jane" not in text.lower() and "07700" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "file is empty"), (b"not,a,parquet", "not a readable Parquet file")],
)
def test_unreadable_files_fail_with_the_file_named(raw_dir, workspace, ingest_settings, content, message):
    suffix = ".csv" if not content else ".parquet"
    path = raw_dir / f"orders{suffix}"
    path.write_bytes(content)
    report = ingest_table(path, CONTRACTS["orders"], workspace, ingest_settings)
    assert report.status == "failed"
    assert message in report.error and str(path.name) in report.error


def test_reingesting_the_same_file_is_idempotent(raw_dir, workspace, ingest_settings):
    # Given a file with a bad row, ingested once
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\no2,web,w1,bad,10,web,1,0\n"
    )
    ingest_directory(raw_dir, workspace, ingest_settings)
    first_lake, first_quarantine = lake(workspace, "orders"), quarantine(workspace, "orders")
    first_bytes = workspace.lake_table("orders").read_bytes()
    # When the same file is ingested again
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the lake and the quarantine hold the same rows, not twice as many
    columns = [c for c in first_lake.columns if c != "_ingested_at"]
    pd.testing.assert_frame_equal(lake(workspace, "orders")[columns], first_lake[columns])
    assert len(quarantine(workspace, "orders")) == len(first_quarantine) == 1
    assert (report.inserted, report.updated, report.unchanged, report.lake_rows) == (0, 0, 1, 1)
    # and the lake file was not rewritten: the feature tables built from it stay valid
    assert workspace.lake_table("orders").read_bytes() == first_bytes


def test_a_newer_file_updates_rows_by_primary_key(raw_dir, workspace, ingest_settings, tmp_path):
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "orders.csv").write_text(ORDERS_HEADER + "o1,web,w1,2025-01-01,12,web,1,0\no2,app,a1,2025-01-02,3,app,1,0\n")
    report = ingest_directory(newer, workspace, ingest_settings).tables[0]
    orders = lake(workspace, "orders").set_index("order_id")
    assert orders.loc["o1", "amount"] == 12 and len(orders) == 2
    assert (report.inserted, report.updated) == (1, 1)


def test_an_older_export_ingested_after_a_newer_one_does_not_undo_it(raw_dir, workspace, ingest_settings, tmp_path):
    # Given a customer's newer record in the lake
    header = "source,source_id,email,updated_at\n"
    (raw_dir / "customers.csv").write_text(header + "web,W1,new@example.com,2025-06-01\nweb,W2,b@example.com,\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # When an older export of the same system is ingested after it
    older = tmp_path / "older"
    older.mkdir()
    (older / "customers.csv").write_text(
        header + "web,W1,old@example.com,2025-01-01\nweb,W2,b2@example.com,2025-01-01\nweb,W3,c@example.com,2025-01-01\n")
    report = ingest_directory(older, workspace, ingest_settings).tables[0]
    # Then the lake keeps the newer row; the older one is quarantined as read, saying why, and nothing is lost
    customers = lake(workspace, "customers").set_index("source_id")["email"].to_dict()
    assert customers == {"W1": "new@example.com", "W2": "b2@example.com", "W3": "c@example.com"}
    assert (report.read, report.loaded, report.quarantined) == (3, 2, 1)
    bad = quarantine(workspace, "customers")
    assert bad["row"].tolist() == [1] and "older than the lake's row" in bad["reason"].iloc[0]
    assert strict_json(bad["record"].iloc[0])["email"] == "old@example.com"
    # and re-ingesting the newer export again changes nothing
    again = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert (again.loaded, again.quarantined) == (2, 0)


def test_repeated_key_in_one_file_keeps_the_last_and_quarantines_the_rest(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\no1,web,w1,2025-01-01,11,web,1,0\n"
        + "o2,web,w1,2025-01-01,5,web,1,0\no2,web,w1,2025-01-01,6,web,1,0\n"
    )
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert (report.read, report.loaded, report.quarantined) == (4, 2, 2)
    assert lake(workspace, "orders").sort_values("order_id")["amount"].tolist() == [11.0, 6.0]
    bad = quarantine(workspace, "orders")
    assert bad["row"].tolist() == [1, 3] and "superseded by row 2" in bad["reason"].iloc[0]
    # and the report counts duplicates as one kind of reason, not one per row they point at
    assert report.quarantined_by_reason == {"duplicate primary key (order_id): superseded by row N of the same file": 2}


def test_repeated_customer_key_in_one_file_keeps_its_latest_version_not_its_last_row(
        raw_dir, workspace, ingest_settings):
    # Given a customers export listing one record twice, the newer version first, and another with no version
    (raw_dir / "customers.csv").write_text(
        "source,source_id,email,updated_at\n"
        "web,W1,new@example.com,2025-06-01\nweb,W1,old@example.com,2025-01-01\n"
        "web,W2,dated@example.com,2025-01-01\nweb,W2,undated@example.com,\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then each key keeps its latest updated_at, and the others are quarantined pointing at it
    customers = lake(workspace, "customers").set_index("source_id")["email"].to_dict()
    assert customers == {"W1": "new@example.com", "W2": "dated@example.com"}
    assert (report.read, report.loaded, report.quarantined) == (4, 2, 2)
    bad = quarantine(workspace, "customers").sort_values("row")
    assert bad["row"].tolist() == [2, 4]
    assert "superseded by row 1" in bad["reason"].iloc[0] and "superseded by row 3" in bad["reason"].iloc[1]


def test_invalid_utf8_quarantines_the_row_only(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_bytes(
        ORDERS_HEADER.encode() + b"o1,web,w1,2025-01-01,10,web,1,0\no2,web,w\xff\xfe,2025-01-01,10,web,1,0\n"
    )
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert (report.loaded, report.quarantined) == (1, 1)
    assert "invalid UTF-8" in quarantine(workspace, "orders")["reason"].iloc[0]


def test_unterminated_quote_does_not_lose_the_rows_before_it(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\no2,web,\"w2,2025-01-01,10,web,1,0\n"
    )
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert report.read == 2 and report.loaded == 1 and report.quarantined == 1
    assert lake(workspace, "orders")["order_id"].tolist() == ["o1"]


def test_parquet_input_with_native_types(raw_dir, workspace, ingest_settings):
    # Given a Parquet file with typed columns, a naive timestamp and an integer source_id
    table = pa.table(
        {
            "order_id": ["o1", "o2"],
            "source": ["web", "web"],
            "source_id": pa.array([17, 18], pa.int64()),
            "ordered_at": pa.array([pd.Timestamp("2025-01-01 10:00"), None], pa.timestamp("ms")),
            "amount": [10.0, 3.0],
        }
    )
    pq.write_table(table, raw_dir / "orders.parquet")
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert (report.read, report.loaded, report.quarantined) == (2, 1, 1)
    orders = lake(workspace, "orders")
    assert orders["source_id"].tolist() == ["17"]
    assert orders["ordered_at"].iloc[0] == pd.Timestamp("2025-01-01 10:00", tz="UTC")


def test_orders_only_directory_and_unknown_files(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\n")
    (raw_dir / "notes.txt").write_text("hello")
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    assert [t.table for t in report.tables] == ["orders"] and report.skipped_files == ["notes.txt"]
    assert json.loads((workspace.reports / "ingest.json").read_text())["tables"][0]["loaded"] == 1


def test_a_table_file_named_in_capitals_is_that_table(raw_dir, workspace, ingest_settings):
    # Given orders exported as Orders.CSV (user test: skipped with a warning, the nightly run went on without them)
    (raw_dir / "Orders.CSV").write_text(ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then it loads as orders
    assert [(t.table, t.loaded) for t in report.tables] == [("orders", 1)] and report.skipped_files == []
    assert lake(workspace, "orders")["order_id"].tolist() == ["o1"]


def test_a_file_named_nearly_like_a_table_is_skipped_with_the_name_it_probably_meant(
        raw_dir, workspace, ingest_settings, caplog):
    # Given orders, and customers saved as customer.csv and tickets as tickets.txt
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + "o1,web,w1,2025-01-01,10,web,1,0\n")
    (raw_dir / "customer.csv").write_text("source,source_id\nweb,w1\n")
    (raw_dir / "tickets.txt").write_text("ticket_id\n")
    (raw_dir / "notes.txt").write_text("hello")
    # When ingested
    with caplog.at_level(logging.WARNING, logger="cdp.ingest"):
        report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then they are skipped, and the warnings name the table they probably are
    assert report.skipped_files == ["customer.csv", "notes.txt", "tickets.txt"]
    assert "customer.csv: not a contract table (expected <table>.csv or <table>.parquet), skipped; " \
           "did you mean customers.csv?" in caplog.text
    assert "tickets.txt: not a contract table (expected <table>.csv or <table>.parquet), skipped; " \
           "did you mean tickets.csv or tickets.parquet?" in caplog.text
    assert "notes.txt: not a contract table (expected <table>.csv or <table>.parquet), skipped\n" in caplog.text


def test_a_table_given_twice_in_different_case_is_refused(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER)
    (raw_dir / "ORDERS.csv").write_text(ORDERS_HEADER)
    with pytest.raises(TableFileError, match="given twice"):
        ingest_directory(raw_dir, workspace, ingest_settings)


def test_a_table_given_twice_is_refused(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER)
    pq.write_table(pa.table({"order_id": ["o1"]}), raw_dir / "orders.parquet")
    with pytest.raises(TableFileError, match="given twice"):
        ingest_directory(raw_dir, workspace, ingest_settings)


def test_header_only_file_loads_an_empty_table(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER)
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert (report.status, report.read) == ("ok", 0)
    assert lake(workspace, "orders").empty


def test_empty_raw_directory_is_a_clear_error(raw_dir, workspace, ingest_settings):
    with pytest.raises(TableFileError, match="no contract tables found"):
        ingest_directory(raw_dir, workspace, ingest_settings)


def test_batches_do_not_change_results(raw_dir, workspace, ingest_settings, tmp_path):
    # Given a file with a malformed record at its very end, read in batches
    rows = "".join(f"o{i},web,w{i % 7},2025-01-0{1 + i % 9},{i},web,1,0\n" for i in range(3000))
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + rows + "broken\n")
    report = ingest_directory(raw_dir, workspace, ingest_settings.model_copy(update={"batch_rows": 1000})).tables[0]
    assert (report.read, report.loaded, report.quarantined) == (3001, 3000, 1)
    assert quarantine(workspace, "orders")["row"].tolist() == [3001]


def test_lake_lineage_points_back_to_the_source_row(raw_dir, workspace, ingest_settings):
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + "bad\no1,web,w1,2025-01-01,10,web,1,0\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    orders = lake(workspace, "orders")
    assert orders["_source_row"].tolist() == [2]
    assert Path(orders["_source_file"].iloc[0]).name == "orders.csv"


def write_parquet_orders(raw_dir, **columns) -> None:
    """orders.parquet with one web order per value of the given columns (o1, o2, ...) and those columns."""
    count = len(next(iter(columns.values())))
    base = {"order_id": [f"o{i + 1}" for i in range(count)], "source": ["web"] * count,
            "source_id": ["w1"] * count, "ordered_at": ["2025-01-01"] * count}
    pq.write_table(pa.table({**base, **columns}), raw_dir / "orders.parquet")


def strict_json(text: str) -> dict:
    """Parse as JSON proper: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in a stored record: not JSON"))


def test_parquet_decimal_and_other_numeric_types_load_as_numbers(raw_dir, workspace, ingest_settings):
    # Given Parquet orders with a decimal amount, a small-integer items and a float32 discount
    table = pa.table(
        {
            "order_id": ["o1", "o2"],
            "source": ["web", "web"],
            "source_id": ["w1", "w2"],
            "ordered_at": ["2025-01-01", "2025-01-02"],
            "amount": pa.array([Decimal("10.50"), Decimal("0.00")], pa.decimal128(12, 2)),
            "items": pa.array([1, 3], pa.int8()),
            "discount": pa.array([0.5, None], pa.float32()),
        }
    )
    pq.write_table(table, raw_dir / "orders.parquet")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then every row loads, as numbers of the contract's types
    assert (report.read, report.loaded, report.quarantined) == (2, 2, 0)
    orders = lake(workspace, "orders").set_index("order_id")
    assert orders["amount"].tolist() == [10.5, 0.0] and orders["items"].tolist() == [1, 3]
    assert orders.loc["o1", "discount"] == 0.5 and pd.isna(orders.loc["o2", "discount"])


def test_parquet_whole_numbers_convert_only_when_whole_and_in_range(raw_dir, workspace, ingest_settings):
    # Given Parquet orders with a large integer amount and decimal items: whole, fractional, too large
    write_parquet_orders(raw_dir, amount=pa.array([2**53 + 1, 3, 4], pa.int64()),
                         items=pa.array([Decimal("2.00"), Decimal("2.50"), Decimal("1e30")], pa.decimal128(38, 2)))
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the whole one loads and the others say why not
    assert (report.status, report.loaded, report.quarantined) == ("ok", 1, 2)
    assert lake(workspace, "orders")["items"].tolist() == [2]
    bad = quarantine(workspace, "orders").set_index("row")
    assert bad.loc[2, "reason"] == "items: not a whole number"
    assert bad.loc[3, "reason"] == "items: out of range: too large for a whole number"
    assert strict_json(bad.loc[3, "record"])["items"] == "1000000000000000000000000000000.00"


def test_numbers_too_large_to_store_are_quarantined_not_loaded_as_infinity(raw_dir, workspace, ingest_settings):
    # Given CSV amounts and discounts that overflow a number, and items beyond a 64-bit whole number
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER
        + "o1,web,w1,2025-01-01,1e400,web,1,0\n"
        + "o2,web,w1,2025-01-01,10,web,1,1e400\n"
        + "o3,web,w1,2025-01-01,10,web,1,-1e400\n"
        + "o4,web,w1,2025-01-01,10,web,1e30,0\n"
        + "o5,web,w1,2025-01-01,1e300,web,1e3,0\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then nothing infinite loads; each overflow is quarantined as out of range, with its raw text
    assert (report.loaded, report.quarantined) == (1, 4)
    orders = lake(workspace, "orders")
    assert orders["amount"].tolist() == [1e300] and orders["items"].tolist() == [1000]
    bad = quarantine(workspace, "orders").set_index("row")
    assert bad.loc[1, "reason"] == "amount: out of range: too large for a number"
    assert bad.loc[2, "reason"] == bad.loc[3, "reason"] == "discount: out of range: too large for a number"
    assert bad.loc[4, "reason"] == "items: out of range: too large for a whole number"
    assert strict_json(bad.loc[1, "record"])["amount"] == "1e400"


def test_non_finite_parquet_numbers_are_quarantined_as_valid_json(raw_dir, workspace, ingest_settings):
    # Given Parquet orders whose amount is NaN or infinite
    write_parquet_orders(raw_dir, amount=[float("nan"), float("inf"), 2.0])
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then both are quarantined with a reason, and the stored records are JSON (no bare NaN)
    assert (report.loaded, report.quarantined) == (1, 2)
    bad = quarantine(workspace, "orders").set_index("row")
    assert bad.loc[1, "reason"] == "amount: not a number"
    assert bad.loc[2, "reason"] == "amount: out of range: too large for a number"
    assert [strict_json(bad.loc[row, "record"])["amount"] for row in (1, 2)] == ["NaN", "Infinity"]


def test_negative_zero_is_stored_as_zero(raw_dir, workspace, ingest_settings):
    # Given an amount of -0 and a discount of -0.0
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + "o1,web,w1,2025-01-01,-0,web,-0,-0.0\n")
    # When ingested
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then they are stored as (positive) zero
    order = lake(workspace, "orders").iloc[0]
    assert math.copysign(1, order["amount"]) == math.copysign(1, order["discount"]) == 1
    assert order["items"] == 0


def test_invalid_utf8_is_kept_escaped_in_quarantine(raw_dir, workspace, ingest_settings):
    # Given an order, a customer and a malformed record with bytes that are not UTF-8
    (raw_dir / "orders.csv").write_bytes(
        ORDERS_HEADER.encode() + b"o1,web,W\xff\xfe2,2025-01-01,10,web,1,0\no2,web,w\xff\n"
    )
    (raw_dir / "customers.csv").write_bytes(b"source,source_id,first_name,city\nweb,w1,A\xffnn,Lon\xfedon\n")
    # When ingested
    reports = {t.table: t for t in ingest_directory(raw_dir, workspace, ingest_settings).tables}
    # Then the value is rejected (or nulled, for PII), and its bytes are kept, escaped, not lost
    assert (reports["orders"].quarantined, reports["customers"].loaded) == (2, 1)
    bad = quarantine(workspace, "orders").set_index("row")
    assert bad.loc[1, "reason"] == "source_id: invalid UTF-8 text"
    assert strict_json(bad.loc[1, "record"])["source_id"] == "W\\xff\\xfe2"
    assert strict_json(bad.loc[2, "record"]) == {"raw_text": "o2,web,w\\xff"}
    customer = lake(workspace, "customers").iloc[0]
    assert customer["first_name"] is None and customer["city"] is None
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet").set_index("column")
    assert nulled["original_value"].to_dict() == {"first_name": "A\\xffnn", "city": "Lon\\xfedon"}


def test_a_far_off_timestamp_is_out_of_range_whatever_else_is_in_the_file(raw_dir, workspace, ingest_settings):
    # Given real but far-off timestamps and dates next to valid and impossible ones (month 13, 30 February)
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER
        + "o1,web,w1,0001-01-01,10,web,1,0\n"
        + "o2,web,w1,9999-12-31T23:59:59,10,web,1,0\n"
        + "o3,web,w1,2025-01-01,10,web,1,0\n"
        + "o4,web,w1,2025-13-01,10,web,1,0\n"
    )
    (raw_dir / "customers.csv").write_text(
        "source,source_id,date_of_birth\nweb,w1,0001-01-01\nweb,w2,1980-02-30\nweb,w3,1980-02-29\n"
    )
    # When ingested
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the far-off ones are out of range (they are valid ISO-8601) and only the impossible ones are not
    bad = quarantine(workspace, "orders").set_index("row")["reason"].to_dict()
    assert bad == {
        1: "ordered_at: outside 1970-01-01 .. 2100-01-01",
        2: "ordered_at: outside 1970-01-01 .. 2100-01-01",
        4: "ordered_at: not a real ISO-8601 timestamp",
    }
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet").set_index("row")["reason"]
    assert nulled[1].startswith("not a plausible date of birth") and nulled[2] == "not a real YYYY-MM-DD date"
    assert lake(workspace, "customers").set_index("source_id").loc["w3", "date_of_birth"] == dt.date(1980, 2, 29)


def test_an_impossible_timestamp_does_not_move_the_zone_less_ones_beside_it(raw_dir, workspace, ingest_settings):
    # Given a zoned timestamp, then zone-less ones (UTC by the contract), and an impossible hour 25 in one batch
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER
        + "o1,web,w1,2025-04-13T08:28:00-05:00,1,web,1,0\n"
        + "o2,web,w1,2025-04-18T20:30:00,1,web,1,0\n"
        + "o3,web,w1,2025-04-04T25:00:00,1,web,1,0\n"
        + "o4,web,w1,2025-04-19 06:00,1,web,1,0\n"
    )
    # When ingested
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then only the impossible one is quarantined and each other keeps its own zone (none: UTC)
    assert quarantine(workspace, "orders").set_index("row")["reason"].to_dict() == {
        3: "ordered_at: not a real ISO-8601 timestamp"}
    loaded = lake(workspace, "orders").set_index("order_id")["ordered_at"]
    assert loaded["o1"] == pd.Timestamp("2025-04-13 13:28", tz="UTC")
    assert loaded["o2"] == pd.Timestamp("2025-04-18 20:30", tz="UTC")
    assert loaded["o4"] == pd.Timestamp("2025-04-19 06:00", tz="UTC")


@pytest.mark.parametrize("with_an_impossible_value", [False, True])
def test_zone_less_timestamps_are_read_in_the_configured_zone(raw_dir, workspace, ingest_settings,
                                                             with_an_impossible_value):
    # Given a UK shop's export in local time, zone-less (summer and winter), beside a value with its offset
    rows = ["o1,web,w1,2025-07-01T10:00:00,1,web,1,0", "o2,web,w1,2025-01-15 10:00,1,web,1,0",
            "o3,web,w1,2025-07-01T10:00:00+02:00,1,web,1,0", "o4,web,w1,2025-07-01,1,web,1,0"]
    if with_an_impossible_value:  # the batch then takes the slower, value-by-value path
        rows.append("o5,web,w1,2025-07-01T25:00:00,1,web,1,0")
    (raw_dir / "orders.csv").write_text(ORDERS_HEADER + "\n".join(rows) + "\n")
    # When ingested with ingest.naive_timezone = Europe/London
    ingest_directory(raw_dir, workspace, ingest_settings.model_copy(update={"naive_timezone": "Europe/London"}))
    # Then zone-less values are London wall-clock times (BST in July, GMT in January), the zoned one keeps its offset
    loaded = lake(workspace, "orders").set_index("order_id")["ordered_at"]
    assert loaded["o1"] == pd.Timestamp("2025-07-01 09:00", tz="UTC")
    assert loaded["o2"] == pd.Timestamp("2025-01-15 10:00", tz="UTC")
    assert loaded["o3"] == pd.Timestamp("2025-07-01 08:00", tz="UTC")
    assert loaded["o4"] == pd.Timestamp("2025-06-30 23:00", tz="UTC")


def test_zone_less_parquet_timestamps_are_read_in_the_configured_zone(raw_dir, workspace, ingest_settings):
    # Given a Parquet export whose timestamps carry no zone
    pd.DataFrame({"order_id": ["o1"], "source": ["web"], "source_id": ["w1"], "amount": [1.0],
                  "ordered_at": [pd.Timestamp("2025-07-01 10:00")]}).to_parquet(raw_dir / "orders.parquet")
    # When ingested with ingest.naive_timezone = Europe/London
    ingest_directory(raw_dir, workspace, ingest_settings.model_copy(update={"naive_timezone": "Europe/London"}))
    # Then they are London times too
    assert lake(workspace, "orders")["ordered_at"].iloc[0] == pd.Timestamp("2025-07-01 09:00", tz="UTC")


@pytest.mark.parametrize("zone", [None, "UTC"])
def test_nanosecond_parquet_timestamps_load_cut_to_microseconds(raw_dir, workspace, ingest_settings, zone):
    # Given a pandas export whose timestamps have nanoseconds (pandas' own unit; refused whole before)
    moment = pd.Timestamp("2025-07-01 10:00:00.123456789", tz=zone)
    pd.DataFrame({"order_id": ["o1"], "source": ["web"], "source_id": ["w1"], "amount": [1.0],
                  "ordered_at": [moment]}).to_parquet(raw_dir / "orders.parquet")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the row loads, its moment cut to the lake's microseconds
    assert report.loaded == 1, report.error
    assert lake(workspace, "orders")["ordered_at"].iloc[0] == pd.Timestamp("2025-07-01 10:00:00.123456", tz="UTC")


def test_an_unknown_time_zone_is_refused_by_the_configuration():
    from pydantic import ValidationError

    from cdp.config import IngestSettings

    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Londn'"):
        IngestSettings(naive_timezone="Europe/Londn")


def test_a_quarantined_record_keeps_the_columns_the_contract_ignores(raw_dir, workspace, ingest_settings):
    # Given an export with columns the contract does not know, and a bad row
    (raw_dir / "orders.csv").write_text("order_id,source,source_id,ordered_at,amount,utm_source,_batch\n"
                                        "o1,web,w1,2025-01-01,ten,google,7\no2,web,w1,2025-01-01,1,bing,8\n")
    # When ingested
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the quarantined record holds every field as read, the ignored ones too: nothing is lost
    record = strict_json(quarantine(workspace, "orders")["record"].iloc[0])
    assert record == {"order_id": "o1", "source": "web", "source_id": "w1", "ordered_at": "2025-01-01",
                      "amount": "ten", "utm_source": "google", "_batch": "7"}


def test_a_moment_in_the_future_is_quarantined(raw_dir, workspace, ingest_settings):
    # Given an order dated well after today (a typo, or a system's placeholder) beside one of today
    today = dt.datetime.now(dt.UTC).replace(microsecond=0)
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER
        + f"o1,web,w1,{(today + dt.timedelta(days=400)).isoformat()},1,web,1,0\n"
        + f"o2,web,w1,{(today - dt.timedelta(hours=1)).isoformat()},1,web,1,0\n"
    )
    # When ingested
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the future one is quarantined saying so, and today's loads
    reason = quarantine(workspace, "orders").set_index("row")["reason"][1]
    assert reason.startswith("ordered_at: in the future: after ") and "ingestion time" in reason
    assert lake(workspace, "orders")["order_id"].tolist() == ["o2"]


def test_a_superseded_row_is_quarantined_as_read(raw_dir, workspace, ingest_settings):
    # Given the same order twice in one file
    (raw_dir / "orders.csv").write_text(
        ORDERS_HEADER + "o1,web,w1,2025-01-01,10.50,web,1,\no1,web,w1,2025-01-01,11,web,1,0\n"
    )
    # When ingested
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the earlier row is quarantined with its values as read, like any other rejected row
    record = strict_json(quarantine(workspace, "orders")["record"].iloc[0])
    assert record == {"order_id": "o1", "source": "web", "source_id": "w1", "ordered_at": "2025-01-01",
                      "amount": "10.50", "channel": "web", "items": "1", "discount": ""}


def test_a_file_ingested_again_in_another_row_order_updates_the_lineage(raw_dir, workspace, ingest_settings):
    # Given customers ingested once, one of them with an invalid date of birth (nulled, kept by row)
    header = "source,source_id,first_name,date_of_birth\n"
    (raw_dir / "customers.csv").write_text(header + "web,W1,Anna,1985-02-30\nweb,W2,Ben,1990-01-01\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # When the same export comes again with its rows in another order
    (raw_dir / "customers.csv").write_text(header + "web,W2,Ben,1990-01-01\nweb,W1,Anna,1985-02-30\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the lake's row numbers follow the file, so the nulled value still points at Anna's row
    rows = lake(workspace, "customers").set_index("source_id")["_source_row"].to_dict()
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet")
    assert rows == {"W1": 2, "W2": 1} and nulled["row"].tolist() == [2]


def test_an_older_export_at_the_same_path_is_quarantined_and_replace_corrects_on_purpose(
        raw_dir, workspace, ingest_settings):
    # Given customers loaded with zone-less times read as UTC
    (raw_dir / "customers.csv").write_text("source,source_id,email,updated_at\nweb,W1,a@example.com,2026-07-01 10:00\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # When an older export is dropped at the same path (a nightly location), it does not undo the newer row
    (raw_dir / "customers.csv").write_text("source,source_id,email,updated_at\nweb,W1,old@example.com,2026-01-01\n")
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    assert (report.loaded, report.quarantined) == (0, 1)
    assert lake(workspace, "customers")["email"].tolist() == ["a@example.com"]
    # But the first file read again as London time (09:00 UTC, earlier) corrects the row when asked to
    (raw_dir / "customers.csv").write_text("source,source_id,email,updated_at\nweb,W1,a@example.com,2026-07-01 10:00\n")
    london = ingest_settings.model_copy(update={"naive_timezone": "Europe/London"})
    assert ingest_directory(raw_dir, workspace, london).tables[0].quarantined == 1
    ingest_directory(raw_dir, workspace, london, replace=True)
    assert lake(workspace, "customers")["updated_at"].iloc[0] == pd.Timestamp("2026-07-01 09:00", tz="UTC")
