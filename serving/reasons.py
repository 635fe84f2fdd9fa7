"""Reason codes: a model's top drivers for one customer, as plain phrases with the customer's values.

The drivers come from per-row SHAP contributions (`training/models.py::CustomerModel.contributions`:
one column per model input plus `bias`); each chosen feature is written with a template for its
name (or its family, for per-channel and per-window features) and the customer's own values, e.g.
"no purchase in 143 days, usually buys every 35". A feature without a template still reads as
"<feature name in words> is <value>". The features may be raw or as the model encodes them
(`CustomerModel.prepare`: a missing category reads as missing). Pure functions.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from serving.policy import REACHABILITY_FLAGS
from training.models import MISSING_CATEGORY

Direction = Literal["up", "down", "abs", "net"]
"""up: the features pushing the score up (why is the churn risk high?); down: those pushing it
down; abs: the largest in either direction; net: per customer, those pushing the score the way it
went from the model's average (why is this customer's risk high, or low)."""

CHANNEL_NOUNS = {
    "email": ("e-mail", "e-mails"),
    "push": ("push notification", "push notifications"),
    "sms": ("text message", "text messages"),
}
ORDER_CHANNELS = {"web": "the web shop", "app": "the app", "store": "a store", "phone": "the phone"}
PERIODS = {"7": "7 days", "30": "30 days", "90": "90 days", "365": "year"}


class _Row:
    """One customer's values, looked up by feature name (absent column or missing value -> None)."""

    def __init__(self, columns: _Columns, position: int):
        self.columns, self.position = columns, position

    def __call__(self, name: str) -> Any:
        return self.columns.value(name, self.position)

    def has(self, name: str) -> bool:
        return name in self.columns.frame


class _Columns:
    """The features (a frame, or numpy columns by name) as numpy columns, converted once on first use."""

    def __init__(self, frame: pd.DataFrame | Mapping[str, np.ndarray]):
        self.frame, self.cache = frame, {}
        self._touch_indicators: list[str] | None = None

    def touch_indicators(self) -> list[str]:
        """The `touch_<channel>` columns (the propensity model's encoded channel), found once."""
        if self._touch_indicators is None:
            self._touch_indicators = [name for name in self.frame if isinstance(name, str)
                                      and name.startswith("touch_") and name != "touch_offer_depth"]
        return self._touch_indicators

    def value(self, name: str, position: int) -> Any:
        if name not in self.cache:  # the column as a list of Python values (read per row faster)
            column = self.frame.get(name)
            self.cache[name] = None if column is None else np.asarray(column).tolist()
        column = self.cache[name]
        if column is None:
            return None
        value = column[position]
        return None if _missing(value) else value


def _missing(value: Any) -> bool:
    """None, NaN, pd.NA, or the level a model's encoding gives a missing category."""
    if value is None or value is pd.NA or (isinstance(value, str) and value == MISSING_CATEGORY):
        return True
    if isinstance(value, float):
        return value != value
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --- number formatting -------------------------------------------------------------------------


