"""Ingestion after an erasure drops the person's contacts however they are written: a zero-width space in
an e-mail, a `tel:` number or a `Name <addr>` that validation nulls (never kept in the quarantine)."""

from __future__ import annotations

import pandas as pd

from cdp.config import IngestSettings, PrivacySettings
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.ingest import ingest_directory
from features.suppression import (
    Standardization,
    append_suppression,
    identifier_hashes,
    load_or_create_salt,
)


def test_an_erased_persons_contacts_written_oddly_are_neither_loaded_nor_quarantined(tmp_path):
    # Given Grace was erased (her e-mail and phone suppressed)
    workspace, privacy = Workspace.at(tmp_path / "ws"), PrivacySettings()
    salt = load_or_create_salt(workspace, privacy)
    append_suppression(workspace, privacy, identifier_hashes(
        salt, {"email": ["grace.davies1991@icloud.com"], "phone": ["+447655570373"]}), "r1", Standardization())
    # and a new customers export holds her under new ids, her contacts written in ways validation lets
    # through or nulls, beside someone else whose nulled values must stay
    rows = [
        {"source": "crm", "source_id": "N1", "first_name": "Grace", "email": "grace.davies1991@icloud.com\u200b"},
        {"source": "crm", "source_id": "N2", "first_name": "Grace", "phone": "tel:07655570373"},
        {"source": "crm", "source_id": "N3", "first_name": "Grace",
         "email": "Grace Davies <grace.davies1991@icloud.com>"},
        {"source": "crm", "source_id": "N4", "first_name": "Bob", "email": "Bob <bob@example.org>",
         "phone": "tel:07700900999"},
    ]
    raw = tmp_path / "raw"
    raw.mkdir()
    frame = pd.DataFrame(rows).reindex(columns=list(CONTRACTS["customers"].column_names))
    frame.to_csv(raw / "customers.csv", index=False)
    # When it is ingested
    report = ingest_directory(raw, workspace, IngestSettings())
    # Then none of Grace's rows is loaded and none of her contacts is kept in the quarantine
    customers = report.tables[0]
    assert customers.suppressed == 3
    lake = pd.read_parquet(workspace.lake_table("customers"))
    assert lake["source_id"].tolist() == ["N4"]
    nulled = pd.read_parquet(workspace.quarantine / "customers.nulled.parquet")
    assert not nulled["original_value"].str.contains("07655570373|grace", case=False).any()
    assert sorted(nulled["original_value"]) == ["Bob <bob@example.org>", "tel:07700900999"]
