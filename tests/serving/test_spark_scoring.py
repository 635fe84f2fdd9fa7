"""The Spark engine against the local one: same customers, same scores, same decisions; and its
point-in-time join against Feast's when rows are stale, duplicated, from the future or expired."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp.config import SparkSettings
from cdp.workspace import Workspace
from tests.conftest import AS_OF

pytestmark = pytest.mark.slow

SCORE_COLUMNS = ("churn_probability", "clv")
DECISION_COLUMNS = ("next_best_action", "next_best_channel", "holdout", "win_back", "win_back_action",
                    "no_contact_reason", "reasons")


@pytest.fixture(scope="module")
def spark():
    from serving.spark_scoring import start_spark_session

    session, started = start_spark_session(SparkSettings(master="local[2]", shuffle_partitions=4))
    yield session
    if started:
        session.stop()


@pytest.fixture(scope="module")
def both_engines(trained, spark, tmp_path_factory):
    """The trained workspace (copied: both engines write into it) scored by each engine."""
    from serving.batch import score_customer_base
    from serving.spark_scoring import score_on_spark

    workspace = Workspace.at(shutil.copytree(trained.workspace.root, tmp_path_factory.mktemp("spark") / "ws"))
    local, local_summary = score_customer_base(workspace, trained.settings, AS_OF)
    out = workspace.outputs / "spark_scores.parquet"
    summary = score_on_spark(workspace, trained.settings, AS_OF, out=out, spark=spark)
    return workspace, local, local_summary, pd.read_parquet(out), summary


def test_spark_gives_the_local_engines_scores_and_decisions_for_every_customer(both_engines):
    _, local, local_summary, on_spark, summary = both_engines
    assert len(on_spark) == len(local) == summary.customers > 1000
    assert set(on_spark["customer_id"]) == set(local["customer_id"])
    assert on_spark["customer_id"].is_unique
    joined = local.merge(on_spark, on="customer_id", suffixes=("_local", "_spark"), validate="one_to_one")
    conversions = [c for c in local.columns if c.startswith("conversion_")]
    assert len(conversions) > 1 and set(conversions) <= set(on_spark.columns)
    for column in [*SCORE_COLUMNS, *conversions, "expected_value"]:
        np.testing.assert_allclose(joined[f"{column}_spark"].to_numpy(float), joined[f"{column}_local"].to_numpy(float),
                                   rtol=0, atol=1e-9, err_msg=column)
    for column in DECISION_COLUMNS:
        same = joined[f"{column}_spark"].fillna("-").astype(str) == joined[f"{column}_local"].fillna("-").astype(str)
        assert same.all(), f"{column}: {int((~same).sum())} customers differ"
    assert (joined["as_of_spark"] == joined["as_of_local"]).all()
    assert (local["next_best_action"] != "none").any() and local["win_back"].any(), "nothing decided: proves little"


def test_the_summary_names_the_champion_versions_and_matches_the_local_one(both_engines):
    workspace, _, local_summary, _, summary = both_engines
    assert summary.models == local_summary.models and set(summary.models) == {"churn", "propensity", "clv"}
    assert summary.next_best_actions == local_summary.next_best_actions
    assert (summary.win_back_customers, summary.holdout_customers) == (local_summary.win_back_customers,
                                                                        local_summary.holdout_customers)
    assert summary.total_expected_value == pytest.approx(local_summary.total_expected_value, abs=1e-6)
    assert summary.total_clv == pytest.approx(local_summary.total_clv, rel=1e-12)
    assert summary.customers_without_churn_score == local_summary.customers_without_churn_score > 0
    assert summary.mean_churn_probability == pytest.approx(local_summary.mean_churn_probability, rel=1e-9)
    assert summary.engine == "spark" and summary.master.startswith("local")
    assert (workspace.outputs / "spark_scores.json").exists()


def test_csv_output_holds_the_same_rows(both_engines, trained, spark):
    from serving.spark_scoring import score_on_spark

    workspace, _, _, on_spark, _ = both_engines
    out = workspace.outputs / "spark_scores.csv"
    summary = score_on_spark(workspace, trained.settings, AS_OF, out=out, output_format="csv", spark=spark)
    written = pd.concat([pd.read_csv(part) for part in sorted(out.glob("part-*.csv"))], ignore_index=True)
    assert summary.customers == len(written) == len(on_spark)
    joined = written.merge(on_spark, on="customer_id", suffixes=("_csv", "_parquet"), validate="one_to_one")
    assert (joined["next_best_action_csv"] == joined["next_best_action_parquet"]).all()
    np.testing.assert_allclose(joined["clv_csv"], joined["clv_parquet"], rtol=1e-12)  # CSV text: ~15 digits


def _rewrite(path, frame: pd.DataFrame) -> None:
    """Microsecond timestamps, as cdp writes feature tables (Spark cannot read nanosecond ones)."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, coerce_timestamps="us")