def _number(value: Any) -> str:
    """12, 3.5, 1,204; booleans as yes/no; text as is."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if abs(number - round(number)) < 0.05:
        return f"{round(number):,}"
    return f"{number:,.1f}" if abs(number) >= 1 else f"{number:.2g}"


def _days(value: Any) -> str:
    days = round(float(value))
    return "1 day" if days == 1 else f"{days:,} days"


def _money(value: Any) -> str:
    number = float(value)
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:,.2f}"


def _percent(value: Any) -> str:
    return f"{float(value) * 100:.0f}%"


def _times(value: Any, noun: str, plural: str | None = None) -> str:
    count = round(float(value))
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def _period(window: str) -> str:
    return "the last " + PERIODS.get(window, f"{window} days")


def _channel(channel: str, plural: bool = True) -> str:
    nouns = CHANNEL_NOUNS.get(channel, (f"{channel} message", f"{channel} messages"))
    return nouns[1] if plural else nouns[0]


def words(name: str) -> str:
    """A feature name in words: `tickets_365d` -> "tickets 365 days"."""
    text = re.sub(r"(\d+)d\b", r"\1 days", name.removeprefix("attribute_"))
    return text.replace("_", " ")


# --- templates ----------------------------------------------------------------------------------
# Each template takes the regex match of the feature name, the customer's row and the value, and
# returns a phrase; the value is None when missing. Order matters: the first matching pattern wins.

Template = Callable[[re.Match, _Row, Any], str]


def _last_order(match: re.Match, row: _Row, value: Any) -> str:
    if value is None:
        return "never ordered"
    text = "ordered today" if float(value) < 1 else f"no purchase in {_days(value)}"
    usual = row("mean_days_between_orders")
    return text + (f", usually buys every {round(float(usual))}" if usual is not None else "")


def _usual_gap(match: re.Match, row: _Row, value: Any) -> str:
    if value is None:
        return "never ordered" if row("days_since_last_order") is None else "only one order so far"
    text = f"usually buys every {_days(value)}"
    last = row("days_since_last_order")
    return text + (f", last order {_days(last)} ago" if last is not None else "")


def _overdue(match: re.Match, row: _Row, value: Any) -> str:
    if value is None:
        return "no usual gap between orders yet"
    last, usual = row("days_since_last_order"), row("mean_days_between_orders")
    detail = (
        f" ({_days(last)}, usually {round(float(usual))})"
        if last is not None and usual is not None
        else ""
    )
    return f"{float(value):.1f} times the usual gap since the last order{detail}"


def _tenure(match: re.Match, row: _Row, value: Any) -> str:
    if value is None:
        return "never ordered"
    days = float(value)
    return (
        f"first order {days / 365.25:.1f} years ago"
        if days >= 730
        else f"first order {_days(days)} ago"
    )


def _orders(match: re.Match, row: _Row, value: Any) -> str:
    window = match.group(1)
    where = f"in {_period(window)}" if window else "in total"
    if value is None or float(value) == 0:
        return f"no orders {where}" if window else "never ordered"
    return f"{_times(value, 'order')} {where}"


def _spend(match: re.Match, row: _Row, value: Any) -> str:
    kind, window = match.group(1), match.group(2)
    where = f"in {_period(window)}" if window else "in total"
    what = "spent" if kind == "gross_revenue" else "net spend after returns"
    if value is None or float(value) == 0:
        return f"nothing spent {where}"
    return f"{what} {_money(value)} {where}"


def _trend(match: re.Match, row: _Row, value: Any) -> str:
    """The counts behind the trend: it is (orders in the last 90 days + 1) / (in the 90 before + 1), a
    smoothed ratio that would read as "3.0 times the orders" for 2 orders against none."""
    if value is None:
        return "no order trend yet"
    ratio, recent = float(value), row("orders_90d")
    if recent is None or ratio <= 0:
        return ("ordering at the same pace as the 90 days before" if abs(ratio - 1) < 0.05
                else f"ordering {'more' if ratio > 1 else 'less'} than in the 90 days before")
    recent = round(float(recent))
    before = max(round((recent + 1) / ratio - 1), 0)
    if recent == before:
        return f"ordering at the same pace: {_times(recent, 'order')} in the last 90 days and in the 90 before"
    return (f"{_times(recent, 'order') if recent else 'no orders'} in the last 90 days, "
            f"{_times(before, 'order') if before else 'none'} in the 90 days before")


def _order_channel(match: re.Match, row: _Row, value: Any) -> str:
    place = ORDER_CHANNELS.get(match.group(1), match.group(1))
    if value is None:
        return f"no orders yet (so none via {place})"
    return (
        f"no orders via {place}"
        if float(value) == 0
        else f"{_percent(value)} of orders via {place}"
    )


def _sends(match: re.Match, row: _Row, value: Any) -> str:
    channel, window = match.group(1), match.group(2)
    count = 0 if value is None else value
    return f"{_times(count, _channel(channel, False), _channel(channel))} sent in {_period(window)}"


def _rate(match: re.Match, row: _Row, value: Any) -> str:
    channel, action = match.group(1), match.group(2)
    verb = "opened" if action == "open" else "clicked"
    if value is None:
        return f"no {_channel(channel)} in the last 90 days"
    return f"{verb} {_percent(value)} of {_channel(channel)} in the last 90 days"


def _response(match: re.Match, row: _Row, value: Any) -> str:
    channel = match.group(1)
    if channel == "none":  # the control touches: held out of a contact
        if value is None:
            return "never in a control group in the last year, so how they buy uncontacted is unknown"
        return f"ordered within a week of {_percent(value)} of the times held out of a contact in the last year"
    if value is None:
        return f"no {_channel(channel)} in the last year to measure a response by"
    return f"ordered within a week of {_percent(value)} of {_channel(channel)} in the last year"


def _last_touch(match: re.Match, row: _Row, value: Any) -> str:
    channel = match.group(1)
    if value is None:
        return f"never sent a{'n' if channel == 'email' else ''} {_channel(channel, False)}"
    return f"last {_channel(channel, False)} {_days(value)} ago"


def _consent(match: re.Match, row: _Row, value: Any) -> str:
    channel = _channel(match.group(2))
    if value is None:
        return f"consent to {channel} never recorded"
    return f"consented to {channel}" if float(value) == 1 else f"withdrew consent to {channel}"


def _flag(yes: str, no: str, unknown: str | None = None) -> Template:
    def phrase(match: re.Match, row: _Row, value: Any) -> str:
        if value is None:
            return unknown or no
        return yes if float(value) == 1 else no

    return phrase


def _count(noun: str, plural: str, where: str, none: str | None = None) -> Template:
    def phrase(match: re.Match, row: _Row, value: Any) -> str:
        window = match.groupdict().get("window")
        place = where.format(period=_period(window)) if window else where
        if value is None or float(value) == 0:
            return none.format(place=place) if none else f"no {plural} {place}"
        return f"{_times(value, noun, plural)} {place}"

    return phrase


def _since(what: str, never: str) -> Template:
    def phrase(match: re.Match, row: _Row, value: Any) -> str:
        return never if value is None else f"{what} {_days(value)} ago"

    return phrase


def _epoch(what: str, never: str) -> Template:
    def phrase(match: re.Match, row: _Row, value: Any) -> str:
        if value is None:
            return never
        day = dt.datetime.fromtimestamp(float(value), tz=dt.UTC).date()
        return f"{what} on {day.isoformat()}"

    return phrase


def _age(match: re.Match, row: _Row, value: Any) -> str:
    if value is None:
        return "age unknown"
    band = str(value)
    if band.startswith("under_"):
        return f"aged under {band.removeprefix('under_')}"
    if band.endswith("_plus"):
        return f"aged {band.removesuffix('_plus')}+"
    return "aged " + band.replace("_", "–")


def _satisfaction(match: re.Match, row: _Row, value: Any) -> str:
    if value is None:
        return "no satisfaction rating in the last year"
    return f"average satisfaction {float(value):.1f} of 5 in the last year"


def _touch_channel(match: re.Match, row: _Row, value: Any) -> str:
    if value is None or str(value) == "none":
        return "no contact"
    return f"contacted by {_channel(str(value), False)}"


def _touch_indicator(match: re.Match, row: _Row, value: Any) -> str:
    """`touch_<channel>`: the propensity model's encoding of the scored channel, 1 for it, else 0."""
    noun = _channel(match.group(1), False)
    if value is None:
        return "no contact"
    return f"contacted by {noun}" if float(value) == 1 else f"not contacted by {noun}"


