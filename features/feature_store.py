"""The Feast feature store of a workspace: apply, materialize, retrieve offline and online, push.

Configuration is code (a RepoConfig), so every path is under the workspace and two workspaces
never share a registry or an online store. `feature_repo/feature_store.yaml` is the same setup for
people who use the `feast` command line (`feast -c feature_repo ui`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import sqlite3
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import duckdb
import numpy as np
import pandas as pd
from feast import FeatureStore, FeatureView
from feast.data_source import PushMode
from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException
from feast.repo_config import RegistryConfig, RepoConfig
from pandas.core.internals import BlockManager
from pandas.core.internals.api import make_block

from cdp.config import FeatureSettings
from cdp.locks import exclusive_lock
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


def redis_namespace(workspace: Workspace, settings: FeatureSettings) -> str:
    """The prefix of the workspace's Redis keys: `features.redis_namespace`, else a digest of the
    workspace's resolved path (a copy of a workspace gets its own keys: it is another workspace)."""
    if settings.redis_namespace:
        return settings.redis_namespace
    return "cdp-" + hashlib.sha256(str(workspace.root.resolve()).encode()).hexdigest()[:12]


def online_store_identity(workspace: Workspace, settings: FeatureSettings) -> dict[str, str]:
    """Which Redis keys a workspace's online store is (server, db, namespace; never a password): recorded
    at materialize, so that an erasure configured for another server or namespace is refused."""
    if settings.online_store != "redis":
        return {}
    nodes, options = PackedRedisOnlineStore._parse_connection_string(settings.redis_connection_string)  # Feast's
    servers = ",".join(sorted(f"{node['host'].strip()}:{node['port']}" for node in nodes))
    return {"redis_server": servers, "redis_db": str(options.get("db", 0)).strip(),
            "redis_namespace": redis_namespace(workspace, settings)}


def _online_store_config(workspace: Workspace, settings: FeatureSettings) -> dict[str, str]:
    if settings.online_store == "redis":
        return {"type": "features.online_store.PackedRedisOnlineStore",
                "connection_string": settings.redis_connection_string,
                "key_prefix": redis_namespace(workspace, settings)}
    return {"type": "features.online_store.PackedSqliteOnlineStore", "path": str(sqlite_store_path(workspace))}


def sqlite_store_path(workspace: Workspace) -> Path:
    """The workspace's SQLite online store file (what the `sqlite` online store reads and writes)."""
    return workspace.feast / "online_store.db"


def repo_config(workspace: Workspace, settings: FeatureSettings) -> RepoConfig:
    workspace.feast.mkdir(parents=True, exist_ok=True)
    online = _online_store_config(workspace, settings)
    return RepoConfig(
        project=settings.project,
        provider="local",
        registry=RegistryConfig(registry_type="file", path=str(workspace.feast / "registry.db"), cache_ttl_seconds=60),
        offline_store={"type": "duckdb"},
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=workspace.feast,
    )


def write_feast_repository(workspace: Workspace, settings: FeatureSettings) -> Path:
    """A `feature_store.yaml` for this workspace's store (data/feast/feast_cli/), so Feast's own
    command line and UI (`feast -c <dir> ui`) see what `cdp` registered, whatever the workspace."""
    import yaml

    directory = workspace.feast / "feast_cli"
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "project": settings.project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": str(workspace.feast / "registry.db"), "cache_ttl_seconds": 60},
        "offline_store": {"type": "duckdb"},
        "online_store": _online_store_config(workspace, settings),
        "entity_key_serialization_version": 3,
    }
    (directory / "feature_store.yaml").write_text(
        "# Written by `cdp features ui` for Feast's command line; cdp itself configures Feast in code.\n"
        + yaml.safe_dump(document, sort_keys=False))
    return directory


def open_feature_store(workspace: Workspace, settings: FeatureSettings, offline: bool = False) -> FeatureStore:
    """The workspace's Feast store. `offline`: the caller reads the feature tables through the registry
    (training, scoring, drift), so a registry naming another workspace's tables is pointed at this one's
    first (`relocate_registry`); the service and the online store's readers never read them."""
    # Feast's DuckDB offline store goes through ibis, which calls a method DuckDB 1.5 deprecates, once per
    # query; Feast turns deprecation warnings on, so silence that one here rather than in every caller.
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)
    store = FeatureStore(config=repo_config(workspace, settings))
    if offline:
        relocate_registry(workspace, settings, store)
    return store


