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


# F11: encodings ----------------------------------------------------------------------------------------

ORDERS = "order_id,source,source_id,ordered_at,amount\nA1,web,1,2024-07-01,10\n"


def test_a_utf16_file_fails_naming_its_encoding(raw_dir, workspace, ingest_settings):
    # Given orders saved as UTF-16 with its byte-order mark (Excel's "Unicode Text")
    (raw_dir / "orders.csv").write_bytes(ORDERS.encode("utf-16"))
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the table fails saying the file is UTF-16, not that its header is missing
    orders = table_report(report, "orders")
    assert orders.status == "failed"
    assert "UTF-16" in orders.error and "re-export it as UTF-8" in orders.error
    assert "header row missing" not in orders.error


def test_a_utf16_file_without_a_byte_order_mark_fails_naming_the_problem(raw_dir, workspace, ingest_settings):
    # Given orders saved as UTF-16 big-endian without a mark
    (raw_dir / "orders.csv").write_bytes(ORDERS.encode("utf-16-be"))
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then the table fails saying it is not UTF-8
    orders = table_report(report, "orders")
    assert orders.status == "failed" and "not UTF-8" in orders.error and "UTF-16" in orders.error


# F10: invalid UTF-8 in a custom column ------------------------------------------------------------------


def test_invalid_utf8_in_a_custom_column_nulls_that_value_and_keeps_the_record(raw_dir, workspace, ingest_settings):
    # Given customers from a Latin-1 CRM: one byte in a custom column each
    (raw_dir / "customers.csv").write_bytes(
        b"source,source_id,first_name,email,loyalty_tier,notes\n"
        b"web,1,Ann,ann@example.com,Gold\x95,ok\n"
        b"web,2,Bob,bob@example.com,Silver,caf\xe9\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then both records load, only the undecodable values nulled, their bytes kept apart
    customers = table_report(report, "customers")
    assert (customers.loaded, customers.quarantined) == (2, 0)
    assert customers.nulled_values == {"loyalty_tier": 1, "notes": 1}
    stored = lake(workspace, "customers").set_index("source_id")
    assert stored.loc["1", "email"] == "ann@example.com" and pd.isna(stored.loc["1", "loyalty_tier"])
    assert stored.loc["1", "notes"] == "ok" and pd.isna(stored.loc["2", "notes"])
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet").set_index("column")
    assert nulled.loc["notes", "original_value"] == "caf\\xe9"
    assert nulled.loc["notes", "reason"] == "invalid UTF-8 text"


# F8: timestamps from other databases --------------------------------------------------------------------


def test_timestamps_with_an_hour_offset_and_long_fractions_load(raw_dir, workspace, ingest_settings):
    # Given timestamps as PostgreSQL (`+00`, `+02`), a compact offset and SQL Server's 7 fraction digits write them
    (raw_dir / "orders.csv").write_text(
        "order_id,source,source_id,ordered_at,amount\n"
        "p1,web,1,2024-07-01 19:08:07+00,1\n"
        "p2,web,1,2024-07-01 19:08:07.123+02,1\n"
        "p3,web,1,2024-07-01T19:08:07-0530,1\n"
        "p4,web,1,2024-07-01 19:08:07.1234567,1\n"
        "p5,web,1,2024-07-01-05,1\n"
        "d1,web,1,2024-07-01,1\n"
    )
    # When ingested
    report = ingest_directory(raw_dir, workspace, ingest_settings)
    # Then they load in UTC (fractions kept to the microsecond), and a bare date beside them is still midnight in
    # the naive zone (its `-01` is its day, not an offset); a date with an hour "offset" is no timestamp
    orders = table_report(report, "orders")
    assert (orders.loaded, orders.quarantined) == (5, 1)
    moments = lake(workspace, "orders").set_index("order_id")["ordered_at"]
    assert moments["p1"] == pd.Timestamp("2024-07-01 19:08:07", tz="UTC")
    assert moments["p2"] == pd.Timestamp("2024-07-01 17:08:07.123", tz="UTC")
    assert moments["p3"] == pd.Timestamp("2024-07-02 00:38:07", tz="UTC")
    assert moments["p4"] == pd.Timestamp("2024-07-01 19:08:07.123456", tz="UTC")
    assert moments["d1"] == pd.Timestamp("2024-07-01", tz="UTC")
    assert quarantine(workspace, "orders")["reason"].tolist() == ["ordered_at: not a real ISO-8601 timestamp"]


# F2: a field longer than Python's csv limit ----------------------------------------------------------------


def _orders_with_a_long_field(stray_quote: bool) -> str:
    long = "x" * 200_000
    rows = ["A1,web,1,2024-07-01,10", f'A7,web,"{long}",2024-07-01,10', "A8,web,1,2024-07-01,10"]
    if stray_quote:  # makes the fast reader give up: the tolerant reader reads the file
        rows.append('A9,web,1,2024-07-01,"10\nA10,web,1,2024-07-01,10')
    return "order_id,source,source_id,ordered_at,amount\n" + "\n".join(rows) + "\n"


def test_a_field_longer_than_the_csv_limit_is_quarantined_whichever_reader_reads_the_file(
    tmp_path, ingest_settings
):
    from cdp.workspace import Workspace

    outcomes = {}
    for stray_quote in (False, True):
        # Given orders with a 200,000-character source id, with and without a stray quote further down
        raw = tmp_path / f"raw{stray_quote}"
        raw.mkdir()
        (raw / "orders.csv").write_text(_orders_with_a_long_field(stray_quote))
        workspace = Workspace.at(tmp_path / f"ws{stray_quote}")
        # When ingested
        report = table_report(ingest_directory(raw, workspace, ingest_settings), "orders")
        held = quarantine(workspace, "orders").set_index("row")
        outcomes[report.reader] = held.loc[2, "reason"]
        # Then the long record is quarantined with its text, and the records around it load
        assert {"A1", "A8"} <= set(lake(workspace, "orders")["order_id"])
        assert "A7" not in set(lake(workspace, "orders")["order_id"])
        assert json.loads(held.loc[2, "record"])["raw_text"].startswith('A7,web,')
    # with the same reason from both readers
    assert set(outcomes) == {"pyarrow", "python-csv"}
    assert outcomes["pyarrow"] == outcomes["python-csv"] == "unreadable CSV record: field larger than field limit (131072)"


# Custom columns spelled another way than the lake's (review F2) -----------------------------------------


def test_a_custom_column_whose_case_changes_stays_one_column(raw_dir, workspace, ingest_settings):
    # Given a custom column `Loyalty_Tier` in the lake
    (raw_dir / "customers.csv").write_text("source,source_id,Loyalty_Tier\ncrm,1,gold\ncrm,2,silver\n")
    ingest_directory(raw_dir, workspace, ingest_settings)

    # When later exports spell it `loyalty_tier` (once with a new value, then the same file twice more)
    (raw_dir / "customers.csv").write_text("source,source_id,loyalty_tier\ncrm,1,platinum\ncrm,3,bronze\n")
    first = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    written = workspace.lake_table("customers").read_bytes()
    second = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    third = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")

    # Then the lake has one column, in the lake's spelling, with the new values
    customers = lake(workspace, "customers").set_index("source_id")
    assert [c for c in customers.columns if c.lower().startswith("loyalty")] == ["Loyalty_Tier"]
    assert customers["Loyalty_Tier"].to_dict() == {"1": "platinum", "2": "silver", "3": "bronze"}
    assert first.custom_columns == ["Loyalty_Tier"] and (first.inserted, first.updated) == (1, 1)
    # and the same file again changes nothing: its rows unchanged, the lake file untouched
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 2)
    assert (third.inserted, third.updated, third.unchanged) == (0, 0, 2)
    assert workspace.lake_table("customers").read_bytes() == written


