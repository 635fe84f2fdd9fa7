"""Identity resolution end to end, as one pure function from records to an identity map.

records -> standardize -> deterministic edges + blocked candidate pairs -> comparison levels
-> Fellegi–Sunter weights (EM or labels) -> edges above the threshold -> constrained clustering
-> stable customer ids -> golden profiles. Storage is the caller's business (`features.identity.store`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cdp.config import IdentitySettings
from features.identity.clustering import assign_stable_ids, cluster_records
from features.identity.learning import learning_sample
from features.identity.matching import (
    LEVELS,
    EncodedRecords,
    add_blocking_keys,
    compare_pairs,
    deterministic_edges,
    encode_records,
    generate_candidate_pairs,
    personal_agreement,
    record_profiles,
)
from features.identity.profiles import build_profiles, check_survivorship_rules
from features.identity.standardize import (
    EmailRules,
    has_any_pii,
    standardize_name,
    standardize_records,
)
from features.identity.weights import (
    EM_MIN_PAIRS,
    MatchModel,
    score_pairs,
    term_frequencies,
    train_with_em,
    train_with_labels,
)

log = logging.getLogger("cdp.identity")
LARGE_CLUSTERS_LISTED = 50
"""The report lists this many of the largest clusters above `identity.large_cluster_size`, and counts all."""
Progress = Callable[[int, int], None]
STEPS = 7
RANDOM_PAIRS = 500_000


@dataclass
class Resolution:
    identity_map: pd.DataFrame
    """source, source_id, customer_id, match_probability, matched_by, held_back."""
    profiles: pd.DataFrame
    edges: pd.DataFrame
    """Every deterministic edge and every candidate pair above the threshold: the evidence."""
    model: MatchModel
    next_sequence: int
    report: dict = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)
    """Every customer id retired by a merge (this run or earlier ones) -> the id that holds its records now."""
    merged_then_split: dict[str, str] = field(default_factory=dict)
    """Ids retired by a merge into a customer that has split since -> that customer: which part holds
    the retired id's records is not known, so the id leads nowhere rather than to another person."""


def record_keys(frame: pd.DataFrame, source: str = "source", source_id: str = "source_id") -> pd.Series:
    return frame[source].astype(str) + ":" + frame[source_id].astype(str)


def _stable_hash(values: pd.Series) -> np.ndarray:
    """A 64-bit hash per value, the same in every run and on every machine."""
    return pd.util.hash_array(values.astype(str).to_numpy(dtype=object))


