"""The recommendation policy: next-best action, win-back and holdout for a frame of customers.

One pure, vectorized function, :func:`decide`, used unchanged by the online service (1-1,000
customers per call, on numpy columns: pandas costs more than the policy on a few rows) and by batch
scoring (the whole base, in chunks, through :func:`recommend`, its DataFrame form). Its input is one row per
customer holding the model scores of `training/scoring.py::score_features` (`churn_probability`,
`clv`, `conversion_<action>`) and the features of the `recommendation_v1` FeatureService; any of
them may be missing. The rules, the formula and every setting: docs/policy.md.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.core.internals import BlockManager
from pandas.core.internals.api import make_block

from cdp.config import PolicySettings
from cdp.moments import utc_timestamp

NO_CONTACT = "none"
"""The no-contact action (training/scoring.py's name for it)."""
CONVERSION_PREFIX = "conversion_"
BASELINE_COLUMN = CONVERSION_PREFIX + NO_CONTACT
WIN_BACK_TIMING = "today"

REACHABILITY_FLAGS = {
    "email": ("has_email", None),
    "push": ("app_installed", "latest_app_installed"),
    "sms": ("has_phone", None),
}
"""Channel -> (batch contact flag, realtime flag that takes precedence when not null)."""
UNREACHABLE = {
    "email": "no e-mail address on file",
    "push": "app not installed",
    "sms": "no phone number on file",
}
CHANNEL_WORDS = {"email": "e-mail", "push": "push notification", "sms": "text message"}

HOLDOUT_REASON = "holdout (control group)"
NO_PROPENSITY_REASON = "no propensity model: the value of a contact is unknown"
NO_CHANNEL_ALLOWED_REASON = "no channel allowed by the campaign"
UNREACHABLE_REASON = "no consented, reachable channel"
CAP_REASON = "frequency cap"
QUIET_REASON = "quiet period"
NO_SCORE_REASON = "no conversion score for this customer"
NOT_WORTH_REASON = "contact not worth its cost"
NOT_AT_RISK_REASON = "not at risk: churn probability below the threshold and not lapsed"
NO_RISK_KNOWN_REASON = "not lapsed, and no churn probability to judge the risk by"
NEVER_ORDERED_REASON = "never ordered: nothing to win back"
NOT_SAVED_REASON = "value saved does not cover the cost"

# Stages of the eligibility checks, in the order they run; the first failing one is the reason.
_ALLOWED, _CONSENT, _REACH, _CAP, _QUIET, _ELIGIBLE = range(6)
_OFFER_DEPTH = re.compile(r"^(\d+(?:\.\d+)?)pct$")


@dataclass(frozen=True)
class Action:
    """A candidate action: `none`, a channel, or `channel:offer`."""

    name: str
    channel: str
    offer: str
    depth: float
    """Discount depth of the offer (0.10 for `10pct`); 0 without one."""
    column: str
    """Its conversion probability column."""


NONE_ACTION = Action(NO_CONTACT, NO_CONTACT, NO_CONTACT, 0.0, BASELINE_COLUMN)


def offer_depth(offer: str, settings: PolicySettings) -> float | None:
    """Discount depth of an offer: `settings.offer_depths[offer]`, else read from `<n>pct`; None if
    neither says (such offers are not candidates). `none` has depth 0."""
    if offer == NO_CONTACT:
        return 0.0
    if offer in settings.offer_depths:
        return float(settings.offer_depths[offer])
    match = _OFFER_DEPTH.match(offer)
    if match is None:
        return None
    depth = float(match.group(1)) / 100.0
    return depth if depth < 1 else None


def candidate_actions(columns: Iterable[str], settings: PolicySettings) -> list[Action]:
    """Contact actions the frame has conversion scores for (so the propensity model learned them
    from the touch history), limited to the configured channels and offers, in the configured
    channel order, the plain channel before its offers (shallowest first). `none` is not listed: it
    is always a candidate and is the baseline. Without `conversion_none` there is no baseline, so
    no contact action can be valued: the list is empty."""
    conversion = tuple(c for c in columns if c.startswith(CONVERSION_PREFIX))
    key = (id(settings), conversion)
    cached = _CANDIDATES.get(key)
    if cached is None or cached[0] is not settings:  # the settings object kept: its id is not reused
        if len(_CANDIDATES) > 64:
            _CANDIDATES.clear()
        cached = _CANDIDATES[key] = (settings, _find_candidate_actions(conversion, settings))
    return list(cached[1])


_CANDIDATES: dict[tuple[int, tuple[str, ...]], tuple[PolicySettings, list[Action]]] = {}
"""Candidate actions by settings and conversion columns: the same few combinations every request."""


def _find_candidate_actions(columns: tuple[str, ...], settings: PolicySettings) -> list[Action]:
    if BASELINE_COLUMN not in columns:
        return []
    by_length = sorted(
        settings.channels, key=len, reverse=True
    )  # `push_x` must not match a channel `p`
    found: dict[str, list[Action]] = {channel: [] for channel in settings.channels}
    for column in columns:
        if not column.startswith(CONVERSION_PREFIX) or column == BASELINE_COLUMN:
            continue
        rest = column[len(CONVERSION_PREFIX) :]
        for channel in by_length:
            if rest == channel:
                found[channel].append(Action(channel, channel, NO_CONTACT, 0.0, column))
                break
            if rest.startswith(channel + "_"):
                offer = rest[len(channel) + 1 :]
                depth = offer_depth(offer, settings)
                if depth is not None and (settings.offers is None or offer in settings.offers):
                    found[channel].append(
                        Action(f"{channel}:{offer}", channel, offer, depth, column)
                    )
                break
    return [
        a
        for channel in settings.channels
        for a in sorted(found[channel], key=lambda a: (a.depth, a.offer))
    ]


def numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64 with NaN for missing (None, pd.NA, absent column, non-numbers)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    values = frame[column]
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        values = pd.to_numeric(values, errors="coerce")
    return values.to_numpy(dtype=float, na_value=np.nan)


def _rows(columns: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _float_column(values) -> np.ndarray:
    """A mapping's column as float64 (what :func:`numbers` gives for the same values in a frame)."""
    array = np.asarray(values)
    if array.dtype.kind in "biufO":
        try:
            return array.astype(float)  # None reads as NaN
        except (TypeError, ValueError):
            pass
    return pd.to_numeric(pd.Series(array, dtype=object), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class _Inputs:
    """The numeric inputs the policy reads, converted to float64 in one block (one call instead of
    one per column: what keeps a one-customer answer well under a millisecond of pandas overhead),
    or taken from a mapping of numpy columns as they are. Callable like :func:`numbers`: an absent
    column reads as all NaN."""

    SMALL = 4096
    """Frames up to this many rows convert through one object array of the whole frame (cheapest
    for the service's few rows); larger ones through a float block of the columns used."""

    def __init__(self, frame: pd.DataFrame | Mapping[str, np.ndarray], columns: Iterable[str]):
        if not isinstance(frame, pd.DataFrame):
            present = [c for c in dict.fromkeys(columns) if c in frame]
            self.length = _rows(frame)
            self.columns = {c: _float_column(frame[c]) for c in present}
            return
        if not frame.columns.is_unique:
            raise ValueError("the policy's input has duplicate column names")
        present = [c for c in dict.fromkeys(columns) if c in frame.columns]
        positions = frame.columns.get_indexer(present)
        self.length = len(frame)
        try:
            if self.length <= self.SMALL:
                block = frame.to_numpy()[:, positions].astype(float)
            else:
                block = frame.iloc[:, positions].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):  # pd.NA or text in a numeric column: column by column
            self.columns = {c: numbers(frame, c) for c in present}
        else:
            self.columns = {c: block[:, i] for i, c in enumerate(present)}

    def __call__(self, column: str) -> np.ndarray:
        values = self.columns.get(column)
        return values if values is not None else np.full(self.length, np.nan)


def _policy_columns(settings: PolicySettings, actions: list[Action]) -> list[str]:
    """Every numeric column the policy may read."""
    columns = [
        "touches_7d",
        "touches_30d",
        "average_order_value",
        "days_since_last_order",
        "net_revenue_365d",
        "last_order_epoch_seconds",
        "churn_probability",
        "clv",
        BASELINE_COLUMN,
        *(a.column for a in actions),
    ]
    for channel in dict.fromkeys((*settings.channels, *REACHABILITY_FLAGS)):
        columns += [
            f"{channel}_consent",
            f"latest_{channel}_consent",
            f"{channel}_sends_7d",
            f"{channel}_sends_30d",
            f"{channel}_sends_90d",
            f"{channel}_days_since_last_touch",
        ]
    for batch, latest in REACHABILITY_FLAGS.values():
        columns += [batch, latest] if latest else [batch]
    return columns


def _fresh(read, batch: str, latest: str | None) -> np.ndarray:
    """The realtime value where it is not null, else the batch value."""
    values = read(batch)
    if latest is None:
        return values
    fresh = read(latest)
    return np.where(np.isnan(fresh), values, fresh)


def effective_consent(frame: pd.DataFrame, channel: str) -> np.ndarray:
    """Consent in force: `latest_<channel>_consent` (what a push updates) where not null, else the
    batch `<channel>_consent`. 1 granted, 0 withdrawn, NaN never recorded."""
    return _fresh(
        lambda column: numbers(frame, column), f"{channel}_consent", f"latest_{channel}_consent"
    )


def channels_the_policy_may_use(frame: pd.DataFrame, settings: PolicySettings) -> pd.DataFrame:
    """Per customer and configured channel: open today, or held only by its quiet period (a win-back
    waits for it to end). Batch scoring scores conversion only on these: the decisions are the same
    as with every channel scored."""
    read = _Inputs(frame, _policy_columns(settings, []))
    stages, _, _ = _eligibility_stages(read, settings, None)
    return pd.DataFrame(
        {c: (stages[c] == _ELIGIBLE) | (stages[c] == _QUIET) for c in settings.channels},
        index=frame.index,
    )


def _eligibility_stages(
    read: _Inputs, settings: PolicySettings, allowed_channels: Iterable[str] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per channel: the stage at which each customer fails (_ELIGIBLE if none), its reason, and the
    days until the quiet periods that hold the customer end (0 outside them), so that a win-back
    held only by a quiet period can be scheduled for when it ends."""
    n = read.length
    allowed = None if allowed_channels is None else set(allowed_channels)
    touches_7d = read("touches_7d")  # NaN compares False below: no count, no cap
    touches_30d = read("touches_30d")
    recency = [
        read(f"{c}_days_since_last_touch")
        for c in dict.fromkeys((*settings.channels, *REACHABILITY_FLAGS))
    ]
    with np.errstate(invalid="ignore"):
        last_any = np.fmin.reduce(recency) if recency else np.full(n, np.nan)
    stages, reasons, quiet_waits = {}, {}, {}
    for channel in settings.channels:
        consent = _fresh(read, f"{channel}_consent", f"latest_{channel}_consent")
        # opt_in: only a recorded grant counts; opt_out: anything but a withdrawal
        no_consent = (consent != 1) if settings.consent_mode == "opt_in" else (consent == 0)

        batch_flag, latest_flag = REACHABILITY_FLAGS.get(channel, (None, None))
        flag = _fresh(read, batch_flag, latest_flag) if batch_flag else np.full(n, np.nan)
        with np.errstate(invalid="ignore"):
            proof = (read(f"{channel}_sends_90d") > 0) if settings.reach_from_past_sends else False
        unreachable = ~((flag == 1) | proof)

        cap_7d = settings.max_sends_7d.get(channel)
        cap_30d = settings.max_sends_30d.get(channel)
        quiet = settings.quiet_days.get(channel, 0.0)
        last = read(f"{channel}_days_since_last_touch")
        with np.errstate(invalid="ignore"):
            over_7d = read(f"{channel}_sends_7d") >= cap_7d if cap_7d is not None else False
            over_30d = read(f"{channel}_sends_30d") >= cap_30d if cap_30d is not None else False
            over_all_7d = touches_7d >= settings.max_touches_7d
            over_all_30d = touches_30d >= settings.max_touches_30d
            in_quiet = last < quiet  # NaN (never contacted) compares False
            in_quiet_any = last_any < settings.quiet_days_any_channel
            quiet_waits[channel] = np.fmax(
                np.where(in_quiet, quiet - last, 0.0),
                np.where(in_quiet_any, settings.quiet_days_any_channel - last_any, 0.0),
            )

        words = CHANNEL_WORDS.get(channel, channel)
        failures = [  # (check failed, stage, reason), in the order the checks run
            (
                allowed is not None and channel not in allowed,
                _ALLOWED,
                "not allowed by the campaign",
            ),
            (no_consent & (consent == 0), _CONSENT, "consent withdrawn"),
            (no_consent, _CONSENT, "no consent recorded"),
            (
                unreachable,
                _REACH,
                UNREACHABLE.get(channel, "not reachable: no delivered send in 90 days"),
            ),
            (over_7d, _CAP, f"frequency cap: {_count(cap_7d, words)} in 7 days"),
            (over_30d, _CAP, f"frequency cap: {_count(cap_30d, words)} in 30 days"),
            (
                over_all_7d,
                _CAP,
                f"frequency cap: {settings.max_touches_7d} touches on all channels in 7 days",
            ),
            (
                over_all_30d,
                _CAP,
                f"frequency cap: {settings.max_touches_30d} touches on all channels in 30 days",
            ),
            (in_quiet, _QUIET, f"quiet period: last {words} {_within_days(quiet)}"),
            (
                in_quiet_any,
                _QUIET,
                f"quiet period: a contact on any channel {_within_days(settings.quiet_days_any_channel)}",
            ),
        ]
        code = np.full(n, len(failures))
        for index in range(len(failures) - 1, -1, -1):  # the first failing check wins
            code = np.where(failures[index][0], index, code)
        stages[channel] = np.array([stage for _, stage, _ in failures] + [_ELIGIBLE])[code]
        reasons[channel] = np.array([reason for _, _, reason in failures] + [None], dtype=object)[
            code
        ]
    return stages, reasons, quiet_waits


def _count(number: int | None, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _within_days(days: float) -> str:
    """`within the last day`, `within the last 2 days` (not "under 1 days ago")."""
    return "within the last day" if days == 1 else f"within the last {days:g} days"


def expected_order_value(frame: pd.DataFrame | _Inputs, settings: PolicySettings) -> np.ndarray:
    """`average_order_value` where known and positive, else `settings.default_order_value` (a
    config value, not a statistic of the frame, so online and batch answers agree)."""
    value = (frame if isinstance(frame, _Inputs) else _Inputs(frame, ["average_order_value"]))(
        "average_order_value"
    )
    return np.where(np.isfinite(value) & (value > 0), value, settings.default_order_value)


def action_values(
    frame: pd.DataFrame | _Inputs, actions: list[Action], settings: PolicySettings
) -> np.ndarray:
    """Expected incremental value per customer (rows) and action (columns):
    (P(convert | action) - P(convert | none)) x order value - touch cost - depth x order value x
    P(convert | action). NaN where a probability is missing."""
    read = (
        frame if isinstance(frame, _Inputs) else _Inputs(frame, _policy_columns(settings, actions))
    )
    if not actions:
        return np.empty((read.length, 0))
    order_value = expected_order_value(read, settings)[:, None]
    baseline = read(BASELINE_COLUMN)[:, None]
    converted = np.column_stack([read(a.column) for a in actions])
    cost = np.array([settings.channel_costs[a.channel] for a in actions])[None, :]
    depth = np.array([a.depth for a in actions])[None, :]
    return (converted - baseline) * order_value - cost - depth * order_value * converted


def explained_touches(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The channel and offer the propensity model's reasons are computed for, per customer: those of the
    policy's action (`sms:20pct` -> sms, 20pct), so that an SMS recommendation is explained by SMS
    facts; a plain e-mail for no contact (why a contact would work)."""
    names = np.asarray(actions, dtype=object)
    contact = names != NO_CONTACT
    channels = np.where(contact, [str(a).partition(":")[0] for a in names], "email").astype(object)
    offers = np.array([str(a).partition(":")[2] or NO_CONTACT for a in names], dtype=object)
    return channels, np.where(contact, offers, NO_CONTACT).astype(object)


def holdout_mask(customer_ids: Iterable, campaign_id: str, share: float) -> np.ndarray:
    """True for customers in the campaign's holdout: the first 8 bytes of SHA-256 of
    "<campaign_id>:<customer_id>" (UTF-8), as an unsigned big-endian integer, below share x 2^64.
    Deterministic across processes and machines (reproducible in SQL for lift reports)."""
    ids = list(customer_ids)
    if share <= 0:
        return np.zeros(len(ids), dtype=bool)
    threshold = int(share * 2**64)
    prefix = f"{campaign_id}:"
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha256(f"{prefix}{c}".encode()).digest()[:8], "big") < threshold
            for c in ids
        ),
        dtype=bool,
        count=len(ids),
    )


