"""A person held only in quarantine (and in lake rows of activity under their quarantined record), never
resolved into a customer: `cdp forget` erases and suppresses them, `--dry-run` lists what it would remove,
`cdp export-subject` shows it. A person in the lake's customers table not resolved yet is still refused,
with the advice to run `cdp resolve` first (docs/privacy.md, "Held but not a customer")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cdp.cli import app
from cdp.workspace import Workspace
from features.suppression import keyed_hash, read_salt, suppression_path

runner = CliRunner()
HEADER = "source,source_id,first_name,last_name,email,phone,date_of_birth,updated_at\n"
RESOLVED = HEADER + ("web,W1,Amy,Able,amy@example.com,07700 900111,1980-01-01,2026-05-01T00:00:00Z\n"
                     "crm,C2,Bob,Baker,bob@example.com,07700 900222,1982-01-01,2026-05-01T00:00:00Z\n")
# Quentin: his record is quarantined (a bad updated_at), and so is a second one without a source id that
# gives his e-mail as `Name <addr>`; one order of his is quarantined (negative amount), one loaded under his
# quarantined record. Rita, quarantined too with an order, is someone else; Una is loaded, not resolved.
LATER = HEADER + (
    "web,W777000001,Quentin,Quarantine,quentin.q@example.com,07700 900555,1980-02-02,notadate\n"
    "web,,Quentin,Q,Quentin <QUENTIN.Q@example.com>,not a phone,1980-02-02,2026-06-01T00:00:00Z\n"
    "web,W888000001,Rita,Kept,rita@example.com,07700 900888,1979-01-01,notadate\n"
    "web,W666000001,Una,Resolved,una.r@example.com,07700 900666,1981-03-03,2026-06-01T00:00:00Z\n")
LATER_ORDERS = ("order_id,source,source_id,ordered_at,amount\n"
                "O7770001,web,W777000001,2026-06-01T10:00:00Z,-5\n"
                "O7770002,web,W777000001,2026-06-02T10:00:00Z,12.5\n"
                "O8880001,web,W888000001,2026-06-01T10:00:00Z,-7\n"
                "O1110001,web,W1,2026-06-01T10:00:00Z,20\n")
QUENTIN = ("quentin", "w777000001", "900555", "o7770001", "o7770002")


def cdp(*arguments: str) -> str:
    result = runner.invoke(app, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """Amy and Bob ingested and resolved; then a later export ingested, not resolved (see LATER)."""
    first, later = tmp_path / "raw1", tmp_path / "raw2"
    first.mkdir()
    later.mkdir()
    (first / "customers.csv").write_text(RESOLVED)
    (later / "customers.csv").write_text(LATER)
    (later / "orders.csv").write_text(LATER_ORDERS)
    root = str(tmp_path / "ws")
    cdp("ingest", "--raw", str(first), "--workspace", root)
    cdp("resolve", "--workspace", root)
    cdp("ingest", "--raw", str(later), "--workspace", root)
    return Workspace.at(tmp_path / "ws")


def every_value(workspace: Workspace) -> str:
    """All text of the lake's and quarantine's Parquet files, lower-cased, column by column."""
    paths = [*workspace.quarantine.glob("*.parquet"), *(workspace.data / "lake").glob("*.parquet")]
    return "\n".join(pq.read_table(path).to_pandas().astype(str).to_csv() for path in sorted(paths)).lower()


def quarantined(workspace: Workspace, table: str) -> list[dict]:
    return [json.loads(r) for r in pd.read_parquet(workspace.quarantine / f"{table}.parquet")["record"]]


def fingerprint(workspace: Workspace) -> dict[str, str]:
    """Every file under data/ but the requests' audit log and the salt its pseudonyms need, by content."""
    return {str(p.relative_to(workspace.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workspace.data.rglob("*")) if p.is_file() and p.name not in ("requests.log", "salt")}


def requests_log(workspace: Workspace) -> list[dict]:
    return [json.loads(line) for line in (workspace.data / "audit" / "requests.log").read_text().splitlines()]


def assert_quentin_gone_and_the_others_kept(workspace: Workspace) -> None:
    values = every_value(workspace)
    assert not [text for text in QUENTIN if text in values]
    assert [r["first_name"] for r in quarantined(workspace, "customers")] == ["Rita"]
    assert [r["order_id"] for r in quarantined(workspace, "orders")] == ["O8880001"]
    assert sorted(pd.read_parquet(workspace.lake_table("customers"))["source_id"]) == ["C2", "W1", "W666000001"]
    assert list(pd.read_parquet(workspace.lake_table("orders"))["order_id"]) == ["O1110001"]


@pytest.mark.parametrize("request_for", [["--email", "Quentin.Q@Example.com"],
                                         ["--source", "WEB", "--source-id", " W777000001 "]])
def test_a_person_held_only_in_quarantine_is_erased_and_suppressed(workspace, tmp_path, request_for):
    # Given Quentin, held in quarantine (two customers records, one order) and in one lake order under his
    # quarantined record, and never a customer
    assert all(text in every_value(workspace) for text in QUENTIN)
    # When he is forgotten, by e-mail or by his source record
    output = cdp("forget", *request_for, "--workspace", str(workspace.root))
    # Then nothing of him is left in the lake or quarantine, and everyone else's rows are kept
    assert "Erased" in output
    assert_quentin_gone_and_the_others_kept(workspace)
    # ...and his record, e-mail, phone and orders are on the suppression list, as hashes
    entries = pd.read_parquet(suppression_path(workspace, workspace_privacy()))
    assert set(entries["kind"]) == {"record", "email", "phone", "order"}
    salt = read_salt(workspace, workspace_privacy())
    assert keyed_hash(salt, "record", "web:W777000001") in set(entries["hash"])
    assert keyed_hash(salt, "phone", "+447700900555") in set(entries["hash"])
    assert keyed_hash(salt, "email", "rita@example.com") not in set(entries["hash"])
    # When the same export is ingested again
    cdp("ingest", "--raw", str(tmp_path / "raw2"), "--workspace", str(workspace.root))
    # Then none of his rows is loaded or quarantined again; Rita's are quarantined again as before
    assert_quentin_gone_and_the_others_kept(workspace)
    report = json.loads((workspace.reports / "ingest.json").read_text())
    assert {t["table"]: t["suppressed"] for t in report["tables"]} == {"customers": 2, "orders": 2}


def workspace_privacy():
    from cdp.config import load_settings

    return load_settings().privacy


def test_the_erasure_of_a_quarantined_person_is_audited_without_raw_values(workspace):
    # Given Quentin, held only in quarantine
    # When he is forgotten by e-mail
    cdp("forget", "--email", "quentin.q@example.com", "--workspace", str(workspace.root))
    # Then the requests' log holds a started and a done line with one request id, named by the pseudonym of
    # his record (the keyed hash of web:W777000001, as its suppression entry), and no raw value of his
    lines = [line for line in requests_log(workspace) if line["event"] == "erasure"]
    assert [line["outcome"] for line in lines] == ["started", "done"]
    assert lines[0]["request_id"] == lines[1]["request_id"]
    salt = read_salt(workspace, workspace_privacy())
    assert {line["subject"] for line in lines} == {keyed_hash(salt, "record", "web:W777000001")}
    assert lines[1]["rows_removed"] == 4 and lines[1]["suppression_entries_added"] >= 4
    text = (workspace.data / "audit" / "requests.log").read_text().lower()
    assert not [raw for raw in (*QUENTIN, "quentin.q@example.com") if raw in text]
    # And asked again, he is known as erased
    result = runner.invoke(app, ["forget", "--email", "quentin.q@example.com", "--workspace", str(workspace.root)])
    assert result.exit_code == 1 and "erased on" in result.output


def test_a_dry_run_lists_what_would_be_removed_and_changes_nothing(workspace):
    # Given Quentin, held only in quarantine
    before = fingerprint(workspace)
    # When the erasure is previewed
    output = cdp("forget", "--source", "web", "--source-id", "W777000001", "--dry-run", "--workspace",
                 str(workspace.root))
    # Then it says where his rows are, and nothing under data/ changed (no suppression entry either)
    assert "not a customer" in output and "Nothing was changed" in output
    assert "data/quarantine/customers.parquet: 2" in output and "data/quarantine/orders.parquet: 1" in output
    assert "data/lake/orders.parquet: 1" in output
    assert fingerprint(workspace) == before


def test_an_access_request_lists_the_quarantined_rows(workspace):
    # Given Quentin, held only in quarantine
    # When he asks what is held about him
    document = json.loads(cdp("export-subject", "--email", "quentin.q@example.com", "--workspace",
                              str(workspace.root)))
    # Then his quarantined records and the lake order under his record are listed, and there is no customer
    assert document["customer_id"] is None and document["profile"] is None
    assert sorted(json.loads(r["record"])["last_name"] for r in document["quarantined_records"]["customers"]) == [
        "Q", "Quarantine"]
    assert [json.loads(r["record"])["order_id"] for r in document["quarantined_records"]["orders"]] == ["O7770001"]
    assert [r["order_id"] for r in document["source_records"]["orders"]] == ["O7770002"]
    assert "rita" not in json.dumps(document).lower()
    # And the request is audited under his pseudonym
    salt = read_salt(workspace, workspace_privacy())
    assert requests_log(workspace)[-1] == {**requests_log(workspace)[-1], "event": "access", "outcome": "done",
                                           "subject": keyed_hash(salt, "record", "web:W777000001")}


def test_a_person_loaded_but_not_resolved_is_still_refused_with_the_advice_to_resolve(workspace):
    # Given Una, in the lake's customers table but not resolved yet
    before = fingerprint(workspace)
    # When she is named
    result = runner.invoke(app, ["forget", "--email", "una.r@example.com", "--workspace", str(workspace.root)])
    # Then the request is refused, saying to run `cdp resolve` first, and nothing but the audit log changed
    assert result.exit_code == 1 and "cdp resolve" in result.output
    assert fingerprint(workspace) == before
    assert requests_log(workspace)[-1]["why"] == "held but not resolved"