def relocate_registry(workspace: Workspace, settings: FeatureSettings, store: FeatureStore) -> bool:
    """Point the registry's feature views at this workspace's tables when they name another directory.

    Feast keeps each source's absolute path, so a workspace copied with `cp -r` (or moved) would train and
    score from the original's tables, silently while it exists. The definitions are applied again, as
    `cdp features apply` does, under the Feast directory's lock (two workers opening a copy at once).
    Returns whether they were."""
    if not _registry_elsewhere(store, workspace):
        return False
    with _lock_beside(workspace.feast):
        store.refresh_registry()
        if not _registry_elsewhere(store, workspace):
            return False
        try:
            store.apply(feature_definitions(workspace, settings))
        except FeatureStoreError as error:
            raise FeatureStoreError(f"the feature registry ({workspace.feast}) names another workspace's tables: "
                                    f"{error}") from error
    log.info("workspace moved: the feature registry's views now read this workspace's tables (%s)",
             workspace.data / "features")
    return True


def _registry_elsewhere(store: FeatureStore, workspace: Workspace) -> bool:
    """Whether one of our feature views (a view registered by other means is the user's) reads a table
    outside this workspace."""
    if not Path(store.config.registry.path).exists():
        return False
    for view in store.list_feature_views():
        path = getattr(view.batch_source, "path", None)
        if view.name in FEATURE_TABLES and path is not None and path != str(feature_table_path(workspace, view.name)):
            return True
    return False


def feature_definitions(workspace: Workspace, settings: FeatureSettings) -> list:
    """The entity, feature views and feature services over the workspace's own tables."""
    tables = {name: feature_table_path(workspace, name) for name in FEATURE_TABLES}
    missing = [str(path) for path in tables.values() if not path.exists()]
    if missing:
        raise FeatureStoreError(f"feature tables missing ({', '.join(missing)}); run `cdp features build` first")
    return build_definitions(tables, dt.timedelta(days=settings.ttl_days))


def apply_feature_definitions(workspace: Workspace, settings: FeatureSettings) -> list[str]:
    """Register the entity, feature views and feature services for the workspace's tables."""
    objects = feature_definitions(workspace, settings)
    store = open_feature_store(workspace, settings)
    store.apply(objects)
    return [obj.name for obj in objects]


@dataclass(frozen=True)
class Materialization:
    start: dt.datetime
    end: dt.datetime
    customers: int | None
    """Most customers loaded for one view (None when Feast's own materialize loaded them)."""
    features_as_of: dt.datetime | None = None
    """The latest snapshot loaded: the moment the online features describe (None when Feast's own
    materialize loaded them)."""


def split_survivors(workspace: Workspace) -> set[str]:
    """Customers that kept their id when identity resolution split them after a merge. Their pushed
    realtime row may hold a consent granted under an id merged into them, which the split left with
    nobody (`read_push_log` drops such grants): materialize writes their snapshot row over it, then
    applies again only the pushes that are theirs."""
    from features.identity.store import read_identity_state

    state = read_identity_state(workspace)
    return {state["merged_into"].get(kept, kept) for kept in state["merged_then_split"].values()}


def materialize_online(workspace: Workspace, settings: FeatureSettings, end: dt.datetime | None = None) -> Materialization:
    """Load each customer's latest feature values in (end - ttl, end] (default end: now) into the
    online store; customers with no snapshot in that window keep what the store holds."""
    store = open_feature_store(workspace, settings, offline=True)
    if not store.list_feature_views():
        raise FeatureStoreError("no feature views registered; run `cdp features apply` first")
    end = end or dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(days=settings.ttl_days)
    online_store = store._get_provider().online_store
    customers = None
    described: dt.datetime | None = None
    realtime = pd.DataFrame()
    if isinstance(online_store, PackedSqliteOnlineStore | PackedRedisOnlineStore):
        # Feast's materialize serializes every value as its own protobuf; load the tables directly.
        customers = 0
        resetting = split_survivors(workspace)
        try:
            for view in store.list_feature_views():
                latest = latest_rows(feature_table_path(workspace, view.name), start, end)
                if view.name == REALTIME_VIEW:  # in with the rows: no moment a withdrawal reads as granted
                    latest = with_later_pushes(workspace, view, latest)
                replacing = resetting if view.name == REALTIME_VIEW else ()
                customers = max(customers, online_store.bulk_load(store.config, view, latest, replacing))
                if view.name == REALTIME_VIEW:
                    realtime = latest[["customer_id", "event_timestamp", "created_timestamp"]]
                if len(latest):
                    newest = pd.Timestamp(latest["event_timestamp"].max()).to_pydatetime()
                    described = newest if described is None else max(described, newest)
        except sqlite3.OperationalError as error:  # the store file was deleted or replaced since `apply`
            raise FeatureStoreError(f"the online store has no table for {view.name} ({error}); "
                                    "run `cdp features apply`, then materialize again") from error
    else:
        store.materialize(start_date=start, end_date=end)
    if customers == 0:  # nothing loaded: the store and its record stay as they were
        return Materialization(start, end, 0)
    reapplied = reapply_pushes(workspace, store, realtime)
    if reapplied:
        log.info("applied again the pushes of %d customers that the loaded snapshot does not hold", reapplied)
    materialization_record(workspace).write_text(
        json.dumps({"materialized_at": dt.datetime.now(dt.UTC).isoformat(), "snapshots_until": end.isoformat(),
                    "features_as_of": described.isoformat() if described else None,
                    "online_store": settings.online_store, **online_store_identity(workspace, settings)})
    )
    return Materialization(start, end, customers, described)


