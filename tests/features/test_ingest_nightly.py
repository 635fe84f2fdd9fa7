"""The nightly job (a data engineer's user test): exports overwritten at the same path night after night,
exports that leave optional columns out, ingests killed by a cron timeout, and failed tables' reports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features.ingest import ingest_directory
from features.ingest.pipeline import remove_abandoned_staging, staging_root

KILLED_WHILE_MERGING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from cdp.config import load_settings
    from cdp.files import temporary_beside
    from cdp.workspace import Workspace
    from features.ingest import ingest_directory, lake

    raw, root = Path(sys.argv[1]), Path(sys.argv[2])
    workspace = Workspace.at(root)

    def die(connection, contract, staged, lake_file, *args, **kwargs):
        # the table is staged in full; a half-written lake file is beside the lake's: killed right now
        temporary_beside(lake_file).write_bytes(staged.read_bytes())
        os.kill(os.getpid(), signal.SIGKILL)

    lake.merge_into_lake = die
    ingest_directory(raw, workspace, load_settings().ingest)
""")


def orders_file(directory: Path, header: str, *rows: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "orders.csv"
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


def test_an_ingest_removes_the_staging_left_by_a_killed_run(tmp_path, raw_dir, workspace, ingest_settings, caplog):
    # Given a first night in the lake, and a second ingest killed (SIGKILL) with the table staged in full
    # and a temporary lake file half-written: the copies hold every customer's row
    header = "order_id,source,source_id,ordered_at,amount"
    orders_file(raw_dir, header, "N1-1,web,W1,2026-06-30T10:00:00Z,5")
    ingest_directory(raw_dir, workspace, ingest_settings)
    orders_file(raw_dir, header, "N2-1,web,W1,2026-07-01T10:00:00Z,5", "N2-2,web,W2,2026-07-01T10:00:00Z,7")
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_MERGING, str(raw_dir), str(workspace.root)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [p for p in staging_root(workspace).rglob("*") if p.is_file()]
    assert any(p.name == "valid.parquet" for p in left)
    assert list(workspace.lake.glob(".orders.parquet.*.tmp"))

    # When the next night's ingest runs
    caplog.set_level("WARNING", logger="cdp.ingest")
    report = ingest_directory(raw_dir, workspace, ingest_settings)

    # Then it loads, and nothing of the killed run is left: no staging directory, no temporary file;
    # the log says how many it removed (one staging directory, one temporary file)
    assert report.tables[0].status == "ok" and report.tables[0].lake_rows == 3
    assert not staging_root(workspace).exists()
    assert not list(workspace.data.rglob("*.tmp"))
    assert any("removed 2 staging" in r.getMessage() for r in caplog.records)
    # and the cleanup, exposed for erasure, finds nothing more
    assert remove_abandoned_staging(workspace) == 0


def test_a_failed_table_reports_the_rows_the_lake_still_holds(raw_dir, workspace, ingest_settings):
    # Given a lake holding 3 orders
    header = "order_id,source,source_id,ordered_at,amount"
    orders_file(raw_dir, header, *(f"O{i},web,W{i},2026-06-30T10:00:00Z,5" for i in range(3)))
    ingest_directory(raw_dir, workspace, ingest_settings)

    # When the next export is semicolon-separated: the table fails
    orders_file(raw_dir, header.replace(",", ";"), "X;web;1;2026-06-01;1")
    report = ingest_directory(raw_dir, workspace, ingest_settings)

    # Then the report says the lake still holds its 3 rows, not 0 (console and the table's JSON report)
    table = report.tables[0]
    assert table.status == "failed" and table.loaded == 0
    assert table.lake_rows == 3 == pq.read_metadata(workspace.lake_table("orders")).num_rows
    assert json.loads((workspace.reports / "ingest" / "orders.json").read_text())["lake_rows"] == 3


def test_an_export_without_optional_columns_keeps_the_lakes_values(raw_dir, workspace, ingest_settings):
    # Given 3 orders in the lake with channel, items and discount
    full = "order_id,source,source_id,ordered_at,amount,channel,items,discount"
    rows = [f"O{i},web,W{i},2026-06-30T10:00:00Z,{i + 5},store,{i + 1},1.5" for i in range(3)]
    orders_file(raw_dir, full, *rows)
    ingest_directory(raw_dir, workspace, ingest_settings)
    before = pd.read_parquet(workspace.lake_table("orders")).set_index("order_id")
    lake_bytes = workspace.lake_table("orders").read_bytes()

    # When the same orders are re-sent with the required columns only
    orders_file(raw_dir, "order_id,source,source_id,ordered_at,amount", *(",".join(r.split(",")[:5]) for r in rows))
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]

    # Then the lake keeps their channel, items and discount, and the rows are reported unchanged
    # (nothing rewritten)
    after = pd.read_parquet(workspace.lake_table("orders")).set_index("order_id")
    assert (report.read, report.loaded, report.inserted, report.updated, report.unchanged) == (3, 3, 0, 0, 3)
    pd.testing.assert_frame_equal(after[["channel", "items", "discount"]], before[["channel", "items", "discount"]])
    assert workspace.lake_table("orders").read_bytes() == lake_bytes

    # When one of them comes back with a new amount, and another with the channel column present but empty
    orders_file(raw_dir, "order_id,source,source_id,ordered_at,amount", "O0,web,W0,2026-06-30T10:00:00Z,99")
    first = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    orders_file(raw_dir, "order_id,source,source_id,ordered_at,amount,channel", "O1,web,W1,2026-06-30T10:00:00Z,6,")
    second = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]

    # Then the new amount is taken and the left-out columns kept; an empty value present in the file clears
    after = pd.read_parquet(workspace.lake_table("orders")).set_index("order_id")
    assert (first.updated, second.updated) == (1, 1)
    assert after.loc["O0", "amount"] == 99 and after.loc["O0", "channel"] == "store" and after.loc["O0", "items"] == 1
    assert pd.isna(after.loc["O1", "channel"]) and after.loc["O1", "items"] == 2 and after.loc["O1", "discount"] == 1.5


