"""A faster SQLite online store for Feast: the same tables and reads, bulk writes.

Feast's SQLite store upserts one row per feature per customer with one `execute` each; this subclass
prepares the rows once and writes them with `executemany` in one transaction (about twice as fast),
and never lets an older value overwrite a newer one (Feast's SQLite store does; its Redis store does not). Select it with `type: features.online_store.BulkSqliteOnlineStore`
(the default of `cdp`, see features/feature_store.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc


class BulkSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["features.online_store.BulkSqliteOnlineStore"] = "features.online_store.BulkSqliteOnlineStore"


class BulkSqliteOnlineStore(SqliteOnlineStore):
    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        if getattr(config.online_store, "vector_enabled", False) or getattr(
            config.online_store, "enable_openai_compatible_store", False
        ):
            return super().online_write_batch(config, table, data, progress)
        conn = self._get_conn(config)
        table_name = _quote_id(_table_id(config.project, table, config.registry.enable_online_feature_view_versioning))
        upsert = (
            f"INSERT INTO {table_name} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            f"created_ts = excluded.created_ts WHERE excluded.event_ts >= {table_name}.event_ts;"
        )
        version = config.entity_key_serialization_version
        rows = []
        for entity_key, values, timestamp, created in data:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            event_ts = to_naive_utc(timestamp)
            created_ts = to_naive_utc(created) if created is not None else None
            rows.extend((key, name, value.SerializeToString(), event_ts, created_ts) for name, value in values.items())
        with conn:
            conn.executemany(upsert, rows)
        if progress:
            progress(len(data))
