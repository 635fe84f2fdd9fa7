"""What the policy recommends, summarized for campaign analysts."""

from __future__ import annotations

import pandas as pd
import pytest

from serving import recommendation_summary as summary


@pytest.fixture
def scores() -> pd.DataFrame:
    """Six scored customers: two contacts, three without (one in the holdout), two win-backs."""
    return pd.DataFrame({
        "customer_id": ["C1", "C2", "C3", "C4", "C5", "C6"],
        "as_of": pd.Timestamp("2026-07-01", tz="UTC"),
        "churn_probability": [0.2, 0.3, 0.9, 0.8, 0.5, None],  # C6: outside the churn model's population
        "clv": [100.0, 50.0, 300.0, 400.0, 10.0, 20.0],
        "next_best_action": ["email", "push", "none", "none", "none", "none"],
        "next_best_channel": ["email", "push", None, None, None, None],
        "expected_value": [1.5, 0.5, 0.0, 0.0, 0.0, 0.0],
        "win_back": [False, False, True, True, False, None],
        "win_back_action": [None, None, "sms:10pct", "push", None, None],
        "holdout": [False, False, False, False, True, False],
        "policy_action": ["email", "push", "none", "none", "sms", "none"],
        "no_contact_reason": [None, None, "no consented, reachable channel (email: consent withdrawn; push: no consent recorded)",
                              "contact not worth its cost (best: sms, expected value -0.0100)", "holdout (control group)",
                              "no consented, reachable channel (email: no consent recorded; push: no consent recorded)"],
        "eligible_email": [True, False, False, True, True, False],
        "eligible_push": [True, True, False, True, False, False],
        "eligible_sms": [False, False, True, True, True, None],
        "reasons": ["a", "b", "no purchase in 200 days", "last order 90 days ago", None, None],
    })


def test_headline_numbers(scores):
    table = summary.summarize_recommendations(scores).set_index("measure")["value"]
    assert table["customers scored"] == 6
    assert table["customers to contact"] == 2
    assert table["total expected value of the contacts"] == 2.0
    assert table["win-back customers"] == 2
    assert table["holdout customers"] == 1
    assert table["total predicted CLV"] == 880.0
    assert table["mean churn probability (customers with one)"] == 0.54
    assert table["customers without a churn probability (no order in the churn model's window)"] == 1


def test_next_best_actions_are_counted_with_their_value(scores):
    table = summary.count_next_best_actions(scores).set_index("next_best_action")
    assert table.loc["none", "customers"] == 4
    assert table.loc["email", "expected_value_total"] == 1.5
    assert table.loc["push", "share"] == round(1 / 6, 4)
    assert table["customers"].sum() == len(scores)


def test_no_contact_reasons_group_by_headline_unless_detail_is_asked(scores):
    grouped = summary.no_contact_reasons(scores).set_index("reason")["customers"]
    assert grouped.to_dict() == {"no consented, reachable channel": 2, "contact not worth its cost": 1,
                                 "holdout (control group)": 1}
    detailed = summary.no_contact_reasons(scores, detail=True)
    assert len(detailed) == 4
    assert detailed["customers"].sum() == 4


def test_eligibility_per_channel(scores):
    table = summary.eligibility_by_channel(scores).set_index("channel")
    assert table.loc["email"].tolist()[:2] == [3, 0.5]
    assert table.loc["push", "next_best_channel"] == 1
    assert table.loc["sms", "eligible_customers"] == 3  # a missing flag is not eligible
    assert table.loc["sms", "win_back_channel"] == 1
    assert table.loc["push", "win_back_channel"] == 1


def test_holdout_against_treated(scores):
    table = summary.holdout_summary(scores).set_index("group")
    assert table.loc["holdout", "customers"] == 1
    assert table.loc["holdout", "policy_would_contact"] == 1  # the policy would have sent an sms
    assert table.loc["treated", "customers"] == 5
    assert table.loc["treated", "policy_would_contact"] == 2


def test_win_back_list_is_most_valuable_first(scores):
    listed = summary.win_back_list(scores)
    assert listed["customer_id"].tolist() == ["C4", "C3"]
    assert listed.columns.tolist() == ["customer_id", "win_back_action", "churn_probability", "clv", "reasons"]
    assert summary.win_back_list(scores, top=1)["customer_id"].tolist() == ["C4"]
    assert summary.win_back_actions(scores).set_index("win_back_action")["customers"].to_dict() == {"sms:10pct": 1, "push": 1}


