"""`cdp report lift`: what a campaign's contacts changed, measured against its holdout.

The holdout is the policy's deterministic hash of (customer, campaign): a random share of the customers
the policy chose, held back. The comparison is intention to treat over one audience: every customer
the policy chose for the kind of decision the campaign acted on (next-best action, or win-back) who is
not held out, sent or not, against the held-out customers of the same audience. The hash makes the two
groups alike before the campaign whoever was then sent; comparing only those sent with the whole
holdout would not be (a campaign sent to the win-back list only compares win-back customers with
everyone). Both groups' orders in the window after the decision are compared. See docs/policy.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

Z_95 = 1.959963984540054
MIN_GROUP_CUSTOMERS = 30
"""Below this many customers in either group (or sent in the treated group) the report is flagged
`too_little_data`: the intervals are honest but too wide to act on."""
MIN_SENT_SHARE = 0.8
"""Below this share of the treated group sent, the intention-to-treat lift is diluted: a warning."""
WIN_BACK_SENDS = 0.9
"""`audience="auto"` reads a campaign as a win-back one when at least this share of its sends (outside the
holdout) went to customers on the win-back list."""
AUDIENCES = ("auto", "next_best_action", "win_back")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion: inside [0, 1], not empty at 0 or n successes."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def newcombe_interval(successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for p_a - p_b, from the two Wilson intervals:
    good coverage at small counts and at 0% or 100%, where the normal approximation gives zero width."""
    p_a, p_b = successes_a / n_a, successes_b / n_b
    low_a, high_a = wilson_interval(successes_a, n_a, z)
    low_b, high_b = wilson_interval(successes_b, n_b, z)
    difference = p_a - p_b
    return (float(difference - np.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)),
            float(difference + np.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)))


def lift_report_path(reports: Path, campaign_id: str) -> Path:
    """Where `cdp report lift` writes a campaign's report: `<reports>/lift-<id>.json`, the id
    percent-encoded (`2026/spring` -> `lift-2026%2Fspring.json`, `:` -> `%3A`) so that any id is one file
    name inside `reports`, distinct ids stay distinct, and the common ones (letters, digits, `_-.`) read
    as they are. An id whose encoding is too long for a file name is cut and ends in a hash of it."""
    name = quote(campaign_id, safe="")
    if len(name) > 180:
        name = f"{name[:160]}~{hashlib.sha256(campaign_id.encode()).hexdigest()[:16]}"
    return reports / f"lift-{name}.json"


def _join(result: dict, note: str) -> None:
    result["warning"] = f"{result['warning']}; {note}" if "warning" in result else note


def _revenue_difference(treated: np.ndarray, holdout: np.ndarray) -> dict:
    """Welch's normal interval, or none when a group's revenue does not vary (no orders, typically):
    the normal interval would then take that group's mean as exactly known, down to [0, 0] with no
    orders at all."""
    difference = float(treated.mean() - holdout.mean())
    flat = [name for name, values in (("treated", treated), ("holdout", holdout)) if np.ptp(values) == 0]
    if flat:
        return {"estimate": difference, "ci95": None,
                "not_estimable": (f"the revenue of the {' and '.join(flat)} {'groups' if len(flat) > 1 else 'group'} does not "
                                  "vary (no orders in the window, or all alike): its spread is unknown, so no interval")}
    error = np.sqrt(treated.var(ddof=1) / len(treated) + holdout.var(ddof=1) / len(holdout))
    return {"estimate": difference, "ci95": [float(difference - Z_95 * error), float(difference + Z_95 * error)]}


