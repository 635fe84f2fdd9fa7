"""`cdp train` end to end on a small simulated retailer: real Feast retrieval, LightGBM, MLflow."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import AS_OF, prepare_workspace
from training.pipeline import TASKS, train_models, validation_path
from training.tracking import CHALLENGER, CHAMPION, load_model, use_workspace_tracking

pytestmark = pytest.mark.slow


def test_every_model_trains_and_beats_its_baselines(trained):
    reports = {r.task: r for r in trained.reports}
    assert set(reports) == set(TASKS)
    for task, report in reports.items():
        assert report.status == "trained", report.message
        assert report.beats_baselines(), (task, report.metrics, report.baselines)
    assert reports["churn"].metrics["ece"] < 0.1  # a few hundred test rows: the 0.02 bar is measured at 20k


def test_each_run_logs_params_metrics_plots_lineage_and_a_signed_model(trained):
    # mlflow.artifacts and get_model_info read the process-wide store, which other tests move
    client = use_workspace_tracking(trained.workspace)
    for report in trained.reports:
        run = client.get_run(report.run_id)
        assert run.data.params["feature_service"] == f"{report.task}_v1"
        assert len(run.data.params["input_hash"]) == 16
        assert int(run.data.params["rows_test"]) > 0
        assert "test_roc_auc" in run.data.metrics or "test_spearman" in run.data.metrics
        assert any(key.startswith("baseline_") for key in run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(report.run_id, "evaluation")}
        assert {"evaluation/gains_chart.png", "evaluation/shap_summary.png"} <= artifacts
        if report.task != "clv":
            assert "evaluation/calibration_curve.png" in artifacts
        lineage = json.loads(mlflow.artifacts.load_text(f"runs:/{report.run_id}/lineage.json"))
        assert lineage["snapshots"] and lineage["validation_from"] in lineage["snapshots"]
        written = json.loads(mlflow.artifacts.load_text(f"runs:/{report.run_id}/report.json"))["report"]
        assert (written["version"], written["promoted"]) == (report.version, report.promoted), "report.json is logged last"
        model = mlflow.models.get_model_info(f"models:/{report.task}/{report.version}")
        assert model.signature is not None and model.saved_input_example_info is not None
        assert "long" not in {str(spec.type) for spec in model.signature.inputs.inputs}


def test_the_registered_model_scores_a_customer_with_missing_counts_through_mlflow(trained):
    # Given: the churn champion loaded as MLflow users load it, and a row whose counts are missing
    use_workspace_tracking(trained.workspace)
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    row = model.input_example.head(1).copy()
    row["orders_total"] = np.nan
    # When it is scored through pyfunc (schema enforcement on)
    probability = model.predict(row)
    # Then it is a probability, not a schema error
    assert 0 < float(np.asarray(probability).ravel()[0]) < 1


def test_the_propensity_champion_carries_its_average_uplifts(trained):
    # Given: the trained workspace (training.uplift_shrinkage at its default)
    client = use_workspace_tracking(trained.workspace)
    report = next(r for r in trained.reports if r.task == "propensity")
    # When: the registered model is loaded back
    model = load_model("propensity", CHAMPION)
    # Then: it holds an average uplift per candidate action, the setting's shrinkage, and the run logs both
    from training.scoring import action_name, candidate_actions

    assert set(model.average_uplift) == {action_name(c, o) for c, o in candidate_actions(model)[1:]}
    assert all(np.isfinite(v) and v >= 0 for v in model.average_uplift.values())
    assert model.uplift_shrinkage == trained.settings.training.uplift_shrinkage == 1.0
    run = client.get_run(report.run_id)
    assert float(run.data.params["uplift_shrinkage"]) == 1.0
    assert any(key.startswith("average_uplift_") for key in run.data.metrics)


def test_no_raw_pii_reaches_the_mlflow_artifacts(trained):
    customers = pd.read_parquet(trained.workspace.lake_table("customers"))
    secrets = set(customers["email"].dropna()) | set(customers["phone"].dropna()) | set(
        (customers["first_name"] + " " + customers["last_name"]).dropna()) | set(customers["address_line"].dropna())
    artifact_root = trained.workspace.mlruns / "artifacts"
    text = "\n".join(p.read_text(errors="ignore") for p in artifact_root.rglob("*")
                     if p.is_file() and p.suffix in (".json", ".yaml", ".txt", ".csv", ""))
    assert text, "no text artifacts found: the scan would prove nothing"
    leaked = [s for s in secrets if len(s) > 6 and s in text]
    assert leaked == []


def test_a_tie_stays_challenger_force_promotes_and_rollback_moves_the_alias(tmp_path, trained):
    # Given: a copy of the trained workspace, retrained on the same data with the same seed
    workspace = type(trained.workspace).at(tmp_path / "copy")
    shutil.copytree(trained.workspace.root, workspace.root)
    first = {r.task: r for r in trained.reports}
    # When
    second = {r.task: r for r in train_models(workspace, trained.settings, AS_OF, ("churn",))}
    # Then: identical metrics (reproducible), and a tie does not take the champion's place
    assert second["churn"].metrics == first["churn"].metrics
    client = use_workspace_tracking(workspace)
    assert str(client.get_model_version_by_alias("churn", CHALLENGER).version) == second["churn"].version
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == first["churn"].version
    # ...and `cdp status` says why the challenger was not promoted, beside the two test figures
    from typer.testing import CliRunner

    from cdp.cli import app

    status = " ".join(CliRunner().invoke(app, ["status", "--workspace", str(workspace.root)]).output.split())
    assert f"model churn@challenger: v{second['churn'].version}" in status and "— not promoted:" in status
    # When forced, the new version is champion; rolling back is moving the alias
    forced = train_models(workspace, trained.settings, AS_OF, ("churn",), force=True)[0]
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == forced.version
    client.set_registered_model_alias("churn", CHAMPION, first["churn"].version)
    assert load_model("churn").feature_service == "churn_v1"
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == first["churn"].version


def test_a_model_of_another_horizon_or_on_the_champions_training_rows_is_not_compared(tmp_path, trained):
    # Given: a copy of the trained workspace, whose churn champion predicts 90 days ahead
    workspace = type(trained.workspace).at(tmp_path / "copy")
    shutil.copytree(trained.workspace.root, workspace.root)
    champion = {r.task: r for r in trained.reports}["churn"].version
    client = use_workspace_tracking(workspace)
    # When a 60-day churn model is trained
    training = trained.settings.training.model_copy(update={"churn_horizon_days": 60})
    shorter = train_models(workspace, trained.settings.model_copy(update={"training": training}), AS_OF, ("churn",))[0]
    # Then it stays challenger, saying why, and the 90-day champion keeps its place
    assert shorter.status == "trained" and not shorter.promoted
    assert "not compared: the champion (version" in shorter.message and "90 days ahead, this model 60" in shorter.message
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == champion
    # When a model is trained as of 120 days earlier: its test rows are rows the champion trained on
    earlier = train_models(workspace, trained.settings, pd.Timestamp(AS_OF) - pd.Timedelta(days=120), ("churn",))[0]
    # Then it is not judged on them either
    assert earlier.status == "trained", earlier.message
    assert not earlier.promoted and "trained on these test rows" in earlier.message
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == champion
    # ...and the oracle evaluation judges the champion by its own test rows, not the latest run's
    from training.pipeline import champion_validation_files

    path, version = champion_validation_files(workspace)["churn"]
    assert version == champion and path == validation_path(workspace, "churn", champion)
    judged = pd.read_parquet(path)
    assert judged["model_version"].unique().tolist() == [champion] and judged["horizon_days"].unique().tolist() == [90]
    assert pd.read_parquet(validation_path(workspace, "churn"))["model_version"].iloc[0] == earlier.version


def test_changing_data_after_as_of_changes_nothing(tmp_path, trained):
    """Leakage: rows dated on or after --as-of are shuffled and distorted; every test prediction
    and metric stays the same."""
    workspace = prepare_workspace(trained.raw, tmp_path / "future-shuffled", trained.settings)
    moment = pd.Timestamp(AS_OF)
    rng = np.random.default_rng(0)
    for table, time_column in (("orders", "ordered_at"), ("events", "occurred_at"), ("touches", "sent_at"),
                               ("consents", "recorded_at"), ("tickets", "opened_at")):
        path = workspace.lake_table(table)
        frame = pd.read_parquet(path)
        future = frame[time_column] >= moment
        extra = frame[~future].sample(n=min(200, int((~future).sum())), random_state=0).copy()
        extra[time_column] = moment + pd.to_timedelta(rng.integers(0, 90 * 86400, len(extra)), unit="s")
        key = {"orders": "order_id", "events": "event_id", "touches": "touch_id", "tickets": "ticket_id"}.get(table)
        if key:
            extra[key] = extra[key].astype(str) + "-future"
        if table == "orders":
            extra["amount"] = extra["amount"] * 50
        frame.loc[future, ["source", "source_id"]] = frame.loc[future, ["source", "source_id"]].sample(
            frac=1, random_state=1).to_numpy()
        pd.concat([frame, extra], ignore_index=True).to_parquet(path, index=False)
    reports = {r.task: r for r in train_models(workspace, trained.settings, AS_OF)}
    for original in trained.reports:
        assert reports[original.task].metrics == original.metrics, original.task
        before = pd.read_parquet(validation_path(trained.workspace, original.task))
        after = pd.read_parquet(validation_path(workspace, original.task))
        pd.testing.assert_frame_equal(before, after)


def test_models_are_compared_with_the_oracle_on_the_same_test_rows(trained):
    from features.simulator import Oracle
    from training.evaluation import evaluate_against_oracle

    truth_dir = trained.raw / "truth"
    files = {task: validation_path(trained.workspace, task) for task in TASKS}
    result = evaluate_against_oracle(files, pd.read_parquet(trained.workspace.outputs / "identity_map.parquet"),
                                     truth_dir, {"churn": 90, "clv": 365, "propensity": 7})
    assert set(result) == set(TASKS)
    assert result["churn"]["oracle_roc_auc"] > 0.7, "the oracle knows the truth: it must rank well"
    assert 0.5 < result["churn"]["ratio_to_oracle"] <= 1.1
    assert result["clv"]["oracle_spearman"] > result["clv"]["model_spearman"] * 0.9
    assert result["propensity"]["customer_channel_pairs"] > 0
    assert Oracle.load(truth_dir).parameters.customers == 2500
    # ...and another simulation's truth is refused, not compared by chance overlaps of record ids
    from training.evaluation import TruthMismatchError

    stranger = pd.read_parquet(trained.workspace.outputs / "identity_map.parquet").assign(source_id=lambda f: "x" + f["source_id"])
    with pytest.raises(TruthMismatchError, match="truth of another simulation"):
        evaluate_against_oracle(files, stranger, truth_dir, {"churn": 90, "clv": 365, "propensity": 7})
    # and each file says the horizon its labels were counted over (`cdp evaluate models` reads it)
    options = trained.settings.training
    for task, horizon in (("churn", options.churn_horizon_days), ("clv", options.clv_horizon_days),
                          ("propensity", options.conversion_window_days)):
        assert pd.read_parquet(files[task])["horizon_days"].unique().tolist() == [horizon]


def test_scoring_before_a_champions_training_as_of_is_recognised_as_seeing_the_future(trained):
    from training.scoring import champions_trained_past

    # Given champions trained as of AS_OF (their labels run up to it)
    # When asked about a moment long before, a day before AS_OF (inside every validation window), and AS_OF
    early = champions_trained_past(trained.workspace, pd.Timestamp("2025-06-01"))
    day_before = champions_trained_past(trained.workspace, pd.Timestamp(AS_OF) - pd.Timedelta(days=1))
    on_time = champions_trained_past(trained.workspace, AS_OF)
    # Then every champion is named for both earlier moments, with the date it was trained as of; none at AS_OF
    assert {name for name, _, _ in early} == {name for name, _, _ in day_before} == {"churn", "propensity", "clv"}
    assert {trained_as_of for _, _, trained_as_of in early} == {str(pd.Timestamp(AS_OF).date())}
    assert on_time == []
