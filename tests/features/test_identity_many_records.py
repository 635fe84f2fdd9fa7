"""One person with hundreds of records (a till writing a record per visit) must not teach the match
weights what matches look like: before, 300 copies of one shopper's record made most of the pairs EM
learnt from, the e-mail m went from 0.79 to 0.99, and 35 records of 33 other customers moved to new ids."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from cdp.config import load_settings
from features.identity.learning import (
    connected_groups,
    first_per_group,
    known_people,
    learning_pairs,
)
from features.identity.resolution import resolve_identities
from features.identity.store import load_identity_records, load_links

SETTINGS = load_settings().identity
COPIES = 300


@pytest.fixture(scope="module")
def resolved_before(simulated):
    """The small simulated retailer's records, links, and their resolution without the many records."""
    _, workspace = simulated
    records, _ = load_identity_records(workspace)
    links = load_links(workspace)
    return records, links, resolve_identities(records, links, SETTINGS)


def one_persons_records(records: pd.DataFrame, varied: bool) -> pd.DataFrame:
    """COPIES records of the first customer with a name, e-mail, birth date and address: the same record
    each time, or written a little differently (a nickname, a phone or a postcode given on some)."""
    complete = records.dropna(subset=["first_name", "last_name", "email", "date_of_birth", "address_line"])
    person = complete.sort_values(["source", "source_id"]).iloc[0]
    many = pd.DataFrame([person] * COPIES).reset_index(drop=True)
    many["source"] = "store"
    many["source_id"] = [f"POS{i:05d}" for i in range(COPIES)]
    if varied:
        rows = np.arange(COPIES)
        many.loc[rows % 3 == 0, "phone"] = "07700 900123"
        many.loc[rows % 7 == 0, "first_name"] = many["first_name"].str[:1]  # an initial
        many.loc[rows % 4 == 0, "postcode"] = None
    return many


def keys(frame: pd.DataFrame) -> pd.Series:
    return frame["source"] + ":" + frame["source_id"]


@pytest.mark.parametrize("varied", [False, True], ids=["copies", "varied"])
def test_one_person_with_many_records_changes_no_other_customer_nor_the_weights(resolved_before, varied, caplog):
    # Given a resolved retailer, and then 300 records of one of its customers from a till
    records, links, before = resolved_before
    many = one_persons_records(records, varied)
    # When resolved again with them
    with caplog.at_level(logging.WARNING):
        after = resolve_identities(pd.concat([records, many], ignore_index=True), links, SETTINGS,
                                   previous_map=before.identity_map, next_sequence=before.next_sequence)
    # Then every earlier record keeps its customer (before the fix 6 of them moved to other customers)
    earlier = before.identity_map.set_index(keys(before.identity_map))["customer_id"]
    now = after.identity_map.set_index(keys(after.identity_map))["customer_id"]
    moved = earlier[now.reindex(earlier.index) != earlier]
    assert moved.empty, moved
    # ...the weights are learnt as before (the m of an exact first name went from 0.88 to 0.996)
    for field in before.model.m:
        m_before, m_after = np.asarray(before.model.m[field]), np.asarray(after.model.m[field])
        u_before, u_after = np.asarray(before.model.u[field]), np.asarray(after.model.u[field])
        assert np.abs(m_after - m_before).max() < 0.05, (field, m_before, m_after)
        assert np.abs(np.log2(u_after / u_before)).max() < 0.5, (field, u_before, u_after)
    assert abs(np.log2(after.model.prior / before.model.prior)) < 0.2
    # ...nothing is lost: every record has a customer, and the person's records are one customer
    assert len(after.identity_map) == len(records) + COPIES and now.notna().all()
    assert now[keys(many)].nunique() == 1
    # ...and the cluster is reported for review, saying how many of its records differ
    large = after.report["large_clusters"]
    assert after.report["large_cluster_count"] == 1 and large[0]["records"] > COPIES - 1
    assert large[0]["distinct_records"] < (12 if varied else 3)
    assert f"large cluster for review: {large[0]['customer_id']}" in caplog.text


def test_copies_count_once_and_one_known_person_adds_few_pairs():
    # Given six records: 0, 1 and 2 copies of one record, 3 another record of that person (a deterministic
    # edge 2-3), 4 and 5 other people
    profile_of = np.array([0, 0, 0, 1, 2, 3])
    fixed = pd.DataFrame({"left": [2], "right": [3]})
    hashes = np.arange(6, dtype=np.uint64) * np.uint64(7919)
    pairs = pd.DataFrame({"left": [0, 0, 1, 0, 1, 2, 3, 4], "right": [1, 2, 2, 3, 3, 3, 4, 5]})
    # When the people are told, and the pairs EM learns from chosen with at most two inside one person
    person_of = known_people(fixed, profile_of)
    chosen = pairs.iloc[learning_pairs(pairs, profile_of, person_of, hashes, per_person=2)]
    # Then 0-3 are one person and 4, 5 others
    assert person_of.tolist() == [0, 0, 0, 0, 4, 5]
    # ...the copies' three pairs with each other count once, and so do their three pairs with record 3
    inside = chosen[chosen["right"] <= 3]
    assert len(inside) == 2 and set(profile_of[inside["right"]]) == {0, 1}
    # ...pairs of two people are all kept (3-4, 4-5)
    assert len(chosen[chosen["right"] > 3]) == 2
    # ...and u's random pairs are drawn from at most two records per person (here), one per profile
    assert first_per_group(np.arange(6), profile_of, hashes, 1).tolist() == [0, 3, 4, 5]
    assert first_per_group(np.arange(6), person_of, hashes, 2).tolist() == [0, 1, 4, 5]


def test_records_joined_in_a_chain_are_one_group():
    # Given edges 0-1, 1-2 and 4-3 between five records
    groups = connected_groups(5, np.array([0, 1, 4]), np.array([1, 2, 3]))
    # Then 0, 1 and 2 are one group, 3 and 4 another, each named by its smallest record
    assert groups.tolist() == [0, 0, 0, 3, 3]
