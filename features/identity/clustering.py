"""Cluster matched pairs into people without over-merging, and keep customer ids stable.

Clustering is greedy agglomeration over edges from strongest to weakest: two clusters join only
if no record of one clearly conflicts with a record of the other (different dates of birth, or
different first names that are not a swap of first and last name). A chain of plausible pairs
therefore cannot fuse a household into one customer; the refused joins are kept for `explain`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.identity.conflicts import (
    birth_dates_conflict,
    first_names_conflict,
    scripts_comparable,
)

ID_PREFIX = "C"
ID_DIGITS = 9


@dataclass(frozen=True)
class Traits:
    first: str | None
    """Every name the first name may stand for (`standardize`'s `first_names`)."""
    last: str | None
    birth: str | None
    script: str | None = None


def _conflicting(x: Traits, y: Traits) -> str | None:
    if birth_dates_conflict(x.birth, y.birth):
        return "different dates of birth"
    if scripts_comparable(x.script, y.script) and first_names_conflict(x.first, y.first, x.last, y.last):
        return "different first names"
    return None


@dataclass
class ClusteringResult:
    labels: np.ndarray
    """Cluster label per record (the index of a representative record)."""
    accepted: np.ndarray
    """Per edge: True if it joined two clusters or fell inside one, False if refused."""
    refusals: list[str | None]
    """Per edge: why it was refused, or None."""
    joined: np.ndarray
    """Per edge: True if it joined two clusters (the links that hold a customer together)."""


def cluster_records(standardized: pd.DataFrame, edges: pd.DataFrame) -> ClusteringResult:
    """Constrained union-find over edges sorted by match probability (deterministic first)."""
    size = len(standardized)
    parent = np.arange(size)
    traits = [
        Traits(f, lst, b, script)
        for f, lst, b, script in zip(standardized["first_names"], standardized["last_name"],
                                     standardized["date_of_birth"], standardized["first_script"], strict=True)
    ]
    members: dict[int, set[Traits]] = {}

    def find(node: int) -> int:
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def traits_of(root: int) -> set[Traits]:
        found = members.get(root)
        if found is None:
            found = {traits[root]} if any((traits[root].first, traits[root].birth)) else set()
            members[root] = found
        return found

    order = np.argsort(-edges["probability"].to_numpy(), kind="stable")
    lefts = edges["left"].to_numpy()
    rights = edges["right"].to_numpy()
    accepted = np.ones(len(edges), dtype=bool)
    refusals: list[str | None] = [None] * len(edges)
    joined = np.zeros(len(edges), dtype=bool)
    for position in order:
        a, b = find(int(lefts[position])), find(int(rights[position]))
        if a == b:
            continue
        traits_a, traits_b = traits_of(a), traits_of(b)
        reason = next((r for x in traits_a for y in traits_b if (r := _conflicting(x, y))), None)
        if reason is not None:
            accepted[position] = False
            refusals[position] = reason
            continue
        if len(traits_a) < len(traits_b):
            a, b, traits_a, traits_b = b, a, traits_b, traits_a
        parent[b] = a
        joined[position] = True
        traits_a |= traits_b
        members.pop(b, None)
    labels = np.array([find(i) for i in range(size)], dtype=np.int64)
    return ClusteringResult(labels, accepted, refusals, joined)


def format_customer_id(sequence: int) -> str:
    return f"{ID_PREFIX}{sequence:0{ID_DIGITS}d}"


def id_sequence(customer_id: str) -> int:
    """Ids are issued in order, so the number tells which of two ids is older."""
    return int(customer_id[len(ID_PREFIX):])


def assign_stable_ids(
    record_keys: pd.Series,
    labels: np.ndarray,
    previous: pd.Series | None,
    next_sequence: int,
) -> tuple[np.ndarray, int, dict[str, int], dict[str, str], set[str]]:
    """Customer id per record, keeping earlier ids whose cluster persists.

    A cluster holding records of several earlier ids (a merge) keeps the oldest; an earlier id
    whose records are now in several clusters (a split) stays with the part holding most of them.
    `previous` maps record key -> earlier customer id. Also returns each id retired by a merge with
    the id it was merged into, so that a caller still holding it can be told where it went, and the
    earlier ids that split (an id retired into one of them earlier can no longer be followed).
    """
    # Records come sorted, so a record's position stands in for its key when ordering clusters.
    frame = pd.DataFrame({"key": record_keys.to_numpy(), "label": labels, "position": np.arange(len(labels))})
    frame["previous"] = frame["key"].map(previous) if previous is not None else None
    known = frame.dropna(subset=["previous"])
    first_key = frame.groupby("label")["position"].min()
    chosen: dict[int, str] = {}
    retired: list[str] = []
    merged_into: dict[str, str] = {}
    split: set[str] = set()
    if len(known):
        overlap = known.groupby(["previous", "label"]).size().rename("records").reset_index()
        overlap["first_key"] = overlap["label"].map(first_key)
        overlap = overlap.sort_values(["previous", "records", "first_key"], ascending=[True, False, True])
        split = set(overlap.loc[overlap["previous"].duplicated(), "previous"])
        claims = overlap.drop_duplicates("previous")  # each earlier id goes to its largest part
        claims = claims.assign(sequence=claims["previous"].map(id_sequence)).sort_values(["label", "sequence"])
        oldest = ~claims["label"].duplicated()  # a merge keeps the oldest id
        chosen = dict(zip(claims.loc[oldest, "label"].astype(int), claims.loc[oldest, "previous"], strict=True))
        retired = claims.loc[~oldest, "previous"].tolist()
        merged_into = {old: chosen[int(label)] for old, label in
                       zip(claims.loc[~oldest, "previous"], claims.loc[~oldest, "label"], strict=True)}
    new_labels = first_key[~first_key.index.isin(list(chosen))].sort_values().index
    for label in new_labels:
        chosen[int(label)] = format_customer_id(next_sequence)
        next_sequence += 1
    customer_ids = frame["label"].map(chosen).to_numpy()
    previous_ids = set(known["previous"]) if len(known) else set()
    changes = {
        "kept_ids": len(previous_ids & set(chosen.values())),
        "new_ids": len(new_labels),
        "retired_ids_merged": len(retired),
        "ids_split": len(split),
    }
    return customer_ids, next_sequence, changes, merged_into, split