def measure_lift(groups: pd.DataFrame, orders: pd.DataFrame, start: pd.Timestamp, window_days: int) -> dict:
    """groups: customer_id, group (treated | holdout), optionally sent (the campaign reached them; without
    it every treated customer counts as sent, no held-out one). orders: customer_id, ordered_at, amount.
    Conversion = any order in [start, start + window); revenue = their amount. The treated-minus-holdout
    conversion difference comes with Newcombe's hybrid score interval, revenue per customer with
    Welch's (none when a group's revenue does not vary). When part of the treated group was not sent,
    `per_customer_sent` divides both by the share sent (minus the holdout's, if it was sent any)."""
    end = start + pd.Timedelta(days=window_days)
    in_window = orders[(orders["ordered_at"] >= start) & (orders["ordered_at"] < end)]
    revenue = in_window.groupby("customer_id")["amount"].sum()
    frame = groups.assign(revenue=groups["customer_id"].map(revenue).fillna(0.0))
    frame["converted"] = (frame["revenue"] > 0).astype(float)
    if "sent" not in frame:
        frame["sent"] = frame["group"] == "treated"
    frame["sent"] = frame["sent"].astype(bool)
    result: dict = {"window_days": window_days, "start": start.isoformat()}
    for key in ("audience", "audience_reason"):
        if key in groups.attrs:
            result[key] = groups.attrs[key]
    last_order = orders["ordered_at"].max() if len(orders) else None
    if last_order is None or last_order < end - pd.Timedelta(days=1):
        seen = "none" if last_order is None else f"{last_order.date()}"
        _join(result, f"the window ends {end.date()} but the lake's last order is {seen}: orders not yet ingested count "
                      "as no conversion, so the figures are incomplete")
    parts = {name: frame[frame["group"] == name] for name in ("treated", "holdout")}
    for name, part in parts.items():
        result[name] = {"customers": len(part), "sent": int(part["sent"].sum()),
                        "conversion_rate": float(part["converted"].mean()) if len(part) else None,
                        "revenue_per_customer": float(part["revenue"].mean()) if len(part) else None}
    treated, holdout = result["treated"], result["holdout"]
    sent_share = treated["sent"] / treated["customers"] if treated["customers"] else None
    result["sent_share"] = sent_share
    if holdout["sent"]:
        _join(result, f"{holdout['sent']} of {holdout['customers']} holdout customers were sent the campaign anyway: "
                      "the holdout is contaminated and the lift understated; keep holdout customers out of the sends")
    holdout_share = holdout["sent"] / holdout["customers"] if holdout["customers"] else 0.0
    if sent_share is not None and sent_share < MIN_SENT_SHARE:
        scaling = ("per_customer_sent scales it to those sent" if sent_share > holdout_share else
                   f"it cannot be scaled to those sent (no per_customer_sent), as the holdout was sent as large a share "
                   f"({holdout_share:.1%})")
        _join(result, f"only {treated['sent']:,} of the {treated['customers']:,} treated customers ({sent_share:.1%}) were "
                      "sent the campaign: the lift is that of the whole audience (intention to treat), diluted by "
                      f"those not sent; {scaling}")
    for key, note in (("sent_outside_audience", "customer(s) outside the holdout sent the campaign are not in the "
                                                "audience compared (the policy did not choose them for it) and are left out"),
                      ("merged_since_decision", "scored customers were merged into one another since the decision and are "
                                                "left out of both groups (one person may have been held out under one id "
                                                "and treated under another)")):
        count = groups.attrs.get(key, 0)
        if count:
            result[key] = count
            _join(result, f"{count} {note}")
    if groups.attrs.get("audience_note"):
        _join(result, groups.attrs["audience_note"])
    if min(treated["customers"], holdout["customers"], treated["sent"]) < 2:
        result["error"] = (f"treated and holdout need at least two customers each, and at least two treated customers "
                           f"sent the campaign: {treated['customers']:,} treated ({result.get('audience', 'chosen')} "
                           f"audience, not held out), {treated['sent']:,} of them sent the campaign at or after "
                           f"{start.date()}; {holdout['customers']:,} held out")
        return result
    smallest = min(treated["customers"], holdout["customers"], treated["sent"])
    result["too_little_data"] = smallest < MIN_GROUP_CUSTOMERS
    if result["too_little_data"]:
        _join(result, f"too little data: {treated['customers']:,} treated ({treated['sent']:,} sent) and {holdout['customers']:,} "
                      f"held-out customers, fewer than {MIN_GROUP_CUSTOMERS} in a group: the intervals are wide and the "
                      "estimates not to be acted on")
    converted = {name: int(part["converted"].sum()) for name, part in parts.items()}
    low, high = newcombe_interval(converted["treated"], treated["customers"], converted["holdout"], holdout["customers"])
    result["incremental_conversion_rate"] = {"estimate": float(treated["conversion_rate"] - holdout["conversion_rate"]),
                                             "ci95": [low, high]}
    result["incremental_revenue_per_customer"] = _revenue_difference(parts["treated"]["revenue"].to_numpy(),
                                                                     parts["holdout"]["revenue"].to_numpy())
    reached = sent_share - holdout_share
    if sent_share < 1 and reached > 0:
        # Wald (Bloom) estimator: a customer not sent is not changed by the campaign, so the lift per
        # customer sent is the audience's divided by the share sent; the share is taken as known.
        scaled = {}
        for name in ("incremental_conversion_rate", "incremental_revenue_per_customer"):
            whole = result[name]
            scaled[name] = {**whole, "estimate": whole["estimate"] / reached,
                            "ci95": None if whole["ci95"] is None else [bound / reached for bound in whole["ci95"]]}
        bounds = scaled["incremental_conversion_rate"]["ci95"]
        bounds[:] = [max(-1.0, bounds[0]), min(1.0, bounds[1])]
        result["per_customer_sent"] = scaled
    return result


