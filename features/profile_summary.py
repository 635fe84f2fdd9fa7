"""Summaries of the unified customer base for people exploring it (notebooks/01-explore-profiles):
how many records became how many customers, from which sources, how surely, which joins were
refused (households) or flagged (large clusters), and how the features are distributed.

Nothing here shows raw personal data: profiles are read through `profiles_without_pii`, which keeps
counts and flags in place of names, e-mails, phones, addresses and birth dates. Pure functions take
DataFrames (or the identity report's dict); the readers at the bottom are the I/O edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cdp.workspace import Workspace
from features.contract import CUSTOMERS
from features.identity.store import identity_paths

PII_LIST_COLUMNS = ("emails", "phones")
"""Profile columns holding every e-mail and phone a customer has (lists of raw values)."""
MERGED_RULES_PREFIXES = ("exact_", "probabilistic:", "link")
PROBABILITY_BANDS = (0.0, 0.9, 0.99, 0.999, 1.0)


def profiles_without_pii(profiles: pd.DataFrame) -> pd.DataFrame:
    """The golden profiles with every personal attribute replaced by what can be shown: a flag
    `has_<attribute>` per PII column and the number of e-mails and phones on file."""
    personal = [c for c in CUSTOMERS.pii_columns if c in profiles.columns]
    shown = profiles.drop(columns=[*personal, *(c for c in PII_LIST_COLUMNS if c in profiles.columns)])
    for column in personal:
        shown[f"has_{column}"] = profiles[column].notna().to_numpy()
    for column in PII_LIST_COLUMNS:
        if column in profiles.columns:
            shown[f"{column.removesuffix('s')}_count"] = profiles[column].map(_length).to_numpy()
    return shown


def _length(values) -> int:
    return 0 if values is None or (isinstance(values, float) and np.isnan(values)) else len(values)


def summarize_customer_base(profiles: pd.DataFrame, identity_map: pd.DataFrame) -> pd.DataFrame:
    """The headline numbers, one row per measure: records in, customers out, how many were merged."""
    sizes = identity_map.groupby("customer_id").size()
    source_counts = profiles["sources"].map(_length)
    measures = {
        "source records": len(identity_map),
        "customers": int(sizes.size),
        "customers merged from 2+ records": int((sizes > 1).sum()),
        "records joined to another record": int(sizes[sizes > 1].sum()),
        "customers seen in 2+ sources": int((source_counts > 1).sum()),
        "records without any personal data": int((identity_map["matched_by"] == "no_pii").sum()),
        "records per customer (mean)": round(float(sizes.mean()), 3) if len(sizes) else 0.0,
        "largest customer (records)": int(sizes.max()) if len(sizes) else 0,
    }
    return pd.DataFrame({"measure": list(measures), "value": pd.Series(list(measures.values()), dtype=object)})


def records_per_customer(identity_map: pd.DataFrame) -> pd.DataFrame:
    """How many customers hold 1, 2, 3, ... source records."""
    sizes = identity_map.groupby("customer_id").size()
    counts = sizes.value_counts().sort_index()
    return pd.DataFrame({"records": counts.index.astype(int), "customers": counts.to_numpy(),
                         "share": (counts / counts.sum()).round(4).to_numpy()})


def customers_per_source(identity_map: pd.DataFrame) -> pd.DataFrame:
    """Per source system: its records, the customers they belong to, and how many of those
    customers also appear in another source."""
    sources_of = identity_map.groupby("customer_id")["source"].nunique()
    table = identity_map.assign(elsewhere=identity_map["customer_id"].map(sources_of) > 1)
    grouped = table.groupby("source")
    return pd.DataFrame({
        "records": grouped.size(),
        "customers": grouped["customer_id"].nunique(),
        "customers_also_in_other_sources": table[table["elsewhere"]].groupby("source")["customer_id"].nunique(),
    }).fillna(0).astype(int).reset_index()


def source_combinations(profiles: pd.DataFrame) -> pd.DataFrame:
    """Customers per combination of sources ("app + web"), most common first."""
    combination = profiles["sources"].map(lambda sources: " + ".join(sorted(sources)) if _length(sources) else "(none)")
    counts = combination.value_counts()
    return pd.DataFrame({"sources": counts.index, "customers": counts.to_numpy(),
                         "share": (counts / counts.sum()).round(4).to_numpy()})


def match_methods(identity_map: pd.DataFrame) -> pd.DataFrame:
    """How records joined their customer (the strongest accepted edge's rule), with the match
    probability of those records; `unmatched` and `no_pii` records stand alone."""
    grouped = identity_map.groupby("matched_by")["match_probability"]
    table = pd.DataFrame({"records": grouped.size(), "mean_probability": grouped.mean().round(4),
                          "lowest_probability": grouped.min().round(4)})
    return table.sort_values("records", ascending=False).reset_index()


def match_probability_bands(identity_map: pd.DataFrame, bands: tuple[float, ...] = PROBABILITY_BANDS) -> pd.DataFrame:
    """Records joined by the probabilistic model, counted per band of match probability (a band
    near the threshold is where reviewers should look first)."""
    probabilistic = identity_map[identity_map["matched_by"].str.startswith("probabilistic:")]
    banded = pd.cut(probabilistic["match_probability"], bins=list(bands), include_lowest=True)
    counts = banded.value_counts(sort=False)
    return pd.DataFrame({"match_probability": counts.index.astype(str), "records": counts.to_numpy()})


def contact_points_on_file(shown_profiles: pd.DataFrame) -> pd.DataFrame:
    """Customers with each kind of personal data on file, from `profiles_without_pii` flags and counts."""
    flags = [c for c in shown_profiles.columns if c.startswith("has_")]
    counts = {c.removeprefix("has_"): int(shown_profiles[c].sum()) for c in flags}
    for column in ("email_count", "phone_count"):
        if column in shown_profiles:
            counts[f"2+ {column.removesuffix('_count')}s"] = int((shown_profiles[column] > 1).sum())
    total = len(shown_profiles)
    return pd.DataFrame({"attribute": list(counts), "customers": list(counts.values()),
                         "share": [round(v / total, 4) if total else 0.0 for v in counts.values()]})


def refused_joins(edges: pd.DataFrame) -> pd.DataFrame:
    """Pairs of records the evidence linked but clustering kept apart because the people conflict
    (different first names or birth dates: typically members of one household sharing an e-mail,
    phone or address), with the rule that linked them and the customers they stayed in."""
    refused = edges[edges["refused_because"].notna()]
    columns = ["refused_because", "rule", "kind", "probability", "left_customer_id", "right_customer_id"]
    return refused[columns].sort_values(["refused_because", "probability"], ascending=[True, False]).reset_index(drop=True)


def households(edges: pd.DataFrame) -> pd.DataFrame:
    """Per refusal reason: pairs kept apart and distinct customers involved."""
    refused = edges[edges["refused_because"].notna()]
    grouped = refused.groupby("refused_because")
    return pd.DataFrame({
        "pairs_kept_apart": grouped.size(),
        "customers_involved": grouped.apply(
            lambda rows: len(set(rows["left_customer_id"]) | set(rows["right_customer_id"])), include_groups=False),
    }).reset_index()


def large_clusters(report: dict) -> pd.DataFrame:
    """Customers holding more records than `identity.large_cluster_size`: flagged for review, with how
    many of the records are distinct (the others are copies; reports before session 16 do not say)."""
    return pd.DataFrame(report.get("large_clusters", []), columns=["customer_id", "records", "distinct_records"])


def resolution_counts(report: dict) -> pd.DataFrame:
    """The identity report's counts as one table: edges per rule, refused joins, contact points not
    used alone (shared e-mails and phones, landlines) and id changes since the previous run."""
    rows = [("records", "", report.get("records")), ("customers", "", report.get("customers")),
            ("candidate pairs", "", report.get("candidate_pairs")),
            ("probabilistic edges above threshold", "", report.get("probabilistic_edges_above_threshold"))]
    for group, title in (("deterministic_edges", "deterministic edges"), ("refused_joins", "refused joins"),
                         ("contact_points_not_used_alone", "contact points not used alone"), ("ids", "customer ids")):
        rows += [(title, key, value) for key, value in (report.get(group) or {}).items()]
    return pd.DataFrame(rows, columns=["what", "detail", "count"])


def feature_distributions(features: pd.DataFrame) -> pd.DataFrame:
    """One row per feature column: missing share and quantiles for numbers, distinct values and the
    most common one for categories (keys and timestamps left out)."""
    rows = []
    for column in features.columns:
        if column in ("customer_id", "event_timestamp", "created_timestamp"):
            continue
        values = features[column]
        row = {"feature": column, "missing_share": round(float(values.isna().mean()), 4)}
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            numbers = values.astype(float)
            row.update({"mean": numbers.mean(), "min": numbers.min(), "p25": numbers.quantile(0.25),
                        "median": numbers.median(), "p75": numbers.quantile(0.75), "max": numbers.max()})
        elif not pd.api.types.is_datetime64_any_dtype(values):
            counts = values.astype("string").value_counts()
            row.update({"distinct": int(counts.size), "most_common": counts.index[0] if counts.size else None})
        rows.append(row)
    columns = ["feature", "missing_share", "mean", "min", "p25", "median", "p75", "max", "distinct", "most_common"]
    table = pd.DataFrame(rows, columns=columns)
    return table.dropna(axis="columns", how="all")


@dataclass
class IdentityOutputs:
    """What `cdp resolve` wrote, with the profiles already stripped of personal data."""

    profiles: pd.DataFrame
    identity_map: pd.DataFrame
    edges: pd.DataFrame
    report: dict


def read_identity_outputs(workspace: Workspace) -> IdentityOutputs:
    """The identity map, edges, report and PII-free profiles of a workspace."""
    paths = identity_paths(workspace)
    for name in ("identity_map", "profiles", "edges", "report"):
        if not paths[name].exists():
            raise FileNotFoundError(f"{paths[name]} not found; run `cdp resolve` (or `cdp run`) in {workspace.root}")
    return IdentityOutputs(
        profiles=profiles_without_pii(pd.read_parquet(paths["profiles"])),
        identity_map=pd.read_parquet(paths["identity_map"]),
        edges=pd.read_parquet(paths["edges"]),
        report=json.loads(Path(paths["report"]).read_text()),
    )


def read_feature_snapshot(workspace: Workspace, family: str, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """One feature table's rows at one snapshot (default: its latest)."""
    from features.feature_tables import feature_table_path

    path = feature_table_path(workspace, family)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `cdp features build` (or `cdp run`) in {workspace.root}")
    table = pd.read_parquet(path)
    times = pd.to_datetime(table["event_timestamp"], utc=True)
    moment = times.max() if as_of is None else pd.Timestamp(as_of)
    moment = moment if moment.tzinfo else moment.tz_localize("UTC")
    chosen = table[times == moment].reset_index(drop=True)
    if chosen.empty:
        known = ", ".join(str(t.date()) for t in sorted(times.unique())[-5:])
        raise ValueError(f"{path}: no snapshot at {moment}; the latest are {known}")
    return chosen
