"""Behaviour of the LightGBM models: constraints hold, results repeat, scoring tolerates new inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from training.models import (
    Calibration,
    CustomerModel,
    TrainingParameters,
    add_touch_features,
    fit_classifier,
    fit_value_models,
)
from training.scoring import score_columns
from training.tracking import ScoringModel

FAST = TrainingParameters(max_rounds=120, early_stopping_rounds=20, min_data_in_leaf=20, threads=1)


def churn_frame(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn driven by recency relative to the usual gap, with a noisy, non-monotone twist."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "days_since_last_order": rng.exponential(60, rows),
        "mean_days_between_orders": rng.gamma(2, 25, rows),
        "orders_365d": rng.poisson(4, rows).astype(float),
        "region": rng.choice(["north", "south", None], rows),
    })
    signal = frame["days_since_last_order"] / frame["mean_days_between_orders"] - 0.2 * frame["orders_365d"]
    signal += 0.5 * np.sin(frame["days_since_last_order"] / 9)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-(signal - 1)))).astype(float)
    return frame, labels


@pytest.fixture(scope="module")
def churn_model() -> CustomerModel:
    frame, labels = churn_frame(4000, 1)
    tune, tune_labels = churn_frame(1500, 2)
    return fit_classifier("churn", frame, labels, tune, tune_labels, FAST, "churn_v1")


def test_churn_risk_does_not_fall_as_recency_worsens(churn_model):
    # Given: 200 customers, each seen at recencies from 0 to 400 days, everything else fixed
    base, _ = churn_frame(200, 3)
    grid = np.linspace(0, 400, 41)
    # When
    risk = np.column_stack([churn_model.predict(base.assign(days_since_last_order=d)) for d in grid])
    # Then
    assert (np.diff(risk, axis=1) >= -1e-12).all()
    assert (risk[:, -1] > risk[:, 0]).mean() > 0.9


def test_churn_risk_does_not_rise_with_more_orders(churn_model):
    base, _ = churn_frame(200, 4)
    risk = np.column_stack([churn_model.predict(base.assign(orders_365d=float(n))) for n in range(0, 15)])
    assert (np.diff(risk, axis=1) <= 1e-12).all()


def aging_frame(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers with purchase recency, the overdue ratio it makes and last month's orders; churn rises
    with the ratio but with a dip (noise a model would follow) and falls with recent orders."""
    rng = np.random.default_rng(seed)
    gap = rng.gamma(2, 25, rows)
    days = rng.exponential(60, rows)
    frame = pd.DataFrame({"days_since_last_order": days, "mean_days_between_orders": gap, "overdue_ratio": days / gap,
                          "orders_30d": np.where(days < 30, rng.poisson(1.5, rows) + 1, 0).astype(float)})
    signal = np.minimum(frame["overdue_ratio"], 4) - 1.5 * np.exp(-((frame["overdue_ratio"] - 2) ** 2) * 4)
    signal -= 0.3 * frame["orders_30d"]
    labels = (rng.random(rows) < 1 / (1 + np.exp(-(signal - 1)))).astype(float)
    return frame, labels


def test_churn_risk_does_not_fall_as_time_passes_without_an_order():
    # Given a churn model trained where the overdue ratio has a dip, and 300 customers
    frame, labels = aging_frame(6000, 30)
    tune, tune_labels = aging_frame(2000, 31)
    model = fit_classifier("churn", frame, labels, tune, tune_labels, FAST, "churn_v1")
    base, _ = aging_frame(300, 32)
    # When each is seen 0 to 300 days later with no order since: recency and the overdue ratio grow
    # together, and last month's orders drop out of the window
    def later(days: float) -> pd.DataFrame:
        recency = base["days_since_last_order"] + days
        return base.assign(days_since_last_order=recency, overdue_ratio=recency / base["mean_days_between_orders"],
                           orders_30d=np.where(recency < 30, base["orders_30d"], 0.0))
    risk = np.column_stack([model.predict(later(days)) for days in np.linspace(0, 300, 61)])
    # Then nobody's risk falls (the dip is not followed), and most rise
    assert (np.diff(risk, axis=1) >= -1e-12).all()
    assert (risk[:, -1] > risk[:, 0]).mean() > 0.8


