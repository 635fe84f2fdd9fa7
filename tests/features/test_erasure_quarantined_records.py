"""A customer's second `customers` record quarantined, the orders under it loaded: identity resolution makes
that record a customer of its own (known only from its orders, no PII). Erasing the person by e-mail erases
that record's rows and that customer too (`Subject.linked_ids`, `quarantined_records_of` in
features/erasure.py); a customer holding such a record together with other records is left alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cdp.cli import app
from cdp.config import load_settings
from cdp.workspace import Workspace
from features.suppression import keyed_hash, read_salt

runner = CliRunner()
HEADER = "source,source_id,first_name,last_name,email,phone,date_of_birth,updated_at\n"
# Amy's web record is loaded; her crm record is quarantined (a bad updated_at) and names her e-mail, while
# her crm order O9 is loaded under it. Bob is someone else.
CUSTOMERS = HEADER + (
    "web,W1,Amy,Able,amy@example.com,07700 900111,1980-01-01,2026-05-01T00:00:00Z\n"
    "crm,C9,Amy,Able,Amy <AMY@example.com>,07700 900111,1980-01-01,notadate\n"
    "web,W2,Bob,Baker,bob@example.com,07700 900222,1982-01-01,2026-05-01T00:00:00Z\n")
ORDERS = ("order_id,source,source_id,ordered_at,amount\n"
          "O1,web,W1,2026-06-01T10:00:00Z,20\n"
          "O9,crm,C9,2026-06-02T10:00:00Z,30\n"
          "O2,web,W2,2026-06-03T10:00:00Z,40\n")
# ...and a login that ties crm:C9 to Bob's web record: then crm:C9 is Bob's customer's too
LINKS = "source_a,id_a,source_b,id_b\ncrm,C9,web,W2\n"
AS_OF = "2026-07-01"


def cdp(*arguments: str) -> str:
    result = runner.invoke(app, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


def write_raw(raw: Path, links: bool = False) -> Path:
    raw.mkdir()
    (raw / "customers.csv").write_text(CUSTOMERS)
    (raw / "orders.csv").write_text(ORDERS)
    if links:
        (raw / "links.csv").write_text(LINKS)
    return raw


def customer_of(workspace: Workspace, source: str, source_id: str) -> str:
    identity = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    return identity.loc[(identity["source"] == source) & (identity["source_id"] == source_id), "customer_id"].iloc[0]


def customers_in(path: Path) -> set[str]:
    frame = pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)
    return set(frame["customer_id"].astype(str))


def feature_tables(workspace: Workspace) -> list[Path]:
    return sorted((workspace.data / "features").glob("*.parquet"))


def found_online(workspace: Workspace, customer_ids: list[str]) -> list[bool]:
    from features.feature_store import get_online_features, open_feature_store

    store = open_feature_store(workspace, load_settings().features)
    return list(get_online_features(store, "churn_v1", customer_ids).found)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Workspace]:
    """Amy, Bob and crm:C9 ingested and resolved, features built and in the SQLite online store, and a
    segment export holding every customer."""
    root = tmp_path_factory.mktemp("quarantined_records")
    raw = write_raw(root / "raw")
    workspace = Workspace.at(root / "ws")
    cdp("ingest", "--raw", str(raw), "--workspace", str(workspace.root))
    cdp("resolve", "--workspace", str(workspace.root))
    cdp("features", "build", "--as-of", AS_OF, "--workspace", str(workspace.root))
    cdp("features", "apply", "--workspace", str(workspace.root))
    cdp("features", "materialize", "--workspace", str(workspace.root))
    identity = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    (workspace.outputs / "segments").mkdir()
    identity.to_csv(workspace.outputs / "segments" / "spring.csv", index=False)
    return raw, workspace


@pytest.fixture(scope="module")
def erased(built, tmp_path_factory) -> dict:
    """Given the built workspace (a copy); when Amy's erasure is previewed, her data exported, then she is
    forgotten by e-mail."""
    raw, original = built
    workspace = Workspace.at(tmp_path_factory.mktemp("erased") / "ws")
    shutil.copytree(original.root, workspace.root)
    amy, linked, bob = (customer_of(workspace, *record) for record in (("web", "W1"), ("crm", "C9"), ("web", "W2")))
    assert len({amy, linked, bob}) == 3  # crm:C9 is a customer of its own, with features online
    assert found_online(workspace, [amy, linked, bob]) == [True, True, True]
    assert all(linked in customers_in(path) for path in feature_tables(workspace))
    preview = cdp("forget", "--dry-run", "--email", "amy@example.com", "--workspace", str(workspace.root))
    subject_file = workspace.root.parent / "subject.json"
    cdp("export-subject", "--email", "amy@example.com", "--workspace", str(workspace.root), "--out", str(subject_file))
    output = cdp("forget", "--email", "Amy@Example.com", "--workspace", str(workspace.root))
    return {"raw": raw, "workspace": workspace, "amy": amy, "linked": linked, "bob": bob, "preview": preview,
            "export": json.loads(subject_file.read_text()), "output": output}


def test_the_customer_known_only_from_the_persons_quarantined_record_is_erased_with_them(erased):
    workspace, linked, bob = erased["workspace"], erased["linked"], erased["bob"]
    # Then the order under her quarantined record is gone from the lake, with her own; Bob's is kept
    assert list(pd.read_parquet(workspace.lake_table("orders"))["order_id"]) == ["O2"]
    assert pd.read_parquet(workspace.quarantine / "customers.parquet").empty
    # ...and the customer made of that record is gone from the identity map, profiles, every feature table,
    # the segment export and the online store, with her
    for path in [workspace.outputs / "identity_map.parquet", workspace.outputs / "profiles.parquet",
                 *feature_tables(workspace), workspace.outputs / "segments" / "spring.csv"]:
        assert customers_in(path) == {bob}, path
    assert found_online(workspace, [erased["amy"], linked, bob]) == [False, False, True]
    # ...the report says so, and her record of the lake and the quarantined one are both counted
    words = " ".join(erased["output"].split())
    assert f"Erased customer {erased['amy']} (with customer(s) {linked}," in words and "(2 records)" in words
    # ...and the audit log names her by the pseudonym of her own customer id, as before
    salt = read_salt(workspace, load_settings().privacy)
    lines = [json.loads(line) for line in (workspace.data / "audit" / "requests.log").read_text().splitlines()]
    done = [line for line in lines if line["event"] == "erasure" and line["outcome"] == "done"]
    assert [line["subject"] for line in done] == [keyed_hash(salt, "customer", erased["amy"])]


def test_reingesting_the_same_export_brings_neither_the_order_nor_that_customer_back(erased, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    shutil.copytree(erased["workspace"].root, workspace.root)
    # When the same raw folder is ingested again, and resolved
    cdp("ingest", "--raw", str(erased["raw"]), "--workspace", str(workspace.root))
    cdp("resolve", "--workspace", str(workspace.root))
    # Then her crm record and its order are suppressed (not loaded, not quarantined), and Bob is the only customer
    report = json.loads((workspace.reports / "ingest.json").read_text())
    assert {t["table"]: (t["suppressed"], t["quarantined"]) for t in report["tables"]} == {
        "customers": (2, 0), "orders": (2, 0)}
    assert list(pd.read_parquet(workspace.lake_table("orders"))["order_id"]) == ["O2"]
    assert set(pd.read_parquet(workspace.outputs / "identity_map.parquet")["source_id"]) == {"W2"}


def test_the_dry_run_and_the_access_export_list_the_quarantined_record_its_order_and_customer(erased):
    # Then the preview counted the order under her quarantined record
    preview = " ".join(erased["preview"].split())
    assert "2 order(s)" in preview
    # ...listed the quarantined record and the customer made of it
    assert "crm:C9 quarantined record naming their e-mail or a record of theirs" in preview
    assert f"With customer(s) {erased['linked']}, known only from those quarantined records" in preview
    # ...and the access export showed that order, the quarantined record and the customer made of it
    document = erased["export"]
    assert sorted(r["order_id"] for r in document["source_records"]["orders"]) == ["O1", "O9"]
    assert [json.loads(r["record"])["source_id"] for r in document["quarantined_records"]["customers"]] == ["C9"]
    [linked] = document["linked_customers"]
    assert linked["customer_id"] == erased["linked"] and linked["profile"]["emails"] == []
    assert [(r["source"], r["source_id"]) for r in linked["records"]] == [("crm", "C9")]
    assert linked["features"]["purchase_history"]["orders_total"] == 1
    # ...while her own features are still hers (not the linked customer's latest row)
    assert document["features"]["purchase_history"]["customer_id"] == erased["amy"]


def test_a_customer_holding_the_quarantined_record_with_other_records_is_left_alone(tmp_path):
    # Given crm:C9 (Amy's quarantined record, with its order loaded) tied by a login to Bob's web record,
    # so that one customer holds crm:C9 and web:W2
    raw = write_raw(tmp_path / "raw", links=True)
    root = str(tmp_path / "ws")
    cdp("ingest", "--raw", str(raw), "--workspace", root)
    cdp("resolve", "--workspace", root)
    workspace = Workspace.at(tmp_path / "ws")
    bob = customer_of(workspace, "web", "W2")
    assert customer_of(workspace, "crm", "C9") == bob
    # When her erasure is previewed, then neither that customer nor crm:C9 and its order are hers, and the
    # log says why, by customer id
    preview = " ".join(cdp("forget", "--dry-run", "--email", "amy@example.com", "--workspace", root).split())
    assert "1 record(s), 1 order(s)" in preview
    assert f"customer(s) {bob} hold one of their quarantined customers records together with other records" \
        in preview and "amy" not in preview.lower()
    # When she is forgotten
    cdp("forget", "--email", "amy@example.com", "--workspace", root)
    # Then Bob's customer keeps both records, its profile and both orders; the link stays
    identity = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    assert sorted(identity["source_id"]) == ["C9", "W2"] and set(identity["customer_id"]) == {bob}
    assert customers_in(workspace.outputs / "profiles.parquet") == {bob}
    assert sorted(pd.read_parquet(workspace.lake_table("orders"))["order_id"]) == ["O2", "O9"]
    assert len(pd.read_parquet(workspace.lake_table("links"))) == 1
    # ...and only the quarantined record naming her e-mail is gone (as before)
    assert pd.read_parquet(workspace.quarantine / "customers.parquet").empty
