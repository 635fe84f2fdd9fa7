"""Feature tables from a simulated retailer: shape, idempotent rebuilds, and no PII anywhere."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from cdp.config import load_settings
from features.contract import CUSTOMERS
from features.customer_features import FEATURE_TABLES
from features.feature_tables import FeatureInputError, build_feature_tables, feature_table_path
from features.identity.store import run_identity_resolution

AS_OF = [dt.datetime(2025, 4, 1, tzinfo=dt.UTC), dt.datetime(2025, 6, 1, tzinfo=dt.UTC)]


@pytest.fixture(scope="module")
def built(simulated):
    _, workspace = simulated
    run_identity_resolution(workspace, load_settings().identity)
    counts = build_feature_tables(workspace, AS_OF)
    return workspace, counts


def test_every_family_has_one_row_per_customer_and_snapshot(built):
    workspace, counts = built
    assert set(counts) == set(FEATURE_TABLES)
    for family in FEATURE_TABLES:
        table = pd.read_parquet(feature_table_path(workspace, family))
        assert len(table) == counts[family] > 0
        assert not table.duplicated(["customer_id", "event_timestamp"]).any()
        assert set(table["event_timestamp"]) == {pd.Timestamp(t) for t in AS_OF}
        assert str(table["event_timestamp"].dt.tz) == "UTC"


def test_rebuilding_a_snapshot_replaces_it(built):
    workspace, counts = built
    build_feature_tables(workspace, AS_OF[-1:])
    assert len(pd.read_parquet(feature_table_path(workspace, "purchase_history"))) == counts["purchase_history"]


def test_tables_are_kept_when_only_file_times_change_and_rebuilt_when_the_lake_does(built):
    import os

    from features.feature_tables import ensure_feature_snapshots

    workspace, _ = built
    build_feature_tables(workspace, AS_OF)
    orders_file = workspace.lake_table("orders")
    original = orders_file.read_bytes()
    try:
        # Given a copy's new modification times (`cp -r`) on lake tables, the data unchanged
        for name in ("customers", "orders"):
            os.utime(workspace.lake_table(name), (1_900_000_000, 1_900_000_000))
        # Then the snapshots already built are kept
        assert ensure_feature_snapshots(workspace, AS_OF) == []
        # Given the orders changed (one order fewer)
        pd.read_parquet(orders_file).iloc[1:].to_parquet(orders_file, index=False)
        # Then every snapshot is rebuilt
        assert ensure_feature_snapshots(workspace, AS_OF) == AS_OF
    finally:  # the module's other tests read the original lake
        orders_file.write_bytes(original)
        build_feature_tables(workspace, AS_OF)


def warnings_of_a_build_with_extra_lake_rows(workspace, table: str, make_rows, caplog) -> str:
    """The WARNING text of a feature build over the lake with `make_rows(lake table)` appended to `table`;
    the lake and the tables are put back after (the module's other tests read them)."""
    path = workspace.lake_table(table)
    original = path.read_bytes()
    try:
        rows = pd.read_parquet(path)
        pd.concat([rows, make_rows(rows)]).to_parquet(path, index=False)
        caplog.clear()
        with caplog.at_level("WARNING", logger="cdp.features"):
            build_feature_tables(workspace, AS_OF[-1:])
        return caplog.text
    finally:
        path.write_bytes(original)
        build_feature_tables(workspace, AS_OF)


def test_records_ingested_since_the_last_resolution_are_said_to_be_left_out(built, caplog):
    workspace, _ = built
    # Given two orders of a web account the identity map has never seen (ingested after `cdp resolve`),
    # when the features are built
    said = warnings_of_a_build_with_extra_lake_rows(
        workspace, "orders", lambda orders: orders.head(2).assign(source="web", source_id="W-NEW-1",
                                                                  order_id=["N1", "N2"]), caplog)
    # Then the build says one record is left out and what to run; and nothing when every record is resolved
    assert "1 source record(s) in the lake are not in the identity map" in said and "`cdp resolve`" in said
    caplog.clear()
    with caplog.at_level("WARNING", logger="cdp.features"):
        build_feature_tables(workspace, AS_OF[-1:])
    assert "not in the identity map" not in caplog.text


def test_consents_of_a_channel_no_feature_reads_are_said(built, caplog):
    workspace, _ = built
    # Given three withdrawals loaded as `e-mail` before the contract read that spelling as `email`, when the
    # features are built
    said = warnings_of_a_build_with_extra_lake_rows(
        workspace, "consents", lambda consents: consents.head(3).assign(channel="e-mail", status="withdrawn"),
        caplog)
    # Then the build says they are read by nothing, and what to do
    assert "consents: 3 row(s) of channel 'e-mail', which no feature reads" in said
    assert "ingest that export again" in said


def test_a_rebuild_stopped_halfway_keeps_the_old_tables_and_starts_over_next_time(built, monkeypatch):
    from features import feature_tables

    workspace, counts = built
    build_feature_tables(workspace, AS_OF)
    orders_file = workspace.lake_table("orders")
    original = orders_file.read_bytes()
    try:
        # Given a changed lake, and a rebuild stopped while it computes (SIGTERM, Ctrl-C)
        pd.read_parquet(orders_file).iloc[1:].to_parquet(orders_file, index=False)

        def stopped(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(feature_tables, "build_customer_features", stopped)
        with pytest.raises(KeyboardInterrupt):
            build_feature_tables(workspace, AS_OF[-1:])
        # Then every table is still there, with all its snapshots (they were deleted before the computing),
        # and still marked as not matching the lake, so the next build starts over
        for family in FEATURE_TABLES:
            assert len(pd.read_parquet(feature_table_path(workspace, family))) == counts[family], family
        assert not feature_tables.tables_match_inputs(workspace)
        monkeypatch.undo()
        build_feature_tables(workspace, AS_OF[-1:])
        stamps = set(pd.read_parquet(feature_table_path(workspace, "purchase_history"))["event_timestamp"])
        assert stamps == {pd.Timestamp(AS_OF[-1])}
    finally:  # the module's other tests read the original lake
        orders_file.write_bytes(original)
        build_feature_tables(workspace, AS_OF)


def test_no_feature_holds_pii(built, simulated):
    # Given every PII value the sources hold
    _, workspace = simulated
    customers = pd.read_parquet(workspace.lake_table("customers"))
    pii_columns = ["first_name", "last_name", "email", "phone", "address_line", "postcode", "date_of_birth"]
    pii_values = {str(v).strip().lower() for c in pii_columns for v in customers[c].dropna()}
    forbidden_names = set(CUSTOMERS.pii_columns)
    for family in FEATURE_TABLES:
        table = pd.read_parquet(feature_table_path(workspace, family))
        # Then no column is named like PII, and no value equals a PII value
        assert not forbidden_names & set(table.columns), family
        for column in table.columns:
            if table[column].dtype == object or str(table[column].dtype).startswith(("date", "string")):
                values = {str(v).strip().lower() for v in table[column].dropna().unique()}
                if column != "customer_id":
                    assert not values & pii_values, (family, column, sorted(values & pii_values)[:3])


def test_features_need_the_identity_map(tmp_path):
    from cdp.workspace import Workspace

    with pytest.raises(FeatureInputError, match="run `cdp resolve` first"):
        build_feature_tables(Workspace.at(tmp_path), AS_OF)


def test_custom_attributes_holding_personal_data_never_become_features(caplog):
    import duckdb

    from features.feature_tables import usable_custom_attributes

    # Given a CRM export's extra columns: categories, flags and scores, and personal data in several guises
    rows = 400
    customers = pd.DataFrame({
        "loyalty_tier": ["gold", "silver", "bronze", None] * (rows // 4),
        "points": [str(i * 7) for i in range(rows)],
        "email_opt_in": ["yes", "no"] * (rows // 2),
        "mobile_app_user": ["1", "0"] * (rows // 2),
        "automobile_owner": ["y", "n"] * (rows // 2),
        "store_name": [f"Store {i % 8}" for i in range(rows)],
        "alt_contact": [f"person{i}@work.example.co.uk" if i % 9 == 0 else None for i in range(rows)],
        "work_line": [f"07700 9{i:05d}" for i in range(rows)],
        "member_ref": [f"M-{i:06d}" for i in range(rows)],
        "loyalty_card_number": [str(4000_1234_0000_0000 + i * 7919) for i in range(rows)],
        "born_on": [f"19{50 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(rows)],
        "secondaryEmail": [f"x{i % 40}" for i in range(rows)],
        "contact_name": [f"Person {i % 30}" for i in range(rows)],
    })
    connection = duckdb.connect()
    connection.register("customers", customers)
    # When the feature stage picks the columns it may use
    with caplog.at_level("WARNING", logger="cdp.features"):
        usable = usable_custom_attributes(connection, list(customers.columns))
    # Then categories, flags and scores remain, whatever words their names hold, and the log says why
    # each other column was left out, naming columns, never values
    assert usable == ("loyalty_tier", "points", "email_opt_in", "mobile_app_user", "automobile_owner", "store_name")
    for column, reason in [("alt_contact", "it holds e-mail addresses"), ("work_line", "it holds phone numbers"),
                           ("member_ref", "it is nearly one value per record (400 distinct of 400)"),
                           ("loyalty_card_number", "it holds long numbers nearly one per record"),
                           ("born_on", "it holds dates"), ("secondaryEmail", "its name says it holds personal data"),
                           ("contact_name", "its name says it holds people's names")]:
        assert f"'{column}' is not used as a feature: {reason}" in caplog.text, column
    assert "person0@" not in caplog.text
