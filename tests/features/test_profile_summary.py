"""Summaries of the unified customer base: counts right, and no personal data shown."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features import profile_summary


@pytest.fixture
def profiles() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"],
        "source_records": [3, 1, 1],
        "sources": [["crm", "web"], ["web"], ["app"]],
        "min_match_probability": [0.995, 1.0, 1.0],
        "first_name": ["ann", "bob", None],
        "last_name": ["Lovelace", "Babbage", None],
        "email": ["ann@example.com", None, None],
        "phone": ["+447700900001", None, None],
        "address_line": ["1 Analytical Row", None, None],
        "city": ["London", None, None],
        "postcode": ["N1 1AA", None, None],
        "region": ["Greater London", None, None],
        "country": ["GB", "GB", None],
        "date_of_birth": ["1815-12-10", None, None],
        "emails": [["ann@example.com", "ann@work.example"], [], []],
        "phones": [["+447700900001"], [], []],
    })


@pytest.fixture
def identity_map() -> pd.DataFrame:
    return pd.DataFrame({
        "source": ["crm", "web", "web", "web", "app"],
        "source_id": ["1", "2", "3", "4", "5"],
        "customer_id": ["C1", "C1", "C1", "C2", "C3"],
        "match_probability": [1.0, 0.995, 1.0, 1.0, 1.0],
        "matched_by": ["exact_email", "probabilistic:name_pair", "exact_email", "unmatched", "no_pii"],
    })


def test_profiles_without_pii_keep_flags_and_counts_in_place_of_personal_data(profiles):
    # when the profiles are prepared for showing
    shown = profile_summary.profiles_without_pii(profiles)
    # then no personal value is left anywhere, but what is on file is counted
    text = shown.to_string() + json.dumps(shown.astype(str).to_dict())
    for value in ("ann@example.com", "ann@work.example", "+447700900001", "Lovelace", "1 Analytical Row", "N1 1AA",
                  "1815-12-10", '"London"'):
        assert value not in text, value
    assert shown["email_count"].tolist() == [2, 0, 0]
    assert shown["phone_count"].tolist() == [1, 0, 0]
    assert shown["has_email"].tolist() == [True, False, False]
    assert shown["has_first_name"].tolist() == [True, True, False]
    assert shown["region"].tolist()[0] == "Greater London"  # a region is not personal data


def test_the_customer_base_counts_records_customers_and_merges(profiles, identity_map):
    # when the base is summarized
    summary = profile_summary.summarize_customer_base(profiles, identity_map).set_index("measure")["value"]
    # then five records make three customers, one of them merged from three records across two sources
    assert summary["source records"] == 5
    assert summary["customers"] == 3
    assert summary["customers merged from 2+ records"] == 1
    assert summary["records joined to another record"] == 3
    assert summary["customers seen in 2+ sources"] == 1
    assert summary["records without any personal data"] == 1
    assert summary["largest customer (records)"] == 3


def test_records_per_customer_and_per_source(identity_map, profiles):
    per_customer = profile_summary.records_per_customer(identity_map)
    assert per_customer[["records", "customers"]].values.tolist() == [[1, 2], [3, 1]]
    per_source = profile_summary.customers_per_source(identity_map).set_index("source")
    assert per_source.loc["web", "records"] == 3
    assert per_source.loc["web", "customers"] == 2
    assert per_source.loc["web", "customers_also_in_other_sources"] == 1
    assert per_source.loc["app", "customers_also_in_other_sources"] == 0
    combinations = profile_summary.source_combinations(profiles).set_index("sources")["customers"]
    assert combinations.to_dict() == {"crm + web": 1, "web": 1, "app": 1}


def test_match_methods_and_probability_bands(identity_map):
    methods = profile_summary.match_methods(identity_map).set_index("matched_by")
    assert methods.loc["exact_email", "records"] == 2
    assert methods.loc["probabilistic:name_pair", "lowest_probability"] == 0.995
    bands = profile_summary.match_probability_bands(identity_map).set_index("match_probability")["records"]
    assert bands.sum() == 1  # only the probabilistic record is banded
    assert bands["(0.99, 0.999]"] == 1


def test_contact_points_are_counted_not_shown(profiles):
    table = profile_summary.contact_points_on_file(profile_summary.profiles_without_pii(profiles)).set_index("attribute")
    assert table.loc["email", "customers"] == 1
    assert table.loc["first_name", "customers"] == 2
    assert table.loc["2+ emails", "customers"] == 1
    assert table.loc["2+ phones", "customers"] == 0


def test_households_count_refused_pairs_and_the_customers_they_involve():
    edges = pd.DataFrame({
        "refused_because": [None, "different first names", "different first names", "different birth dates"],
        "rule": ["exact_email", "exact_phone", "link", "exact_email"], "kind": "deterministic",
        "probability": 1.0,
        "left_customer_id": ["C1", "C2", "C2", "C5"], "right_customer_id": ["C1", "C3", "C4", "C6"],
    })
    households = profile_summary.households(edges).set_index("refused_because")
    assert households.loc["different first names"].tolist() == [2, 3]
    assert households.loc["different birth dates"].tolist() == [1, 2]
    assert len(profile_summary.refused_joins(edges)) == 3


def test_report_tables():
    report = {"records": 5, "customers": 3, "candidate_pairs": 4, "probabilistic_edges_above_threshold": 1,
              "deterministic_edges": {"exact_email": 2}, "refused_joins": {"different first names": 1},
              "contact_points_not_used_alone": {"landlines": 1}, "ids": {"new_ids": 3},
              "large_clusters": [{"customer_id": "C9", "records": 60, "distinct_records": 2}]}
    assert profile_summary.large_clusters(report).values.tolist() == [["C9", 60, 2]]
    older = {"large_clusters": [{"customer_id": "C9", "records": 60}]}  # a report written before session 16
    assert profile_summary.large_clusters(older)[["customer_id", "records"]].values.tolist() == [["C9", 60]]
    assert profile_summary.large_clusters({}).empty
    counts = profile_summary.resolution_counts(report)
    assert counts[counts["detail"] == "exact_email"]["count"].item() == 2
    assert counts[counts["what"] == "refused joins"]["count"].item() == 1


def test_feature_distributions_describe_numbers_and_categories():
    features = pd.DataFrame({
        "customer_id": ["C1", "C2", "C3", "C4"], "event_timestamp": pd.Timestamp("2026-07-01", tz="UTC"),
        "orders_total": [0, 1, 2, None], "region": ["north", "north", "south", None],
    })
    table = profile_summary.feature_distributions(features).set_index("feature")
    assert list(table.index) == ["orders_total", "region"]
    assert table.loc["orders_total", "missing_share"] == 0.25
    assert table.loc["orders_total", "median"] == 1.0
    assert table.loc["region", "distinct"] == 2
    assert table.loc["region", "most_common"] == "north"


def test_feature_snapshot_is_the_latest_unless_asked(workspace):
    from features.feature_tables import feature_table_path

    # given a feature table with two snapshots
    path = feature_table_path(workspace, "purchase_history")
    path.parent.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["C1", "C1", "C2"],
                  "event_timestamp": pd.to_datetime(["2026-06-01", "2026-07-01", "2026-07-01"], utc=True),
                  "orders_total": [1, 2, 5]}).to_parquet(path)
    # then the latest is read by default, an earlier one on request, and an unknown one is refused by name
    assert profile_summary.read_feature_snapshot(workspace, "purchase_history")["orders_total"].tolist() == [2, 5]
    assert profile_summary.read_feature_snapshot(workspace, "purchase_history", "2026-06-01")["orders_total"].tolist() == [1]
    with pytest.raises(ValueError, match="no snapshot at 2026-05-01"):
        profile_summary.read_feature_snapshot(workspace, "purchase_history", "2026-05-01")
    with pytest.raises(FileNotFoundError, match="cdp features build"):
        profile_summary.read_feature_snapshot(workspace, "engagement")


def test_identity_outputs_are_read_without_pii(workspace, profiles, identity_map):
    from features.identity.store import identity_paths

    # given what `cdp resolve` writes
    paths = identity_paths(workspace)
    paths["profiles"].parent.mkdir(parents=True)
    paths["report"].parent.mkdir(parents=True)
    profiles.to_parquet(paths["profiles"])
    identity_map.to_parquet(paths["identity_map"])
    pd.DataFrame({"refused_because": [None]}).to_parquet(paths["edges"])
    paths["report"].write_text(json.dumps({"customers": 3}))
    # when it is read for exploring
    outputs = profile_summary.read_identity_outputs(workspace)
    # then the profiles hold no personal column
    assert not {"email", "emails", "phone", "phones", "last_name", "address_line"} & set(outputs.profiles.columns)
    assert outputs.report == {"customers": 3}
    paths["edges"].unlink()
    with pytest.raises(FileNotFoundError, match="cdp resolve"):
        profile_summary.read_identity_outputs(workspace)
