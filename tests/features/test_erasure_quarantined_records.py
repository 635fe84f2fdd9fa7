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


# Jo's only customers record is quarantined (a bad updated_at) while her order under it is loaded: identity
# resolution makes web:W9 a customer known only from that order, with no e-mail or phone in its profile. Bob
# is someone else; in the second case he has Jo's phone too (a household's landline).
JO = "web,W9,Jo,Quarantine,Jo.Quarantine@Example.com,07700900999,1990-01-01,not-a-date\n"
JO_AGAIN = "app,A9,Jo,Quarantine,Jo.Quarantine@Example.com,07700900999,1990-01-01,2026-01-01\n"
BOB = "web,W2,Bob,Baker,bob@example.com,{phone},1982-01-01,2026-05-01T00:00:00Z\n"
JO_ORDERS = ("order_id,source,source_id,ordered_at,amount\n"
             "O99,web,W9,2026-02-01,20\n"
             "O2,web,W2,2026-02-03,40\n")


def jo_forgotten(tmp_path: Path, bob_phone: str, more_customers: str = "", more_orders: str = "") -> dict:
    """Given Jo and Bob ingested and resolved; when Jo's customer is previewed, exported and forgotten by
    customer id, then Jo's row of a later export (another source, now valid) is ingested."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "customers.csv").write_text(HEADER + JO + BOB.format(phone=bob_phone) + more_customers)
    (raw / "orders.csv").write_text(JO_ORDERS + more_orders)
    workspace = Workspace.at(tmp_path / "ws")
    root = str(workspace.root)
    cdp("ingest", "--raw", str(raw), "--workspace", root)
    cdp("resolve", "--workspace", root)
    jo = customer_of(workspace, "web", "W9")
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet")
    assert list(profiles.loc[profiles["customer_id"] == jo, "emails"].iloc[0]) == []
    preview = " ".join(cdp("forget", "--dry-run", "--customer-id", jo, "--workspace", root).split())
    subject_file = tmp_path / "subject.json"
    cdp("export-subject", "--customer-id", jo, "--workspace", root, "--out", str(subject_file))
    output = cdp("forget", "--customer-id", jo, "--workspace", root)
    later = tmp_path / "later"
    later.mkdir()
    (later / "customers.csv").write_text(HEADER + JO_AGAIN)
    ingested = " ".join(cdp("ingest", "--raw", str(later), "--workspace", root).split())
    report = json.loads((workspace.reports / "ingest.json").read_text())
    return {"workspace": workspace, "jo": jo, "preview": preview, "export": json.loads(subject_file.read_text()),
            "output": output, "ingested": ingested,
            "customers": next(t for t in report["tables"] if t["table"] == "customers")}


def suppressed_hashes(workspace: Workspace) -> set[str]:
    from features.suppression import suppression_path

    return set(pd.read_parquet(suppression_path(workspace, load_settings().privacy))["hash"])


def test_the_contacts_of_a_customers_own_quarantined_record_are_suppressed_with_them(tmp_path):
    erasure = jo_forgotten(tmp_path, bob_phone="07700 900222")
    workspace = erasure["workspace"]
    # Then the preview counted the e-mail and phone of her quarantined record, to be suppressed
    assert "would suppress 1 e-mail(s) and 1 phone(s) (shared with other customers, kept: 0)" in erasure["preview"]
    # ...the access export showed them as hers, with the quarantined record giving them
    assert erasure["export"]["quarantined_contacts"] == {"emails": ["jo.quarantine@example.com"],
                                                         "phones": ["+447700900999"]}
    assert [json.loads(r["record"])["source_id"] for r in erasure["export"]["quarantined_records"]["customers"]] \
        == ["W9"]
    # ...both are on the suppression list, as keyed hashes
    salt = read_salt(workspace, load_settings().privacy)
    hashes = suppressed_hashes(workspace)
    assert {keyed_hash(salt, "email", "jo.quarantine@example.com"), keyed_hash(salt, "phone", "+447700900999")} \
        <= hashes
    # ...and her row of the later export, under a record never seen, is suppressed: not loaded, not quarantined
    assert (erasure["customers"]["loaded"], erasure["customers"]["suppressed"],
            erasure["customers"]["quarantined"]) == (0, 1, 0)
    assert "customers: 1 suppressed" in erasure["ingested"]
    assert sorted(pd.read_parquet(workspace.lake_table("customers"))["source_id"]) == ["W2"]
    assert list(pd.read_parquet(workspace.lake_table("orders"))["order_id"]) == ["O2"]


def test_a_phone_of_her_quarantined_record_that_another_customer_has_is_kept(tmp_path):
    # Given Bob with Jo's phone
    erasure = jo_forgotten(tmp_path, bob_phone="07700 900999")
    workspace = erasure["workspace"]
    # Then her e-mail is to be suppressed and the phone is kept, counted as shared
    assert "would suppress 1 e-mail(s) and 0 phone(s) (shared with other customers, kept: 1)" in erasure["preview"]
    assert "identifiers shared with other customers kept for them: 1" in " ".join(erasure["output"].split())
    salt = read_salt(workspace, load_settings().privacy)
    hashes = suppressed_hashes(workspace)
    assert keyed_hash(salt, "email", "jo.quarantine@example.com") in hashes
    assert keyed_hash(salt, "phone", "+447700900999") not in hashes
    # ...Bob keeps his row and phone; her later row is still suppressed, by her e-mail
    assert list(pd.read_parquet(workspace.lake_table("customers"))["source_id"]) == ["W2"]
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet")
    assert [list(p) for p in profiles["phones"]] == [["+447700900999"]]
    assert (erasure["customers"]["loaded"], erasure["customers"]["suppressed"]) == (0, 1)


def test_her_other_quarantined_record_giving_that_e_mail_and_its_customer_are_erased_too(tmp_path):
    # Given a second quarantined record of Jo's (crm:K9), known to give only the e-mail of her web:W9 record
    # (not her profile's, which has none), with an order loaded under it: a customer of its own
    erasure = jo_forgotten(tmp_path, bob_phone="07700 900222",
                           more_customers="crm,K9,Jo,Q,jo.quarantine@example.com,,1990-01-01,never\n",
                           more_orders="O98,crm,K9,2026-02-02,25\n")
    workspace = erasure["workspace"]
    # Then it is hers, joined by that e-mail as identity resolution would: previewed, erased with its order
    # and its customer, and suppressed (as are her e-mail and phone)
    assert "would suppress 1 e-mail(s) and 1 phone(s)" in erasure["preview"]
    assert "crm:K9 quarantined record naming their e-mail or a record of theirs" in erasure["preview"]
    assert "2 order(s)" in erasure["preview"]
    assert set(pd.read_parquet(workspace.outputs / "identity_map.parquet")["source_id"]) == {"W2"}
    assert list(pd.read_parquet(workspace.lake_table("orders"))["order_id"]) == ["O2"]
    assert pd.read_parquet(workspace.quarantine / "customers.parquet").empty
    salt = read_salt(workspace, load_settings().privacy)
    assert keyed_hash(salt, "record", "crm:K9") in suppressed_hashes(workspace)