def test_a_customers_export_without_contact_or_custom_columns_keeps_them(raw_dir, workspace, ingest_settings):
    # Given Ann in the lake with her e-mail, last name and a custom loyalty tier
    (raw_dir / "customers.csv").write_text(
        "source,source_id,first_name,last_name,email,updated_at,loyalty_tier\n"
        "web,00001,Ann,Smith-Lee,ann@example.com,2026-06-01 10:00:00,gold\n")
    ingest_directory(raw_dir, workspace, ingest_settings)

    # When a later export has her first name and another custom column only
    (raw_dir / "customers.csv").write_text("source,source_id,first_name,updated_at,vip_flag\n"
                                           "web,00001,Anne,2026-06-03 10:00:00,N\n")
    report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]

    # Then her row is updated, and her last name, e-mail and tier stay as the lake had them
    ann = pd.read_parquet(workspace.lake_table("customers")).iloc[0]
    assert report.updated == 1
    assert (ann["first_name"], ann["last_name"], ann["email"], ann["loyalty_tier"], ann["vip_flag"]) == (
        "Anne", "Smith-Lee", "ann@example.com", "gold", "N")


def quarantined(workspace, table: str, nulled: bool = False) -> pd.DataFrame:
    return pd.read_parquet(workspace.quarantine / f"{table}{'.nulled' if nulled else ''}.parquet")


NIGHT_1 = {
    "orders.csv": "order_id,source,source_id,ordered_at,amount\n"
                  "D1-1,web,W1,2026-06-30T10:00:00Z,5\n"
                  "D1-2,web,W1,30/06/2026,5\n"
                  "D1-3,web,W1,2026-06-30T10:00:00Z,-5\n",
    "customers.csv": "source,source_id,email,phone\nweb,W1,not-an-email,123\n",
}
NIGHT_2 = {
    "orders.csv": "order_id,source,source_id,ordered_at,amount\n"
                  "D2-1,web,W1,2026-07-01T10:00:00Z,5\n"
                  "D2-2,web,W1,2026-07-01T10:00:00Z,abc\n",
    "customers.csv": "source,source_id,email,phone\nweb,W2,also-not-an-email,07700900123\n",
}


