"""A packed SQLite online store for Feast: one row per customer per feature view.

Feast's SQLite store keeps one row per feature per customer and writes each value as its own
serialized protobuf, so materializing a million customers with ~77 features takes a quarter of an
hour. This store keeps the same Feast interface (online reads, pushes, `write_to_online_store`) but
stores a customer's values of one view as one JSON array in one row, bulk-loads the latest snapshot
straight from the feature tables (`bulk_load`), and never lets an older value overwrite a newer one
(Feast's SQLite store does). Select it with `type: features.online_store.PackedSqliteOnlineStore`
(the default of `cdp`, see features/feature_store.py). Both stores also answer `read_values`: plain
Python values for many views in one query, what cdp's online reads use instead of Feast's protobufs.
"""

from __future__ import annotations

import json
import math
import struct
import weakref
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
from feast import Entity, FeatureView, RepoConfig
from feast import utils as feast_utils
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.utils import to_naive_utc
from feast.value_type import ValueType

MMAP_BYTES = 8 << 30
SQLITE_PARAMETERS = 32_000
PROTO_FIELDS = {ValueType.DOUBLE: "double_val", ValueType.FLOAT: "float_val", ValueType.INT64: "int64_val",
                ValueType.INT32: "int32_val", ValueType.STRING: "string_val", ValueType.BOOL: "bool_val"}


class PackedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["features.online_store.PackedSqliteOnlineStore"] = "features.online_store.PackedSqliteOnlineStore"


def _packed_table(config: RepoConfig, table: FeatureView) -> str:
    name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
    return _quote_id(f"{name}__packed")


def _entity_key(customer_id: str, version: int) -> bytes:
    key = EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val=customer_id)])
    return serialize_entity_key(key, entity_key_serialization_version=version)


def _plain(value: Any) -> Any:
    """JSON-safe: NaN, None and pandas' NA become null; numpy scalars become Python numbers."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _epoch_seconds(times: pd.Series) -> list[int]:
    return ((pd.to_datetime(times, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).tolist()


def _to_proto(value: Any, value_type: ValueType) -> ValueProto:
    if value is None:
        return ValueProto()
    field = PROTO_FIELDS.get(value_type, "string_val")
    if field == "string_val":
        value = str(value)
    elif field in ("int64_val", "int32_val"):
        value = int(value)
    return ValueProto(**{field: value})


def _packed_rows(config: RepoConfig, table: FeatureView, latest: pd.DataFrame) -> tuple[list, list, list, list]:
    """Entity keys, event and created times (seconds since the epoch, as Feast's SQLite adapter writes
    datetimes) and JSON payloads of the latest rows."""
    names = [f.name for f in table.features]
    version = config.entity_key_serialization_version
    keys = [_entity_key(str(c), version) for c in latest["customer_id"]]
    columns = [latest[n].astype(object).where(latest[n].notna(), None).tolist() for n in names]
    payloads = [json.dumps([_plain(v) for v in row]) for row in zip(*columns, strict=True)] if names else []
    return keys, _epoch_seconds(latest["event_timestamp"]), _epoch_seconds(latest["created_timestamp"]), payloads


def _by_replacing(latest: pd.DataFrame, replacing: Collection[str], *columns: list) -> list[tuple[bool, list[list]]]:
    """`columns` (one value per row of `latest`) as non-empty (newer_only, columns) groups: the rows of
    customers in `replacing` are written whatever the store holds, the others only over an older row."""
    if not replacing:  # the usual case, 1M rows at a time: the columns as they are
        return [(True, list(columns))] if len(latest) else []
    forced = latest["customer_id"].astype(str).isin(list(replacing)).to_numpy()
    groups = []
    for newer_only in (True, False):
        chosen = np.flatnonzero(forced != newer_only)
        if len(chosen):
            groups.append((newer_only, [[column[i] for i in chosen] for column in columns]))
    return groups


def _payload(values: dict[str, ValueProto], names: list[str]) -> str:
    """A customer's values of one view, in the view's field order, as the JSON array both stores keep."""
    return json.dumps([_plain(feast_value_type_to_python_type(values[n])) if n in values else None for n in names])


def _fields(table: FeatureView) -> list[tuple[str, ValueType]]:
    return [(f.name, f.dtype.to_value_type()) for f in table.features]


def _protos(values: list, fields: list[tuple[str, ValueType]], wanted: set[str] | None) -> dict[str, ValueProto]:
    return {name: _to_proto(value, kind) for (name, kind), value in zip(fields, values, strict=False)
            if wanted is None or name in wanted}


def _float32(value: Any) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


PYTHON_TYPES = {"double_val": float, "float_val": _float32, "int64_val": int, "int32_val": int, "bool_val": bool}


_TYPES_OF_VIEW: dict[int, tuple[weakref.ref, list]] = {}


def _python_types(table: FeatureView) -> list[Callable[[Any], Any]]:
    """Per field, what Feast's to_dict returns for a stored value: the proto `_to_proto` builds, read back.
    Kept per view object (readers hold theirs until the registry refreshes): Feast's type conversion of
    77 fields cost about 0.1 ms of every one-customer read. Looked up by identity: a FeatureView's `==`
    compares its sources field by field (0.1 ms a view), which a WeakKeyDictionary would call."""
    key = id(table)
    cached = _TYPES_OF_VIEW.get(key)
    if cached is not None and cached[0]() is table:
        return cached[1]
    types = [PYTHON_TYPES.get(PROTO_FIELDS.get(kind, "string_val"), str) for _, kind in _fields(table)]
    _TYPES_OF_VIEW[key] = (weakref.ref(table, lambda _, key=key: _TYPES_OF_VIEW.pop(key, None)), types)
    return types


def _load_payload(payload: str | bytes) -> Any:
    """A stored JSON payload, parsed by orjson (about 4x faster on arrays of numbers); Python's
    parser for the non-standard Infinity that json.dumps writes for an infinite value."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def _python_values(values: list, types: list[Callable[[Any], Any]]) -> list:
    """A stored JSON array as Feast would return it; fields missing from an older payload are None."""
    if len(values) < len(types):
        values = values + [None] * (len(types) - len(values))
    # most stored values already have their type (a float field's JSON number is a float)
    return [value if value is None or value.__class__ is cast else cast(value)
            for cast, value in zip(types, values, strict=False)]