def campaign_groups(scores: pd.DataFrame, touches: pd.DataFrame, campaign_id: str, decided_at: pd.Timestamp,
                    merged_into: dict[str, str] | None = None, audience: str = "auto") -> pd.DataFrame:
    """The audience's customers: group treated (not held out) or holdout, and `sent` (a touch of the
    campaign at or after the decision: one before it was not the policy's doing, and a `none` touch is a
    control assignment, not a send). Everyone in the audience counts, sent or not (intention to treat).

    `audience`: `next_best_action` (the policy chose a contact: `policy_action` not `none`), `win_back`
    (the policy chose a win-back: `policy_win_back_action` set, which the scores must have; the holdout
    clears `win_back`) or `auto`: win-back when at least `WIN_BACK_SENDS` of the sends outside the
    holdout went to the win-back list and the scores say which held-out customers were on it, else
    next-best action. attrs: `audience`, `audience_reason`, `audience_note` (a warning: a win-back
    campaign measured on the next-best-action audience), `sent_outside_audience`.

    Customers merged since the decision (`merged_into`: retired id -> survivor) are read as their
    survivor, whose id the touches and orders now carry; a person who was scored as several customers
    is left out of both groups (one of them may have been held out and another treated), counted in
    `attrs["merged_since_decision"]`."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {', '.join(AUDIENCES)}, not {audience!r}")
    survivors = merged_into or {}  # already followed through later merges (identity_state.json)
    scores = scores.assign(customer_id=scores["customer_id"].map(lambda c: survivors.get(c, c)))
    repeated = scores["customer_id"].duplicated(keep=False)
    scores = scores[~repeated]
    campaign = touches[(touches["campaign_id"] == campaign_id) & (touches["sent_at"] >= decided_at)]
    if "channel" in campaign:
        campaign = campaign[campaign["channel"].fillna("none").astype(str).str.lower() != "none"]
    held = scores["holdout"].fillna(False).astype(bool)
    sent = scores["customer_id"].isin(set(campaign["customer_id"]))
    next_best = scores["policy_action"].fillna("none") != "none"
    knows_win_back = "policy_win_back_action" in scores
    on_win_back_list = (scores["win_back"].fillna(False).astype(bool) if "win_back" in scores
                        else pd.Series(False, index=scores.index)) & ~held
    sends = int((sent & ~held).sum())
    to_win_back = int((sent & on_win_back_list).sum())
    note = ""
    if audience == "win_back" and not knows_win_back:
        raise ValueError("these scores have no policy_win_back_action column: the held-out win-back customers "
                         "cannot be told apart, so the win-back audience cannot be measured")
    if audience == "auto":
        looks_win_back = sends > 0 and to_win_back >= WIN_BACK_SENDS * sends
        audience = "win_back" if looks_win_back and knows_win_back else "next_best_action"
        reason = (f"{to_win_back:,} of the {sends:,} customers sent outside the holdout were on the win-back list"
                  if looks_win_back else
                  f"{to_win_back:,} of the {sends:,} customers sent outside the holdout were on the win-back list "
                  f"(win-back below {WIN_BACK_SENDS:.0%})")
        if looks_win_back and not knows_win_back:
            note = ("the sends went to the win-back list, but these scores have no policy_win_back_action, so the "
                    "held-out win-back customers cannot be told apart: measured on every customer the policy chose a "
                    "next-best action for (sound, but diluted)")
    else:
        reason = "asked for"
    in_audience = scores["policy_win_back_action"].notna() if audience == "win_back" else next_best
    chosen = scores[in_audience]
    groups = pd.DataFrame({"customer_id": chosen["customer_id"].to_numpy(),
                           "group": np.where(held[in_audience], "holdout", "treated"),
                           "sent": sent[in_audience].to_numpy()})
    groups.attrs.update(merged_since_decision=int(repeated.sum()), audience=audience, audience_reason=reason,
                        audience_note=note, sent_outside_audience=int((sent & ~held & ~in_audience).sum()))
    return groups
