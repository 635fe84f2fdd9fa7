"""Drift: PSI on known distributions, feature comparison and flags, the HTML page, and the whole
report on the trained fixture (training rows rebuilt from lineage, scoring rows at AS_OF, MLflow)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cdp.config import DriftSettings
from cdp.workspace import Workspace
from tests.conftest import AS_OF
from training.drift import (
    MISSING_BIN,
    compare_feature_distributions,
    compare_predictions,
    numeric_bin_edges,
    numeric_bin_shares,
    population_stability_index,
    render_drift_html,
)

SETTINGS = DriftSettings()


def test_identical_distributions_have_psi_near_zero():
    # given two samples of the same distribution
    generator = np.random.default_rng(0)
    reference, current = generator.normal(size=20_000), generator.normal(size=20_000)
    # when / then
    assert population_stability_index(reference, current) < 0.01
    assert population_stability_index(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_a_shifted_distribution_has_a_large_psi():
    generator = np.random.default_rng(1)
    reference = generator.normal(size=20_000)
    assert population_stability_index(reference, reference + 0.4) > SETTINGS.psi_warning  # about 0.4 squared
    assert population_stability_index(reference, reference + 1.0) > SETTINGS.psi_alert


def test_missing_values_are_a_bin_of_their_own():
    # given the same non-missing values, but a fifth of them missing today
    reference = pd.Series(np.arange(1_000, dtype=float))
    current = reference.copy()
    current[::5] = np.nan
    edges = numeric_bin_edges(reference, 10)
    shares = numeric_bin_shares(current, edges)
    # then the last bin holds the missing share and the shift is flagged
    assert shares[-1] == pytest.approx(0.2)
    assert shares.sum() == pytest.approx(1.0)
    assert population_stability_index(reference, current) > SETTINGS.psi_warning


def test_categorical_psi_per_category_and_unseen_categories():
    reference = pd.Series(["a"] * 500 + ["b"] * 500)
    assert population_stability_index(reference, reference.sample(frac=1, random_state=0)) == pytest.approx(0.0)
    shifted = pd.Series(["a"] * 200 + ["b"] * 500 + ["new"] * 300)
    assert population_stability_index(reference, shifted) > SETTINGS.psi_alert


def test_compare_feature_distributions_flags_the_shifted_feature_only():
    # given two features, one of which moved
    generator = np.random.default_rng(2)
    reference = pd.DataFrame({"stable": generator.gamma(2, 10, 5_000), "moved": generator.gamma(2, 10, 5_000),
                              "region": generator.choice(["north", "south"], 5_000)})
    current = pd.DataFrame({"stable": generator.gamma(2, 10, 5_000), "moved": generator.gamma(2, 10, 5_000) * 2,
                            "region": generator.choice(["north", "south"], 5_000)})
    # when
    table = compare_feature_distributions(reference, current, ["stable", "moved", "region"], SETTINGS)
    # then the moved feature comes first, flagged; the others are ok
    statuses = dict(zip(table["feature"], table["status"], strict=True))
    assert table["feature"].iloc[0] == "moved"
    assert statuses == {"moved": "alert", "stable": "ok", "region": "ok"}
    assert dict(zip(table["feature"], table["kind"], strict=True))["region"] == "categorical"
    assert table.loc[table["feature"] == "moved", "current_mean"].iloc[0] > table.loc[
        table["feature"] == "moved", "reference_mean"].iloc[0]


def test_a_feature_missing_at_scoring_time_is_an_alert():
    reference = pd.DataFrame({"days_since_last_order": np.arange(100, dtype=float)})
    current = pd.DataFrame({"other": np.arange(100, dtype=float)})
    table = compare_feature_distributions(reference, current, ["days_since_last_order"], SETTINGS)
    assert table["status"].iloc[0] == "alert"
    assert table["largest_shift_bin"].iloc[0] == MISSING_BIN


def test_thresholds_come_from_the_settings():
    generator = np.random.default_rng(3)
    reference = generator.normal(size=10_000)
    psi = population_stability_index(reference, reference + 0.5)
    assert compare_predictions(reference, reference + 0.5, DriftSettings())["status"] in ("warning", "alert")
    lenient = DriftSettings(psi_warning=psi + 1, psi_alert=psi + 2)
    assert compare_predictions(reference, reference + 0.5, lenient)["status"] == "ok"


def _report(features: list[dict]) -> dict:
    prediction = {"psi": 0.01, "status": "ok", "reference_mean": 0.3, "current_mean": 0.31,
                  "largest_shift_bin": "(0.2, 0.3]"}
    return {"as_of": "2026-07-01T00:00:00+00:00", "generated_at": "now",
            "thresholds": {"psi_warning": 0.1, "psi_alert": 0.25, "bins": 10},
            "summary": {"status": "alert"},
            "models": {"churn": {"registered_model": "churn", "version": "3", "run_id": "abc", "feature_service": "churn_v1",
                                 "training_snapshots": ["2026-01-01"], "reference_rows": 10, "current_rows": 12,
                                 "lineage_check": "ok", "population": "everyone", "customers_outside_population": 0,
                                 "prediction_of": "churn probability", "prediction": prediction,
                                 "features": features}}}


def test_a_churn_champions_training_rows_are_rebuilt_with_its_own_population_not_todays_setting():
    from types import SimpleNamespace

    from cdp.config import load_settings
    from training.drift import Champion, rebuild_training_rows

    # Given orders 30 and 200 days before a snapshot, and a churn champion trained on a 60-day population
    # while the configuration now says 365 days
    snapshot = pd.Timestamp("2026-01-01", tz="UTC")
    orders = pd.DataFrame({"customer_id": ["recent", "lapsed"], "order_id": ["O1", "O2"],
                           "ordered_at": [snapshot - pd.Timedelta(days=30), snapshot - pd.Timedelta(days=200)],
                           "amount": [10.0, 10.0]})
    champion = Champion("churn", "churn", "3", "run", {"snapshots": [snapshot.isoformat()], "horizon_days": 90},
                        SimpleNamespace(population_days=60))
    settings = load_settings(training={"churn_active_days": 365})
    # When its training rows are rebuilt for the drift report
    rows = rebuild_training_rows(Workspace.at("/nonexistent"), settings, champion, {"orders": orders})
    # Then only the customer in the model's 60-day population is there, as in training and scoring
    assert rows["customer_id"].tolist() == ["recent"]


def test_html_highlights_flagged_rows_and_escapes_names():
    row = {"kind": "numeric", "largest_shift_bin": "(1, 2]", "largest_shift_reference_share": 0.1,
           "largest_shift_current_share": 0.4, "reference_missing": 0.0, "current_missing": 0.0,
           "reference_mean": 1.0, "current_mean": 2.0}
    page = render_drift_html(_report([{**row, "feature": "moved<x>", "psi": 0.6, "status": "alert"},
                                      {**row, "feature": "stable", "psi": 0.01, "status": "ok"}]))
    assert "<tr class='alert'><td class='name'>moved&lt;x&gt;</td>" in page
    assert "<tr class='ok'><td class='name'>stable</td>" in page
    assert "<script" not in page


# --- integration: the trained fixture ----------------------------------------------------------------

@pytest.fixture(scope="module")
def drift_workspace(served, tmp_path_factory) -> Workspace:
    """A copy of the served workspace (the report writes reports and MLflow runs into it), its Feast
    registry re-applied: a copied registry still points at the original's feature tables."""
    from features.feature_store import apply_feature_definitions

    root = tmp_path_factory.mktemp("drift") / "ws"
    shutil.copytree(served.workspace.root, root)
    workspace = Workspace.at(root)
    apply_feature_definitions(workspace, served.settings.features)
    return workspace