def recommend(
    frame: pd.DataFrame,
    settings: PolicySettings,
    *,
    campaign_id: str | None = None,
    allowed_channels: Iterable[str] | None = None,
    alternatives: bool = False,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The policy's answer for every row of `frame` (same order and index), as a DataFrame: the
    columns of :func:`decide`. See docs/policy.md."""
    return _frame(
        decide(frame, settings, campaign_id=campaign_id, allowed_channels=allowed_channels,
               alternatives=alternatives, now=now),
        frame.index,
    )


def decide(
    frame: pd.DataFrame | Mapping[str, np.ndarray],
    settings: PolicySettings,
    *,
    campaign_id: str | None = None,
    allowed_channels: Iterable[str] | None = None,
    alternatives: bool = False,
    now: pd.Timestamp | None = None,
) -> dict[str, np.ndarray]:
    """The policy's answer for every row of `frame` (a DataFrame, or numpy columns by name), as
    columns in row order. See docs/policy.md.

    `campaign_id` salts the holdout hash (default `settings.default_campaign_id`);
    `allowed_channels` restricts channels for this request (None: every configured one);
    `alternatives` builds the ranked per-customer list (a small Python loop per row, so batch jobs
    leave it off); `now` lets a fresh `last_order_epoch_seconds` (pushed online) shorten
    `days_since_last_order`."""
    if "customer_id" not in frame:
        raise ValueError("the policy needs a `customer_id` column")
    is_frame = isinstance(frame, pd.DataFrame)
    n = len(frame) if is_frame else _rows(frame)
    customer_ids = frame["customer_id"].to_numpy() if is_frame else np.asarray(frame["customer_id"], dtype=object)
    channels = list(settings.channels)
    actions = candidate_actions(frame.columns if is_frame else frame.keys(), settings)
    read = _Inputs(frame, _policy_columns(settings, actions))
    values = action_values(read, actions, settings)
    stages, reasons, quiet_waits = _eligibility_stages(read, settings, allowed_channels)
    channel_ok = {c: stages[c] == _ELIGIBLE for c in channels}
    action_ok = (
        np.column_stack([channel_ok[a.channel] for a in actions])
        if actions
        else np.zeros((n, 0), dtype=bool)
    )

    # --- next-best action: the eligible argmax, `none` unless it beats not contacting ---
    usable = action_ok & np.isfinite(values)
    masked = np.where(usable, values, -np.inf)
    if actions:
        best = masked.argmax(axis=1)
        best_value = masked[np.arange(n), best]
    else:
        best, best_value = np.zeros(n, dtype=int), np.full(n, -np.inf)
    contact = best_value > settings.min_expected_value
    names = np.array([a.name for a in actions] or [NO_CONTACT], dtype=object)
    action_channels = np.array([a.channel for a in actions] or [NO_CONTACT], dtype=object)
    action_offers = np.array([a.offer for a in actions] or [NO_CONTACT], dtype=object)
    policy_action = np.where(contact, names[best], NO_CONTACT).astype(object)
    policy_value = np.where(contact, best_value, 0.0)
    no_contact = _no_contact_reasons(
        actions, stages, reasons, action_ok, values, best, best_value, contact, names, channels
    )

    # --- holdout ---
    campaign = campaign_id if campaign_id is not None else settings.default_campaign_id
    holdout = holdout_mask(customer_ids.tolist(), campaign, settings.holdout_share)
    treated = contact & ~holdout
    next_channel = np.where(treated, action_channels[best], None).astype(object)
    offers = action_offers[best]
    next_offer = np.where(treated & (offers != NO_CONTACT), offers, None).astype(object)
    no_contact_reason = np.where(holdout & contact, HOLDOUT_REASON, no_contact).astype(object)

    win = _win_back(read, settings, actions, values, stages, quiet_waits, channels, now)
    win_back = win["win_back"] & ~holdout

    return {
        "customer_id": customer_ids,
        "next_best_action": np.where(treated, policy_action, NO_CONTACT).astype(object),
        "next_best_channel": next_channel,
        "next_best_offer": next_offer,
        "expected_value": np.where(treated, policy_value, 0.0),
        "policy_action": policy_action,
        "policy_expected_value": policy_value,
        "holdout": holdout,
        "no_contact_reason": np.where(treated, None, no_contact_reason).astype(object),
        "win_back": win_back,
        "win_back_action": np.where(win_back, win["action"], None).astype(object),
        "win_back_channel": np.where(win_back, win["channel"], None).astype(object),
        "win_back_offer": np.where(win_back, win["offer"], None).astype(object),
        "win_back_timing": np.where(win_back | (win["waiting"] & ~holdout), win["timing"], None).astype(object),
        "win_back_value": win["value"],
        "win_back_reason": np.where(
            holdout & (win["win_back"] | win["waiting"]), HOLDOUT_REASON, win["reason"]
        ).astype(object),
        "policy_win_back_action": np.where(win["win_back"], win["action"], None).astype(object),
        "alternatives": (
            _alternatives(actions, values, action_ok, reasons, settings)
            if alternatives
            else np.full(n, None, dtype=object)
        ),
        **{f"eligible_{c}": channel_ok[c] for c in channels},
        **{f"ineligible_reason_{c}": reasons[c] for c in channels},
    }


def _frame(columns: dict[str, np.ndarray], index: pd.Index) -> pd.DataFrame:
    """What `pd.DataFrame(columns, index=index)` gives for 1-D numpy arrays, built as one block per
    dtype: pandas' constructor infers every object column on its own (~0.3 ms for this output, a
    fifth of a one-customer answer). `make_block` is pandas' pseudo-public API for this (as in
    features/feature_store.py)."""
    groups: dict[np.dtype, list[int]] = {}
    arrays = list(columns.values())
    for position, array in enumerate(arrays):
        groups.setdefault(array.dtype, []).append(position)
    blocks = [
        make_block(
            np.vstack([arrays[p] for p in positions])
            if arrays[0].size
            else np.empty((len(positions), 0), dtype=dtype),
            placement=positions,
        )
        for dtype, positions in groups.items()
    ]
    manager = BlockManager(blocks, [pd.Index(list(columns)), index])
    return pd.DataFrame._from_mgr(manager, manager.axes)


def _no_contact_reasons(
    actions, stages, reasons, action_ok, values, best, best_value, contact, names, channels
) -> np.ndarray:
    """Why the policy says `none`, per row (None where it contacts)."""
    if not actions:
        return np.where(contact, None, NO_PROPENSITY_REASON).astype(object)
    scored = [
        c for c in channels if any(a.channel == c for a in actions)
    ]  # channels the model can value
    furthest = np.max(np.column_stack([stages[c] for c in scored]), axis=1)
    any_eligible = action_ok.any(axis=1)
    any_finite = (action_ok & np.isfinite(values)).any(axis=1)
    reason = np.select(
        [
            contact,
            furthest == _ALLOWED,
            furthest <= _REACH,
            furthest == _CAP,
            furthest == _QUIET,
            any_eligible & ~any_finite,
        ],
        [
            None,
            NO_CHANNEL_ALLOWED_REASON,
            UNREACHABLE_REASON,
            CAP_REASON,
            QUIET_REASON,
            NO_SCORE_REASON,
        ],
        default=NOT_WORTH_REASON,
    ).astype(object)
    blocked = ~contact & ~any_eligible & (furthest > _ALLOWED)
    if blocked.any():  # which check each channel failed, only for the rows that need it
        parts = zip(*(reasons[c][blocked] for c in scored), strict=True)
        reason[blocked] = [
            f"{head} ({'; '.join(f'{c}: {r}' for c, r in zip(scored, row, strict=True) if r)})"
            for head, row in zip(reason[blocked], parts, strict=True)
        ]
    worthless = ~contact & any_finite
    if worthless.any():
        reason[worthless] = [
            f"{NOT_WORTH_REASON} (best: {name}, expected value {value:.4f})"
            for name, value in zip(names[best[worthless]], best_value[worthless], strict=True)
        ]
    return reason


def _win_back(
    read, settings, actions, values, stages, quiet_waits, channels, now
) -> dict[str, np.ndarray]:
    """Win-back decision per row: candidates (customers who have ordered, at high churn risk or lapsed),
    channel (best eligible by uplift; cheapest without a propensity model), offer tier, timing, value
    saved against cost. A customer with no channel open today but one held only by a quiet period is
    not a win-back today (`win_back` false: nothing may go out) but `waiting`, with the timing and a
    reason naming the action for when the period ends, when the nightly scoring makes it today's."""
    n = read.length
    rows = np.arange(n)
    churn = read("churn_probability")
    clv = read("clv")
    net_365 = read("net_revenue_365d")
    since_order = read("days_since_last_order")
    if now is not None and "last_order_epoch_seconds" in read.columns:
        fresh = (utc_timestamp(now).timestamp() - read("last_order_epoch_seconds")) / 86400.0
        since_order = np.fmin(since_order, np.where(fresh >= 0, fresh, np.nan))
    with np.errstate(invalid="ignore"):
        lapsed = since_order > settings.win_back_lapse_days
        at_risk = churn >= settings.win_back_churn_threshold
    # Win-back is for customers who bought: the churn model knows only customers with a recent order,
    # and someone who never ordered has nothing to be won back to.
    candidate = (lapsed | at_risk) & np.isfinite(since_order)
    risk = np.where(np.isnan(churn), np.where(lapsed, 1.0, np.nan), churn)
    value_at_stake = np.where(np.isfinite(clv), clv, np.where(np.isfinite(net_365), net_365, 0.0))
    saved = (
        np.where(np.isnan(risk), 0.0, risk)
        * np.maximum(value_at_stake, 0.0)
        * settings.win_back_save_rate
    )
    with np.errstate(invalid="ignore"):
        loyal = (clv >= settings.loyal_min_clv) | (net_365 >= settings.loyal_min_net_revenue_365d)
    order_value = expected_order_value(read, settings)
    converted = np.column_stack([read(a.column) for a in actions]) if actions else np.empty((n, 0))

    # Channel: the eligible one with the highest uplift of its plain action (its best action when
    # the plain one is not scored); unknown uplift ranks below known, cheapest first.
    usable = [c for c in channels if any(a.channel == c for a in actions)] if actions else channels
    baseline = read(BASELINE_COLUMN)
    scores = []
    for channel in usable:
        own = [a for a in actions if a.channel == channel]
        plain = [a for a in own if a.offer == NO_CONTACT]
        chosen = plain or own
        uplift = (
            np.fmax.reduce([read(a.column) for a in chosen]) - baseline
            if chosen
            else np.full(n, np.nan)
        )
        score = np.where(np.isfinite(uplift), uplift, -1e9 - settings.channel_costs[channel])
        scores.append(score)
    wait = np.zeros(n)
    if usable:
        score_matrix = np.column_stack(scores)
        open_today = np.column_stack([stages[c] == _ELIGIBLE for c in usable])
        matrix = np.where(open_today, score_matrix, -np.inf)
        none_today = ~open_today.any(axis=1)
        if none_today.any():  # those with no channel today: one held only by its quiet period, if any
            open_later = np.column_stack([stages[c] == _QUIET for c in usable])
            matrix[none_today] = np.where(open_later, score_matrix, -np.inf)[none_today]
        pick = matrix.argmax(axis=1)
        has_channel = np.isfinite(matrix[rows, pick])
        if none_today.any():
            waits = np.column_stack([quiet_waits[c] for c in usable])
            wait = np.where(has_channel & none_today, waits[rows, pick], 0.0)
    else:
        pick, has_channel = np.zeros(n, dtype=int), np.zeros(n, dtype=bool)

    channel_out = np.full(n, None, dtype=object)
    offer_out = np.full(n, NO_CONTACT, dtype=object)
    action_out = np.full(n, None, dtype=object)
    cost = np.full(n, np.nan)
    for index, channel in enumerate(usable):
        here = has_channel & (pick == index)
        if not here.any():
            continue
        channel_out[here] = channel
        cost[here] = settings.channel_costs[channel]
        action_out[here] = channel
        positions = [i for i, a in enumerate(actions) if a.channel == channel]
        offered = [i for i in positions if actions[i].depth > 0]
        for subset, rule in (
            (offered, here & lapsed & ~loyal),
            (positions, here & ~lapsed & ~loyal),
        ):
            if not subset or not rule.any():
                continue
            sub = values[:, subset]
            finite = np.isfinite(sub).any(axis=1)
            take = rule & finite
            if not take.any():
                continue
            best = np.array(subset)[
                np.where(np.isfinite(sub[take]), sub[take], -np.inf).argmax(axis=1)
            ]
            action_out[take] = [actions[i].name for i in best]
            offer_out[take] = [actions[i].offer for i in best]
            depth = np.array([actions[i].depth for i in best])
            probability = converted[take, best]
            probability = np.where(np.isnan(probability), 0.0, probability)
            cost[take] = settings.channel_costs[channel] + depth * order_value[take] * probability
    win = candidate & has_channel & (saved > cost)
    reason = np.select(
        [~np.isfinite(since_order), ~candidate & np.isnan(churn), ~candidate, ~has_channel, ~win,
         lapsed & at_risk, lapsed],
        [
            NEVER_ORDERED_REASON,
            NO_RISK_KNOWN_REASON,
            NOT_AT_RISK_REASON,
            "no eligible channel",
            NOT_SAVED_REASON,
            "lapsed and high churn risk",
            "lapsed",
        ],
        default="high churn risk",
    ).astype(object)
    offer_out = np.where(offer_out == NO_CONTACT, None, offer_out).astype(object)
    waiting = win & (wait > 0)
    timing = _timing(np.where(waiting, wait, 0.0))
    if waiting.any():  # not a win-back today: the reason says what goes out when
        reason[waiting] = [f"{why}; win back with {action} {when}, once its quiet period ends"
                           for why, action, when in zip(reason[waiting], action_out[waiting], timing[waiting],
                                                        strict=True)]
    return {
        "win_back": win & ~waiting,
        "waiting": waiting,
        "action": action_out,
        "channel": channel_out,
        "offer": offer_out,
        "value": np.where(has_channel & candidate, saved - cost, np.nan),
        "reason": reason,
        "timing": timing,
    }


