"""Baselines: each ranks a simple, known situation the way the business expects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.baselines import (
    _summarize_transactions,
    fit_channel_average_response,
    fit_logistic_regression,
    predict_bgnbd_gamma_gamma,
    predict_last_period_spend,
    score_rfm_churn,
)

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


def synthetic_churn_frame(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn driven by recency and by region, with missing values and a nullable integer column."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60, rows)
    region = rng.choice(["north", "south", "east"], rows)
    logit = (recency - 60) / 25 + np.where(region == "south", 1.5, 0.0) - 0.5
    labels = (rng.uniform(0, 1, rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({
        "days_since_last_order": np.where(rng.uniform(0, 1, rows) < 0.05, np.nan, recency),
        "orders_365d": pd.array(rng.poisson(3, rows), dtype="Int64"),
        "noise": rng.normal(0, 1, rows),
        "region": pd.Categorical(region),
        "is_member": rng.uniform(0, 1, rows) < 0.3,
    })
    frame.loc[frame.index[:10], "orders_365d"] = pd.NA
    return frame, labels


def test_logistic_regression_learns_a_simple_signal_on_held_out_data():
    # given training and held-out rows from the same synthetic process
    train, train_labels = synthetic_churn_frame(3_000, seed=1)
    test, test_labels = synthetic_churn_frame(2_000, seed=2)
    # when
    predict = fit_logistic_regression(train, train_labels)
    probabilities = predict(test)
    # then
    assert probabilities.shape == (2_000,)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert roc_auc_score(test_labels, probabilities) > 0.8


def test_logistic_regression_is_deterministic_and_ignores_unseen_categories():
    # given the same training data twice, and scoring rows with a region never seen in training
    train, labels = synthetic_churn_frame(1_000, seed=3)
    test, _ = synthetic_churn_frame(50, seed=4)
    test["region"] = "atlantis"
    # when
    first = fit_logistic_regression(train, labels)(test)
    second = fit_logistic_regression(train, labels)(test)
    # then
    np.testing.assert_array_equal(first, second)
    assert np.isfinite(first).all()


def test_logistic_regression_with_a_single_class_returns_its_rate():
    # given a window where everybody churned
    train, _ = synthetic_churn_frame(100, seed=5)
    # when
    predict = fit_logistic_regression(train, np.ones(100))
    # then
    np.testing.assert_array_equal(predict(train.head(3)), [1.0, 1.0, 1.0])


def test_rfm_rule_ranks_a_recent_frequent_big_spender_below_a_lapsed_customer():
    # given five customers from best to worst, and one with no order at all
    features = pd.DataFrame({
        "customer_id": ["champion", "good", "average", "fading", "lapsed", "never"],
        "days_since_last_order": [3.0, 20.0, 60.0, 150.0, 340.0, np.nan],
        "orders_365d": [12, 6, 3, 2, 1, 0],
        "net_revenue_365d": [2_400.0, 900.0, 300.0, 150.0, 40.0, 0.0],
    })
    # when
    risk = score_rfm_churn(features)
    # then
    assert risk[0] < risk[1] < risk[2] < risk[3] < risk[4] <= risk[5]
    assert risk[0] == pytest.approx(0.0)
    assert risk[5] == pytest.approx(1.0)  # missing recency, fewest orders, least revenue: all worst


def test_rfm_rule_scores_quintiles_within_the_frame():
    # given 10 customers who differ only by recency
    features = pd.DataFrame({"days_since_last_order": np.arange(10.0), "orders_365d": [1] * 10,
                             "net_revenue_365d": [50.0] * 10})
    # when
    risk = score_rfm_churn(features)
    # then the two most recent get R = 5 and the two most lapsed R = 1; ties in F and M score 3
    assert risk[:2] == pytest.approx([(15 - 5 - 3 - 3) / 12] * 2)
    assert risk[-2:] == pytest.approx([(15 - 1 - 3 - 3) / 12] * 2)


def test_last_period_spend_is_pro_rata_net_revenue_with_missing_as_zero():
    # given
    features = pd.DataFrame({"net_revenue_365d": [365.0, np.nan, -73.0]})
    # when
    predicted = predict_last_period_spend(features, horizon_days=90)
    # then
    np.testing.assert_allclose(predicted, [90.0, 0.0, -18.0])


def test_channel_average_response_shrinks_rare_channels_and_defaults_unknown_to_overall():
    # given 100 email touches converting 10%, 2 sms touches both converting and 98 controls at 4%
    channels = pd.Series(["email"] * 100 + ["sms"] * 2 + ["none"] * 98)
    converted = np.r_[np.ones(10), np.zeros(90), np.ones(2), np.ones(4), np.zeros(94)]
    overall = 16 / 200
    # when
    respond = fit_channel_average_response(channels, converted)
    predicted = respond(pd.Series(["email", "sms", "none", "carrier_pigeon"]))
    # then
    np.testing.assert_allclose(predicted, [(10 + 20 * overall) / 120, (2 + 20 * overall) / 22,
                                           (4 + 20 * overall) / 118, overall])
    assert predicted[1] < 0.5  # two lucky sends do not make sms a sure thing


def test_transaction_summary_by_hand():
    # given three orders on two days for one customer (the last day fully returned) and one order for another
    transactions = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "b"],
        "ordered_at": pd.to_datetime(["2025-12-01 09:00", "2025-12-11 10:00", "2025-12-11 18:00",
                                      "2025-12-21 12:00", "2026-01-01 00:00"], utc=True),
        "net_amount": [50.0, 30.0, -30.0, 20.0, 999.0],
    })
    # when (the order at as_of itself is not known yet)
    summary = _summarize_transactions(transactions, AS_OF).set_index("customer_id")
    # then
    assert summary.loc["a"].tolist() == [1.0, 10.0, 31.0, 0.0]
    assert summary.loc["b"].tolist() == [0.0, 0.0, 11.0, 0.0]


def synthetic_transactions(customers: int, seed: int) -> pd.DataFrame:
    """A population of buyers with varied rates, lifetimes and spend, over two years before AS_OF."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(0, 700, customers)
    end = np.minimum(first + rng.exponential(300, customers), 730)
    counts = rng.poisson(rng.gamma(0.8, 1 / 40, customers) * (end - first))
    owner = np.r_[np.arange(customers), np.repeat(np.arange(customers), counts)]
    day = np.r_[first, np.repeat(first, counts) + rng.uniform(0, 1, counts.sum()) * np.repeat(end - first, counts)]
    spend = rng.gamma(3, 20, customers)
    return pd.DataFrame({"customer_id": [f"p{i}" for i in owner],
                         "ordered_at": AS_OF - pd.Timedelta(days=730) + pd.to_timedelta(day, unit="D"),
                         "net_amount": rng.gamma(4, spend[owner] / 4)})