def test_drift_report_on_the_trained_models(served, drift_workspace):
    from training.drift import build_drift_report, log_drift_report, write_drift_report
    from training.tracking import use_workspace_tracking

    # when the scoring features at AS_OF are compared with the champions' training rows
    report = build_drift_report(drift_workspace, served.settings, AS_OF)
    html_path, json_path = write_drift_report(drift_workspace, report)
    run_id = log_drift_report(drift_workspace, served.settings, report, (html_path, json_path))

    # then every champion is compared, on its rebuilt training rows (checked against the lineage)
    assert set(report["models"]) == {"churn", "propensity", "clv"}
    for task, entry in report["models"].items():
        assert entry["reference_rows"] > 0 and entry["current_rows"] > 0, task
        assert entry["lineage_check"].startswith("rebuilt rows match"), (task, entry["lineage_check"])
        assert entry["features"], task
        assert all(np.isfinite(row["psi"]) and row["psi"] >= 0 for row in entry["features"])
        assert np.isfinite(entry["prediction"]["psi"])
    # the files are written, and logged to MLflow with the champion versions as tags
    assert json.loads(json_path.read_text())["as_of"] == report["as_of"]
    assert "Drift report" in html_path.read_text()
    run = use_workspace_tracking(drift_workspace).get_run(run_id)
    assert run.data.tags["champion.churn"] == report["models"]["churn"]["version"]
    assert "churn_prediction_psi" in run.data.metrics
    artifacts = {a.path for a in use_workspace_tracking(drift_workspace).list_artifacts(run_id, "drift")}
    assert artifacts == {"drift/drift.html", "drift/drift.json"}