def _offer(match: re.Match, row: _Row, value: Any) -> str:
    if value is None or str(value) == "none":
        return "no discount offered"
    depth = re.match(r"^(\d+(?:\.\d+)?)pct$", str(value))
    return f"{depth.group(1)}% off offered" if depth else f"offer {value}"


def _offer_depth(match: re.Match, row: _Row, value: Any) -> str:
    """`touch_offer_depth`: the offer as the propensity model encodes it (0.1 for 10% off)."""
    if value is None or float(value) == 0:
        return "no discount offered"
    return f"{_number(float(value) * 100)}% off offered"


def _attribute(match: re.Match, row: _Row, value: Any) -> str:
    name = words(match.group(1))
    if value is None:
        return f"{name} unknown"
    return f"{name} is {value.replace('_', ' ')}" if isinstance(value, str) else f"{name} is {_number(value)}"


TEMPLATES: list[tuple[re.Pattern, Template]] = [
    (re.compile(pattern), template)
    for pattern, template in [
        # purchase history
        (r"^days_since_last_order$", _last_order),
        (r"^mean_days_between_orders$", _usual_gap),
        (r"^overdue_ratio$", _overdue),
        (
            r"^std_days_between_orders$",
            lambda m, r, v: (
                "no regular gap between orders yet"
                if v is None
                else f"gaps between orders vary by {_days(v)}"
            ),
        ),
        (r"^days_since_first_order$", _tenure),
        (r"^orders_(?:(\d+)d|total)$", _orders),
        (r"^(gross_revenue|net_revenue)_(?:(\d+)d|total)$", _spend),
        (
            r"^returned_total$",
            lambda m, r, v: (
                "never returned anything" if not v else f"returned {_money(v)} worth of orders"
            ),
        ),
        (
            r"^return_rate$",
            lambda m, r, v: (
                "never ordered" if v is None else f"returned {_percent(v)} of what they bought"
            ),
        ),
        (
            r"^average_order_value$",
            lambda m, r, v: "never ordered" if v is None else f"orders average {_money(v)}",
        ),
        (r"^order_trend_90d$", _trend),
        (
            r"^revenue_smoothed_90d$",
            lambda m, r, v: (
                "no recent spend"
                if not v
                else f"recent spend {_money(v)} (weighted to the last 90 days)"
            ),
        ),
        (
            r"^discount_share$",
            lambda m, r, v: (
                "never ordered" if v is None else f"{_percent(v)} of orders used a discount"
            ),
        ),
        (r"^share_of_orders_(\w+)$", _order_channel),
        # behaviour
        (r"^active_days_(?P<window>\d+)d$", _count("active day", "active days", "in {period}")),
        (r"^events_(?P<window>\d+)d$", _count("visit event", "visit events", "in {period}")),
        (
            r"^product_views_(?P<window>\d+)d$",
            _count("product viewed", "products viewed", "in {period}"),
        ),
        (r"^cart_adds_(?P<window>\d+)d$", _count("cart add", "cart adds", "in {period}")),
        (
            r"^checkout_starts_(?P<window>\d+)d$",
            _count("checkout started", "checkouts started", "in {period}"),
        ),
        (r"^searches_(?P<window>\d+)d$", _count("search", "searches", "in {period}")),
        (
            r"^abandoned_carts_(?P<window>\d+)d$",
            _count("abandoned cart", "abandoned carts", "in {period}"),
        ),
        (r"^days_since_last_visit$", _since("last visit", "never visited the web shop or app")),
        (r"^days_since_last_app_open$", _since("last opened the app", "never opened the app")),
        # engagement
        (r"^(\w+?)_sends_(\d+)d$", _sends),
        (r"^(\w+?)_(open|click)_rate_90d$", _rate),
        (r"^(\w+?)_response_rate_365d$", _response),
        (r"^(\w+?)_days_since_last_touch$", _last_touch),
        (r"^touches_(?P<window>\d+)d$", _count("contact", "contacts", "in {period}")),
        (
            r"^consents_withdrawn_total$",
            _count("consent withdrawn", "consents withdrawn", "so far"),
        ),
        # reachability and realtime signals
        (r"^(latest_)?(\w+?)_consent$", _consent),
        (
            r"^(latest_)?app_installed$",
            _flag("has the app", "no app installed", "app installation unknown"),
        ),
        (r"^has_email$", _flag("e-mail address on file", "no e-mail address on file")),
        (r"^has_phone$", _flag("phone number on file", "no phone number on file")),
        (r"^last_order_epoch_seconds$", _epoch("last order", "never ordered")),
        (r"^last_visit_epoch_seconds$", _epoch("last visit", "never visited the web shop or app")),
        (r"^last_app_open_epoch_seconds$", _epoch("last opened the app", "never opened the app")),
        # service
        (r"^tickets_(?P<window>\d+)d$", _count("support ticket", "support tickets", "in {period}")),
        (
            r"^low_csat_tickets_365d$",
            _count(
                "support ticket with low satisfaction",
                "support tickets with low satisfaction",
                "in the last year",
            ),
        ),
        (r"^csat_mean_365d$", _satisfaction),
        (r"^days_since_last_ticket$", _since("last support ticket", "never contacted support")),
        # profile
        (r"^age_band$", _age),
        (r"^region$", lambda m, r, v: "region unknown" if v is None else f"lives in region {v}"),
        (
            r"^source_records$",
            lambda m, r, v: (f"known from {_times(v, 'record')} across systems" if v else
                             "no customer record in any system: known from activity only"),
        ),
        (r"^attribute_(.+)$", _attribute),
        # the touch being scored (propensity)
        (r"^channel$", _touch_channel),
        (r"^offer$", _offer),
        (r"^touch_offer_depth$", _offer_depth),
        (r"^touch_(\w+)$", _touch_indicator),
    ]
]


