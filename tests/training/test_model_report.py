"""Model evaluation tables: runs, metrics against baselines, champion and challenger, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import model_report


def runs_frame() -> pd.DataFrame:
    """What `mlflow.search_runs` returns for two churn runs and one CLV run."""
    return pd.DataFrame([
        {"run_id": "r1", "start_time": pd.Timestamp("2026-07-01 10:00", tz="UTC"), "params.task": "churn",
         "tags.mlflow.runName": "churn as of 2026-07-01", "params.as_of": "2026-07-01", "params.variant": "classifier",
         "tags.registered_version": "1", "tags.promoted": "True", "tags.promotion": "no champion to compare with",
         "metrics.test_roc_auc": 0.80, "metrics.test_pr_auc": 0.70,
         "metrics.baseline_logistic_regression_roc_auc": 0.75, "metrics.baseline_logistic_regression_pr_auc": 0.60,
         "metrics.baseline_rfm_rule_roc_auc": 0.82, "metrics.baseline_rfm_rule_pr_auc": 0.65},
        {"run_id": "r2", "start_time": pd.Timestamp("2026-07-02 10:00", tz="UTC"), "params.task": "churn",
         "tags.mlflow.runName": "churn as of 2026-07-02", "params.as_of": "2026-07-02", "params.variant": "classifier",
         "tags.registered_version": "2", "tags.promoted": "False",
         "tags.promotion": "roc_auc 0.7800 does not beat the champion's 0.8000",
         "metrics.test_roc_auc": 0.78, "metrics.test_pr_auc": 0.72,
         "metrics.baseline_logistic_regression_roc_auc": 0.70, "metrics.baseline_logistic_regression_pr_auc": 0.61,
         "metrics.baseline_rfm_rule_roc_auc": 0.71, "metrics.baseline_rfm_rule_pr_auc": 0.62},
        {"run_id": "r3", "start_time": pd.Timestamp("2026-07-01 11:00", tz="UTC"), "params.task": "clv",
         "tags.mlflow.runName": "clv as of 2026-07-01", "params.as_of": "2026-07-01", "params.variant": "tweedie",
         "tags.registered_version": "1", "tags.promoted": "True", "tags.promotion": "forced",
         "metrics.test_spearman": 0.6, "metrics.test_top_decile_capture": 0.4,
         "metrics.baseline_last_period_spend_spearman": 0.5, "metrics.baseline_last_period_spend_top_decile_capture": 0.45},
    ])


def versions_frame() -> pd.DataFrame:
    return pd.DataFrame({"model": ["churn", "churn", "clv"], "version": ["1", "2", "1"],
                         "aliases": [["champion"], ["challenger"], ["challenger", "champion"]],
                         "run_id": ["r1", "r2", "r3"], "created": pd.Timestamp("2026-07-01", tz="UTC"),
                         "promotion": ["no champion to compare with", "does not beat", "forced"]})


def test_runs_are_listed_newest_first_with_their_primary_metric_and_best_baseline():
    table = model_report.summarize_runs(runs_frame())
    assert table["run_id"].tolist() == ["r2", "r3", "r1"]
    first = table.iloc[0]
    assert (first["task"], first["primary_metric"], first["test_value"], first["best_baseline_value"]) == (
        "churn", "roc_auc", 0.78, 0.71)
    assert table.set_index("run_id").loc["r3", "primary_metric"] == "spearman"
    assert model_report.summarize_runs(pd.DataFrame()).empty


def test_baseline_metrics_are_split_on_metric_names_with_underscores():
    # baseline and metric names both hold underscores: last_period_spend + top_decile_capture
    table = model_report.compare_with_baselines(runs_frame(), "clv").set_index("scorer")
    assert table.loc["last_period_spend", "top_decile_capture"] == 0.45
    assert table.loc["last_period_spend", "spearman"] == 0.5
    assert bool(table.loc["last_period_spend", "model_beats_it"]) is True
    assert "roc_auc" not in table.columns  # another task's metrics are left out


def test_only_the_newest_run_of_each_task_is_compared_with_its_baselines():
    table = model_report.compare_with_baselines(runs_frame())
    churn = table[table["task"] == "churn"].set_index("scorer")
    assert churn.loc["model", "roc_auc"] == 0.78  # r2, not r1
    assert churn.loc["rfm_rule", "roc_auc"] == 0.71
    assert set(table["task"]) == {"churn", "clv"}


def test_champion_and_challenger_carry_their_runs_metrics():
    table = model_report.champion_and_challenger(versions_frame(), runs_frame())
    churn = table[table["task"] == "churn"].set_index("alias")
    assert churn.loc["champion", "version"] == "1"
    assert churn.loc["champion", "test_value"] == 0.80
    assert churn.loc["challenger", "version"] == "2"
    assert churn.loc["challenger", "test_value"] == 0.78
    clv = table[table["task"] == "clv"]
    assert clv["alias"].tolist() == ["champion", "challenger"]  # one version holding both aliases
    assert not churn.loc["challenger", "promoted"] and churn.loc["champion", "promoted"]
    assert model_report.run_of(versions_frame(), "churn", "challenger") == "r2"
    with pytest.raises(LookupError, match="propensity@champion"):
        model_report.run_of(versions_frame(), "propensity")


def test_a_challenger_promoted_when_trained_and_rolled_back_is_not_called_unpromoted():
    # given a version forced to champion, after which the champion alias was moved back to v3
    note = model_report.challenger_note("forced", True, "3")
    # then the note says it was promoted and where the champion is now
    assert "not promoted" not in note and "promoted when trained (forced)" in note and "v3" in note
    assert model_report.challenger_note("roc_auc 0.7 does not beat the champion's 0.8", False, "1") == (
        " — not promoted: roc_auc 0.7 does not beat the champion's 0.8")
    assert model_report.challenger_note(None, None, "1") == ""


def test_validation_plots_draw_calibration_only_for_probabilities(tmp_path):
    rng = np.random.default_rng(0)
    validation = pd.DataFrame({"label": rng.integers(0, 2, 200).astype(float), "prediction": rng.random(200)})
    drawn = model_report.plot_validation(validation, "churn", tmp_path)
    assert set(drawn) == {"gains_chart", "calibration_curve"}
    assert all(path.stat().st_size > 0 for path in drawn.values())
    assert set(model_report.plot_validation(validation.assign(label=rng.random(200) * 100), "clv", tmp_path)) == {
        "gains_chart"}


@pytest.mark.slow
def test_runs_versions_and_plots_are_read_from_the_workspace_store(workspace, tmp_path):
    import mlflow

    from training.tracking import use_workspace_tracking

    # given a workspace store with one logged churn run, its plot, and a registered version holding both aliases
    client = use_workspace_tracking(workspace)
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "gains_chart.png").write_bytes(b"\x89PNG")
    with mlflow.start_run(run_name="churn as of 2026-07-01") as run:
        mlflow.log_params({"task": "churn", "as_of": "2026-07-01"})
        mlflow.log_metrics({"test_roc_auc": 0.8, "baseline_rfm_rule_roc_auc": 0.7})
        mlflow.set_tags({"registered_version": "1", "promoted": "True", "promotion": "forced"})
        mlflow.log_artifacts(str(tmp_path / "evaluation"), artifact_path="evaluation")
    client.create_registered_model("churn")
    version = client.create_model_version("churn", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_model_version_tag("churn", version.version, "promotion", "forced")
    for alias in ("champion", "challenger"):
        client.set_registered_model_alias("churn", alias, version.version)
    # when the report reads it
    runs = model_report.read_runs(workspace)
    versions = model_report.read_model_versions(workspace)
    # then the run, the version with its aliases, and the plot are there
    assert model_report.summarize_runs(runs)["test_value"].tolist() == [0.8]
    assert versions["aliases"].tolist() == [["challenger", "champion"]]
    assert model_report.champion_and_challenger(versions, runs)["test_value"].tolist() == [0.8, 0.8]
    plots = model_report.download_evaluation_plots(workspace, model_report.run_of(versions, "churn"), tmp_path / "out")
    assert list(plots) == ["gains_chart"]
    with pytest.raises(FileNotFoundError, match="cdp train churn"):
        model_report.read_validation(workspace, "churn")


class _Registry:
    """Records alias and tag calls: promote's decision is our logic; the real registry is in test_pipeline."""

    def __init__(self):
        self.aliases, self.tags = {}, {}

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[alias] = version

    def set_model_version_tag(self, name, version, key, value):
        self.tags[key] = value


@pytest.mark.parametrize(("challenger", "promoted"), [(0.8010, False), (0.8030, True), (0.7990, False)])
def test_a_challenger_must_beat_the_champion_by_more_than_the_minimum_gain(challenger, promoted):
    from training.tracking import CHAMPION, promote

    # Given a champion scoring 0.8000 on the same rows and a minimum gain of 0.002
    registry = _Registry()
    # When a challenger is judged
    decision = promote(registry, "churn", "2", challenger, 0.8000, "roc_auc", force=False, min_gain=0.002)
    # Then only a gain above the minimum takes the champion's place, and the reason says which case it was
    assert decision.promoted is promoted and (registry.aliases.get(CHAMPION) == "2") is promoted
    if 0.8 < challenger < 0.802:
        assert "not more than training.promotion_min_gain (0.002)" in decision.reason