def test_a_deliberately_shifted_feature_is_flagged(served, drift_workspace):
    from features.feature_tables import feature_table_path, write_feature_table
    from training.drift import build_drift_report

    # given the scoring snapshot with `days_since_last_order` pushed a year later for everyone
    path = feature_table_path(drift_workspace, "purchase_history")
    table = pd.read_parquet(path)
    at_scoring_time = pd.to_datetime(table["event_timestamp"], utc=True) == pd.Timestamp(AS_OF)
    before = build_drift_report(drift_workspace, served.settings, AS_OF)
    table.loc[at_scoring_time, "days_since_last_order"] += 365
    path.unlink()
    write_feature_table(path, table)
    # when
    after = build_drift_report(drift_workspace, served.settings, AS_OF)
    # then it is an alert for churn, and was not one before
    def status(report):
        return {row["feature"]: row["status"] for row in report["models"]["churn"]["features"]}
    assert status(before)["days_since_last_order"] != "alert"
    assert status(after)["days_since_last_order"] == "alert"
    assert "churn:days_since_last_order" in after["summary"]["features_alert"]


def test_the_report_builds_the_training_snapshots_new_data_made_the_tables_drop(served, tmp_path):
    from features.feature_store import apply_feature_definitions
    from features.feature_tables import build_feature_tables, feature_table_path
    from training.drift import build_drift_report

    # Given a trained workspace whose lake got new data after training, and features built for scoring
    # only: the tables started over with that one snapshot (a nightly score without retraining)
    workspace = Workspace.at(tmp_path / "ws")
    shutil.copytree(served.workspace.root, workspace.root)
    apply_feature_definitions(workspace, served.settings.features)
    orders = pd.read_parquet(workspace.lake_table("orders"))
    orders.iloc[:-1].to_parquet(workspace.lake_table("orders"))
    build_feature_tables(workspace, [AS_OF])
    snapshots = pd.read_parquet(feature_table_path(workspace, "purchase_history"), columns=["event_timestamp"])
    assert snapshots["event_timestamp"].nunique() == 1
    # When the drift report runs
    report = build_drift_report(workspace, served.settings, AS_OF)
    # Then every champion is compared with real training rows (features, not all missing)
    for task, entry in report["models"].items():
        assert entry["reference_rows"] > 0, task
        assert entry["lineage_check"].startswith("rebuilt rows "), (task, entry["lineage_check"])
        assert any(row["reference_missing"] < 1 for row in entry["features"]), task