def _timing(wait_days: np.ndarray) -> np.ndarray:
    """`today`, or `in N days` (whole days, rounded up) when a quiet period must end first."""
    days = np.ceil(np.where(np.isfinite(wait_days), wait_days, 0.0)).astype(int)
    out = np.full(len(days), WIN_BACK_TIMING, dtype=object)
    later = days > 0
    if later.any():
        out[later] = [f"in {d} day" + ("" if d == 1 else "s") for d in days[later].tolist()]
    return out


def _alternatives(actions, values, action_ok, reasons, settings) -> np.ndarray:
    """Per row, every candidate action (and `none`) as {action, expected_value, eligible, reason},
    eligible ones first, then by expected value (unknown last)."""
    n = values.shape[0]
    names = [NO_CONTACT, *(a.name for a in actions)]
    full_values = np.column_stack([np.zeros(n), values]) if actions else np.zeros((n, 1))
    eligible = (
        np.column_stack([np.ones(n, dtype=bool), action_ok])
        if actions
        else np.ones((n, 1), dtype=bool)
    )
    key_value = np.where(np.isfinite(full_values), full_values, -np.inf)
    order = _rank(eligible, key_value)
    channel_reason = [None, *(reasons[a.channel] for a in actions)]
    out = np.empty(n, dtype=object)
    threshold = settings.min_expected_value
    # Python lists and math.isfinite: numpy scalars cost a microsecond per test in this loop
    value_rows, eligible_rows = full_values.tolist(), eligible.tolist()
    for row, ranked in enumerate(order.tolist()):
        items = []
        for k in ranked:
            value = value_rows[row][k]
            ok = eligible_rows[row][k]
            finite = math.isfinite(value)
            if k == 0:
                why = "no contact"
            elif not ok:
                why = channel_reason[k][row]
            elif not finite:
                why = NO_SCORE_REASON
            elif value <= threshold:
                why = NOT_WORTH_REASON
            else:
                why = None
            items.append({"action": names[k], "expected_value": value if finite else None, "eligible": ok,
                          "reason": why})
        out[row] = items
    return out


def _rank(eligible: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Column order per row: eligible first, then by value descending (stable)."""
    key = np.where(eligible, 0.0, 1.0)
    order = np.argsort(-value, axis=1, kind="stable")
    key_sorted = np.take_along_axis(key, order, axis=1)
    second = np.argsort(key_sorted, axis=1, kind="stable")
    return np.take_along_axis(order, second, axis=1)
