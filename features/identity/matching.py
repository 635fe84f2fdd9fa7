"""Candidate pairs and their comparison vectors.

Deterministic edges come from exact standardized e-mail or phone and from the `links` table;
a contact point shared by clearly different people (a household e-mail) is not used on its own.
Probabilistic candidates come from several blocking rules, unioned; within a block every pair is
compared, and within an over-common block only a sliding window of neighbours, so the number of
pairs grows about linearly with the number of records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler
from rapidfuzz.process import cpdist

from features.identity.conflicts import birth_dates_conflict, first_names_conflict

# Blocking rules: each a list of standardized columns that must all be present and equal.
BLOCKING_RULES: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone",),
    "email_local": ("email_local",),
    "name_pair": ("name_pair",),
    "last_name_postcode": ("last_name", "postcode"),
    "birth_date_first_initial": ("date_of_birth", "first_initial"),
    "address": ("postcode", "house_number"),
    "first_name_birth_date": ("first_canonical", "date_of_birth"),
    "last_name_birth_year_city": ("last_name", "birth_year", "city"),
    "last_name_birth_date": ("last_name", "date_of_birth"),
    "last_name_first_initial": ("last_name", "first_initial"),
    "first_name_last_initial": ("first_canonical", "last_initial"),
}

# Comparison levels per field: 0 means "a value is missing" and carries no evidence.
LEVELS: dict[str, tuple[str, ...]] = {
    "first_name": ("null", "exact", "jaro_winkler_0.92", "jaro_winkler_0.80", "initial", "different"),
    "last_name": ("null", "exact", "jaro_winkler_0.92", "jaro_winkler_0.80", "different"),
    "date_of_birth": ("null", "exact", "two_of_three_parts", "same_year", "different"),
    "email": ("null", "exact", "domain_typo", "different"),
    "phone": ("null", "exact", "same_last_7_digits", "different"),
    # Address, postcode and city say the same thing several times over: one comparison, so
    # their agreement is not counted three times.
    "location": (
        "null", "same_address_and_postcode", "same_address", "same_postcode", "similar_address",
        "same_postcode_area", "same_city", "different",
    ),
}
PERSONAL_FIELDS = ("first_name", "date_of_birth", "email")
"""Fields a household does not share: a probabilistic match needs one of them to agree."""
TERM_FREQUENCY_FIELDS = ("first_name", "last_name")


@dataclass
class CandidatePairs:
    left: np.ndarray
    right: np.ndarray
    rule: np.ndarray
    """Name of the first blocking rule that produced the pair."""


def add_blocking_keys(standardized: pd.DataFrame) -> pd.DataFrame:
    """Derived keys that blocking needs (name pair in either order, first initial)."""
    out = standardized.copy()
    first = out["first_canonical"]
    last = out["last_name"]
    both = first.notna() & last.notna()
    out["name_pair"] = None
    out.loc[both, "name_pair"] = [
        "|".join(sorted((f, lst))) for f, lst in zip(first[both], last[both], strict=True)
    ]
    out["first_initial"] = first.map(lambda n: n[0] if isinstance(n, str) and n else None)
    out["last_initial"] = last.map(lambda n: n[0] if isinstance(n, str) and n else None)
    return out


def _group_codes(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One integer per distinct key; -1 where any key column is missing."""
    present = frame[list(columns)].notna().all(axis=1).to_numpy()
    codes = np.full(len(frame), -1, dtype=np.int64)
    if present.any():
        keys = frame.loc[present, list(columns)].astype(str).agg("\x1f".join, axis=1)
        codes[present] = pd.factorize(keys)[0]
    return codes


