"""Source ids, noisy customer records and identity links (the identity-resolution puzzle).

Each person has one true identity (name, birth date, e-mails, phone, address); each of
their records shows a noisy, system-dependent view of it: typos, nicknames, swapped
names, missing fields, a second e-mail, different phone formats, stale addresses,
native-script or transliterated names. Households share an address (and sometimes a
landline or a family e-mail) and usually a last name: hard negatives that must not merge.
Strings are assembled column-wise with pyarrow compute; no Python loop runs over rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.simulator import vocabulary as vocab
from features.simulator.parameters import SimulationParameters
from features.simulator.population import APP, CRM, NEVER, STORE, SYSTEMS, WEB, Population
from features.simulator.randomness import IDENTITY_STREAM, stream_generator
from features.simulator.tables import (
    TIMESTAMP,
    contract_schema,
    digit_matrix,
    format_hex_ids,
    format_numbered_ids,
    strings_from_byte_matrix,
)

SECOND_MICROS = 1_000_000
DAY_SECONDS = 86_400
# Per system (web, app, store, crm): share of records that carry each field.
FIELD_PRESENCE = {
    "first_name": (0.95, 0.7, 0.95, 0.99),
    "last_name": (0.95, 0.7, 0.97, 0.99),
    "email": (0.99, 0.92, 0.35, 0.8),
    "phone": (0.5, 0.3, 0.75, 0.9),
    "address": (0.7, 0.15, 0.55, 0.85),
    "date_of_birth": (0.35, 0.1, 0.6, 0.55),
    "country": (0.7, 0.4, 0.8, 0.9),
}
UPPERCASE_SHARE = (0.0, 0.0, 0.3, 0.05)
LOYALTY_TIERS = ("bronze", "silver", "gold", "platinum")
MARKETING_SEGMENTS = ("new", "regular", "vip", "deal_seeker", "at_risk")
COUNTRY_SPELLINGS = ("GB", "UK", "United Kingdom", "gb")


# --------------------------------------------------------------------------- vocabulary
def make_typos(word: str, rng: np.random.Generator, count: int = 3) -> list[str]:
    """A few plausible misspellings: swapped, dropped, doubled or replaced letters."""
    variants: list[str] = []
    vowels = "aeiou"
    attempts = 0
    while len(variants) < count and attempts < 50:
        attempts += 1
        if len(word) < 3:
            candidate = word + word[-1]
        else:
            operation = int(rng.integers(4))
            position = int(rng.integers(1, len(word) - 1))
            if operation == 0:
                candidate = (
                    word[:position] + word[position + 1] + word[position] + word[position + 2 :]
                )
            elif operation == 1:
                candidate = word[:position] + word[position + 1 :]
            elif operation == 2:
                candidate = word[:position] + word[position] + word[position:]
            else:
                replacement = (
                    vowels[int(rng.integers(5))]
                    if word[position].lower() in vowels
                    else word[position]
                )
                candidate = word[:position] + replacement + word[position + 1 :]
        if candidate != word and candidate not in variants:
            variants.append(candidate)
    while len(variants) < count:
        variants.append(word + word[-1] * (len(variants) + 1))
    return variants


def email_token(name: str) -> str:
    return "".join(character for character in name.lower() if "a" <= character <= "z")


@dataclass(frozen=True)
class NameVocabulary:
    """All name spellings in one string table, with index tables per name entry.

    Entries are: Latin first names (male then female), Latin last names, non-Latin first
    names, non-Latin last names. Forms are the strings that can appear in a record.
    """

    forms: pa.Array
    canonical: np.ndarray  # entry -> form
    typos: np.ndarray  # entry -> 3 forms
    nickname: np.ndarray  # entry -> form or -1
    transliteration: np.ndarray  # entry -> Latin form or -1
    initial: np.ndarray  # entry -> "J." form
    tokens: pa.Array  # e-mail tokens
    token_of_form: np.ndarray  # form -> token
    initial_token: np.ndarray  # entry -> token of its initial
    male_first: np.ndarray  # entry ids
    female_first: np.ndarray
    last: np.ndarray
    non_latin_first: np.ndarray
    non_latin_last: np.ndarray


@functools.cache
def name_vocabulary() -> NameVocabulary:
    """Built once from the word lists; deterministic (fixed seed, independent of the run)."""
    rng = np.random.default_rng(20240701)
    forms: list[str] = []
    form_index: dict[str, int] = {}

    def form(text: str) -> int:
        if text not in form_index:
            form_index[text] = len(forms)
            forms.append(text)
        return form_index[text]

    canonical, typos, nickname, transliteration, initial = [], [], [], [], []

    def add_entry(text: str, latin: str | None = None, nick: str | None = None) -> int:
        canonical.append(form(text))
        typos.append([form(variant) for variant in make_typos(latin or text, rng)])
        nickname.append(form(nick) if nick else -1)
        transliteration.append(form(latin) if latin else -1)
        initial.append(form((latin or text)[0] + "."))
        return len(canonical) - 1

    male = [add_entry(name, nick=vocab.NICKNAMES.get(name)) for name in vocab.MALE_FIRST_NAMES]
    female = [add_entry(name, nick=vocab.NICKNAMES.get(name)) for name in vocab.FEMALE_FIRST_NAMES]
    last = [add_entry(name) for name in vocab.LAST_NAMES]
    non_latin_first = [
        add_entry(native, latin=latin) for native, latin in vocab.NON_LATIN_FIRST_NAMES
    ]
    non_latin_last = [
        add_entry(native, latin=latin) for native, latin in vocab.NON_LATIN_LAST_NAMES
    ]

    latin_of_form = {}
    for entry, form_id in enumerate(canonical):
        if transliteration[entry] >= 0:
            latin_of_form[form_id] = forms[transliteration[entry]]
    tokens: list[str] = ["", "the"]
    token_index = {"": 0, "the": 1}

    def token(text: str) -> int:
        value = email_token(text) or "x"
        if value not in token_index:
            token_index[value] = len(tokens)
            tokens.append(value)
        return token_index[value]

    token_of_form = np.array(
        [token(latin_of_form.get(index, text)) for index, text in enumerate(forms)]
    )
    initial_token = np.array(
        [
            token(forms[form_id][0])
            if transliteration[entry] < 0
            else token(forms[transliteration[entry]][0])
            for entry, form_id in enumerate(canonical)
        ]
    )
    return NameVocabulary(
        forms=pa.array(forms, type=pa.string()),
        canonical=np.array(canonical),
        typos=np.array(typos),
        nickname=np.array(nickname),
        transliteration=np.array(transliteration),
        initial=np.array(initial),
        tokens=pa.array(tokens, type=pa.string()),
        token_of_form=token_of_form,
        initial_token=initial_token,
        male_first=np.array(male),
        female_first=np.array(female),
        last=np.array(last),
        non_latin_first=np.array(non_latin_first),
        non_latin_last=np.array(non_latin_last),
    )


def zipf_choice(
    rng: np.random.Generator, options: np.ndarray, size: int, offset: float = 4.0
) -> np.ndarray:
    """Frequency-ranked lists: the first names are much more common than the last ones."""
    weights = 1.0 / (np.arange(len(options)) + offset)
    return options[rng.choice(len(options), size=size, p=weights / weights.sum())]


def take(
    values: pa.Array | list[str], indices: np.ndarray, missing: np.ndarray | None = None
) -> pa.Array:
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), type=pa.string())
    return values.take(pa.array(np.asarray(indices, dtype=np.int64), mask=missing))


def number_strings(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Integers as strings; missing ones as empty strings (for concatenation)."""
    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    if missing is None:
        return text
    return pc.if_else(pa.array(missing), pa.scalar(""), text)


