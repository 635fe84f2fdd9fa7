"""Labels and snapshots: each label looks only at its window, each snapshot fits before --as-of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.labels import (
    InsufficientDataError,
    choose_snapshots,
    choose_touch_days,
    in_churn_population,
    label_churn,
    label_conversions,
    label_net_revenue,
)

UTC = "UTC"


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def orders_frame(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "amount"]).assign(
        ordered_at=lambda f: pd.to_datetime(f["ordered_at"], utc=True, format="ISO8601"))


def test_churn_label_counts_only_the_horizon_after_the_snapshot():
    # Given: A buys before and within 90 days after; B only before; C bought too long ago; D buys
    # exactly at the snapshot (that is the future) and E buys only after the horizon.
    orders = orders_frame([
        ("A", "1", "2026-01-10", 10), ("A", "2", "2026-03-01", 10),
        ("B", "3", "2026-01-20", 10),
        ("C", "4", "2024-06-01", 10),
        ("D", "5", "2026-01-05", 10), ("D", "6", "2026-02-01 00:00:00", 10),
        ("E", "7", "2026-01-15", 10), ("E", "8", "2026-05-15", 10),
    ])
    # When
    labels = label_churn(orders, [at("2026-02-01")], horizon_days=90, active_days=365)
    # Then
    churned = labels.set_index("customer_id")["churned"].to_dict()
    assert churned == {"A": 0, "B": 1, "D": 0, "E": 1}
    assert (labels["event_timestamp"] == at("2026-02-01")).all()


def test_the_churn_population_is_who_the_churn_label_is_defined_for():
    # Given: orders before a snapshot, one exactly `active_days` before it, one a day earlier than
    # that, and a customer who never ordered
    snapshot = at("2026-02-01")
    orders = orders_frame([
        ("A", "1", "2026-01-10", 10), ("B", "2", "2025-02-01", 10), ("C", "3", "2025-01-31 23:00:00", 10),
        ("D", "4", "2026-01-31", 10), ("D", "5", "2026-03-01", 10),
    ])
    customers = ["A", "B", "C", "D", "never"]
    last = orders[orders["ordered_at"] < snapshot].groupby("customer_id")["ordered_at"].max()
    days = np.array([(snapshot - last[c]).total_seconds() / 86400 if c in last else np.nan for c in customers])
    # When
    labelled = set(label_churn(orders, [snapshot], horizon_days=90, active_days=365)["customer_id"])
    in_population = {c for c, inside in zip(customers, in_churn_population(days, 365), strict=True) if inside}
    # Then: the rows the model learns from are the rows scoring gives a probability to
    assert labelled == in_population == {"A", "B", "D"}


def test_net_revenue_subtracts_returns_of_window_orders_known_by_its_end():
    orders = orders_frame([
        ("A", "1", "2025-12-01", 100),  # before the window: neither it nor its return counts
        ("A", "2", "2026-01-10", 50),
        ("A", "3", "2026-03-01", 30),   # returned after the window ends: not subtracted
        ("B", "4", "2026-06-01", 80),   # after the 90-day window
    ])
    returns = pd.DataFrame({"order_id": ["1", "2", "3"], "amount": [100.0, 20.0, 30.0],
                            "returned_at": pd.to_datetime(["2026-01-05", "2026-01-20", "2026-05-01"], utc=True)})
    population = pd.DataFrame({"customer_id": ["A", "B", "C"], "event_timestamp": [at("2026-01-01")] * 3})
    # When
    revenue = label_net_revenue(orders, returns, population, horizon_days=90).set_index("customer_id")["net_revenue"]
    # Then
    assert revenue.to_dict() == {"A": 50 - 20 + 30, "B": 0.0, "C": 0.0}


def test_a_fully_returned_order_nets_to_plain_zero_not_minus_zero():
    import math

    # Given an order of 0.3 returned in two parts that sum, in floating point, to a hair more
    orders = orders_frame([("A", "1", "2026-01-10", 0.3)])
    returns = pd.DataFrame({"order_id": ["1", "1"], "amount": [0.1, 0.2],
                            "returned_at": pd.to_datetime(["2026-01-12", "2026-01-13"], utc=True)})
    population = pd.DataFrame({"customer_id": ["A"], "event_timestamp": [at("2026-01-01")]})
    # When labelled
    revenue = label_net_revenue(orders, returns, population, horizon_days=90)["net_revenue"].iloc[0]
    # Then it is 0.0, sign included: a -0.0 hashes differently and made lineage checks fail at random
    assert revenue == 0 and math.copysign(1, revenue) == 1


def test_conversion_needs_an_order_after_the_touch_and_within_the_window():
    touches = pd.DataFrame({
        "customer_id": ["A", "B", "C"], "touch_id": ["t1", "t2", "t3"],
        "sent_at": pd.to_datetime(["2026-03-01 09:00"] * 3, utc=True), "channel": ["email", "none", "sms"],
        "offer": ["none"] * 3, "campaign_id": ["p"] * 3,
    })
    orders = orders_frame([("A", "1", "2026-03-04", 10), ("B", "2", "2026-03-01 08:00", 10),
                           ("C", "3", "2026-03-09", 10)])
    labelled = label_conversions(touches, orders, window_days=7).set_index("customer_id")
    assert labelled["converted"].to_dict() == {"A": 1, "B": 0, "C": 0}
    assert (labelled["event_timestamp"] == labelled["sent_at"]).all()


def test_snapshots_end_their_label_windows_by_as_of_and_step_back():
    snapshots = choose_snapshots(at("2024-07-01"), at("2026-07-01"), horizon_days=90, count=6, spacing_days=30,
                                 minimum_history_days=90, model="churn")
    assert len(snapshots) == 6
    assert snapshots[-1] == at("2026-07-01") - pd.Timedelta(days=90)
    assert all(t + pd.Timedelta(days=90) <= at("2026-07-01") for t in snapshots)
    assert snapshots == sorted(snapshots)


def test_short_history_is_refused_with_a_reason():
    with pytest.raises(InsufficientDataError, match="history too short"):
        choose_snapshots(at("2026-01-01"), at("2026-07-01"), horizon_days=365, count=6, spacing_days=30,
                         minimum_history_days=90, model="clv")


def test_touch_days_come_from_controlled_campaigns_whose_window_has_ended():
    touches = pd.DataFrame({
        "campaign_id": ["promo", "promo", "newsletter", "promo", "late"],
        "channel": ["email", "none", "email", "sms", "none"],
        "sent_at": pd.to_datetime(["2026-03-05 10:00", "2026-03-05 10:00", "2026-03-10 00:00", "2026-04-02 00:00", "2026-06-28 00:00"], utc=True),
    })
    days = choose_touch_days(touches, at("2026-07-01"), window_days=7, day_count=10, minimum_history_days=0,
                             data_start=at("2026-01-01"))
    assert days == [at("2026-03-05"), at("2026-04-02")]