def _random_pairs(population: np.ndarray, count: int, keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """About `count` random distinct record pairs, for estimating u: neighbours in the order of a hash of
    the record keys, at offsets 1..k. A record added or removed changes only the pairs around it, so
    the estimate (and with it every borderline match) does not move because of an unrelated record;
    positions drawn from a seeded generator reshuffled every pair when one record came or went (a user
    saw a customer split and another merge after erasing an unrelated person)."""
    size = len(population)
    if size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    hashes = _stable_hash(keys.iloc[population])
    order = population[np.argsort(hashes, kind="stable")]
    # offsets up to a power of two, so that one record more or less rarely changes how many there are
    # (ceil(count / size) itself would change with size); then a stable share of the pairs, by hash
    offsets = range(1, min(size - 1, 2 ** math.ceil(math.log2(max(1.0, count / size)))) + 1)
    left = np.concatenate([order[:-k] for k in offsets])
    right = np.concatenate([order[k:] for k in offsets])
    if len(left) > count:
        kept = _stable_share(keys, left, right, count / len(left))
        left, right = left[kept], right[kept]
    return left, right


def _stable_share(keys: pd.Series, left: np.ndarray, right: np.ndarray, share: float) -> np.ndarray:
    """About `share` of the record pairs, chosen by a hash of their keys: a pair is in or out whatever
    other records are added or removed."""
    hashes = _stable_hash(keys.iloc[left].reset_index(drop=True) + "|" + keys.iloc[right].reset_index(drop=True))
    return hashes % 1_000_003 < share * 1_000_003


def _sample(pairs: pd.DataFrame, keys: pd.Series, limit: int) -> np.ndarray:
    """Positions of at most about `limit` candidate pairs, chosen by a hash of the pair's record keys:
    the same pairs whatever else was added or removed."""
    if len(pairs) <= limit:
        return np.arange(len(pairs))
    return np.flatnonzero(_stable_share(keys, pairs["left"].to_numpy(), pairs["right"].to_numpy(), limit / len(pairs)))


def resolve_identities(
    records: pd.DataFrame,
    links: pd.DataFrame | None,
    settings: IdentitySettings,
    previous_map: pd.DataFrame | None = None,
    next_sequence: int = 1,
    labelled_pairs: pd.DataFrame | None = None,
    custom_columns: tuple[str, ...] = (),
    progress: Progress | None = None,
    merged_before: dict[str, str] | None = None,
    merged_then_split_before: dict[str, str] | None = None,
) -> Resolution:
    """Resolve identity records (one row per source, source_id) into customers."""
    check_survivorship_rules(dict(settings.survivorship), custom_columns)  # before the work, not after it
    def advance(step: int) -> None:
        if progress is not None:
            progress(step, STEPS)

    records = records.sort_values(["source", "source_id"]).reset_index(drop=True)
    keys = record_keys(records)
    index_of = pd.Series(np.arange(len(records)), index=keys.to_numpy())
    rules = EmailRules(
        strip_plus_tags=settings.email_strip_plus_tags, dotless_domains=settings.email_dotless_domains,
        family_mailboxes=settings.email_family_mailboxes,
    )
    standardized = standardize_records(records, settings.default_phone_region, rules,
                                       _standardized_groups(settings.nickname_groups))
    keyed = add_blocking_keys(standardized)
    with_pii = has_any_pii(standardized)
    advance(1)

    fixed, skipped, held_back = deterministic_edges(keyed, links, index_of)
    candidates = generate_candidate_pairs(keyed, settings.block_window)
    advance(2)
    pairs = pd.concat(
        [
            fixed.assign(source="deterministic"),
            pd.DataFrame({"left": candidates.left, "right": candidates.right, "rule": candidates.rule,
                          "source": "probabilistic"}),
        ],
        ignore_index=True,
    ).drop_duplicates(["left", "right"], keep="first").reset_index(drop=True)
    encoded = encode_records(keyed)
    levels = compare_pairs(encoded, pairs["left"].to_numpy(), pairs["right"].to_numpy())
    advance(3)

    # Copies of one record count once, and one known person as four records at most (`learning`): 300 copies
    # of one shopper's record taught EM that matches always agree.
    profile_of = record_profiles(encoded)
    learning = learning_sample(pairs, fixed, profile_of, with_pii, _stable_hash(keys))
    frequencies, baselines = {}, {}
    for name, column in (("first_name", "first_canonical"), ("last_name", "last_name"), ("name_pair", "name_pair")):
        frequencies[name], baselines[name] = term_frequencies(keyed[column].iloc[learning.distinct_records])
    training = levels.iloc[learning.pairs[_sample(pairs.iloc[learning.pairs], keys, settings.em_max_pairs)]]
    random_left, random_right = _random_pairs(learning.people, RANDOM_PAIRS, keys)
    random_levels = compare_pairs(encoded, random_left, random_right)
    distinct_records = len(learning.distinct_records)  # copies are not more records for the prior
    if labelled_pairs is not None:
        labelled_levels, is_match = _labelled_levels(encoded, index_of, labelled_pairs)
        model = train_with_labels(labelled_levels, is_match, random_levels, training, records=distinct_records)
    else:
        model = train_with_em(training, random_levels, records=distinct_records)
    model.term_frequency_baseline = baselines
    agreed = {
        "first_name": keyed["first_canonical"].iloc[pairs["left"].to_numpy()].reset_index(drop=True),
        "last_name": keyed["last_name"].iloc[pairs["left"].to_numpy()].reset_index(drop=True),
        "name_pair": keyed["name_pair"].iloc[pairs["left"].to_numpy()].reset_index(drop=True),
    }
    weight, probability, contributions = score_pairs(levels, model, agreed, frequencies)
    advance(4)

    deterministic = (pairs["source"] == "deterministic").to_numpy()
    pairs["match_weight"] = weight
    pairs["probability"] = np.where(deterministic, 1.0, probability)
    pairs["model_probability"] = probability
    probable = (probability >= settings.match_threshold) & personal_agreement(levels)
    edges = pairs[deterministic | probable].copy()
    clusters = cluster_records(keyed, edges.reset_index(drop=True))
    edges["accepted"] = clusters.accepted
    edges["refused_because"] = clusters.refusals
    edges["joined"] = clusters.joined
    advance(5)

    previous = None
    if previous_map is not None and len(previous_map):
        previous = pd.Series(previous_map["customer_id"].to_numpy(), index=record_keys(previous_map).to_numpy())
    customer_ids, next_sequence, id_changes, merged_now, split = assign_stable_ids(
        keys, clusters.labels, previous, next_sequence)
    merged_into, merged_then_split = carry_merges(merged_before or {}, merged_now, split, merged_then_split_before or {})
    newly_unfollowed = len(merged_then_split) - len(merged_then_split_before or {})
    if newly_unfollowed:
        log.warning("%d id(s) retired by earlier merges now lead nowhere: the customers they went to split; "
                    "consents granted under them leave the online store at the next `cdp features materialize`",
                    newly_unfollowed)
    identity_map = _identity_map(records, customer_ids, edges, with_pii, held_back)
    advance(6)

    profiles = build_profiles(
        records, standardized, identity_map,
        rules=dict(settings.survivorship), source_priority=settings.source_priority,
        custom_columns=custom_columns, weakest_links=_weakest_links(edges, customer_ids),
    )
    sizes = identity_map.groupby("customer_id").size()
    large = sizes[sizes > settings.large_cluster_size].sort_values(ascending=False)
    # copies of one record (a till writing one per visit) are told apart from many different ones
    distinct = pd.Series(profile_of).groupby(customer_ids).nunique().reindex(large.index)
    for customer_id, size in large.items():
        log.warning("large cluster for review: %s holds %d records (%d distinct, the others copies of them; "
                    "identity.large_cluster_size is %d); all are kept, and `cdp identity explain %s` shows what "
                    "joined them", customer_id, size, distinct[customer_id], settings.large_cluster_size, customer_id)
    model_warnings = []
    if model.trained_on == "em" and model.iterations == 0 and len(pairs):
        model_warnings.append(
            f"too few candidate pairs to learn match weights ({len(pairs):,}; EM needs {EM_MIN_PAIRS} in a training "
            "block): default m probabilities were used, so probabilistic matches are unreliable; resolve more "
            "records at once, or give labelled pairs (identity.labelled_pairs)")
    for warning in model_warnings:
        log.warning("%s", warning)
    edge_table = _edge_table(edges, levels, contributions, keys, customer_ids)
    report = {
        "records": int(len(records)),
        "records_without_pii": int((~with_pii).sum()),
        "customers": int(identity_map["customer_id"].nunique()),
        "candidate_pairs": int(len(candidates.left)),
        "deterministic_edges": fixed["rule"].value_counts().to_dict(),
        "probabilistic_edges_above_threshold": int((~deterministic & (probability >= settings.match_threshold)).sum()),
        "probabilistic_edges_without_personal_agreement": int(
            (~deterministic & (probability >= settings.match_threshold) & ~probable).sum()
        ),
        "refused_joins": pd.Series([r for r in clusters.refusals if r]).value_counts().to_dict(),
        "contact_points_not_used_alone": skipped,
        "large_cluster_count": int(len(large)),
        # the largest LARGE_CLUSTERS_LISTED; every one is in the log
        "large_clusters": [{"customer_id": c, "records": int(n), "distinct_records": int(distinct[c])}
                           for c, n in large.head(LARGE_CLUSTERS_LISTED).items()],
        "match_threshold": settings.match_threshold,
        "model": {"trained_on": model.trained_on, "iterations": model.iterations, "prior": round(model.prior, 5),
                  "warnings": model_warnings,
                  # copies count once, one person's many records a little (`learning`)
                  "pairs_learnt_from": int(len(training)), "records_for_u": int(len(learning.people))},
        "ids": id_changes,
    }
    advance(7)
    return Resolution(identity_map, profiles, edge_table, model, next_sequence, report, merged_into, merged_then_split)


def _standardized_groups(groups: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Configured nickname groups written as names are compared: case-folded, transliterated."""
    def name(text: str) -> str:
        return (standardize_name(text) or "").split(" ")[0]

    return {name(canonical): tuple(filter(None, map(name, variants))) for canonical, variants in groups.items()
            if name(canonical)}


def carry_merges(merged_before: dict[str, str], merged_now: dict[str, str], split_now: set[str],
                 merged_then_split_before: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The merge history after this run: (retired id -> its survivor now, retired id -> the survivor
    that split since). An id retired earlier into a customer that split in this run may belong to
    either part (a merge undone by a later run, e.g. once a nickname setting is removed): following it
    to the part that kept the id could erase or export another person, so it is set apart."""
    merged_then_split = dict(merged_then_split_before)
    kept = {}
    for retired, survivor in merged_before.items():
        if survivor in split_now:
            merged_then_split[retired] = survivor
        else:
            kept[retired] = survivor
    return follow_merges({**kept, **merged_now}), merged_then_split


def follow_merges(merged_into: dict[str, str]) -> dict[str, str]:
    """Each retired id -> the id its records are under now (an id merged into one that was merged
    again points at the last)."""
    final = {}
    for retired in merged_into:
        target, seen = merged_into[retired], {retired}
        while target in merged_into and target not in seen:
            seen.add(target)
            target = merged_into[target]
        final[retired] = target
    return final


def _labelled_levels(
    encoded: EncodedRecords, index_of: pd.Series, labelled: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    left = (labelled["source_a"].astype(str) + ":" + labelled["id_a"].astype(str)).map(index_of)
    right = (labelled["source_b"].astype(str) + ":" + labelled["id_b"].astype(str)).map(index_of)
    known = left.notna() & right.notna()
    if not known.any():
        raise ValueError("none of the labelled pairs refers to a known record")
    levels = compare_pairs(encoded, left[known].to_numpy(np.int64), right[known].to_numpy(np.int64))
    return levels, labelled.loc[known, "is_match"].astype(bool).to_numpy()


def _weakest_links(edges: pd.DataFrame, customer_ids: np.ndarray) -> pd.Series:
    """Per customer of several records, the lowest match probability among the links that hold its records
    together: one probabilistic bridge between two e-mail pairs shows, though every record has an exact
    link of its own."""
    joining = edges[edges["joined"]]
    return pd.Series(joining["probability"].to_numpy(), index=customer_ids[joining["left"].to_numpy()]) \
        .groupby(level=0).min()


def _identity_map(
    records: pd.DataFrame, customer_ids: np.ndarray, edges: pd.DataFrame, with_pii: np.ndarray,
    held_back: np.ndarray,
) -> pd.DataFrame:
    """Per record: its strongest accepted edge says how and how surely it joined its customer; and
    which of its contact points joined nothing on their own (`held_back`, `matching.deterministic_edges`)."""
    accepted = edges[edges["accepted"]]
    columns = ["probability", "match_weight", "rule"]
    ends = pd.concat(  # ties in probability (deterministic edges are all 1) go to the heavier evidence
        [accepted[["left", *columns]].rename(columns={"left": "record"}),
         accepted[["right", *columns]].rename(columns={"right": "record"})],
        ignore_index=True,
    ).sort_values(["probability", "match_weight"], ascending=False, kind="stable").drop_duplicates("record").set_index("record")
    index = np.arange(len(records))
    probability = ends["probability"].reindex(index).to_numpy()
    rule = ends["rule"].reindex(index).to_numpy(dtype=object)
    alone = pd.isna(probability)
    rule[alone] = np.where(with_pii[alone], "unmatched", "no_pii")
    return pd.DataFrame(
        {
            "source": records["source"].to_numpy(),
            "source_id": records["source_id"].to_numpy(),
            "customer_id": customer_ids,
            "match_probability": np.where(alone, 1.0, probability).round(6),
            "matched_by": [r if r in ("unmatched", "no_pii", "link") or str(r).startswith("exact_")
                           else f"probabilistic:{r}" for r in rule],
            "held_back": held_back,
        }
    )


def _edge_table(
    edges: pd.DataFrame, levels: pd.DataFrame, contributions: pd.DataFrame, keys: pd.Series, customer_ids: np.ndarray
) -> pd.DataFrame:
    rows = edges.index.to_numpy()
    table = pd.DataFrame(
        {
            "left_record": keys.to_numpy()[edges["left"].to_numpy()],
            "right_record": keys.to_numpy()[edges["right"].to_numpy()],
            "left_customer_id": customer_ids[edges["left"].to_numpy()],
            "right_customer_id": customer_ids[edges["right"].to_numpy()],
            "rule": edges["rule"].to_numpy(),
            "kind": edges["source"].to_numpy(),
            "probability": edges["probability"].to_numpy(),
            "model_probability": edges["model_probability"].to_numpy(),
            "match_weight": edges["match_weight"].to_numpy(),
            "accepted": edges["accepted"].to_numpy(),
            "joined": edges["joined"].to_numpy(),
            "refused_because": edges["refused_because"].to_numpy(),
        }
    )
    for name, names in LEVELS.items():
        table[f"{name}_level"] = np.asarray(names, dtype=object)[levels[name].to_numpy()[rows]]
        table[f"{name}_weight"] = contributions[name].to_numpy()[rows].round(3)
    return table
