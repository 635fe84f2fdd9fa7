"""Lift against the holdout: estimates and intervals from a known difference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.lift import campaign_groups, lift_report_path, measure_lift, newcombe_interval

START = pd.Timestamp("2026-07-01", tz="UTC")


def test_a_real_difference_is_estimated_with_an_interval_around_it():
    # Given: 4,000 treated customers converting at 30% and 4,000 held out at 20%
    rng = np.random.default_rng(0)
    groups = pd.DataFrame({"customer_id": [f"C{i}" for i in range(8000)], "group": ["treated"] * 4000 + ["holdout"] * 4000})
    buys = np.concatenate([rng.random(4000) < 0.3, rng.random(4000) < 0.2])
    orders = pd.DataFrame({"customer_id": groups["customer_id"][buys], "amount": 40.0,
                           "ordered_at": START + pd.Timedelta(days=2)})
    late = pd.DataFrame({"customer_id": ["C0", "C4001"], "amount": 999.0, "ordered_at": START + pd.Timedelta(days=30)})
    # When
    lift = measure_lift(groups, pd.concat([orders, late]), START, window_days=7)
    # Then
    low, high = lift["incremental_conversion_rate"]["ci95"]
    assert low < 0.10 < high and low > 0.05
    assert abs(lift["incremental_revenue_per_customer"]["estimate"] - 4.0) < 1.5
    assert lift["treated"]["customers"] == lift["holdout"]["customers"] == 4000


def test_groups_come_from_the_policy_choice_the_holdout_and_the_campaign_touches():
    scores = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "policy_action": ["email", "push", "none", "sms"],
                           "holdout": [False, True, False, False]})
    touches = pd.DataFrame({"customer_id": ["A", "C", "D"], "campaign_id": ["spring", "spring", "other"],
                            "sent_at": START + pd.Timedelta(hours=10)})
    # Then everyone the policy chose is in a group, sent or not (intention to treat): D was not sent spring
    groups = campaign_groups(scores, touches, "spring", START).set_index("customer_id")
    assert groups["group"].to_dict() == {"A": "treated", "B": "holdout", "D": "treated"}
    assert groups["sent"].to_dict() == {"A": True, "B": False, "D": False}


def test_a_touch_sent_before_the_decision_does_not_make_a_customer_treated():
    # Given a customer recommended a contact who had a touch of the campaign the day before the decision
    scores = pd.DataFrame({"customer_id": ["A", "B"], "policy_action": ["email", "email"], "holdout": [False, True]})
    touches = pd.DataFrame({"customer_id": ["A"], "campaign_id": ["spring"], "sent_at": START - pd.Timedelta(days=1)})
    # Then A is treated but not sent, and with nobody sent there is nothing to measure
    groups = campaign_groups(scores, touches, "spring", START).set_index("customer_id")
    assert groups["group"].to_dict() == {"A": "treated", "B": "holdout"} and not groups["sent"].any()
    assert "at least two treated customers sent" in measure_lift(groups.reset_index(), touches.iloc[:0].assign(
        amount=0.0, ordered_at=START), START, 7)["error"]


def test_a_window_that_ends_after_the_last_order_is_flagged_incomplete():
    groups = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "group": ["treated", "treated", "holdout", "holdout"]})
    orders = pd.DataFrame({"customer_id": ["A"], "amount": 10.0, "ordered_at": [START - pd.Timedelta(days=3)]})
    lift = measure_lift(groups, orders, START, window_days=7)
    assert "figures are incomplete" in lift["warning"] and lift["incremental_conversion_rate"]["estimate"] == 0.0
    complete = measure_lift(groups, pd.concat([orders, orders.assign(ordered_at=START + pd.Timedelta(days=8))]),
                            START, window_days=7)
    assert "figures are incomplete" not in complete["warning"]  # only: too little data


def test_a_control_assignment_is_not_a_send_and_a_contacted_holdout_is_flagged():
    # Given the campaign's touches: A sent an e-mail, B only assigned to control (`none`), and the
    # held-out C sent the campaign anyway
    scores = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "policy_action": ["email"] * 4,
                           "holdout": [False, False, True, True]})
    touches = pd.DataFrame({"customer_id": ["A", "B", "C"], "campaign_id": "spring", "channel": ["email", "none", "sms"],
                            "sent_at": START + pd.Timedelta(hours=10)})
    # When grouped and measured
    groups = campaign_groups(scores, touches, "spring", START)
    orders = pd.DataFrame({"customer_id": ["A"], "amount": 10.0, "ordered_at": [START + pd.Timedelta(days=9)]})
    lift = measure_lift(groups, orders, START, window_days=7)
    # Then B was never contacted, so is treated but not sent; and the contaminated holdout is counted and said
    assert groups.set_index("customer_id")["group"].to_dict() == {"A": "treated", "B": "treated", "C": "holdout",
                                                                 "D": "holdout"}
    assert groups.set_index("customer_id")["sent"].to_dict() == {"A": True, "B": False, "C": True, "D": False}
    assert lift["holdout"]["sent"] == 1 and "1 of 2 holdout customers were sent the campaign" in lift["warning"]
    # ...and with the holdout sent as large a share as the treated (50%), no per-customer-sent figure is
    # given, and the warning does not point to one
    assert "per_customer_sent" not in lift
    assert "cannot be scaled to those sent (no per_customer_sent)" in lift["warning"]
    assert "per_customer_sent scales it" not in lift["warning"]


def test_customers_merged_since_the_decision_are_read_as_their_survivor_and_one_person_in_both_groups_left_out():
    # Given scores where A (treated) and B (held out) were later found to be one person (B merged into A),
    # and C (held out) was merged into a customer not scored
    scores = pd.DataFrame({"customer_id": ["A", "B", "C", "D", "E"], "policy_action": ["email"] * 5,
                           "holdout": [False, True, True, False, True]})
    touches = pd.DataFrame({"customer_id": ["A", "D"], "campaign_id": "spring", "channel": "email",
                            "sent_at": START + pd.Timedelta(hours=10)})
    # When grouped with the identity state's merges
    groups = campaign_groups(scores, touches, "spring", START, {"B": "A", "C": "Z"})
    # Then A/B is in neither group, C counts under Z (where its orders now are), and the merge is reported
    assert groups.set_index("customer_id")["group"].to_dict() == {"D": "treated", "Z": "holdout", "E": "holdout"}
    lift = measure_lift(groups, pd.DataFrame({"customer_id": ["Z"], "amount": 5.0, "ordered_at": [START]}), START, 7)
    assert lift["merged_since_decision"] == 2 and "left out of both groups" in lift["warning"]


def _win_back_campaign(seed: int, with_policy_win_back_action: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """200,000 customers the policy chose a contact for, a quarter on the win-back list (converting at 5%
    whatever is done), the rest converting at 30%; 10% held out; a campaign with no effect sent to the
    win-back list only (as `cdp export --segment win_back_today` hands it out)."""
    rng = np.random.default_rng(seed)
    n = 200_000
    ids = np.array([f"C{i}" for i in range(n)])
    win_back_candidate, held = rng.random(n) < 0.25, rng.random(n) < 0.10
    scores = pd.DataFrame({"customer_id": ids, "policy_action": "email", "holdout": held,
                           "win_back": win_back_candidate & ~held,
                           "win_back_action": np.where(win_back_candidate & ~held, "email", None)})
    if with_policy_win_back_action:
        scores["policy_win_back_action"] = np.where(win_back_candidate, "email", None)
    sent = ids[win_back_candidate & ~held]
    touches = pd.DataFrame({"customer_id": sent, "campaign_id": "summer", "channel": "email",
                            "sent_at": START + pd.Timedelta(hours=10)})
    buys = rng.random(n) < np.where(win_back_candidate, 0.05, 0.30)
    orders = pd.DataFrame({"customer_id": ids[buys], "amount": 50.0, "ordered_at": START + pd.Timedelta(days=2)})
    orders = pd.concat([orders, pd.DataFrame({"customer_id": ["C0"], "amount": 1.0,
                                              "ordered_at": [START + pd.Timedelta(days=8)]})])
    return scores, touches, orders


def test_a_campaign_without_effect_sent_to_part_of_the_audience_shows_no_lift_and_the_share_sent():
    # Given a campaign with no effect sent to the win-back list only, scores without
    # policy_win_back_action (as `cdp score` writes them): the held-out win-back customers are unknown
    scores, touches, orders = _win_back_campaign(0, with_policy_win_back_action=False)
    # When measured
    lift = measure_lift(campaign_groups(scores, touches, "summer", START), orders, START, window_days=7)
    # Then the whole chosen audience is compared with its holdout, sent or not: no lift is found (sending
    # to the low converters only is not a difference of -25 points), and the share sent is reported,
    # the dilution warned of and scaled away in per_customer_sent
    estimate, (low, high) = lift["incremental_conversion_rate"]["estimate"], lift["incremental_conversion_rate"]["ci95"]
    assert abs(estimate) < 0.015 and low < estimate < high and high - low < 0.02
    assert lift["audience"] == "next_best_action" and lift["treated"]["customers"] > 150_000
    assert 0.2 < lift["sent_share"] < 0.3 and "were sent the campaign: the lift is that of the whole audience" in lift["warning"]
    assert "no policy_win_back_action" in lift["warning"]
    per_sent = lift["per_customer_sent"]["incremental_conversion_rate"]
    assert abs(per_sent["estimate"]) < 0.06 and per_sent["ci95"][0] < per_sent["estimate"] < per_sent["ci95"][1]
    assert abs(per_sent["estimate"] - lift["incremental_conversion_rate"]["estimate"] / lift["sent_share"]) < 1e-12


def test_a_win_back_campaign_is_measured_on_the_win_back_audience_when_the_scores_say_who_was_held_out_of_it():
    # Given the same campaign, with scores that keep the policy's win-back choice for held-out customers
    scores, touches, orders = _win_back_campaign(1, with_policy_win_back_action=True)
    # When measured
    lift = measure_lift(campaign_groups(scores, touches, "summer", START), orders, START, window_days=7)
    # Then win-back customers are compared with held-out win-back customers: all were sent, no lift
    assert lift["audience"] == "win_back" and lift["sent_share"] == 1.0 and "per_customer_sent" not in lift
    assert lift["treated"]["customers"] == (scores["win_back"]).sum()
    assert lift["holdout"]["customers"] == (scores["holdout"] & scores["policy_win_back_action"].notna()).sum()
    estimate, (low, high) = lift["incremental_conversion_rate"]["estimate"], lift["incremental_conversion_rate"]["ci95"]
    assert abs(estimate) < 0.015 and low < estimate < high
    assert "warning" not in lift and lift["too_little_data"] is False


def test_with_no_orders_and_two_treated_customers_the_intervals_are_not_zero_width_and_too_little_data_is_said():
    # Given two treated customers, 224 held out, and no order in the window
    groups = pd.DataFrame({"customer_id": [f"C{i}" for i in range(226)], "group": ["treated"] * 2 + ["holdout"] * 224})
    orders = pd.DataFrame({"customer_id": ["C0"], "amount": 10.0, "ordered_at": [START + pd.Timedelta(days=30)]})
    # When measured
    lift = measure_lift(groups, orders, START, window_days=7)
    # Then 0% against 0% has an interval as wide as two customers allow, the revenue none, and the
    # report says there is too little data
    low, high = lift["incremental_conversion_rate"]["ci95"]
    assert lift["incremental_conversion_rate"]["estimate"] == 0.0 and low < -0.01 and high > 0.5
    revenue = lift["incremental_revenue_per_customer"]
    assert revenue["ci95"] is None and "does not vary" in revenue["not_estimable"]
    assert lift["too_little_data"] is True and "too little data" in lift["warning"]


def test_the_conversion_interval_is_newcombes_hybrid_score_interval():
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
    assert np.allclose(newcombe_interval(56, 70, 48, 80), (0.0524, 0.3339), atol=5e-5)
    assert np.allclose(newcombe_interval(0, 10, 0, 20), (-0.1611, 0.2775), atol=5e-5)
    assert np.allclose(newcombe_interval(10, 10, 0, 20), (0.6791, 1.0), atol=5e-5)


def test_the_report_path_is_one_file_in_the_reports_folder_whatever_the_campaign_id(tmp_path):
    ids = ["spring-24", "2026/spring", "2026%2Fspring", "a:b", "a_b", "..", "../../etc/x", " x ", "é", "x" * 300]
    paths = [lift_report_path(tmp_path, campaign) for campaign in ids]
    assert paths[0] == tmp_path / "lift-spring-24.json"
    assert len(set(paths)) == len(ids) and all(path.parent == tmp_path for path in paths)
    for path in paths:
        path.write_text("{}")
        assert len(path.name) < 200
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
