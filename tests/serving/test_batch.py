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
