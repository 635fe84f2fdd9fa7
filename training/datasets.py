"""The I/O edge of training: lake tables with their customer_id, and feature-store retrieval."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cdp.config import FeatureSettings
from cdp.workspace import Workspace
from features.feature_tables import open_lake


def read_activity(workspace: Workspace) -> dict[str, pd.DataFrame]:
    """Orders, returns and touches with the customer_id of their record (from the identity map)."""
    connection, _ = open_lake(workspace)
    try:
        orders = connection.sql(
            """SELECT m.customer_id, o.order_id, o.ordered_at, o.amount
               FROM orders o JOIN identity_map m USING (source, source_id)"""
        ).df()
        returns = connection.sql("SELECT order_id, returned_at, amount FROM returns").df()
        touches = connection.sql(
            """SELECT m.customer_id, t.touch_id, t.sent_at, t.channel, coalesce(t.offer, 'none') AS offer, t.campaign_id
               FROM touches t JOIN identity_map m USING (source, source_id)"""
        ).df()
    finally:
        connection.close()
    frames = {"orders": orders, "returns": returns, "touches": touches}
    for frame in frames.values():
        for column in frame.columns:
            if column.endswith("_at"):
                frame[column] = pd.to_datetime(frame[column], utc=True)
    return frames


def net_transactions(orders: pd.DataFrame, returns: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Orders before `as_of` net of what came back of them before it: the input of BG/NBD."""
    before = orders[orders["ordered_at"] < as_of]
    returned = returns[returns["returned_at"] < as_of].groupby("order_id")["amount"].sum()
    net = before["amount"] - before["order_id"].map(returned).fillna(0.0)
    return before[["customer_id", "ordered_at"]].assign(net_amount=net.to_numpy())


def retrieve_training_frame(workspace: Workspace, settings: FeatureSettings, service: str,
                            entity_rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Point-in-time features for labelled rows through the model's FeatureService."""
    from features.feature_store import get_training_features, open_feature_store, service_features

    store = open_feature_store(workspace, settings, offline=True)
    frame = get_training_features(store, service, entity_rows)
    frame = frame.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    return frame, [name for names in service_features(store, [service]).values() for name in names]


def split_for_testing(customer_ids: pd.Series, test_share: float, seed: int) -> np.ndarray:
    """True for customers held out for reported metrics; a stable hash, so a customer is always on
    the same side and the champion is re-scored on exactly the rows the challenger was."""
    salt = str(seed).encode()
    buckets = customer_ids.map(lambda c: int.from_bytes(hashlib.blake2b(salt + str(c).encode(), digest_size=4).digest()))
    return (buckets.to_numpy() % 10_000) < int(test_share * 10_000)


def hash_frame(frame: pd.DataFrame) -> str:
    """A digest of the exact training inputs, for lineage."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def unique_times(times: Sequence[pd.Timestamp]) -> list[pd.Timestamp]:
    return sorted({pd.Timestamp(t) for t in times})
