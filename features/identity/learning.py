"""Which records and pairs the match weights are learnt from.

EM learns m from the candidate pairs, u comes from random pairs, term frequencies and the prior from
the records. Taken as they come, one person's hundreds of records (a till writing a record per visit)
make most of the pairs, and the weights describe that person: in a user test, 300 copies of one shopper's
record moved the m of an exact e-mail from 0.79 to 0.99 and 35 records of 33 other customers to new ids. So copies
of one record count once, and one known person counts at most as a person of four records. Every choice
is by hash, so it does not depend on unrelated records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.identity.matching import window_pairs

RECORDS_PER_KNOWN_PERSON = 4
"""One known person (`known_people`) counts at most as a person of this many records: in u's random pairs
(their records are drawn from) and in EM (the pairs of that many records, `PAIRS_PER_KNOWN_PERSON`). In the
demo's data one known person in 23,000 has more; a person with hundreds would teach EM only themselves,
and in a small workspace their records' pairs with each other would be a good share of the random pairs."""
PAIRS_PER_KNOWN_PERSON = RECORDS_PER_KNOWN_PERSON * (RECORDS_PER_KNOWN_PERSON - 1) // 2


@dataclass(frozen=True)
class LearningSample:
    pairs: np.ndarray
    """Positions of the candidate pairs EM learns m from."""
    distinct_records: np.ndarray
    """One record with PII per profile: what term frequencies and the prior count."""
    people: np.ndarray
    """Distinct records, at most `RECORDS_PER_KNOWN_PERSON` of one known person: what u's random pairs are
    drawn from."""


def learning_sample(pairs: pd.DataFrame, fixed: pd.DataFrame, profile_of: np.ndarray, with_pii: np.ndarray,
                    record_hashes: np.ndarray) -> LearningSample:
    """The pairs and records to learn from (module docstring), given the candidate and deterministic pairs,
    each record's profile (`matching.record_profiles`) and a stable hash of each record's key."""
    person_of = known_people(fixed, np.where(with_pii, profile_of, -1))
    distinct_records = first_per_group(np.flatnonzero(with_pii), profile_of, record_hashes, 1)
    return LearningSample(
        pairs=learning_pairs(pairs, profile_of, person_of, record_hashes),
        distinct_records=distinct_records,
        people=first_per_group(distinct_records, person_of, record_hashes, RECORDS_PER_KNOWN_PERSON),
    )


def known_people(fixed: pd.DataFrame, profile_of: np.ndarray) -> np.ndarray:
    """Per record, a number for the records known to be one person before any weight is learnt: joined by
    deterministic edges (an e-mail or phone no one else holds, a link) or copies of one record (the same
    profile; -1 joins nothing). Not clusters: a contact point that different people share joins nobody."""
    same_left, same_right = window_pairs(profile_of, 2)
    return connected_groups(len(profile_of), np.concatenate([fixed["left"].to_numpy(np.int64), same_left]),
                            np.concatenate([fixed["right"].to_numpy(np.int64), same_right]))


def learning_pairs(pairs: pd.DataFrame, profile_of: np.ndarray, person_of: np.ndarray, record_hashes: np.ndarray,
                   per_person: int = PAIRS_PER_KNOWN_PERSON) -> np.ndarray:
    """Positions of the pairs EM learns from: one pair per pair of profiles (the others compare alike and
    only repeat it), and at most `per_person` pairs inside one known person."""
    left, right = pairs["left"].to_numpy(np.int64), pairs["right"].to_numpy(np.int64)
    hashes = _pair_hashes(record_hashes, left, right)
    low, high = np.minimum(profile_of[left], profile_of[right]), np.maximum(profile_of[left], profile_of[right])
    distinct = np.flatnonzero(_lowest_per_group(low * (int(profile_of.max(initial=0)) + 1) + high, hashes, 1))
    inside = person_of[left[distinct]] == person_of[right[distinct]]
    # a pair of two people is a group of its own: negative numbers, apart from every person's
    group_of_pair = np.where(inside, person_of[left[distinct]], -1 - np.arange(len(distinct)))
    return distinct[_lowest_per_group(group_of_pair, hashes[distinct], per_person)]


def first_per_group(population: np.ndarray, group_of: np.ndarray, record_hashes: np.ndarray, count: int) -> np.ndarray:
    """The `count` records of each group among `population` whose keys hash lowest, in order."""
    return np.sort(population[_lowest_per_group(group_of[population], record_hashes[population], count)])


def connected_groups(size: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The connected components of `size` nodes joined by the edges (left, right): per node, the smallest
    node of its component. Vectorized (hook roots onto the smaller, then jump pointers): a chain of a
    million records takes a tenth of a second."""
    labels = np.arange(size, dtype=np.int64)
    while len(left):
        before = labels
        labels = labels.copy()
        smaller = np.minimum(before[left], before[right])
        np.minimum.at(labels, before[left], smaller)
        np.minimum.at(labels, before[right], smaller)
        while not np.array_equal(jumped := labels[labels], labels):
            labels = jumped
        if np.array_equal(labels, before):
            break
    return labels


def _lowest_per_group(groups: np.ndarray, hashes: np.ndarray, cap: int) -> np.ndarray:
    """Mask of the `cap` items of each group with the lowest hashes."""
    order = np.lexsort((hashes, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if len(order) else order
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(len(groups), dtype=bool)
    keep[order[rank < cap]] = True
    return keep


def _pair_hashes(record_hashes: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return record_hashes[left] * np.uint64(0x9E3779B97F4A7C15) ^ record_hashes[right]
