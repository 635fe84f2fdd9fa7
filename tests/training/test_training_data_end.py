"""Training as of a time past the last data: label windows would run into days with no data (pure)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from cdp.config import TrainingSettings
from tests.training.test_plan_tasks import activity_until
from training.labels import InsufficientDataError
from training.pipeline import days_without_data, plan_tasks

LAST_DAY = dt.date(2026, 6, 30)


def test_a_week_past_the_data_is_refused_naming_the_days_without_data_and_what_they_would_do():
    # Given data that ends on 2026-06-30; when every model is planned as of 2026-07-08 (within the week
    # that features and scores tolerate)
    plans, times = plan_tasks(activity_until("2026-06-30"), pd.Timestamp("2026-07-08", tz="UTC"),
                              ("churn", "clv"), TrainingSettings(), LAST_DAY)
    # Then nothing is trained: the days without data are named, with what they would do to the labels
    assert times == []
    for task, consequence in (("churn", "as churned"), ("clv", "as nothing")):
        message = str(plans[task])
        assert isinstance(plans[task], InsufficientDataError)
        assert "(7 days, 2026-07-01 to 2026-07-07)" in message and consequence in message
        assert "train as of 2026-07-01 or earlier" in message


def test_even_one_day_past_the_data_is_refused():
    # Given data that ends on 2026-06-30; when churn is planned as of 2026-07-02
    plans, times = plan_tasks(activity_until("2026-06-30"), pd.Timestamp("2026-07-02", tz="UTC"), ("churn",),
                              TrainingSettings(), LAST_DAY)
    # Then it is refused: the last label window's last day, 2026-07-01, has no data
    assert times == [] and isinstance(plans["churn"], InsufficientDataError)
    assert "days with no data (2026-07-01)" in str(plans["churn"])


def test_the_days_without_data_run_from_the_day_after_the_data_to_the_as_of_time():
    # Given data that ends on 2026-06-30
    # Then as of the day after there is none; a time cutting into a day counts that day; earlier is fine
    assert days_without_data(pd.Timestamp("2026-07-01", tz="UTC"), LAST_DAY) == []
    assert days_without_data(pd.Timestamp("2026-07-01 06:00", tz="UTC"), LAST_DAY) == [dt.date(2026, 7, 1)]
    assert days_without_data(pd.Timestamp("2026-07-03", tz="UTC"), LAST_DAY) == [dt.date(2026, 7, 1),
                                                                                dt.date(2026, 7, 2)]
    assert days_without_data(pd.Timestamp("2026-05-01", tz="UTC"), LAST_DAY) == []
    assert days_without_data(pd.Timestamp("2026-07-03", tz="UTC"), None) == []
