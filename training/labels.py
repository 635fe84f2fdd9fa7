"""Labels and training snapshots, chosen from the data itself.

Pure functions: DataFrames in, DataFrames out. A label looks only at what happens at or after its
snapshot, and the features it is paired with (through Feast's point-in-time join) only at what
happened before it; `event_timestamp` is the boundary for both.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd


class InsufficientDataError(Exception):
    """The data cannot support this model (history too short, too few rows); the message says why."""


def choose_snapshots(
    data_start: pd.Timestamp,
    as_of: pd.Timestamp,
    horizon_days: int,
    count: int,
    spacing_days: int,
    minimum_history_days: int,
    model: str,
) -> list[pd.Timestamp]:
    """Snapshot times whose label windows all end on or before `as_of`, oldest first.

    The latest one (as_of − horizon) is the out-of-time validation window; the others step back
    by `spacing_days` while at least `minimum_history_days` of data precede them."""
    latest = as_of - pd.Timedelta(days=horizon_days)
    earliest = data_start + pd.Timedelta(days=minimum_history_days)
    chosen = [latest - pd.Timedelta(days=spacing_days * step) for step in range(count)]
    chosen = sorted(t for t in chosen if t >= earliest)
    if len(chosen) < 2:
        available = (as_of - data_start).days
        needed = horizon_days + minimum_history_days + spacing_days
        raise InsufficientDataError(
            f"{model}: history too short — {available} days of data before {as_of.date()}, a {horizon_days}-day "
            f"label window with {minimum_history_days} days of history needs at least {needed} for two snapshots"
        )
    return chosen


def in_churn_population(days_since_last_order: np.ndarray, active_days: float) -> np.ndarray:
    """Who the churn label is defined for: an order in the `active_days` before the snapshot (the
    HAVING clause of `label_churn`). Someone who never ordered, or not for longer, cannot churn in its
    sense, so the model's probability means nothing for them: scoring leaves it empty, drift leaves
    them out."""
    days = np.asarray(days_since_last_order, dtype=float)
    with np.errstate(invalid="ignore"):
        return days <= active_days


def label_churn(orders: pd.DataFrame, snapshots: Sequence[pd.Timestamp], horizon_days: int,
                active_days: int) -> pd.DataFrame:
    """churned = 1 when a customer who bought in the `active_days` before a snapshot buys nothing
    in the `horizon_days` from it. Columns: customer_id, event_timestamp, churned."""
    times = pd.DataFrame({"event_timestamp": pd.to_datetime(list(snapshots), utc=True)})
    return _query(
        f"""
        SELECT o.customer_id, t.event_timestamp,
               CASE WHEN count(*) FILTER (WHERE o.ordered_at >= t.event_timestamp
                                          AND o.ordered_at < t.event_timestamp + INTERVAL {int(horizon_days)} DAY) = 0
                    THEN 1 ELSE 0 END AS churned
        FROM orders o JOIN times t
          ON o.ordered_at >= t.event_timestamp - INTERVAL {int(active_days)} DAY
         AND o.ordered_at < t.event_timestamp + INTERVAL {int(horizon_days)} DAY
        GROUP BY ALL
        HAVING count(*) FILTER (WHERE o.ordered_at < t.event_timestamp) > 0
        ORDER BY t.event_timestamp, o.customer_id
        """,
        orders=orders, times=times,
    )


def label_net_revenue(orders: pd.DataFrame, returns: pd.DataFrame, population: pd.DataFrame,
                      horizon_days: int) -> pd.DataFrame:
    """Net revenue in the `horizon_days` from each (customer_id, event_timestamp) row of
    `population`: amounts ordered in the window minus what came back of those orders within it."""
    return _query(
        f"""
        WITH window_orders AS (
            SELECT p.customer_id, p.event_timestamp, o.order_id, o.amount
            FROM population p JOIN orders o
              ON o.customer_id = p.customer_id AND o.ordered_at >= p.event_timestamp
             AND o.ordered_at < p.event_timestamp + INTERVAL {int(horizon_days)} DAY
        ),
        returned AS (
            SELECT w.customer_id, w.event_timestamp, sum(r.amount) AS returned
            FROM window_orders w JOIN returns r
              ON r.order_id = w.order_id AND r.returned_at < w.event_timestamp + INTERVAL {int(horizon_days)} DAY
            GROUP BY ALL
        ),
        bought AS (SELECT customer_id, event_timestamp, sum(amount) AS gross FROM window_orders GROUP BY ALL)
        SELECT p.customer_id, p.event_timestamp,
               -- rounded to cents: DuckDB's parallel sums differ in the last bits from run to run
               round(coalesce(b.gross, 0) - coalesce(r.returned, 0), 2) + 0.0 AS net_revenue
        FROM population p
        LEFT JOIN bought b USING (customer_id, event_timestamp)
        LEFT JOIN returned r USING (customer_id, event_timestamp)
        ORDER BY p.event_timestamp, p.customer_id
        """,
        orders=orders, returns=returns, population=population,
    )


def label_conversions(touches: pd.DataFrame, orders: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """converted = 1 when the customer ordered after the touch and within `window_days` of it.
    Keeps every touch column; `event_timestamp` is the send time."""
    labelled = _query(
        f"""
        SELECT t.*, CASE WHEN EXISTS (
                   SELECT 1 FROM orders o WHERE o.customer_id = t.customer_id AND o.ordered_at > t.sent_at
                     AND o.ordered_at <= t.sent_at + INTERVAL {int(window_days)} DAY) THEN 1 ELSE 0 END AS converted
        FROM touches t ORDER BY t.sent_at, t.customer_id
        """,
        touches=touches, orders=orders,
    )
    return labelled.assign(event_timestamp=labelled["sent_at"])


def choose_touch_days(touches: pd.DataFrame, as_of: pd.Timestamp, window_days: int, day_count: int,
                      minimum_history_days: int, data_start: pd.Timestamp) -> list[pd.Timestamp]:
    """The busiest days of controlled campaigns (campaigns that hold `channel = none` rows, so the
    effect of contacting is learnable), whose conversion windows end by `as_of`; oldest first."""
    if touches.empty:
        return []
    controlled = touches.groupby("campaign_id")["channel"].transform(lambda c: (c == "none").any())
    usable = touches[controlled & (touches["sent_at"] + pd.Timedelta(days=window_days) <= as_of)
                     & (touches["sent_at"] >= data_start + pd.Timedelta(days=minimum_history_days))]
    days = usable["sent_at"].dt.floor("D").value_counts()
    return sorted(days.nlargest(day_count).index)


def _query(sql: str, **frames: pd.DataFrame) -> pd.DataFrame:
    """Run SQL over the given frames (registered under their keyword names); timestamps come back UTC."""
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        for name, frame in frames.items():
            connection.register(name, frame)
        return _utc(connection.sql(sql).df())
    finally:
        connection.close()


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame
