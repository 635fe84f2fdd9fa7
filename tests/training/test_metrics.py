"""Model metrics: hand-computed small cases, agreement with scikit-learn, and tie handling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training.metrics import (
    calibration_table,
    classification_metrics,
    expected_calibration_error,
    gains_by_decile,
    normalized_gini,
    qini_coefficient,
    regression_metrics,
    top_decile_capture,
    uplift_by_decile,
)


def calibrated_sample(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform on [0, 1] and labels drawn with exactly those probabilities."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, rows)
    return (rng.uniform(0, 1, rows) < scores).astype(int), scores


def test_classification_metrics_agree_with_scikit_learn():
    # given a noisy but informative score
    labels, scores = calibrated_sample(5_000)
    # when
    result = classification_metrics(labels, scores)
    # then
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["pr_auc"] == pytest.approx(average_precision_score(labels, scores))
    assert result["brier"] == pytest.approx(brier_score_loss(labels, scores))
    assert result["positive_rate"] == pytest.approx(labels.mean())
    assert result["rows"] == 5_000
    assert set(result) == {"roc_auc", "pr_auc", "brier", "ece", "positive_rate", "rows"}


def test_classification_metrics_with_one_class_give_nan_ranking_instead_of_raising():
    # given a validation window where nobody churned
    labels = np.zeros(4)
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    # when
    result = classification_metrics(labels, scores)
    # then
    assert math.isnan(result["roc_auc"]) and math.isnan(result["pr_auc"])
    assert result["brier"] == pytest.approx((0.01 + 0.04 + 0.09 + 0.16) / 4)
    assert result["positive_rate"] == 0.0


def test_expected_calibration_error_by_hand():
    # given bin [0.0, 0.1) holding three scores of 0.05 (one positive) and bin [0.9, 1.0] one 0.95 (positive)
    labels = [0, 1, 0, 1]
    scores = [0.05, 0.05, 0.05, 0.95]
    # when
    ece = expected_calibration_error(labels, scores)
    # then |0.05 - 1/3| weighs three quarters and |0.95 - 1| one quarter
    assert ece == pytest.approx(0.75 * (1 / 3 - 0.05) + 0.25 * 0.05)


def test_expected_calibration_error_is_small_when_calibrated_and_large_when_shifted():
    # given probabilities that are right, and the same probabilities 0.2 too high
    labels, scores = calibrated_sample(20_000)
    shifted = np.clip(scores + 0.2, 0, 1)
    # when / then
    assert expected_calibration_error(labels, scores) < 0.02
    assert expected_calibration_error(labels, shifted) > 0.15


def test_calibration_table_lists_non_empty_bins_with_their_rows():
    # given scores in the first and last bins only, 1.0 included in the last
    labels = [0, 1, 1, 1]
    scores = [0.05, 0.05, 0.95, 1.0]
    # when
    table = calibration_table(labels, scores)
    # then
    assert table["bin"].tolist() == [1, 10]
    assert table["rows"].tolist() == [2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.05, 0.975])
    assert table["observed_rate"].tolist() == pytest.approx([0.5, 1.0])


def test_gains_by_decile_ranks_by_score_and_sums_to_totals():
    # given 20 rows whose positives are the 4 highest scores
    scores = np.arange(20, 0, -1) / 20
    labels = np.r_[np.ones(4), np.zeros(16)]
    # when
    gains = gains_by_decile(labels, scores)
    # then
    assert gains["decile"].tolist() == list(range(1, 11))
    assert gains["rows"].sum() == 20 and gains["positives"].sum() == 4
    assert gains["positives"].tolist()[:3] == [2, 2, 0]
    assert gains["cumulative_share_captured"].tolist()[:2] == pytest.approx([0.5, 1.0])
    assert gains["cumulative_share_captured"].iloc[-1] == pytest.approx(1.0)
    assert gains["lift"].iloc[0] == pytest.approx(1.0 / 0.2)


def test_gains_by_decile_sums_values_for_clv():
    # given CLV values, 103 rows (deciles of 10 or 11 rows)
    rng = np.random.default_rng(3)
    values = rng.gamma(1.0, 100.0, 103)
    # when
    gains = gains_by_decile(values, values)
    # then
    assert gains["rows"].sum() == 103 and set(gains["rows"]) <= {10, 11}
    assert gains["positives"].sum() == pytest.approx(values.sum())
    assert gains["positives"].is_monotonic_decreasing
    assert gains["cumulative_share_captured"].iloc[-1] == pytest.approx(1.0)


def test_gains_by_decile_does_not_depend_on_the_order_of_tied_scores():
    # given a constant score: no ranking at all
    labels = np.r_[np.ones(10), np.zeros(90)]
    # when
    gains = gains_by_decile(labels, np.full(100, 0.5))
    # then every decile gets the average, whatever the row order
    assert gains["positives"].tolist() == pytest.approx([1.0] * 10)
    assert gains["lift"].tolist() == pytest.approx([1.0] * 10)


def test_normalized_gini_is_one_for_perfect_ranking_and_minus_one_for_reversed():
    # given values with negatives (net of returns)
    values = np.array([-20.0, 0.0, 5.0, 10.0, 50.0, 300.0])
    # when / then
    assert normalized_gini(values, values) == pytest.approx(1.0)
    assert normalized_gini(values, values * 3 + 7) == pytest.approx(1.0)
    assert normalized_gini(values, -values) == pytest.approx(-1.0)
    assert normalized_gini(values, np.zeros(6)) == pytest.approx(0.0)


def test_normalized_gini_by_hand():
    # given values 1, 2, 3 predicted in the order 2, 3, 1 (the 2 ranked first, then the 3, then the 1)
    values = np.array([1.0, 2.0, 3.0])
    predictions = np.array([0.1, 0.9, 0.5])
    # when
    gini = normalized_gini(values, predictions)
    # then cumulative sums 2, 5, 6 against 3, 5, 6 for the best order; the diagonal is 6 * 4 / 2 = 12
    assert gini == pytest.approx((13 - 12) / (14 - 12))


def test_top_decile_capture_uses_top_tenth_and_positive_part():
    # given 20 customers: the two with the highest prediction hold 60 of 100
    values = np.r_[30.0, 30.0, np.full(18, 40.0 / 18)]
    predictions = np.arange(20, 0, -1)
    # when / then
    assert top_decile_capture(values, predictions) == pytest.approx(0.6)
    # and a customer who returned more than they bought does not push the share above 1 (60 of 50 net)
    with_returns = np.r_[30.0, 30.0, np.full(17, 40.0 / 17), -50.0]
    assert top_decile_capture(with_returns, predictions) == pytest.approx(0.6)
    # and without any positive value there is nothing to capture
    assert math.isnan(top_decile_capture(np.full(5, -1.0), np.arange(5)))


def test_regression_metrics_by_hand():
    # given
    values = np.array([0.0, 10.0, 20.0, 30.0])
    predictions = np.array([5.0, 10.0, 30.0, 25.0])
    # when
    result = regression_metrics(values, predictions)
    # then
    assert result["spearman"] == pytest.approx(0.8)
    assert result["mae"] == pytest.approx((5 + 0 + 10 + 5) / 4)
    assert result["aggregate_error"] == pytest.approx((70 - 60) / 60)
    assert result["top_decile_capture"] == pytest.approx(20 / 60)
    assert result["rows"] == 4
    assert -1 <= result["normalized_gini"] < 1


def test_qini_coefficient_is_positive_for_true_uplift_ranking_and_zero_for_constant():
    # given half treated at random; treatment only works for customers with a high true uplift
    rng = np.random.default_rng(7)
    rows = 20_000
    true_uplift = rng.uniform(0, 0.4, rows)
    treated = rng.uniform(0, 1, rows) < 0.5
    converted = rng.uniform(0, 1, rows) < 0.05 + treated * true_uplift
    # when
    good = qini_coefficient(treated, converted, true_uplift)
    reversed_ranking = qini_coefficient(treated, converted, -true_uplift)
    constant = qini_coefficient(treated, converted, np.zeros(rows))
    # then
    assert good > 0.01
    assert reversed_ranking < -0.01
    assert constant == pytest.approx(0.0)


def test_uplift_by_decile_shows_observed_uplift_falling_with_the_score():
    # given the same kind of experiment
    rng = np.random.default_rng(8)
    rows = 20_000
    true_uplift = rng.uniform(0, 0.4, rows)
    treated = rng.uniform(0, 1, rows) < 0.5
    converted = rng.uniform(0, 1, rows) < 0.05 + treated * true_uplift
    # when
    table = uplift_by_decile(treated, converted, true_uplift)
    # then
    assert table["rows"].sum() == rows
    assert (table["treated_rows"] + table["control_rows"]).tolist() == table["rows"].tolist()
    assert table["observed_uplift"].iloc[0] > 0.3 > 0.1 > table["observed_uplift"].iloc[-1]
    assert isinstance(table, pd.DataFrame)