def probe_online_store(workspace: Workspace, settings: FeatureSettings, customer_ids: Sequence[str]) -> str:
    """Whether the online store answers and holds these customers, in words: a freshness record says
    when it was loaded, not whether Redis is up or was emptied since."""
    if not customer_ids:
        return "no customers to look for"
    try:
        store = open_feature_store(workspace, settings)
        response = store.get_online_features(features=[f"{REALTIME_VIEW}:latest_email_consent"],
                                             entity_rows=[{"customer_id": c} for c in customer_ids])
        stamps = response.to_dict(include_event_timestamps=True)["latest_email_consent__ts"]
    except Exception as error:  # Redis down, a missing table: say what, not a traceback
        return f"unreadable ({type(error).__name__}: {error})"
    found = sum(1 for stamp in stamps if stamp)
    return f"holds {found} of {len(customer_ids)} sampled customers"


def materialization_record(workspace: Workspace) -> Path:
    """data/feast/materialized.json: what `materialize` last loaded, when, and into which store."""
    return workspace.feast / "materialized.json"


def read_materialization(workspace: Workspace) -> dict:
    """The materialization record's contents ({} when the store was never materialized)."""
    record = materialization_record(workspace)
    return json.loads(record.read_text()) if record.exists() else {}


@dataclass(frozen=True)
class Freshness:
    materialized_at: dt.datetime | None
    age_days: float | None
    stale: bool
    message: str
    snapshots_until: dt.datetime | None = None
    """The end of the window materialized (`materialize --end`): no loaded snapshot is later."""
    features_as_of: dt.datetime | None = None
    """The latest snapshot loaded: the moment the online features describe customers at (recency,
    "13 days ago" in reasons). Older records lack it: then `snapshots_until`."""


def online_freshness(workspace: Workspace, settings: FeatureSettings, now: dt.datetime | None = None,
                     warn: bool = True) -> Freshness:
    """How old the online features are: stale when never loaded, or when they were loaded, or describe
    customers as of, longer ago than `features.stale_after_days` (features of June loaded today are
    June's: every recency in them is June's)."""
    written = read_materialization(workspace)
    if not written:
        return Freshness(None, None, True, "the online store was never materialized; run `cdp features materialize`")
    loaded = dt.datetime.fromisoformat(written["materialized_at"])
    until = dt.datetime.fromisoformat(written["snapshots_until"]) if written.get("snapshots_until") else None
    described = dt.datetime.fromisoformat(written["features_as_of"]) if written.get("features_as_of") else until
    moment = now or dt.datetime.now(dt.UTC)
    loaded_days = (moment - loaded).total_seconds() / 86400
    described_days = (moment - described).total_seconds() / 86400 if described else loaded_days
    age = max(loaded_days, described_days)
    stale = age > settings.stale_after_days
    as_of = f"as of {described:%Y-%m-%d %H:%M} UTC ({described_days:.1f} days ago)" if described else "as of unknown"
    if not stale:
        message = f"online features are fresh: they describe customers {as_of}, loaded {loaded_days:.1f} days ago"
    elif described_days > loaded_days:
        message = (f"online features describe customers {as_of}, over the limit of {settings.stale_after_days:g} days "
                   f"(loaded {loaded_days:.1f} days ago); run `cdp features build --as-of` a recent time and "
                   "`cdp features materialize`")
    else:
        message = (f"online features were loaded {loaded_days:.1f} days ago (limit {settings.stale_after_days:g}); "
                   "run `cdp features build` and `cdp features materialize`")
    if stale and warn:
        log.warning("%s", message)
    return Freshness(loaded, age, stale, message, until, described)


def latest_rows(path, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Each customer's latest snapshot in (start, end]: what Feast's materialize would load."""
    return duckdb.sql(
        f"""
        SELECT * FROM read_parquet('{path}')
        WHERE event_timestamp > TIMESTAMPTZ '{start.isoformat()}' AND event_timestamp <= TIMESTAMPTZ '{end.isoformat()}'
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY event_timestamp DESC, created_timestamp DESC) = 1
        """
    ).df()


def _feature_service(store: FeatureStore, name: str, allow_cache: bool = False):
    try:
        return store.get_feature_service(name, allow_cache=allow_cache)
    except FeatureServiceNotFoundException as error:
        known = ", ".join(sorted(MODEL_FEATURE_VIEWS))
        raise FeatureStoreError(f"feature service {name!r} not registered (known: {known}); "
                                f"run `cdp features apply`") from error


def service_features(store: FeatureStore, services: Sequence[str], allow_cache: bool = False) -> dict[str, list[str]]:
    """Feature view -> feature names the FeatureServices deliver, in the services' order, each once:
    the models' input contract, for training, batch and online reads alike."""
    chosen: dict[str, list[str]] = {}
    for service in services:
        for projection in _feature_service(store, service, allow_cache=allow_cache).feature_view_projections:
            wanted = chosen.setdefault(projection.name, [])
            wanted.extend(f.name for f in projection.features if f.name not in wanted)
    return chosen