def test_returns_never_raise_the_customer_lifetime_value():
    # Given value models trained where returns carry no information about future net spend (as in the
    # simulator: the return habit is independent of buying), with a spurious wiggle in the return rate
    rng = np.random.default_rng(33)
    rows = 6000
    gross = rng.gamma(1, 300, rows)
    returned = gross * rng.beta(1, 8, rows)
    frame = pd.DataFrame({"net_revenue_365d": gross - returned, "net_revenue_total": 2 * gross - returned,
                          "orders_365d": rng.poisson(3, rows).astype(float), "returned_total": returned,
                          "return_rate": returned / gross})
    value = np.where(rng.random(rows) < 0.4, gross * rng.lognormal(0, 0.4, rows) * (1 - frame["return_rate"]) *
                     (1 + 0.5 * np.sin(frame["return_rate"] * 60)), 0.0)
    models = fit_value_models(frame[:4000], value[:4000], frame[4000:], FAST, value[4000:], "clv_v1")
    # When 300 customers without returns return a growing share of their spend (their gross spend held)
    keep = frame[4000:4300].assign(returned_total=0.0, return_rate=0.0).reset_index(drop=True)
    spend = keep["net_revenue_365d"]
    def returning(share: float) -> pd.DataFrame:
        return keep.assign(returned_total=spend * share, return_rate=share, net_revenue_365d=spend * (1 - share),
                           net_revenue_total=keep["net_revenue_total"] - spend * share)
    for name, model in models.items():
        value_after = np.column_stack([model.predict(returning(share)) for share in np.linspace(0, 0.9, 19)])
        # Then no customer's value rises with their returns
        assert (np.diff(value_after, axis=1) <= 1e-9).all(), name


def test_probabilities_are_calibrated_into_the_unit_interval(churn_model):
    frame, _ = churn_frame(500, 5)
    predictions = churn_model.predict(frame)
    assert ((predictions >= 0) & (predictions <= 1)).all()


def test_no_calibrated_churn_probability_is_a_certainty():
    # Given raw scores whose lowest block never churned and whose highest always did
    raw = np.linspace(0, 1, 400)
    labels = np.r_[np.zeros(50), (np.random.default_rng(1).random(300) < np.linspace(0.1, 0.9, 300)), np.ones(50)]
    # When isotonic calibration is fitted on them
    calibration = Calibration.fit(raw, labels.astype(float))
    probabilities = calibration.apply(raw)
    # Then the end blocks say (k + 1) / (n + 2), not 0 or 1, and the order of the scores is kept
    assert 0 < probabilities.min() <= 1 / 52 and 51 / 52 <= probabilities.max() < 1
    assert (np.diff(probabilities) >= 0).all()
    # and a block in the middle keeps its own rate
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, labels).predict(raw)
    middle = (plain > 0) & (plain < 1)
    assert np.allclose(probabilities[middle], plain[middle])


def test_same_data_and_seed_give_the_same_model():
    frame, labels = churn_frame(2000, 6)
    tune, tune_labels = churn_frame(800, 7)
    first = fit_classifier("churn", frame, labels, tune, tune_labels, FAST, "churn_v1")
    second = fit_classifier("churn", frame, labels, tune, tune_labels, FAST, "churn_v1")
    probe, _ = churn_frame(300, 8)
    np.testing.assert_array_equal(first.predict(probe), second.predict(probe))


def test_an_unseen_category_scores_like_a_missing_one(churn_model):
    frame, _ = churn_frame(50, 9)
    unseen = churn_model.predict(frame.assign(region="an island"))
    missing = churn_model.predict(frame.assign(region=None))
    np.testing.assert_allclose(unseen, missing)


def test_missing_feature_columns_are_named():
    frame, labels = churn_frame(600, 10)
    model = fit_classifier("churn", frame, labels, frame, labels, FAST, "churn_v1")
    with pytest.raises(KeyError, match="orders_365d"):
        model.predict(frame.drop(columns="orders_365d"))


