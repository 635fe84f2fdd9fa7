"""How erasure and access requests name a person: e-mails as people paste them, ids with stray spaces;
and what they say about raw export files they do not rewrite."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from cdp.workspace import Workspace
from features.erasure import (
    Subject,
    SubjectQuery,
    _nulled_contact_rows,
    find_customer,
    raw_files_in_workspace,
    warn_about_raw_files,
)
from features.suppression import Standardization

IDENTITY_MAP = pd.DataFrame({"source": ["web", "web"], "source_id": ["1", "2"], "customer_id": ["C000000050", "C2"]})
PROFILES = pd.DataFrame({"customer_id": ["C000000050", "C2"],
                         "emails": [["pauljones1970@gmail.com"], ["someone@example.org"]], "phones": [[], []]})


@pytest.mark.parametrize("written", [
    "Paul Jones <pauljones1970@gmail.com>", "mailto:pauljones1970@gmail.com", "ｐauljones1970@gmail.com",
    "pauljones1970@gmail.com\u200b", " <PaulJones1970@gmail.com> ", "P.A.U.L.JONES1970+promo@GoogleMail.com"])
def test_an_email_request_finds_the_person_however_the_address_is_written(written):
    query = SubjectQuery(email=written)
    assert find_customer(IDENTITY_MAP, PROFILES, query, Standardization()) == "C000000050"


@pytest.mark.parametrize("written", [" C000000050 ", "C000000050\u200b", "\tC000000050\n"])
def test_a_customer_id_with_stray_spaces_or_format_characters_names_the_customer(written):
    assert find_customer(IDENTITY_MAP, PROFILES, SubjectQuery(customer_id=written), Standardization()) == "C000000050"
    query = SubjectQuery(source=" WEB ", source_id=" 2 ")
    assert find_customer(IDENTITY_MAP, PROFILES, query, Standardization()) == "C2"


def test_a_blank_identifier_names_no_one():
    with pytest.raises(ValueError, match="exactly one of"):
        SubjectQuery(customer_id="  ")


def test_nulled_contacts_written_as_name_and_address_or_tel_uri_are_the_persons():
    subject = Subject("C1", [("web", "1")], ["grace.davies1991@icloud.com"], ["+447655570373"], [])
    nulled = pd.DataFrame({"column": ["email", "phone", "email", "phone"],
                           "original_value": ["Grace Davies <grace.davies1991@icloud.com>", "tel:07655570373",
                                              "Other <other@example.org>", "tel:07700900999"]})
    assert _nulled_contact_rows(nulled, subject, Standardization()).tolist() == [True, True, False, False]


def test_raw_export_files_inside_the_workspace_are_listed_and_warned_about(tmp_path, caplog):
    # Given a workspace whose data/raw/ holds the exports it was loaded from (as `make demo` writes them),
    # and lineage naming one of them and a file outside the workspace
    workspace = Workspace.at(tmp_path / "ws")
    raw = workspace.data / "raw"
    (raw / "truth").mkdir(parents=True)
    for name in ("customers.parquet", "orders.csv", "truth/people.parquet"):
        (raw / name).write_text("x")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x")
    files = raw_files_in_workspace(workspace, [str(raw / "customers.parquet"), str(outside), "/no/such/file.csv"])
    # Then every file inside the workspace is listed, relative to it; the file outside is its owner's
    assert files == ["data/raw/customers.parquet", "data/raw/orders.csv", "data/raw/truth/people.parquet"]
    with caplog.at_level(logging.WARNING, logger="cdp.erasure"):
        warn_about_raw_files(files, "customer C1 erased")
    assert "data/raw/orders.csv" in caplog.text and "delete them or have their owner re-export them" in caplog.text


def test_a_person_held_unresolved_is_refused_and_one_only_in_quarantine_is_found(tmp_path):
    import json

    from cdp.config import load_settings
    from features.erasure import SubjectNotFoundError, find_subject

    # Given a workspace resolved before Ann's record reached the lake, and Quentin's record in quarantine
    workspace = Workspace.at(tmp_path / "ws")
    workspace.outputs.mkdir(parents=True)
    IDENTITY_MAP.to_parquet(workspace.outputs / "identity_map.parquet")
    PROFILES.to_parquet(workspace.outputs / "profiles.parquet")
    workspace.lake_table("customers").parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"source": ["web", "crm"], "source_id": ["1", "A7"],
                  "email": ["pauljones1970@gmail.com", "ann@example.org"]}).to_parquet(workspace.lake_table("customers"))
    workspace.quarantine.mkdir(parents=True, exist_ok=True)
    record = {"source": "crm", "source_id": "Q1", "email": "quentin.q@example.com", "date_of_birth": "yesterday"}
    pd.DataFrame({"table": ["customers"], "file": ["raw.csv"], "row": [2], "columns": ["date_of_birth"],
                  "reason": ["bad date"], "record": [json.dumps(record)]}).to_parquet(
        workspace.quarantine / "customers.parquet")
    settings = load_settings()
    # When each is named, then Quentin is found as a person who is no customer, with his record and e-mail
    quentin = find_subject(workspace, settings, SubjectQuery(email="Quentin <quentin.q@example.com>"))
    assert (quentin.customer_id, quentin.records, quentin.emails) == (None, [("crm", "Q1")], ["quentin.q@example.com"])
    assert quentin.audit_identity == ("record", "crm:Q1")
    # ...and for Ann the refusal says where she is held and what to do, not "nothing held"
    with pytest.raises(SubjectNotFoundError, match=r"lake's customers table .* run `cdp resolve`, then"):
        find_subject(workspace, settings, SubjectQuery(email="ann@example.org"))
    with pytest.raises(SubjectNotFoundError, match="run `cdp resolve`"):
        find_subject(workspace, settings, SubjectQuery(source="crm", source_id="A7"))
    with pytest.raises(SubjectNotFoundError) as unknown:
        find_subject(workspace, settings, SubjectQuery(email="nobody@example.org"))
    assert unknown.value.outcome == "no such customer"
