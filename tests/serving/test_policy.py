"""The recommendation policy: consent, reachability, caps, value, win-back, holdout, degradation."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.config import PolicySettings
from serving.policy import (
    HOLDOUT_REASON,
    NO_CHANNEL_ALLOWED_REASON,
    NO_PROPENSITY_REASON,
    NOT_WORTH_REASON,
    UNREACHABLE_REASON,
    candidate_actions,
    decide,
    holdout_mask,
    offer_depth,
    recommend,
)

CHANNELS = ("email", "push", "sms")
NO_HOLDOUT = PolicySettings(holdout_share=0.0)


def customer(customer_id: str = "C1", **overrides) -> dict:
    """A customer every channel may contact: consented, reachable, not contacted lately, with
    e-mail the best action (AOV 100; base conversion 2%)."""
    row = {
        "customer_id": customer_id,
        "churn_probability": 0.1,
        "clv": 100.0,
        "conversion_none": 0.02,
        "conversion_email": 0.03,
        "conversion_push": 0.025,
        "conversion_sms": 0.021,
        "average_order_value": 100.0,
        "days_since_last_order": 20.0,
        "net_revenue_365d": 200.0,
        "has_email": 1,
        "has_phone": 1,
        "app_installed": 1,
        "latest_app_installed": None,
        "touches_7d": 0,
        "touches_30d": 0,
    }
    for channel in CHANNELS:
        row |= {
            f"{channel}_consent": 1,
            f"latest_{channel}_consent": None,
            f"{channel}_sends_7d": 0,
            f"{channel}_sends_30d": 0,
            f"{channel}_sends_90d": 0,
            f"{channel}_days_since_last_touch": None,
        }
    return row | overrides


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def one(row: dict, policy: PolicySettings = NO_HOLDOUT, **options) -> pd.Series:
    return recommend(frame(row), policy, **options).iloc[0]


# --- consent --------------------------------------------------------------------------------

CONSENT = st.sampled_from([1.0, 0.0, None])
FLAG = st.sampled_from([1.0, 0.0, None])
COUNT = st.one_of(st.none(), st.integers(0, 12))
PROBABILITY = st.floats(0, 1)


@st.composite
def random_customers(draw) -> pd.DataFrame:
    rows = []
    for index in range(draw(st.integers(1, 25))):
        row = {
            "customer_id": f"C{index}",
            "conversion_none": draw(PROBABILITY),
            "churn_probability": draw(st.one_of(st.none(), PROBABILITY)),
            "clv": draw(st.one_of(st.none(), st.floats(0, 5000))),
            "average_order_value": draw(st.one_of(st.none(), st.floats(1, 500))),
            "days_since_last_order": draw(st.one_of(st.none(), st.floats(0, 900))),
            "has_email": draw(FLAG),
            "has_phone": draw(FLAG),
            "app_installed": draw(FLAG),
            "latest_app_installed": draw(FLAG),
            "touches_7d": draw(COUNT),
            "touches_30d": draw(COUNT),
        }
        for channel in CHANNELS:
            row |= {
                f"{channel}_consent": draw(CONSENT),
                f"latest_{channel}_consent": draw(CONSENT),
                f"{channel}_sends_7d": draw(COUNT),
                f"{channel}_sends_30d": draw(COUNT),
                f"{channel}_sends_90d": draw(COUNT),
                f"{channel}_days_since_last_touch": draw(st.one_of(st.none(), st.floats(0, 60))),
                f"conversion_{channel}": draw(PROBABILITY),
                f"conversion_{channel}_20pct": draw(PROBABILITY),
            }
        rows.append(row)
    return pd.DataFrame(rows)


@settings(max_examples=150, deadline=None)
@given(
    customers=random_customers(),
    mode=st.sampled_from(["opt_in", "opt_out"]),
    share=st.sampled_from([0.0, 0.5]),
    allowed=st.sampled_from([None, ["email"], ["push", "sms"]]),
)
def test_never_recommends_a_channel_without_consent(customers, mode, share, allowed):
    # Given: random customers, consents granted, withdrawn or never asked, batch and latest
    policy = PolicySettings(consent_mode=mode, holdout_share=share, min_expected_value=-1.0)
    # When
    result = recommend(customers, policy, allowed_channels=allowed)
    # Then: every channel named anywhere in the answer has consent in force under the mode
    for channel in CHANNELS:
        latest = pd.to_numeric(customers[f"latest_{channel}_consent"]).to_numpy(dtype=float)
        consent = np.where(np.isnan(latest), pd.to_numeric(customers[f"{channel}_consent"]), latest)
        permitted = consent == 1 if mode == "opt_in" else consent != 0
        named = np.zeros(len(customers), dtype=bool)
        for column in ("next_best_channel", "win_back_channel"):
            named |= (result[column] == channel).to_numpy()
        for column in ("policy_action", "policy_win_back_action"):
            named |= result[column].fillna("").str.split(":").str[0].eq(channel).to_numpy()
        assert not (named & ~permitted).any()
        assert not (result[f"eligible_{channel}"].to_numpy() & ~permitted).any()


def test_withdrawn_consent_online_overrides_a_batch_grant():
    # Given: e-mail granted in the batch features, then withdrawn through a push (latest = 0)
    row = customer(latest_email_consent=0, push_consent=None, sms_consent=None)
    # When
    answer = one(row)
    # Then
    assert not answer["eligible_email"]
    assert answer["ineligible_reason_email"] == "consent withdrawn"
    assert answer["next_best_action"] == "none"
    assert answer["no_contact_reason"].startswith(UNREACHABLE_REASON)


def test_a_fresh_grant_online_overrides_a_batch_withdrawal():
    answer = one(customer(email_consent=0, latest_email_consent=1))
    assert answer["eligible_email"] and answer["next_best_action"] == "email"


def test_opt_out_allows_never_asked_but_not_withdrawn():
    # Given: e-mail never asked, push withdrawn
    row = customer(email_consent=None, push_consent=0)
    # When / Then
    opt_in = one(row)
    opt_out = one(row, PolicySettings(consent_mode="opt_out", holdout_share=0.0))
    assert (
        not opt_in["eligible_email"] and opt_in["ineligible_reason_email"] == "no consent recorded"
    )
    assert opt_out["eligible_email"] and opt_out["next_best_action"] == "email"
    assert not opt_out["eligible_push"]


# --- reachability, caps, quiet period -------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "missing", "reason"),
    [
        ("email", {"has_email": 0}, "no e-mail address on file"),
        ("push", {"app_installed": 0}, "app not installed"),
        ("push", {"app_installed": 1, "latest_app_installed": 0}, "app not installed"),
        ("sms", {"has_phone": None}, "no phone number on file"),
    ],
)
def test_a_channel_needs_a_way_to_reach_the_customer(channel, missing, reason):
    answer = one(customer(**missing))
    assert not answer[f"eligible_{channel}"]
    assert answer[f"ineligible_reason_{channel}"] == reason


def test_past_deliveries_prove_reach_but_never_override_consent():
    # Given: no e-mail address flag, but e-mails were delivered in the last 90 days
    reached = customer(has_email=0, email_sends_90d=4)
    # Then: reachable; without consent still not eligible
    assert one(reached)["eligible_email"]
    unconsented = one(reached | {"email_consent": None})
    assert not unconsented["eligible_email"]
    assert unconsented["ineligible_reason_email"] == "no consent recorded"
    assert not one(reached, PolicySettings(reach_from_past_sends=False, holdout_share=0.0))[
        "eligible_email"
    ]


@pytest.mark.parametrize(
    ("overrides", "blocked"),
    [
        ({"email_sends_7d": 3}, "email"),
        ({"email_sends_30d": 10}, "email"),
        ({"sms_sends_7d": 1}, "sms"),
        ({"push_sends_30d": 8}, "push"),
    ],
)
def test_frequency_caps_per_channel(overrides, blocked):
    # Given: a channel at its cap (defaults 3/10 e-mail, 3/8 push, 1/2 SMS), one below it
    capped = one(customer(**overrides))
    below = one(customer(**{k: v - 1 for k, v in overrides.items()}))
    # Then
    assert not capped[f"eligible_{blocked}"]
    assert capped[f"ineligible_reason_{blocked}"].startswith("frequency cap")
    assert below[f"eligible_{blocked}"]
    assert all(capped[f"eligible_{c}"] for c in CHANNELS if c != blocked)


def test_caps_over_all_channels_and_the_reason_names_them():
    answer = one(customer(touches_7d=5))
    assert not any(answer[f"eligible_{c}"] for c in CHANNELS)
    assert answer["next_best_action"] == "none"
    assert answer["no_contact_reason"].startswith("frequency cap")
    assert "touches on all channels in 7 days" in answer["no_contact_reason"]


def test_quiet_period_after_recent_contact():
    # Given: the last e-mail 1.5 days ago (quiet 2 days), then 2.5 days ago
    recent = one(customer(email_days_since_last_touch=1.5))
    later = one(customer(email_days_since_last_touch=2.5))
    assert not recent["eligible_email"] and recent["ineligible_reason_email"] == (
        "quiet period: last e-mail within the last 2 days"
    )
    assert recent["eligible_push"]  # push's own quiet period is not affected
    assert later["eligible_email"]
    # And: any touch under a day ago silences every channel
    anything = one(customer(sms_days_since_last_touch=0.5))
    assert not any(anything[f"eligible_{c}"] for c in CHANNELS)
    assert anything["no_contact_reason"].startswith("quiet period")
    assert "a contact on any channel within the last day" in anything["no_contact_reason"]  # not "under 1 days ago"
    assert "days ago" not in anything["no_contact_reason"]


def test_quiet_period_and_caps_are_configurable():
    relaxed = PolicySettings(
        holdout_share=0.0,
        quiet_days={"email": 0.0},
        quiet_days_any_channel=0.0,
        max_sends_7d={"email": 10},
    )
    answer = one(customer(email_days_since_last_touch=0.1, email_sends_7d=5), relaxed)
    assert answer["eligible_email"] and answer["next_best_action"] == "email"


# --- value ----------------------------------------------------------------------------------


def test_next_best_action_is_the_eligible_argmax_on_a_hand_example():
    # Given: AOV 80; base 2%; e-mail 3%, push 3.5%, SMS 6% (but no SMS consent)
    row = customer(
        average_order_value=80.0,
        conversion_email=0.03,
        conversion_push=0.035,
        conversion_sms=0.06,
        sms_consent=None,
    )
    # When
    answer = one(row, alternatives=True)
    # Then: push = 0.015 x 80 - 0.001 = 1.199 beats e-mail = 0.01 x 80 - 0.002 = 0.798
    assert answer["next_best_action"] == "push" and answer["next_best_channel"] == "push"
    assert answer["next_best_offer"] is None
    assert answer["expected_value"] == pytest.approx(1.199)
    ranked = [(a["action"], a["eligible"]) for a in answer["alternatives"]]
    assert ranked == [("push", True), ("email", True), ("none", True), ("sms", False)]
    assert answer["alternatives"][1]["expected_value"] == pytest.approx(0.798)
    assert answer["alternatives"][3]["reason"] == "no consent recorded"
    assert answer["no_contact_reason"] is None


def test_none_when_uplift_does_not_cover_the_cost_and_the_reason_says_so():
    # Given: only SMS is open and its uplift (0.04 pp x 100 = 0.04) is below its cost (0.05)
    row = customer(email_consent=None, push_consent=None, conversion_sms=0.0204)
    # When
    answer = one(row)
    # Then
    assert answer["next_best_action"] == "none" and answer["expected_value"] == 0
    assert answer["no_contact_reason"].startswith(NOT_WORTH_REASON)
    assert "sms" in answer["no_contact_reason"]


def test_order_value_falls_back_to_the_configured_default():
    row = customer(
        average_order_value=None, email_consent=None, push_consent=None, conversion_sms=0.0209
    )
    # 0.0009 x 50 - 0.05 < 0 with the default order value 50; 0.0009 x 200 - 0.05 > 0 with 200
    assert one(row)["next_best_action"] == "none"
    assert (
        one(row, PolicySettings(default_order_value=200.0, holdout_share=0.0))["next_best_action"]
        == "sms"
    )


def test_offers_cost_their_discount():
    # Given: AOV 100, base 2%; e-mail 3% (value 0.998); 20% off lifts conversion to 3.5%
    row = customer(conversion_email_20pct=0.035)
    # When
    answer = one(row, alternatives=True)
    # Then: 0.015 x 100 - 0.002 - 0.2 x 100 x 0.035 = 0.798 < 0.998: the plain e-mail wins
    values = {a["action"]: a["expected_value"] for a in answer["alternatives"]}
    assert values["email:20pct"] == pytest.approx(0.798)
    assert answer["next_best_action"] == "email"
    # And: at 6%, 4 - 0.002 - 1.2 = 2.798 beats it, and the offer is named
    deeper = one(customer(conversion_email_20pct=0.06))
    assert deeper["next_best_action"] == "email:20pct" and deeper["next_best_offer"] == "20pct"
    assert deeper["expected_value"] == pytest.approx(2.798)


def test_candidate_actions_come_from_the_scores_and_the_config():
    columns = [
        "customer_id",
        "conversion_none",
        "conversion_email",
        "conversion_email_10pct",
        "conversion_email_20pct",
        "conversion_push",
        "conversion_fax",
        "conversion_push_mystery",
    ]
    names = [a.name for a in candidate_actions(columns, PolicySettings())]
    assert names == [
        "email",
        "email:10pct",
        "email:20pct",
        "push",
    ]  # fax not configured; mystery has no depth
    only_10 = PolicySettings(offers=("10pct",), channels=("email",), channel_costs={"email": 0.002})
    assert [a.name for a in candidate_actions(columns, only_10)] == ["email", "email:10pct"]
    assert offer_depth("mystery", PolicySettings(offer_depths={"mystery": 0.3})) == 0.3
    assert candidate_actions(["conversion_email"], PolicySettings()) == []  # no baseline, no uplift


def test_allowed_channels_are_respected():
    # Given: e-mail is the best action, but the campaign tool allows push only
    answer = one(customer(), allowed_channels=["push"])
    assert answer["next_best_action"] == "push"
    assert (
        not answer["eligible_email"]
        and answer["ineligible_reason_email"] == "not allowed by the campaign"
    )
    nothing = one(customer(), allowed_channels=[])
    assert nothing["next_best_action"] == "none"
    assert nothing["no_contact_reason"] == NO_CHANNEL_ALLOWED_REASON


# --- win-back -------------------------------------------------------------------------------


def lapsed_customer(**overrides) -> dict:
    """No order for 200 days, churn 0.8, CLV 300: 0.8 x 300 x 0.1 = 24 at stake. Offers on e-mail:
    10% off (value 3.5 - 0.002 - 0.55 = 2.948) and 20% off (4.5 - 0.002 - 1.3 = 3.198)."""
    return customer(
        **{
            "days_since_last_order": 200.0,
            "churn_probability": 0.8,
            "clv": 300.0,
            "net_revenue_365d": 0.0,
            "conversion_email": 0.03,
            "conversion_email_10pct": 0.055,
            "conversion_email_20pct": 0.065,
        }
        | overrides
    )


def test_lapsed_customers_are_won_back_with_the_best_value_offer():
    answer = one(lapsed_customer())
    assert answer["win_back"]
    assert answer["win_back_action"] == "email:20pct"
    assert answer["win_back_channel"] == "email" and answer["win_back_offer"] == "20pct"
    assert answer["win_back_timing"] == "today"
    assert answer["win_back_value"] == pytest.approx(24 - 0.002 - 0.2 * 100 * 0.065)
    assert answer["win_back_reason"] == "lapsed and high churn risk"


def test_a_win_back_held_only_by_a_quiet_period_is_scheduled_for_when_it_ends():
    # Given: a lapsed customer reachable only by e-mail, last e-mailed 0.5 days ago (quiet: 2 days)
    only_email = {"push_consent": 0, "sms_consent": 0, "email_days_since_last_touch": 0.5}
    # When: the policy decides today
    answer = one(lapsed_customer(**only_email))
    # Then: nothing goes out today (no win-back, no action a tool could send), but the timing and the
    # reason say which win-back comes once the quiet period is over
    assert answer["next_best_action"] == "none"
    assert answer["no_contact_reason"].startswith("quiet period")
    assert not answer["win_back"] and answer["win_back_action"] is None and answer["policy_win_back_action"] is None
    assert answer["win_back_timing"] == "in 2 days"
    assert answer["win_back_reason"] == ("lapsed and high churn risk; win back with email:20pct in 2 days, once its "
                                         "quiet period ends")
    assert answer["win_back_value"] == pytest.approx(24 - 0.002 - 0.2 * 100 * 0.065)
    # and a quiet period of any channel counts: e-mail was quiet 1.2 days, a push 0.25 days ago
    both = one(lapsed_customer(push_consent=0, sms_consent=0, email_days_since_last_touch=1.2,
                               push_days_since_last_touch=0.25))
    assert both["win_back_timing"] == "in 1 day"
    # and a held-out customer's waiting win-back is not announced either
    held = one(lapsed_customer(**only_email), PolicySettings(holdout_share=0.99))  # C1 is held out at 99%
    assert held["win_back_timing"] is None and held["win_back_reason"] == "holdout (control group)"


def test_a_channel_open_today_wins_over_waiting_and_other_blocks_are_not_waited_out():
    # Given: e-mail in its quiet period (1.5 days ago; any channel's 1-day period is over), push open
    answer = one(lapsed_customer(sms_consent=0, email_days_since_last_touch=1.5,
                                 conversion_push=0.03))
    # Then: win back today on push
    assert answer["win_back"] and answer["win_back_channel"] == "push"
    assert answer["win_back_timing"] == "today"
    # Given: e-mail quiet but also over its 30-day cap (when a cap ends is not known): no win-back
    capped = one(lapsed_customer(push_consent=0, sms_consent=0, email_days_since_last_touch=0.5,
                                 email_sends_30d=99))
    assert not capped["win_back"] and capped["win_back_reason"] == "no eligible channel"
    assert capped["win_back_timing"] is None


def test_the_best_value_offer_is_chosen_by_value_not_by_depth():
    answer = one(
        lapsed_customer(conversion_email_20pct=0.056)
    )  # 2.6 - 0.002 - 1.12 = 1.478 < 2.948
    assert answer["win_back_action"] == "email:10pct"


def test_loyal_high_value_customers_are_won_back_without_a_discount():
    for loyal in ({"clv": 2000.0}, {"net_revenue_365d": 900.0}):
        answer = one(lapsed_customer(**loyal))
        assert answer["win_back"], loyal
        assert answer["win_back_action"] == "email" and answer["win_back_offer"] is None


def test_high_churn_risk_alone_makes_a_candidate_and_recent_buyers_at_low_risk_are_not():
    at_risk = one(customer(churn_probability=0.7, clv=300.0))
    assert at_risk["win_back"] and at_risk["win_back_reason"] == "high churn risk"
    safe = one(customer(churn_probability=0.2, clv=300.0))
    assert not safe["win_back"] and safe["win_back_action"] is None
    assert safe["win_back_reason"].startswith("not at risk")
    # a recent buyer with no churn probability (outside the model's population) is not said to be below it
    unknown = one(customer(churn_probability=None, clv=300.0))
    assert not unknown["win_back"]
    assert unknown["win_back_reason"] == "not lapsed, and no churn probability to judge the risk by"


def test_customers_who_never_ordered_are_not_won_back_whatever_their_churn_score():
    # Given a customer with no order at all, whom the churn model (trained on recent buyers) scores high
    answer = one(lapsed_customer(days_since_last_order=float("nan"), churn_probability=0.85))
    # Then there is nothing to win back, and the answer says so
    assert not answer["win_back"] and answer["win_back_action"] is None
    assert answer["win_back_reason"] == "never ordered: nothing to win back"


def test_no_win_back_when_the_value_saved_does_not_cover_the_cost():
    # 0.8 x 0.5 x 0.1 = 0.04 saved; the cheapest offer costs more
    answer = one(lapsed_customer(clv=0.5))
    assert (
        not answer["win_back"]
        and answer["win_back_reason"] == "value saved does not cover the cost"
    )


def test_no_win_back_without_an_eligible_channel():
    answer = one(lapsed_customer(email_consent=0, push_consent=None, sms_consent=None))
    assert not answer["win_back"] and answer["win_back_reason"] == "no eligible channel"
    assert answer["win_back_action"] is None


def test_a_fresh_order_pushed_online_ends_the_lapse():
    now = pd.Timestamp("2026-07-01", tz="UTC")
    row = lapsed_customer(
        churn_probability=0.1,
        last_order_epoch_seconds=int((now - pd.Timedelta(days=3)).timestamp()),
    )
    assert one(row)["win_back"]  # days_since_last_order 200 in the batch features
    assert not one(row, now=now)["win_back"]


# --- holdout --------------------------------------------------------------------------------


def test_holdout_share_is_close_to_the_setting_and_deterministic():
    ids = [f"C{i:09d}" for i in range(20_000)]
    first = holdout_mask(ids, "spring-sale", 0.05)
    assert abs(first.mean() - 0.05) < 0.006
    assert (holdout_mask(ids, "spring-sale", 0.05) == first).all()
    other = holdout_mask(ids, "summer-sale", 0.05)
    assert abs(other.mean() - 0.05) < 0.006 and (other != first).any()
    assert abs(holdout_mask(ids, "spring-sale", 0.2).mean() - 0.2) < 0.015


def test_holdout_customers_get_no_contact_but_the_policy_choice_is_reported():
    customers = frame(*(customer(f"C{i}", churn_probability=0.9, clv=300.0) for i in range(2_000)))
    result = recommend(customers, PolicySettings(holdout_share=0.1), campaign_id="c-7")
    held = result[result["holdout"]]
    assert 0.07 < result["holdout"].mean() < 0.13
    assert (held["next_best_action"] == "none").all() and held["next_best_channel"].isna().all()
    assert (held["expected_value"] == 0).all() and (
        held["no_contact_reason"] == HOLDOUT_REASON
    ).all()
    assert (held["policy_action"] == "email").all() and (held["policy_expected_value"] > 0).all()
    assert not held["win_back"].any() and held["policy_win_back_action"].notna().all()
    treated = result[~result["holdout"]]
    assert (treated["next_best_action"] == "email").all() and treated["win_back"].all()
    again = recommend(customers, PolicySettings(holdout_share=0.1), campaign_id="c-7")
    assert (again["holdout"] == result["holdout"]).all()


# --- degraded inputs, shapes, speed -------------------------------------------------------------


def test_without_a_propensity_model_nothing_is_recommended_but_win_back_still_works():
    row = {k: v for k, v in lapsed_customer().items() if not k.startswith("conversion_")}
    answer = one(row, alternatives=True)
    assert (
        answer["next_best_action"] == "none" and answer["no_contact_reason"] == NO_PROPENSITY_REASON
    )
    assert (
        answer["win_back"] and answer["win_back_action"] == "push"
    )  # the cheapest eligible channel
    assert [a["action"] for a in answer["alternatives"]] == ["none"]


def test_without_churn_and_clv_models_win_back_uses_lapse_and_net_revenue():
    row = {
        k: v
        for k, v in lapsed_customer(net_revenue_365d=200.0).items()
        if k not in ("churn_probability", "clv")
    }
    answer = one(row)
    assert answer["win_back"] and answer["win_back_reason"] == "lapsed"
    assert answer["win_back_value"] == pytest.approx(200 * 0.1 - 0.002 - 0.2 * 100 * 0.065)
    assert answer["next_best_action"] == "email:20pct"


def test_only_customer_ids_still_get_an_answer():
    result = recommend(pd.DataFrame({"customer_id": ["A", "B"]}), NO_HOLDOUT, alternatives=True)
    assert (result["next_best_action"] == "none").all() and not result["win_back"].any()
    with pytest.raises(ValueError, match="customer_id"):
        recommend(pd.DataFrame({"clv": [1.0]}), NO_HOLDOUT)


def test_online_shaped_input_gives_the_batch_answer():
    # Given: the same customers as floats (batch) and as Python objects with None (online reader)
    rows = [
        customer("A"),
        lapsed_customer(customer_id="B"),
        customer("C", email_consent=None, has_phone=None),
    ]
    batch = frame(*rows)
    online = batch.astype(object).where(batch.notna(), None)
    nullable = batch.astype({"email_consent": "Int64", "touches_7d": "Int64"})
    # Then
    expected = recommend(batch, NO_HOLDOUT)
    pd.testing.assert_frame_equal(recommend(online, NO_HOLDOUT), expected)
    pd.testing.assert_frame_equal(recommend(nullable, NO_HOLDOUT), expected)


def test_numpy_columns_give_the_frame_answer():
    # Given: customers as a frame (batch) and as numpy columns with None (the service's online read)
    rows = [customer(f"C{i}", email_consent=i % 2, push_consent=None if i % 3 else 1) for i in range(30)]
    rows += [lapsed_customer(customer_id="L"), customer("N", email_consent=None, has_phone=None)]
    batch = frame(*rows)
    online = {c: np.asarray(batch[c].astype(object).where(batch[c].notna(), None).to_numpy()) for c in batch}
    # When: the policy decides on each, with the alternatives the service asks for
    expected = recommend(batch, PolicySettings(), campaign_id="spring", alternatives=True)
    got = decide(online, PolicySettings(), campaign_id="spring", alternatives=True)
    # Then: the same decisions, column by column
    pd.testing.assert_frame_equal(pd.DataFrame(got), expected)


def test_row_order_and_index_are_preserved():
    customers = frame(*(customer(f"C{i}", email_consent=i % 2) for i in range(50)))
    shuffled = customers.sample(frac=1.0, random_state=3)
    result = recommend(shuffled, NO_HOLDOUT)
    assert list(result.index) == list(shuffled.index)
    assert list(result["customer_id"]) == list(shuffled["customer_id"])
    expected = np.where(shuffled["email_consent"] == 1, "email", "push")
    assert list(result["next_best_action"]) == list(expected)


def test_output_columns_are_stable():
    result = recommend(frame(customer()), PolicySettings())
    assert list(result.columns) == [
        "customer_id",
        "next_best_action",
        "next_best_channel",
        "next_best_offer",
        "expected_value",
        "policy_action",
        "policy_expected_value",
        "holdout",
        "no_contact_reason",
        "win_back",
        "win_back_action",
        "win_back_channel",
        "win_back_offer",
        "win_back_timing",
        "win_back_value",
        "win_back_reason",
        "policy_win_back_action",
        "alternatives",
        "eligible_email",
        "eligible_push",
        "eligible_sms",
        "ineligible_reason_email",
        "ineligible_reason_push",
        "ineligible_reason_sms",
    ]
    assert recommend(frame(customer()).iloc[:0], PolicySettings()).shape == (0, 24)


def synthetic_base(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    def sometimes_missing(values: np.ndarray, share: float) -> np.ndarray:
        values = values.astype(float)
        values[rng.random(rows) < share] = np.nan
        return values

    data = {
        "customer_id": [f"C{i:09d}" for i in range(rows)],
        "churn_probability": rng.random(rows),
        "clv": rng.exponential(300, rows),
        "average_order_value": sometimes_missing(rng.lognormal(3.8, 0.6, rows), 0.1),
        "days_since_last_order": sometimes_missing(rng.exponential(80, rows), 0.1),
        "net_revenue_365d": rng.exponential(300, rows),
        "has_email": rng.integers(0, 2, rows),
        "has_phone": rng.integers(0, 2, rows),
        "app_installed": rng.integers(0, 2, rows),
        "latest_app_installed": sometimes_missing(rng.integers(0, 2, rows), 0.5),
        "touches_7d": rng.poisson(1, rows),
        "touches_30d": rng.poisson(4, rows),
    }
    base = rng.random(rows) * 0.05
    data["conversion_none"] = base
    for channel in CHANNELS:
        uplift = rng.normal(0.01, 0.01, rows)
        data |= {
            f"{channel}_consent": sometimes_missing(rng.integers(0, 2, rows), 0.3),
            f"latest_{channel}_consent": sometimes_missing(rng.integers(0, 2, rows), 0.7),
            f"{channel}_sends_7d": rng.poisson(0.5, rows),
            f"{channel}_sends_30d": rng.poisson(2, rows),
            f"{channel}_sends_90d": rng.poisson(4, rows),
            f"{channel}_days_since_last_touch": sometimes_missing(rng.exponential(10, rows), 0.2),
            f"conversion_{channel}": base + uplift,
            f"conversion_{channel}_10pct": base + 1.5 * uplift,
            f"conversion_{channel}_20pct": base + 2 * uplift,
        }
    return pd.DataFrame(data)


def test_the_whole_policy_on_100k_rows_takes_seconds_not_minutes():
    customers = synthetic_base(100_000)
    started = time.perf_counter()
    result = recommend(customers, PolicySettings())
    elapsed = time.perf_counter() - started
    assert len(result) == 100_000 and result["next_best_action"].nunique() > 3
    assert elapsed < 10, f"{elapsed:.1f} s"
    assert math.isclose(result["holdout"].mean(), 0.05, abs_tol=0.005)


def test_reasons_explain_the_touch_of_the_policys_action():
    from serving.policy import explained_touches

    # Given the policy's actions: an SMS with an offer, a plain push, no contact
    channels, offers = explained_touches(np.array(["sms:20pct", "push", "none"], dtype=object))
    # Then the propensity reasons are computed for that channel and offer (an SMS recommendation was
    # explained by e-mail facts), and for a plain e-mail when the action is none
    assert channels.tolist() == ["sms", "push", "email"]
    assert offers.tolist() == ["20pct", "none", "none"]