def test_contributions_add_up_to_the_raw_score(churn_model):
    frame, _ = churn_frame(20, 11)
    contributions = churn_model.contributions(frame)
    raw = churn_model.boosters["classifier"].predict(churn_model.prepare(frame), raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, rtol=1e-6)


def test_a_probability_read_from_contributions_equals_the_prediction(churn_model):
    # Given: the SHAP values the service computes for its reason phrases
    frame, _ = churn_frame(200, 13)
    values, _ = churn_model.explain_columns({c: frame[c].to_numpy() for c in frame})
    # When: the churn probability is read from them instead of from the trees
    from_contributions = churn_model.predict_from_contributions(values)
    # Then: the same calibrated probabilities, to float rounding
    np.testing.assert_allclose(from_contributions, churn_model.predict(frame), rtol=0, atol=1e-12)


def test_customers_outside_the_churn_population_get_no_churn_probability(churn_model):
    # Given: a churn model that learned from customers with an order in the last 365 days, and
    # customers who never ordered, last ordered 400 days ago, and 30 days ago
    frame, _ = churn_frame(3, seed=5)
    frame["days_since_last_order"] = [np.nan, 400.0, 30.0]
    frame["customer_id"] = ["never", "lapsed", "recent"]
    restricted = dataclasses.replace(churn_model, population_days=365)
    # When
    churn = score_columns(frame, {"churn": restricted})["churn_probability"]
    unrestricted = score_columns(frame, {"churn": dataclasses.replace(churn_model, population_days=None)})
    registry = ScoringModel(restricted).predict(None, frame.drop(columns="customer_id")).to_numpy()
    # Then: only the recent buyer is scored, by `cdp score` and by the registry's pyfunc alike; a model
    # that did not record its population scores everyone
    assert np.isnan(churn[:2]).all() and 0 < churn[2] < 1
    np.testing.assert_array_equal(registry, churn)
    assert np.isfinite(unrestricted["churn_probability"]).all()


def test_a_two_part_model_is_not_read_from_contributions():
    rng = np.random.default_rng(14)
    frame = pd.DataFrame({"net_revenue_365d": rng.gamma(1, 200, 1500), "orders_365d": rng.poisson(3, 1500).astype(float)})
    value = np.where(rng.random(1500) < 0.4, frame["net_revenue_365d"], 0.0)
    two_part = fit_value_models(frame[:1000], value[:1000], frame[1000:], FAST, value[1000:], "clv_v1")["two_part"]
    assert two_part.predict_from_contributions(two_part.contributions(frame[:5]).to_numpy()) is None


def test_touch_features_copy_the_touched_channel():
    frame = pd.DataFrame({"channel": ["email", "sms", "none"], "email_open_rate_90d": [0.5, 0.4, 0.3],
                          "sms_open_rate_90d": [0.1, 0.2, 0.9]})
    result = add_touch_features(frame)
    assert result["touched_open_rate_90d"].tolist()[:2] == [0.5, 0.2]
    assert np.isnan(result["touched_open_rate_90d"].iloc[2])


def test_clv_candidates_rank_big_spenders_first():
    rng = np.random.default_rng(12)
    frame = pd.DataFrame({"net_revenue_365d": rng.gamma(1, 200, 3000), "orders_365d": rng.poisson(3, 3000).astype(float)})
    buys = rng.random(3000) < 0.2 + 0.1 * np.minimum(frame["orders_365d"], 5)
    value = np.where(buys, frame["net_revenue_365d"] * rng.lognormal(0, 0.3, 3000), 0.0)
    candidates = fit_value_models(frame[:2000], value[:2000], frame[2000:], FAST, value[2000:], "clv_v1")
    for model in candidates.values():
        predicted = model.predict(frame[2000:])
        assert (predicted >= 0).all()
        ranked = value[2000:][np.argsort(-predicted)]
        assert ranked[:100].mean() > 2 * ranked[500:].mean()


