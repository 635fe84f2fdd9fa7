"""Reason codes: top SHAP drivers written as phrases with the customer's own values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.reasons import phrase, reason_phrases
from training.models import MISSING_CATEGORY, TrainingParameters, fit_classifier


def contributions(**values: float) -> pd.DataFrame:
    return pd.DataFrame([values | {"bias": -1.0}])


CUSTOMER = pd.DataFrame(
    [
        {
            "days_since_last_order": 143.2,
            "mean_days_between_orders": 35.4,
            "low_csat_tickets_365d": 2,
            "email_open_rate_90d": 0.6,
            "push_open_rate_90d": None,
            "orders_365d": 4,
            "net_revenue_365d": 412.5,
            "region": "north",
            "channel": "email",
            "loyalty_points": 1250.0,
        }
    ]
)


def test_phrases_carry_the_customers_values():
    # Given: recency, low-satisfaction tickets and e-mail opens drive the score up
    given = contributions(
        days_since_last_order=0.9,
        low_csat_tickets_365d=0.4,
        email_open_rate_90d=0.2,
        orders_365d=-0.5,
    )
    # When
    [reasons] = reason_phrases(given, CUSTOMER)
    # Then
    assert reasons == [
        "no purchase in 143 days, usually buys every 35",
        "2 support tickets with low satisfaction in the last year",
        "opened 60% of e-mails in the last 90 days",
    ]


def test_the_recency_the_usual_gap_and_the_overdue_ratio_make_one_phrase():
    # Given a customer whose recency, usual gap and overdue ratio all raise the risk: each phrase of them
    # quotes the others' values
    customer = CUSTOMER.assign(overdue_ratio=143.2 / 35.4)
    given = contributions(overdue_ratio=0.9, days_since_last_order=0.8, mean_days_between_orders=0.7,
                          low_csat_tickets_365d=0.1)
    # When the top three are written
    [reasons] = reason_phrases(given, customer, top=3)
    # Then the strongest of the three speaks for them once, and the next reason is another fact; no phrase
    # holds the "; " that joins phrases in a score file
    assert reasons == ["4.0 times the usual gap since the last order (143 days, usually 35)",
                       "2 support tickets with low satisfaction in the last year"]
    assert not [text for text in reasons if "; " in text]


@pytest.mark.parametrize(("recent", "before", "expected"), [
    (2, 0, "2 orders in the last 90 days, none in the 90 days before"),
    (0, 3, "no orders in the last 90 days, 3 orders in the 90 days before"),
    (1, 4, "1 order in the last 90 days, 4 orders in the 90 days before"),
    (2, 2, "ordering at the same pace: 2 orders in the last 90 days and in the 90 before"),
])
def test_the_order_trend_quotes_the_counts_not_the_smoothed_ratio(recent, before, expected):
    # Given the trend as the features store it, (last 90 days + 1) / (the 90 before + 1)
    values = {"orders_90d": recent, "order_trend_90d": (recent + 1) / (before + 1)}
    # Then the phrase says the counts (2 against none read as "3.0 times the orders" before)
    assert phrase("order_trend_90d", values) == expected


def test_top_k_follows_the_contributions_and_the_direction():
    given = contributions(
        days_since_last_order=0.1, orders_365d=-0.8, net_revenue_365d=0.3, region=-0.05
    )
    [up] = reason_phrases(given, CUSTOMER, top=2)
    [down] = reason_phrases(given, CUSTOMER, top=2, direction="down")
    [both] = reason_phrases(given, CUSTOMER, top=3, direction="abs")
    [one] = reason_phrases(given, CUSTOMER, top=1)
    assert up == [
        "net spend after returns 412 in the last year",
        "no purchase in 143 days, usually buys every 35",
    ]
    assert down == ["4 orders in the last year", "lives in region north"]
    assert both == [
        "4 orders in the last year",
        "net spend after returns 412 in the last year",
        "no purchase in 143 days, usually buys every 35",
    ]
    assert one == up[:1]


def test_net_explains_each_customer_the_way_the_score_went():
    # Given two customers: one whose drivers raise the risk overall, one whose drivers lower it
    features = pd.concat([CUSTOMER, CUSTOMER], ignore_index=True)
    given = pd.DataFrame({"days_since_last_order": [0.9, 0.2], "orders_365d": [-0.3, -0.8],
                          "region": [0.1, 0.1], "bias": [-1.0, -1.0]})
    # When explained with direction "net"
    high, low = reason_phrases(given, features, top=2, direction="net")
    # Then the high risk reads its raising drivers, the low risk its lowering ones (before, a low-risk
    # customer read "lives in region north" as the reason for a risk of 5%)
    assert high == ["no purchase in 143 days, usually buys every 35", "lives in region north"]
    assert low == ["4 orders in the last year"]


def test_only_features_pushing_in_the_direction_are_named():
    [reasons] = reason_phrases(contributions(orders_365d=-0.4, region=0.0), CUSTOMER, top=3)
    assert reasons == []


def test_each_row_is_explained_with_its_own_values():
    features = pd.DataFrame(
        {
            "days_since_last_order": [10.0, 300.0, np.nan],
            "mean_days_between_orders": [20.0, np.nan, np.nan],
        }
    )
    given = pd.DataFrame({"days_since_last_order": [1.0, 1.0, 1.0], "bias": [0.0, 0.0, 0.0]})
    assert reason_phrases(given, features) == [
        ["no purchase in 10 days, usually buys every 20"],
        ["no purchase in 300 days"],
        ["never ordered"],
    ]


def test_missing_values_are_phrased_sensibly():
    missing = {
        "days_since_last_order": None,
        "average_order_value": np.nan,
        "push_open_rate_90d": None,
        "sms_days_since_last_touch": None,
        "csat_mean_365d": None,
        "days_since_last_app_open": None,
        "email_consent": None,
    }
    assert phrase("days_since_last_order", missing) == "never ordered"
    assert phrase("average_order_value", missing) == "never ordered"
    assert phrase("push_open_rate_90d", missing) == "no push notifications in the last 90 days"
    assert phrase("sms_days_since_last_touch", missing) == "never sent a text message"
    assert phrase("csat_mean_365d", missing) == "no satisfaction rating in the last year"
    assert phrase("days_since_last_app_open", missing) == "never opened the app"
    assert phrase("email_consent", missing) == "consent to e-mails never recorded"
    assert (
        phrase("region", {"region": MISSING_CATEGORY}) == "region unknown"
    )  # as a model encodes it


def test_per_channel_and_per_window_families_share_a_template():
    values = {
        "push_click_rate_90d": 0.125,
        "sms_sends_30d": 1,
        "email_sends_7d": 3,
        "tickets_90d": 1,
        "gross_revenue_30d": 80.0,
        "latest_push_consent": 0,
        "share_of_orders_store": 0.5,
    }
    assert (
        phrase("push_click_rate_90d", values)
        == "clicked 12% of push notifications in the last 90 days"
    )
    assert phrase("sms_sends_30d", values) == "1 text message sent in the last 30 days"
    assert phrase("email_sends_7d", values) == "3 e-mails sent in the last 7 days"
    assert phrase("tickets_90d", values) == "1 support ticket in the last 90 days"
    assert phrase("gross_revenue_30d", values) == "spent 80.00 in the last 30 days"
    assert phrase("latest_push_consent", values) == "withdrew consent to push notifications"
    assert phrase("share_of_orders_store", values) == "50% of orders via a store"


def test_the_touched_channel_is_phrased_as_that_channel():
    given = contributions(touched_open_rate_90d=0.7, channel=0.2)
    [reasons] = reason_phrases(given, CUSTOMER)
    assert reasons == ["opened 60% of e-mails in the last 90 days", "contacted by e-mail"]


# What the propensity model explains: its encoded input, where the scored channel is a `touch_<channel>`
# indicator and its engagement a `touched_*` copy (training/models.py::touch_features), no `channel`.
ENCODED_EMAIL_TOUCH = {
    "touch_email": 1.0, "touch_push": 0.0, "touch_sms": 0.0, "touch_offer_depth": 0.0,
    "touched_sends_90d": 0.0, "touched_days_since_last_touch": 1.0, "touched_open_rate_90d": 0.25,
    "touched_click_rate_90d": None, "touched_response_rate_365d": None,
}


def test_touched_inputs_of_the_encoded_propensity_input_name_the_scored_channel():
    # Given the propensity model's encoded input for an e-mail without an offer
    # When its touch features are phrased
    phrases = {name: phrase(name, ENCODED_EMAIL_TOUCH) for name in ENCODED_EMAIL_TOUCH}
    # Then they read as the e-mail's, never as "touched" or "touch"
    assert phrases["touched_sends_90d"] == "0 e-mails sent in the last 90 days"
    assert phrases["touched_days_since_last_touch"] == "last e-mail 1 day ago"
    assert phrases["touched_open_rate_90d"] == "opened 25% of e-mails in the last 90 days"
    assert phrases["touched_click_rate_90d"] == "no e-mails in the last 90 days"
    assert phrases["touched_response_rate_365d"] == "no e-mails in the last year to measure a response by"
    assert phrases["touch_email"] == "contacted by e-mail"
    assert phrases["touch_push"] == "not contacted by push notification"
    assert phrases["touch_offer_depth"] == "no discount offered"
    assert not any("touch" in text for text in phrases.values()), phrases


def test_touched_inputs_follow_the_scored_channel_and_its_offer():
    # Given a text message with 20% off, scored through the encoded input
    sms = {**ENCODED_EMAIL_TOUCH, "touch_email": 0.0, "touch_sms": 1.0, "touch_offer_depth": 0.2,
           "touched_sends_90d": 2.0, "touched_days_since_last_touch": None, "touched_response_rate_365d": 0.125}
    # Then the phrases are the text message's
    assert phrase("touched_sends_90d", sms) == "2 text messages sent in the last 90 days"
    assert phrase("touched_days_since_last_touch", sms) == "never sent a text message"
    assert phrase("touched_response_rate_365d", sms) == "ordered within a week of 12% of text messages in the last year"
    assert phrase("touch_offer_depth", sms) == "20% off offered"


def test_without_a_contact_only_the_control_response_rate_is_quoted():
    # Given no contact (every channel indicator 0): the model reads the control group's response rate
    none = {**ENCODED_EMAIL_TOUCH, "touch_email": 0.0, "touched_response_rate_365d": 0.5, "touched_sends_90d": None}
    assert phrase("touched_response_rate_365d", none) == (
        "ordered within a week of 50% of the times held out of a contact in the last year")
    assert phrase("touched_sends_90d", none) == "no contact, so no channel's sends 90 days"
    assert phrase("none_response_rate_365d", {"none_response_rate_365d": None}) == (
        "never in a control group in the last year, so how they buy uncontacted is unknown")


def test_unknown_features_fall_back_to_their_name_in_words():
    assert phrase("loyalty_points", {"loyalty_points": 1250.0}) == "loyalty points is 1,250"
    assert phrase("loyalty_points", {"loyalty_points": None}) == "loyalty points unknown"
    assert phrase("attribute_vip_tier", {"attribute_vip_tier": "gold"}) == "vip tier is gold"
    assert phrase("attribute_marketing_segment", {"attribute_marketing_segment": "deal_seeker"}) == (
        "marketing segment is deal seeker")


def test_a_customer_without_a_customers_record_is_not_said_to_have_zero_records():
    # Given a customer known only from orders (no row in any system's customers table)
    assert phrase("source_records", {"source_records": 0}) == "no customer record in any system: known from activity only"
    assert phrase("source_records", {"source_records": 2}) == "known from 2 records across systems"
    assert phrase("visits_14d", {"visits_14d": 2.25}) == "visits 14 days is 2.2"


FEATURE_NAMES = [
    "orders_total",
    "gross_revenue_total",
    "returned_total",
    "net_revenue_total",
    "net_revenue_365d",
    "net_revenue_90d",
    "return_rate",
    "days_since_last_order",
    "days_since_first_order",
    "average_order_value",
    "mean_days_between_orders",
    "std_days_between_orders",
    "overdue_ratio",
    "orders_7d",
    "gross_revenue_7d",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "gross_revenue_365d",
    "order_trend_90d",
    "revenue_smoothed_90d",
    "discount_share",
    "share_of_orders_web",
    "share_of_orders_app",
    "share_of_orders_phone",
    "active_days_30d",
    "events_30d",
    "product_views_30d",
    "cart_adds_30d",
    "checkout_starts_30d",
    "searches_30d",
    "abandoned_carts_30d",
    "days_since_last_visit",
    "days_since_last_app_open",
    "email_sends_90d",
    "email_open_rate_90d",
    "email_click_rate_90d",
    "email_days_since_last_touch",
    "touches_7d",
    "touches_30d",
    "consents_withdrawn_total",
    "sms_consent",
    "app_installed",
    "has_email",
    "has_phone",
    "tickets_30d",
    "tickets_365d",
    "csat_mean_365d",
    "low_csat_tickets_365d",
    "days_since_last_ticket",
    "age_band",
    "region",
    "source_records",
    "latest_app_installed",
    "last_order_epoch_seconds",
    "last_visit_epoch_seconds",
    "offer",
    "channel",
]


@pytest.mark.parametrize("value", [None, 0, 1, 2.5, 0.25])
def test_every_feature_reads_as_words_for_any_value(value):
    for name in FEATURE_NAMES:
        values = {
            name: value
            if name not in ("age_band", "region", "offer", "channel") or value is None
            else {"age_band": "65_plus", "region": "west", "offer": "20pct", "channel": "sms"}[name]
        }
        text = phrase(name, values)
        assert (
            text
            and "_" not in text.replace("e-mail", "")
            and "nan" not in text
            and "None" not in text
        ), (name, text)


def test_reasons_from_a_real_lightgbm_model():
    # Given: churn driven by recency relative to the usual gap; exact SHAP contributions per row
    rng = np.random.default_rng(0)

    def sample(rows: int) -> tuple[pd.DataFrame, np.ndarray]:
        frame = pd.DataFrame(
            {
                "days_since_last_order": rng.exponential(60, rows),
                "mean_days_between_orders": rng.gamma(2, 25, rows),
                "orders_365d": rng.poisson(4, rows).astype(float),
            }
        )
        risk = (
            frame["days_since_last_order"] / frame["mean_days_between_orders"]
            - 0.2 * frame["orders_365d"]
        )
        return frame, (rng.random(rows) < 1 / (1 + np.exp(-(risk - 1)))).astype(float)

    model = fit_classifier(
        "churn",
        *sample(3000),
        *sample(1000),
        TrainingParameters(max_rounds=60, min_data_in_leaf=20, threads=1),
        "churn_v1",
    )
    customers = pd.DataFrame(
        {
            "days_since_last_order": [400.0, 2.0],
            "mean_days_between_orders": [20.0, 60.0],
            "orders_365d": [1.0, 12.0],
        }
    )
    # When
    shap = model.contributions(customers)
    reasons = reason_phrases(shap, customers, top=1)
    safe = reason_phrases(shap, customers, top=1, direction="down")
    # Then: the lapsed customer's risk is explained by their recency, with their numbers; the
    # recent buyer has nothing raising the risk, and what lowers it most is named
    assert reasons == [["no purchase in 400 days, usually buys every 20"], []]
    strongest = shap.drop(columns="bias").iloc[1].idxmin()
    assert safe[1] == [phrase(strongest, customers.iloc[1])]
    assert any(number in safe[1][0] for number in ("2 days", "60", "12 orders"))


def test_contributions_and_features_must_line_up():
    with pytest.raises(ValueError, match="rows"):
        reason_phrases(contributions(orders_365d=1.0), pd.concat([CUSTOMER, CUSTOMER]))
    with pytest.raises(ValueError, match="direction"):
        reason_phrases(contributions(orders_365d=1.0), CUSTOMER, direction="sideways")  # type: ignore[arg-type]


def test_unscored_churn_phrases_tell_an_order_after_the_features_from_no_order():
    from serving.reasons import unscored_churn_phrases

    # Given stored recency (never, 400 days) and days since an order after the features' moment (NaN: none)
    stored = np.array([np.nan, 400.0, np.nan, 400.0])
    later = np.array([np.nan, 2.0, 0.5, np.nan])
    # When / then: only an order after the stored features changes the phrase
    assert unscored_churn_phrases(stored, 365, later) == [
        "no churn score: never ordered (the churn model covers customers who ordered in the last 365 days)",
        "no churn score yet: the order 2 days ago came after the stored features the churn model reads "
        "(scored once the order is ingested and the features are rebuilt and materialized: the nightly `cdp run`)",
        "no churn score yet: the order today came after the stored features the churn model reads "
        "(scored once the order is ingested and the features are rebuilt and materialized: the nightly `cdp run`)",
        "no churn score: no order in the last 365 days (the churn model covers customers who did)",
    ]
    assert unscored_churn_phrases(stored, 365) == unscored_churn_phrases(stored, 365, np.full(4, np.nan))


def test_a_contacts_reasons_speak_of_its_own_channel():
    from serving.reasons import own_channel_contributions, phrases_from_contributions

    # Given two customers scored for an SMS and for an e-mail, whose strongest drivers include other
    # channels' facts
    names = ["email_sends_90d", "sms_sends_90d", "has_email", "latest_push_consent", "orders_365d"]
    values = np.array([[0.9, 0.5, 0.8, 0.7, 0.1], [0.9, 0.5, 0.8, 0.7, 0.1]])
    features = pd.DataFrame({"email_sends_90d": [0, 0], "sms_sends_90d": [0, 0], "has_email": [1, 1],
                             "latest_push_consent": [1, 1], "orders_365d": [4, 4]})
    # When their contributions keep only their own channel's features
    own = own_channel_contributions(names, values, ["sms", "email"], ["email", "push", "sms"])
    sms, email = phrases_from_contributions(names, own, features)
    # Then the SMS is explained by SMS facts and channel-free ones, the e-mail by e-mail facts
    assert sms == ["0 text messages sent in the last 90 days", "4 orders in the last year"]
    assert email == ["0 e-mails sent in the last 90 days", "e-mail address on file", "4 orders in the last year"]
