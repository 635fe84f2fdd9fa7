"""Customer features: known values, point-in-time correctness (nothing after as-of is used), no PII."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import CONTRACTS
from features.customer_features import build_customer_features
from features.feature_tables import create_missing_tables, register_snapshots

AS_OF = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def features_for(frames: dict[str, pd.DataFrame], as_of=(AS_OF,), custom=(), **attribute_rules) -> dict[str, pd.DataFrame]:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for name, frame in frames.items():
        if name in CONTRACTS:  # the lake always holds every contract column
            frame = frame.assign(**{c: None for c in CONTRACTS[name].column_names if c not in frame})
        connection.register(f"{name}_frame", frame)
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_frame")
    create_missing_tables(connection)
    register_snapshots(connection, list(as_of))
    return build_customer_features(connection, custom, **attribute_rules)


def identity_map(*customers: str) -> pd.DataFrame:
    return pd.DataFrame({"source": ["web"] * len(customers), "source_id": list(customers),
                         "customer_id": [f"C{c}" for c in customers]})


def test_purchase_features_have_the_expected_values():
    # Given two orders before the snapshot, one partly returned, and one order and return after it
    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o3"], "source": "web", "source_id": "1",
        "ordered_at": [utc("2026-01-01"), utc("2026-02-20"), utc("2026-03-05")],
        "amount": [100.0, 50.0, 70.0], "channel": ["web", "store", "web"], "items": 1, "discount": [0.0, 5.0, 0.0],
    })
    returns = pd.DataFrame({"order_id": ["o1", "o2"], "returned_at": [utc("2026-01-10"), utc("2026-03-02")],
                            "amount": [40.0, 50.0]})
    # When features are built as of 2026-03-01
    row = features_for({"orders": orders, "returns": returns, "identity_map": identity_map("1")})[
        "purchase_history"].iloc[0]
    # Then only what happened before counts
    assert row["orders_total"] == 2 and row["gross_revenue_total"] == 150
    assert row["returned_total"] == 40 and row["net_revenue_total"] == 110
    assert row["return_rate"] == pytest.approx(40 / 150)
    assert row["days_since_last_order"] == pytest.approx(9)
    assert row["orders_30d"] == 1 and row["orders_90d"] == 2
    assert row["mean_days_between_orders"] == pytest.approx(50)
    assert row["discount_share"] == 0.5 and row["share_of_orders_store"] == 0.5


def test_latest_consent_wins_and_unknown_is_null():
    consents = pd.DataFrame({
        "source": "web", "source_id": "1", "channel": ["email", "email", "sms"],
        "status": ["granted", "withdrawn", "granted"],
        "recorded_at": [utc("2025-01-01"), utc("2026-02-01"), utc("2026-04-01")],
    })
    row = features_for({"consents": consents, "identity_map": identity_map("1")})["reachability"].iloc[0]
    assert row["email_consent"] == 0 and pd.isna(row["sms_consent"]) and pd.isna(row["push_consent"])


@st.composite
def activity(draw):
    """Random activity for three customers of up to five records, some of it after the snapshot."""
    def moments(count):
        return [AS_OF + dt.timedelta(hours=draw(st.integers(-24 * 400, 24 * 60))) for _ in range(count)]

    n_orders, n_events, n_touches, n_tickets = (draw(st.integers(1, 25)) for _ in range(4))
    records = ["1", "2", "3", "4", "5"]
    customers = st.sampled_from(records)
    ordered = moments(n_orders)
    orders = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n_orders)], "source": "web",
        "source_id": [draw(customers) for _ in range(n_orders)], "ordered_at": ordered,
        "amount": [float(draw(st.integers(1, 500))) for _ in range(n_orders)],
        "channel": [draw(st.sampled_from(["web", "app", "store"])) for _ in range(n_orders)],
        "items": 1, "discount": [float(draw(st.integers(0, 3))) for _ in range(n_orders)],
    })
    returns = pd.DataFrame({"order_id": orders["order_id"],
                            "returned_at": [o + dt.timedelta(days=draw(st.integers(1, 40))) for o in ordered],
                            "amount": orders["amount"] / 2}).sample(frac=0.5, random_state=0)
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n_events)], "source": "web",
        "source_id": [draw(customers) for _ in range(n_events)], "occurred_at": moments(n_events),
        "event_type": [draw(st.sampled_from(["page_view", "add_to_cart", "app_open", "product_view"])) for _ in range(n_events)],
    })
    sent = moments(n_touches)
    touches = pd.DataFrame({
        "touch_id": [f"t{i}" for i in range(n_touches)], "source": "web",
        "source_id": [draw(customers) for _ in range(n_touches)], "sent_at": sent,
        "channel": [draw(st.sampled_from(["email", "push", "sms", "none"])) for _ in range(n_touches)],
        "opened_at": [s + dt.timedelta(hours=draw(st.integers(1, 200))) for s in sent],
        "clicked_at": [None] * n_touches,
    })
    tickets = pd.DataFrame({
        "ticket_id": [f"k{i}" for i in range(n_tickets)], "source": "web",
        "source_id": [draw(customers) for _ in range(n_tickets)], "opened_at": moments(n_tickets),
        "category": "delivery", "csat": [float(draw(st.integers(1, 5))) for _ in range(n_tickets)],
    })
    consents = pd.DataFrame({
        "source": "web", "source_id": [draw(customers) for _ in range(n_tickets)],
        "channel": [draw(st.sampled_from(["email", "sms"])) for _ in range(n_tickets)],
        "status": [draw(st.sampled_from(["granted", "withdrawn"])) for _ in range(n_tickets)],
        "recorded_at": moments(n_tickets),
    })
    def each_record(*values):
        return [draw(st.sampled_from(values)) for _ in records]

    customers_table = pd.DataFrame({
        "source": "web", "source_id": records, "region": each_record("North", "South", "East", None),
        "date_of_birth": each_record(dt.date(1980, 3, 2), dt.date(1990, 2, 28), None),
        "updated_at": each_record(AS_OF - dt.timedelta(days=100), AS_OF - dt.timedelta(days=10),
                                  AS_OF + dt.timedelta(days=10), AS_OF + dt.timedelta(days=50), None),
        "tier": each_record("gold", "silver", None),
    })
    owners = pd.DataFrame({"source": "web", "source_id": records, "customer_id": each_record("C1", "C2", "C3")})
    return {"orders": orders, "returns": returns, "events": events, "touches": touches, "tickets": tickets,
            "consents": consents, "customers": customers_table, "identity_map": owners}


def _clip_to_before(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The same world with everything at or after the snapshot erased, or made unknowable."""
    time_columns = {"orders": "ordered_at", "returns": "returned_at", "events": "occurred_at", "touches": "sent_at",
                    "tickets": "opened_at", "consents": "recorded_at"}
    clipped = {}
    for name, frame in frames.items():
        frame = frame.copy()
        if name in time_columns:
            frame = frame[frame[time_columns[name]] < AS_OF]
        if name == "touches":
            frame["opened_at"] = frame["opened_at"].where(frame["opened_at"] < AS_OF, None)
        clipped[name] = frame
    # A customers row updated since (the lake holds its latest version only) stands for the record as it
    # was: known when it had activity before the snapshot, with the birth date and region it has (they do
    # not change with time) and its changing custom attributes unknown; without such activity it may not
    # have existed yet.
    customers = clipped["customers"]
    later = customers["updated_at"].notna() & (customers["updated_at"] >= AS_OF)
    active = set()
    for name in time_columns:
        if name in clipped and "source_id" in clipped[name]:
            active |= set(zip(clipped[name]["source"], clipped[name]["source_id"], strict=True))
    existed = pd.Series([key in active for key in zip(customers["source"], customers["source_id"], strict=True)],
                        index=customers.index)
    customers = customers[~later | existed].copy()
    as_it_was = later[customers.index]
    customers.loc[as_it_was, "updated_at"] = None
    customers.loc[as_it_was, "tier"] = None
    clipped["customers"] = customers
    return clipped


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=activity())
def test_no_feature_uses_anything_from_after_the_snapshot(frames):
    # Given a world with activity straddling the snapshot, and the same world cut at the snapshot
    full = features_for(frames, custom=("tier",))
    before = features_for(_clip_to_before(frames), custom=("tier",))
    # Then every feature of every customer known before the snapshot is identical
    for family, table in full.items():
        known = before[family]["customer_id"]
        expected = before[family].set_index("customer_id").sort_index()
        actual = table[table["customer_id"].isin(known)].set_index("customer_id").sort_index()
        pd.testing.assert_frame_equal(actual, expected, check_dtype=False, obj=family)
    # ...and a customer first seen after the snapshot has no row at all
    assert set(full["purchase_history"]["customer_id"]) == set(before["purchase_history"]["customer_id"])


