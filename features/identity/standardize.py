"""Standardize PII so that the same person written two ways compares equal.

Pure functions over DataFrames. Each works on the distinct values of a column and maps back,
so the cost follows the number of distinct names, e-mails and phones, not the number of rows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import phonenumbers
from anyascii import anyascii

from features.identity.nicknames import name_alternatives, nickname_table

ADDRESS_ABBREVIATIONS = {
    "street": "st", "road": "rd", "avenue": "ave", "lane": "ln", "drive": "dr", "close": "cl",
    "court": "ct", "place": "pl", "crescent": "cres", "gardens": "gdns", "garden": "gdn",
    "terrace": "ter", "square": "sq", "apartment": "apt", "flat": "flat", "north": "n",
    "south": "s", "east": "e", "west": "w", "mount": "mt", "saint": "st", "parkway": "pkwy",
    "boulevard": "blvd", "highway": "hwy", "grove": "gr", "park": "pk",
}
_NON_LETTER = re.compile(r"[^\w\s]|[\d_]", flags=re.UNICODE)
_SPACES = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^\w\s]|_", flags=re.UNICODE)
_NON_DIGIT = re.compile(r"\D")
_HOUSE_NUMBER = re.compile(r"\b(\d+[a-z]?)\b")


@dataclass(frozen=True)
class EmailRules:
    """Provider rules: which parts of an address a mail provider ignores."""

    strip_plus_tags: bool = True
    dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    domain_aliases: dict[str, str] = field(default_factory=lambda: {"googlemail.com": "gmail.com"})
    family_mailboxes: bool = True
    """Addresses like thesmiths@… are a household's: they do not merge records on their own."""


def _map_distinct(values: pd.Series, function: Callable[[str], object]) -> pd.Series:
    """Apply a Python function once per distinct non-null value."""
    distinct = values.dropna().unique()
    mapping = {value: function(value) for value in distinct}
    mapped = values.map(mapping).astype(object)
    return mapped.where(mapped.notna(), None)


def clean_text(text: str) -> str:
    """Unicode compatibility forms folded (NFKC: full-width ｐ -> p, ０ -> 0) and format characters removed
    (category Cf: zero-width spaces and joiners, direction marks, the byte-order mark), so that text which
    looks the same compares equal; first step of every standardizer. ASCII text is returned as it is."""
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")


def clean_identifier(text: str) -> str:
    """An identifier as typed or exported (`" C000000050 "`, a customer id with a zero-width space):
    `clean_text`, then trimmed."""
    return clean_text(text).strip()


_ANGLE_ADDRESS = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>")
_MAILTO = re.compile(r"^mailto:", flags=re.IGNORECASE)


def email_address_in(text: str) -> str:
    """The address out of the ways people write one: `Name <addr>`, `mailto:addr` (its `?subject=…`
    dropped), quotes or angle brackets around it; the text as it is otherwise (after `clean_text`)."""
    address = clean_text(text).strip()
    found = _ANGLE_ADDRESS.search(address)
    if found:
        address = found.group(1)
    address = address.strip().strip("<>\"'").strip()
    if _MAILTO.match(address):
        address = _MAILTO.sub("", address).split("?", 1)[0].strip()
    return address


def standardize_email_leniently(text: str, rules: EmailRules) -> str | None:
    """`standardize_email` of the address in a text written as `Name <addr>` or `mailto:addr`: how an
    erasure or access request and the nulled values of ingestion are matched to a person's e-mail."""
    return standardize_email(email_address_in(text), rules)


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def standardize_name(text: str) -> str | None:
    """Transliterated to Latin letters (Γιώργος -> giorgos, Сергей -> sergey, 芳 -> fang),
    case-folded, without punctuation, so a native-script record meets its Latin twin."""
    cleaned = _SPACES.sub(" ", _NON_LETTER.sub(" ", anyascii(clean_text(text)).casefold())).strip()
    return cleaned or None


def name_script(text: str) -> str | None:
    """The writing system of a name's first letter ("LATIN", "CYRILLIC", "ARABIC", "CJK", ...). Names are
    judged to conflict only within one script: a transliteration is a guess (محمد reads "mhmd", 田中 as
    Chinese), good enough to add match weight, not to say two records are different people."""
    letter = next((ch for ch in text if ch.isalpha()), None)
    return unicodedata.name(letter, "?").split(" ")[0] if letter else None


