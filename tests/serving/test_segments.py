"""Segment export: selection over scores and features on small frames, the export's rows and ids,
clear errors, and the built-in segments exported from a batch-scored copy of the served workspace."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cdp.config import SegmentDefinition, load_settings
from cdp.workspace import Workspace
from features.feature_store import PUSH_LOG
from serving.segments import (
    EXPORT_COLUMNS,
    SegmentError,
    build_export,
    consents_withdrawn_since,
    export_segment,
    honour_later_withdrawals,
    referenced_names,
    select_segment,
)
from tests.conftest import AS_OF


def _scores() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["C1", "C2", "C3", "C4", "C5"],
        "as_of": pd.Timestamp(AS_OF),
        "churn_probability": [0.9, 0.8, 0.1, 0.7, 0.95],
        "clv": [500.0, 20.0, 300.0, 400.0, 900.0],
        "next_best_action": ["email", "none", "push", "none", "none"],
        "next_best_channel": ["email", None, "push", None, None],
        "expected_value": [1.5, 0.0, 0.4, 0.0, 0.0],
        "win_back": [True, False, False, False, False],
        "win_back_action": ["email:10pct", None, None, None, None],
        "holdout": [False, False, False, False, True],
        "no_contact_reason": [None, "no consent", None, "no consent", "holdout (control group)"],
        "eligible_push": [False, False, True, True, True],
        "reasons": ["no order for 200 days", None, "opened 3 e-mails", None, None],
    })


def _features() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C4", "C5"], "orders_365d": [4, 0, 2, 1, 6]})


def test_a_consent_withdrawn_after_the_scores_takes_the_customer_off_that_channel():
    # Given scores as of AS_OF, and pushes since: C1 withdrew e-mail (its next-best and win-back channel),
    # C3 withdrew push then granted it again, C4 withdrew push; one withdrawal came before the scores
    later = pd.Timestamp(AS_OF) + pd.Timedelta(days=3)
    pushes = pd.DataFrame({  # as the feature build reads the push log (features.feature_tables.pushed_consents)
        "customer_id": ["C1", "C3", "C3", "C4", "C2"],
        "channel": ["email", "push", "push", "push", "sms"],
        "status": ["withdrawn", "withdrawn", "granted", "withdrawn", "withdrawn"],
        "happened_at": [later, later, later + pd.Timedelta(hours=1), later, pd.Timestamp(AS_OF) - pd.Timedelta(days=1)]})
    # When the export reads them
    withdrawn = consents_withdrawn_since(pushes, pd.Timestamp(AS_OF))
    scores, changed = honour_later_withdrawals(_scores(), withdrawn)
    # Then only the withdrawals still standing after the scores count
    assert withdrawn == {"email": {"C1"}, "push": {"C4"}}
    by_customer = scores.set_index("customer_id")
    # ...C1 is contacted on no channel (neither the next-best e-mail nor the e-mail win-back), saying why
    assert by_customer.loc["C1", "next_best_action"] == "none" and by_customer.loc["C1", "next_best_channel"] is None
    assert not by_customer.loc["C1", "win_back"] and by_customer.loc["C1", "win_back_action"] is None
    assert "withdrawn since the scores" in by_customer.loc["C1", "no_contact_reason"]
    # ...C4 is no longer push-reachable, and the push segment drops it; C3 (granted again) stays
    assert not by_customer.loc["C4", "eligible_push"] and by_customer.loc["C3", "eligible_push"]
    assert select_segment(scores, _features(), SegmentDefinition(where="eligible_push"))["customer_id"].tolist() == ["C3"]
    assert changed == 1  # C1's decision; C4's was already no contact


def test_a_segment_name_is_never_a_path(served, scored):
    from cdp.config import ConfigError

    workspace, _ = scored
    # Given a segment defined under a name that is a path: refused when the configuration loads
    with pytest.raises((ConfigError, ValueError), match="letters, digits"):
        load_settings(segments={"definitions": {"../../evil": {"where": "true"}}})
    # ...and asked for by such a name (so never defined), refused before anything is read or written
    with pytest.raises(SegmentError, match="unknown segment"):
        export_segment(workspace, served.settings, "../../evil")
    assert not (workspace.data / "evil.csv").exists()


def test_select_segment_filters_on_scores_and_features_together():
    # given a segment over a score and a feature
    definition = SegmentDefinition(where="churn_probability >= 0.5 AND orders_365d >= 1")
    # when
    selected = select_segment(_scores(), _features(), definition)
    # then only customers meeting both, in scores' order, with score columns only
    assert selected["customer_id"].tolist() == ["C1", "C4"]
    assert list(selected.columns) == list(_scores().columns)


def test_contact_segments_never_hold_holdout_customers_but_suppression_lists_do():
    anyone_push = SegmentDefinition(where="eligible_push")
    assert select_segment(_scores(), _features(), anyone_push)["customer_id"].tolist() == ["C3", "C4"]
    suppression = SegmentDefinition(where="holdout OR (next_best_action = 'none' AND NOT win_back)", contact=False)
    assert select_segment(_scores(), _features(), suppression)["customer_id"].tolist() == ["C2", "C4", "C5"]


def test_parameters_and_clv_percentile():
    # given the built-in high-CLV-at-risk expression with its thresholds
    definition = SegmentDefinition(
        where="clv_percentile >= $high_clv_percentile AND churn_probability >= $at_risk_churn_probability")
    parameters = {"high_clv_percentile": 0.5, "at_risk_churn_probability": 0.5}
    # when (clv ranks: C2 0, C3 .25, C4 .5, C1 .75, C5 1 - but C5 is in the holdout)
    selected = select_segment(_scores(), _features(), definition, parameters)
    assert selected["customer_id"].tolist() == ["C1", "C4"]
    with pytest.raises(SegmentError, match=r"parameter\(s\) \$at_risk_churn_probability not defined"):
        select_segment(_scores(), _features(), definition, {"high_clv_percentile": 0.5}, name="risky")


def test_an_unknown_column_names_the_segment_and_the_column():
    definition = SegmentDefinition(where="churn_probability > 0.5 AND lifetime_orders > 3")
    with pytest.raises(SegmentError, match=r"segment 'loyal': column 'lifetime_orders' is neither a score"):
        select_segment(_scores(), _features(), definition, name="loyal")
    with pytest.raises(SegmentError, match=r"segment 'broken': invalid where expression"):
        select_segment(_scores(), _features(), SegmentDefinition(where="clv >>> 3"), name="broken")


def test_configured_parameters_and_segments_add_to_the_built_ins():
    settings = load_settings(segments={"parameters": {"high_clv_percentile": 0.9, "frequent_orders": 3},
                                       "definitions": {"mine": {"where": "clv > 1"}}})
    assert settings.segments.parameters == {"high_clv_percentile": 0.9, "at_risk_churn_probability": 0.5,
                                            "frequent_orders": 3}
    assert set(settings.segments.definitions) == {"win_back_today", "high_clv_at_risk", "push_reachable",
                                                  "do_not_contact", "mine"}
    assert not settings.segments.definitions["do_not_contact"].contact


def test_referenced_names_skip_literals_and_parameters():
    names = referenced_names("next_best_channel = 'push' AND \"Odd Name\" > $limit AND coalesce(win_back, false)")
    assert {"next_best_channel", "odd name", "win_back", "coalesce"} <= names
    assert "push" not in names and "limit" not in names


def test_build_export_has_one_row_per_source_record_with_ids_email_and_action():
    # given two selected customers, one with two source records, one with none
    selected = _scores().iloc[[0, 2]]
    identity_map = pd.DataFrame({"customer_id": ["C1", "C1", "C2"], "source": ["web", "crm", "app"],
                                 "source_id": ["W1", "K9", "A2"]})
    profiles = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "email": ["one@example.com", "two@example.com", None]})
    # when
    export = build_export(selected, identity_map, profiles, "test")
    # then
    assert list(export.columns) == list(EXPORT_COLUMNS)
    assert export[["customer_id", "source", "source_id"]].values.tolist() == [
        ["C1", "crm", "K9"], ["C1", "web", "W1"], ["C3", None, None]]
    assert export["email"].tolist()[:2] == ["one@example.com"] * 2
    assert export["next_best_action"].tolist() == ["email", "email", "push"]
    assert (export["segment"] == "test").all()


# --- integration: batch scoring into a copy of the served workspace ----------------------------------

@pytest.fixture(scope="module")
def scored(served, tmp_path_factory):
    from features.feature_store import apply_feature_definitions
    from serving.batch import score_customer_base

    root = tmp_path_factory.mktemp("segments") / "ws"
    # without the pushes other tests sent since (a withdrawal after the scores would change the exports)
    shutil.copytree(served.workspace.root, root, ignore=shutil.ignore_patterns(PUSH_LOG))
    workspace = Workspace.at(root)
    apply_feature_definitions(workspace, served.settings.features)  # the copied registry names the original's tables
    scores, _ = score_customer_base(workspace, served.settings, AS_OF)
    return workspace, scores


@pytest.mark.parametrize("segment", ["win_back_today", "high_clv_at_risk", "push_reachable", "do_not_contact"])
def test_built_in_segments_export_every_record_of_their_customers(served, scored, segment, tmp_path):
    workspace, scores = scored
    # when
    summary = export_segment(workspace, served.settings, segment, "parquet", out=tmp_path / f"{segment}.parquet")
    export = pd.read_parquet(summary.path)
    # then every source record of each exported customer is there, with the customer's primary e-mail
    identity_map = pd.read_parquet(workspace.outputs / "identity_map.parquet")
    profiles = pd.read_parquet(workspace.outputs / "profiles.parquet").set_index("customer_id")
    customers = set(export["customer_id"])
    assert summary.customers == len(customers) and summary.rows == len(export)
    expected = identity_map[identity_map["customer_id"].isin(customers)]
    assert set(zip(export["source"], export["source_id"], strict=True)) == set(
        zip(expected["source"], expected["source_id"], strict=True))
    emails = export.drop_duplicates("customer_id").set_index("customer_id")["email"]
    pd.testing.assert_series_equal(emails, profiles.loc[emails.index, "email"], check_names=False)
    # and the action is the one batch scoring recommended
    by_customer = scores.set_index("customer_id")
    first = export.drop_duplicates("customer_id").set_index("customer_id")
    assert (first["next_best_action"] == by_customer.loc[first.index, "next_best_action"]).all()
    holdout = set(scores.loc[scores["holdout"], "customer_id"])
    if segment == "do_not_contact":
        assert holdout <= customers  # the control group is on the suppression list
        assert first.loc[list(holdout), "holdout"].all()
    else:
        assert not customers & holdout
        assert not first["holdout"].any()
    if segment == "win_back_today":
        assert customers == set(scores.loc[scores["win_back"], "customer_id"]) and customers
    if segment == "push_reachable":
        assert customers == set(scores.loc[scores["eligible_push"] & ~scores["holdout"], "customer_id"])


def test_high_clv_at_risk_follows_the_configured_thresholds(served, scored, tmp_path):
    workspace, scores = scored
    settings = load_settings(training=served.settings.training.model_dump(),
                             segments={"parameters": {"high_clv_percentile": 0.5, "at_risk_churn_probability": 0.3}})
    summary = export_segment(workspace, settings, "high_clv_at_risk", "parquet", out=tmp_path / "h.parquet")
    rank = scores["clv"].rank(method="min").sub(1).div(len(scores) - 1)
    wanted = scores[(rank >= 0.5) & (scores["churn_probability"] >= 0.3) & ~scores["holdout"]]
    assert summary.customers == len(wanted) > 0
    assert set(pd.read_parquet(summary.path)["customer_id"]) == set(wanted["customer_id"])


def test_a_user_defined_segment_over_features_exports_csv(served, scored):
    workspace, scores = scored
    # given a segment in the config over a score and a feature that is not in the scores file
    settings = load_settings(training=served.settings.training.model_dump(), segments={"definitions": {
        "frequent_buyers": {"where": "orders_365d >= 3 AND clv > 0", "description": "test"}}})
    # when
    summary = export_segment(workspace, settings, "frequent_buyers", "csv")
    # then the list is the customers whose feature as of the scores' as_of says so
    features = pd.read_parquet(workspace.data / "features" / "purchase_history.parquet",
                               columns=["customer_id", "event_timestamp", "orders_365d"])
    at_scoring = features[pd.to_datetime(features["event_timestamp"], utc=True) == pd.Timestamp(AS_OF)]
    frequent = set(at_scoring.loc[at_scoring["orders_365d"] >= 3, "customer_id"])
    wanted = set(scores.loc[scores["customer_id"].isin(frequent) & (scores["clv"] > 0) & ~scores["holdout"], "customer_id"])
    export = pd.read_csv(summary.path)
    assert summary.path == str(workspace.outputs / "segments" / "frequent_buyers.csv")
    assert set(export["customer_id"]) == wanted and wanted
    # and the summary beside it holds counts, not personal data
    written = (workspace.outputs / "segments" / "frequent_buyers.json").read_text()
    assert json.loads(written)["customers"] == len(wanted)
    assert "@" not in written


def test_clear_errors(served, scored, tmp_path):
    workspace, _ = scored
    with pytest.raises(SegmentError, match="unknown segment 'vip'; known segments: do_not_contact, high_clv_at_risk"):
        export_segment(workspace, served.settings, "vip")
    with pytest.raises(SegmentError, match=r"no scores yet: .* run `cdp score"):
        export_segment(Workspace.at(tmp_path), served.settings, "win_back_today")
    settings = load_settings(segments={"definitions": {"typo": {"where": "churn_probabilty > 0.5"}}})
    with pytest.raises(SegmentError, match="segment 'typo': column 'churn_probabilty'"):
        export_segment(workspace, settings, "typo")


def test_cli_export_prints_the_summary_and_never_the_emails(scored, tmp_path):
    from typer.testing import CliRunner

    from cdp.cli import app

    workspace, _ = scored
    runner = CliRunner()
    out = tmp_path / "push.parquet"
    result = runner.invoke(app, ["export", "--segment", "push_reachable", "--format", "parquet", "--out", str(out),
                                 "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "Segment push_reachable" in result.output and "customers" in result.output and out.exists()
    assert "@" not in result.output
    unknown = runner.invoke(app, ["export", "--segment", "vip", "--workspace", str(workspace.root)])
    assert unknown.exit_code == 1 and "known segments" in unknown.output


def test_segments_refuse_an_older_parquet_when_the_latest_scoring_wrote_csv(tmp_path):
    from serving.segments import SegmentError, export_segment
    from training.drift import latest_scores_as_of

    # Given scores.parquet of an older run, then a `cdp score --format csv` that wrote scores.csv and
    # the summary both share
    workspace = Workspace.at(tmp_path)
    workspace.outputs.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["C1"], "as_of": ["2026-06-01T00:00:00+00:00"]}).to_parquet(
        workspace.outputs / "scores.parquet")
    pd.DataFrame({"customer_id": ["C1"], "as_of": ["2026-06-15T00:00:00+00:00"]}).to_csv(
        workspace.outputs / "scores.csv", index=False)
    (workspace.outputs / "scores.json").write_text(json.dumps({"output": "/anywhere/scores.csv", "output_format": "csv"}))
    # When / then: the latest scores are the CSV; drift compares as of its date; segments refuse the stale Parquet
    assert workspace.latest_scores == workspace.outputs / "scores.csv"
    assert latest_scores_as_of(workspace) == pd.Timestamp("2026-06-15", tz="UTC")
    with pytest.raises(SegmentError, match="without --format csv"):
        export_segment(workspace, load_settings(), "push_reachable", "csv", tmp_path / "push.csv")
    # ...and with no summary, scores.parquet is the latest
    (workspace.outputs / "scores.json").unlink()
    assert workspace.latest_scores == workspace.outputs / "scores.parquet"


def test_scores_written_by_spark_as_a_directory_of_parts_are_read_as_one_table(tmp_path):
    from serving.segments import read_scores

    # Given scores as `cdp score --engine spark` writes them: a directory of part files
    folder = tmp_path / "scores.parquet"
    folder.mkdir()
    frame = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "as_of": pd.Timestamp("2026-07-01", tz="UTC"),
                          "next_best_action": ["email", "none", "sms"], "clv": [1.0, 2.0, 3.0], "unused": [0, 0, 0]})
    frame.iloc[:2].to_parquet(folder / "part-00000.parquet")
    frame.iloc[2:].to_parquet(folder / "part-00001.parquet")
    # When a segment reads them
    scores = read_scores(folder, ["clv"])
    # Then every part is read, with only the columns needed
    assert sorted(scores["customer_id"]) == ["C1", "C2", "C3"] and "unused" not in scores.columns
