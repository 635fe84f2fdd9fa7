"""Compare an identity map with known truth: pairwise precision/recall/F1 and cluster errors.

Counts come from the contingency table of (customer, person), so no pair is ever enumerated:
the pairs two records share a customer and a person are sum(C(n, 2)) over its cells.
"""

from __future__ import annotations

import pandas as pd


def _pairs(counts: pd.Series) -> int:
    return int((counts * (counts - 1) // 2).sum())


def evaluate_identity_map(identity_map: pd.DataFrame, truth: pd.DataFrame, worst: int = 10) -> dict:
    """Scores over all records, and over records with some PII (`matched_by` != "no_pii"):
    a reference with no PII at all is its own customer by design and can never be matched."""
    result = {"all_records": _evaluate(identity_map, truth, worst)}
    if "matched_by" in identity_map:
        with_pii = identity_map[identity_map["matched_by"] != "no_pii"]
        result["records_with_pii"] = _evaluate(with_pii, truth, worst)
    return result


def _evaluate(identity_map: pd.DataFrame, truth: pd.DataFrame, worst: int) -> dict:
    """`identity_map`: source, source_id, customer_id. `truth`: source, source_id, person_id
    (and optionally household_id). Only records present in both are scored."""
    keys = ["source", "source_id"]
    joined = identity_map[[*keys, "customer_id"]].merge(truth, on=keys, how="inner")
    if joined.empty:
        raise ValueError("no record of the identity map appears in the truth (check source/source_id)")
    cells = joined.groupby(["customer_id", "person_id"]).size()
    true_positive = _pairs(cells)
    predicted = _pairs(joined.groupby("customer_id").size())
    actual = _pairs(joined.groupby("person_id").size())
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    people_per_customer = joined.groupby("customer_id")["person_id"].nunique()
    customers_per_person = joined.groupby("person_id")["customer_id"].nunique()
    over = people_per_customer[people_per_customer > 1]
    under = customers_per_person[customers_per_person > 1]
    result = {
        "records": int(len(joined)),
        "records_without_truth": int(len(identity_map) - len(joined)),
        "customers": int(joined["customer_id"].nunique()),
        "people": int(joined["person_id"].nunique()),
        "pairwise": {
            "precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
            "true_positive_pairs": true_positive, "predicted_pairs": predicted, "true_pairs": actual,
        },
        "over_merged_customers": int(len(over)),
        "under_merged_people": int(len(under)),
        "worst_over_merges": [
            {"customer_id": c, "people": int(n), "records": int((joined["customer_id"] == c).sum())}
            for c, n in over.sort_values(ascending=False).head(worst).items()
        ],
        "worst_under_merges": [
            {"person_id": p, "customers": int(n)} for p, n in under.sort_values(ascending=False).head(worst).items()
        ],
    }
    if "household_id" in joined:
        households = joined.dropna(subset=["household_id"])
        merged = households.groupby(["customer_id", "household_id"])["person_id"].nunique()
        result["household_merges"] = {
            "customers_joining_household_members": int((merged > 1).sum()),
            "household_members_merged": int(merged[merged > 1].sum()),
            "people_in_households": int(households["person_id"].nunique()),
        }
    return result