def join_strings(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(
        *[pa.scalar(part) if isinstance(part, str) else part for part in parts], ""
    )


# --------------------------------------------------------------------------- source ids
def build_source_ids(population: Population, parameters: SimulationParameters) -> pa.Array:
    """Each system's own id format: web "W########", app 16-hex, store card "633…", crm "CRM-…"."""
    rng = stream_generator(parameters.seed, IDENTITY_STREAM, day=-1)
    system = population.record_system
    parts = []
    order = []
    for code in range(len(SYSTEMS)):
        records = np.flatnonzero(system == code)
        count = len(records)
        increasing = np.cumsum(rng.integers(1, 9, size=count))
        numbers = rng.permutation(increasing)
        if code == WEB:
            ids = format_numbered_ids("W", 10_000_000 + numbers, 9)
        elif code == APP:
            ids = format_hex_ids(
                rng.integers(0, np.iinfo(np.uint64).max, size=count, dtype=np.uint64, endpoint=True)
            )
        elif code == STORE:
            ids = format_numbered_ids("633", 1_000_000_000 + numbers, 10)
        else:
            ids = format_numbered_ids("CRM-", 1_000_000 + numbers, 8)
        parts.append(ids)
        order.append(records)
    combined = pa.concat_arrays(parts)
    position = np.empty(len(system), dtype=np.int64)
    position[np.concatenate(order)] = np.arange(len(system))
    return combined.take(pa.array(position))


def format_person_ids(indices: np.ndarray, prefix: str = "P") -> pa.Array:
    return format_numbered_ids(prefix, np.asarray(indices) + 1, 8)


# --------------------------------------------------------------------------- people
@dataclass
class PeopleIdentity:
    """The true identity of each person (and shared household facts)."""

    first_entry: np.ndarray
    last_entry: np.ndarray
    non_latin: np.ndarray
    birth_day: np.ndarray  # days since epoch
    email_parts: dict[str, np.ndarray]  # primary e-mail components
    second_email_parts: dict[str, np.ndarray]
    has_second_email: np.ndarray
    family_email_parts: dict[str, np.ndarray]  # per person: the household's family e-mail
    has_family_email: np.ndarray
    mobile: np.ndarray  # national significant number, 10 digits starting with 7
    landline: np.ndarray  # per person: household landline number (area index * 1e8 + local)
    has_landline: np.ndarray
    address: dict[str, np.ndarray]  # current address components
    old_address: dict[str, np.ndarray]
    move_day: np.ndarray  # simulation day of moving, NEVER if not a mover


def draw_address(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    weights = np.array([city[3] for city in vocab.CITIES])
    city = rng.choice(len(vocab.CITIES), size=count, p=weights / weights.sum())
    area_count = np.array([len(vocab.CITIES[index][2]) for index in range(len(vocab.CITIES))])
    return {
        "city": city,
        "area": (rng.random(count) * area_count[city]).astype(np.int64),
        "district": rng.integers(1, 21, size=count),
        "sector": rng.integers(0, 10, size=count),
        "unit": rng.integers(0, 20 * 20, size=count),
        "street": rng.integers(0, len(vocab.STREET_NAMES), size=count),
        "suffix": rng.integers(0, len(vocab.STREET_SUFFIXES), size=count),
        "number": rng.integers(1, 250, size=count),
        "flat": np.where(rng.random(count) < 0.15, rng.integers(1, 40, size=count), 0),
    }


def draw_email_parts(
    rng: np.random.Generator,
    first_entry: np.ndarray,
    last_entry: np.ndarray,
    birth_year: np.ndarray,
    names: NameVocabulary,
) -> dict[str, np.ndarray]:
    """Components of "<a><sep><b><suffix>@<domain>" with one of several local-part patterns."""
    count = len(first_entry)
    first_token = names.token_of_form[names.canonical[first_entry]]
    last_token = names.token_of_form[names.canonical[last_entry]]
    pattern = rng.choice(6, size=count, p=[0.35, 0.15, 0.15, 0.1, 0.1, 0.15])
    head = np.choose(
        pattern,
        [
            first_token,
            first_token,
            names.initial_token[first_entry],
            first_token,
            last_token,
            first_token,
        ],
    )
    tail = np.choose(
        pattern,
        [
            last_token,
            last_token,
            last_token,
            last_token,
            first_token,
            np.zeros(count, dtype=np.int64),
        ],
    )
    separator = np.choose(pattern, [1, 0, 1, 2, 1, 0])
    kind = rng.choice(4, size=count, p=[0.45, 0.25, 0.2, 0.1])
    kind = np.where(
        pattern == 5, np.maximum(kind, 1), kind
    )  # a bare first name always has a number
    suffix = np.choose(
        kind,
        [
            -np.ones(count, dtype=np.int64),
            rng.integers(1, 100, size=count),
            birth_year,
            rng.integers(100, 1000, size=count),
        ],
    )
    domain_weights = np.asarray(vocab.EMAIL_DOMAIN_WEIGHTS)
    domain = rng.choice(
        len(vocab.EMAIL_DOMAINS), size=count, p=domain_weights / domain_weights.sum()
    )
    return {
        "head": head,
        "separator": separator,
        "tail": tail,
        "plural": np.zeros(count, dtype=np.int64),
        "suffix": suffix,
        "domain": domain,
    }


EMAIL_SEPARATORS = ("", ".", "_")
EMAIL_PLURALS = ("", "s")
DOMAIN_FORMS = vocab.EMAIL_DOMAINS + tuple(
    vocab.EMAIL_DOMAIN_TYPOS[domain] for domain in vocab.EMAIL_DOMAINS
)


def assemble_emails(parts: dict[str, np.ndarray], names: NameVocabulary) -> pa.Array:
    return join_strings(
        take(names.tokens, parts["head"]),
        take(EMAIL_SEPARATORS, parts["separator"]),
        take(names.tokens, parts["tail"]),
        take(EMAIL_PLURALS, parts["plural"]),
        number_strings(parts["suffix"], parts["suffix"] < 0),
        "@",
        take(DOMAIN_FORMS, parts["domain"]),
    )


def mailbox_keys(emails: pa.Array) -> pa.Array:
    """The mailbox an address reaches: case-insensitive, and Gmail ignores dots in the local
    part, so two people never get john.smith@gmail.com and johnsmith@gmail.com."""
    lower = pc.utf8_lower(emails)
    parts = pc.split_pattern(lower, "@")
    local, domain = pc.list_element(parts, 0), pc.list_element(parts, 1)
    dotless = pc.binary_join_element_wise(pc.replace_substring(local, ".", ""), domain, "@")
    gmail = pc.match_substring_regex(lower, r"@(gmail|googlemail)\.com$")
    return pc.if_else(gmail, dotless, lower)


def make_emails_unique(
    groups: list[dict[str, np.ndarray]], owners: list[np.ndarray], names: NameVocabulary
) -> None:
    """Give colliding addresses of different owners a distinguishing number (in place)."""
    for attempt in range(6):
        emails = mailbox_keys(pa.concat_arrays([assemble_emails(parts, names) for parts in groups]))
        owner = np.concatenate(owners)
        frame = pa.table({"email": emails, "owner": owner})
        distinct = (
            frame.group_by(["email", "owner"])
            .aggregate([])
            .group_by("email")
            .aggregate([("owner", "count")])
        )
        clashing = distinct.filter(pc.greater(distinct["owner_count"], 1))["email"]
        if len(clashing) == 0:
            return
        clash = pc.is_in(emails, value_set=clashing).to_numpy(zero_copy_only=False)
        offset = 0
        for parts, group_owner in zip(groups, owners, strict=True):
            mask = clash[offset : offset + len(group_owner)]
            offset += len(group_owner)
            # every owner of a clashing address gets a number derived from its own (unique) index
            parts["suffix"][mask] = 1000 + group_owner[mask] * 7 + attempt
    raise RuntimeError("could not make e-mail addresses unique")  # pragma: no cover


def draw_people_identity(
    population: Population, parameters: SimulationParameters, rng: np.random.Generator
) -> PeopleIdentity:
    names = name_vocabulary()
    n = population.person_count
    household = population.household
    household_count = int(household.max()) + 1 if n else 0

    household_non_latin = rng.random(household_count) < parameters.non_latin_share
    script = rng.integers(0, 3, size=household_count)
    non_latin = household_non_latin[household]
    female = rng.random(n) < 0.5
    first_entry = np.where(
        female, zipf_choice(rng, names.female_first, n), zipf_choice(rng, names.male_first, n)
    )
    block = vocab.NON_LATIN_SCRIPT_SIZE
    native_first = names.non_latin_first[script[household] * block + rng.integers(0, block, size=n)]
    first_entry = np.where(non_latin, native_first, first_entry)
    household_last = zipf_choice(rng, names.last, household_count, offset=3.0)
    household_native_last = names.non_latin_last[
        script * block + rng.integers(0, block, size=household_count)
    ]
    household_last = np.where(household_non_latin, household_native_last, household_last)
    own_last = zipf_choice(rng, names.last, n, offset=3.0)
    keeps_family_name = (population.household_rank == 0) | (rng.random(n) < 0.85) | non_latin
    last_entry = np.where(keeps_family_name, household_last[household], own_last)

    today = np.datetime64(parameters.start, "D").astype(np.int64)
    head_age = np.clip(rng.normal(45, 15, size=household_count), 19, 88)
    age = np.where(
        population.household_rank == 0,
        head_age[household],
        np.where(
            population.household_rank == 1,
            head_age[household] + rng.normal(0, 4, size=n),
            head_age[household] - rng.uniform(20, 35, size=n),
        ),
    )
    age = np.clip(age, 18, 95)
    birth_day = (today - age * 365.25 - rng.integers(0, 365, size=n)).astype(np.int64)
    birth_year = birth_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970

    email_parts = draw_email_parts(rng, first_entry, last_entry, birth_year, names)
    second_parts = draw_email_parts(rng, first_entry, last_entry, birth_year, names)
    same_domain = second_parts["domain"] == email_parts["domain"]
    second_parts["domain"] = np.where(
        same_domain, (second_parts["domain"] + 1) % len(vocab.EMAIL_DOMAINS), second_parts["domain"]
    )
    has_second = rng.random(n) < parameters.second_email_share

    multi = np.bincount(household, minlength=household_count) > 1
    family = multi & (rng.random(household_count) < parameters.shared_family_email_share)
    family_parts = {
        "head": np.ones(household_count, dtype=np.int64),
        "separator": np.zeros(household_count, dtype=np.int64),
        "tail": names.token_of_form[names.canonical[household_last]],
        "plural": np.ones(household_count, dtype=np.int64),
        "suffix": np.where(
            rng.random(household_count) < 0.5, rng.integers(1, 100, size=household_count), -1
        ),
        "domain": rng.choice(len(vocab.EMAIL_DOMAINS), size=household_count),
    }
    family_households = np.flatnonzero(family)
    groups = [
        email_parts,
        {key: value[has_second] for key, value in second_parts.items()},
        {key: value[family_households] for key, value in family_parts.items()},
    ]
    owners = [np.arange(n), np.flatnonzero(has_second), n + family_households]
    make_emails_unique(groups, owners, names)
    second_parts = {key: value.copy() for key, value in second_parts.items()}
    for key in second_parts:
        second_parts[key][has_second] = groups[1][key]
        family_parts[key][family_households] = groups[2][key]

    mobile = 7_100_000_000 + rng.integers(0, 900_000_000, size=n)
    for _ in range(10):
        _, first_seen = np.unique(mobile, return_index=True)
        duplicate = np.ones(n, dtype=bool)
        duplicate[first_seen] = False
        if not duplicate.any():
            break
        mobile[duplicate] = 7_100_000_000 + rng.integers(0, 900_000_000, size=int(duplicate.sum()))
    landline_area = rng.integers(0, len(vocab.LANDLINE_AREA_CODES), size=household_count)
    landline_local = (
        2_000_000 + rng.permutation(household_count) * 7 + rng.integers(0, 7, size=household_count)
    )
    has_landline = multi & (rng.random(household_count) < parameters.shared_landline_share)

    address = draw_address(rng, household_count)
    old_address = draw_address(rng, household_count)
    same_city = rng.random(household_count) < 0.7
    old_address["city"] = np.where(same_city, address["city"], old_address["city"])
    old_address["area"] = np.where(same_city, address["area"], old_address["area"])
    mover = rng.random(household_count) < parameters.mover_household_share
    move_day = np.where(
        mover, rng.integers(-700, parameters.day_count, size=household_count), NEVER
    )

    return PeopleIdentity(
        first_entry=first_entry,
        last_entry=last_entry,
        non_latin=non_latin,
        birth_day=birth_day,
        email_parts=email_parts,
        second_email_parts=second_parts,
        has_second_email=has_second,
        family_email_parts={key: value[household] for key, value in family_parts.items()},
        has_family_email=family[household],
        mobile=mobile,
        landline=(landline_area * 100_000_000 + landline_local)[household],
        has_landline=has_landline[household],
        address={key: value[household] for key, value in address.items()},
        old_address={key: value[household] for key, value in old_address.items()},
        move_day=move_day[household],
    )


# --------------------------------------------------------------------------- records
def record_names(
    identity: PeopleIdentity,
    person: np.ndarray,
    system: np.ndarray,
    parameters: SimulationParameters,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Form indices of the first and last name shown on each record."""
    names = name_vocabulary()
    count = len(person)
    first, last = identity.first_entry[person], identity.last_entry[person]
    first_form, last_form = names.canonical[first], names.canonical[last]
    latin_view = (names.transliteration[first] >= 0) & (
        rng.random(count) < np.where(system == STORE, 0.7, 0.4)
    )
    first_form = np.where(latin_view, names.transliteration[first], first_form)
    last_form = np.where(latin_view, names.transliteration[last], last_form)
    nick = (names.nickname[first] >= 0) & (rng.random(count) < parameters.nickname_rate)
    first_form = np.where(nick, names.nickname[first], first_form)
    typo_choice = rng.integers(0, 3, size=count)
    first_typo = rng.random(count) < parameters.name_typo_rate
    last_typo = rng.random(count) < parameters.name_typo_rate
    first_form = np.where(first_typo, names.typos[first, typo_choice], first_form)
    last_form = np.where(last_typo, names.typos[last, typo_choice], last_form)
    initial_only = (system == STORE) & (rng.random(count) < 0.05)
    first_form = np.where(initial_only, names.initial[first], first_form)
    swapped = rng.random(count) < parameters.swapped_name_rate
    return np.where(swapped, last_form, first_form), np.where(swapped, first_form, last_form)


def record_emails(
    identity: PeopleIdentity, person: np.ndarray, system: np.ndarray, rng: np.random.Generator
) -> pa.Array:
    names = name_vocabulary()
    count = len(person)
    use_second = identity.has_second_email[person] & (
        rng.random(count) < np.where(system == WEB, 0.25, 0.45)
    )
    use_family = identity.has_family_email[person] & (rng.random(count) < 0.5)
    parts = {}
    for key in identity.email_parts:
        value = np.where(
            use_second, identity.second_email_parts[key][person], identity.email_parts[key][person]
        )
        parts[key] = np.where(use_family, identity.family_email_parts[key][person], value)
    typo = rng.random(count) < 0.015
    domain_typo = typo & (rng.random(count) < 0.5)
    parts["domain"] = np.where(
        domain_typo, parts["domain"] + len(vocab.EMAIL_DOMAINS), parts["domain"]
    )
    name_typo = typo & ~domain_typo & (parts["head"] > 1)
    typo_form = names.typos[identity.first_entry[person], rng.integers(0, 3, size=count)]
    parts["head"] = np.where(name_typo & ~use_family, names.token_of_form[typo_form], parts["head"])
    emails = assemble_emails(parts, names)
    capitalised = rng.random(count) < 0.05
    return pc.if_else(pa.array(capitalised), pc.utf8_capitalize(emails), emails)


def record_phones(
    identity: PeopleIdentity, person: np.ndarray, system: np.ndarray, rng: np.random.Generator
) -> pa.Array:
    """UK numbers in the formats people actually type, with and without the country code."""
    count = len(person)
    national = strings_from_byte_matrix(digit_matrix(identity.mobile[person], 10))
    block = pc.utf8_slice_codeunits(national, 0, 4)
    rest = pc.utf8_slice_codeunits(national, 4, 10)
    rest_a = pc.utf8_slice_codeunits(national, 4, 7)
    rest_b = pc.utf8_slice_codeunits(national, 7, 10)
    mobile_formats = [
        join_strings("+44 ", block, " ", rest),
        join_strings("0", block, " ", rest),
        join_strings("0", national),
        join_strings("+44", national),
        join_strings("0", block, "-", rest_a, "-", rest_b),
        join_strings("+44 (0)", block, " ", rest),
    ]
    style = rng.choice(len(mobile_formats), size=count, p=[0.25, 0.3, 0.25, 0.08, 0.06, 0.06])
    mobile = pc.choose(pa.array(style.astype(np.int8)), *mobile_formats)
    area = identity.landline[person] // 100_000_000
    local = identity.landline[person] % 100_000_000
    local_text = strings_from_byte_matrix(digit_matrix(local, 7))
    landline = join_strings(
        take(vocab.LANDLINE_AREA_CODES, area),
        " ",
        pc.utf8_slice_codeunits(local_text, 0, 3),
        " ",
        pc.utf8_slice_codeunits(local_text, 3, 7),
    )
    use_landline = identity.has_landline[person] & (
        rng.random(count) < np.where(system == CRM, 0.6, 0.3)
    )
    return pc.if_else(pa.array(use_landline), landline, mobile)


def format_addresses(
    address: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, pa.Array]:
    """address_line, city, region, postcode strings with realistic formatting variation."""
    count = len(address["city"])
    abbreviated = rng.random(count) < 0.25
    suffix_forms = [form for pair in vocab.STREET_SUFFIXES for form in pair]
    suffix = address["suffix"] * 2 + abbreviated
    flat = address["flat"]
    flat_text = pc.if_else(
        pa.array(flat > 0), join_strings("Flat ", number_strings(flat), ", "), pa.scalar("")
    )
    line = join_strings(
        flat_text,
        number_strings(address["number"]),
        " ",
        take(vocab.STREET_NAMES, address["street"]),
        " ",
        take(suffix_forms, suffix),
    )
    areas = [area for city in vocab.CITIES for area in city[2]]
    area_offset = np.cumsum([0] + [len(city[2]) for city in vocab.CITIES])[:-1]
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    unit_letters = [a + b for a in letters for b in letters]
    no_space = rng.random(count) < 0.1
    postcode = join_strings(
        take(areas, area_offset[address["city"]] + address["area"]),
        number_strings(address["district"]),
        pc.if_else(pa.array(no_space), pa.scalar(""), pa.scalar(" ")),
        number_strings(address["sector"]),
        take(unit_letters, address["unit"]),
    )
    postcode = pc.if_else(pa.array(rng.random(count) < 0.05), pc.utf8_lower(postcode), postcode)
    return {
        "address_line": line,
        "city": take([city[0] for city in vocab.CITIES], address["city"]),
        "region": take([city[1] for city in vocab.CITIES], address["city"]),
        "postcode": postcode,
    }


def null_where(values: pa.Array, missing: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(missing), pa.nulls(len(values), type=values.type), values)


def build_customers_table(
    population: Population, parameters: SimulationParameters, source_ids: pa.Array
) -> pa.Table:
    """One noisy row per registered record, rows shuffled, with custom attribute columns."""
    rng = stream_generator(parameters.seed, IDENTITY_STREAM, day=0)
    identity = draw_people_identity(population, parameters, rng)
    names = name_vocabulary()
    records = np.flatnonzero(population.record_registered)
    records = records[rng.permutation(len(records))]
    person = population.record_person[records]
    system = population.record_system[records].astype(np.int64)
    count = len(records)

    def present(field: str) -> np.ndarray:
        return rng.random(count) < np.asarray(FIELD_PRESENCE[field])[system]

    first_form, last_form = record_names(identity, person, system, parameters, rng)
    first_name = null_where(take(names.forms, first_form), ~present("first_name"))
    last_name = null_where(take(names.forms, last_form), ~present("last_name"))
    uppercase = pa.array(rng.random(count) < np.asarray(UPPERCASE_SHARE)[system])
    first_name = pc.if_else(uppercase, pc.utf8_upper(first_name), first_name)
    last_name = pc.if_else(uppercase, pc.utf8_upper(last_name), last_name)

    email = null_where(record_emails(identity, person, system, rng), ~present("email"))
    phone = null_where(record_phones(identity, person, system, rng), ~present("phone"))

    created_day = population.record_created_day[records]
    created_second = population.record_created_second[records]
    move_day = identity.move_day[person]
    moved_after_creation = (move_day != NEVER) & (created_day < move_day)
    stale = moved_after_creation & (rng.random(count) < parameters.stale_address_rate)
    shown = {
        key: np.where(stale, identity.old_address[key][person], identity.address[key][person])
        for key in identity.address
    }
    address = format_addresses(shown, rng)
    has_address = present("address")
    city_only = ~has_address & (rng.random(count) < 0.15)
    address_line = null_where(address["address_line"], ~has_address)
    address_line = pc.if_else(uppercase, pc.utf8_upper(address_line), address_line)
    city = null_where(address["city"], ~(has_address | city_only))
    city = pc.if_else(uppercase, pc.utf8_upper(city), city)
    postcode = null_where(address["postcode"], ~has_address | (rng.random(count) < 0.05))
    region = null_where(address["region"], ~(has_address | city_only) | (rng.random(count) < 0.3))
    country_style = rng.choice(len(COUNTRY_SPELLINGS), size=count, p=[0.85, 0.07, 0.05, 0.03])
    country = null_where(take(COUNTRY_SPELLINGS, country_style), ~present("country"))

    birth_day = identity.birth_day[person].astype("datetime64[D]")
    swap = rng.random(count) < 0.01
    month_start = birth_day.astype("datetime64[M]")
    day_of_month = (birth_day - month_start).astype(np.int64) + 1
    month = month_start.astype(np.int64) % 12 + 1
    year_start = birth_day.astype("datetime64[Y]")
    swappable = swap & (day_of_month <= 12)
    new_month = year_start.astype("datetime64[M]") + (day_of_month - 1)  # month := day
    swapped = new_month.astype("datetime64[D]") + (month - 1)  # day := month
    birth_day = np.where(swappable, swapped, birth_day)
    date_of_birth = pa.array(
        birth_day.astype("datetime64[D]"), type=pa.date32(), mask=~present("date_of_birth")
    )

    last_day = parameters.day_count - 1
    updated_day = np.where(
        stale,
        created_day
        + (
            rng.random(count) * np.maximum(np.minimum(move_day, last_day + 1) - created_day, 0)
        ).astype(np.int64),
        np.where(
            moved_after_creation,
            np.maximum(move_day, 0)
            + (rng.random(count) * np.maximum(last_day - np.maximum(move_day, 0), 0)).astype(
                np.int64
            ),
            np.where(
                rng.random(count) < 0.5,
                created_day,
                created_day + (rng.random(count) * (last_day - created_day)).astype(np.int64),
            ),
        ),
    )
    updated_day = np.clip(updated_day, created_day, last_day)
    updated_second = np.where(
        updated_day == created_day,
        np.maximum(created_second, rng.integers(0, DAY_SECONDS, size=count)),
        rng.integers(0, DAY_SECONDS, size=count),
    )
    epoch_day = np.datetime64(parameters.start, "D").astype(np.int64) + updated_day
    updated_at = pa.array(
        epoch_day * DAY_SECONDS * SECOND_MICROS + updated_second * SECOND_MICROS, type=TIMESTAMP
    )

    loyalty_tier, loyalty_points, marketing_segment = custom_attributes(
        population, person, system, rng
    )
    columns = {
        "source": take(list(SYSTEMS), system),
        "source_id": source_ids.take(pa.array(records)),
        "first_name": first_name,
        "last_name": last_name,
        "email": email,
        "phone": phone,
        "address_line": address_line,
        "city": city,
        "postcode": postcode,
        "region": region,
        "country": country,
        "date_of_birth": date_of_birth,
        "updated_at": updated_at,
        "loyalty_tier": loyalty_tier,
        "loyalty_points": loyalty_points,
        "marketing_segment": marketing_segment,
    }
    schema = customers_schema()
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def customers_schema() -> pa.Schema:
    return contract_schema(
        "customers",
        [
            pa.field("loyalty_tier", pa.string()),
            pa.field("loyalty_points", pa.int64()),
            pa.field("marketing_segment", pa.string()),
        ],
    )


def custom_attributes(
    population: Population, person: np.ndarray, system: np.ndarray, rng: np.random.Generator
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Loyalty tier and points on store cards, a marketing segment in the CRM: noisy views of traits."""
    count = len(person)
    annual_spend = (
        population.purchase_rate[person]
        * 365
        * np.exp(population.value_log_mean[person])
        * rng.lognormal(0, 0.4, size=count)
    )
    tier = np.searchsorted(np.array([250.0, 700.0, 1800.0]), annual_spend)
    is_store = system == STORE
    loyalty_tier = take(LOYALTY_TIERS, tier, missing=~is_store)
    points = (annual_spend * 10 * rng.uniform(0.3, 1.5, size=count)).astype(np.int64)
    loyalty_points = pa.array(points, type=pa.int64(), mask=~is_store)
    joined_recently = population.join_day[person] > population.join_day.max() - 180
    segment = np.where(
        joined_recently,
        0,
        np.where(
            tier >= 2,
            2,
            np.where(
                population.discount_sensitivity[person] > 0.55,
                3,
                np.where(population.base_hazard[person] > 0.002, 4, 1),
            ),
        ),
    )
    segment = np.where(
        rng.random(count) < 0.15, rng.integers(0, len(MARKETING_SEGMENTS), size=count), segment
    )
    marketing_segment = take(MARKETING_SEGMENTS, segment, missing=system != CRM)
    return loyalty_tier, loyalty_points, marketing_segment


def build_links_table(
    population: Population, parameters: SimulationParameters, source_ids: pa.Array
) -> pa.Table:
    """Logins known to systems: app installs tied to web accounts, cards added to web accounts."""
    rng = stream_generator(parameters.seed, IDENTITY_STREAM, day=1)
    person_record = population.person_record
    app_web = np.flatnonzero((person_record[:, APP] >= 0) & (person_record[:, WEB] >= 0))
    app_web = app_web[rng.random(len(app_web)) < 0.6]
    card_web = np.flatnonzero((person_record[:, STORE] >= 0) & (person_record[:, WEB] >= 0))
    card_web = card_web[rng.random(len(card_web)) < 0.25]
    record_a = np.concatenate([person_record[app_web, APP], person_record[card_web, STORE]])
    record_b = np.concatenate([person_record[app_web, WEB], person_record[card_web, WEB]])
    systems = pa.array(list(SYSTEMS), type=pa.string())
    return pa.Table.from_arrays(
        [
            systems.take(pa.array(population.record_system[record_a].astype(np.int64))),
            source_ids.take(pa.array(record_a)),
            systems.take(pa.array(population.record_system[record_b].astype(np.int64))),
            source_ids.take(pa.array(record_b)),
        ],
        schema=contract_schema("links"),
    )
