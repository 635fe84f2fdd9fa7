"""The Feast feature store of a workspace: apply, materialize, retrieve offline and online, push.

Configuration is code (a RepoConfig), so every path is under the workspace and two workspaces
never share a registry or an online store. `feature_repo/feature_store.yaml` is the same setup for
people who use the `feast` command line (`feast -c feature_repo ui`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode
from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException
from feast.repo_config import RegistryConfig, RepoConfig

from cdp.config import FeatureSettings
from cdp.workspace import Workspace
from feature_repo.definitions import (
    MODEL_FEATURE_VIEWS,
    REALTIME_PUSH_SOURCE,
    REALTIME_VIEW,
    build_definitions,
)
from features.customer_features import FEATURE_TABLES
from features.feature_tables import feature_table_path
from features.online_store import PackedRedisOnlineStore, PackedSqliteOnlineStore

log = logging.getLogger("cdp.features")


class FeatureStoreError(RuntimeError):
    """The store is not set up, or asked for something it does not have; the message says what to run."""


def repo_config(workspace: Workspace, settings: FeatureSettings) -> RepoConfig:
    workspace.feast.mkdir(parents=True, exist_ok=True)
    if settings.online_store == "redis":
        online = {"type": "features.online_store.PackedRedisOnlineStore",
                  "connection_string": settings.redis_connection_string}
    else:
        online = {"type": "features.online_store.PackedSqliteOnlineStore", "path": str(workspace.feast / "online_store.db")}
    return RepoConfig(
        project=settings.project,
        provider="local",
        registry=RegistryConfig(registry_type="file", path=str(workspace.feast / "registry.db"), cache_ttl_seconds=60),
        offline_store={"type": "duckdb"},
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=workspace.feast,
    )


def open_feature_store(workspace: Workspace, settings: FeatureSettings) -> FeatureStore:
    # Feast's DuckDB offline store goes through ibis, which calls a method DuckDB 1.5 deprecates, once per
    # query; Feast turns deprecation warnings on, so silence that one here rather than in every caller.
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)
    return FeatureStore(config=repo_config(workspace, settings))


def apply_feature_definitions(workspace: Workspace, settings: FeatureSettings) -> list[str]:
    """Register the entity, feature views and feature services for the workspace's tables."""
    tables = {name: feature_table_path(workspace, name) for name in FEATURE_TABLES}
    missing = [str(path) for path in tables.values() if not path.exists()]
    if missing:
        raise FeatureStoreError(f"feature tables missing ({', '.join(missing)}); run `cdp features build` first")
    objects = build_definitions(tables, dt.timedelta(days=settings.ttl_days))
    store = open_feature_store(workspace, settings)
    store.apply(objects)
    return [obj.name for obj in objects]


def materialize_online(workspace: Workspace, settings: FeatureSettings, end: dt.datetime | None = None) -> dt.datetime:
    """Load the latest feature values up to `end` (default: now) into the online store."""
    store = open_feature_store(workspace, settings)
    if not store.list_feature_views():
        raise FeatureStoreError("no feature views registered; run `cdp features apply` first")
    end = end or dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(days=settings.ttl_days)
    online_store = store._get_provider().online_store
    if isinstance(online_store, PackedSqliteOnlineStore | PackedRedisOnlineStore):
        # Feast's materialize serializes every value as its own protobuf; load the tables directly.
        for view in store.list_feature_views():
            latest = latest_rows(feature_table_path(workspace, view.name), start, end)
            online_store.bulk_load(store.config, view, latest)
    else:
        store.materialize(start_date=start, end_date=end)
    _materialization_record(workspace).write_text(
        json.dumps({"materialized_at": dt.datetime.now(dt.UTC).isoformat(), "snapshots_until": end.isoformat(),
                    "online_store": settings.online_store})
    )
    return end


def _materialization_record(workspace: Workspace):
    return workspace.feast / "materialized.json"


@dataclass(frozen=True)
class Freshness:
    materialized_at: dt.datetime | None
    age_days: float | None
    stale: bool
    message: str


