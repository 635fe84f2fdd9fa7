"""A model that does not beat its baselines is said, by name and score (the first model of a workspace
is champion whatever it scores)."""

from __future__ import annotations

from training.pipeline import ModelReport


def test_the_baselines_a_model_does_not_beat_are_named_with_their_scores():
    # Given a churn model at ROC-AUC 0.835, a logistic regression at 0.862 and an RFM rule at 0.70
    report = ModelReport("churn", "trained", metrics={"roc_auc": 0.835},
                         baselines={"logistic_regression": {"roc_auc": 0.862}, "rfm_rule": {"roc_auc": 0.70}})
    # Then only the logistic regression is named as not beaten
    assert report.baselines_not_beaten() == {"logistic_regression": 0.862}
    assert not report.beats_baselines()


def test_a_baseline_without_a_score_is_left_out_and_a_model_without_one_beats_nothing():
    unscored = ModelReport("churn", "trained", metrics={"roc_auc": 0.9},
                           baselines={"rfm_rule": {"roc_auc": float("nan")}, "logistic_regression": {"roc_auc": 0.8}})
    assert unscored.beats_baselines()
    no_score = ModelReport("churn", "trained", metrics={}, baselines={"logistic_regression": {"roc_auc": 0.8}})
    assert no_score.baselines_not_beaten() == {"logistic_regression": 0.8}