def window_pairs(codes: np.ndarray, window: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of records sharing a code, at most `window - 1` neighbours apart after sorting."""
    valid = np.flatnonzero(codes >= 0)
    if len(valid) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    secondary = order[valid] if order is not None else valid
    sorted_records = valid[np.lexsort((secondary, codes[valid]))]
    sorted_codes = codes[sorted_records]
    lefts, rights = [], []
    for offset in range(1, window):
        same = sorted_codes[offset:] == sorted_codes[:-offset]
        if not same.any():
            break
        lefts.append(sorted_records[:-offset][same])
        rights.append(sorted_records[offset:][same])
    if not lefts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    left, right = np.concatenate(lefts), np.concatenate(rights)
    return np.minimum(left, right), np.maximum(left, right)


def generate_candidate_pairs(keyed: pd.DataFrame, window: int) -> CandidatePairs:
    """Union of all blocking rules' pairs, each pair once, labelled with its first rule."""
    secondary = pd.factorize(keyed["email"].fillna("") + keyed["date_of_birth"].fillna(""))[0]
    size = len(keyed)
    encoded_parts, rule_parts = [], []
    for index, columns in enumerate(BLOCKING_RULES.values()):
        left, right = window_pairs(_group_codes(keyed, columns), window, secondary)
        encoded_parts.append(left * size + right)
        rule_parts.append(np.full(len(left), index, dtype=np.int16))
    encoded = np.concatenate(encoded_parts) if encoded_parts else np.empty(0, np.int64)
    rules = np.concatenate(rule_parts) if rule_parts else np.empty(0, np.int16)
    encoded, first = np.unique(encoded, return_index=True)
    names = np.array(list(BLOCKING_RULES), dtype=object)
    return CandidatePairs(encoded // size, encoded % size, names[rules[first]] if len(first) else np.empty(0, object))


def _similarity(left: pd.Series, right: pd.Series, scorer) -> np.ndarray:
    both = left.notna().to_numpy() & right.notna().to_numpy()
    scores = np.zeros(len(left), dtype=np.float64)
    if both.any():
        scores[both] = cpdist(
            left.to_numpy()[both].tolist(), right.to_numpy()[both].tolist(), scorer=scorer, workers=-1
        )
    return scores


def _levels_from_similarity(
    left: pd.Series,
    right: pd.Series,
    exact: np.ndarray | None,
    similarity: np.ndarray,
    thresholds: tuple[float, ...],
) -> np.ndarray:
    """0 = a value missing, then `exact` (when given), then each threshold, then different."""
    first_similar = 1 if exact is None else 2
    levels = np.full(len(left), first_similar + len(thresholds), dtype=np.int8)
    for rank, threshold in reversed(list(enumerate(thresholds))):
        levels[similarity >= threshold] = first_similar + rank
    if exact is not None:
        levels[exact] = 1
    levels[(left.isna() | right.isna()).to_numpy()] = 0
    return levels


def _initial_agrees(left: pd.Series, right: pd.Series) -> np.ndarray:
    a = left.fillna("").to_numpy(dtype=object)
    b = right.fillna("").to_numpy(dtype=object)
    return np.array(
        [bool(x) and bool(y) and (len(x) == 1 or len(y) == 1) and x[0] == y[0] for x, y in zip(a, b, strict=True)],
        dtype=bool,
    )


def personal_agreement(levels: pd.DataFrame) -> np.ndarray:
    """True where a first name, a date of birth or an e-mail agrees (not merely the address,
    surname or a phone, which a household shares)."""
    agree = np.zeros(len(levels), dtype=bool)
    for field in PERSONAL_FIELDS:
        names = LEVELS[field]
        agreeing = [i for i, n in enumerate(names) if n not in ("null", "different", "same_year")]
        agree |= np.isin(levels[field].to_numpy(), agreeing)
    return agree


def _location_levels(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    address = _similarity(a["address"], b["address"], fuzz.token_set_ratio) / 100.0
    postcode = (a["postcode"] == b["postcode"]).fillna(False).to_numpy(dtype=bool)
    area = (a["postcode_area"] == b["postcode_area"]).fillna(False).to_numpy(dtype=bool)
    city = (a["city"] == b["city"]).fillna(False).to_numpy(dtype=bool)
    known_a = a[["address", "postcode", "city"]].notna().any(axis=1).to_numpy()
    known_b = b[["address", "postcode", "city"]].notna().any(axis=1).to_numpy()
    postcodes_differ = (a["postcode"].notna() & b["postcode"].notna()).to_numpy() & ~postcode
    conditions = [
        ~(known_a & known_b),
        (address >= 0.9) & postcode,
        (address >= 0.9) & ~postcodes_differ,
        postcode,
        (address >= 0.7) & area,
        area,
        city,
    ]
    return np.select(conditions, list(range(len(conditions))), default=len(conditions)).astype(np.int8)


def compare_pairs(keyed: pd.DataFrame, left: np.ndarray, right: np.ndarray) -> pd.DataFrame:
    """Comparison level per field for each pair (see LEVELS), vectorized over pairs."""
    a = keyed.iloc[left].reset_index(drop=True)
    b = keyed.iloc[right].reset_index(drop=True)
    out = pd.DataFrame(index=a.index)

    swapped = (a["first_name"] == b["last_name"]).to_numpy() & (a["last_name"] == b["first_name"]).to_numpy()
    for field, canonical in (("first_name", "first_canonical"), ("last_name", "last_name")):
        exact = (a[canonical] == b[canonical]).to_numpy() | swapped
        similarity = _similarity(a[field], b[field], JaroWinkler.normalized_similarity)
        thresholds: tuple[float, ...] = (0.92, 0.80)
        if field == "first_name":
            # "k" and "katherine": an initial agrees with a name that starts with it
            similarity = np.where(similarity >= 0.80, similarity, 0.0)
            similarity[_initial_agrees(a[field], b[field])] = 0.5
            thresholds = (0.92, 0.80, 0.5)
        out[field] = _levels_from_similarity(a[field], b[field], exact, similarity, thresholds)

    parts_equal = sum(
        (a[p] == b[p]).fillna(False).to_numpy(dtype=bool) for p in ("birth_year", "birth_month", "birth_day")
    )
    birth_missing = (a["date_of_birth"].isna() | b["date_of_birth"].isna()).to_numpy()
    birth = np.full(len(a), 4, dtype=np.int8)
    birth[(a["birth_year"] == b["birth_year"]).fillna(False).to_numpy(dtype=bool)] = 3
    birth[parts_equal >= 2] = 2
    birth[parts_equal == 3] = 1
    birth[birth_missing] = 0
    out["date_of_birth"] = birth

    # Local parts are built from names, so namesakes' addresses look alike: only the same local
    # part at a misspelt domain (gmial.com) counts as similar.
    email_exact = (a["email"] == b["email"]).to_numpy()
    same_local = (a["email_local"] == b["email_local"]).fillna(False).to_numpy(dtype=bool)
    domain_distance = _similarity(a["email"].str.split("@").str[1], b["email"].str.split("@").str[1],
                                  DamerauLevenshtein.distance)
    domain_typo = (same_local & (domain_distance <= 2)).astype(float)
    out["email"] = _levels_from_similarity(a["email"], b["email"], email_exact, domain_typo, (1.0,))

    phone_exact = (a["phone"] == b["phone"]).to_numpy()
    tail_a = a["phone"].str[-7:]
    tail_b = b["phone"].str[-7:]
    tail_same = (tail_a == tail_b).fillna(False).to_numpy(dtype=bool)
    out["phone"] = _levels_from_similarity(
        a["phone"], b["phone"], phone_exact, tail_same.astype(float), (1.0,)
    )

    out["location"] = _location_levels(a, b)
    return out.astype(np.int8)


def shared_contact_points(keyed: pd.DataFrame, column: str) -> set[str]:
    """Values of a contact column held by clearly different people (different first names or
    birth dates), which must not merge records on their own."""
    present = keyed[keyed[column].notna()]
    counts = present[column].value_counts()
    repeated = present[present[column].isin(counts[counts > 1].index)]
    shared: set[str] = set()
    for value, group in repeated.groupby(column, sort=False):
        people = list(zip(group["first_canonical"], group["last_name"], group["date_of_birth"], strict=True))
        for i, (first_a, last_a, birth_a) in enumerate(people):
            if any(
                birth_dates_conflict(birth_a, birth_b) or first_names_conflict(first_a, first_b, last_a, last_b)
                for first_b, last_b, birth_b in people[i + 1 :]
            ):
                shared.add(value)
                break
    return shared


def deterministic_edges(
    keyed: pd.DataFrame, links: pd.DataFrame | None, record_index: pd.Series
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Edges from exact e-mail or phone (except shared contact points) and from `links`."""
    edges = []
    skipped: dict[str, int] = {}
    for column in ("email", "phone"):
        shared = shared_contact_points(keyed, column)
        skipped[f"shared_{column}s"] = len(shared)
        usable = keyed[keyed[column].notna() & ~keyed[column].isin(shared)]
        codes = np.full(len(keyed), -1, dtype=np.int64)
        codes[usable.index.to_numpy()] = pd.factorize(usable[column])[0]
        left, right = window_pairs(codes, 2)  # a chain per group keeps it connected and linear
        edges.append(pd.DataFrame({"left": left, "right": right, "rule": f"exact_{column}"}))
    if links is not None and len(links):
        a = links["source_a"] + ":" + links["id_a"]
        b = links["source_b"] + ":" + links["id_b"]
        left = a.map(record_index)
        right = b.map(record_index)
        known = left.notna() & right.notna() & (left != right)
        skipped["links_to_unknown_records"] = int((~(left.notna() & right.notna())).sum())
        lo = np.minimum(left[known].to_numpy(np.int64), right[known].to_numpy(np.int64))
        hi = np.maximum(left[known].to_numpy(np.int64), right[known].to_numpy(np.int64))
        edges.append(pd.DataFrame({"left": lo, "right": hi, "rule": "link"}))
    result = pd.concat(edges, ignore_index=True).drop_duplicates(["left", "right"])
    return result.reset_index(drop=True), skipped