def test_the_log_value_clv_sums_to_the_truth_on_held_out_rows_not_to_a_typical_value():
    # Given heavy-tailed spend (lognormal, sigma 0.7: the mean is 1.28x the median)
    rng = np.random.default_rng(21)
    rows = 20000
    frame = pd.DataFrame({"net_revenue_365d": rng.gamma(1, 200, rows), "orders_365d": rng.poisson(3, rows).astype(float)})
    buys = rng.random(rows) < 0.3
    value = np.where(buys, (20 + 0.5 * frame["net_revenue_365d"]) * rng.lognormal(0, 0.7, rows), 0.0)
    train, tune, test = slice(0, 10000), slice(10000, 15000), slice(15000, rows)
    model = fit_value_models(frame[train], value[train], frame[tune], FAST, value[tune], "clv_v1")["two_part_log"]
    # When the held-out rows are predicted
    smeared = model.predict(frame[test]).sum() / value[test].sum()
    model.value_smearing, smearing = 1.0, model.value_smearing
    typical = model.predict(frame[test]).sum() / value[test].sum()
    # Then their sum is near what they spent; exp of the predicted mean logarithm alone falls far short
    assert smearing > 1.1
    assert abs(smeared - 1) < 0.12 and typical < 0.85


def test_no_scored_action_is_worth_less_than_no_contact():
    # Given: touches where e-mail helps the responsive, push helps nobody, and noise is heavy
    from training.scoring import score_features

    rng = np.random.default_rng(13)
    rows = 6000
    frame = pd.DataFrame({
        "email_click_rate_90d": rng.random(rows), "push_click_rate_90d": rng.random(rows),
        "sms_click_rate_90d": rng.random(rows), "days_since_last_order": rng.exponential(50, rows),
        "channel": rng.choice(["none", "email", "push", "sms"], rows),
        "offer": rng.choice(["none", "10pct"], rows),
    })
    base = 0.1 + 0.1 * (frame["days_since_last_order"] < 30)
    boost = np.where(frame["channel"] == "email", 0.2 * frame["email_click_rate_90d"], 0.0)
    labels = (rng.random(rows) < base + boost).astype(float)
    model = fit_classifier("propensity", frame[:4500], labels[:4500], frame[4500:], labels[4500:], FAST, "propensity_v1")
    # When: every customer is scored with each action
    probe = frame[4500:].drop(columns=["channel", "offer"]).reset_index(drop=True).assign(customer_id="C")
    scores = score_features(probe, {"propensity": model})
    # Then: no action scores below no contact; a discount never scores below the same channel without
    for channel in ("email", "push", "sms"):
        assert (scores[f"conversion_{channel}"] >= scores["conversion_none"]).all(), channel
        assert (model.predict(probe.assign(channel=channel, offer="10pct"))
                >= model.predict(probe.assign(channel=channel, offer="none")) - 1e-12).all()
    assert scores["conversion_email"].mean() > scores["conversion_push"].mean()
    assert model.channels == ["email", "push", "sms"] and model.offers == ["10pct", "none"]


