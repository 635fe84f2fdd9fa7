"""Point-in-time customer features, one family per Feast feature view.

Every family is computed for (customer_id, as_of) snapshots from data strictly before `as_of`,
so training can reproduce what was known then and nothing from the future leaks in. Families are
SQL over a DuckDB connection on which the lake tables, the identity map and the snapshots are
registered as views (`orders`, `returns`, `events`, `touches`, `consents`, `tickets`,
`customers`, `identity_map`, `snapshots`); reading files is the caller's business.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandas as pd

CHANNELS = ("email", "push", "sms")
ORDER_CHANNELS = ("web", "app", "store", "phone")
WINDOWS = (7, 30, 90, 365)
RESPONSE_WINDOW_DAYS = 7
AGE_BANDS = ((0, 18, "under_18"), (18, 25, "18_24"), (25, 35, "25_34"), (35, 45, "35_44"), (45, 55, "45_54"),
             (55, 65, "55_64"), (65, 200, "65_plus"))
KEY_COLUMNS = ("customer_id", "event_timestamp")
log = logging.getLogger("cdp.features")


def _days_since(expression: str) -> str:
    """Days (fractional) from a timestamp expression to the snapshot."""
    return f"date_diff('second', {expression}, as_of) / 86400.0"


def _customer_rows(table: str, time_column: str, columns: str = "") -> str:
    """A lake table's rows with their customer, strictly before each snapshot."""
    extra = f", {columns}" if columns else ""
    return f"""
        SELECT s.customer_id, s.as_of, t.{time_column} AS happened_at{extra}
        FROM {table} t
        JOIN identity_map m USING (source, source_id)
        JOIN snapshots s ON s.customer_id = m.customer_id AND t.{time_column} < s.as_of
    """


