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
