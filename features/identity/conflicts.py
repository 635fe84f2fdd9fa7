"""When two records clearly belong to different people, whatever else they share.

One definition, used both to spot shared contact points (a household e-mail) and to stop
clustering from joining people.
"""

from __future__ import annotations

from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from features.identity.nicknames import NAME_ALTERNATIVES_SEPARATOR

NAME_TYPO_SIMILARITY = 0.9
"""First names this alike may be typos of each other; others conflict."""
FEMININE_ENDINGS = frozenset({"a", "le", "ine", "ina", "ette", "elle"})
"""Added to a given name, these make another person's name (paula, danielle, roberta, georgina)."""
TYPO_MIN_LENGTH = 5
"""Names at least this long may also differ by one edit (hannah/hnanah) and still be one name."""


def birth_dates_conflict(x: str | None, y: str | None) -> bool:
    """Both known and agreeing on fewer than two of year, month and day, and not the same date with day
    and month swapped (1984-03-07 and 1984-07-03: a common way of writing one date wrong)."""
    if not x or not y:
        return False
    (x_year, x_month, x_day), (y_year, y_month, y_day) = x.split("-"), y.split("-")
    if x_year == y_year and x_month == y_day and x_day == y_month:
        return False
    return (x_year == y_year) + (x_month == y_month) + (x_day == y_day) < 2


def scripts_comparable(x_script: str | None, y_script: str | None) -> bool:
    """Names written in two scripts cannot be said to conflict (`standardize.name_script`, per name)."""
    return x_script is None or y_script is None or x_script == y_script


def first_names_conflict(
    x_first: str | None, y_first: str | None, x_last: str | None = None, y_last: str | None = None
) -> bool:
    """Different canonical first names that are not an initial, a typo or a first/last swap. A name
    that stands for several ("samantha|samuel", `nicknames.name_alternatives`) conflicts only when
    each of them does."""
    if not x_first or not y_first or x_first == y_first:
        return False
    if NAME_ALTERNATIVES_SEPARATOR in x_first or NAME_ALTERNATIVES_SEPARATOR in y_first:
        return all(_one_first_name_conflicts(x, y, x_last, y_last)
                   for x in x_first.split(NAME_ALTERNATIVES_SEPARATOR)
                   for y in y_first.split(NAME_ALTERNATIVES_SEPARATOR))
    return _one_first_name_conflicts(x_first, y_first, x_last, y_last)


def _one_first_name_conflicts(x_first: str, y_first: str, x_last: str | None, y_last: str | None) -> bool:
    if x_first == y_first:
        return False
    if (len(x_first) == 1 or len(y_first) == 1) and x_first[0] == y_first[0]:
        return False
    if (x_last is not None and x_last == y_first) or (y_last is not None and y_last == x_first):
        return False
    # A name and its feminine form (paul/paula, daniel/danielle, robert/roberta) are two people's names,
    # however alike; a plain final "e" is left out (ann/anne, louis/louise cannot be told from a spelling).
    shorter, longer = sorted((x_first, y_first), key=len)
    if len(shorter) >= 3 and longer.startswith(shorter) and longer[len(shorter):] in FEMININE_ENDINGS:
        return True
    # One edit in a short name is another name (john/joan, mark/mary), not a typo.
    typo = JaroWinkler.normalized_similarity(x_first, y_first) >= NAME_TYPO_SIMILARITY or (
        min(len(x_first), len(y_first)) >= TYPO_MIN_LENGTH and DamerauLevenshtein.distance(x_first, y_first) <= 1
    )
    return not typo


def surnames_conflict(x_last: str | None, y_last: str | None, x_first: str | None = None, y_first: str | None = None) -> bool:
    """Clearly different surnames (not a typo, not a first/last swap): on a shared e-mail or
    phone this marks a family contact point, though one person's records may differ after a marriage."""
    if not x_last or not y_last or x_last in (y_last, y_first) or y_last == x_first:
        return False
    return JaroWinkler.normalized_similarity(x_last, y_last) < NAME_TYPO_SIMILARITY