def purchase_history(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """RFM, gross and net revenue after returns, windows, regularity, trend, discounts, channel mix."""
    windows = ",\n".join(
        f"count(*) FILTER (WHERE happened_at >= as_of - INTERVAL {d} DAY) AS orders_{d}d,\n"
        f"coalesce(sum(amount) FILTER (WHERE happened_at >= as_of - INTERVAL {d} DAY), 0) AS gross_revenue_{d}d"
        for d in WINDOWS
    )
    mix = ",\n".join(
        f"avg(CASE WHEN channel = '{c}' THEN 1.0 ELSE 0.0 END) AS share_of_orders_{c}" for c in ORDER_CHANNELS
    )
    query = f"""
    WITH bought AS ({_customer_rows("orders", "ordered_at", "t.order_id, t.amount, t.discount, t.channel")}),
    gaps AS (
        SELECT *, date_diff('second', lag(happened_at) OVER (PARTITION BY customer_id, as_of ORDER BY happened_at), happened_at) / 86400.0 AS gap
        FROM bought
    ),
    returned AS (
        SELECT b.customer_id, b.as_of, b.happened_at AS ordered_at, r.amount, r.returned_at
        FROM returns r JOIN bought b ON r.order_id = b.order_id AND r.returned_at < b.as_of
    ),
    returns_by_snapshot AS (
        SELECT customer_id, as_of,
               sum(amount) AS returned_total,
               coalesce(sum(amount) FILTER (WHERE returned_at >= as_of - INTERVAL 365 DAY), 0) AS returned_365d,
               coalesce(sum(amount) FILTER (WHERE returned_at >= as_of - INTERVAL 90 DAY), 0) AS returned_90d
        FROM returned GROUP BY customer_id, as_of
    ),
    orders_by_snapshot AS (
        SELECT customer_id, as_of,
               count(*) AS orders_total,
               sum(amount) AS gross_revenue_total,
               {_days_since("max(happened_at)")} AS days_since_last_order,
               {_days_since("min(happened_at)")} AS days_since_first_order,
               avg(amount) AS average_order_value,
               avg(gap) AS mean_days_between_orders,
               stddev_samp(gap) AS std_days_between_orders,
               {windows},
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 180 DAY AND happened_at < as_of - INTERVAL 90 DAY)
                   AS orders_previous_90d,
               sum(amount * exp(-date_diff('second', happened_at, as_of) / 86400.0 / 90.0)) AS revenue_smoothed_90d,
               avg(CASE WHEN coalesce(discount, 0) > 0 THEN 1.0 ELSE 0.0 END) AS discount_share,
               {mix}
        FROM gaps GROUP BY customer_id, as_of
    )
    SELECT s.customer_id, s.as_of AS event_timestamp,
           coalesce(o.orders_total, 0) AS orders_total,
           coalesce(o.gross_revenue_total, 0) AS gross_revenue_total,
           coalesce(r.returned_total, 0) AS returned_total,
           coalesce(o.gross_revenue_total, 0) - coalesce(r.returned_total, 0) AS net_revenue_total,
           coalesce(o.gross_revenue_365d, 0) - coalesce(r.returned_365d, 0) AS net_revenue_365d,
           coalesce(o.gross_revenue_90d, 0) - coalesce(r.returned_90d, 0) AS net_revenue_90d,
           CASE WHEN coalesce(o.gross_revenue_total, 0) > 0
                THEN coalesce(r.returned_total, 0) / o.gross_revenue_total END AS return_rate,
           o.days_since_last_order, o.days_since_first_order, o.average_order_value,
           o.mean_days_between_orders, o.std_days_between_orders,
           o.days_since_last_order / nullif(o.mean_days_between_orders, 0) AS overdue_ratio,
           {", ".join(f"coalesce(o.orders_{d}d, 0) AS orders_{d}d, coalesce(o.gross_revenue_{d}d, 0) AS gross_revenue_{d}d" for d in WINDOWS)},
           (coalesce(o.orders_90d, 0) + 1.0) / (coalesce(o.orders_previous_90d, 0) + 1.0) AS order_trend_90d,
           coalesce(o.revenue_smoothed_90d, 0) AS revenue_smoothed_90d,
           o.discount_share,
           {", ".join(f"o.share_of_orders_{c}" for c in ORDER_CHANNELS)}
    FROM snapshots s
    LEFT JOIN orders_by_snapshot o ON o.customer_id = s.customer_id AND o.as_of = s.as_of
    LEFT JOIN returns_by_snapshot r ON r.customer_id = s.customer_id AND r.as_of = s.as_of
    """
    return connection.sql(query).df()


def behaviour(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Web and app activity: sessions, views, cart adds, abandoned carts, recency of visits."""
    query = f"""
    WITH acted AS ({_customer_rows("events", "occurred_at", "t.event_type")}),
    recent AS (SELECT * FROM acted WHERE happened_at >= as_of - INTERVAL 30 DAY),
    cart_days AS (SELECT DISTINCT customer_id, as_of, CAST(happened_at AS DATE) AS day FROM recent WHERE event_type = 'add_to_cart'),
    order_days AS (
        SELECT DISTINCT customer_id, as_of, CAST(happened_at AS DATE) AS day
        FROM ({_customer_rows("orders", "ordered_at")}) WHERE happened_at >= as_of - INTERVAL 31 DAY
    ),
    abandoned AS (
        SELECT c.customer_id, c.as_of, count(*) AS abandoned_carts_30d
        FROM cart_days c
        WHERE NOT EXISTS (
            SELECT 1 FROM order_days o WHERE o.customer_id = c.customer_id AND o.as_of = c.as_of
              AND o.day BETWEEN c.day AND c.day + 1)
        GROUP BY c.customer_id, c.as_of
    ),
    by_snapshot AS (
        SELECT customer_id, as_of,
               count(DISTINCT CAST(happened_at AS DATE)) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY) AS active_days_30d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY) AS events_30d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY AND event_type = 'product_view') AS product_views_30d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY AND event_type = 'add_to_cart') AS cart_adds_30d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY AND event_type = 'checkout_start') AS checkout_starts_30d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY AND event_type = 'search') AS searches_30d,
               {_days_since("max(happened_at)")} AS days_since_last_visit,
               {_days_since("max(happened_at) FILTER (WHERE event_type = 'app_open')")} AS days_since_last_app_open
        FROM acted GROUP BY customer_id, as_of
    )
    SELECT s.customer_id, s.as_of AS event_timestamp,
           coalesce(b.active_days_30d, 0) AS active_days_30d, coalesce(b.events_30d, 0) AS events_30d,
           coalesce(b.product_views_30d, 0) AS product_views_30d, coalesce(b.cart_adds_30d, 0) AS cart_adds_30d,
           coalesce(b.checkout_starts_30d, 0) AS checkout_starts_30d, coalesce(b.searches_30d, 0) AS searches_30d,
           coalesce(a.abandoned_carts_30d, 0) AS abandoned_carts_30d,
           b.days_since_last_visit, b.days_since_last_app_open
    FROM snapshots s
    LEFT JOIN by_snapshot b ON b.customer_id = s.customer_id AND b.as_of = s.as_of
    LEFT JOIN abandoned a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
    """
    return connection.sql(query).df()


def engagement(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per channel: sends, open and click rates, recency of contact, and the response rate (share of
    the last year's touches followed by an order within RESPONSE_WINDOW_DAYS, counted only once that
    window closed before the snapshot; `none` = control touches); contact fatigue overall.
    Opens and clicks count only if they happened before the snapshot too."""
    per_channel = ",\n".join(
        f"""count(*) FILTER (WHERE channel = '{c}' AND happened_at >= as_of - INTERVAL 7 DAY) AS {c}_sends_7d,
        count(*) FILTER (WHERE channel = '{c}' AND happened_at >= as_of - INTERVAL 30 DAY) AS {c}_sends_30d,
        count(*) FILTER (WHERE channel = '{c}' AND happened_at >= as_of - INTERVAL 90 DAY) AS {c}_sends_90d,
        avg(CASE WHEN opened_at < as_of THEN 1.0 ELSE 0.0 END) FILTER (WHERE channel = '{c}' AND happened_at >= as_of - INTERVAL 90 DAY) AS {c}_open_rate_90d,
        avg(CASE WHEN clicked_at < as_of THEN 1.0 ELSE 0.0 END) FILTER (WHERE channel = '{c}' AND happened_at >= as_of - INTERVAL 90 DAY) AS {c}_click_rate_90d,
        {_days_since(f"max(happened_at) FILTER (WHERE channel = '{c}')")} AS {c}_days_since_last_touch"""
        for c in CHANNELS
    )
    response = ",\n".join(
        f"""avg(CASE WHEN converted THEN 1.0 ELSE 0.0 END) FILTER (WHERE channel = '{c}'
            AND happened_at >= as_of - INTERVAL 365 DAY AND happened_at < as_of - INTERVAL {RESPONSE_WINDOW_DAYS} DAY)
            AS {c}_response_rate_365d"""
        for c in (*CHANNELS, "none")
    )
    selected = ", ".join(
        f"coalesce(e.{c}_sends_7d, 0) AS {c}_sends_7d, coalesce(e.{c}_sends_30d, 0) AS {c}_sends_30d, "
        f"coalesce(e.{c}_sends_90d, 0) AS {c}_sends_90d, e.{c}_open_rate_90d, e.{c}_click_rate_90d, "
        f"e.{c}_days_since_last_touch, e.{c}_response_rate_365d"
        for c in CHANNELS
    )
    query = f"""
    WITH touch_outcomes AS (
        -- did the customer order within the response window after each touch? (known once the window is over)
        SELECT t.*, EXISTS (
            SELECT 1 FROM orders o JOIN identity_map mo USING (source, source_id)
            WHERE mo.customer_id = mt.customer_id AND o.ordered_at > t.sent_at
              AND o.ordered_at <= t.sent_at + INTERVAL {RESPONSE_WINDOW_DAYS} DAY) AS converted
        FROM touches t JOIN identity_map mt USING (source, source_id)
    ),
    sent AS ({_customer_rows("touch_outcomes", "sent_at", "t.channel, t.opened_at, t.clicked_at, t.converted")}),
    by_snapshot AS (
        SELECT customer_id, as_of, {per_channel}, {response},
               count(*) FILTER (WHERE channel <> 'none' AND happened_at >= as_of - INTERVAL 7 DAY) AS touches_7d,
               count(*) FILTER (WHERE channel <> 'none' AND happened_at >= as_of - INTERVAL 30 DAY) AS touches_30d
        FROM sent GROUP BY customer_id, as_of
    ),
    withdrawals AS (
        SELECT customer_id, as_of, count(*) AS consents_withdrawn_total
        FROM ({_customer_rows("consents", "recorded_at", "t.status")}) WHERE status = 'withdrawn' GROUP BY customer_id, as_of
    )
    SELECT s.customer_id, s.as_of AS event_timestamp, {selected}, e.none_response_rate_365d,
           coalesce(e.touches_7d, 0) AS touches_7d, coalesce(e.touches_30d, 0) AS touches_30d,
           coalesce(w.consents_withdrawn_total, 0) AS consents_withdrawn_total
    FROM snapshots s
    LEFT JOIN by_snapshot e ON e.customer_id = s.customer_id AND e.as_of = s.as_of
    LEFT JOIN withdrawals w ON w.customer_id = s.customer_id AND w.as_of = s.as_of
    """
    return connection.sql(query).df()


