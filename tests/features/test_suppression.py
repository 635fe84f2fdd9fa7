"""The suppression matcher: which rows of each contract table name an erased person."""

from __future__ import annotations

import pandas as pd

from cdp.config import PrivacySettings
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.suppression import (
    Standardization,
    SuppressionList,
    append_suppression,
    identifier_hashes,
    load_suppression,
    read_salt,
    reference_pairs,
    suppressed_rows,
)

SALT = b"k" * 32
ERASED = identifier_hashes(SALT, {"record": ["web:W1"], "email": ["janedoe@gmail.com"], "phone": ["+447700900123"],
                                  "order": ["O-9"]})
SUPPRESSION = SuppressionList(SALT, frozenset(ERASED), Standardization())


def test_reference_columns_come_from_the_contract():
    assert reference_pairs(CONTRACTS["orders"]) == [("source", "source_id")]
    assert reference_pairs(CONTRACTS["links"]) == [("source_a", "id_a"), ("source_b", "id_b")]
    assert reference_pairs(CONTRACTS["returns"]) == []


def test_rows_are_matched_by_record_email_phone_and_order_in_any_spelling():
    customers = pd.DataFrame({"source": [" WEB", "app", "app", "crm"], "source_id": ["W1 ", "A1", "A2", "C1"],
                              "email": [None, "Jane.Doe+news@GoogleMail.com", None, "other@example.com"],
                              "phone": [None, None, "07700 900123", "07700 900999"]})
    assert suppressed_rows(customers, "customers", SUPPRESSION).tolist() == [True, True, True, False]
    returns = pd.DataFrame({"order_id": ["O-9", "O-10"]})
    assert suppressed_rows(returns, "returns", SUPPRESSION).tolist() == [True, False]
    links = pd.DataFrame({"source_a": ["app", "app"], "id_a": ["A1", "A3"], "source_b": ["web", "crm"], "id_b": ["W1", "C1"]})
    assert suppressed_rows(links, "links", SUPPRESSION).tolist() == [True, False]
    # an e-mail or phone only counts in customers; elsewhere only references do
    events = pd.DataFrame({"source": ["web", "web"], "source_id": ["W1", "W2"], "email": ["janedoe@gmail.com"] * 2})
    assert suppressed_rows(events, "events", SUPPRESSION).tolist() == [True, False]


def test_an_empty_list_matches_nothing():
    frame = pd.DataFrame({"source": ["web"], "source_id": ["W1"]})
    assert not suppressed_rows(frame, "orders", SuppressionList(None)).any()


def test_the_list_on_disk_holds_hashes_only_and_grows_without_duplicates(tmp_path):
    from features.suppression import load_or_create_salt, suppression_path

    workspace, privacy = Workspace.at(tmp_path), PrivacySettings()
    salt = load_or_create_salt(workspace, privacy)
    hashes = identifier_hashes(salt, {"email": ["janedoe@gmail.com"], "customer": ["C000000042"]})
    assert append_suppression(workspace, privacy, hashes, "r1", Standardization("US")) == 2
    assert append_suppression(workspace, privacy, hashes, "r2", Standardization("US")) == 0
    loaded = load_suppression(workspace, privacy)
    assert loaded.hashes == frozenset(hashes) and loaded.standardization.phone_region == "US"
    assert read_salt(workspace, privacy) == salt
    stored = suppression_path(workspace, privacy).read_bytes()
    assert b"janedoe" not in stored and b"C000000042" not in stored


def test_a_malformed_line_is_matched_by_any_identifier_in_its_raw_text():
    # Given malformed lines kept whole in quarantine (fields cannot be told apart)
    lines = pd.Series([
        "O-77,web,W1,2025-01-01,10,web,1,0,extra",          # a record reference (source, source_id)
        'O-78,app,A9,2025-01-01,10,web,1,0,"Jane.Doe+x@gmail.com"',  # the e-mail, another spelling
        "O-9,store,S5,2025-01-01,10",                       # an order id
        "O-80,crm,C1,2025-01-01,10,07700 900123",           # the phone, national format
        "O-81,crm,C1,2025-01-01,10,W1,web",                  # the record's parts in the wrong order
        "",
        None,
    ])
    # When they are matched against the suppression list
    hit = suppressed_rows(pd.DataFrame({"raw_text": lines}), "orders", SUPPRESSION)
    # Then the lines naming the person match and the others do not
    assert hit.tolist() == [True, True, True, True, False, False, False]


def test_ingestion_drops_a_malformed_line_of_an_erased_person_and_counts_it(tmp_path):
    from cdp.config import IngestSettings
    from features.ingest import ingest_directory
    from features.suppression import load_or_create_salt

    # Given a workspace whose suppression list holds web:W1
    workspace, privacy = Workspace.at(tmp_path / "ws"), PrivacySettings()
    salt = load_or_create_salt(workspace, privacy)
    append_suppression(workspace, privacy, identifier_hashes(salt, {"record": ["web:W1"]}), "r1", Standardization())
    # and an orders file with a malformed line naming W1 and one naming someone else
    raw = tmp_path / "raw"
    raw.mkdir()
    header = ",".join(CONTRACTS["orders"].column_names)
    (raw / "orders.csv").write_text(f"{header}\nO-1,web,W1,2025-01-01T10:00:00Z,10,web,1,0,x\n"
                                    "O-2,web,W2,2025-01-01T10:00:00Z,10,web,1,0,x\n"
                                    "O-3,web,W2,2025-01-01T10:00:00Z,10,web,1,0\n")
    # When it is ingested
    report = ingest_directory(raw, workspace, IngestSettings())
    # Then W1's line is suppressed (never stored), the other is quarantined, and the accounts balance
    orders = report.tables[0]
    assert (orders.read, orders.loaded, orders.quarantined, orders.suppressed) == (3, 1, 1, 1)
    quarantined = pd.read_parquet(workspace.quarantine / "orders.parquet")
    assert ["W2" in r and "W1" not in r for r in quarantined["record"]] == [True]
