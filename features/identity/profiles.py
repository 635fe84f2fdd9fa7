"""Golden profiles: one record per customer, each attribute chosen by a configurable rule.

Rules: `most_recent` (latest non-null by `updated_at`), `most_frequent` (ties go to the most
recent), `source_priority` (first non-null in the configured order of systems). Every e-mail and
phone a customer has is kept as a list, standardized as they are matched (e-mails as the provider
reads them, phones in E.164); the profile counts its records and carries the lowest match probability
among the links that join them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

SurvivorshipRule = Literal["most_recent", "most_frequent", "source_priority"]

DEFAULT_RULES: dict[str, SurvivorshipRule] = {
    "first_name": "most_frequent",
    "last_name": "most_frequent",
    "email": "most_recent",
    "phone": "most_recent",
    "address_line": "most_recent",
    "city": "most_recent",
    "postcode": "most_recent",
    "region": "most_recent",
    "country": "most_frequent",
    "date_of_birth": "most_frequent",
}
CUSTOM_ATTRIBUTE_RULE: SurvivorshipRule = "source_priority"


def _pick(records: pd.DataFrame, column: str, rule: SurvivorshipRule, source_rank: pd.Series) -> pd.Series:
    present = records.loc[records[column].notna(), ["customer_id", column, "updated_at", "source"]]
    if present.empty:
        return pd.Series(dtype=object, name=column)
    recency = pd.to_datetime(present["updated_at"], utc=True).fillna(pd.Timestamp.min.tz_localize("UTC"))
    if rule == "most_recent":
        ordered = present.assign(_r=recency).sort_values(["customer_id", "_r"], ascending=[True, False])
    elif rule == "source_priority":
        ordered = present.assign(_p=present["source"].map(source_rank).fillna(len(source_rank)), _r=recency)
        ordered = ordered.sort_values(["customer_id", "_p", "_r"], ascending=[True, True, False])
    elif rule == "most_frequent":
        counted = present.assign(_r=recency, _v=present[column].astype(str))
        stats = counted.groupby(["customer_id", "_v"], sort=False).agg(
            _n=("_v", "size"), _r=("_r", "max"), value=(column, "first")
        ).reset_index()
        ordered = stats.sort_values(["customer_id", "_n", "_r"], ascending=[True, False, False]).rename(
            columns={"value": column}
        )
    else:
        raise ValueError(f"unknown survivorship rule {rule!r} for {column}")
    return ordered.drop_duplicates("customer_id").set_index("customer_id")[column]


def _distinct_lists(customer_ids: pd.Series, values: pd.Series, customers: pd.Index) -> list[list]:
    """Sorted distinct non-null values per customer, in the order of `customers` (empty if none)."""
    frame = pd.DataFrame({"customer_id": customer_ids.to_numpy(), "value": values.to_numpy()}).dropna()
    frame = frame.drop_duplicates().sort_values(["customer_id", "value"])
    ids = frame["customer_id"].to_numpy()
    boundaries = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    groups = dict(zip(ids[np.r_[0, boundaries]] if len(ids) else [], np.split(frame["value"].to_numpy(), boundaries) if len(ids) else [], strict=True))
    return [groups[c].tolist() if c in groups else [] for c in customers]


def check_survivorship_rules(rules: dict[str, SurvivorshipRule], custom_columns: tuple[str, ...]) -> None:
    """A rule for an attribute that is neither a profile attribute nor a custom column of the records is
    a typo in the configuration: refused, naming the setting."""
    unknown = sorted(set(rules) - set(DEFAULT_RULES) - set(custom_columns))
    if unknown:
        raise ValueError(f"identity.survivorship: unknown attribute {', '.join(map(repr, unknown))} (known: "
                         f"{', '.join([*DEFAULT_RULES, *custom_columns])})")


def build_profiles(
    records: pd.DataFrame,
    standardized: pd.DataFrame,
    identity_map: pd.DataFrame,
    rules: dict[str, SurvivorshipRule] | None = None,
    source_priority: tuple[str, ...] = ("crm", "web", "app", "store"),
    custom_columns: tuple[str, ...] = (),
    weakest_links: pd.Series | None = None,
) -> pd.DataFrame:
    """One golden record per customer_id from its source records. `weakest_links`: per customer of
    several records, the lowest probability among the links that join them (clustering's); without
    it, the lowest of its records' own match probabilities."""
    overrides = rules or {}
    check_survivorship_rules(overrides, custom_columns)
    custom_rules = {column: overrides.get(column, CUSTOM_ATTRIBUTE_RULE) for column in custom_columns}
    rules = {**DEFAULT_RULES, **{k: v for k, v in overrides.items() if k in DEFAULT_RULES}}
    data = records.reset_index(drop=True).copy()
    data["customer_id"] = identity_map["customer_id"].to_numpy()
    data["match_probability"] = identity_map["match_probability"].to_numpy()
    if "phone" in data:  # the golden phone in E.164, as dialled and as in `phones`; the e-mail stays as given
        data["phone"] = standardized["phone"].to_numpy()
    if "updated_at" not in data:
        data["updated_at"] = pd.NaT
    source_rank = pd.Series({source: rank for rank, source in enumerate(source_priority)})

    grouped = data.groupby("customer_id", sort=True)
    profiles = pd.DataFrame(index=grouped.size().index)
    profiles["source_records"] = grouped.size()
    profiles["sources"] = _distinct_lists(data["customer_id"], data["source"], profiles.index)
    profiles["min_match_probability"] = grouped["match_probability"].min()
    if weakest_links is not None:
        profiles["min_match_probability"] = weakest_links.reindex(profiles.index).fillna(
            profiles["min_match_probability"]).round(6)
    profiles["updated_at"] = grouped["updated_at"].max()
    for column, rule in rules.items():
        if column in data:
            profiles[column] = _pick(data, column, rule, source_rank)
    for column, rule in custom_rules.items():
        profiles[column] = _pick(data, column, rule, source_rank)
    for column, name in (("email", "emails"), ("phone", "phones")):
        profiles[name] = _distinct_lists(data["customer_id"], pd.Series(standardized[column].to_numpy()), profiles.index)
    profiles.index.name = "customer_id"
    return profiles.reset_index()