RECORDS_KNOWN_AT_SNAPSHOT = """customers c JOIN identity_map m USING (source, source_id)
        LEFT JOIN record_first_seen f USING (source, source_id)
        JOIN snapshots s ON s.customer_id = m.customer_id
             AND (c.updated_at IS NULL OR c.updated_at < s.as_of OR f.first_seen < s.as_of)"""
"""Each customers record with the snapshots it existed before: from its first activity or an update
before the snapshot. The lake keeps a record's latest version only, so one updated after the snapshot
still counts (`profile`). Leaving it out made the customers whose records were updated later (in real
data: still active ones) look unknown in past snapshots, a pattern set by the future that serving,
where nothing is updated after now, never shows."""
UPDATED_BEFORE_SNAPSHOT = "coalesce(CASE WHEN c.updated_at < s.as_of THEN c.updated_at END, TIMESTAMPTZ '1970-01-01')"
"""Order of a customer's records for a snapshot: the latest update before it wins; a record updated
after it ranks as undated (its version at the snapshot is not known)."""


def reachability(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Flags only: the consent in force per channel (1 granted, 0 withdrawn, null never asked),
    whether the app is installed, and whether an e-mail or phone is on file (in the records known at the
    snapshot, `RECORDS_KNOWN_AT_SNAPSHOT`: a contact point is taken as it stands)."""
    consent_columns = ", ".join(
        f"max(CASE WHEN channel = '{c}' THEN CASE WHEN status = 'granted' THEN 1 ELSE 0 END END) AS {c}_consent"
        for c in CHANNELS
    )
    query = f"""
    WITH latest AS (
        SELECT customer_id, as_of, channel, arg_max(status, happened_at) AS status
        FROM ({_customer_rows("consents", "recorded_at", "t.channel, t.status")}
              UNION ALL  -- consents pushed through /events or `cdp push`: events of the customer at the push
              SELECT s.customer_id, s.as_of, p.happened_at, p.channel, p.status
              FROM pushed_consents p JOIN snapshots s ON s.customer_id = p.customer_id AND p.happened_at < s.as_of)
        GROUP BY customer_id, as_of, channel
    ),
    consent AS (SELECT customer_id, as_of, {consent_columns} FROM latest GROUP BY customer_id, as_of),
    contact AS (
        SELECT s.customer_id, s.as_of,
               max(CASE WHEN c.email IS NOT NULL THEN 1 ELSE 0 END) AS has_email,
               max(CASE WHEN c.phone IS NOT NULL THEN 1 ELSE 0 END) AS has_phone,
               max(CASE WHEN c.source = 'app' THEN 1 ELSE 0 END) AS has_app_account
        FROM {RECORDS_KNOWN_AT_SNAPSHOT}
        GROUP BY s.customer_id, s.as_of
    ),
    app AS (
        SELECT DISTINCT customer_id, as_of FROM ({_customer_rows("events", "occurred_at", "t.event_type")})
        WHERE event_type = 'app_open'
    )
    SELECT s.customer_id, s.as_of AS event_timestamp,
           {", ".join(f"c.{ch}_consent" for ch in CHANNELS)},
           CASE WHEN a.customer_id IS NOT NULL OR coalesce(k.has_app_account, 0) = 1 THEN 1 ELSE 0 END AS app_installed,
           coalesce(k.has_email, 0) AS has_email, coalesce(k.has_phone, 0) AS has_phone
    FROM snapshots s
    LEFT JOIN consent c ON c.customer_id = s.customer_id AND c.as_of = s.as_of
    LEFT JOIN contact k ON k.customer_id = s.customer_id AND k.as_of = s.as_of
    LEFT JOIN app a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
    """
    return connection.sql(query).df()


def service(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Support tickets and satisfaction over windows."""
    query = f"""
    WITH opened AS ({_customer_rows("tickets", "opened_at", "t.csat")}),
    by_snapshot AS (
        SELECT customer_id, as_of,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 30 DAY) AS tickets_30d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 90 DAY) AS tickets_90d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 365 DAY) AS tickets_365d,
               avg(csat) FILTER (WHERE happened_at >= as_of - INTERVAL 365 DAY) AS csat_mean_365d,
               count(*) FILTER (WHERE happened_at >= as_of - INTERVAL 365 DAY AND csat <= 2) AS low_csat_tickets_365d,
               {_days_since("max(happened_at)")} AS days_since_last_ticket
        FROM opened GROUP BY customer_id, as_of
    )
    SELECT s.customer_id, s.as_of AS event_timestamp,
           coalesce(b.tickets_30d, 0) AS tickets_30d, coalesce(b.tickets_90d, 0) AS tickets_90d,
           coalesce(b.tickets_365d, 0) AS tickets_365d, b.csat_mean_365d,
           coalesce(b.low_csat_tickets_365d, 0) AS low_csat_tickets_365d, b.days_since_last_ticket
    FROM snapshots s LEFT JOIN by_snapshot b ON b.customer_id = s.customer_id AND b.as_of = s.as_of
    """
    return connection.sql(query).df()


def profile(connection: duckdb.DuckDBPyConnection, custom_columns: tuple[str, ...],
            min_customers: int | None = None, max_levels: int | None = None) -> pd.DataFrame:
    """Generalized profile from the identity records that existed before the snapshot: age band at the
    snapshot, region, custom attributes. Never raw PII.

    The lake keeps each record's latest version only, so a record updated after the snapshot still
    existed before it when it has activity (or an earlier update) before it: it counts in
    `source_records` and gives its birth date and region (neither changes with time; a move is rare).
    Dropping it, as before, made the profile of a customer whose record was updated later look empty in
    past snapshots: a pattern set by the future (in real data, updates come with activity) that serving,
    where nothing is updated after now, never shows. Its custom attributes (loyalty points, a segment) do
    change, and their later values must not reach a past snapshot: they count only from records
    updated before it.

    A custom attribute enters as levels that cannot identify anyone (`attribute_levels`): a text value
    held by fewer than `min_customers` customers becomes OTHER_LEVEL, one that mentions an e-mail or
    phone (`mentions_contact`) too, and a column left with more than `max_levels` levels is left out,
    named in the log with why. A numeric attribute stays a number, without the values that could be a
    phone number."""
    min_customers = ATTRIBUTE_MIN_CUSTOMERS if min_customers is None else min_customers
    max_levels = ATTRIBUTE_MAX_LEVELS if max_levels is None else max_levels
    folding = {}
    for name in custom_columns:
        folded, reason = attribute_levels(name, _attribute_customers(connection, name), min_customers, max_levels)
        if reason is not None:
            log.warning("customers column %r is not used as a feature: %s (personal data never enters the "
                        "feature store or the models)", name, reason)
        else:
            folding[name] = folded
    custom_columns = tuple(folding)
    bands = " ".join(f"WHEN age >= {low} AND age < {high} THEN '{name}'" for low, high, name in AGE_BANDS)
    latest = "".join(
        f", arg_max(c.{_quote(name)}, coalesce(c.updated_at, TIMESTAMPTZ '1970-01-01')) "
        f"FILTER (WHERE c.{_quote(name)} IS NOT NULL AND (c.updated_at IS NULL OR c.updated_at < s.as_of)) "
        f"AS {_quote('attribute_' + name)}"
        for name in custom_columns
    )
    custom = "".join(f", k.{_quote('attribute_' + name)}" for name in custom_columns)
    query = f"""
    WITH known AS (
        SELECT s.customer_id, s.as_of, count(*) AS source_records,
               arg_max(c.region, {UPDATED_BEFORE_SNAPSHOT}) FILTER (WHERE c.region IS NOT NULL) AS region,
               arg_max(c.date_of_birth, {UPDATED_BEFORE_SNAPSHOT}) FILTER (WHERE c.date_of_birth IS NOT NULL) AS birth
               {latest}
        FROM {RECORDS_KNOWN_AT_SNAPSHOT}
        GROUP BY s.customer_id, s.as_of
    )
    SELECT s.customer_id, s.as_of AS event_timestamp,
           CASE {bands} END AS age_band, k.region, coalesce(k.source_records, 0) AS source_records{custom}
    FROM snapshots s
    LEFT JOIN known k ON k.customer_id = s.customer_id AND k.as_of = s.as_of,
    LATERAL (SELECT date_diff('year', k.birth, CAST(s.as_of AS DATE))
                    - CASE WHEN strftime(k.birth, '%m%d') > strftime(CAST(s.as_of AS DATE), '%m%d') THEN 1 ELSE 0 END AS age)
    """
    frame = connection.sql(query).df()
    for name in custom_columns:
        column = frame[f"attribute_{name}"]
        written = column.astype("string").str.strip().astype(object).where(column.notna(), None)
        folded = folding[name]
        if folded is None:  # a number: the values that may be a phone number left out
            phone_like = [isinstance(value, str) and _phone_like_number(value) for value in written.astype(object)]
            numbers = pd.to_numeric(written.astype(object).mask(phone_like), errors="coerce")
            frame[f"attribute_{name}"] = numbers  # a numeric custom attribute stays numeric
        else:
            levels = written.map(lambda value, f=folded: f.get(value, OTHER_LEVEL), na_action="ignore")
            frame[f"attribute_{name}"] = levels.astype(object).where(written.notna(), None)
    return frame


ATTRIBUTE_MIN_CUSTOMERS = 20
"""A custom attribute's text value becomes a feature level only when at least this many customers hold
it (k-anonymity of each level): rarer values (a name, a note, `call 07512317732`) become OTHER_LEVEL."""
ATTRIBUTE_MAX_LEVELS = 50
"""A custom attribute with more levels than this once rare values are folded is not a category but names
(surnames, first names) or free text: it is left out of the features."""
OTHER_LEVEL = "(other)"
"""The one level of every value too rare (or too personal) to be a level of its own."""
CONTACT_MENTION = re.compile(r"\+?\d(?:[\s().\-/]{0,2}\d){6,}")
"""A phone-like mention anywhere in a text: a run of at least 7 digits, written with the usual separators."""
EMAIL_MENTION = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def mentions_contact(text: str) -> bool:
    """Whether a value holds an e-mail address or a phone-like run of digits anywhere in it (after folding
    Unicode forms: full-width digits count): such a value is never a feature level."""
    from features.identity.standardize import clean_text

    text = clean_text(str(text))
    return bool(EMAIL_MENTION.search(text) or CONTACT_MENTION.search(text))


def _phone_like_number(text: str) -> bool:
    """A value of a numeric attribute that may be a phone number: written with a leading + or 0 and at
    least 7 digits, or at least 10 digits before any decimal point (no points balance or amount is)."""
    digits = re.sub(r"\D", "", text.split(".", 1)[0])
    return (text.startswith(("+", "0")) and not text.startswith("0.") and len(digits) >= 7) or len(digits) >= 10


def _attribute_customers(connection: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """The distinct values of a custom attribute (trimmed text) with how many customers hold each."""
    column = f"c.{_quote(name)}"
    return connection.sql(f"""
        SELECT trim(CAST({column} AS VARCHAR)) AS value, count(DISTINCT m.customer_id) AS customers
        FROM customers c JOIN identity_map m USING (source, source_id)
        WHERE {column} IS NOT NULL AND trim(CAST({column} AS VARCHAR)) <> ''
        GROUP BY 1
    """).df()


def attribute_levels(name: str, customers: pd.DataFrame, min_customers: int = ATTRIBUTE_MIN_CUSTOMERS,
                     max_levels: int = ATTRIBUTE_MAX_LEVELS) -> tuple[dict[str, str] | None, str | None]:
    """How a custom attribute enters the features, from its values and the customers holding each
    (`value`, `customers`): (None, None) a number; ({value: level}, None) a category, each value mapped to
    itself when at least `min_customers` customers hold it and it mentions no e-mail or phone
    (`mentions_contact`), else to OTHER_LEVEL; (None, reason) left out, with why (no level shared by
    enough customers, or more than `max_levels` levels: names or free text)."""
    values = customers["value"].astype(str)
    if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
        return None, None
    kept = (customers["customers"].to_numpy() >= min_customers) & ~values.map(mentions_contact).to_numpy(dtype=bool)
    levels = set(values[kept])
    if not levels:
        return None, f"no value of it is held by {min_customers} customers or more (each could single someone out)"
    if len(levels) > max_levels:
        return None, (f"it has {len(levels):,} values held by {min_customers} customers or more (over "
                      f"{max_levels}): names or free text, not a category")
    return {value: (value if value in levels else OTHER_LEVEL) for value in values}, None


PERSONAL_NAME_WORDS = frozenset({"email", "mail", "phone", "mobile", "tel", "telephone", "address", "street",
                                 "postcode", "zip", "zipcode", "birth", "birthday", "birthdate", "dob", "surname",
                                 "firstname", "lastname", "fullname", "forename", "passport", "iban", "ssn",
                                 "nickname", "maiden", "maidenname", "nick"})
"""Words of a custom column's name that say personal data (whole words: not `automobile`, `adobe`)."""
PERSON_NAME_WORDS = frozenset({"surname", "firstname", "lastname", "fullname", "forename", "nickname", "maiden",
                               "maidenname", "nick"})
"""Words that say a person's name: such a column is left out however few values it has (eight surnames
passed as a small category)."""
NAME_QUALIFIERS = frozenset({"first", "last", "full", "sur", "given", "family", "middle", "user", "nick",
                             "customer", "contact", "preferred", "name"})
"""A `name` column is a person's when every word of its name is one of these (`store_name` is not)."""
CATEGORY_MAX_LEVELS = 10
"""A column with at most this many distinct values is a category or a flag (`email_opt_in`: yes, no),
whatever its name."""
EMAIL_SHAPE = r"[^@\s]+@[^@\s]+\.[^@\s]+"
PHONE_SHAPE = r"^\+?[\d\s().-]{9,22}$"
DATE_SHAPE = r"^(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})"
IDENTIFIER_MIN_DISTINCT = 50


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # camelCase
    return [word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word]


def personal_attribute_reason(name: str, values: pd.Series) -> str | None:
    """Why a custom attribute must not become a feature (None when it may): the feature store, the
    models' category levels and the reason phrases would all carry its values. Any e-mail-shaped value;
    mostly phone-shaped or date-shaped values (a birth date under another name, also as a whole number that
    reads as a date from 1900 to today: 19571231, 31121957, 12311957); values nearly unique per
    record (an identifier, text or a long number: useless to a model, and a person's key); a name that
    says personal data, unless the column is a small category or flag. `values`: the column's non-null
    values, or a sample of them."""
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return None
    if text.str.contains(EMAIL_SHAPE, regex=True).any():
        return "it holds e-mail addresses"
    numeric = pd.to_numeric(text, errors="coerce").notna()
    digits = text.str.count(r"\d")
    phone_like = text.str.match(PHONE_SHAPE) & digits.between(9, 15) & (~numeric | text.str.match(r"^[+0]"))
    if phone_like.mean() >= 0.1:
        return "it holds phone numbers"
    distinct_all = text.nunique()
    # 8 digits escape both the date shape and the long-number test; read as YYYYMMDD, DDMMYYYY or MMDDYYYY,
    # about one random 8-digit number in 800 is a date from 1900 to today: half of them is no accident
    eight_digits = text[text.str.fullmatch(r"\d{8}(\.0+)?")].str[:8]
    earliest, today = pd.Timestamp("1900-01-01"), pd.Timestamp.today()
    date_numbers = pd.Series(False, index=eight_digits.index)
    for layout in ("%Y%m%d", "%d%m%Y", "%m%d%Y"):
        date_numbers |= pd.to_datetime(eight_digits, format=layout, errors="coerce").between(earliest, today)
    date_shaped = text.str.match(DATE_SHAPE) | date_numbers.reindex(text.index, fill_value=False)
    if date_shaped.mean() >= 0.5 and distinct_all > CATEGORY_MAX_LEVELS:
        return "it holds dates (a date of birth is personal data)"
    words = text[~numeric]
    distinct = words.nunique()
    if distinct >= IDENTIFIER_MIN_DISTINCT and distinct > 0.5 * len(words):
        return f"it is nearly one value per record ({distinct:,} distinct of {len(words):,}): an identifier"
    long_numbers = text[numeric & (digits >= 9)]
    if len(long_numbers) >= 0.5 * len(text) and long_numbers.nunique() >= IDENTIFIER_MIN_DISTINCT \
            and long_numbers.nunique() > 0.5 * len(long_numbers):
        return "it holds long numbers nearly one per record (card or national numbers): an identifier"
    name_words = set(_name_words(name))
    a_persons_name = name_words & PERSON_NAME_WORDS or ("name" in name_words and name_words <= NAME_QUALIFIERS)
    if a_persons_name:  # names, however few: a flag like `email_opt_in` has no such word
        return "its name says it holds people's names"
    if name_words & PERSONAL_NAME_WORDS and distinct_all > CATEGORY_MAX_LEVELS:
        return "its name says it holds personal data"
    return None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class FeatureFamily:
    name: str
    build: Callable[..., pd.DataFrame]
    description: str


FAMILIES: dict[str, FeatureFamily] = {
    family.name: family
    for family in (
        FeatureFamily("purchase_history", purchase_history, "RFM, revenue net of returns, windows, regularity, trend, mix"),
        FeatureFamily("behaviour", behaviour, "sessions, views, cart adds, abandoned carts, visit recency"),
        FeatureFamily("engagement", engagement, "sends, open and click rates per channel, contact fatigue"),
        FeatureFamily("reachability", reachability, "consent in force per channel, app installed, contact on file"),
        FeatureFamily("service", service, "tickets and satisfaction"),
        FeatureFamily("profile", profile, "age band, region, custom attributes"),
    )
}


REALTIME_SIGNALS = "realtime_signals"
FEATURE_TABLES = (*FAMILIES, REALTIME_SIGNALS)
"""Every feature table, one Feast feature view each."""


def realtime_signals(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The facts that fresh events change (consents, last order, cart add, app open), as of each
    snapshot: the batch value of the view that `cdp push` and the service's /events update online.
    Derived from the other families so there is one definition of each fact."""
    keys = list(KEY_COLUMNS)
    reach = tables["reachability"].set_index(keys)
    purchases = tables["purchase_history"].set_index(keys)
    behaviour_table = tables["behaviour"].set_index(keys)
    as_of = reach.index.get_level_values("event_timestamp")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")

    def seconds_at(days_before: pd.Series) -> pd.Series:
        moment = as_of - pd.to_timedelta(days_before.reindex(reach.index).to_numpy(), unit="D")
        return pd.Series(((moment - epoch) // pd.Timedelta(seconds=1)), index=reach.index).astype("Int64")

    signals = pd.DataFrame(index=reach.index)
    for channel in CHANNELS:
        signals[f"latest_{channel}_consent"] = reach[f"{channel}_consent"]
    signals["latest_app_installed"] = reach["app_installed"]
    signals["last_order_epoch_seconds"] = seconds_at(purchases["days_since_last_order"])
    signals["last_visit_epoch_seconds"] = seconds_at(behaviour_table["days_since_last_visit"])
    signals["last_app_open_epoch_seconds"] = seconds_at(behaviour_table["days_since_last_app_open"])
    return signals.reset_index()


def build_customer_features(
    connection: duckdb.DuckDBPyConnection, custom_columns: tuple[str, ...] = (),
    attribute_min_customers: int | None = None, attribute_max_levels: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Every family for the registered snapshots; keys customer_id and event_timestamp (= as_of).
    `attribute_min_customers`, `attribute_max_levels`: see `profile` (defaults ATTRIBUTE_MIN_CUSTOMERS,
    ATTRIBUTE_MAX_LEVELS)."""
    tables = {}
    for name, family in FAMILIES.items():
        frame = (family.build(connection, custom_columns, attribute_min_customers, attribute_max_levels)
                 if name == "profile" else family.build(connection))
        tables[name] = frame.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
    tables[REALTIME_SIGNALS] = realtime_signals(tables)
    return tables