def deliver(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def test_a_nightly_export_at_the_same_path_keeps_the_previous_nights_quarantine(raw_dir, workspace, ingest_settings):
    # Given night 1's export ingested: 1 order loaded, 2 quarantined; W1's e-mail and phone nulled
    deliver(raw_dir, NIGHT_1)
    night_1 = {t.table: t for t in ingest_directory(raw_dir, workspace, ingest_settings).tables}

    # When night 2's export overwrites the same files and is ingested
    deliver(raw_dir, NIGHT_2)
    night_2 = {t.table: t for t in ingest_directory(raw_dir, workspace, ingest_settings).tables}

    # Then night 1's quarantined orders and nulled originals are still there beside night 2's:
    # loaded + quarantined = read, summed over the nights
    orders, rejected = pd.read_parquet(workspace.lake_table("orders")), quarantined(workspace, "orders")
    assert sorted(orders["order_id"]) == ["D1-1", "D2-1"]
    assert sorted(json.loads(r)["order_id"] for r in rejected["record"]) == ["D1-2", "D1-3", "D2-2"]
    read = sum(n["orders"].read for n in (night_1, night_2))
    assert len(orders) + len(rejected) == read == 5
    nulled = quarantined(workspace, "customers", nulled=True)
    assert sorted(nulled["original_value"]) == ["123", "also-not-an-email", "not-an-email"]

    # and (file, row) names one record: night 1's lake rows and entries carry night 1's content name,
    # night 2's the path (the file there now), as erasure and subject access match them
    path = str((raw_dir / "orders.csv").resolve())
    night_1_name = orders.loc[orders["order_id"] == "D1-1", "_source_file"].item()
    assert night_1_name.startswith(path + "@content-")
    assert orders.loc[orders["order_id"] == "D2-1", "_source_file"].item() == path
    by_order = {json.loads(r)["order_id"]: f for r, f in zip(rejected["record"], rejected["file"], strict=True)}
    assert by_order == {"D1-2": night_1_name, "D1-3": night_1_name, "D2-2": path}
    customers = pd.read_parquet(workspace.lake_table("customers"))
    lineage = dict(zip(customers["source_id"], zip(customers["_source_file"], customers["_source_row"], strict=True),
                       strict=True))
    places = {value: (f, r) for value, f, r in zip(nulled["original_value"], nulled["file"], nulled["row"], strict=True)}
    assert places["not-an-email"] == places["123"] == lineage["W1"] != lineage["W2"] == places["also-not-an-email"]


def test_reingesting_the_same_file_keeps_one_copy_of_its_entries(raw_dir, workspace, ingest_settings):
    # Given night 1 and night 2 ingested at the same path
    deliver(raw_dir, NIGHT_1)
    ingest_directory(raw_dir, workspace, ingest_settings)
    deliver(raw_dir, NIGHT_2)
    ingest_directory(raw_dir, workspace, ingest_settings)
    entries = (len(quarantined(workspace, "orders")), len(quarantined(workspace, "customers", nulled=True)))
    lake_bytes = workspace.lake_table("orders").read_bytes()

    # When night 2's file is ingested again: its entries are replaced, not added; the lake is untouched
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    assert (len(quarantined(workspace, "orders")), len(quarantined(workspace, "customers", nulled=True))) == entries
    assert workspace.lake_table("orders").read_bytes() == lake_bytes
    assert report.tables[1].unchanged == 1

    # When night 1's file is put back and ingested again: its entries are replaced too (one copy each)
    deliver(raw_dir, NIGHT_1)
    ingest_directory(raw_dir, workspace, ingest_settings)
    rejected = quarantined(workspace, "orders")
    assert sorted(json.loads(r)["order_id"] for r in rejected["record"]) == ["D1-2", "D1-3", "D2-2"]
    path = str((raw_dir / "orders.csv").resolve())
    assert set(rejected.loc[rejected["file"] == path, "row"]) == {2, 3}  # night 1's again: the file there now
    assert len(quarantined(workspace, "customers", nulled=True)) == 3


def test_entries_from_before_contents_were_recorded_are_kept_unless_reproduced(raw_dir, workspace, ingest_settings):
    # Given night 1 ingested by a version that did not record contents (no record of deliveries)
    deliver(raw_dir, NIGHT_1)
    ingest_directory(raw_dir, workspace, ingest_settings)
    (workspace.quarantine / "deliveries.json").unlink()

    # When the same file is ingested again, then night 2's
    ingest_directory(raw_dir, workspace, ingest_settings)
    assert len(quarantined(workspace, "orders")) == 2
    (workspace.quarantine / "deliveries.json").unlink()
    deliver(raw_dir, NIGHT_2)
    ingest_directory(raw_dir, workspace, ingest_settings)

    # Then the same entries were not doubled, and night 1's are kept when night 2 comes
    rejected = quarantined(workspace, "orders")
    assert sorted(json.loads(r)["order_id"] for r in rejected["record"]) == ["D1-2", "D1-3", "D2-2"]
    assert rejected.loc[rejected["row"] == 3, "file"].item().split("@")[1].startswith("ingested-")
    assert len(quarantined(workspace, "customers", nulled=True)) == 3


def with_legacy_columns(workspace, values: dict[str, dict[str, str]]) -> None:
    """The customers lake as an ingest from before header matching left it: `EMAIL` and `PHONE` headers
    were custom columns (stored `EMAIL_1`, `PHONE_1`). `values`: by column, by source_id."""
    import duckdb

    target = workspace.lake_table("customers")
    added = "".join(
        ", CASE source_id " + "".join(f"WHEN '{k}' THEN '{v}' " for k, v in by_id.items())
        + f"END AS \"{name}\"" for name, by_id in values.items())
    duckdb.sql(f"COPY (SELECT *{added} FROM read_parquet('{target}')) TO '{target}.new' (FORMAT parquet)")
    Path(f"{target}.new").replace(target)


def test_an_old_spelling_of_a_pii_column_goes_from_the_rows_a_file_replaces(
        raw_dir, workspace, ingest_settings, caplog):
    # Given a lake whose e-mails and phones are in the custom columns an older ingest made of `EMAIL` and
    # `PHONE` headers, for customers 1 and 2
    (raw_dir / "customers.csv").write_text("source,source_id,first_name\ncrm,1,Ann\ncrm,2,Bob\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    with_legacy_columns(workspace, {"EMAIL_1": {"1": "ann@example.com", "2": "bob@example.com"},
                                    "PHONE_1": {"1": "+447700900001"}})

    # When customer 1 is sent again with the same headers, now read as email and phone
    (raw_dir / "customers.csv").write_text("source,source_id,EMAIL,Phone Number\ncrm,1,ann@example.com,+447700900001\n")
    caplog.set_level("WARNING", logger="cdp.ingest")
    ingest_directory(raw_dir, workspace, ingest_settings)

    # Then her e-mail and phone are in the contract columns only; customer 2's old column stays until
    # sent again, and the emptied `PHONE_1` is gone from the lake
    customers = pd.read_parquet(workspace.lake_table("customers")).set_index("source_id")
    assert (customers.loc["1", "email"], customers.loc["1", "phone"]) == ("ann@example.com", "+447700900001")
    assert pd.isna(customers.loc["1", "EMAIL_1"]) and customers.loc["2", "EMAIL_1"] == "bob@example.com"
    assert "PHONE_1" not in customers.columns
    # and the log warns naming the columns and counts, never a value
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'EMAIL_1'" in m and "'email'" in m and "1 other lake row(s) still hold it" in m for m in warnings)
    assert any("'PHONE_1'" in m and "dropped" in m for m in warnings)
    assert not any("example.com" in m or "7700" in m for m in warnings)

    # When customer 2 is sent again too, then the old column is gone, and a third ingest changes nothing
    (raw_dir / "customers.csv").write_text("source,source_id,email\ncrm,1,ann@example.com\ncrm,2,bob@example.com\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    written = workspace.lake_table("customers").read_bytes()
    again = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    customers = pd.read_parquet(workspace.lake_table("customers"))
    assert "EMAIL_1" not in customers.columns and sorted(customers["email"]) == ["ann@example.com", "bob@example.com"]
    assert again.unchanged == 2 and workspace.lake_table("customers").read_bytes() == written


def test_an_old_spelling_is_kept_while_files_lack_its_column_and_the_log_says_so(
        raw_dir, workspace, ingest_settings, caplog):
    # Given a lake with an old `EMAIL_1` column for customer 1
    (raw_dir / "customers.csv").write_text("source,source_id,first_name\ncrm,1,Ann\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    with_legacy_columns(workspace, {"EMAIL_1": {"1": "ann@example.com"}})
    # When a file without any e-mail column replaces her row
    (raw_dir / "customers.csv").write_text("source,source_id,first_name\ncrm,1,Anne\n")
    caplog.set_level("WARNING", logger="cdp.ingest")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the file says nothing about her e-mail: the old column keeps it, and the log warns
    customers = pd.read_parquet(workspace.lake_table("customers"))
    assert customers["EMAIL_1"].tolist() == ["ann@example.com"] and customers["first_name"].tolist() == ["Anne"]
    assert any("'EMAIL_1'" in r.getMessage() and "1 lake row(s) hold it" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


def test_other_names_and_numbered_columns_are_never_taken_for_old_spellings(raw_dir, workspace, ingest_settings):
    # Given a CRM export whose second customer has only a mobile (no phone), and an address_line_2
    (raw_dir / "customers.csv").write_text("source,source_id,Phone,Mobile,address_line,address_line_2\n"
                                           "crm,1,+441632960001,+447700900002,1 High St,\n"
                                           "crm,2,,+447700900004,,Flat 3\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # When a later export re-sends both with the phone and address columns only
    (raw_dir / "customers.csv").write_text("source,source_id,Phone,address_line\ncrm,1,+441632960001,1 High St\n"
                                           "crm,2,,\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the mobile and the second address line are kept (a column a file leaves out says nothing about it)
    customers = pd.read_parquet(workspace.lake_table("customers")).set_index("source_id")
    assert customers.loc["2", "Mobile"] == "+447700900004" and customers.loc["2", "address_line_2"] == "Flat 3"
    assert customers.loc["1", "Mobile"] == "+447700900002"
