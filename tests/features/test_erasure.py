"""Erasure and access for real: a copy of the served workspace, batch-scored, with features in the
SQLite and a real Redis online store; one person with several records is forgotten, then every file
under the workspace and the whole Redis keyspace are searched for them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from typer.testing import CliRunner

from cdp.cli import app
from cdp.config import FeatureSettings
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.erasure import SubjectNotFoundError, SubjectQuery, forget
from features.identity.standardize import standardize_phone
from features.ingest import ingest_directory
from features.suppression import keyed_hash, read_salt, suppression_path
from serving.audit import AuditLog, recommendation_entries
from serving.segments import build_export, default_export_path, write_export
from tests.conftest import AS_OF
from tests.features.test_feature_store import redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
runner = CliRunner()
LINEAGE = ("_source_file", "_ingested_at", "_source_row")


def pick_person(workspace: Workspace) -> pd.Series:
    """A customer with several records, an e-mail and a phone nobody else has, and orders."""
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet")
    emails = profiles.explode("emails")["emails"].dropna().value_counts()
    phones = profiles.explode("phones")["phones"].dropna().value_counts()
    orders = pd.read_parquet(workspace.lake_table("orders"), columns=["source", "source_id"])
    identity = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    buyers = set(orders.merge(identity, on=["source", "source_id"])["customer_id"])
    for _, profile in profiles[profiles["source_records"] >= 3].iterrows():
        if (len(profile["emails"]) and len(profile["phones"]) and profile["customer_id"] in buyers
                and all(emails[e] == 1 for e in profile["emails"]) and all(phones[p] == 1 for p in profile["phones"])):
            return profile
    raise AssertionError("no customer with several records and contacts of their own in the fixture")


def raw_table(raw: Path, table: str) -> pd.DataFrame:
    path = next(raw.glob(f"{table}.*"))
    return pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path).astype(str)


def person_identifiers(workspace: Workspace, raw: Path, customer_id: str) -> dict[str, set[str]]:
    """Everything that names the person: customer id, source ids, order ids, e-mails and phones both
    as the raw files wrote them and standardized."""
    identity = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    records = identity[identity["customer_id"] == customer_id]
    keys = set(zip(records["source"], records["source_id"], strict=True))
    profile = pd.read_parquet(workspace.outputs / "profiles.parquet").set_index("customer_id").loc[customer_id]
    customers = raw_table(raw, "customers")
    mine = customers[[(s.strip().lower(), i.strip()) in keys for s, i in zip(customers["source"], customers["source_id"], strict=True)]]
    orders = pd.read_parquet(workspace.lake_table("orders"), columns=["order_id", "source", "source_id"])
    order_ids = {o for o, s, i in zip(orders["order_id"], orders["source"], orders["source_id"], strict=True) if (s, i) in keys}
    raw_contacts = {v for column in ("email", "phone") for v in mine[column].dropna() if v not in ("", "nan", "None")}
    return {
        "customer": {customer_id},
        "source_ids": {i for _, i in keys},
        "orders": order_ids,
        "contacts": {*profile["emails"], *profile["phones"], *raw_contacts,
                     *(standardize_phone(p, "GB") or p for p in profile["phones"])},
    }


def search_workspace(root: Path, needles: set[str]) -> dict[str, set[str]]:
    """Every file under the root: Parquet decoded column by column, everything else as bytes."""
    lowered = {n.lower() for n in needles if n}
    pattern = re.compile("|".join(re.escape(n) for n in sorted(lowered, key=len, reverse=True)))
    found: dict[str, set[str]] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        hits = set(pattern.findall(path.read_bytes().decode("latin-1").lower()))
        if path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
            for column in frame.columns:
                values = frame[column]
                if values.dtype == object:
                    values = values.map(lambda v: json.dumps(v.tolist()) if isinstance(v, np.ndarray) else str(v))
                text = "\n".join(values.astype(str).str.lower())
                hits |= set(pattern.findall(text))
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def redis_client(connection: str) -> redis.Redis:
    host, port = connection.split(":")
    return redis.Redis(host=host, port=int(port))


def search_redis(connection: str, needles: set[str]) -> list[bytes]:
    client = redis_client(connection)
    hits = []
    for key in client.scan_iter(count=1000):
        value = client.get(key) if client.type(key) == b"string" else json.dumps(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in client.hgetall(key).items()}).encode()
        blob = (key + b" " + (value or b"")).decode("latin-1").lower()
        if any(n.lower() in blob for n in needles):
            hits.append(key)
    return hits


def lake_rows(workspace: Workspace, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(workspace.lake_table(table))
    frame = frame[[c for c in frame.columns if c not in LINEAGE]]
    return frame.sort_values(list(CONTRACTS[table].primary_key)).reset_index(drop=True)


def quarantine_a_malformed_line(workspace: Workspace, settings, directory: Path, customer_id: str, email: str) -> str:
    """An orders line with one field too many, naming one of the person's records and their e-mail:
    ingested, it is kept whole (raw text) in quarantine."""
    identity = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    record = identity[identity["customer_id"] == customer_id].iloc[0]
    line = f"O-MALFORMED-1,{record['source']},{record['source_id']},2025-01-01T10:00:00Z,10.5,web,1,0,{email}"
    (directory / "orders.csv").write_text(",".join(CONTRACTS["orders"].column_names) + "\n" + line + "\n")
    report = ingest_directory(directory, workspace, settings.ingest)
    assert [(t.table, t.quarantined) for t in report.tables] == [("orders", 1)]
    return line


def finished_process_id() -> int:
    """The id of a process that has exited, as a writer killed mid-write has."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def erasure(served, redis_server, tmp_path_factory):  # noqa: F811
    """Given a copy of the served workspace, scored, in SQLite and Redis, with a person in the audit
    log and in a segment export; when they are exported and then forgotten (by e-mail)."""
    from features.feature_store import materialize_online
    from serving.batch import score_customer_base

    workspace = Workspace.at(tmp_path_factory.mktemp("erasure") / "ws")
    # without the audit log and the push log: service tests that ran before wrote theirs into the shared workspace
    shutil.copytree(served.workspace.root, workspace.root, ignore=shutil.ignore_patterns("audit", "pushed_signals.jsonl"))
    features = FeatureSettings(online_store="redis", redis_connection_string=redis_server)
    settings = served.settings.model_copy(update={"features": features})
    score_customer_base(workspace, settings, AS_OF)
    materialize_online(workspace, features, AS_OF)
    person = pick_person(workspace)
    customer_id = person["customer_id"]
    identifiers = person_identifiers(workspace, served.raw, customer_id)
    extra = tmp_path_factory.mktemp("extra")
    malformed_line = quarantine_a_malformed_line(workspace, settings, extra, customer_id, person["emails"][0])
    scores = pd.read_parquet(workspace.outputs / "scores.parquet")
    selected = pd.concat([scores.head(50), scores[scores["customer_id"] == customer_id]])
    segment = build_export(selected, pd.read_parquet(workspace.outputs / "identity_map.parquet"),
                           pd.read_parquet(workspace.outputs / "profiles.parquet"), "test_segment")
    for output_format in ("csv", "parquet"):  # where `cdp export` writes by default
        write_export(segment, default_export_path(workspace, "test_segment", output_format), output_format)
    from features.feature_store import open_feature_store, push_realtime_signals

    # a consent withdrawal pushed for them (the push log keeps it): erasure must take it too
    push_realtime_signals(open_feature_store(workspace, features),
                          pd.DataFrame({"customer_id": [customer_id], "latest_sms_consent": [0]}))
    audit = AuditLog.open(workspace, settings.privacy)
    audit.append(recommendation_entries([{"customer_id": customer_id, "found": True, "next_best_action": "email",
                                          "model_versions": {"churn": "1"}}], "spring", audit.pseudonym, "t"))
    audit.close()
    before = {table: lake_rows(workspace, table) for table in CONTRACTS if workspace.lake_table(table).exists()}
    redis_keys_before = redis_client(redis_server).dbsize()
    config = workspace.root / "cdp.yaml"
    config.write_text(f"features:\n  online_store: redis\n  redis_connection_string: '{redis_server}'\n")
    # a partial copy of the lake's customers left by a writer killed mid-rewrite, holding them too
    abandoned = workspace.data / "lake" / f".customers.parquet.{finished_process_id()}.tmp"
    abandoned.write_text(f"{person['emails'][0]},{customer_id}\n")
    # ...and the staged copy of the customers table an ingest killed mid-run (kill -9) left
    staged = workspace.data / "lake" / ".staging" / "customers-killed" / "valid.parquet"
    staged.parent.mkdir(parents=True)
    staged.write_text(f"{person['emails'][0]},{customer_id}\n")
    preview = runner.invoke(app, ["forget", "--dry-run", "--email", person["emails"][0], "--workspace", str(workspace.root)])
    assert preview.exit_code == 0 and abandoned.exists(), preview.output
    subject_file = tmp_path_factory.mktemp("access") / "subject.json"
    access = runner.invoke(app, ["export-subject", "--email", person["emails"][0].upper(), "--workspace",
                                 str(workspace.root), "--out", str(subject_file)])
    assert access.exit_code == 0, access.output
    exported = json.loads(subject_file.read_text())
    assert [e["fields"] for e in exported["pushed_signals"]] == [{"latest_sms_consent": 0}]
    result = runner.invoke(app, ["forget", "--email", person["emails"][0], "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["forget", "--email", person["emails"][0], "--workspace", str(workspace.root)])
    return {"workspace": workspace, "settings": settings, "customer_id": customer_id, "identifiers": identifiers,
            "preview": preview.output, "again": again, "subject_file": subject_file, "abandoned": abandoned,
            "staged": staged,
            "before": before, "redis": redis_server, "redis_keys_before": redis_keys_before, "raw": served.raw,
            "export": exported, "person": person, "output": result.output, "malformed_line": malformed_line,
            "malformed_file": extra / "orders.csv"}


def test_nothing_of_the_person_is_left_in_any_file_but_the_suppression_hash(erasure):
    workspace, identifiers = erasure["workspace"], erasure["identifiers"]
    needles = set().union(*identifiers.values())
    # Then no file under the workspace names them: not the lake, quarantine, features, outputs, the
    # export, the SQLite store, reports, MLflow or the audit log
    assert search_workspace(workspace.root, needles) == {}
    # and their keyed hash is in the suppression list (and, as their pseudonym, in the audit log) only
    salt = read_salt(workspace, erasure["settings"].privacy)
    pseudonym = keyed_hash(salt, "customer", erasure["customer_id"])
    holders = set(search_workspace(workspace.root, {pseudonym}))
    suppression = str(suppression_path(workspace, erasure["settings"].privacy).relative_to(workspace.root))
    assert {suppression, "data/audit/requests.log"} <= holders <= {suppression, "data/audit/requests.log",
                                                                   "data/audit/audit.log"}
    kinds = set(pq.read_table(suppression_path(workspace, erasure["settings"].privacy)).column("kind").to_pylist())
    assert kinds == {"customer", "record", "email", "phone", "order"}


def test_the_scoring_summary_counts_what_the_scores_file_holds_after_erasure(erasure):
    # Then the summary `cdp status` reads agrees with the rewritten scores file
    workspace = erasure["workspace"]
    scores = pd.read_parquet(workspace.outputs / "scores.parquet")
    summary = json.loads((workspace.outputs / "scores.json").read_text())
    assert summary["customers"] == len(scores) and erasure["customer_id"] not in set(scores["customer_id"])
    assert summary["win_back_customers"] == int(scores["win_back"].fillna(False).astype(bool).sum())
    assert summary["next_best_actions"] == scores["next_best_action"].astype(str).value_counts().to_dict()
    assert summary["customers_without_churn_score"] == int(scores["churn_probability"].isna().sum())


def test_redis_holds_no_key_or_value_of_the_person(erasure):
    needles = set().union(*erasure["identifiers"].values())
    assert search_redis(erasure["redis"], needles) == []
    # while everyone else's keys are still there
    assert 0 < redis_client(erasure["redis"]).dbsize() < erasure["redis_keys_before"]


def rows_of_the_person(table: pd.DataFrame, identifiers: dict) -> pd.Series:
    """Which rows of a lake table (as before erasure) were the erased person's."""
    mine = pd.Series(False, index=table.index)
    for column in ("source_id", "id_a", "id_b"):
        if column in table:
            mine |= table[column].isin(identifiers["source_ids"])
    if "order_id" in table:
        mine |= table["order_id"].isin(identifiers["orders"])
    return mine


def test_everyone_elses_lake_rows_are_unchanged(erasure):
    workspace, identifiers = erasure["workspace"], erasure["identifiers"]
    for table, before in erasure["before"].items():
        after = lake_rows(workspace, table)
        mine = rows_of_the_person(before, identifiers)
        assert mine.any() or table not in ("customers", "orders"), table
        pd.testing.assert_frame_equal(after, before[~mine].reset_index(drop=True), obj=table)


def test_reingesting_the_old_files_does_not_bring_the_person_back(erasure):
    workspace, identifiers = erasure["workspace"], erasure["identifiers"]
    # When the original raw files are ingested again
    report = ingest_directory(erasure["raw"], workspace, erasure["settings"].ingest)
    by_table = {t.table: t for t in report.tables}
    # and the file with the malformed line that named them
    extra = ingest_directory(Path(erasure["malformed_file"]).parent, workspace, erasure["settings"].ingest)
    assert [(t.table, t.read, t.suppressed, t.quarantined) for t in extra.tables] == [("orders", 1, 1, 0)]
    # Then their rows are counted as suppressed, the accounts balance, and the lake is as after erasure
    assert by_table["customers"].suppressed >= 2 and by_table["orders"].suppressed >= 1
    assert all(t.loaded + t.quarantined + t.suppressed == t.read for t in report.tables)
    needles = set().union(*identifiers.values()) - identifiers["customer"]
    found = search_workspace(workspace.data / "lake", needles) | search_workspace(workspace.quarantine, needles)
    assert found == {}
    for table, before in erasure["before"].items():
        after = lake_rows(workspace, table)
        mine = rows_of_the_person(before, identifiers)
        pd.testing.assert_frame_equal(after, before[~mine].reset_index(drop=True), obj=table)


def test_the_access_export_holds_profile_records_links_features_scores_and_recommendations(erasure):
    document, person = erasure["export"], erasure["person"]
    assert document["customer_id"] == person["customer_id"]
    assert document["profile"]["emails"] == list(person["emails"])
    records = {(r["source"], r["source_id"]) for r in document["identity"]["records"]}
    assert len(records) == person["source_records"] and all("matched_by" in r for r in document["identity"]["records"])
    assert {(r["source"], r["source_id"]) for r in document["source_records"]["customers"]} <= records
    assert document["source_records"]["orders"] and {"purchase_history", "reachability"} <= set(document["features"])
    assert document["features"]["purchase_history"]["customer_id"] == person["customer_id"]
    assert [s["customer_id"] for s in document["scores"]] == [person["customer_id"]]
    # ...their rows of every other output: the segment export sent to campaign tools, validation predictions
    segments = {k: v for k, v in document["other_outputs"].items() if k.startswith("data/outputs/segments/test_segment")}
    assert sorted(segments) == ["data/outputs/segments/test_segment.csv", "data/outputs/segments/test_segment.parquet"]
    assert all(rows and rows[0]["customer_id"] == person["customer_id"] for rows in segments.values())
    # ...but not the joins refused, which name other people; and the file is readable by its owner only
    assert "refused" not in document["identity"]
    assert erasure["subject_file"].stat().st_mode & 0o777 == 0o600
    # and the malformed line that names them, kept in quarantine as read
    assert erasure["malformed_line"] in [json.loads(r["record"]).get("raw_text") for r in
                                         document["quarantined_records"]["orders"]]
    served = document["recommendations_served"]
    assert [(e["event"], e["action"], e["campaign_id"]) for e in served] == [("recommend", "email", "spring")]


def test_erasure_and_access_requests_are_in_the_audit_log_without_raw_ids(erasure):
    lines = (erasure["workspace"].root / "data/audit/requests.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    # the access, the erasure when it started and when it was done, and the repeated request, refused
    assert [(e["event"], e.get("outcome")) for e in entries[-4:]] == [
        ("access", "done"), ("erasure", "started"), ("erasure", "done"), ("erasure", "refused")]
    assert entries[-3]["subject"] == entries[-2]["subject"] and entries[-1]["subject"] is None
    assert entries[-1]["why"] == "already erased" and entries[-2]["abandoned_files_removed"] == 2
    assert erasure["customer_id"] not in "".join(lines)
    assert not any(word in "".join(lines) for word in erasure["person"]["emails"])


def test_a_dry_run_lists_the_records_and_a_repeated_request_says_when_the_person_was_erased(erasure):
    preview = " ".join(erasure["preview"].split())
    assert f"Would erase customer {erasure['customer_id']}: {erasure['person']['source_records']} record(s)" in preview
    assert "Nothing was changed (--dry-run)" in preview
    again, words = erasure["again"], " ".join(erasure["again"].output.split())
    assert again.exit_code == 1 and "that e-mail was erased on" in words and "nothing was changed" in words


def test_a_partial_table_copy_left_by_a_killed_writer_is_deleted_by_the_erasure(erasure):
    assert not erasure["abandoned"].exists()
    assert not erasure["staged"].exists() and not erasure["staged"].parent.exists()


def test_an_unknown_person_is_refused_and_nothing_changes(served, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    shutil.copytree(served.workspace.root, workspace.root)
    audit, privacy = workspace.root / "data" / "audit", workspace.root / "data" / "privacy"

    def untouched(path: Path) -> bool:  # the audit log gains a line; its pseudonyms' salt may be created
        return path.is_file() and audit not in path.parents and privacy not in path.parents

    stamps = {p: p.stat().st_mtime_ns for p in workspace.root.rglob("*") if untouched(p)}
    with pytest.raises(SubjectNotFoundError, match="no customer has that e-mail"):
        forget(workspace, served.settings, SubjectQuery(email="nobody-at-all@example.org"))
    result = runner.invoke(app, ["forget", "--customer-id", "C999999999", "--workspace", str(workspace.root)])
    assert result.exit_code == 1 and "no customer 'C999999999'" in result.output
    assert {p: p.stat().st_mtime_ns for p in workspace.root.rglob("*") if untouched(p)} == stamps
    assert not suppression_path(workspace, served.settings.privacy).exists()
    # ...and the refused request is on record, naming nobody
    last = json.loads((audit / "requests.log").read_text().splitlines()[-1])
    assert (last["event"], last["subject"], last["outcome"], last["why"]) == ("erasure", None, "refused", "no such customer")


def test_ids_retired_by_a_merge_lead_to_the_person_and_are_forgotten_with_them(tmp_path):
    from features.erasure import Subject, find_customer, forget_former_ids
    from features.suppression import Standardization

    # Given C9 was merged into C1 by an earlier resolution, and C8 into someone else; C7 was merged
    # into C1 too, before C1 split again (C7's person may be in either part)
    identity_map = pd.DataFrame({"source": ["web"], "source_id": ["1"], "customer_id": ["C1"]})
    workspace = Workspace.at(tmp_path)
    workspace.outputs.mkdir(parents=True)
    state = workspace.outputs / "identity_state.json"
    state.write_text(json.dumps({"next_sequence": 10, "merged_into": {"C9": "C1", "C8": "C2"},
                                 "merged_then_split": {"C7": "C1"}}))
    # When a request names the retired id, then it names C1
    history = json.loads(state.read_text())
    merged, split = history["merged_into"], history["merged_then_split"]
    assert find_customer(identity_map, pd.DataFrame(), SubjectQuery(customer_id="C9"), Standardization(),
                         merged, split) == "C1"
    # ...but the id of a merge since undone names no one, rather than the part that kept C1
    with pytest.raises(SubjectNotFoundError, match="later run split") as refused:
        find_customer(identity_map, pd.DataFrame(), SubjectQuery(customer_id="C7"), Standardization(), merged, split)
    assert "C1" not in refused.value.outcome and "C1" not in str(refused.value)
    # When C1 (formerly also C9) is forgotten, then the merge history no longer names either id
    assert forget_former_ids(workspace, Subject("C1", [("web", "1")], [], [], [], former_ids=["C9"])) == 2
    assert json.loads(state.read_text()) == {"next_sequence": 10, "merged_into": {"C8": "C2"}, "merged_then_split": {}}


def test_the_push_log_survives_a_torn_line_and_is_rewritten_under_the_push_lock(tmp_path, monkeypatch):
    import contextlib

    from features import feature_store
    from features.erasure import Subject, erase_from_push_log, pushed_signals_of
    from features.feature_store import append_push_log, push_log_entries, push_log_path

    # Given a push log whose last line a crash tore, then a push appended after it
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    now = pd.Timestamp("2026-11-24 10:00", tz="UTC")
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C1"], "latest_email_consent": [0]}), now)
    with open(push_log_path(workspace), "a") as log_file:
        log_file.write('{"customer_id": "C2", "pushed_at": "2026')
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C3", "C1"], "latest_sms_consent": ["1", 0],
                                                   "last_visit_epoch_seconds": [5, 6]}), now)
    # Then every whole line reads back (consents only, as 0 or 1), the torn one is skipped and counted
    entries, unreadable = push_log_entries(workspace)
    assert unreadable == 1
    assert [(e["customer_id"], e["fields"]) for e in entries] == [
        ("C1", {"latest_email_consent": 0}), ("C3", {"latest_sms_consent": 1}), ("C1", {"latest_sms_consent": 0})]
    # When C1 is erased: under the lock pushes hold, their lines go, the others (and C2's torn one) stay
    held = []

    @contextlib.contextmanager
    def recording_lock(space):
        held.append(space.root)
        yield

    monkeypatch.setattr(feature_store, "push_log_lock", recording_lock)
    subject = Subject("C1", [], [], [], [])
    assert [e["fields"] for e in pushed_signals_of(workspace, subject)] == [
        {"latest_email_consent": 0}, {"latest_sms_consent": 0}]
    assert erase_from_push_log(workspace, subject) == {"data/feast/pushed_signals.jsonl": 2}
    assert held == [workspace.root]
    text = push_log_path(workspace).read_text()
    assert '"C1"' not in text and '"C3"' in text and '"C2"' in text


def test_erasure_takes_signals_pushed_under_an_id_whose_customer_split_since_and_access_leaves_them_out(tmp_path):
    from features.erasure import Subject, erase_from_push_log, pushed_signals_of
    from features.feature_store import append_push_log, push_log_path

    # Given a withdrawal pushed under C7, an id a merge retired into C1 before C1 split again (C7's person
    # may be either part), and one pushed under C1 itself
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    workspace.outputs.mkdir(parents=True)
    (workspace.outputs / "identity_state.json").write_text(json.dumps(
        {"next_sequence": 10, "merged_into": {}, "merged_then_split": {"C7": "C1"}}))
    now = pd.Timestamp("2026-11-24 10:00", tz="UTC")
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C7", "C1", "C3"],
                                                   "latest_email_consent": [0, 0, 1]}), now)
    # ...and one pushed for C1 while C7 was merged into it, sent under C7
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C1"], "latest_sms_consent": [1],
                                                   "sent_as": [["C7"]]}), now)
    subject = Subject("C1", [], [], [], [])
    # When C1's data is exported, then neither of C7's lines is in it (they may be another person's)
    assert [(e["customer_id"], e["fields"]) for e in pushed_signals_of(workspace, subject)] == [
        ("C1", {"latest_email_consent": 0})]
    # When C1 is erased, then C7's lines go too (they applied to C1 only, which is gone)
    assert erase_from_push_log(workspace, subject) == {"data/feast/pushed_signals.jsonl": 3}
    text = push_log_path(workspace).read_text()
    assert '"C7"' not in text and '"C1"' not in text and '"C3"' in text
