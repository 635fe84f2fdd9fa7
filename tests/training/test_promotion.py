"""Champion and challenger: a new version replaces the champion only when shown better on the same rows."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from cdp.workspace import Workspace
from tests.conftest import AS_OF
from training.models import CustomerModel, TrainingParameters, fit_classifier
from training.pipeline import compare_with_champion, train_models
from training.tracking import (
    CHALLENGER,
    CHAMPION,
    load_model,
    log_model,
    promote,
    use_workspace_tracking,
)


def customers(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn-like rows: the churn risk grows with recency and differs by segment."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"days_since_last_order": rng.uniform(0, 365, rows),
                          "segment": rng.choice(["regular", "vip", "deal_seeker"], rows)})
    risk = frame["days_since_last_order"] / 365 - 0.3 * (frame["segment"] == "vip")
    return frame, (rng.uniform(0, 1, rows) < risk.clip(0.05, 0.95)).astype(float)


def register_churn_model(inputs: list[str]) -> tuple[CustomerModel, str, str]:
    """A churn model trained on `inputs`, logged and registered as `cdp train` does: (model, name, version)."""
    (train, train_labels), (tune, tune_labels) = customers(600, 1), customers(300, 2)
    model = fit_classifier("churn", train[inputs], train_labels, tune[inputs], tune_labels,
                           TrainingParameters(max_rounds=20, min_data_in_leaf=20, threads=1), "churn_v1")
    with mlflow.start_run():
        mlflow.log_params({"horizon_days": 90, "test_share": 0.5, "split_seed": 42,
                           "validation_from": "2026-04-02T00:00:00+00:00"})
        return model, *log_model(model, train[inputs].head(5))


def test_a_champion_that_cannot_score_the_new_inputs_is_not_compared_and_keeps_its_place(tmp_path):
    # Given a churn champion that needs `segment`, and a new model trained on data that no longer hold it
    client = use_workspace_tracking(Workspace.at(tmp_path / "ws"))
    _, name, champion = register_churn_model(["days_since_last_order", "segment"])
    client.set_registered_model_alias(name, CHAMPION, champion)
    model, _, challenger = register_churn_model(["days_since_last_order"])
    test_x, test_labels = customers(400, 3)
    test_x = test_x.drop(columns=["segment"])
    test_frame = test_x.assign(event_timestamp=pd.Timestamp("2026-04-02", tz="UTC"))
    predictions = model.predict(test_x)
    # When the new model is compared with it on its test rows, and the registry decides
    comparison = compare_with_champion(client, name, test_frame, test_x, test_labels, predictions, "churn", 90,
                                       (0.5, 42), own=0.7)
    decision = promote(client, name, challenger, comparison.challenger_score, comparison.champion_score, "roc_auc",
                       force=False, not_comparable=comparison.refused, min_gain=0.005)
    # Then they are not compared (no score for the champion), and the new version is challenger only,
    # saying why and how to promote it deliberately
    assert comparison.champion_score is None
    assert comparison.refused is not None and "cannot score" in comparison.refused and "segment" in comparison.refused
    assert not decision.promoted
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == champion
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == challenger
    tag = client.get_model_version(name, challenger).tags["promotion"]
    assert tag.startswith("not compared: the champion (version") and "segment" in tag
    assert "--force" in tag and f"move the champion alias to version {challenger}" in tag


@pytest.mark.slow
def test_a_column_gone_upstream_leaves_the_champion_in_place(tmp_path, trained):
    # Given a copy of the trained workspace, whose churn champion uses the customers' marketing_segment
    workspace = Workspace.at(tmp_path / "copy")
    shutil.copytree(trained.workspace.root, workspace.root)
    client = use_workspace_tracking(workspace)
    champion = str(client.get_model_version_by_alias("churn", CHAMPION).version)
    assert "attribute_marketing_segment" in load_model("churn").encoding.columns
    # When the column disappears from the customers table and churn is trained again
    lake_customers = workspace.lake_table("customers")
    pd.read_parquet(lake_customers).drop(columns=["marketing_segment"]).to_parquet(lake_customers, index=False)
    report = train_models(workspace, trained.settings, AS_OF, ("churn",))[0]
    # Then the new version is registered without the champion alias, and says so truthfully
    assert report.status == "trained", report.message
    assert not report.promoted and "challenger (not compared: the champion" in report.message
    assert "attribute_marketing_segment" in report.message and "--force" in report.message
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == champion
    assert str(client.get_model_version_by_alias("churn", CHALLENGER).version) == report.version
    run = client.get_run(report.run_id)
    assert run.data.tags["promoted"] == "False" and run.data.tags["promotion"].startswith("not compared")
    # And batch scoring with that champion names the model, the lost input and the ways out (not a KeyError
    # traceback)
    from serving.batch import ScoringError, score_to_file

    with pytest.raises(ScoringError, match=r"champion churn \(version \d+\).* cannot score: .*attribute_marketing_segment"):
        score_to_file(workspace, trained.settings, AS_OF)
