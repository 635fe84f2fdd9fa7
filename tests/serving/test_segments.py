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
    MissingFeatureSnapshotError,
    SegmentError,
    build_export,
    consents_withdrawn_since,
    contactable,
    export_segment,
    honour_later_withdrawals,
    no_channel_reasons,
    read_features_as_of,
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
        "no_contact_reason": [None, "no consented, reachable channel (email: no consent recorded; push: consent "
                              "withdrawn)", None, "contact not worth its cost (best: push, expected value -0.0010)",
                              "holdout (control group)"],
        "eligible_email": [True, False, False, False, False],
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


def test_a_contact_segment_lists_only_customers_with_an_eligible_channel_and_says_why_the_others_are_not():
    # Given scores where C2 has no consented channel, C6 is in a quiet period and C7 capped on every
    # channel, and C4 (push-eligible) lost its push consent after the scores
    scores = pd.concat([_scores(), pd.DataFrame({
        "customer_id": ["C6", "C7"], "as_of": pd.Timestamp(AS_OF), "churn_probability": [0.6, 0.6],
        "clv": [50.0, 60.0], "next_best_action": "none", "next_best_channel": None, "expected_value": 0.0,
        "win_back": False, "win_back_action": None, "holdout": False,
        "no_contact_reason": ["quiet period (email: quiet period: last e-mail within the last 2 days; push: consent "
                              "withdrawn)", "frequency cap (email: frequency cap: 3 e-mails in 7 days; push: app not "
                              "installed)"],
        "eligible_email": False, "eligible_push": False, "reasons": None})], ignore_index=True)
    pushes = pd.DataFrame({"customer_id": ["C4"], "channel": ["push"], "status": ["withdrawn"],
                           "happened_at": [pd.Timestamp(AS_OF) + pd.Timedelta(days=1)]})
    before = contactable(scores)
    scores, _ = honour_later_withdrawals(scores, consents_withdrawn_since(pushes, pd.Timestamp(AS_OF)))
    lost = set(scores.loc[before & ~contactable(scores), "customer_id"])
    everyone = SegmentDefinition(where="clv > 0")
    features = pd.concat([_features(), pd.DataFrame({"customer_id": ["C6", "C7"], "orders_365d": [1, 1]})])
    # When a contact segment matching everyone is selected
    selected = select_segment(scores, features, everyone)
    # Then only customers some channel is eligible for are listed (C5 is the holdout)
    assert selected["customer_id"].tolist() == ["C1", "C3"]
    # ...and the others are counted by the policy's reason, without its per-channel details
    matched = select_segment(scores, features, everyone.model_copy(update={"contact": False}))
    left_out = matched[~matched["customer_id"].isin(selected["customer_id"]) & ~matched["holdout"]]
    assert no_channel_reasons(left_out, lost) == {
        "no consented, reachable channel": 1, "quiet period": 1, "frequency cap": 1,
        "consent withdrawn since the scores' as_of": 1}
    # ...while a suppression list (contact: false) holds them all
    assert len(matched) == 7
    # Scores that cannot say who may be contacted are refused for a contact list
    with pytest.raises(SegmentError, match="no eligible_<channel> columns"):
        select_segment(scores.drop(columns=["eligible_email", "eligible_push"]), features, everyone, name="all")


def test_a_contact_list_gives_each_contact_point_only_where_its_channel_is_eligible():
    # Given C1 (e-mail eligible) and C3 (push and SMS), both with an address and a phone on file
    selected = _scores().iloc[[0, 2]].assign(eligible_sms=[False, True])
    identity_map = pd.DataFrame({"customer_id": ["C1", "C3"], "source": ["web", "crm"], "source_id": ["W1", "K3"]})
    profiles = pd.DataFrame({"customer_id": ["C1", "C3"], "email": ["one@example.com", "three@example.com"],
                             "phone": ["+447700900001", "+447700900003"]})
    # When exported as a contact list, and as a suppression list
    contact = build_export(selected, identity_map, profiles, "test", contact=True, campaign_id="spring")
    suppression = build_export(selected, identity_map, profiles, "test", contact=False)
    # Then the contact list holds C3's address and C1's phone nowhere, and says which channels each may get
    assert contact["email"].tolist() == ["one@example.com", None]
    assert contact["phone"].tolist() == [None, "+447700900003"]
    assert contact["eligible_channels"].tolist() == ["email", "push,sms"]
    # ...and scores written before win-back timing was a column export C1's win-back as today's
    assert contact["win_back_timing"].tolist() == ["today", None]
    assert (contact["campaign_id"] == "spring").all()
    # ...and a suppression list keeps every address and phone, to match the customers it suppresses
    assert suppression["email"].tolist() == ["one@example.com", "three@example.com"]
    assert suppression["phone"].tolist() == ["+447700900001", "+447700900003"]