def standardize_email(text: str, rules: EmailRules) -> str | None:
    """The address as the provider reads it; Unicode folded and format characters removed first
    (`clean_text`: an address with a zero-width space is the same address)."""
    address = clean_text(text).strip().casefold()
    if address.count("@") != 1:
        return None
    local, domain = address.split("@")
    domain = rules.domain_aliases.get(domain, domain)
    if rules.strip_plus_tags:
        local = local.split("+", 1)[0]
    if domain in rules.dotless_domains:
        local = local.replace(".", "")
    if not local or "." not in domain:
        return None
    return f"{local}@{domain}"


def standardize_phone(text: str, default_region: str) -> str | None:
    """E.164 when the number is possible for its region, else None."""
    try:
        number = phonenumbers.parse(clean_text(text), default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_landline(e164: str) -> bool:
    """Fixed lines are typically shared by a household, so they do not merge records alone.

    Numbers of unknown kind (valid in no numbering plan) still do: measured on the simulator (seeds
    42 and 7), holding them back as possibly shared lowered precision by 0.0002-0.0003 and recall by
    0.0013 (8% of its mobiles are not valid numbers); a number many people share is refused anyway
    (`shared_contact_points`)."""
    number = phonenumbers.parse(e164, None)
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE


def standardize_phones(raw: pd.Series, default_region: str) -> tuple[pd.Series, np.ndarray]:
    """E.164 numbers and a landline flag, fast for the usual formats of the default region.

    Numbers written as +CC..., 00CC... or with the region's national prefix are rewritten with
    string operations and checked against the region's possible lengths; anything else goes
    through `phonenumbers` one distinct value at a time. The number's kind (`is_landline`) is looked
    up once per country code, first five national digits and length: the digits alone do not decide
    it (a Cardiff landline and a number one digit short share them), and one lookup per distinct
    number took 27 s for 600,000 numbers.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(default_region)
    country = str(metadata.country_code)
    prefix = metadata.national_prefix or ""
    lengths = set(metadata.general_desc.possible_length)
    original_index = raw.index
    raw = raw.reset_index(drop=True)
    text = raw.astype(object).where(raw.notna(), None)
    written = text.dropna().astype(str)
    unusual = written[written.str.contains(r"[^\x00-\x7f]", regex=True)]  # full-width digits, zero-width spaces: `clean_text`
    if len(unusual):
        text = text.copy()
        text[unusual.index] = _map_distinct(unusual, clean_text)
    present = text.notna().to_numpy()
    cleaned = text[present].astype(str).str.replace("(0)", "", regex=False).str.strip()
    digits = cleaned.str.replace(r"\D", "", regex=True)
    plus = cleaned.str.startswith("+")
    international = ~plus & digits.str.startswith("00")
    national = ~plus & ~international & (prefix != "") & digits.str.startswith(prefix)
    full = pd.Series(None, index=cleaned.index, dtype=object)
    full[plus] = digits[plus]
    full[international] = digits[international].str[2:]
    full[national] = country + digits[national].str[len(prefix):]
    in_region = full.fillna("").str.startswith(country)
    national_length = full.fillna("").str.len() - len(country)
    fast = in_region & national_length.isin(lengths)
    result = pd.Series(None, index=raw.index, dtype=object)
    result[fast[fast].index] = "+" + full[fast]
    slow_index = fast[~fast].index
    if len(slow_index):
        result[slow_index] = _map_distinct(text[slow_index], lambda p: standardize_phone(p, default_region))
    e164 = result.where(result.notna(), None)
    present = e164.dropna()
    key = present.str[:len(country) + 6] + ":" + present.str.len().astype(str)
    kind_by_key = {k: is_landline(v) for k, v in present.groupby(key).first().items()}
    landline = np.zeros(len(e164), dtype=bool)
    landline[present.index.to_numpy()] = key.map(kind_by_key).to_numpy(dtype=bool)
    return e164.set_axis(original_index), landline


def standardize_address(text: str) -> str | None:
    words = _SPACES.sub(" ", _NON_ALNUM.sub(" ", strip_accents(clean_text(text)).casefold())).split()
    cleaned = " ".join(ADDRESS_ABBREVIATIONS.get(word, word) for word in words)
    return cleaned or None


def standardize_postcode(text: str) -> str | None:
    cleaned = re.sub(r"\s+", "", clean_text(text)).upper()
    return cleaned or None


def _house_number(address: str) -> str | None:
    match = _HOUSE_NUMBER.search(address)
    return match.group(1) if match else None


_FAMILY_MAILBOX = re.compile(r"^the([a-z]+?)\d*$")


def family_mailboxes(emails: pd.Series, last_names: pd.Series) -> pd.Series:
    """Which standardized e-mails are family mailboxes: "the", the surname of a record holding the
    address, perhaps a plural "s", then perhaps digits ("thesmiths", "thejoness12"). A household shares
    such an address, so it says "one household" (like a shared surname), not "one person": it must not
    merge records alone. An address none of whose holders gives such a surname is not one (Theo
    Walker's theo1985@, or theking@ of someone else than the Kings), nor is one of a one-letter surname."""
    distinct = pd.Series(emails.dropna().unique())
    local = distinct.str.split("@").str[0].str.replace(r"[._-]", "", regex=True)
    middle = local.str.extract(_FAMILY_MAILBOX, expand=False)
    candidates = dict(zip(distinct[middle.notna()], middle[middle.notna()], strict=True))
    if not candidates:
        return pd.Series(False, index=emails.index)
    holding = emails.isin(list(candidates))
    surnames = _map_distinct(last_names[holding], lambda name: re.sub(r"[^a-z]", "", name))
    held = pd.DataFrame({"email": emails[holding], "surname": surnames}).dropna()
    held = held[held["surname"].str.len() >= 2]
    by_email = held.groupby("email")["surname"].agg(set).to_dict()

    def is_family(email: str) -> bool:
        found = candidates[email]
        names = {found, found[:-1]} if found.endswith("s") else {found}
        return bool(names & by_email.get(email, set()))

    return emails.map({email: is_family(email) for email in candidates}).eq(True)


def standardize_records(
    records: pd.DataFrame,
    default_phone_region: str,
    email_rules: EmailRules | None = None,
    nickname_groups: dict[str, tuple[str, ...]] | None = None,
) -> pd.DataFrame:
    """Add standardized comparison columns to identity records (any PII column may be absent).
    `nickname_groups`: given-name variants added to the built-in table (`identity.nickname_groups`)."""
    rules = email_rules or EmailRules()
    nicknames = nickname_table(nickname_groups)
    alternatives = name_alternatives(nickname_groups)
    out = pd.DataFrame(index=records.index)

    def column(name: str) -> pd.Series:
        if name in records.columns:
            return records[name].astype(object).where(records[name].notna(), None)
        return pd.Series([None] * len(records), index=records.index, dtype=object)

    first = _map_distinct(column("first_name"), standardize_name)
    last = _map_distinct(column("last_name"), standardize_name)
    out["first_name"] = first
    out["last_name"] = last
    first_word = first.map(lambda n: n.split(" ")[0] if isinstance(n, str) else None)
    out["first_canonical"] = first_word.map(lambda n: nicknames.get(n, n) if isinstance(n, str) else None)
    # every name the first name may stand for (sam -> "samantha|samuel"): conflicts are judged on these
    out["first_names"] = first_word.map(
        lambda n: alternatives.get(n, nicknames.get(n, n)) if isinstance(n, str) else None)
    # per name: a Greek first name beside a Latin surname is judged against Latin surnames as Latin
    for part in ("first", "last"):
        written = column(f"{part}_name").astype(object)
        out[f"{part}_script"] = _map_distinct(written, lambda text: name_script(str(text)))
    out["email"] = _map_distinct(column("email"), lambda e: standardize_email(e, rules))
    out["email_local"] = out["email"].map(lambda e: e.split("@")[0] if isinstance(e, str) else None)
    out["email_is_family"] = (
        family_mailboxes(out["email"], last) if rules.family_mailboxes else pd.Series(False, index=out.index)
    )
    out["phone"], out["phone_is_landline"] = standardize_phones(column("phone"), default_phone_region)
    address = _map_distinct(column("address_line"), standardize_address)
    out["address"] = address
    out["house_number"] = _map_distinct(address, _house_number)
    out["postcode"] = _map_distinct(column("postcode"), standardize_postcode)
    out["postcode_area"] = out["postcode"].map(
        lambda p: re.match(r"[A-Z]+\d*", p).group(0) if isinstance(p, str) and re.match(r"[A-Z]+\d*", p) else None
    )
    out["city"] = _map_distinct(column("city"), standardize_name)
    birth = pd.to_datetime(column("date_of_birth"), errors="coerce")
    out["date_of_birth"] = birth.dt.strftime("%Y-%m-%d").where(birth.notna(), None)
    out["birth_year"] = birth.dt.year.astype("Int64")
    out["birth_month"] = birth.dt.month.astype("Int64")
    out["birth_day"] = birth.dt.day.astype("Int64")
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = out[name].where(out[name].notna(), None)
    return out


def has_any_pii(standardized: pd.DataFrame) -> np.ndarray:
    """Records with nothing to match on become customers of their own."""
    keys = ["first_name", "last_name", "email", "phone", "address", "date_of_birth"]
    return standardized[keys].notna().any(axis=1).to_numpy()
