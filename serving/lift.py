"""`cdp report lift`: what a campaign's contacts changed, measured against its holdout.

The holdout is the policy's deterministic hash of (customer, campaign): customers the policy would have
contacted but held back. Treated customers are those it recommended contacting who then received a
touch of the campaign. Both groups' orders in the window after the decision are compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z_95 = 1.959963984540054


def measure_lift(groups: pd.DataFrame, orders: pd.DataFrame, start: pd.Timestamp, window_days: int) -> dict:
    """groups: customer_id, group (treated | holdout). orders: customer_id, ordered_at, amount.
    Conversion = any order in [start, start + window); revenue = their amount. Differences come
    with normal-approximation 95% intervals (Welch for revenue)."""
    end = start + pd.Timedelta(days=window_days)
    in_window = orders[(orders["ordered_at"] >= start) & (orders["ordered_at"] < end)]
    revenue = in_window.groupby("customer_id")["amount"].sum()
    frame = groups.assign(revenue=groups["customer_id"].map(revenue).fillna(0.0))
    frame["converted"] = (frame["revenue"] > 0).astype(float)
    result: dict = {"window_days": window_days, "start": start.isoformat()}
    last_order = orders["ordered_at"].max() if len(orders) else None
    if last_order is None or last_order < end - pd.Timedelta(days=1):
        seen = "none" if last_order is None else f"{last_order.date()}"
        result["warning"] = (f"the window ends {end.date()} but the lake's last order is {seen}: orders not yet "
                             "ingested count as no conversion, so the figures are incomplete")
    parts = {name: frame[frame["group"] == name] for name in ("treated", "holdout")}
    for name, part in parts.items():
        result[name] = {"customers": len(part), "conversion_rate": float(part["converted"].mean()) if len(part) else None,
                        "revenue_per_customer": float(part["revenue"].mean()) if len(part) else None}
    if "contacted" in frame:
        contacted = int(parts["holdout"]["contacted"].sum())
        result["holdout"]["contacted"] = contacted
        if contacted:
            leak = (f"{contacted} of {len(parts['holdout'])} holdout customers were sent the campaign anyway: the "
                    "holdout is contaminated and the lift understated; keep holdout customers out of the sends")
            result["warning"] = f"{result['warning']}; {leak}" if "warning" in result else leak
    merged = groups.attrs.get("merged_since_decision", 0)
    if merged:
        result["merged_since_decision"] = merged
        note = (f"{merged} scored customers were merged into one another since the decision and are left out of "
                "both groups (one person may have been held out under one id and treated under another)")
        result["warning"] = f"{result['warning']}; {note}" if "warning" in result else note
    if min(len(p) for p in parts.values()) < 2:
        result["error"] = "treated and holdout need at least two customers each"
        return result
    for metric in ("converted", "revenue"):
        treated, holdout = parts["treated"][metric].to_numpy(), parts["holdout"][metric].to_numpy()
        difference = treated.mean() - holdout.mean()
        error = np.sqrt(treated.var(ddof=1) / len(treated) + holdout.var(ddof=1) / len(holdout))
        name = "incremental_conversion_rate" if metric == "converted" else "incremental_revenue_per_customer"
        result[name] = {"estimate": float(difference), "ci95": [float(difference - Z_95 * error), float(difference + Z_95 * error)]}
    return result


def campaign_groups(scores: pd.DataFrame, touches: pd.DataFrame, campaign_id: str, decided_at: pd.Timestamp,
                    merged_into: dict[str, str] | None = None) -> pd.DataFrame:
    """Treated: recommended a contact, not held out, and sent the campaign after the decision (a touch
    before it was not the policy's doing; a `none` touch is a control assignment, not a send). Holdout:
    recommended a contact but held out; `contacted` says which of them were sent the campaign anyway.

    Customers merged since the decision (`merged_into`: retired id -> survivor) are read as their
    survivor, whose id the touches and orders now carry; a person who was scored as several customers
    is left out of both groups (one of them may have been held out and another treated), counted in
    `attrs["merged_since_decision"]`."""
    survivors = merged_into or {}  # already followed through later merges (identity_state.json)
    scores = scores.assign(customer_id=scores["customer_id"].map(lambda c: survivors.get(c, c)))
    repeated = scores["customer_id"].duplicated(keep=False)
    scores = scores[~repeated]
    wanted = scores[scores["policy_action"].fillna("none") != "none"]
    campaign = touches[(touches["campaign_id"] == campaign_id) & (touches["sent_at"] >= decided_at)]
    if "channel" in campaign:
        campaign = campaign[campaign["channel"].fillna("none").astype(str).str.lower() != "none"]
    sent = set(campaign["customer_id"])
    treated = wanted[~wanted["holdout"].astype(bool) & wanted["customer_id"].isin(sent)]
    holdout = wanted[wanted["holdout"].astype(bool)]
    groups = pd.concat([treated[["customer_id"]].assign(group="treated", contacted=True),
                        holdout[["customer_id"]].assign(group="holdout", contacted=holdout["customer_id"].isin(sent))],
                       ignore_index=True)
    groups.attrs["merged_since_decision"] = int(repeated.sum())
    return groups