def test_customers_without_a_feature_row_never_match_an_expression_over_features():
    # Given features for every customer but C2 (e.g. a snapshot that does not hold it)
    features = _features()[_features()["customer_id"] != "C2"]
    # When a list of customers without orders is selected
    selected = select_segment(_scores(), features, SegmentDefinition(where="orders_365d IS NULL OR orders_365d = 0",
                                                                     contact=False))
    # Then C2 is not in it: its features are unknown, not empty
    assert selected.empty


def test_features_are_read_from_the_scores_snapshot_and_a_missing_snapshot_is_an_error(tmp_path):
    # Given feature tables holding snapshots a month before and a day after the scores' as_of, not at it
    # (as after a later `cdp score --as-of` started them over)
    workspace = Workspace.at(tmp_path)
    (workspace.data / "features").mkdir(parents=True)
    as_of = pd.Timestamp(AS_OF)
    table = pd.DataFrame({"customer_id": ["C1", "C2", "C1", "C2"],
                          "event_timestamp": [as_of - pd.Timedelta(days=30)] * 2 + [as_of + pd.Timedelta(days=1)] * 2,
                          "created_timestamp": as_of, "orders_365d": [1, 2, 3, 4]})
    path = workspace.data / "features" / "purchase_history.parquet"
    table.to_parquet(path)
    # When the features at the scores' as_of are read: an error naming the date and what to run,
    # never the older snapshot's values nor empty ones
    with pytest.raises(MissingFeatureSnapshotError, match=r"no feature snapshot as of 2026-07-01T00:00:00\+00:00.*"
                                                          r"cdp score --as-of 2026-07-01"):
        read_features_as_of(workspace, as_of, ["orders_365d"])
    # ...and with the snapshot there, its values (not the later snapshot's)
    pd.concat([table, table.iloc[:2].assign(event_timestamp=as_of, orders_365d=[7, 8])]).to_parquet(path)
    features = read_features_as_of(workspace, as_of, ["orders_365d"]).sort_values("customer_id")
    assert features["orders_365d"].tolist() == [7, 8]
    # ...and an expression naming no feature reads nothing
    assert read_features_as_of(workspace, as_of, ["clv"]).columns.tolist() == ["customer_id"]


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
    by_customer = scores.set_index("customer_id")
    first = export.drop_duplicates("customer_id").set_index("customer_id")
    for contact_point, channel in (("email", "email"), ("phone", "sms")):
        on_file = profiles.loc[first.index, contact_point]
        if segment == "do_not_contact":  # a suppression list keeps every one, to match whom it suppresses
            pd.testing.assert_series_equal(first[contact_point], on_file, check_names=False)
        else:  # a contact list only those its channel may use
            allowed = by_customer.loc[first.index, f"eligible_{channel}"]
            pd.testing.assert_series_equal(first[contact_point], on_file.where(allowed.to_numpy(), None),
                                           check_names=False)
    # and the action is the one batch scoring recommended, for the campaign the scores were made for
    assert (first["next_best_action"] == by_customer.loc[first.index, "next_best_action"]).all()
    assert summary.campaign_id == "default" and (export["campaign_id"] == "default").all()
    assert summary.scores == str(workspace.outputs / "scores.parquet")
    holdout = set(scores.loc[scores["holdout"], "customer_id"])
    reachable = set(scores.loc[scores.filter(like="eligible_").any(axis=1), "customer_id"])
    if segment == "do_not_contact":
        assert holdout <= customers  # the control group is on the suppression list
        assert first.loc[list(holdout), "holdout"].all()
    else:
        assert not customers & holdout
        assert not first["holdout"].any()
        # nobody is listed for a contact without a channel they consented to and can be reached on today
        assert customers <= reachable
        assert first["eligible_channels"].notna().all()
    if segment == "win_back_today":
        assert customers == set(scores.loc[scores["win_back"], "customer_id"]) and customers
        assert (first["win_back_timing"] == "today").all()  # a win-back to send, not one waiting
    if segment == "push_reachable":
        assert customers == set(scores.loc[scores["eligible_push"] & ~scores["holdout"], "customer_id"])


def test_high_clv_at_risk_follows_the_configured_thresholds(served, scored, tmp_path):
    workspace, scores = scored
    settings = load_settings(training=served.settings.training.model_dump(),
                             segments={"parameters": {"high_clv_percentile": 0.5, "at_risk_churn_probability": 0.3}})
    summary = export_segment(workspace, settings, "high_clv_at_risk", "parquet", out=tmp_path / "h.parquet")
    rank = scores["clv"].rank(method="min").sub(1).div(len(scores) - 1)
    matched = scores[(rank >= 0.5) & (scores["churn_probability"] >= 0.3) & ~scores["holdout"]]
    reachable = matched.filter(like="eligible_").any(axis=1)
    wanted = matched[reachable]
    assert summary.customers == len(wanted) > 0
    assert summary.no_channel_excluded == (~reachable).sum() == sum(summary.no_channel_reasons.values())
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
    reachable = scores.filter(like="eligible_").any(axis=1)
    wanted = set(scores.loc[scores["customer_id"].isin(frequent) & (scores["clv"] > 0) & ~scores["holdout"] & reachable,
                            "customer_id"])
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