def test_a_custom_column_whose_case_changes_in_parquet_stays_one_column(raw_dir, workspace, ingest_settings):
    # Given a custom column `Loyalty_Tier` in the lake, from a CSV export
    (raw_dir / "customers.csv").write_text("source,source_id,Loyalty_Tier\ncrm,1,gold\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    (raw_dir / "customers.csv").unlink()
    # When a Parquet export spells it `LOYALTY_TIER`
    pd.DataFrame({"source": ["crm"], "source_id": ["1"], "LOYALTY_TIER": ["platinum"]}).to_parquet(
        raw_dir / "customers.parquet")
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then the lake's column takes the new value, and no other column appears
    customers = lake(workspace, "customers")
    assert report.updated == 1
    assert [c for c in customers.columns if c.lower().startswith("loyalty")] == ["Loyalty_Tier"]
    assert customers["Loyalty_Tier"].tolist() == ["platinum"]


# Common other names of PII columns (review F5) ----------------------------------------------------------


def test_the_common_spellings_of_pii_headers_are_the_contract_columns(raw_dir, workspace, ingest_settings):
    # Given an export whose PII headers are written as people write them, and a flag named after a channel
    (raw_dir / "customers.csv").write_text(
        "source,source_id,FirstName,Surname,E-mail,Phone Number,ZIP Code,DOB,mobile_app_user\n"
        "crm,1,Ann,Lee,ann@example.com,+447700900001,SW1A 1AA,1980-02-03,yes\n")
    # When ingested
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then each is its contract column, checked as PII; only the flag is a custom column
    row = lake(workspace, "customers").iloc[0]
    assert report.custom_columns == ["mobile_app_user"]
    assert (row["first_name"], row["last_name"], row["email"], row["phone"], row["postcode"]) == (
        "Ann", "Lee", "ann@example.com", "+447700900001", "SW1A 1AA")
    assert str(row["date_of_birth"])[:10] == "1980-02-03"
    assert not {"E-mail", "Phone Number", "ZIP Code", "DOB"} & set(lake(workspace, "customers").columns)


def test_an_invalid_value_under_an_alias_header_is_nulled_as_pii(raw_dir, workspace, ingest_settings):
    # Given an invalid e-mail under `Email Address` and an invalid phone under `Mobile`
    (raw_dir / "customers.csv").write_text("source,source_id,Email Address,Mobile\ncrm,1,not-an-email,call me\n")
    # When ingested
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then both are nulled as the PII they are (kept apart), not loaded as custom attributes
    assert report.nulled_values == {"email": 1, "phone": 1} and report.custom_columns == []


def test_a_file_with_phone_and_mobile_loads_phone_as_phone_and_mobile_as_a_custom_column(
        raw_dir, workspace, ingest_settings, caplog):
    # Given a CRM export with a landline under `Phone` and a mobile under `Mobile` (an other name of phone)
    (raw_dir / "customers.csv").write_text(
        "source,source_id,Phone,Mobile\ncrm,1,+441632960001,+447700900002\ncrm,2,+441632960003,\n")
    caplog.set_level("WARNING", logger="cdp.ingest")
    # When ingested
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then the table loads: phone is the `Phone` column's value, `Mobile` is a custom column under its own name
    customers = lake(workspace, "customers").set_index("source_id")
    assert report.status != "failed" and report.loaded == 2 and report.custom_columns == ["Mobile"]
    assert customers.loc["1", "phone"] == "+441632960001" and customers.loc["1", "Mobile"] == "+447700900002"
    assert customers.loc["2", "phone"] == "+441632960003" and pd.isna(customers.loc["2", "Mobile"])
    # and the log names `Mobile` as not used as phone because the file has phone, and as custom contact data,
    # never quoting a value
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'Mobile'" in m and "not used as it" in m and "'phone'" in m for m in warnings)
    assert any("custom column 'Mobile' looks like contact data" in m for m in warnings)
    assert not any("7700" in m or "1632" in m for m in warnings)

    # When the same file is ingested again, then nothing changes (`Mobile` is not taken for an old spelling)
    written = workspace.lake_table("customers").read_bytes()
    again = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    assert again.unchanged == 2 and workspace.lake_table("customers").read_bytes() == written

    # When a later export has the phone but not the mobile, then the mobile numbers are kept (a column a file
    # leaves out says nothing about it): beside a phone in the lake, `Mobile` is a datum, not an old spelling
    (raw_dir / "customers.csv").write_text("source,source_id,Phone\ncrm,1,+441632960001\ncrm,2,+441632960003\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    kept = lake(workspace, "customers").set_index("source_id")
    assert kept.loc["1", "Mobile"] == "+447700900002" and kept.loc["1", "phone"] == "+441632960001"


def test_the_column_named_as_the_contract_wins_whatever_its_case_position_or_format(
        raw_dir, workspace, ingest_settings):
    # Given a Parquet export whose aliases `Tel` and `Mobile Number` come before `PHONE`
    pd.DataFrame({"source": ["crm"], "source_id": ["1"], "Tel": ["+441632960001"],
                  "Mobile Number": ["+447700900002"], "PHONE": ["+441632960009"]}).to_parquet(
        raw_dir / "customers.parquet")
    # When ingested
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then phone is PHONE's value; both aliases are custom columns under their own names
    row = lake(workspace, "customers").iloc[0]
    assert report.custom_columns == ["Tel", "Mobile Number"]
    assert (row["phone"], row["Tel"], row["Mobile Number"]) == ("+441632960009", "+441632960001", "+447700900002")


def test_two_aliases_without_the_column_itself_fail_the_table_naming_both(raw_dir, workspace, ingest_settings):
    # Given a lake with customer 1's phone, then an export with `Mobile` and `Tel` but no `Phone`
    (raw_dir / "customers.csv").write_text("source,source_id,phone\ncrm,1,+441632960001\n")
    ingest_directory(raw_dir, workspace, ingest_settings)
    written = workspace.lake_table("customers").read_bytes()
    (raw_dir / "customers.csv").write_text("source,source_id,Mobile,Tel\ncrm,1,+447700900002,+441632960003\n")
    # When ingested
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then the table fails naming both headers and the column, saying which to rename; the lake is untouched
    assert report.status == "failed"
    assert "3 (Mobile) and 4 (Tel)" in report.error and "'phone'" in report.error
    assert "rename that one phone" in report.error
    assert workspace.lake_table("customers").read_bytes() == written


def test_two_headers_written_alike_still_fail_naming_both(raw_dir, workspace, ingest_settings):
    # Given exports with `Phone` and `PHONE`, and with `Phone`, `Mobile` and `mobile`
    for header, named in (("Phone,PHONE", "3 (Phone) and 4 (PHONE)"), ("Phone,Mobile,mobile", "4 (Mobile) and 5 (mobile)")):
        (raw_dir / "customers.csv").write_text(f"source,source_id,{header}\ncrm,1,{',' * header.count(',')}\n")
        # When ingested
        report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
        # Then the table fails naming both
        assert report.status == "failed" and named in report.error and "keep one" in report.error


def test_a_reserved_header_is_never_a_contract_column():
    # Given a header `_phone` (reserved: names starting with `_` are ignored) beside `Mobile`
    from pathlib import Path

    from features.contract import CUSTOMERS
    from features.ingest.readers import contract_names

    # When matched to the contract, then `Mobile` is phone and `_phone` keeps its name
    assert contract_names(Path("c.csv"), ["source", "source_id", "_phone", "Mobile"], CUSTOMERS) == [
        "source", "source_id", "_phone", "phone"]


def test_an_alias_can_never_be_another_columns_name():
    # Given a table whose column's alias is another column's name, written another way
    from features.contract import Column, TableContract

    # When it is defined, then it is refused naming both columns
    try:
        TableContract("t", (Column("a_b", "string"), Column("c", "string", aliases=("A-B",))), ("c",), "")
    except ValueError as error:
        assert "'a_b' and 'c'" in str(error)
    else:
        raise AssertionError("a colliding alias was accepted")


def test_every_alias_is_documented():
    from cdp.workspace import REPOSITORY_ROOT
    from features.contract import CONTRACTS

    doc = (REPOSITORY_ROOT / "docs" / "data-contract.md").read_text()
    for contract in CONTRACTS.values():
        for column in contract.columns:
            for alias in column.aliases:
                assert f"`{alias}`" in doc, f"{contract.name}.{column.name} alias {alias!r} not documented"


def test_a_custom_column_holding_contacts_is_warned_of_by_name(raw_dir, workspace, ingest_settings, caplog):
    # Given customers whose e-mails and phones are under headers no contract name or alias matches
    (raw_dir / "customers.csv").write_text(
        "source,source_id,Contact,Whatsapp,tier\ncrm,1,ann@example.com,+447700900001,gold\n"
        "crm,2,bob@example.com,+447700900002,silver\n")
    # When ingested
    caplog.set_level("WARNING", logger="cdp.ingest")
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then they load as custom attributes, and the log warns of each by name, never quoting a value
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert report.custom_columns == ["Contact", "Whatsapp", "tier"]
    assert any("'Contact'" in m and "e-mail" in m for m in warnings)
    assert any("'Whatsapp'" in m and "phone" in m for m in warnings)
    assert not any("'tier'" in m for m in warnings)
    assert not any("example.com" in m or "7700" in m for m in warnings)


def test_a_header_read_as_a_contract_column_whose_values_mostly_fail_is_warned_of(
        raw_dir, workspace, ingest_settings, caplog):
    # Given a customers file whose `Mobile` column is an app-user flag, not a phone (`Mobile` is read as phone)
    (raw_dir / "customers.csv").write_text("source,source_id,Mobile\ncrm,1,Y\ncrm,2,N\n")
    caplog.set_level("WARNING", logger="cdp.ingest")
    # When ingested
    report = table_report(ingest_directory(raw_dir, workspace, ingest_settings), "customers")
    # Then the values are nulled (and kept), and the log asks whether the column read as phone is the right one
    assert report.loaded == 2 and report.nulled_values == {"phone": 2}
    assert any("2 of 2 value(s) of 'phone' were not valid" in r.getMessage() and "cdp contract customers" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")
