"""Point-in-time features of the whole customer base at one moment, streamed in chunks.

Batch scoring needs every customer's FeatureService vector as of one time. Feast's historical
retrieval answers that too, but it builds the whole result in memory (about 2.4 GB for 1M customers
and one service) and cannot hand it over in pieces. This reads the same contract from the Feast
registry (which views, which features, their source files, TTLs and timestamp columns) and runs the
same point-in-time rule in one DuckDB query whose result arrives in record batches, so memory stays
flat as the base grows. `tests/features/test_batch_retrieval.py` holds it equal to Feast's own
retrieval.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd
from feast import FeatureStore

from cdp.config import FeatureSettings
from cdp.workspace import Workspace
from features.feature_store import service_features

ENTITY_VIEW = "purchase_history"
"""The customers scored at a moment are those with a purchase-history snapshot at that moment
(every resolved customer gets one: see features/customer_features.py)."""


@dataclass(frozen=True)
class ViewSource:
    """What the point-in-time rule needs to know about one feature view."""

    name: str
    path: str
    features: tuple[str, ...]
    timestamp: str
    created: str | None
    ttl: dt.timedelta | None


def view_sources(store: FeatureStore, services: Sequence[str]) -> list[ViewSource]:
    """The views behind the services, each with the features the services take from it."""
    sources = []
    for name, features in service_features(store, services).items():
        view = store.get_feature_view(name)
        source = view.batch_source
        ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
        sources.append(ViewSource(name, source.path, tuple(features), source.timestamp_field,
                                  source.created_timestamp_column or None, ttl))
    return sources


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def point_in_time_query(sources: Sequence[ViewSource], as_of: pd.Timestamp, entity_path: str) -> str:
    """SQL for Feast's point-in-time rule at one moment: per view, the customer's latest row with
    `timestamp <= as_of` (and `>= as_of - ttl`), ties broken by the created timestamp; views left-
    joined onto the customers that have a snapshot at `as_of` in `entity_path`, in customer order."""
    moment = f"TIMESTAMPTZ {_literal(as_of.isoformat())}"
    selects, joins = [], []
    for index, source in enumerate(sources):
        alias = f"v{index}"
        order = f"{_identifier(source.timestamp)} DESC"
        if source.created:
            order += f", {_identifier(source.created)} DESC"
        window = f"{_identifier(source.timestamp)} <= {moment}"
        if source.ttl is not None:
            # Feast keeps a row exactly one TTL old (its join tests `timestamp + ttl >= as_of`)
            window += f" AND {_identifier(source.timestamp)} >= {moment} - INTERVAL {int(source.ttl.total_seconds())} SECOND"
        columns = ", ".join(_identifier(f) for f in source.features)
        joins.append(
            f"LEFT JOIN (SELECT customer_id, {columns} FROM read_parquet({_literal(source.path)}) "
            f"WHERE {window} QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY {order}) = 1) "
            f"AS {alias} USING (customer_id)")
        selects.extend(f"{alias}.{_identifier(f)}" for f in source.features)
    entities = (f"(SELECT DISTINCT customer_id FROM read_parquet({_literal(entity_path)}) "
                f"WHERE event_timestamp = {moment}) AS entities")
    return (f"SELECT entities.customer_id, {', '.join(selects) or 'NULL AS no_features'} "
            f"FROM {entities} {' '.join(joins)} ORDER BY entities.customer_id")


def stream_point_in_time_features(store: FeatureStore, services: Sequence[str], as_of: pd.Timestamp,
                                  entity_path: str, chunk_rows: int = 100_000,
                                  memory_limit: str = "2GB", threads: int | None = None) -> Iterator[pd.DataFrame]:
    """Chunks of (customer_id, every feature of `services`) as of `as_of`, for every customer with a
    snapshot then; at most `chunk_rows` customers per chunk."""
    query = point_in_time_query(view_sources(store, services), as_of, entity_path)
    connection = duckdb.connect(config={"memory_limit": memory_limit, **({"threads": threads} if threads else {})})
    try:
        connection.execute("SET TimeZone = 'UTC'")
        # batches arrive with exactly `chunk_rows` rows (the last one fewer)
        for batch in connection.execute(query).to_arrow_reader(chunk_rows):
            yield batch.to_pandas()
    finally:
        connection.close()



def retrieve_features_with_feast(workspace: Workspace, settings: FeatureSettings, services: Sequence[str],
                                 as_of: pd.Timestamp, sample_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Every customer with a snapshot at `as_of` (a fixed sample of `sample_rows` when there are more)
    with the services' features through Feast's own historical retrieval, in memory: for samples
    (the drift report) and as the reference the stream above is tested against. Builds the snapshot
    when the tables lack it; empty when no customer has one."""
    from features.feature_store import (
        apply_feature_definitions,
        get_training_features,
        open_feature_store,
    )
    from features.feature_tables import ensure_feature_snapshots, feature_table_path

    if ensure_feature_snapshots(workspace, [as_of.to_pydatetime()]):
        apply_feature_definitions(workspace, settings)
    known = pd.read_parquet(feature_table_path(workspace, ENTITY_VIEW), columns=["customer_id", "event_timestamp"])
    customers = known.loc[pd.to_datetime(known["event_timestamp"], utc=True) == as_of, "customer_id"].drop_duplicates()
    if sample_rows is not None and len(customers) > sample_rows:
        customers = customers.sample(n=sample_rows, random_state=seed)
    rows = pd.DataFrame({"customer_id": customers.to_numpy(), "event_timestamp": as_of})
    if rows.empty:
        return rows
    store = open_feature_store(workspace, settings, offline=True)
    return get_training_features(store, sorted(services), rows).reset_index(drop=True)