class PackedSqliteOnlineStore(SqliteOnlineStore):
    def _get_conn(self, config: RepoConfig):
        fresh = self._conn is None
        conn = super()._get_conn(config)
        if fresh:
            # Reads are point lookups all over the file: map it into memory instead of copying pages. At 1M
            # customers a full vector's median is 0.33-0.52 ms mapped against 0.39-0.65 ms copied with the file
            # in the OS cache, 0.36-0.40 against 1.4-1.6 ms without (a fault reads ahead, a copy reads 4 KB).
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        return conn

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        conn = self._get_conn(config)
        for table in tables_to_keep:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_packed_table(config, table)} "
                "(entity_key BLOB PRIMARY KEY, event_ts timestamp, created_ts timestamp, payload TEXT)"
            )
        for table in tables_to_delete:
            conn.execute(f"DROP TABLE IF EXISTS {_packed_table(config, table)}")
        conn.commit()

    def _upsert(self, config: RepoConfig, table: FeatureView, rows: list[tuple], newer_only: bool = True) -> None:
        name = _packed_table(config, table)
        conn = self._get_conn(config)
        condition = f" WHERE excluded.event_ts >= {name}.event_ts" if newer_only else ""
        with conn:
            conn.executemany(
                f"INSERT INTO {name} (entity_key, event_ts, created_ts, payload) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(entity_key) DO UPDATE SET event_ts = excluded.event_ts, "
                f"created_ts = excluded.created_ts, payload = excluded.payload{condition}",
                rows,
            )

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        names = [f.name for f in table.features]
        version = config.entity_key_serialization_version
        rows = []
        for entity_key, values, timestamp, created in data:
            rows.append((
                serialize_entity_key(entity_key, entity_key_serialization_version=version),
                to_naive_utc(timestamp), to_naive_utc(created) if created is not None else None, _payload(values, names),
            ))
        self._upsert(config, table, rows)
        if progress:
            progress(len(data))

    def bulk_load(self, config: RepoConfig, table: FeatureView, latest: pd.DataFrame,
                  replacing: Collection[str] = ()) -> int:
        """Write each customer's latest row (customer_id, event_timestamp, created_timestamp, features),
        where the stored one is not newer; the rows of `replacing` whatever the stored one holds."""
        keys, event_ts, created, payloads = _packed_rows(config, table, latest)
        for newer_only, columns in _by_replacing(latest, replacing, keys, event_ts, created, payloads):
            self._upsert(config, table, list(zip(*columns, strict=True)), newer_only=newer_only)
        return len(keys)

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(k, entity_key_serialization_version=version) for k in entity_keys]
        rows = self._get_conn(config).execute(
            f"SELECT entity_key, event_ts, payload FROM {_packed_table(config, table)} "
            f"WHERE entity_key IN ({','.join('?' * len(keys))})",
            keys,
        ).fetchall()
        found = {key: (ts, payload) for key, ts, payload in rows}
        fields = _fields(table)
        wanted = set(requested_features) if requested_features else None
        result: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for key in keys:
            if key not in found:
                result.append((None, None))
                continue
            ts, payload = found[key]
            protos = _protos(json.loads(payload), fields, wanted)
            moment = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
            result.append((moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC), protos))
        return result

    def read_values(self, config: RepoConfig, tables: Sequence[FeatureView],
                    customer_ids: Sequence[str]) -> list[dict[str, list]]:
        """Per view, each found customer's values as Feast would return them, in the view's field order.

        One query for all views and no protobufs: the fast path of `OnlineFeatureReader`."""
        version = config.entity_key_serialization_version
        by_key = {_entity_key(c, version): c for c in dict.fromkeys(customer_ids)}
        keys = list(by_key)
        result: list[dict[str, list]] = [{} for _ in tables]
        if not tables:
            return result
        types = [_python_types(table) for table in tables]
        names = [_packed_table(config, table) for table in tables]
        conn = self._get_conn(config)
        chunk = max(1, SQLITE_PARAMETERS // len(tables))
        for start in range(0, len(keys), chunk):
            part = keys[start:start + chunk]
            marks = ",".join("?" * len(part))
            query = " UNION ALL ".join(f"SELECT {i}, entity_key, payload FROM {name} WHERE entity_key IN ({marks})"
                                       for i, name in enumerate(names))
            for position, key, payload in conn.execute(query, part * len(tables)).fetchall():
                result[position][by_key[key]] = _python_values(_load_payload(payload), types[position])
        return result


    def delete_customers(self, config: RepoConfig, tables: Sequence[FeatureView], customer_ids: Sequence[str]) -> int:
        """Erase customers from every table of the store file that is keyed by entity (packed or Feast's
        own layout), with secure_delete and a VACUUM so no copy of the key or values is left in the file
        (freed pages zeroed, index pages rebuilt).
        `tables` is unused: every keyed table is searched, so no view's rows survive. Returns rows deleted."""
        version = config.entity_key_serialization_version
        keys = [_entity_key(c, version) for c in dict.fromkeys(customer_ids)]
        conn = self._get_conn(config)
        if not keys:
            return 0
        conn.execute("PRAGMA secure_delete = ON")
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        deleted = 0
        with conn:
            for name in names:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({_quote_id(name)})").fetchall()}
                if "entity_key" not in columns:
                    continue
                for start in range(0, len(keys), SQLITE_PARAMETERS):
                    part = keys[start:start + SQLITE_PARAMETERS]
                    cursor = conn.execute(
                        f"DELETE FROM {_quote_id(name)} WHERE entity_key IN ({','.join('?' * len(part))})", part)
                    deleted += cursor.rowcount
        if deleted:
            # Index b-trees keep copies of keys in interior pages; rebuilding the file drops them.
            conn.execute("VACUUM")
        return deleted


# Set only if newer: an older value never overwrites a newer one.
# KEYS: the keys; ARGV: payload and time for each key, in turn.
SET_IF_NEWER = """
local written = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not current or cjson.decode(current)['t'] <= tonumber(ARGV[2 * i]) then
    redis.call('SET', key, ARGV[2 * i - 1])
    written = written + 1
  end
end
return written
"""
REDIS_KEYS_PER_CALL = 500
REDIS_CALLS_PER_PIPELINE = 20


def _decode_redis(raw: bytes | None, fields: list[tuple[str, ValueType]], wanted: set[str] | None):
    """A stored {"t": seconds, "v": [values]} as Feast's (event time, values) pair; (None, None) if absent."""
    if raw is None:
        return None, None
    stored = json.loads(raw)
    return datetime.fromtimestamp(stored["t"], UTC), _protos(stored["v"], fields, wanted)


def is_redis_error(error: BaseException) -> bool:
    """One of redis-py's errors (down, unreachable, refused, timed out): not OSErrors, so told by module."""
    return type(error).__module__.startswith("redis")


REDIS_CLIENT_DEFAULTS = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}
"""Seconds. Reads are one MGET; a bulk load's largest call (REDIS_KEYS_PER_CALL keys) takes well under 1 s.
A Redis that accepts connections but does not answer (stopped, partitioned) costs one read timeout."""


