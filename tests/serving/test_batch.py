"""Batch scoring with the shared policy, and the policy's value against the oracle."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import AS_OF

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scored(served):
    from serving.batch import score_customer_base

    scores, summary = score_customer_base(served.workspace, served.settings, AS_OF)
    return served, scores, summary


def test_every_customer_gets_scores_and_a_decision(scored):
    served, scores, summary = scored
    assert len(scores) == summary.customers > 1000
    for column in ("churn_probability", "clv", "conversion_none", "next_best_action", "next_best_channel",
                   "expected_value", "win_back", "win_back_action", "holdout", "reasons"):
        assert column in scores, column
    assert sum(summary.next_best_actions.values()) == len(scores)
    on_disk = pd.read_parquet(served.workspace.outputs / "scores.parquet")
    pd.testing.assert_frame_equal(on_disk.drop(columns="as_of"), scores.drop(columns="as_of"), check_dtype=False)


def test_only_the_churn_models_population_gets_a_churn_probability(scored):
    served, scores, summary = scored
    # Given: each customer's recency at the scoring time
    history = pd.read_parquet(served.workspace.data / "features" / "purchase_history.parquet")
    history = history[pd.to_datetime(history["event_timestamp"], utc=True) == pd.Timestamp(AS_OF)]
    joined = scores.merge(history[["customer_id", "days_since_last_order"]], on="customer_id", how="left")
    outside = ~(joined["days_since_last_order"] <= served.settings.training.churn_active_days)
    assert outside.any() and (~outside).any(), "the base should hold both kinds"
    # Then: no probability outside, one inside; the summary counts and averages accordingly
    assert joined.loc[outside, "churn_probability"].isna().all()
    assert joined.loc[~outside, "churn_probability"].between(0, 1).all()
    assert summary.customers_without_churn_score == int(outside.sum())
    assert summary.mean_churn_probability == pytest.approx(joined.loc[~outside, "churn_probability"].mean())
    # and the reasons written for such a customer say why there is no score
    explained = joined[outside & joined["reasons"].notna()]
    assert len(explained) and explained["reasons"].str.startswith("no churn score").all()


def test_no_channel_is_recommended_without_consent_in_the_whole_base(scored):
    served, scores, _ = scored
    features = pd.read_parquet(served.workspace.data / "features" / "reachability.parquet")
    features = features[pd.to_datetime(features["event_timestamp"], utc=True) == pd.Timestamp(AS_OF)]
    joined = scores.merge(features, on="customer_id", how="left")
    contacted = joined[joined["next_best_channel"].notna()]
    assert len(contacted) > 0, "nobody contacted: the check proves nothing"
    for channel, rows in contacted.groupby("next_best_channel"):
        assert (rows[f"{channel}_consent"] == 1).all(), channel  # opt_in: a recorded grant


def test_the_oracle_policy_is_the_best_and_ours_is_valued(scored):
    from serving.evaluation import evaluate_policy

    served, scores, _ = scored
    engagement = pd.read_parquet(served.workspace.data / "features" / "engagement.parquet")
    engagement = engagement[pd.to_datetime(engagement["event_timestamp"], utc=True) == pd.Timestamp(AS_OF)]
    result = evaluate_policy(scores, engagement, pd.read_parquet(served.workspace.outputs / "identity_map.parquet"),
                             served.raw / "truth", served.settings.policy, 7)
    profits = {name: values["incremental_profit_per_1000"] for name, values in result["policies"].items()}
    assert profits["oracle_best"] == max(profits.values())
    assert profits["oracle_best"] > 0
    assert result["share_of_oracle_profit"] is not None
    random_channel = profits["random_eligible_channel"]
    assert result["ratio_to_random_eligible_channel"] == (profits["our_policy"] / random_channel if random_channel > 0 else None)


def test_chunked_csv_output_holds_the_same_decisions_with_its_summary_beside_it(scored, tmp_path):
    from serving.batch import score_to_file

    served, scores, summary = scored
    progress: list[tuple[int, int]] = []
    # Given the same base, scored in chunks of 300 customers into a CSV file
    out = tmp_path / "nightly.csv"
    chunked = score_to_file(served.workspace, served.settings, AS_OF, out=out, output_format="csv", chunk_rows=300,
                            on_progress=lambda done, total: progress.append((done, total)))
    # Then the rows, scores and decisions equal the one-chunk Parquet run, and the summary sits beside it
    written = pd.read_csv(out)
    assert len(written) == summary.customers == chunked.customers
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    assert progress[-1] == (summary.customers, summary.customers) and len(progress) == -(-summary.customers // 300)
    merged = scores.merge(written, on="customer_id", suffixes=("", "_csv"))
    for column in ("churn_probability", "clv", "conversion_none", "expected_value"):
        assert (merged[column] - merged[f"{column}_csv"]).abs().max() < 1e-9, column
    assert (merged["next_best_action"] == merged["next_best_action_csv"]).all()
    assert (merged["holdout"] == merged["holdout_csv"]).all()
    assert out.with_suffix(".json").exists() and chunked.next_best_actions == summary.next_best_actions


def test_scoring_only_eligible_channels_decides_as_scoring_every_action(scored):
    from features.batch_retrieval import stream_point_in_time_features
    from features.feature_store import open_feature_store
    from features.feature_tables import feature_table_path
    from serving.batch import decide, score_chunk
    from serving.engine import POLICY_SERVICE
    from training.scoring import load_champions, score_features

    served, _, _ = scored
    models, _, _ = load_champions(served.workspace)
    services = sorted({m.feature_service for m in models.values()} | {POLICY_SERVICE})
    store = open_feature_store(served.workspace, served.settings.features)
    moment = pd.Timestamp(AS_OF)
    features = next(stream_point_in_time_features(store, services, moment,
                                                  str(feature_table_path(served.workspace, "purchase_history"))))
    # Given one chunk decided with every action scored, and with only eligible channels scored
    every = decide(features, score_features(features, models), served.settings, models, moment, reasons="none")
    eligible_only = score_chunk(features, models, served.settings, moment, reasons="none")
    # Then the decisions are identical, and the skipped probabilities are those of ineligible channels
    for column in ("next_best_action", "expected_value", "win_back", "win_back_action", "holdout"):
        pd.testing.assert_series_equal(every[column], eligible_only[column], check_names=False)
    skipped = eligible_only["conversion_email"].isna()
    assert skipped.any() and not eligible_only.loc[skipped, "eligible_email"].any()


def test_reasons_modes_choose_who_gets_phrases(scored, tmp_path):
    from serving.batch import score_to_file

    served, scores, _ = scored
    acted_on = (scores["next_best_action"] != "none") | scores["win_back"].astype(bool)
    assert scores["reasons"].notna().tolist() == acted_on.tolist()  # the default: segments
    none = score_to_file(served.workspace, served.settings, AS_OF, out=tmp_path / "none.parquet", reasons="none")
    assert none.customers_with_reasons == 0
    assert pd.read_parquet(tmp_path / "none.parquet")["reasons"].isna().all()


def test_a_failed_run_keeps_the_last_good_output(scored, tmp_path):
    from serving.batch import score_to_file

    served, _, _ = scored
    out = tmp_path / "scores.parquet"
    score_to_file(served.workspace, served.settings, AS_OF, out=out, reasons="none")
    before = out.read_bytes()

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_to_file(served.workspace, served.settings, AS_OF, out=out, reasons="none", chunk_rows=300,
                      on_progress=interrupt)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json", "scores.parquet"]


def test_compiled_models_score_the_base_as_lightgbm_does(scored, tmp_path):
    from serving.batch import compiled_models_directory, score_to_file
    from training.compiled_forest import forget_compiled_forests

    served, scores, summary = scored
    # Given: settings that compile the champions' trees from the first customer on
    scoring = served.settings.scoring.model_copy(update={"compile_models_from_customers": 1})
    settings = served.settings.model_copy(update={"scoring": scoring})
    try:
        # When: the base is scored twice (the second run finds the compiled models cached)
        first = score_to_file(served.workspace, settings, AS_OF, out=tmp_path / "compiled.parquet")
        second = score_to_file(served.workspace, settings, AS_OF, out=tmp_path / "again.parquet")
    finally:
        forget_compiled_forests()
    # Then: the scores and decisions are LightGBM's, and only the first run compiled
    compiled = pd.read_parquet(tmp_path / "compiled.parquet").merge(scores, on="customer_id", suffixes=("", "_lightgbm"))
    assert len(compiled) == summary.customers
    for column in ("churn_probability", "clv", "conversion_none", "expected_value"):
        assert (compiled[column] - compiled[f"{column}_lightgbm"]).abs().max() < 1e-9, column
    assert (compiled["next_best_action"] == compiled["next_best_action_lightgbm"]).all()
    assert first.compile_seconds > 0 and second.compile_seconds == 0
    assert any(compiled_models_directory(served.workspace).glob("*.o"))


def test_a_summary_is_recounted_only_from_the_scores_file_it_describes(tmp_path):
    import json

    from serving.batch import recount_score_summary

    # Given scores.parquet and scores.csv side by side, and scores.json describing the CSV (scored last)
    frame = pd.DataFrame({"customer_id": ["C1", "C2"], "next_best_action": ["email", "none"],
                          "next_best_channel": ["email", None], "win_back": [True, False], "holdout": [False, False],
                          "reasons": [None, None], "expected_value": [1.5, 0.0], "churn_probability": [0.2, None],
                          "clv": [10.0, 5.0]})
    frame.to_parquet(tmp_path / "scores.parquet")
    frame.head(1).to_csv(tmp_path / "scores.csv", index=False)
    summary = {"customers": 2, "output": "/elsewhere/scores.csv", "output_format": "csv",
               "models": {"churn": "1", "clv": "1"}, "seconds": 1.0}
    (tmp_path / "scores.json").write_text(json.dumps(summary))
    # When both files are recounted (after an erasure rewrote them)
    assert recount_score_summary(tmp_path / "scores.parquet") is False
    assert recount_score_summary(tmp_path / "scores.csv") is True
    # Then the summary counts the CSV it names, and keeps what it said of the run
    recounted = json.loads((tmp_path / "scores.json").read_text())
    assert recounted["customers"] == 1 and recounted["win_back_customers"] == 1
    assert recounted["mean_churn_probability"] == 0.2 and recounted["total_clv"] == 10.0
    assert recounted["seconds"] == 1.0 and recounted["output"] == "/elsewhere/scores.csv"


def test_a_consent_withdrawn_after_the_as_of_is_honoured_when_scoring_that_moment(scored, tmp_path):
    import shutil

    from cdp.workspace import Workspace
    from features.feature_store import append_push_log
    from serving.batch import score_to_file

    # Given customers the policy contacts by e-mail as of AS_OF, who withdrew e-mail consent since (/events)
    served, scores, _ = scored
    emailed = scores.loc[scores["next_best_channel"] == "email", "customer_id"].head(5).tolist()
    assert emailed, "nobody e-mailed: the test proves nothing"
    workspace = Workspace.at(shutil.copytree(served.workspace.root, tmp_path / "ws"))
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": emailed, "latest_email_consent": 0}),
                    pd.Timestamp.now(tz="UTC"), consents="withdrawals")
    # When the base is scored again as of AS_OF (a campaign decided today from last month's snapshot)
    score_to_file(workspace, served.settings, AS_OF, out=tmp_path / "again.parquet", reasons="none")
    again = pd.read_parquet(tmp_path / "again.parquet").set_index("customer_id")
    # Then none of them is e-mailed (before, the withdrawal counted only from the next snapshot on), while
    # everyone else's decision is the same
    assert not again.loc[emailed, "eligible_email"].any()
    assert (again.loc[emailed, "next_best_channel"] != "email").all()
    others = scores.set_index("customer_id").drop(index=emailed)
    assert (again.drop(index=emailed)["next_best_action"] == others["next_best_action"]).all()


def test_customers_to_contact_get_the_reasons_of_their_action(scored):
    served, scores, _ = scored
    contacted = scores[scores["next_best_action"] != "none"]  # reasons by default: those acted on (no holdout)
    assert len(contacted) and contacted["contact_reasons"].notna().all()
    assert scores.loc[scores["policy_action"] == "none", "contact_reasons"].isna().all()
