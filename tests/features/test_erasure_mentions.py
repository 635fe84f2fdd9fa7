"""An erased person's e-mail or phone in another person's custom attribute (`backup_contact`): the value
goes, the row stays (features/suppression.py `blank_suppressed_mentions`, used by `cdp forget`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from cdp.cli import app
from cdp.workspace import Workspace
from features.suppression import (
    Standardization,
    SuppressionList,
    blank_suppressed_mentions,
    blank_suppressed_mentions_in_records,
    identifier_hashes,
    suppressed_mentions,
)

runner = CliRunner()
SALT = b"m" * 32
SUPPRESSION = SuppressionList(
    SALT, frozenset(identifier_hashes(SALT, {"email": ["deborah_morgan@hotmail.com"], "phone": ["+447700900461"]})),
    Standardization())
CUSTOMERS = """source,source_id,first_name,last_name,email,phone,updated_at,backup_contact,loyalty_tier
crm,DEB1,Deborah,Morgan,deborah_morgan@hotmail.com,07700 900461,2026-05-01,,gold
crm,PAUL1,Paul,Other,paul.other@example.com,,2026-06-01,Deborah_Morgan+news@Hotmail.com,silver
web,ANN1,Ann,Else,ann@example.com,,2026-06-01,+44 7700 900461,gold
web,BOB1,Bob,Keep,bob@example.com,,2026-06-01,bob.partner@example.com,bronze
web,,Zed,Broken,zed@example.com,,2026-06-01,call deborah_morgan@hotmail.com,gold
"""


def test_a_mention_is_found_in_any_spelling_of_the_e_mail_or_phone():
    # Given custom attribute values: the erased e-mail with case and a +tag, within a sentence, the erased
    # phone written nationally and internationally, and other people's contacts
    values = pd.Series(["Deborah_Morgan+news@Hotmail.com", "call deborah_morgan@hotmail.com.", "07700 900461",
                        "+44 (0)7700 900461", None, "paul@example.com", "07700 900462", "gold", "1234567"])
    # When they are matched against the suppression list
    hit = suppressed_mentions(values, SUPPRESSION)
    # Then exactly the erased person's e-mail and phone are found
    assert hit.tolist() == [True, True, True, True, False, False, False, False, False]


def test_blanking_nulls_the_value_and_keeps_the_row_and_every_other_column():
    # Given a lake batch: two rows name the erased person in `backup_contact`, one in its own `email`
    batch = pa.table({"source_id": ["P1", "A1", "B1"], "email": ["deborah_morgan@hotmail.com", "a@x.com", "b@x.com"],
                      "backup_contact": ["deborah_morgan@hotmail.com", "07700 900461", "b2@x.com"],
                      "points": pa.array([1, 2, 3], pa.int64())})
    # When the custom attributes (and a column that is not there) are blanked
    blanked, count = blank_suppressed_mentions(batch, ["backup_contact", "points", "absent"], SUPPRESSION)
    # Then only those two values are null; the rows, the schema and the columns not named are as they were
    assert count == 2 and blanked.schema == batch.schema
    assert blanked.column("backup_contact").to_pylist() == [None, None, "b2@x.com"]
    assert blanked.drop_columns(["backup_contact"]).equals(batch.drop_columns(["backup_contact"]))


def test_a_quarantined_record_loses_the_mention_but_not_its_contract_columns_or_a_raw_line():
    # Given quarantined records as read: a customers row naming the person in a custom column and in its own
    # e-mail (its row is `suppressed_rows`' to judge), and a malformed line kept as raw text
    records = pd.Series([
        json.dumps({"source": "crm", "source_id": "", "email": "deborah_morgan@hotmail.com",
                    "backup_contact": "deborah_morgan@hotmail.com", "tier": "gold"}),
        json.dumps({"raw_text": "crm,X,deborah_morgan@hotmail.com"}),
        None,
    ])
    # When their mentions are blanked
    blanked, count = blank_suppressed_mentions_in_records(records, "customers", SUPPRESSION)
    # Then the custom value is null, everything else is kept as it was
    assert count == 1
    assert json.loads(blanked[0]) == {"source": "crm", "source_id": "", "email": "deborah_morgan@hotmail.com",
                                      "backup_contact": None, "tier": "gold"}
    assert blanked[1:].tolist() == records[1:].tolist()


def test_a_nested_value_kept_in_a_quarantined_record_is_blanked_when_any_text_in_it_names_the_person():
    # Given a quarantined orders record whose ignored nested column (kept as JSON) lists the person deep inside
    records = pd.Series([json.dumps({"order_id": "", "source": "web", "source_id": "W1",
                                     "contacts": [{"kind": "backup", "email": "Deborah_Morgan@hotmail.com"}],
                                     "notes": {"list": ["someone@example.org"]}})])
    # When its mentions are blanked
    blanked, count = blank_suppressed_mentions_in_records(records, "orders", SUPPRESSION)
    # Then the nested value naming her is null, the other nested value is kept
    assert count == 1
    assert json.loads(blanked[0])["contacts"] is None and json.loads(blanked[0])["notes"] == {"list": ["someone@example.org"]}


def workspace_mentioning_the_person(tmp_path: Path) -> Workspace:
    """Deborah (DEB1) and three others ingested and resolved: Paul and Ann name her e-mail and phone in
    `backup_contact`, Bob names someone else; a row without a source id (quarantined) names her too; and a
    profile feature table carrying `attribute_backup_contact`."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "customers.csv").write_text(CUSTOMERS)
    root = tmp_path / "ws"
    for command in (["ingest", "--raw", str(raw)], ["resolve"]):
        result = runner.invoke(app, [*command, "--workspace", str(root)])
        assert result.exit_code == 0, result.output
    workspace = Workspace.at(root)
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet")
    (workspace.data / "features").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"customer_id": profiles["customer_id"], "event_timestamp": pd.Timestamp("2026-07-01", tz="UTC"),
                  "attribute_backup_contact": profiles["backup_contact"]}
                 ).to_parquet(workspace.data / "features" / "profile.parquet", index=False)
    return workspace