def test_example_customers_cover_each_action_win_back_and_holdout(scores):
    examples = summary.pick_example_customers(scores)
    assert examples[:3] == ["C1", "C2", "C3"]  # the best of email, push and none, by expected value
    assert "C4" in examples  # the most valuable win-back
    assert "C5" in examples  # the holdout
    assert len(examples) == len(set(examples))


def test_engine_answers_become_one_row_per_customer():
    class Engine:  # stands in for RecommendationEngine: answers in request order
        def recommend(self, references):
            return [{"customer_id": r["customer_id"], "next_best_action": "email", "expected_value": 1.0,
                     "win_back": {"eligible": True, "action": "push"}, "holdout": False, "no_contact_reason": None,
                     "reasons": {"churn": ["no purchase in 90 days", "usually buys every 30"], "propensity": []}}
                    for r in references]

    table = summary.explain_customers(Engine(), ["C1", "C2"])
    assert table["customer_id"].tolist() == ["C1", "C2"]
    assert table.loc[0, "churn_reasons"] == "no purchase in 90 days; usually buys every 30"
    assert table.loc[0, "win_back"] == "push"
    assert table.loc[0, "propensity_reasons"] == ""


def test_policy_evaluation_as_a_table():
    result = {"policies": {"our_policy": {"incremental_profit_per_1000": 80.0, "contacted_share": 0.1},
                           "oracle_best": {"incremental_profit_per_1000": 100.0, "contacted_share": 0.2}}}
    table = summary.policy_evaluation_table(result).set_index("policy")
    assert table.loc["our_policy", "share_of_oracle_profit"] == 0.8
    assert table.loc["oracle_best", "contacted_share"] == 0.2


def test_segment_sizes_follow_the_segment_definitions(workspace, scores):
    from cdp.config import load_settings

    # given scores on disk (no feature tables: the built-in segments read score columns only)
    workspace.outputs.mkdir(parents=True)
    scores.to_parquet(workspace.outputs / "scores.parquet")
    # when the segments are counted
    sizes = summary.segment_sizes(workspace, load_settings()).set_index("segment")
    # then each holds the customers its expression selects, the holdout left out of contact lists
    assert sizes.loc["win_back_today", "customers"] == 2
    assert sizes.loc["push_reachable", "customers"] == 3
    assert sizes.loc["high_clv_at_risk", "customers"] == 2  # C3 and C4: top CLV and churn >= 0.5
    assert sizes.loc["do_not_contact", "customers"] == 2  # the holdout C5 and C6 (no contact, no win-back)
    assert not sizes.loc["do_not_contact", "contact_list"]
    # ...and a contact list of everyone counts what it leaves out under its cause: C5 held out, C6 with no
    # eligible channel (both were counted as holdout before)
    everyone = summary.segment_sizes(workspace, load_settings(segments={"definitions": {"everyone": {"where": "true"}}}))
    row = everyone.set_index("segment").loc["everyone"]
    assert (row["customers"], row["holdout_left_out"], row["no_channel_left_out"]) == (4, 1, 1)
    # ...and a consent withdrawn after the scores (a push through /events) counts as the export counts it
    from features.feature_store import append_push_log

    workspace.feast.mkdir(parents=True)
    pushed_for = scores.loc[scores["eligible_push"].astype(bool) & ~scores["holdout"], "customer_id"].iloc[0]
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": [pushed_for], "latest_push_consent": [0]}),
                    pd.Timestamp("2026-07-02", tz="UTC"))
    after = summary.segment_sizes(workspace, load_settings()).set_index("segment")
    assert after.loc["push_reachable", "customers"] == 2


def test_missing_inputs_say_what_to_run(workspace, tmp_path):
    from cdp.config import load_settings

    with pytest.raises(FileNotFoundError, match="cdp score"):
        summary.read_scores(workspace)
    with pytest.raises(FileNotFoundError, match="simulation.json"):
        summary.evaluate_workspace_policy(workspace, load_settings(), tmp_path)
    (tmp_path / "simulation.json").write_text("{}")
    assert summary.truth_directory(tmp_path) == tmp_path
    assert summary.truth_directory(tmp_path / "raw") == tmp_path / "raw" / "truth"