@pytest.fixture(scope="module")
def awkward_tables(trained, tmp_path_factory):
    """A copy whose engagement rows at AS_OF are, for some customers, missing (an older snapshot
    applies), duplicated with a later created timestamp and other values (the newer one wins), or
    followed by a row from the future (ignored). Also returns how many days the stale customers'
    previous snapshot is older."""
    from features.feature_tables import ensure_feature_snapshots

    workspace = Workspace.at(shutil.copytree(trained.workspace.root, tmp_path_factory.mktemp("pit") / "ws"))
    ensure_feature_snapshots(workspace, [AS_OF])
    path = workspace.data / "features" / "engagement.parquet"
    table = pd.read_parquet(path)
    at_as_of = table["event_timestamp"] == pd.Timestamp(AS_OF)
    earlier = table.groupby("customer_id")["event_timestamp"].apply(lambda t: t[t < pd.Timestamp(AS_OF)].max())
    customers = sorted(set(table.loc[at_as_of, "customer_id"]) & set(earlier[earlier == earlier.max()].index))
    assert len(customers) > 1000, "too few customers with two snapshots to test anything"
    stale, duplicated, future = set(customers[:300]), set(customers[300:400]), set(customers[400:500])
    gap = pd.Timestamp(AS_OF) - earlier.max()
    assert gap == pd.Timedelta(days=gap.days), "snapshots are whole days apart"
    newer = table[at_as_of & table["customer_id"].isin(duplicated)].copy()
    newer["created_timestamp"] += pd.Timedelta(hours=1)
    newer["touches_30d"] += 100
    later = table[at_as_of & table["customer_id"].isin(future)].copy()
    later["event_timestamp"] += pd.Timedelta(days=5)
    later["email_sends_7d"] += 50
    kept = table[~(at_as_of & table["customer_id"].isin(stale))]
    _rewrite(path, pd.concat([kept, newer, later], ignore_index=True))
    return workspace, stale, duplicated, future, gap.days


@pytest.mark.parametrize("ttl", ["long", "at_the_boundary", "short"])
def test_the_point_in_time_join_is_feasts(awkward_tables, trained, spark, ttl):
    """Stale customers get their previous snapshot while the TTL reaches back to it (its boundary
    included, as in Feast); with a TTL a day shorter, nothing. Spark's join and the local engine's
    streamed one both equal Feast's retrieval."""
    from cdp.config import load_settings
    from features.batch_retrieval import retrieve_features_with_feast
    from features.feature_store import apply_feature_definitions
    from features.feature_tables import feature_table_path
    from serving.spark_scoring import join_point_in_time, resolve_view_sources
    from training.scoring import load_champions

    workspace, stale, duplicated, future, gap_days = awkward_tables
    ttl_days = {"long": 400, "at_the_boundary": gap_days, "short": gap_days - 1}[ttl]
    settings = load_settings(training=trained.settings.training.model_dump(), features={"ttl_days": ttl_days})
    apply_feature_definitions(workspace, settings.features)
    models, _, _ = load_champions(workspace)
    services = {m.feature_service for m in models.values()} | {"recommendation_v1"}
    moment = pd.Timestamp(AS_OF)

    feast = retrieve_features_with_feast(workspace, settings.features, sorted(services), moment).drop(columns="event_timestamp")
    sources = resolve_view_sources(workspace, settings, services)
    on_spark = join_point_in_time(spark, sources, str(feature_table_path(workspace, "purchase_history")), moment).toPandas()

    assert set(on_spark.columns) == set(feast.columns)
    feast = feast.sort_values("customer_id").reset_index(drop=True)
    on_spark = on_spark[feast.columns].sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(on_spark, feast, check_dtype=False)
    # the local engine's streamed DuckDB join too (features/batch_retrieval.py)
    from features.batch_retrieval import stream_point_in_time_features
    from features.feature_store import open_feature_store

    streamed = pd.concat(stream_point_in_time_features(open_feature_store(workspace, settings.features), sorted(services),
                                                       moment, str(feature_table_path(workspace, "purchase_history"))),
                         ignore_index=True)
    pd.testing.assert_frame_equal(streamed[feast.columns].sort_values("customer_id").reset_index(drop=True), feast,
                                  check_dtype=False)
    by_customer = on_spark.set_index("customer_id")
    if ttl == "short":
        assert by_customer.loc[sorted(stale), "touches_30d"].isna().all()
    else:
        assert by_customer.loc[sorted(stale), "touches_30d"].notna().all()
    assert by_customer.loc[sorted(duplicated), "touches_30d"].min() >= 100
    assert by_customer.loc[sorted(future), "email_sends_7d"].max() < 50


def test_cdp_score_engine_spark_writes_the_scores_and_the_summary(both_engines, spark, monkeypatch):
    from typer.testing import CliRunner

    from cdp.cli import app

    workspace, _, _, on_spark, _ = both_engines
    monkeypatch.setenv("CDP_SPARK__MASTER", "local[2]")
    out = workspace.outputs / "cli_scores.parquet"
    result = CliRunner().invoke(app, ["score", "--as-of", AS_OF.date().isoformat(), "--engine", "spark", "--out", str(out),
                                      "--reasons", "none", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert f"Scored {len(on_spark):,} customers" in result.output
    written = pd.read_parquet(out)
    assert set(written["customer_id"]) == set(on_spark["customer_id"]) and written["reasons"].isna().all()
    assert json.loads((workspace.outputs / "cli_scores.json").read_text())["engine"] == "spark"


def test_cdp_score_engine_spark_refuses_an_out_that_exists_and_keeps_what_it_holds(tmp_path):
    from typer.testing import CliRunner

    from cdp.cli import app

    # Given a directory holding someone's file
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("important")
    (tmp_path / "ws").mkdir()
    # When Spark scoring is pointed at it
    result = CliRunner().invoke(app, ["score", "--as-of", AS_OF.date().isoformat(), "--engine", "spark", "--out",
                                      str(precious), "--workspace", str(tmp_path / "ws")])
    # Then it refuses, before any work, and the file is still there
    assert result.exit_code == 2 and "already exists" in result.output.replace("\n", "")
    assert (precious / "notes.txt").read_text() == "important"