def redis_unreachable(connection_string: str) -> str | None:
    """Why the Redis of `connection_string` (Feast's format: `host:port,password=...,ssl=true`) does not
    answer a PING, or None. A job checks before changing anything; the reason names host and port, never
    the password."""
    import redis

    nodes, params = RedisOnlineStore._parse_connection_string(connection_string)
    if not nodes:
        return "no host:port in the connection string"
    options = {key: params[key] for key in ("password", "username", "ssl", "db") if key in params}
    try:
        client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0].get("port", 6379)), **REDIS_CLIENT_DEFAULTS,
                             **options)
        client.ping()
        client.close()
    except Exception as error:  # refused, timed out, authentication: any of them means not now
        return f"{type(error).__name__}: {error}"
    return None


class PackedRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    type: Literal["features.online_store.PackedRedisOnlineStore"] = "features.online_store.PackedRedisOnlineStore"
    key_prefix: str = "cdp"
    """The workspace's namespace (`features.feature_store.redis_namespace`): keys are
    `<key_prefix>:<project>:<view>:<entity key>`."""


class PackedRedisOnlineStore(RedisOnlineStore):
    """The Redis counterpart: one key per customer and view holding {"t": epoch seconds, "v": [values]}."""

    @staticmethod
    def _key(config: RepoConfig, table: FeatureView, entity_key: bytes) -> bytes:
        return f"{config.online_store.key_prefix}:{config.project}:{table.name}:".encode() + entity_key

    def _get_client(self, online_store_config: RedisOnlineStoreConfig):
        """Feast's client, failing fast when Redis is down: redis-py retries three times with backoff up
        to 10 s by default, so every request waited 5-13 s for its 503 while Redis was away (20-30 s when
        it hung). Here: one retry without backoff on a dropped connection (reopened after a Redis
        restart), none on a timeout; 1 s to connect, 2 s to read; settings in the connection string
        (`socket_timeout=…`) still win."""
        if not self._client:
            given = set(self._parse_connection_string(online_store_config.connection_string)[1])
            defaults = ",".join(f"{name}={value}" for name, value in REDIS_CLIENT_DEFAULTS.items() if name not in given)
            config = online_store_config.model_copy(update={
                "connection_string": ",".join(filter(None, (online_store_config.connection_string, defaults)))})
            client = super()._get_client(config)
            if hasattr(client, "set_retry"):
                from redis.backoff import NoBackoff
                from redis.exceptions import ConnectionError as RedisConnectionError
                from redis.retry import Retry

                # a dropped connection is reopened once; a timeout is not waited out twice
                client.set_retry(Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        return self._client

    def _write(self, config: RepoConfig, table: FeatureView, keys: list[bytes], times: list[int],
               payloads: list[str], newer_only: bool = True) -> None:
        client = self._get_client(config.online_store)
        script = client.register_script(SET_IF_NEWER)
        pipeline = client.pipeline(transaction=False)
        for call, start in enumerate(range(0, len(keys), REDIS_KEYS_PER_CALL), start=1):
            stop = start + REDIS_KEYS_PER_CALL
            chunk_keys, arguments = [], []
            for key, moment, payload in zip(keys[start:stop], times[start:stop], payloads[start:stop], strict=True):
                chunk_keys.append(self._key(config, table, key))
                arguments.extend((f'{{"t":{moment},"v":{payload}}}', moment))
            if newer_only:
                script(keys=chunk_keys, args=arguments, client=pipeline)
            else:
                for key, value in zip(chunk_keys, arguments[::2], strict=True):
                    pipeline.set(key, value)
            if call % REDIS_CALLS_PER_PIPELINE == 0:
                pipeline.execute()
        pipeline.execute()

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        names = [f.name for f in table.features]
        version = config.entity_key_serialization_version
        keys, times, payloads = [], [], []
        for entity_key, values, timestamp, _ in data:
            keys.append(serialize_entity_key(entity_key, entity_key_serialization_version=version))
            moment = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
            times.append(int(moment.timestamp()))
            payloads.append(_payload(values, names))
        self._write(config, table, keys, times, payloads)
        if progress:
            progress(len(data))

    def bulk_load(self, config: RepoConfig, table: FeatureView, latest: pd.DataFrame,
                  replacing: Collection[str] = ()) -> int:
        """As the SQLite store's: newer rows kept, except those of `replacing`."""
        keys, event_ts, _, payloads = _packed_rows(config, table, latest)
        for newer_only, columns in _by_replacing(latest, replacing, keys, event_ts, payloads):
            self._write(config, table, *columns, newer_only=newer_only)
        return len(keys)

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        version = config.entity_key_serialization_version
        keys = [self._key(config, table, serialize_entity_key(k, entity_key_serialization_version=version))
                for k in entity_keys]
        fields = _fields(table)
        wanted = set(requested_features) if requested_features else None
        return [_decode_redis(raw, fields, wanted) for raw in self._get_client(config.online_store).mget(keys)]

    def read_values(self, config: RepoConfig, tables: Sequence[FeatureView],
                    customer_ids: Sequence[str]) -> list[dict[str, list]]:
        """Per view, each found customer's values as Feast would return them, in the view's field order.

        One MGET for all views and customers, no protobufs: the fast path of `OnlineFeatureReader`."""
        version = config.entity_key_serialization_version
        customers = list(dict.fromkeys(customer_ids))
        keys = [_entity_key(c, version) for c in customers]
        result: list[dict[str, list]] = [{} for _ in tables]
        if not tables or not keys:
            return result
        raw_values = self._get_client(config.online_store).mget(
            [self._key(config, table, key) for table in tables for key in keys])
        for position, table in enumerate(tables):
            types = _python_types(table)
            for customer, raw in zip(customers, raw_values[position * len(keys):(position + 1) * len(keys)], strict=True):
                if raw is not None:
                    result[position][customer] = _python_values(_load_payload(raw)["v"], types)
        return result

    def delete_customers(self, config: RepoConfig, tables: Sequence[FeatureView], customer_ids: Sequence[str]) -> int:
        """Erase customers' keys for the given views, and Feast's own per-entity hash if one exists (a
        store once materialized through Feast's Redis layout). Returns keys deleted."""
        version = config.entity_key_serialization_version
        entity_keys = [_entity_key(c, version) for c in dict.fromkeys(customer_ids)]
        if not entity_keys:
            return 0
        keys = [self._key(config, table, key) for table in tables for key in entity_keys]
        keys += [key + config.project.encode("utf8") for key in entity_keys]  # Feast's RedisOnlineStore layout
        # keys of the layout before namespaces (`cdp:<project>:...`), left by a store loaded by an older cdp
        keys += [f"cdp:{config.project}:{table.name}:".encode() + key for table in tables for key in entity_keys]
        return int(self._get_client(config.online_store).delete(*keys))

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Every view of the request in one MGET (Feast's Redis store batches its HMGETs the same way)."""
        version = config.entity_key_serialization_version
        work = []
        for table, requested in grouped_refs:
            values, indexes, length = feast_utils._get_unique_entities(table, join_key_values, entity_name_to_join_key_map)
            protos = feast_utils._get_entity_key_protos(values)
            keys = [self._key(config, table, serialize_entity_key(k, entity_key_serialization_version=version))
                    for k in protos]
            work.append((table, requested, keys, indexes, length))
        if not work:
            return
        raw_values = self._get_client(config.online_store).mget([key for *_, keys, _, _ in work for key in keys])
        offset = 0
        for table, requested, keys, indexes, length in work:
            fields, wanted = _fields(table), set(requested)
            rows = [_decode_redis(raw, fields, wanted) for raw in raw_values[offset:offset + len(keys)]]
            offset += len(keys)
            feast_utils._populate_response_from_feature_data(
                requested, rows, indexes, online_features_response, full_feature_names, table, length,
                include_feature_view_version_metadata,
            )
