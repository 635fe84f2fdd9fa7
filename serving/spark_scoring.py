"""`cdp score --engine spark`: the whole base scored on a Spark session, with the same features, the
same champion models and the same policy code as the local engine (serving/batch.py).

Feature retrieval is Feast's point-in-time join done in Spark for one timestamp: for every feature
view of the models' and the policy's FeatureServices (names, files and TTLs from the Feast registry),
each customer's latest row at or before `as_of` and no older than the view's TTL, left-joined onto
the customers of the as-of snapshot. Scoring and the policy run per Arrow batch in `mapInPandas`,
calling the local engine's own chunk function (`serving.batch.score_chunk`: `score_features`, then
`decide`) on the champion models, which the driver loads once from the MLflow registry and
broadcasts; executors never read MLflow. The output is written by Spark (one directory of part
files); nothing but a summary reaches the driver. See docs/scale-out.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cdp.config import Settings, SparkSettings
from cdp.workspace import Workspace
from features.batch_retrieval import ENTITY_VIEW, ViewSource
from serving.batch import (
    OutputFormat,
    ReasonsMode,
    ScoreSummary,
    ScoringError,
    default_output,
    later_withdrawals,
    prepare_scoring,
    score_chunk,
    summary_path,
)
from serving.policy import WIN_BACK_TIMING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

SCHEMA_SAMPLE_ROWS = 64
"""Rows scored on the driver to learn the output's columns and types before the job runs."""
SESSION_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}
"""Defaults of sessions this module creates (timestamps in UTC, Parquet timestamps pandas reads as
UTC); anything in `settings.spark.config` wins."""


@dataclass
class SparkScoreSummary(ScoreSummary):
    engine: str = "spark"
    master: str = ""
    """The Spark master the job ran on."""