def phrase(feature: str, values: Mapping[str, Any] | pd.Series) -> str:
    """One feature of one customer written as a plain phrase; `values` holds the customer's
    features by name (other features may be quoted, e.g. the usual gap next to the recency)."""
    return _phrase(feature, _Row(_Columns(pd.DataFrame([dict(values)])), 0))


def _phrase(feature: str, row: _Row) -> str:
    touched = re.match(r"^touched_(.+)$", feature)
    if touched:  # the propensity model's copy of the scored channel's engagement
        return _touched_phrase(touched.group(1), feature, row)
    value = row(feature)
    template, match = _template_of(feature)
    if template is not None:
        return template(match, row, value)
    return f"{words(feature)} unknown" if value is None else f"{words(feature)} is {_number(value)}"


def _touched_phrase(name: str, feature: str, row: _Row) -> str:
    """`touched_<name>` in the scored channel's words ("0 e-mails sent in the last 90 days"), with the
    value the model read; from the channel's own column when only the raw features are given."""
    channel = _scored_channel(row)
    if channel is None:
        return f"{words(name)} of the contact's channel unknown"
    if channel == "none" and name != "response_rate_365d":  # no contact: only the control's response rate
        return f"no contact, so no channel's {words(name)}"
    value = row(feature) if row.has(feature) else row(f"{channel}_{name}")
    template, match = _template_of(f"{channel}_{name}")
    if template is None:
        return f"{channel} {words(name)} unknown" if value is None else f"{channel} {words(name)} is {_number(value)}"
    return template(match, row, value)