@pytest.mark.parametrize("lake_changed", [False, True])
def test_export_refuses_when_a_later_run_dropped_the_scores_feature_snapshot(served, scored, tmp_path, lake_changed):
    workspace, scores = scored
    # Given a copy of the scored workspace whose feature tables lost the scores' snapshot (as when a
    # later `cdp score --as-of` for another day started the tables over), its lake as scored or changed since
    copy = Workspace.at(tmp_path / "ws")
    shutil.copytree(workspace.root, copy.root, ignore=shutil.ignore_patterns("mlruns", "feast"))
    tables = sorted((copy.data / "features").glob("*.parquet"))
    for table in tables:
        frame = pd.read_parquet(table)
        frame[pd.to_datetime(frame["event_timestamp"], utc=True) != pd.Timestamp(AS_OF)].to_parquet(table, index=False)
    if lake_changed:
        orders = copy.lake_table("orders")
        pd.read_parquet(orders).iloc[1:].to_parquet(orders, index=False)
    before = {table: table.stat().st_mtime_ns for table in tables}
    settings = load_settings(training=served.settings.training.model_dump(), segments={"definitions": {
        "no_recent_orders": {"where": "orders_365d = 0 OR orders_365d IS NULL", "contact": False}}})
    # When a segment over a feature is exported: refused, saying to score again, with no table rewritten and
    # no list written (every feature reading NULL listed everyone; a snapshot rebuilt now could describe
    # other data than the scores did, the verification test showed)
    with pytest.raises(SegmentError, match="cdp score --as-of 2026-07-01"):
        export_segment(copy, settings, "no_recent_orders", "parquet", out=tmp_path / "none.parquet")
    assert {table: table.stat().st_mtime_ns for table in tables} == before
    assert not (tmp_path / "none.parquet").exists()


@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_a_segment_matching_nobody_writes_an_empty_list_with_its_header(served, scored, tmp_path, output_format):
    workspace, _ = scored
    settings = load_settings(training=served.settings.training.model_dump(),
                             segments={"definitions": {"empty_seg": {"where": "clv < 0"}}})
    summary = export_segment(workspace, settings, "empty_seg", output_format, out=tmp_path / f"empty.{output_format}")
    assert summary.customers == summary.rows == 0
    if output_format == "csv":
        assert (tmp_path / "empty.csv").read_text().strip() == ",".join(EXPORT_COLUMNS)
    else:
        import pyarrow.parquet as pq

        schema = pq.read_schema(tmp_path / "empty.parquet")
        assert schema.names == list(EXPORT_COLUMNS)
        assert str(schema.field("email").type) == "string"


def test_cli_export_reads_the_scores_given_and_names_their_campaign(scored, tmp_path):
    from typer.testing import CliRunner

    from cdp.cli import app

    workspace, scores = scored
    # Given scores of a second campaign written elsewhere with `cdp score --out`, with their summary
    spring = tmp_path / "spring.parquet"
    shutil.copy(workspace.outputs / "scores.parquet", spring)
    summary = json.loads((workspace.outputs / "scores.json").read_text())
    (tmp_path / "spring.json").write_text(json.dumps({**summary, "campaign_id": "spring", "output": str(spring)}))
    # When a segment is exported from them
    out = tmp_path / "push.csv"
    result = CliRunner().invoke(app, ["export", "--segment", "push_reachable", "--scores", str(spring), "--out", str(out),
                                      "--workspace", str(workspace.root)])
    # Then the list and its summary name the scores, their as_of and their campaign
    assert result.exit_code == 0, result.output
    assert "campaign spring" in " ".join(result.output.split())
    written = json.loads((tmp_path / "push.json").read_text())
    assert (written["scores"], written["campaign_id"], written["as_of"]) == (str(spring), "spring", summary["as_of"])
    assert set(pd.read_csv(out)["campaign_id"]) == {"spring"}
    # ...and scores without their summary are exported with the campaign unknown, said so
    (tmp_path / "spring.json").unlink()
    result = CliRunner().invoke(app, ["export", "--segment", "push_reachable", "--scores", str(spring), "--out", str(out),
                                      "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "campaign unknown" in " ".join(result.output.split())
    assert json.loads((tmp_path / "push.json").read_text())["campaign_id"] is None

