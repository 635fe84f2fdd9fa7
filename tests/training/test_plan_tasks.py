"""Which models the data can support as of a time (pure: synthetic activity, no workspace)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from cdp.config import TrainingSettings
from training.labels import InsufficientDataError
from training.pipeline import plan_tasks


def activity_until(last_day: str) -> dict[str, pd.DataFrame]:
    """Two years of daily orders from 400 customers, ending on `last_day`."""
    days = pd.date_range(end=pd.Timestamp(last_day, tz="UTC"), periods=730, freq="D")
    orders = pd.DataFrame({"customer_id": [f"C{i % 400}" for i in range(len(days))], "order_id": range(len(days)),
                           "ordered_at": days + pd.Timedelta(hours=12), "amount": 10.0})
    empty_returns = pd.DataFrame({"order_id": [], "returned_at": pd.to_datetime([], utc=True), "amount": []})
    empty_touches = pd.DataFrame({c: [] for c in ("customer_id", "touch_id", "channel", "offer", "campaign_id")}
                                 ).assign(sent_at=pd.to_datetime([], utc=True))
    return {"orders": orders, "returns": empty_returns, "touches": empty_touches}


def test_training_as_of_the_day_after_the_data_plans_its_snapshots():
    plans, _ = plan_tasks(activity_until("2026-06-30"), pd.Timestamp("2026-07-01", tz="UTC"), ("churn",),
                          TrainingSettings(), dt.date(2026, 6, 30))
    assert not isinstance(plans["churn"], InsufficientDataError)
    assert plans["churn"].snapshots[-1] + pd.Timedelta(days=90) <= pd.Timestamp("2026-07-01", tz="UTC")


def test_training_as_of_months_after_the_data_is_refused_with_the_last_day_named():
    # Given data that ends on 2026-06-30; when a model is planned as of 2026-09-15
    plans, times = plan_tasks(activity_until("2026-06-30"), pd.Timestamp("2026-09-15", tz="UTC"),
                              ("churn", "clv"), TrainingSettings(), dt.date(2026, 6, 30))
    # Then nothing is planned: the last label windows would end in days with no data
    assert times == []
    for task in ("churn", "clv"):
        assert isinstance(plans[task], InsufficientDataError)
        assert "after the last data (2026-06-30)" in str(plans[task]) and "2026-07-01 or earlier" in str(plans[task])