def _scored_channel(row: _Row) -> str | None:
    """The channel of the contact being scored: the `channel` column, or the encoded one (the
    `touch_<channel>` indicator that is 1; "none" when every indicator is 0); None when unknown."""
    channel = row("channel")
    if channel is not None:
        return str(channel)
    indicators = row.columns.touch_indicators()
    if not indicators or any(row(name) is None for name in indicators):
        return None
    return next((name.removeprefix("touch_") for name in indicators if float(row(name)) == 1), "none")


SAME_FACTS = {name: "order_gap" for name in ("days_since_last_order", "mean_days_between_orders", "overdue_ratio")}
"""Features whose phrases quote each other's values (the recency with the usual gap, the overdue ratio
with both): one phrase per customer from each such group, the strongest driver's."""


@functools.cache
def _template_of(feature: str) -> tuple[Template | None, re.Match | None]:
    """The first template whose pattern matches the feature name (looked up once per name)."""
    for pattern, template in TEMPLATES:
        match = pattern.match(feature)
        if match:
            return template, match
    return None, None


def reason_phrases(
    contributions: pd.DataFrame, features: pd.DataFrame, top: int = 3, direction: Direction = "up"
) -> list[list[str]]:
    """For each row, the `top` features with the largest contributions (by `direction`) written as
    phrases with the customer's values from `features` (matched by position; same length).
    Features contributing nothing (or only in the other direction) are left out, so a row may
    have fewer phrases; a phrase equal to one already chosen is skipped for the next feature."""
    if len(contributions) != len(features):
        raise ValueError(f"contributions have {len(contributions)} rows, features {len(features)}")
    names = [c for c in contributions.columns if c != "bias"]
    return phrases_from_contributions(names, contributions[names].to_numpy(dtype=float, na_value=0.0) if names
                                      else np.zeros((len(contributions), 0)), features, top, direction)


CHANNEL_FEATURES = {flag: channel for channel, flags in REACHABILITY_FLAGS.items() for flag in flags if flag}
"""Reachability features of one channel whose name does not start with it (the policy's flags)."""


def channel_of_feature(feature: str, channels: Sequence[str]) -> str | None:
    """The channel a feature is about (`sms_sends_90d`, `latest_push_consent`, `has_email`), or None."""
    if feature in CHANNEL_FEATURES:
        return CHANNEL_FEATURES[feature]
    return next((c for c in channels if feature.startswith((f"{c}_", f"latest_{c}_"))), None)