def every_value(workspace: Workspace) -> str:
    """All text of every Parquet file of the workspace, lower-cased, column by column."""
    texts = [pq.read_table(path).to_pandas().astype(str).to_csv() for path in workspace.data.rglob("*.parquet")]
    return "\n".join(texts).lower()


def test_forgetting_a_person_blanks_their_contacts_in_other_peoples_custom_attributes(tmp_path):
    # Given a workspace where other customers give Deborah's e-mail and phone as their backup contact
    workspace = workspace_mentioning_the_person(tmp_path)
    assert "deborah_morgan" in every_value(workspace) and "900461" in every_value(workspace)
    # When Deborah is forgotten
    result = runner.invoke(app, ["forget", "--email", "deborah_morgan@hotmail.com", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    # Then her e-mail and phone are nowhere: not in the lake, quarantine, profiles or feature tables
    assert "deborah_morgan" not in every_value(workspace) and "900461" not in every_value(workspace)
    # ...while the others' rows stay, each value that named someone else included
    lake = pd.read_parquet(workspace.lake_table("customers")).set_index("source_id")
    assert sorted(lake.index) == ["ANN1", "BOB1", "PAUL1"]
    assert lake["backup_contact"].to_dict() == {"PAUL1": None, "ANN1": None, "BOB1": "bob.partner@example.com"}
    assert lake["loyalty_tier"].to_dict() == {"PAUL1": "silver", "ANN1": "gold", "BOB1": "bronze"}
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet")
    assert sorted(profiles["backup_contact"].dropna()) == ["bob.partner@example.com"]
    quarantined = pd.read_parquet(workspace.quarantine / "customers.parquet")
    assert [json.loads(r)["first_name"] for r in quarantined["record"]] == ["Zed"]


def test_the_erasure_report_counts_the_blanked_values_per_store(tmp_path):
    from cdp.config import load_settings
    from features.erasure import SubjectQuery, forget

    # Given the same workspace
    workspace = workspace_mentioning_the_person(tmp_path)
    # When Deborah is forgotten
    _, report = forget(workspace, load_settings(), SubjectQuery(email="deborah_morgan@hotmail.com"))
    # Then the report says where values were blanked, apart from the rows removed
    assert report.values_blanked == {"data/lake/customers.parquet": 2, "data/quarantine/customers.parquet": 1,
                                     "data/features/profile.parquet": 2, "data/outputs/profiles.parquet": 2}
    assert report.rows_removed["data/lake/customers.parquet"] == 1


def test_reingesting_after_the_erasure_blanks_the_mention_and_keeps_the_new_record(tmp_path):
    # Given Deborah was forgotten
    workspace = workspace_mentioning_the_person(tmp_path)
    result = runner.invoke(app, ["forget", "--email", "deborah_morgan@hotmail.com", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    # When a later export brings her own record again, and a new record that names her e-mail as a contact
    later = tmp_path / "later"
    later.mkdir()
    (later / "customers.csv").write_text(
        "source,source_id,first_name,last_name,email,phone,updated_at,backup_contact\n"
        "crm,NEW1,Debbie,Morgan,Deborah_Morgan+news@Hotmail.com,,2026-06-01,\n"
        "crm,NEW2,D,Morgan,,,2026-06-01,deborah_morgan@hotmail.com\n"
        "crm,,Q,Broken,,,2026-06-01,07700 900461\n")
    result = runner.invoke(app, ["ingest", "--raw", str(later), "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    # Then her own record is suppressed, the new record is loaded without her e-mail, and the quarantined
    # one without her phone: the lake holds neither again
    lake = pd.read_parquet(workspace.lake_table("customers")).set_index("source_id")
    assert "NEW1" not in lake.index and lake.loc["NEW2", "backup_contact"] is None
    assert "deborah_morgan" not in every_value(workspace) and "900461" not in every_value(workspace)