def online_freshness(workspace: Workspace, settings: FeatureSettings, now: dt.datetime | None = None) -> Freshness:
    """How old the online store is; stale when never loaded or loaded longer ago than the setting."""
    record = _materialization_record(workspace)
    if not record.exists():
        return Freshness(None, None, True, "the online store was never materialized; run `cdp features materialize`")
    loaded = dt.datetime.fromisoformat(json.loads(record.read_text())["materialized_at"])
    age = ((now or dt.datetime.now(dt.UTC)) - loaded).total_seconds() / 86400
    stale = age > settings.stale_after_days
    message = (f"online features were loaded {age:.1f} days ago (limit {settings.stale_after_days:g}); "
               "run `cdp features build` and `cdp features materialize`" if stale else "online features are fresh")
    if stale:
        log.warning("%s", message)
    return Freshness(loaded, age, stale, message)


def latest_rows(path, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Each customer's latest snapshot in (start, end]: what Feast's materialize would load."""
    return duckdb.sql(
        f"""
        SELECT * FROM read_parquet('{path}')
        WHERE event_timestamp > TIMESTAMPTZ '{start.isoformat()}' AND event_timestamp <= TIMESTAMPTZ '{end.isoformat()}'
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY event_timestamp DESC, created_timestamp DESC) = 1
        """
    ).df()


def _feature_service(store: FeatureStore, name: str):
    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException as error:
        known = ", ".join(sorted(MODEL_FEATURE_VIEWS))
        raise FeatureStoreError(f"feature service {name!r} not registered (known: {known}); "
                                f"run `cdp features apply`") from error


def get_training_features(store: FeatureStore, service: str, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: for each (customer_id, event_timestamp) row, the latest snapshot before it.
    Extra columns of `entity_rows` (labels, the touch's channel) come back unchanged; duplicate rows
    are kept (the DuckDB offline store keeps them, unlike the default one)."""
    missing = {"customer_id", "event_timestamp"} - set(entity_rows.columns)
    if missing:
        raise FeatureStoreError(f"entity rows need columns customer_id and event_timestamp (missing: {', '.join(sorted(missing))})")
    rows = entity_rows.assign(event_timestamp=pd.to_datetime(entity_rows["event_timestamp"], utc=True))
    return store.get_historical_features(entity_df=rows, features=_feature_service(store, service)).to_df()


@dataclass
class OnlineFeatures:
    frame: pd.DataFrame
    """One row per requested customer, in request order; missing values are None/NaN."""
    found: list[bool]
    """Whether the online store holds any feature for the customer."""


def get_online_features(store: FeatureStore, service: str, customer_ids: Sequence[str]) -> OnlineFeatures:
    """The current feature vector of each customer; unknown customers get empty rows, not errors."""
    response = store.get_online_features(
        features=_feature_service(store, service), entity_rows=[{"customer_id": c} for c in customer_ids]
    ).to_dict()
    frame = pd.DataFrame(response)
    features = [c for c in frame.columns if c != "customer_id"]
    found = frame[features].notna().any(axis=1).tolist() if features else [False] * len(frame)
    return OnlineFeatures(frame, found)


def push_realtime_signals(store: FeatureStore, updates: pd.DataFrame) -> float:
    """Write fresh signals (a consent change, an order, a visit) to the online store at once.

    A push must carry every field of the view, so the current online values fill the fields an
    update does not set. Returns the seconds the push took."""
    if "customer_id" not in updates:
        raise FeatureStoreError("updates need a customer_id column")
    started = time.perf_counter()
    try:
        view = store.get_feature_view(REALTIME_VIEW)
    except FeatureViewNotFoundException as error:
        raise FeatureStoreError("realtime view not registered; run `cdp features apply`") from error
    fields = [f.name for f in view.features]
    unknown = sorted(set(updates.columns) - set(fields) - {"customer_id", "event_timestamp"})
    if unknown:
        raise FeatureStoreError(f"unknown realtime fields: {', '.join(unknown)} (known: {', '.join(fields)})")
    references = [f"{REALTIME_VIEW}:{name}" for name in fields]
    current = pd.DataFrame(
        store.get_online_features(features=references, entity_rows=[{"customer_id": c} for c in updates["customer_id"]]).to_dict()
    )
    merged = current.set_index("customer_id")
    changes = updates.set_index("customer_id")
    for column in changes.columns.intersection(fields):
        merged.loc[changes.index, column] = changes[column]
    now = pd.Timestamp.now(tz="UTC")
    rows = merged.reset_index().assign(event_timestamp=now, created_timestamp=now)
    for field in view.features:
        if str(field.dtype) == "Int64":
            rows[field.name] = pd.to_numeric(rows[field.name], errors="coerce").astype("Int64")
    store.push(REALTIME_PUSH_SOURCE, rows, to=PushMode.ONLINE)
    return time.perf_counter() - started