def orders(customer: str, days_before: list[int], amount: float) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": customer,
                         "ordered_at": [AS_OF - pd.Timedelta(days=d) for d in days_before],
                         "net_amount": amount})


@pytest.fixture(scope="module")
def bgnbd_case() -> tuple[pd.DataFrame, list[str], np.ndarray]:
    transactions = pd.concat([
        synthetic_transactions(2_000, seed=11),
        orders("frequent_recent", [400, 300, 200, 150, 100, 60, 30, 10, 3], 80.0),
        orders("rare_lapsed", [500, 400], 80.0),
        orders("frequent_lapsed", [700, 650, 600, 550, 500, 450, 400, 350, 300], 80.0),
        orders("frequent_recent_returner", [400, 300, 200, 150, 100, 60, 30, 10, 3], 0.0),
        orders("frequent_recent_over_refunded", [400, 300, 200, 150, 100, 60, 30, 10, 3], -5.0),
        orders("one_time", [100], 80.0),
    ], ignore_index=True)
    customers = ["rare_lapsed", "never_bought", "frequent_recent", "frequent_lapsed",
                 "frequent_recent_returner", "frequent_recent_over_refunded", "one_time", "p0"]
    return transactions, customers, predict_bgnbd_gamma_gamma(transactions, AS_OF, 365, customers)


@pytest.mark.slow
def test_bgnbd_gamma_gamma_values_recent_frequent_buyers_highest(bgnbd_case):
    # given known customers among a synthetic population (fixture), when predicting 365 days
    _, customers, clv = bgnbd_case
    value = dict(zip(customers, clv, strict=True))
    # then the output is aligned with `customers`, finite and non-negative
    assert clv.shape == (len(customers),)
    assert np.isfinite(clv).all() and (clv >= 0).all()
    # and recent, frequent buying is worth more than rare or lapsed buying
    assert value["frequent_recent"] > value["rare_lapsed"]
    assert value["frequent_recent"] > value["frequent_lapsed"]
    assert value["frequent_recent"] > value["one_time"] > 0
    # and returning everything is worth less than keeping it; a net below 0 counts as 0
    assert value["frequent_recent_returner"] < value["frequent_recent"] / 2
    assert value["frequent_recent_over_refunded"] == pytest.approx(value["frequent_recent_returner"])
    # and a customer without transactions gets 0 rather than an error
    assert value["never_bought"] == 0.0


@pytest.mark.slow
def test_bgnbd_gamma_gamma_is_deterministic_and_ignores_orders_from_as_of_on(bgnbd_case):
    # given the same inputs plus orders at and after as_of (which must not be known yet)
    transactions, customers, clv = bgnbd_case
    future = orders("rare_lapsed", [0, -5, -30], 5_000.0)
    # when
    again = predict_bgnbd_gamma_gamma(pd.concat([transactions, future], ignore_index=True), AS_OF, 365,
                                      list(reversed(customers)))
    # then
    np.testing.assert_allclose(again[::-1], clv, rtol=1e-9)


def test_bgnbd_gamma_gamma_without_transactions_predicts_zero():
    # given no transactions before as_of
    transactions = orders("late", [-1], 50.0)
    # when
    clv = predict_bgnbd_gamma_gamma(transactions, AS_OF, 365, ["late", "other"])
    # then
    np.testing.assert_array_equal(clv, [0.0, 0.0])


@pytest.mark.slow
def test_bgnbd_gamma_gamma_with_only_one_time_buyers_falls_back_to_known_order_values():
    # given buyers who never came back (no Gamma-Gamma fit possible), with and without a big order after as_of
    known = pd.concat([orders(f"c{i}", [10 + 7 * i], 40.0 + i) for i in range(30)], ignore_index=True)
    with_future = pd.concat([known, orders("c0", [-3], 10_000.0)], ignore_index=True)
    # when
    clv = predict_bgnbd_gamma_gamma(known, AS_OF, 365, ["c0", "c29"])
    clv_with_future = predict_bgnbd_gamma_gamma(with_future, AS_OF, 365, ["c0", "c29"])
    # then the values are finite, the more recent buyer is worth more, and the future order changes nothing
    assert np.isfinite(clv).all()
    assert clv[0] > clv[1] > 0
    np.testing.assert_allclose(clv_with_future, clv, rtol=1e-9)