def test_orders_only_data_builds_every_family():
    orders = pd.DataFrame({"order_id": ["o1"], "source": "web", "source_id": "1", "ordered_at": [utc("2026-01-01")],
                           "amount": [10.0], "channel": [None], "items": [None], "discount": [None]})
    tables = features_for({"orders": orders, "identity_map": identity_map("1")})
    assert all(len(t) == 1 for t in tables.values())
    assert np.isnan(tables["service"].iloc[0]["csat_mean_365d"])


def test_a_record_updated_after_the_snapshot_still_counts_in_it_without_its_later_attributes():
    # Given customers each with an order in January: C1's record last updated in December, C2's in April
    # (the lake holds that version only); C3 has two records, one updated in December (North), one in April
    # (South, perhaps a move)
    orders = pd.DataFrame({"order_id": ["o1", "o2", "o3"], "source": "web", "source_id": ["1", "2", "3"],
                           "ordered_at": [utc("2026-01-05"), utc("2026-01-06"), utc("2026-01-07")], "amount": 10.0})
    customers = pd.DataFrame({"source": ["web", "web", "web", "app"], "source_id": ["1", "2", "3", "3b"],
                              "region": ["North", "North", "North", "South"], "email": "x@example.org",
                              "date_of_birth": [dt.date(1980, 3, 2)] * 4, "tier": "gold",
                              "updated_at": [utc("2025-12-01"), utc("2026-04-01"), utc("2025-12-01"), utc("2026-04-01")]})
    records = identity_map("1", "2", "3").pipe(lambda m: pd.concat(
        [m, pd.DataFrame({"source": ["app"], "source_id": ["3b"], "customer_id": ["C3"]})]))
    events = pd.DataFrame({"event_id": ["e1"], "source": "app", "source_id": "3b", "occurred_at": [utc("2026-01-08")],
                           "event_type": "page_view"})
    # When the profile and reachability are built as of March
    tables = features_for({"orders": orders, "customers": customers, "identity_map": records, "events": events},
                          custom=("tier",), attribute_min_customers=1)  # three customers: every level is rare
    profile = tables["profile"].set_index("customer_id")
    reach = tables["reachability"].set_index("customer_id")
    # Then C2 looks like C1 (a later update says nothing about March: in real data it says the customer was
    # still active, which a model must not learn from), except for the tier, whose March value is unknown
    assert profile.loc["C2", ["source_records", "age_band", "region"]].tolist() == (
        profile.loc["C1", ["source_records", "age_band", "region"]].tolist()) == [1, "45_54", "North"]
    assert profile.loc["C1", "attribute_tier"] == "gold" and pd.isna(profile.loc["C2", "attribute_tier"])
    assert reach.loc["C2", "has_email"] == reach.loc["C1", "has_email"] == 1
    # ...and of C3's two records the one updated before March gives the region, not the April version
    assert profile.loc["C3", "source_records"] == 2 and profile.loc["C3", "region"] == "North"
    assert reach.loc["C3", "app_installed"] == 1  # its app record existed in January