def start_spark_session(settings: SparkSettings) -> tuple[SparkSession, bool]:
    """The session to score on and whether this call started it (then the caller stops it).
    A session already active in the process (a notebook's, a cluster's) is used as it is."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    conf = dict(SESSION_DEFAULTS)
    if settings.shuffle_partitions is not None:
        conf["spark.sql.shuffle.partitions"] = str(settings.shuffle_partitions)
    conf.update(settings.config)
    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    # PySpark starts workers with $PYSPARK_PYTHON, else `python3`: local workers must run this
    # interpreter (the project's environment). A cluster's executors use their own (docs/scale-out.md).
    local = settings.master.startswith("local") and "PYSPARK_PYTHON" not in os.environ
    if local:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        spark = builder.getOrCreate()
    finally:
        if local:
            del os.environ["PYSPARK_PYTHON"]
    spark.sparkContext.setLogLevel("WARN")
    return spark, True


def resolve_view_sources(workspace: Workspace, settings: Settings, services: set[str]) -> list[ViewSource]:
    """The views, features, files, timestamp columns and TTLs behind the FeatureServices, from the
    Feast registry (the local engine's resolution), with files under `spark.feature_tables_uri` when set."""
    from features.batch_retrieval import view_sources
    from features.feature_store import FeatureStoreError, open_feature_store

    sources = view_sources(open_feature_store(workspace, settings.features, offline=True), sorted(services))
    if settings.spark.feature_tables_uri:
        root = settings.spark.feature_tables_uri.rstrip("/")
        sources = [replace(source, path=f"{root}/{Path(source.path).name}") for source in sources]
    names = [f for source in sources for f in source.features]
    duplicated = sorted({f for f in names if names.count(f) > 1})
    if duplicated:  # Feast refuses them too: without view prefixes the columns would collide
        raise FeatureStoreError(f"features of the same name in several views: {', '.join(duplicated)}")
    return sources


def join_point_in_time(spark: SparkSession, sources: list[ViewSource], entity_path: str,
                       as_of: pd.Timestamp) -> DataFrame:
    """Every customer with a snapshot at `as_of` in `entity_path` with, per view, the latest row at
    or before `as_of` (newest event, then newest created timestamp) and no older than the view's
    TTL (`as_of - ttl` included), or nulls: the rule of Feast's ibis/DuckDB offline store
    (`point_in_time_join`) for one timestamp."""
    from pyspark.sql import Window, functions

    moment = as_of.to_pydatetime()
    joined = (spark.read.parquet(entity_path).where(functions.col("event_timestamp") == functions.lit(moment))
              .select("customer_id").distinct())
    for source in sources:
        happened = functions.col(source.timestamp)
        order = [happened.desc()] + ([functions.col(source.created).desc()] if source.created else [])
        rows = spark.read.parquet(source.path).where(happened <= functions.lit(moment))
        if source.ttl:
            rows = rows.where(happened >= functions.lit(moment - source.ttl))
        latest = (rows.withColumn("_latest", functions.row_number().over(Window.partitionBy("customer_id").orderBy(*order)))
                  .where(functions.col("_latest") == 1).select("customer_id", *source.features))
        joined = joined.join(latest, on="customer_id", how="left")
    return joined


def score_batches(batches: Iterator[pd.DataFrame], *, models, settings: Settings, now: pd.Timestamp,
                  campaign_id: str | None, reasons: ReasonsMode, columns: list[str] | None = None,
                  withdrawn: dict[str, frozenset[str]] | None = None) -> Iterator[pd.DataFrame]:
    """Each batch of features scored and decided by the local engine's `score_chunk`: the body of
    the `mapInPandas` step (`models` may be a broadcast of them)."""
    models = getattr(models, "value", models)
    for batch in batches:
        if batch.empty:
            continue
        result = score_chunk(batch.reset_index(drop=True), models, settings, now, campaign_id, reasons, withdrawn)
        yield result if columns is None else result[columns]


def output_schema(sample: pd.DataFrame) -> StructType:
    """Spark types of the scored columns, from a scored sample (text where the sample has only nulls)."""
    from pyspark.sql import types

    fields = []
    for column, dtype in sample.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            kind = types.BooleanType()
        elif pd.api.types.is_integer_dtype(dtype):
            kind = types.LongType()
        elif pd.api.types.is_float_dtype(dtype):
            kind = types.DoubleType()
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            kind = types.TimestampType()
        else:
            kind = types.StringType()
        fields.append(types.StructField(str(column), kind, nullable=True))
    return types.StructType(fields)


def write_scores(frame: DataFrame, out: str, output_format: OutputFormat) -> None:
    """Write from the executors (a directory of part files); the driver only plans."""
    writer = frame.write.mode("overwrite")
    if output_format == "parquet":
        writer.parquet(out)
    elif output_format == "csv":
        writer.option("header", True).csv(out)
    else:
        raise ValueError(f"output format must be parquet or csv, not {output_format!r}")


def read_scores(spark: SparkSession, out: str, output_format: OutputFormat, schema: StructType) -> DataFrame:
    if output_format == "csv":
        return spark.read.schema(schema).option("header", True).csv(out)
    return spark.read.parquet(out)


def summarize_scores(scores: DataFrame) -> dict:
    """The figures of the summary, aggregated by Spark (only they reach the driver)."""
    from pyspark.sql import functions

    def count_true(column):
        return functions.sum(functions.coalesce(
            functions.col(column) if isinstance(column, str) else column, functions.lit(False)).cast("long"))

    aggregates = [functions.count(functions.lit(1)).alias("customers"),
                  count_true("win_back").alias("win_back_customers"),
                  count_true(functions.col("win_back_timing").isNotNull()
                             & (functions.col("win_back_timing") != functions.lit(WIN_BACK_TIMING)))
                  .alias("win_back_later_customers"),
                  count_true("holdout").alias("holdout_customers"),
                  functions.sum(functions.coalesce("expected_value", functions.lit(0.0))).alias("total_expected_value"),
                  functions.count("reasons").alias("customers_with_reasons")]
    if "churn_probability" in scores.columns:
        churn = functions.when(~functions.isnan("churn_probability"), functions.col("churn_probability"))
        aggregates += [functions.avg(churn).alias("mean_churn_probability"),
                       (functions.count(functions.lit(1)) - functions.count(churn)).alias("customers_without_churn_score")]
    if "clv" in scores.columns:
        aggregates.append(functions.sum("clv").alias("total_clv"))
    figures = scores.agg(*aggregates).first().asDict()
    figures["total_expected_value"] = float(figures["total_expected_value"] or 0.0)
    for column, key in (("next_best_action", "next_best_actions"), ("next_best_channel", "next_best_channels")):
        counts = scores.where(functions.col(column).isNotNull()).groupBy(column).count().collect()
        figures[key] = {str(row[column]): int(row["count"]) for row in sorted(counts, key=lambda r: (-r["count"], str(r[column])))}
    return figures


def score_on_spark(workspace: Workspace, settings: Settings, as_of: dt.datetime, *, campaign_id: str | None = None,
                   reasons: ReasonsMode = "segments", out: Path | str | None = None,
                   output_format: OutputFormat = "parquet", spark: SparkSession | None = None) -> SparkScoreSummary:
    """Score and decide for every customer on Spark into `out` (default data/outputs/scores.<format>):
    a directory of Parquet or CSV part files, at a local path or any URI the cluster writes to. The
    JSON summary goes beside a local `out`. `spark`: a session to use (left running); default: one
    from `settings.spark` (or the process's active one), stopped after if this call started it."""
    from features.feature_store import FeatureStoreError, apply_feature_definitions
    from features.feature_tables import ensure_feature_snapshots, feature_table_path

    started_at = time.perf_counter()
    models, versions, missing, moment, services = prepare_scoring(workspace, as_of, output_format, reasons)
    local_tables = settings.spark.feature_tables_uri is None
    if local_tables and ensure_feature_snapshots(workspace, [moment.to_pydatetime()]):
        apply_feature_definitions(workspace, settings.features)
    try:
        sources = resolve_view_sources(workspace, settings, services)
    except FeatureStoreError:
        if not local_tables:
            raise
        apply_feature_definitions(workspace, settings.features)  # tables built but never registered, as locally
        sources = resolve_view_sources(workspace, settings, services)
    entity_path = next((s.path for s in sources if s.name == ENTITY_VIEW), str(feature_table_path(workspace, ENTITY_VIEW)))
    output = str(out if out is not None else default_output(workspace, output_format))

    session, started = (spark, False) if spark is not None else start_spark_session(settings.spark)
    try:
        features = join_point_in_time(session, sources, entity_path, moment)
        sample = features.limit(SCHEMA_SAMPLE_ROWS).toPandas()
        if sample.empty:
            raise ScoringError(f"no customer has features as of {moment.isoformat()} in {entity_path}; run "
                               "`cdp features build --as-of ...` (and copy the tables where the cluster reads them)")
        options = {"settings": settings, "now": moment, "campaign_id": campaign_id, "reasons": reasons,
                   "withdrawn": later_withdrawals(workspace, moment)}
        schema = output_schema(next(score_batches(iter([sample]), models=models, **options)))
        shared = session.sparkContext.broadcast(models)
        try:
            scored = features.mapInPandas(
                lambda batches: score_batches(batches, models=shared, columns=schema.fieldNames(), **options), schema)
            write_scores(scored, output, output_format)
        finally:
            shared.unpersist()
        figures = summarize_scores(read_scores(session, output, output_format, schema))
        master = session.sparkContext.master
    finally:
        if started:
            session.stop()
    summary = SparkScoreSummary(
        as_of=moment.isoformat(), models=versions, skipped=missing,
        campaign_id=campaign_id if campaign_id is not None else settings.policy.default_campaign_id,
        actions=[c for c in schema.fieldNames() if c.startswith("conversion_")], reasons=reasons,
        output=output, output_format=output_format, master=master, **figures,
        seconds=round(time.perf_counter() - started_at, 2),
    )
    if "://" not in output:
        summary_path(Path(output)).write_text(json.dumps(asdict(summary), indent=2))
    return summary
