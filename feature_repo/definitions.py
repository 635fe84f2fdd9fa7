"""Feast objects for one workspace.

Sources point at the workspace's feature tables, so the objects are built per workspace; the
schemas come from the tables themselves (custom attributes vary by company). Each model reads its
features through one FeatureService, for training (historical retrieval) and serving (online) alike.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

KEY_COLUMNS = ("customer_id", "event_timestamp", "created_timestamp")
REALTIME_VIEW = "realtime_signals"
REALTIME_PUSH_SOURCE = "realtime_signals_push"

# Which feature views each model reads. Every feature of a view is used unless listed otherwise.
MODEL_FEATURE_VIEWS: dict[str, tuple[str, ...]] = {
    "churn_v1": ("purchase_history", "behaviour", "engagement", "service", "profile"),
    "propensity_v1": ("purchase_history", "behaviour", "engagement", "reachability", "service", "profile"),
    "clv_v1": ("purchase_history", "behaviour", "service", "profile"),
    "recommendation_v1": ("purchase_history", "engagement", "reachability", REALTIME_VIEW),  # policy inputs
}

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING,
                  description="A resolved person: customer_id from the identity map.")


def _feast_type(arrow_type: pa.DataType):
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return Int64
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return Float64
    if pa.types.is_timestamp(arrow_type):
        return Int64  # never stored: timestamps travel as seconds since epoch
    return String


def feature_schema(path: Path) -> list[Field]:
    """Feast fields from a feature table's Parquet schema (keys excluded)."""
    schema = pq.read_schema(path)
    return [Field(name=f.name, dtype=_feast_type(f.type)) for f in schema if f.name not in KEY_COLUMNS]


def build_definitions(feature_tables: dict[str, Path], ttl: dt.timedelta) -> list:
    """Entity, sources, feature views and feature services for the given feature tables."""
    views: dict[str, FeatureView] = {}
    objects: list = [customer]
    for family, path in feature_tables.items():
        source = FileSource(name=f"{family}_source", path=str(path), timestamp_field="event_timestamp",
                            created_timestamp_column="created_timestamp")
        if family == REALTIME_VIEW:
            source = PushSource(name=REALTIME_PUSH_SOURCE, batch_source=source)
        views[family] = FeatureView(
            name=family, entities=[customer], ttl=ttl, schema=feature_schema(path), source=source, online=True,
            description=f"Customer features: {family.replace('_', ' ')}", tags={"family": family},
        )
        objects.append(source)
    objects.extend(views.values())
    for service, families in MODEL_FEATURE_VIEWS.items():
        chosen = [views[f] for f in families if f in views]
        if chosen:
            objects.append(FeatureService(name=service, features=chosen, description=f"Features of model {service}"))
    return objects
