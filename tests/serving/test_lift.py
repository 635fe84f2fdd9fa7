"""Lift against the holdout: estimates and intervals from a known difference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.lift import campaign_groups, measure_lift

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
    groups = campaign_groups(scores, touches, "spring", START).set_index("customer_id")["group"].to_dict()
    assert groups == {"A": "treated", "B": "holdout"}


def test_a_touch_sent_before_the_decision_does_not_make_a_customer_treated():
    # Given a customer recommended a contact who had a touch of the campaign the day before the decision
    scores = pd.DataFrame({"customer_id": ["A", "B"], "policy_action": ["email", "email"], "holdout": [False, True]})
    touches = pd.DataFrame({"customer_id": ["A"], "campaign_id": ["spring"], "sent_at": START - pd.Timedelta(days=1)})
    # Then only the holdout is in the groups
    groups = campaign_groups(scores, touches, "spring", START)
    assert groups.set_index("customer_id")["group"].to_dict() == {"B": "holdout"}


def test_a_window_that_ends_after_the_last_order_is_flagged_incomplete():
    groups = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "group": ["treated", "treated", "holdout", "holdout"]})
    orders = pd.DataFrame({"customer_id": ["A"], "amount": 10.0, "ordered_at": [START - pd.Timedelta(days=3)]})
    lift = measure_lift(groups, orders, START, window_days=7)
    assert "figures are incomplete" in lift["warning"] and lift["incremental_conversion_rate"]["estimate"] == 0.0
    complete = measure_lift(groups, pd.concat([orders, orders.assign(ordered_at=START + pd.Timedelta(days=8))]),
                            START, window_days=7)
    assert "warning" not in complete


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
    # Then B was never contacted, so is not treated; and the contaminated holdout is counted and said
    assert groups.set_index("customer_id")["group"].to_dict() == {"A": "treated", "C": "holdout", "D": "holdout"}
    assert lift["holdout"]["contacted"] == 1 and "1 of 2 holdout customers were sent the campaign" in lift["warning"]


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
