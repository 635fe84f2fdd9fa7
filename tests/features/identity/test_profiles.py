"""Golden profiles: survivorship rules, lists of contact points, counts and confidence."""

from __future__ import annotations

import pandas as pd

from features.identity.profiles import build_profiles
from features.identity.standardize import standardize_records


def given_customer_records() -> tuple[pd.DataFrame, pd.DataFrame]:
    records = pd.DataFrame(
        {
            "source": ["web", "crm", "store"],
            "source_id": ["1", "2", "3"],
            "first_name": ["Liz", "Elizabeth", "Elizabeth"],
            "last_name": ["Jones", "Jones", None],
            "email": ["liz@x.com", "e.jones@y.com", None],
            "phone": [None, "07700 900123", "+44 7700 900123"],
            "city": ["Leeds", "York", None],
            "loyalty_tier": ["gold", "silver", "bronze"],
            "updated_at": pd.to_datetime(["2025-01-01", "2024-01-01", "2025-06-01"], utc=True),
        }
    )
    identity_map = pd.DataFrame({"customer_id": ["C1", "C1", "C1"], "match_probability": [1.0, 0.97, 0.99]})
    return records, identity_map


def test_default_rules_pick_frequent_names_recent_contacts_and_priority_attributes():
    records, identity_map = given_customer_records()
    profile = build_profiles(records, standardize_records(records, "GB"), identity_map,
                             custom_columns=("loyalty_tier",)).iloc[0]
    assert profile["first_name"] == "Elizabeth"  # most frequent
    assert profile["email"] == "liz@x.com"  # most recent non-null
    assert profile["city"] == "Leeds"
    assert profile["loyalty_tier"] == "silver"  # source priority: crm first
    assert profile["emails"] == ["e.jones@y.com", "liz@x.com"]
    assert profile["phones"] == ["+447700900123"]
    assert profile["phone"] == "+447700900123"  # the most recent, in E.164 as listed (given as "+44 7700 900123")
    assert profile["source_records"] == 3 and profile["sources"] == ["crm", "store", "web"]
    assert profile["min_match_probability"] == 0.97


def test_rules_are_configurable():
    records, identity_map = given_customer_records()
    profile = build_profiles(records, standardize_records(records, "GB"), identity_map,
                             rules={"city": "source_priority", "first_name": "most_recent"},
                             source_priority=("web", "crm", "store")).iloc[0]
    assert profile["city"] == "Leeds" and profile["first_name"] == "Elizabeth"


def test_a_customer_without_contact_points_gets_empty_lists():
    records = pd.DataFrame({"source": ["web"], "source_id": ["9"], "first_name": [None]})
    profile = build_profiles(records, standardize_records(records, "GB"),
                             pd.DataFrame({"customer_id": ["C9"], "match_probability": [1.0]})).iloc[0]
    assert profile["emails"] == [] and profile["phones"] == [] and profile["source_records"] == 1
