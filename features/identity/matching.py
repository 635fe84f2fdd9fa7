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

from features.identity.conflicts import (
    birth_dates_conflict,
    first_names_conflict,
    scripts_comparable,
    surnames_conflict,
)
from features.identity.nicknames import NAME_ALTERNATIVES_SEPARATOR

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
}

# Comparison levels per field: 0 means "a value is missing" and carries no evidence.
LEVELS: dict[str, tuple[str, ...]] = {
    "first_name": ("null", "exact", "jaro_winkler_0.92", "jaro_winkler_0.80", "initial", "different"),
    "last_name": ("null", "exact", "jaro_winkler_0.92", "jaro_winkler_0.80", "different"),
    # a day and month swapped (1984-03-07 / 1984-07-03) is one date written wrong, as close as two parts
    "date_of_birth": ("null", "exact", "two_parts_or_day_month_swapped", "same_year", "different"),
    # The same family mailbox says "one household", not "one person": its own level and weight.
    "email": ("null", "exact", "domain_typo", "different", "same_family_mailbox"),
    # Two different mobile numbers say more than a mobile and a landline: a person usually has one
    # mobile, and a household one landline.
    "phone": ("null", "exact", "different_with_a_landline", "different_mobiles"),
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
CONTACT_GROUP_WINDOW = 50
"""Records sharing one e-mail or phone that are compared with each other for conflicts."""


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
    return out


def _group_codes(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One integer per distinct key; -1 where any key column is missing."""
    groups = frame.groupby(list(columns), sort=False, dropna=True).ngroup()
    return groups.fillna(-1).to_numpy(dtype=np.int64)


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


@dataclass
class EncodedRecords:
    """Standardized records as integer codes (-1 = missing), so comparing millions of pairs is
    array arithmetic, and string similarity is computed once per distinct pair of values."""

    codes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    birth: np.ndarray
    """Year, month, day per record; -1 where unknown."""
    first_letter: np.ndarray
    first_length: np.ndarray
    landline: np.ndarray
    family_email: np.ndarray
    """A family mailbox ("thesmiths@…", standardize.family_mailboxes): shared by a household."""


ENCODED_COLUMNS = (
    "first_name", "first_canonical", "first_names", "last_name", "email", "email_local", "email_domain", "phone",
    "address", "postcode", "postcode_area", "city", "first_script", "last_script",
)


def encode_records(keyed: pd.DataFrame) -> EncodedRecords:
    frame = keyed.assign(
        email_domain=keyed["email"].str.split("@").str[1],
    )
    codes, values = {}, {}
    for column in ENCODED_COLUMNS:
        codes[column], values[column] = pd.factorize(frame[column], use_na_sentinel=True)
        values[column] = np.asarray(values[column], dtype=object)
    birth = np.stack(
        [frame[p].fillna(-1).to_numpy(dtype=np.int64) for p in ("birth_year", "birth_month", "birth_day")], axis=1
    )
    first = frame["first_name"].fillna("")
    first_letter = pd.factorize(first.str[:1])[0]
    first_letter[first.to_numpy() == ""] = -1
    landline = frame["phone_is_landline"].to_numpy(dtype=bool)
    return EncodedRecords(codes, values, birth, first_letter, first.str.len().to_numpy(), landline,
                          frame["email_is_family"].to_numpy(dtype=bool))


def _pair_similarity(records: EncodedRecords, column: str, a: np.ndarray, b: np.ndarray, scorer) -> np.ndarray:
    """Similarity of each pair's values, computed once per distinct pair of values."""
    codes = records.codes[column]
    left, right = codes[a], codes[b]
    scores = np.zeros(len(a), dtype=np.float64)
    mask = (left >= 0) & (right >= 0) & (left != right)
    if mask.any():
        distinct_values = len(records.values[column])
        keys = left[mask].astype(np.int64) * distinct_values + right[mask]
        unique_keys, inverse = np.unique(keys, return_inverse=True)
        uniques = records.values[column]
        computed = cpdist(
            uniques[unique_keys // distinct_values].tolist(), uniques[unique_keys % distinct_values].tolist(),
            scorer=scorer, workers=-1,
        )
        scores[mask] = np.asarray(computed, dtype=np.float64)[inverse]
    return scores


def _levels(missing: np.ndarray, exact: np.ndarray | None, similarity: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """0 = a value missing, then `exact` (when given), then each threshold, then different."""
    first_similar = 1 if exact is None else 2
    levels = np.full(len(missing), first_similar + len(thresholds), dtype=np.int8)
    for rank, threshold in reversed(list(enumerate(thresholds))):
        levels[similarity >= threshold] = first_similar + rank
    if exact is not None:
        levels[exact] = 1
    levels[missing] = 0
    return levels


def personal_agreement(levels: pd.DataFrame) -> np.ndarray:
    """True where a first name, a date of birth or an e-mail agrees (not merely the address,
    surname or a phone, which a household shares)."""
    agree = np.zeros(len(levels), dtype=bool)
    for field in PERSONAL_FIELDS:
        names = LEVELS[field]
        agreeing = [i for i, n in enumerate(names)
                    if n not in ("null", "different", "same_year", "same_family_mailbox")]
        agree |= np.isin(levels[field].to_numpy(), agreeing)
    return agree


def _same(records: EncodedRecords, column: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(missing on either side, equal) for one encoded column."""
    left, right = records.codes[column][a], records.codes[column][b]
    missing = (left < 0) | (right < 0)
    return missing, ~missing & (left == right)


def _location_levels(records: EncodedRecords, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    address_missing, same_address = _same(records, "address", a, b)
    address = np.where(same_address, 1.0, _pair_similarity(records, "address", a, b, fuzz.token_set_ratio) / 100.0)
    address[address_missing] = 0.0
    postcode_missing, postcode = _same(records, "postcode", a, b)
    _, area = _same(records, "postcode_area", a, b)
    _, city = _same(records, "city", a, b)
    known = [np.zeros(len(a), bool), np.zeros(len(a), bool)]
    for column in ("address", "postcode", "city"):
        known[0] |= records.codes[column][a] >= 0
        known[1] |= records.codes[column][b] >= 0
    postcodes_differ = ~postcode_missing & ~postcode
    conditions = [
        ~(known[0] & known[1]),
        (address >= 0.9) & postcode,
        (address >= 0.9) & ~postcodes_differ,
        postcode,
        (address >= 0.7) & area,
        area,
        city,
    ]
    return np.select(conditions, list(range(len(conditions))), default=len(conditions)).astype(np.int8)


def _nickname_of_both(records: EncodedRecords, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs whose first names may stand for one name (sam and samantha: "samantha|samuel" meets
    "samantha"); only pairs with a name of several names are looked at (a few in a thousand)."""
    codes, names = records.codes["first_names"], records.values["first_names"]
    several = np.fromiter((NAME_ALTERNATIVES_SEPARATOR in name for name in names), dtype=bool, count=len(names))
    if not several.any():
        return np.zeros(len(a), dtype=bool)
    left, right = codes[a], codes[b]
    candidates = np.flatnonzero((left >= 0) & (right >= 0) & (left != right)
                                & (several[np.maximum(left, 0)] | several[np.maximum(right, 0)]))
    meets = np.zeros(len(a), dtype=bool)
    for position in candidates.tolist():
        x = names[left[position]].split(NAME_ALTERNATIVES_SEPARATOR)
        y = names[right[position]].split(NAME_ALTERNATIVES_SEPARATOR)
        meets[position] = not set(x).isdisjoint(y)
    return meets


def record_profiles(records: EncodedRecords) -> np.ndarray:
    """One number per distinct set of the values `compare_pairs` looks at. Records of one profile are
    copies as far as matching can tell (a till creating one record per visit): each compares with any
    other record alike, and two of them agree on everything, so for learning weights they count once."""
    columns = [records.codes[column] for column in ENCODED_COLUMNS]
    columns += [*records.birth.T, records.first_letter, records.first_length, records.landline, records.family_email]
    profiles = np.zeros(len(records.birth), dtype=np.int64)
    for column in columns:  # column by column, each step a hash table (np.unique over rows sorts: 6 s at 1M)
        values = np.asarray(column, dtype=np.int64) + 1  # missing (-1) becomes 0
        profiles = pd.factorize(profiles * (int(values.max(initial=0)) + 1) + values)[0].astype(np.int64)
    return profiles


def compare_pairs(records: EncodedRecords, left: np.ndarray, right: np.ndarray) -> pd.DataFrame:
    """Comparison level per field for each pair (see LEVELS), vectorized over pairs."""
    a, b = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    out = {}
    codes = records.codes
    first_a, first_b = codes["first_name"][a], codes["first_name"][b]
    last_a, last_b = codes["last_name"][a], codes["last_name"][b]
    swapped = np.zeros(len(a), dtype=bool)
    all_names = (first_a >= 0) & (first_b >= 0) & (last_a >= 0) & (last_b >= 0)
    if all_names.any():
        firsts, lasts = records.values["first_name"], records.values["last_name"]
        swapped[all_names] = (firsts[first_a[all_names]] == lasts[last_b[all_names]]) & (
            lasts[last_a[all_names]] == firsts[first_b[all_names]]
        )
    for field, canonical in (("first_name", "first_canonical"), ("last_name", "last_name")):
        missing, _ = _same(records, field, a, b)
        _, exact = _same(records, canonical, a, b)
        exact |= swapped
        if field == "first_name":
            exact |= _nickname_of_both(records, a, b)
        similarity = _pair_similarity(records, field, a, b, JaroWinkler.normalized_similarity)
        thresholds: tuple[float, ...] = (0.92, 0.80)
        if field == "first_name":
            # "k" and "katherine": an initial agrees with a name that starts with it
            similarity = np.where(similarity >= 0.80, similarity, 0.0)
            initial = (
                (records.first_letter[a] >= 0) & (records.first_letter[a] == records.first_letter[b])
                & ((records.first_length[a] == 1) | (records.first_length[b] == 1))
            )
            similarity[initial & (similarity < 0.80)] = 0.5
            thresholds = (0.92, 0.80, 0.5)
        out[field] = _levels(missing, exact, similarity, thresholds)
        scripts = codes[f"{field.removesuffix('_name')}_script"]
        script_a, script_b = scripts[a], scripts[b]
        scripts_differ = (script_a >= 0) & (script_b >= 0) & (script_a != script_b)
        # Names in two scripts (Μαρία and Maria, محمد and Mohammed): a transliteration that agrees is
        # evidence, one that does not is none (abjads drop vowels: mhmd), not a disagreement.
        out[field][scripts_differ & (out[field] == LEVELS[field].index("different"))] = 0

    birth_a, birth_b = records.birth[a], records.birth[b]
    birth_missing = (birth_a[:, 0] < 0) | (birth_b[:, 0] < 0)
    parts_equal = (birth_a == birth_b).sum(axis=1)
    day_month_swapped = ((birth_a[:, 0] == birth_b[:, 0]) & (birth_a[:, 1] == birth_b[:, 2])
                         & (birth_a[:, 2] == birth_b[:, 1]))
    birth = np.full(len(a), 4, dtype=np.int8)
    birth[birth_a[:, 0] == birth_b[:, 0]] = 3
    birth[(parts_equal >= 2) | day_month_swapped] = 2
    birth[parts_equal == 3] = 1
    birth[birth_missing] = 0
    out["date_of_birth"] = birth

    # Local parts are built from names, so namesakes' addresses look alike: only the same local
    # part at a misspelt domain (gmial.com) counts as similar.
    email_missing, email_exact = _same(records, "email", a, b)
    _, same_local = _same(records, "email_local", a, b)
    domain_distance = _pair_similarity(records, "email_domain", a, b, DamerauLevenshtein.distance)
    domain_typo = (same_local & ~email_exact & (domain_distance <= 2)).astype(float)
    out["email"] = _levels(email_missing, email_exact, domain_typo, (1.0,))
    family = (email_exact | same_local) & (records.family_email[a] | records.family_email[b])
    out["email"][family] = LEVELS["email"].index("same_family_mailbox")  # at a misspelt domain too

    phone_missing, phone_exact = _same(records, "phone", a, b)
    landline_involved = (records.landline[a] | records.landline[b]).astype(float)
    out["phone"] = _levels(phone_missing, phone_exact, landline_involved, (1.0,))
    out["location"] = _location_levels(records, a, b)
    return pd.DataFrame(out)


def shared_contact_points(keyed: pd.DataFrame, column: str) -> set[str]:
    """Values of a contact column held by clearly different people (different first names,
    surnames or birth dates), which must not merge records on their own."""
    codes = _group_codes(keyed, (column,))
    left, right = window_pairs(codes, CONTACT_GROUP_WINDOW)
    if len(left) == 0:
        return set()
    first = keyed["first_canonical"].to_numpy(dtype=object)
    first_names = keyed["first_names"].to_numpy(dtype=object)
    last = keyed["last_name"].to_numpy(dtype=object)
    birth = keyed["date_of_birth"].to_numpy(dtype=object)
    first_script = keyed["first_script"].to_numpy(dtype=object)
    last_script = keyed["last_script"].to_numpy(dtype=object)
    conflicting = np.fromiter(
        (
            birth_dates_conflict(birth[a], birth[b])
            or scripts_comparable(first_script[a], first_script[b])
            and first_names_conflict(first_names[a], first_names[b], last[a], last[b])
            or scripts_comparable(last_script[a], last_script[b])
            and surnames_conflict(last[a], last[b], first[a], first[b])
            for a, b in zip(left.tolist(), right.tolist(), strict=True)
        ),
        dtype=bool,
        count=len(left),
    )
    return set(keyed[column].to_numpy(dtype=object)[left[conflicting]])


HELD_BACK_REASONS = {
    "shared": "held by records whose names or birth dates conflict",
    "family_mailbox": "a household's family mailbox",
    "landline": "a landline (a household's)",
}
"""Why a record's e-mail or phone joined no record on its own (`deterministic_edges`' `held_back`)."""


def deterministic_edges(
    keyed: pd.DataFrame, links: pd.DataFrame | None, record_index: pd.Series
) -> tuple[pd.DataFrame, dict[str, int], np.ndarray]:
    """Edges from exact e-mail or phone (except shared contact points) and from `links`; also, per
    record, the contact points held back from exact matching and why (`email:shared; phone:landline`,
    empty when none): what `cdp identity explain` shows for joins that did not happen."""
    edges = []
    skipped: dict[str, int] = {}
    held_back = {}
    for column in ("email", "phone"):
        shared = shared_contact_points(keyed, column)
        skipped[f"shared_{column}s"] = len(shared)
        values = keyed[column]
        is_shared = values.isin(shared).to_numpy()
        held = np.where(is_shared, f"{column}:shared", "").astype(object)
        if column == "email":
            family = set(keyed.loc[keyed["email_is_family"].to_numpy(dtype=bool), "email"])
            skipped["family_mailboxes"] = len(family - shared)
            is_family = values.isin(family).to_numpy() & ~is_shared
            held[is_family] = f"{column}:family_mailbox"
            is_shared |= is_family
        usable_rows = values.notna().to_numpy() & ~is_shared
        if column == "phone":
            landline = usable_rows & keyed["phone_is_landline"].to_numpy(dtype=bool)
            skipped["landlines"] = int(landline.sum())
            held[landline] = f"{column}:landline"
            usable_rows &= ~landline
        held_back[column] = held
        usable = keyed[usable_rows]
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
    email, phone = held_back["email"], held_back["phone"]
    reasons = email + np.where((email != "") & (phone != ""), "; ", "").astype(object) + phone
    return result.reset_index(drop=True), skipped, reasons