def test_custom_attributes_become_levels_many_customers_share_never_names_or_phone_numbers(caplog):
    from features.customer_features import OTHER_LEVEL

    # Given 45 customers with an order each, and custom columns: a channel preference (a few written as a
    # phone number, two sharing one), a nickname and a maiden name (one each), points (one a phone number)
    n = 45
    ids = [str(i) for i in range(n)]
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in ids], "source": "web", "source_id": ids,
                           "ordered_at": utc("2026-01-05"), "amount": 10.0})
    contact = ["email"] * 22 + ["sms"] * 20 + ["call 07512317732", "call 07512317732", "ring ０７７００ 900123"]
    customers = pd.DataFrame({"source": "web", "source_id": ids, "updated_at": utc("2025-12-01"),
                              "preferred_contact": contact,
                              "nickname": [f"Name{i}" for i in range(n)],
                              "maiden_name": [f"SURNAME{i % 2}" if i < 40 else f"RARE{i}" for i in range(n)],
                              "points": [str(i * 10) for i in range(n - 1)] + ["07512317732"]})
    custom = ("preferred_contact", "nickname", "maiden_name", "points")
    # When the profile is built
    with caplog.at_level("WARNING", logger="cdp.features"):
        profile = features_for({"orders": orders, "customers": customers, "identity_map": identity_map(*ids)},
                               custom=custom)["profile"].set_index("customer_id")
    # Then the preference keeps its shared levels, the rest (phone numbers) is one other level
    assert profile["attribute_preferred_contact"].value_counts().to_dict() == {"email": 22, "sms": 20, OTHER_LEVEL: 3}
    # ...the nickname, whose every value is one person's, is left out, with why in the log (never a value)
    assert "attribute_nickname" not in profile
    assert "'nickname' is not used as a feature: no value of it is held by 20 customers" in caplog.text
    assert "Name1" not in caplog.text and "07512317732" not in caplog.text
    # ...surnames 20 customers share remain, rarer ones are folded; points stay numbers without the phone
    assert set(profile["attribute_maiden_name"]) == {"SURNAME0", "SURNAME1", OTHER_LEVEL}
    assert profile.loc["C44", "attribute_points"] != profile.loc["C44", "attribute_points"]  # NaN
    assert profile.loc["C3", "attribute_points"] == 30
    text = profile.astype(str).to_string()
    assert "0751" not in text and "Name" not in text and "RARE" not in text


def test_a_column_of_many_shared_levels_is_names_not_a_category():
    from features.customer_features import OTHER_LEVEL, attribute_levels

    # Given 60 surnames 25 customers each hold, a shared value that is a phone number, and rare ones
    values = pd.DataFrame({"value": [f"S{i}" for i in range(60)] + ["call 0751 231 7732", "x"],
                           "customers": [25] * 61 + [1]})
    folded, reason = attribute_levels("maiden_name", values)
    assert folded is None and "60 values held by 20 customers or more (over 50)" in reason
    # When only 3 surnames are that common, then they are the levels; the phone number is never one
    folded, reason = attribute_levels("maiden_name", values.iloc[[0, 1, 2, 60, 61]])
    assert reason is None
    assert folded == {"S0": "S0", "S1": "S1", "S2": "S2", "call 0751 231 7732": OTHER_LEVEL, "x": OTHER_LEVEL}
    # And numbers stay numbers
    assert attribute_levels("points", pd.DataFrame({"value": ["1", "2.5"], "customers": [1, 1]})) == (None, None)
