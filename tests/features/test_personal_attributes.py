"""Which custom `customers` columns are personal data and never become features (`personal_attribute_reason`)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.customer_features import personal_attribute_reason


def birth_dates(count: int) -> list[dt.date]:
    """Plausible dates of birth, 1940 to 2006, one per customer."""
    rng = np.random.default_rng(7)
    return [dt.date(1940, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 365 * 66, count)]


@pytest.mark.parametrize("layout", ["%Y%m%d", "%d%m%Y", "%m%d%Y"])
def test_a_birth_date_stored_as_a_whole_number_is_a_date(layout):
    # Given a CRM column `born_on` holding each customer's date of birth as an 8-digit number (19571231)
    values = pd.Series([day.strftime(layout) for day in birth_dates(500)])
    # When the feature stage asks whether it may become a feature
    reason = personal_attribute_reason("born_on", values)
    # Then it is refused as dates, like the same dates written 1957-12-31
    assert reason == "it holds dates (a date of birth is personal data)"


def test_a_birth_date_number_read_from_a_float_column_is_a_date():
    # Given dates of birth that passed through a float column on their way (19571231.0)
    values = pd.Series([f"{day:%Y%m%d}.0" for day in birth_dates(300)])
    # When asked, then they are dates all the same
    assert personal_attribute_reason("ref_a", values) == "it holds dates (a date of birth is personal data)"


def test_ordinary_numeric_attributes_are_not_taken_for_dates():
    # Given numbers a CRM keeps that are no dates: loyalty points, an 8-digit store turnover in pence, a
    # repeated 8-digit campaign code, and numbers of 8 digits that happen to read as a date now and then
    rng = np.random.default_rng(11)
    points = pd.Series([str(v) for v in rng.integers(0, 50_000, 1_000)])
    turnover = pd.Series([str(v) for v in rng.integers(10_000_000, 99_999_999, 1_000)])
    campaign = pd.Series(["20240101", "20240315", "20240601"] * 300)
    # When the feature stage asks about each
    # Then each may become a feature (the campaign code is a small category: 3 values)
    assert personal_attribute_reason("loyalty_points", points) is None
    assert personal_attribute_reason("store_turnover", turnover) is None
    assert personal_attribute_reason("campaign_code", campaign) is None


def test_a_number_that_would_be_a_date_after_today_is_not_a_date_of_birth():
    # Given 8-digit numbers that read as YYYYMMDD only in the years 2100 to 2199, and not as DDMMYYYY or MMDDYYYY
    values = pd.Series([f"21{i % 100:02d}{1 + i % 12:02d}{13 + i % 15:02d}" for i in range(400)])
    # When asked, then they are numbers, not dates
    assert personal_attribute_reason("order_batch", values) is None


@pytest.mark.parametrize("column", ["maiden_name", "surname", "nickname", "first_name", "partner_firstname"])
def test_a_column_of_peoples_names_is_refused_however_few_its_values(column):
    # Given a few names shared by many customers (a small category by count: it passed before)
    values = pd.Series(["Williams", "Smith", "Jones", "Brown", "Taylor", "Davies", "Evans", "Thomas"] * 50)
    # Then its name says it holds people's names
    assert personal_attribute_reason(column, values) == "its name says it holds people's names"


def test_a_contact_flag_stays_a_category():
    # Given a yes/no column whose name holds a contact word
    assert personal_attribute_reason("email_opt_in", pd.Series(["yes", "no"] * 100)) is None
