"""Real exports through the real ingest: channel spellings, header spellings, encodings, timestamps
written by other databases, long fields (user test with a data engineer's exports)."""

from __future__ import annotations

import json

import pandas as pd

from features.contract import CONSENTS, CONTACT_CHANNELS
from features.customer_features import CHANNELS as POLICY_CHANNELS
from features.ingest import ingest_directory


def lake(workspace, table: str) -> pd.DataFrame:
    return pd.read_parquet(workspace.lake_table(table))


def quarantine(workspace, table: str) -> pd.DataFrame:
    return pd.read_parquet(workspace.quarantine / f"{table}.parquet")


def table_report(report, table: str):
    return next(t for t in report.tables if t.table == table)


# F9: consent channels ---------------------------------------------------------------------------------

CONSENTS_HEADER = "source,source_id,channel,status,recorded_at\n"


def test_the_contract_knows_exactly_the_channels_the_policy_reads():
    # Given the contract's consent channels and the channels the features and policy read
    # Then they are the same: a consent the contract loads is one the policy sees
    assert CONSENTS.column("channel").allowed == CONTACT_CHANNELS == set(POLICY_CHANNELS)


def test_common_spellings_of_a_consent_channel_are_stored_as_the_policy_channel(raw_dir, workspace, ingest_settings):
    # Given withdrawals filed under the spellings consent systems export
    rows = ["E-mail", "E-Mail", "EMAIL", "e_mail", "SMS", "Text", "text message", "Push Notification", "App push"]
    (raw_dir / "consents.csv").write_text(
        CONSENTS_HEADER + "".join(f"web,w{i},{channel},withdrawn,2025-01-01T10:00:00Z\n" for i, channel in enumerate(rows))
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then every one loads under the channel the policy reads
    assert table_report(report, "consents").loaded == len(rows)
    stored = lake(workspace, "consents").sort_values("source_id")["channel"].tolist()
    assert stored == ["email"] * 4 + ["sms"] * 3 + ["push"] * 2


def test_a_consent_for_a_channel_the_contract_does_not_know_is_quarantined_naming_the_allowed_ones(
    raw_dir, workspace, ingest_settings
):
    # Given a withdrawal under `mail` (post or e-mail? the contract cannot tell) and one under a marketing label
    (raw_dir / "consents.csv").write_text(
        CONSENTS_HEADER
        + "web,w1,mail,withdrawn,2025-01-01T10:00:00Z\n"
        + "web,w2,EMAIL_MARKETING,withdrawn,2025-01-01T10:00:00Z\n"
        + "web,w3,email,withdrawn,2025-01-01T10:00:00Z\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then they are quarantined (never loaded and silently ignored), the reason naming the field and the channels
    consents = table_report(report, "consents")
    assert (consents.loaded, consents.quarantined) == (1, 2)
    assert lake(workspace, "consents")["channel"].tolist() == ["email"]
    held = quarantine(workspace, "consents").sort_values("row")
    assert held["columns"].tolist() == ["channel", "channel"]
    for reason in held["reason"]:
        assert reason.startswith("channel: not one of email, push, sms")
    # and the record keeps the channel as written
    assert json.loads(held["record"].iloc[1])["channel"] == "EMAIL_MARKETING"


def test_touch_channels_are_spelled_like_consents_and_other_channels_are_kept(raw_dir, workspace, ingest_settings):
    # Given touches under other spellings, a control written `Control`, and a channel the policy does not use
    (raw_dir / "touches.csv").write_text(
        "touch_id,source,source_id,sent_at,channel\n"
        + "t1,web,w1,2025-01-01T10:00:00Z,E-mail\n"
        + "t2,web,w1,2025-01-01T10:00:00Z,Text message\n"
        + "t3,web,w1,2025-01-01T10:00:00Z,Control\n"
        + "t4,web,w1,2025-01-01T10:00:00Z,Direct_Mail\n"
        + "t5,web,w1,2025-01-01T10:00:00Z,none\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then all load: spellings as the policy's channels, the control as `none`, the other channel kept
    assert table_report(report, "touches").loaded == 5
    touches = lake(workspace, "touches").set_index("touch_id")["channel"]
    assert touches.to_dict() == {"t1": "email", "t2": "sms", "t3": "none", "t4": "direct_mail", "t5": "none"}


def test_a_consent_channel_in_parquet_is_read_the_same_way(raw_dir, workspace, ingest_settings):
    # Given consents in Parquet with `E-mail` and an unknown channel
    pd.DataFrame({
        "source": ["web", "web"], "source_id": ["w1", "w2"], "channel": ["E-mail", "fax"],
        "status": ["withdrawn", "granted"], "recorded_at": ["2025-01-01T10:00:00Z"] * 2,
    }).to_parquet(raw_dir / "consents.parquet")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then `E-mail` loads as email and the unknown channel is quarantined
    assert (table_report(report, "consents").loaded, table_report(report, "consents").quarantined) == (1, 1)
    assert lake(workspace, "consents")["channel"].tolist() == ["email"]


# F1: header names ------------------------------------------------------------------------------------


def test_contract_columns_are_matched_ignoring_case_and_separators(raw_dir, workspace, ingest_settings):
    # Given orders whose optional column is `Channel`, and customers whose PII headers are cased by the export
    (raw_dir / "orders.csv").write_text(
        "Order_ID,Source,SOURCE_ID,Ordered At,amount,Channel, items ,discount\nA1,web,1,2024-07-01,10,Web,2,1\n"
    )
    (raw_dir / "customers.csv").write_text(
        "source,source_id,First Name,EMAIL,Phone,last-name,Loyalty_Tier\nweb,1,Ann,ann@example.com,07700900123,Lee,gold\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then every header is its contract column: nothing ignored, the PII is identity data, not custom attributes
    orders, customers = table_report(report, "orders"), table_report(report, "customers")
    assert orders.ignored_columns == [] and orders.loaded == 1
    assert lake(workspace, "orders")["channel"].tolist() == ["web"]
    assert customers.custom_columns == ["Loyalty_Tier"]
    row = lake(workspace, "customers").iloc[0]
    assert (row["first_name"], row["last_name"], row["email"], row["phone"]) == ("Ann", "Lee", "ann@example.com",
                                                                                  "07700900123")
    assert not any(name.endswith("_1") for name in lake(workspace, "customers").columns)


def test_pii_under_a_cased_header_is_checked_like_any_pii(raw_dir, workspace, ingest_settings):
    # Given an invalid e-mail under the header `EMAIL`
    (raw_dir / "customers.csv").write_text("source,source_id,EMAIL\nweb,1,not-an-email\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then it is nulled as an e-mail (the original kept apart), not kept as a custom attribute
    assert table_report(report, "customers").nulled_values == {"email": 1}
    assert pd.isna(lake(workspace, "customers")["email"].iloc[0])


def test_reingesting_a_file_with_cased_headers_changes_nothing(raw_dir, workspace, ingest_settings):
    # Given customers with cased headers, ingested once
    (raw_dir / "customers.csv").write_text("source,source_id,First_Name,EMAIL,Phone\nweb,1,Ann,ann@example.com,07700900123\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    written = workspace.lake_table("customers").stat().st_mtime_ns
    # When the same file is ingested again
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then its row is unchanged and the lake file untouched
    customers = table_report(report, "customers")
    assert (customers.inserted, customers.updated, customers.unchanged) == (0, 0, 1)
    assert workspace.lake_table("customers").stat().st_mtime_ns == written


def test_a_cased_header_of_required_columns_is_not_taken_for_a_missing_header(raw_dir, workspace, ingest_settings):
    # Given returns whose header is cased differently
    (raw_dir / "returns.csv").write_text("Order_ID,Returned_At,AMOUNT\nA1,2024-07-02,5\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the row loads
    returns = table_report(report, "returns")
    assert returns.status == "ok" and returns.loaded == 1


def test_two_headers_that_are_one_column_fail_the_table_naming_both(raw_dir, workspace, ingest_settings):
    # Given customers with both `email` and `EMAIL`, and orders with custom-free duplicates spelled apart
    (raw_dir / "customers.csv").write_text("source,source_id,email,EMAIL\nweb,1,a@example.com,b@example.com\n")
    (raw_dir / "orders.csv").write_text("order_id,source,source_id,ordered_at,amount,Ordered-At\nA1,web,1,2024-07-01,1,x\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then each table fails with a message naming both headers and the column they both are
    customers, orders = table_report(report, "customers"), table_report(report, "orders")
    assert customers.status == orders.status == "failed"
    assert "3 (email) and 4 (EMAIL)" in customers.error and "'email'" in customers.error
    assert "4 (ordered_at) and 6 (Ordered-At)" in orders.error and "keep one" in orders.error


def test_custom_columns_differing_only_in_case_fail_the_table(raw_dir, workspace, ingest_settings):
    # Given customers with custom columns `Notes` and `notes` (the lake cannot hold both)
    (raw_dir / "customers.csv").write_text("source,source_id,Notes,notes\nweb,1,a,b\n")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the table fails naming both
    customers = table_report(report, "customers")
    assert customers.status == "failed" and "3 (Notes) and 4 (notes)" in customers.error


def test_parquet_columns_are_matched_ignoring_case_too(raw_dir, workspace, ingest_settings):
    # Given orders in Parquet with cased column names
    pd.DataFrame({"Order_ID": ["A1"], "SOURCE": ["web"], "Source_Id": ["1"], "Ordered_At": ["2024-07-01"],
                  "Amount": [10.0], "Channel": ["App"]}).to_parquet(raw_dir / "orders.parquet")
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the row loads with its channel
    orders = table_report(report, "orders")
    assert orders.loaded == 1 and orders.ignored_columns == []
    assert lake(workspace, "orders")["channel"].tolist() == ["app"]