def get_training_features(store: FeatureStore, service: str | Sequence[str], entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: for each (customer_id, event_timestamp) row, the latest snapshot before it.
    Extra columns of `entity_rows` (labels, the touch's channel) come back unchanged; duplicate rows
    are kept (the DuckDB offline store keeps them, unlike the default one). Several services are
    retrieved in one join over the union of their features."""
    missing = {"customer_id", "event_timestamp"} - set(entity_rows.columns)
    if missing:
        raise FeatureStoreError(f"entity rows need columns customer_id and event_timestamp (missing: {', '.join(sorted(missing))})")
    rows = entity_rows.assign(event_timestamp=pd.to_datetime(entity_rows["event_timestamp"], utc=True))
    if isinstance(service, str):
        features = _feature_service(store, service)
    else:
        features = [f"{view}:{name}" for view, names in service_features(store, service).items() for name in names]
    return store.get_historical_features(entity_df=rows, features=features).to_df()


@dataclass
class OnlineFeatures:
    frame: pd.DataFrame
    """One row per requested customer, in request order; missing values are None/NaN."""
    found: list[bool]
    """Whether the online store holds any feature for the customer."""


def get_online_features(store: FeatureStore, service: str, customer_ids: Sequence[str]) -> OnlineFeatures:
    """The current feature vector of each customer; unknown customers get empty rows, not errors.

    Reads through the store's cached `OnlineFeatureReader`: the same values as Feast's
    `get_online_features` for the service, without Feast's per-call registry work and protobufs."""
    return online_feature_reader(store, [service]).read(customer_ids)


def online_feature_reader(store: FeatureStore, services: Sequence[str]) -> OnlineFeatureReader:
    """The reader of these FeatureServices for this store, built once and kept with the store."""
    readers = vars(store).setdefault("_cdp_online_feature_readers", {})
    key = tuple(services)
    if key not in readers:
        readers[key] = OnlineFeatureReader(store, key)
    return readers[key]


class OnlineFeatureReader:
    """Online reads of one or more FeatureServices, straight from our packed online store.

    The feature list still comes from the FeatureServices in the Feast registry (one feature contract
    per model), but it is resolved once, and again only when the registry cache expires and the
    registry file has changed since (re-reading an unchanged registry stalled one request in 60 s for
    about 340 ms), instead of on every call; the store returns plain Python values for all views in one
    query (SQLite) or one MGET (Redis). Several services give one vector: all four cover every view, the
    full online vector."""

    def __init__(self, store: FeatureStore, services: Sequence[str]):
        online_store = store._get_provider().online_store
        if not isinstance(online_store, PackedSqliteOnlineStore | PackedRedisOnlineStore):
            raise FeatureStoreError(f"fast online reads need cdp's packed online store, not {type(online_store).__name__}")
        self.store, self.online_store, self.services = store, online_store, tuple(services)
        self.refresh_seconds = store.config.registry.cache_ttl_seconds
        self._resolve()

    def _registry_version(self) -> tuple[int, int] | None:
        """The registry file's modification time and size; None when it is not a local file."""
        try:
            status = Path(self.store.config.registry.path).stat()
        except (OSError, TypeError, ValueError):
            return None
        return status.st_mtime_ns, status.st_size

    def _refresh_if_changed(self) -> None:
        version = self._registry_version()
        if version is None or version != self._registry_seen:
            self.store.refresh_registry()
            self._resolve()
        else:
            self._resolved_at = time.monotonic()

    @property
    def views(self) -> list:
        return self._layout[0]

    @property
    def positions(self) -> list[list[tuple[int, str]]]:
        """Per view, where each wanted feature sits in it (its index and name)."""
        return self._layout[1]

    @property
    def feature_names(self) -> list[str]:
        return self._layout[2]

    def _resolve(self) -> None:
        """Views and feature names of the services, in the services' order, and where each sits in its view."""
        self._registry_seen = self._registry_version()
        chosen = {view: (self.store.get_feature_view(view, allow_registry_cache=True), wanted)
                  for view, wanted in service_features(self.store, self.services, allow_cache=True).items()}
        positions: list[list[tuple[int, str]]] = []
        names: list[str] = []
        for view, wanted in chosen.values():
            fields = [f.name for f in view.features]
            positions.append([(fields.index(name), name) for name in wanted])
            names.extend(wanted)
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:  # Feast refuses them too: without view prefixes the columns would collide
            raise FeatureStoreError(f"features of the same name in several views: {', '.join(duplicated)}")
        # all at once, never half-built: a reader on another thread sees the old views or the new ones
        self._layout = ([view for view, _ in chosen.values()], positions, names)
        self._resolved_at = time.monotonic()

    def read(self, customer_ids: Sequence[str]) -> OnlineFeatures:
        """One row per requested customer, in request order; unknown customers get empty rows."""
        columns, found = self._read_lists(customer_ids)
        return OnlineFeatures(_frame(columns), found)

    def read_columns(self, customer_ids: Sequence[str]) -> tuple[dict[str, np.ndarray], list[bool]]:
        """`read` as numpy columns by name (the dtypes `read`'s frame has), without building a
        DataFrame: what the service scores a few customers from."""
        columns, found = self._read_lists(customer_ids)
        return _arrays(columns), found

    def _read_lists(self, customer_ids: Sequence[str]) -> tuple[dict[str, list], list[bool]]:
        if self.refresh_seconds and time.monotonic() - self._resolved_at > self.refresh_seconds:
            self._refresh_if_changed()
        ids = [str(c) for c in customer_ids]
        views, view_positions, feature_names = self._layout  # read once: a refresh swaps it whole
        found_values = self.online_store.read_values(self.store.config, views, ids)
        columns: dict[str, list] = {"customer_id": ids}
        for by_customer, positions in zip(found_values, view_positions, strict=True):
            rows = [by_customer.get(c) for c in ids]
            for position, name in positions:
                columns[name] = [None if row is None else row[position] for row in rows]
        # Found only with a row in every view: a materialize loads them one after another, and a customer
        # half-loaded (its churn read from some views, its consents missing) must not be answered as found.
        found = [all(by_customer.get(c) is not None for by_customer in found_values) for c in ids]
        return columns, found


def _column_dtype(values: list) -> str:
    """The dtype pandas infers for a list of Python scalars (None, bool, int, float, str); empty is float64."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return "int64"
    if kinds == {bool}:
        return "bool"
    if kinds == {type(None)} or not kinds <= {int, float, type(None)}:
        return "object"
    return "float64"


def _blocks(columns: dict[str, list]) -> list[tuple[list[int], np.ndarray]]:
    """The columns grouped by the dtype pandas would infer, each group as one 2-D array (positions, block)."""
    lists = list(columns.values())
    length = len(lists[0]) if lists else 0
    groups: dict[str, list[int]] = {}
    for position, values in enumerate(lists):
        groups.setdefault(_column_dtype(values), []).append(position)
    blocks = []
    for dtype, positions in groups.items():
        if dtype == "float64":
            array = np.array([[math.nan if v is None else v for v in lists[p]] for p in positions], dtype=np.float64)
        elif dtype == "object":
            array = np.empty((len(positions), length), dtype=object)
            for row, p in enumerate(positions):
                array[row, :] = lists[p]
        else:
            array = np.array([lists[p] for p in positions], dtype=dtype)
        blocks.append((positions, array.reshape(len(positions), length)))
    return blocks


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    """What `pd.DataFrame(columns)` gives, built as one block per dtype.

    pandas' constructor infers each column on its own: about 1 ms for a full vector of 78 columns, half
    the latency budget. `make_block` is pandas' pseudo-public API for this; pyarrow builds frames the same way."""
    lists = list(columns.values())
    length = len(lists[0]) if lists else 0
    blocks = [make_block(array, placement=positions) for positions, array in _blocks(columns)]
    manager = BlockManager(blocks, [pd.Index(list(columns)), pd.RangeIndex(length)])
    return pd.DataFrame._from_mgr(manager, manager.axes)


def _arrays(columns: dict[str, list]) -> dict[str, np.ndarray]:
    """The columns as the arrays `_frame`'s columns hold (same dtypes and values), by name."""
    names = list(columns)
    arrays: dict[str, np.ndarray] = {}
    for positions, array in _blocks(columns):
        for row, position in enumerate(positions):
            arrays[names[position]] = array[row]
    return {name: arrays[name] for name in names}


FLAG_PREFIX = "latest_"
"""Realtime fields that are flags (consent per channel, app installed): 0, 1 or empty."""
MOMENT_SUFFIX = "_epoch_seconds"
"""Realtime fields that are moments (last order, visit, app open): seconds since 1970, never moved back."""


MOMENT_FUTURE_TOLERANCE_SECONDS = 86_400
"""How far after now a pushed moment may lie (clocks differ). Further is a bug on the sender's side, and
it would stick: a pushed moment never moves back, so a last order in 2286 would stay the last order."""


def future_moments(updates: pd.DataFrame, now: float) -> dict[str, str]:
    """Customers whose pushed moments lie more than a day after `now` (seconds since 1970), with why."""
    columns = [c for c in updates.columns if c.endswith(MOMENT_SUFFIX)]
    refused: dict[str, str] = {}
    if not columns:
        return refused
    moments = updates[columns].apply(pd.to_numeric, errors="coerce")
    for customer, update in zip(updates["customer_id"], moments.to_dict("records"), strict=True):
        late = late_moment_fields(update, now)
        if late:
            refused.setdefault(str(customer), next(iter(late.values())))
    return refused


def late_moment_fields(update: dict, now: float) -> dict[str, str]:
    """The fields of one pushed update whose moment lies more than a day after `now`, with why."""
    return {field: late_moment_reason(field, value) for field, value in update.items()
            if field.endswith(MOMENT_SUFFIX) and isinstance(value, int | float)
            and value > now + MOMENT_FUTURE_TOLERANCE_SECONDS}


def late_moment_reason(field: str, value: float) -> str:
    when = dt.datetime.fromtimestamp(min(value, 253_402_300_799), dt.UTC).strftime("%Y-%m-%d %H:%M")
    return f"{field} is {when} UTC, more than a day in the future"


def signal_problems(updates: pd.DataFrame, now: float | None = None) -> list[str]:
    """What is wrong with pushed signal values, one phrase per field (the service's request model
    checks the same; `cdp push` and any other caller get it here). With `now`, moments more than a day
    after it are problems too."""
    problems = []
    for column in updates.columns:
        values = pd.to_numeric(updates[column], errors="coerce") if column != "customer_id" else None
        if column.startswith(FLAG_PREFIX):
            bad = updates[column].notna() & ~values.isin([0, 1])
            if bad.any():
                problems.append(f"{column} must be 0 or 1, not {updates[column][bad].tolist()[0]!r}")
        elif column.endswith(MOMENT_SUFFIX):
            bad = updates[column].notna() & ~values.between(0, 10**10)
            if bad.any():
                problems.append(f"{column} must be seconds since 1970 (0 to 10^10), not {updates[column][bad].tolist()[0]!r}")
    if now is not None and "customer_id" in updates:
        problems += [f"customer {customer}: {reason}" for customer, reason in future_moments(updates, now).items()]
    return problems


class PushOutcome(NamedTuple):
    seconds: float
    """How long the push took."""
    not_in_store: list[str]
    """Customers skipped (`absent="skip"`): no online row yet."""


def push_realtime_signals(
    store: FeatureStore, updates: pd.DataFrame, log_push: bool = True, absent: Literal["refuse", "skip"] = "refuse"
) -> PushOutcome:
    """Write fresh signals (a consent change, an order, a visit) to the online store at once, and to
    the workspace's push log (`PUSH_LOG`) unless `log_push` is False (a push applied again).

    A push must carry every field of the view, so the current online values fill the fields an
    update does not set. A customer with no online row yet fails the whole push (`absent="refuse"`)
    or is skipped and named in the outcome (`"skip"`): a row of only the pushed fields would be newer
    than the batch row and hide its consents. Withdrawals are logged first, kept even when the store
    fails or the customer is skipped; grants only once the store took them."""
    if "customer_id" not in updates:
        raise FeatureStoreError("updates need a customer_id column")
    started = time.perf_counter()
    try:
        view = store.get_feature_view(REALTIME_VIEW)
    except FeatureViewNotFoundException as error:
        raise FeatureStoreError("realtime view not registered; run `cdp features apply`") from error
    fields = [f.name for f in view.features]
    logged, updates = updates, updates.drop(columns=[SENT_AS], errors="ignore")  # the log keeps it, the store not
    unknown = sorted(set(updates.columns) - set(fields) - {"customer_id", "event_timestamp"})
    if unknown:
        raise FeatureStoreError(f"unknown realtime fields: {', '.join(unknown)} (known: {', '.join(fields)})")
    problems = signal_problems(updates, now=time.time())
    if problems:
        raise FeatureStoreError("; ".join(problems))
    references = [f"{REALTIME_VIEW}:{name}" for name in fields]
    # Read, merge and write under one lock: two pushes for a customer at once (two service workers,
    # `cdp push`) would otherwise each write back the row they read, and one update would be lost.
    with _push_lock(store):
        pushed_at = pd.Timestamp.now(tz="UTC")
        if log_push:  # first: a withdrawal is kept even when the push is refused or the store fails (Redis down)
            append_push_log(Path(store.config.repo_path), logged, pushed_at, consents="withdrawals")
        current = pd.DataFrame(store.get_online_features(
            features=references, entity_rows=[{"customer_id": c} for c in updates["customer_id"]],
        ).to_dict(include_event_timestamps=True))
        missing = current.loc[current[f"{fields[0]}__ts"].fillna(0) == 0, "customer_id"].tolist()
        if missing and absent == "refuse":
            raise FeatureStoreError(f"not in the online store yet: {', '.join(missing[:5])}"
                                    f"{' …' if len(missing) > 5 else ''}; run `cdp features materialize` first")
        if missing:
            current = current[~current["customer_id"].isin(missing)]
            updates = updates[~updates["customer_id"].isin(missing)]
            logged = logged[~logged["customer_id"].isin(missing)]
            if updates.empty:
                return PushOutcome(time.perf_counter() - started, missing)
        current = current[[c for c in current.columns if not c.endswith("__ts")]]
        merged = merge_signals(current.set_index("customer_id"), updates.set_index("customer_id"), fields)
        now = pd.Timestamp.now(tz="UTC")
        rows = merged.reset_index().assign(event_timestamp=now, created_timestamp=now)
        for field in view.features:
            if str(field.dtype) == "Int64":
                rows[field.name] = pd.to_numeric(rows[field.name], errors="coerce").astype("Int64")
        store.push(REALTIME_PUSH_SOURCE, rows, to=PushMode.ONLINE)
        if log_push:  # done: its grants too (a push that failed is answered as failed, and leaves no grant)
            append_push_log(Path(store.config.repo_path), logged, pushed_at, consents="grants")
    return PushOutcome(time.perf_counter() - started, missing)


SENT_AS = "sent_as"
"""An update's optional column: the retired ids it was sent under (the caller's, redirected to their
survivor). The push log keeps them, so that a grant sent under an id whose merge a later run undoes
never stays with the other person (`read_push_log`)."""

PUSH_LOG = "pushed_signals.jsonl"
"""The pushed consents, appended (data/feast/pushed_signals.jsonl): a consent
withdrawn through /events or `cdp push` must outlive the online store (a Redis restart, a materialize
of a newer snapshot), and no source export may ever carry it. The feature build reads its consents as
consent events, materialize applies again what a loaded snapshot cannot hold, `cdp forget` removes a
person's lines and `cdp export-subject` lists them. Pushed moments (orders, visits) are not logged:
the lake gets them with the next ingest, and at event rates the log would grow by millions of lines."""


def push_log_path(workspace: Workspace) -> Path:
    return workspace.feast / PUSH_LOG


def _is_consent(field: str) -> bool:
    return field.startswith(FLAG_PREFIX) and field.endswith("_consent")


def append_push_log(feast_directory: Path, updates: pd.DataFrame, pushed_at: pd.Timestamp,
                    consents: Literal["all", "withdrawals", "grants"] = "all") -> None:
    """One JSON line per customer whose push set a consent: the consents it sent (as 0 or 1), not the
    fields filled from the store; `withdrawals` or `grants` only: a push logs its withdrawals before
    anything can fail (they are kept even when it is refused or the store is down) and its grants once
    the store took them (a refused or failed grant must not take effect at the next build). Call it under
    the push lock (`push_log_lock`)."""
    wanted = {"all": (0, 1), "withdrawals": (0,), "grants": (1,)}[consents]
    lines = []
    for row in updates.to_dict("records"):
        fields = {k: int(float(v)) for k, v in row.items() if _is_consent(k) and v is not None and v == v}
        fields = {k: v for k, v in fields.items() if v in wanted}
        if fields:
            entry = {"customer_id": str(row["customer_id"]), "pushed_at": pushed_at.isoformat(), "fields": fields}
            sent_as = row.get(SENT_AS)
            if isinstance(sent_as, list | tuple) and sent_as:
                entry[SENT_AS] = [str(sent) for sent in sent_as]
            lines.append(json.dumps(entry))
    if not lines:
        return
    path = feast_directory / PUSH_LOG
    with open(path, "ab") as log_file:
        if log_file.tell() and not _ends_with_newline(path):  # a line torn by a crash: end it, keep ours whole
            log_file.write(b"\n")
        log_file.write("".join(line + "\n" for line in lines).encode("utf-8"))
        log_file.flush()
        os.fsync(log_file.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as existing:
        existing.seek(-1, os.SEEK_END)
        return existing.read(1) == b"\n"


def push_log_entries(workspace: Workspace) -> tuple[list[dict], int]:
    """The push log's entries, and how many lines could not be read (a line torn by a crash is skipped,
    counted and logged: it must not stop a feature build or an erasure)."""
    path = push_log_path(workspace)
    entries, unreadable = [], 0
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if isinstance(entry, dict) and isinstance(entry.get("fields"), dict) and entry.get("customer_id"):
                    entries.append(entry)
                    continue
            except ValueError:
                pass
            unreadable += 1
    if unreadable:
        log.warning("%s: %d unreadable line(s) skipped (a write torn by a crash?)", path, unreadable)
    return entries, unreadable


def push_log_lock(workspace: Workspace):
    """The lock every push and every rewrite of the push log holds (all processes on this machine)."""
    return _lock_beside(workspace.feast)


def read_push_log(workspace: Workspace, identity_state: dict | None = None) -> pd.DataFrame:
    """The pushes as rows (customer_id, pushed_at, field, value), oldest first. Ids a later identity
    run retired by a merge are read as the customer they went to (`merged_into` of `identity_state`).
    An id retired into a customer that split since (`merged_then_split`) may be either part's: its
    withdrawals go to the part that kept the id (not contacting someone is the safe side), its grants
    nowhere (a grant must never reach another person); so do those sent under such an id while it was
    redirected to its survivor (`sent_as`)."""
    merged_into = (identity_state or {}).get("merged_into", {})
    merged_then_split = (identity_state or {}).get("merged_then_split", {})
    rows = []
    for entry in push_log_entries(workspace)[0]:
        sent = entry["customer_id"]
        customer = merged_into.get(sent, merged_then_split.get(sent, sent))  # merged_into already followed
        customer = merged_into.get(customer, customer)  # the part that kept the id, retired since
        ambiguous = sent_under_split_id(entry, merged_then_split)
        rows += [(customer, entry["pushed_at"], field, value) for field, value in entry["fields"].items()
                 if _is_consent(field) and not (ambiguous and value)]
    frame = pd.DataFrame(rows, columns=["customer_id", "pushed_at", "field", "value"])
    frame["pushed_at"] = pd.to_datetime(frame["pushed_at"], utc=True, format="ISO8601")
    return frame.sort_values("pushed_at", kind="stable").reset_index(drop=True)


def sent_under_split_id(entry: dict, merged_then_split: dict[str, str]) -> bool:
    """Whether a push log entry was sent under an id retired into a customer that split since (as its
    customer_id, or redirected: `sent_as`): it may be either part's person."""
    return any(sent in merged_then_split for sent in [entry["customer_id"], *entry.get(SENT_AS, [])])


def later_pushes(workspace: Workspace, loaded: pd.DataFrame) -> pd.DataFrame:
    """The logged flags the loaded realtime rows cannot hold, one row per customer indexed by customer_id:
    those pushed after their snapshot's moment or after the snapshot was built (a withdrawal of today is
    in neither a June snapshot nor one built this morning)."""
    from features.identity.store import read_identity_state

    pushes = read_push_log(workspace, read_identity_state(workspace))
    if pushes.empty or loaded.empty:
        return pd.DataFrame()
    snapshot = loaded.set_index("customer_id")[["event_timestamp", "created_timestamp"]]
    pushes = pushes[pushes["customer_id"].isin(snapshot.index)]
    as_of = pd.to_datetime(snapshot["event_timestamp"], utc=True).reindex(pushes["customer_id"]).to_numpy()
    built = pd.to_datetime(snapshot["created_timestamp"], utc=True).reindex(pushes["customer_id"]).to_numpy()
    moments = pushes["pushed_at"].to_numpy()
    # Only what the snapshot cannot hold: a flag it holds may have been replaced by a later consent record.
    late = pushes[(moments >= as_of) | (moments >= built)]
    if late.empty:
        return pd.DataFrame()
    return late.pivot_table(index="customer_id", columns="field", values="value", aggfunc="last")


def with_later_pushes(workspace: Workspace, view: FeatureView, latest: pd.DataFrame) -> pd.DataFrame:
    """The realtime rows a materialize loads, with the logged flags they cannot hold already in: loaded
    without them, a withdrawn consent would read as granted until the pushes are applied again."""
    updates = later_pushes(workspace, latest)
    if updates.empty:
        return latest
    fields = [f.name for f in view.features]
    rows = merge_signals(latest.set_index("customer_id"), updates, fields).reset_index()
    for field in view.features:
        if str(field.dtype) == "Int64":
            rows[field.name] = pd.to_numeric(rows[field.name], errors="coerce").astype("Int64")
    return rows[latest.columns]


def reapply_pushes(workspace: Workspace, store: FeatureStore, loaded: pd.DataFrame) -> int:
    """After a materialize: push again `later_pushes` (also those that arrived while it loaded). Returns
    the customers pushed again."""
    updates = later_pushes(workspace, loaded)
    if updates.empty:
        return 0
    push_realtime_signals(store, updates.reset_index(), log_push=False)
    return len(updates)


def merge_signals(current: pd.DataFrame, changes: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """The online rows with the pushed values in. A value a push leaves empty keeps the stored one (in a
    push for several customers, a field one of them did not send is empty for them: it must not erase
    their consent); a last order, visit or app open never moves back in time."""
    merged = current.copy()
    for column in changes.columns.intersection(fields):
        old = merged.loc[changes.index, column]
        new = changes[column].where(changes[column].notna(), old)
        if column.endswith(MOMENT_SUFFIX):
            new = pd.Series(np.fmax(pd.to_numeric(old, errors="coerce").to_numpy(dtype=float),
                                    pd.to_numeric(new, errors="coerce").to_numpy(dtype=float)), index=new.index)
        merged.loc[changes.index, column] = new
    return merged


def _push_lock(store: FeatureStore):
    """`push_log_lock` of the store's workspace: its Feast repository is the workspace's data/feast."""
    return _lock_beside(Path(store.config.repo_path))


def _lock_beside(feast_directory: Path):
    """An exclusive lock beside the workspace's Feast repository (every process on this machine)."""
    return exclusive_lock(feast_directory / ".realtime_push.lock")
