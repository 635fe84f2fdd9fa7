"""Why a customer is who it is: its records, the edges that joined them, the joins refused."""

from __future__ import annotations

import pandas as pd

from features.identity.matching import HELD_BACK_REASONS, LEVELS


def explain_customer(query: str, identity_map: pd.DataFrame, edges: pd.DataFrame,
                     merged_into: dict[str, str] | None = None,
                     merged_then_split: dict[str, str] | None = None) -> dict:
    """`query` is a customer_id or `source:source_id` (the source in any case: sources are stored
    lower-cased; the id as written). An id an earlier run retired by a merge (`merged_into`) is
    explained as the customer it was merged into, and the answer says so (`merged_from`); one whose
    customer split since (`merged_then_split`) is explained by no one."""
    customers = set(identity_map["customer_id"])
    if merged_then_split and query.strip() in merged_then_split and query.strip() not in customers:
        raise KeyError(f"{query.strip()!r} was retired by a merge into a customer that a later run split: which "
                       "part holds its records is not known; ask by a source record (source:source_id)")
    if merged_into and query.strip() in merged_into and query.strip() not in customers:
        survivor = merged_into[query.strip()]
        if survivor not in customers:
            raise KeyError(f"{query.strip()!r} was merged into {survivor!r}, which no longer exists (erased)")
        return {"merged_from": query.strip(), **explain_customer(survivor, identity_map, edges)}
    keys = identity_map["source"].astype(str) + ":" + identity_map["source_id"].astype(str)
    source, separator, source_id = query.strip().partition(":")
    if separator and query not in customers:
        query = f"{source.strip().lower()}:{source_id.strip()}"
    if query in customers:
        customer_id = query
    elif (keys == query).any():
        customer_id = identity_map.loc[keys == query, "customer_id"].iloc[0]
    else:
        raise KeyError(f"{query!r} is neither a customer_id nor a known source:source_id")
    members = identity_map[identity_map["customer_id"] == customer_id]
    inside = edges[(edges["left_customer_id"] == customer_id) & (edges["right_customer_id"] == customer_id)]
    touching = edges[(edges["left_customer_id"] == customer_id) | (edges["right_customer_id"] == customer_id)]
    refused = touching[~touching["accepted"]]

    def describe(edge: pd.Series) -> dict:
        evidence = {
            name: {"level": edge[f"{name}_level"], "weight": float(edge[f"{name}_weight"])}
            for name in LEVELS
            if edge[f"{name}_level"] != "null"
        }
        return {
            "records": [edge["left_record"], edge["right_record"]],
            "rule": edge["rule"],
            "kind": edge["kind"],
            # as the identity map holds it (1 for a deterministic link); the comparison's own beside it
            "match_probability": round(float(edge["probability"]), 6),
            "model_probability": round(float(edge["model_probability"]), 6),
            "match_weight": round(float(edge["match_weight"]), 3),
            "evidence": evidence,
            **({"refused_because": edge["refused_because"]} if not edge["accepted"] else {}),
            **({"other_customer": edge["right_customer_id"] if edge["left_customer_id"] == customer_id
                else edge["left_customer_id"]} if not edge["accepted"] else {}),
        }

    records = members[["source", "source_id", "match_probability", "matched_by"]].to_dict("records")
    held = members["held_back"] if "held_back" in members else pd.Series("", index=members.index)  # older maps
    for record, codes in zip(records, held.fillna("").tolist(), strict=True):
        record["held_back"] = [code for code in codes.split("; ") if code]  # for programs: `email:shared`, ...
        record["contact_points_held_back"] = [held_back_phrase(code) for code in record["held_back"]]
    return {
        "customer_id": customer_id,
        "records": records,
        "joined_by": [describe(edge) for _, edge in inside.sort_values("probability", ascending=False).iterrows()],
        "refused": [describe(edge) for _, edge in refused.iterrows()],
    }


def held_back_phrase(code: str) -> str:
    """`email:shared` -> "e-mail held by records whose names or birth dates conflict: joins nothing on its own"."""
    contact, _, reason = code.partition(":")
    return f"{'e-mail' if contact == 'email' else contact} {HELD_BACK_REASONS.get(reason, reason)}: joins nothing on its own"