def own_channel_contributions(names: Sequence[str], values: np.ndarray, row_channels: Sequence[str],
                              channels: Sequence[str]) -> np.ndarray:
    """The contributions with those of other channels' features set to 0, per row: why an SMS would work
    is said in SMS facts (it read "0 e-mails sent in the last 90 days" for a customer without e-mail consent)."""
    values = np.array(values, dtype=float, copy=True)
    row_channels = np.asarray(row_channels, dtype=object)
    for owner, columns in _columns_by_channel(tuple(names[: values.shape[1]]), tuple(channels)).items():
        others = row_channels != owner
        if others.any():
            values[np.ix_(others, columns)] = 0.0
    return values


@functools.cache
def _columns_by_channel(names: tuple[str, ...], channels: tuple[str, ...]) -> dict[str, list[int]]:
    """Channel -> positions of its features among `names` (found once per model: this runs per request)."""
    owners: dict[str, list[int]] = {}
    for column, name in enumerate(names):
        owner = channel_of_feature(name, channels)
        if owner is not None:
            owners.setdefault(owner, []).append(column)
    return owners


def phrases_from_contributions(
    names: list[str], values: np.ndarray, features: pd.DataFrame | Mapping[str, np.ndarray], top: int = 3,
    direction: Direction = "up",
) -> list[list[str]]:
    """:func:`reason_phrases` on a contributions matrix (one column per name in `names`, no bias)
    and features as a frame or numpy columns: the service's path, without DataFrames."""
    if direction not in ("up", "down", "abs", "net"):
        raise ValueError(f"direction must be up, down, abs or net, not {direction!r}")
    if not names or top <= 0:
        return [[] for _ in range(len(values))]
    values = np.asarray(values, dtype=float)[:, : len(names)]
    if direction == "net":  # each row's drivers the way its score went from the average
        sign = np.where(np.nansum(values, axis=1, keepdims=True) < 0, -1.0, 1.0)
        strength = values * sign
    else:
        strength = {"up": values, "down": -values, "abs": np.abs(values)}[direction]
    strength = np.where(np.isfinite(strength), strength, 0.0)
    columns = _Columns(features)
    # Every row ranked at once, strongest first (ties by column), then walked as Python lists.
    order = np.argsort(-strength, axis=1, kind="stable")
    positive = np.take_along_axis(strength, order, axis=1) > 0
    result = []
    for position, (ranked, usable) in enumerate(zip(order.tolist(), positive.tolist(), strict=True)):
        row, chosen, concepts = _Row(columns, position), [], set()
        for index, contributes in zip(ranked, usable, strict=True):
            if len(chosen) == top or not contributes:
                break
            concept = SAME_FACTS.get(names[index], names[index])
            if concept in concepts:  # e.g. the usual gap after "no purchase in 256 days, usually buys every 136"
                continue
            text = _phrase(names[index], row)
            if text not in chosen:
                chosen.append(text)
                concepts.add(concept)
        result.append(chosen)
    return result


def unscored_churn_phrases(days_since_last_order: np.ndarray, population_days: int,
                           days_since_later_order: np.ndarray | None = None) -> list[str]:
    """Why a customer has no churn probability (`training.scoring.outside_churn_population`), in the
    words of the reasons: the number left empty still comes with its reason. `days_since_later_order`
    (online: an order pushed through /events after the moment the stored features describe, NaN for
    none) tells apart a customer the stored features miss an order of, for whom "never ordered" would
    read as false."""
    stored = np.asarray(days_since_last_order, dtype=float)
    later = (np.full(len(stored), np.nan) if days_since_later_order is None
             else np.asarray(days_since_later_order, dtype=float))
    covered = f"the churn model covers customers who ordered in the last {population_days} days"
    phrases = []
    for days, since in zip(stored.tolist(), later.tolist(), strict=True):
        if not _missing(since):
            when = "today" if since < 1 else f"{_days(since)} ago"
            phrases.append(f"no churn score yet: the order {when} came after the stored features the churn "
                           "model reads (scored once the order is ingested and the features are rebuilt and materialized: the "
                           "nightly `cdp run`)")
        elif _missing(days):
            phrases.append(f"no churn score: never ordered ({covered})")
        else:
            phrases.append(f"no churn score: no order in the last {population_days} days (the churn model covers "
                           "customers who did)")
    return phrases