def propensity_example(seed: int = 13, rows: int = 6000) -> tuple[pd.DataFrame, np.ndarray]:
    """Touches where e-mail helps customers who click e-mails and nothing else helps anyone; without a
    contact, customers who bought when held out before (`none_response_rate_365d`, which the model
    reads as `touched_response_rate_365d` for no contact) buy more."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(rows)],
        "email_click_rate_90d": rng.random(rows), "days_since_last_order": rng.exponential(50, rows),
        "none_response_rate_365d": rng.random(rows),
        "channel": rng.choice(["none", "email", "push"], rows), "offer": "none",
    })
    boost = np.where(frame["channel"] == "email", 0.2 * frame["email_click_rate_90d"], 0.0)
    boost += np.where(frame["channel"] == "none", 0.1 * frame["none_response_rate_365d"], 0.0)
    labels = (rng.random(rows) < 0.1 + 0.1 * (frame["days_since_last_order"] < 30) + boost).astype(float)
    return frame, labels


@pytest.mark.parametrize("shrinkage", [0.0, 0.5, 1.0])
def test_uplift_shrinkage_moves_each_customers_uplift_toward_the_average(shrinkage):
    from training.scoring import average_uplifts, score_features

    # Given: a propensity model and its average uplifts over the training rows
    frame, labels = propensity_example()
    model = fit_classifier("propensity", frame[:4500], labels[:4500], frame[4500:], labels[4500:], FAST, "propensity_v1")
    probe = frame[4500:].drop(columns=["channel", "offer"]).reset_index(drop=True)
    own = score_features(probe, {"propensity": model})
    model.average_uplift = average_uplifts(model, frame[:4500])
    # When: customers are scored with the shrinkage set
    model.uplift_shrinkage = shrinkage
    shrunk = score_features(probe, {"propensity": model})
    # Then: no contact keeps its probability; each contact's uplift is the weighted mean of own and average
    np.testing.assert_allclose(shrunk["conversion_none"], own["conversion_none"])
    assert model.average_uplift["email"] > model.average_uplift["push"] >= 0
    for channel in ("email", "push"):
        own_uplift = own[f"conversion_{channel}"] - own["conversion_none"]
        expected = (1 - shrinkage) * own_uplift + shrinkage * model.average_uplift[channel]
        np.testing.assert_allclose(shrunk[f"conversion_{channel}"] - shrunk["conversion_none"], expected, atol=1e-12)
    if shrinkage == 1.0:  # every customer gets the same uplift: the averages decide the contact
        assert (shrunk["conversion_email"] - shrunk["conversion_none"]).std() < 1e-12
    assert abs(model.average_uplift["email"] - (own["conversion_email"] - own["conversion_none"]).mean()) < 0.02


def test_an_ineligible_action_stays_unscored_after_shrinkage():
    from training.scoring import average_uplifts, score_features

    frame, labels = propensity_example()
    model = fit_classifier("propensity", frame[:4500], labels[:4500], frame[4500:], labels[4500:], FAST, "propensity_v1")
    model.average_uplift, model.uplift_shrinkage = average_uplifts(model, frame[:4500]), 1.0
    probe = frame[4500:4510].drop(columns=["channel", "offer"]).reset_index(drop=True)
    eligible = pd.DataFrame({"email": [True] * 5 + [False] * 5, "push": False})
    scores = score_features(probe, {"propensity": model}, eligible_channels=eligible)
    assert scores["conversion_email"][:5].notna().all() and scores["conversion_email"][5:].isna().all()
    assert scores["conversion_push"].isna().all()


def test_large_columns_encode_as_row_by_row_does():
    from training.models import (
        DISTINCT_ROWS,
        MISSING_CATEGORY,
        FeatureEncoding,
        offer_depths,
        touch_features,
    )

    # Given: category, channel and offer values with every kind of missing value, numbers and unseen levels
    encoding = FeatureEncoding(["region"], {"region": [MISSING_CATEGORY, "north", "south", "7"]})
    mixed = np.array(["north", None, np.nan, pd.NA, "south", 7, "east", "7", pd.NaT], dtype=object)
    channels = np.array(["email", None, np.nan, "push", "none", "sms", pd.NA, "email", "fax"], dtype=object)
    offers = np.array(["10pct", None, "none", np.nan, "20pct", "vip", pd.NA, "2.5pct", "10pct"], dtype=object)
    repeats = -(-DISTINCT_ROWS // len(mixed)) + 1
    # When: encoded one by one (a small request) and as a large column (batch scoring)
    small = encoding._codes("region", mixed)
    large = encoding._codes("region", np.tile(mixed, repeats))
    # Then: the same codes, depths and touch features, value for value
    np.testing.assert_array_equal(np.tile(small, repeats), large)
    np.testing.assert_array_equal(np.tile(offer_depths(offers), repeats), offer_depths(np.tile(offers, repeats)))
    one = touch_features({"channel": channels, "offer": offers}, ["email", "push", "sms"])
    many = touch_features({"channel": np.tile(channels, repeats), "offer": np.tile(offers, repeats)}, ["email", "push", "sms"])
    assert set(one) == set(many)
    for name in one:
        np.testing.assert_array_equal(np.tile(one[name], repeats), many[name], err_msg=name)
    assert list(small[:4]) == [1, 0, 0, 0] and small[5] == 3 and small[6] == 0  # 7 reads as "7"; unseen = missing
