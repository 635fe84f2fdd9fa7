"""Keyed hashes of identifiers and the suppression list that keeps erased people out of the lake.

An identifier is hashed as HMAC-SHA256(workspace salt, "<kind>:<value>") with kinds `customer`
(our customer_id), `record` (source:source_id), `email` and `phone` (standardized, as identity
resolution compares them) and `order` (order_id, so returns of an erased order stay out). The salt is
random, per workspace, created on first use; without it a hash cannot be tested against a guess.
The list holds hashes only, never raw values. `suppressed_rows` is the one matcher used both by
erasure (which rows to remove) and by ingestion (which rows to drop), so the two always agree.

A row is the person's when a reference, an order id or (customers) its own `email` or `phone` is
theirs. A column the contract does not define (a custom attribute such as `backup_contact`, or in a
quarantined record a column ingestion ignores) is free-form and may name someone else's contact in
another person's row: `blank_suppressed_mentions` nulls such a value, never the row.
"""

from __future__ import annotations

import csv
import datetime as dt
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdp.config import IdentitySettings, PrivacySettings
from cdp.files import temporary_beside
from cdp.workspace import Workspace
from features.contract import CONTRACTS, TableContract
from features.identity.standardize import (
    EmailRules,
    standardize_email,
    standardize_phone,
    standardize_phones,
)

SALT_BYTES = 32
PHONE_LIKE = re.compile(r"[+\d][\d\s().\-]{5,}")
EMAIL_IN_TEXT = re.compile(r"[^@\s<>()\[\],;:\"']+@[^@\s<>()\[\],;:\"']+\.[^@\s<>()\[\],;:\"']+")
"""An e-mail address within free text (`backup: jo@example.com`, `mailto:jo@example.com`)."""
PHONE_SHAPED = re.compile(r"\+?[\d\s().\-]{9,22}")
SUPPRESSION_FILE = "suppression.parquet"
SUPPRESSION_SCHEMA = pa.schema([("hash", pa.string()), ("kind", pa.string()), ("request_id", pa.string()),
                                ("erased_at", pa.timestamp("us", tz="UTC"))])
STANDARDIZATION_KEY = b"cdp.standardization"


def workspace_path(workspace: Workspace, path: Path) -> Path:
    """A configured path: absolute as given, else below the workspace root."""
    return path if path.is_absolute() else workspace.root / path


def read_salt(workspace: Workspace, privacy: PrivacySettings) -> bytes | None:
    """The workspace's salt, or None when nobody has needed one yet."""
    path = workspace_path(workspace, privacy.salt_file)
    return bytes.fromhex(path.read_text().strip()) if path.exists() else None


def load_or_create_salt(workspace: Workspace, privacy: PrivacySettings) -> bytes:
    """The workspace's salt, created (random, readable by the owner only) on first use: written to a
    temporary file and linked into place, so two processes agree on one salt and none reads half of it."""
    path = workspace_path(workspace, privacy.salt_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_beside(path)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(SALT_BYTES))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            temporary.unlink()
    return bytes.fromhex(path.read_text().strip())


def keyed_hash(salt: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of "<kind>:<value>" in hex (the one-shot C path: ingestion hashes every distinct id)."""
    return hmac.digest(salt, f"{kind}:{value}".encode(), "sha256").hex()


@dataclass(frozen=True)
class Standardization:
    """How e-mails and phones are standardized before hashing; stored with the list so ingestion
    hashes exactly as erasure did."""

    phone_region: str = "GB"
    email_strip_plus_tags: bool = True
    email_dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")

    @classmethod
    def from_identity(cls, settings: IdentitySettings) -> Standardization:
        return cls(settings.default_phone_region, settings.email_strip_plus_tags,
                   tuple(settings.email_dotless_domains))

    @property
    def email_rules(self) -> EmailRules:
        return EmailRules(self.email_strip_plus_tags, self.email_dotless_domains)


@dataclass(frozen=True)
class SuppressionList:
    salt: bytes | None
    hashes: frozenset[str] = frozenset()
    standardization: Standardization = field(default_factory=Standardization)

    @property
    def empty(self) -> bool:
        return self.salt is None or not self.hashes


def suppression_path(workspace: Workspace, privacy: PrivacySettings) -> Path:
    return workspace_path(workspace, privacy.salt_file).parent / SUPPRESSION_FILE


def load_suppression(workspace: Workspace, privacy: PrivacySettings | None = None) -> SuppressionList:
    """The workspace's suppression list (empty when nobody was erased)."""
    privacy = privacy or PrivacySettings()
    path = suppression_path(workspace, privacy)
    salt = read_salt(workspace, privacy)
    if salt is None or not path.exists():
        return SuppressionList(salt)
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    standardization = Standardization()
    if STANDARDIZATION_KEY in metadata:
        stored = json.loads(metadata[STANDARDIZATION_KEY])
        standardization = Standardization(stored["phone_region"], stored["email_strip_plus_tags"],
                                          tuple(stored["email_dotless_domains"]))
    return SuppressionList(salt, frozenset(table.column("hash").to_pylist()), standardization)


def append_suppression(workspace: Workspace, privacy: PrivacySettings, hashes: dict[str, str],
                       request_id: str, standardization: Standardization) -> int:
    """Add hash -> kind entries (atomically: temp file, then rename); returns how many were new."""
    path = suppression_path(workspace, privacy)
    existing = pq.read_table(path) if path.exists() else SUPPRESSION_SCHEMA.empty_table()
    known = set(existing.column("hash").to_pylist())
    new = {h: k for h, k in hashes.items() if h not in known}
    now = dt.datetime.now(dt.UTC)
    added = pa.table({"hash": list(new), "kind": list(new.values()), "request_id": [request_id] * len(new),
                      "erased_at": [now] * len(new)}, schema=SUPPRESSION_SCHEMA)
    metadata = {STANDARDIZATION_KEY: json.dumps({
        "phone_region": standardization.phone_region,
        "email_strip_plus_tags": standardization.email_strip_plus_tags,
        "email_dotless_domains": list(standardization.email_dotless_domains)}).encode()}
    table = pa.concat_tables([existing.select(SUPPRESSION_SCHEMA.names).cast(SUPPRESSION_SCHEMA), added])
    table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return len(new)


def reference_pairs(contract: TableContract) -> list[tuple[str, str]]:
    """The (source, id) column pairs through which a table names a customer record:
    `source`/`source_id`, and `source_a`/`id_a`, `source_b`/`id_b` in links."""
    names = set(contract.column_names)
    pairs = []
    for name in contract.column_names:
        if name.startswith("source") and name != "source_id":
            suffix = name.removeprefix("source")
            identifier = "source_id" if suffix == "" else f"id{suffix}"
            if identifier in names:
                pairs.append((name, identifier))
    return pairs


def matched_columns(table: str) -> list[str]:
    """The columns `suppressed_rows` reads for a table (all a caller needs to load)."""
    contract = CONTRACTS[table]
    names = [c for pair in reference_pairs(contract) for c in pair]
    names += [c for c in ("order_id",) if c in contract.column_names]
    names += [c for c in ("email", "phone") if table == "customers" and c in contract.column_names]
    return names


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """Trimmed text, blanks and nulls as None (vectorized: ingestion calls this on every batch)."""
    text = frame[column].astype("string").str.strip()
    text = text.mask(text == "")
    return text.astype(object).where(text.notna(), None)


def _matches(values: pd.Series, kind: str, suppression: SuppressionList) -> np.ndarray:
    """Which values hash into the list; each distinct value is hashed once."""
    present = values.dropna()
    if present.empty:
        return np.zeros(len(values), dtype=bool)
    suppressed = {v for v in present.unique() if keyed_hash(suppression.salt, kind, v) in suppression.hashes}
    return values.isin(suppressed).to_numpy(dtype=bool) if suppressed else np.zeros(len(values), dtype=bool)


def suppressed_rows(frame: pd.DataFrame, table: str, suppression: SuppressionList) -> np.ndarray:
    """Rows of a contract table (typed or raw text) that name a suppressed person: by a record
    reference, an order id, or (customers) a standardized e-mail or phone. A `raw_text` column (a
    malformed line kept in quarantine as read) is matched field by field, see `raw_text_rows`."""
    mask = np.zeros(len(frame), dtype=bool)
    if suppression.empty or frame.empty:
        return mask
    if "raw_text" in frame:
        mask |= raw_text_rows(frame["raw_text"], suppression)
    contract = CONTRACTS[table]
    for source, identifier in reference_pairs(contract):
        if source in frame and identifier in frame:
            sources, ids = _text(frame, source).str.lower(), _text(frame, identifier)
            keys = (sources + ":" + ids).where(sources.notna() & ids.notna(), None)
            mask |= _matches(keys, "record", suppression)
    if "order_id" in frame:
        mask |= _matches(_text(frame, "order_id"), "order", suppression)
    if table == "customers":
        rules = suppression.standardization
        if "email" in frame:
            emails = _text(frame, "email").map(lambda e: None if e is None else standardize_email(e, rules.email_rules))
            mask |= _matches(emails, "email", suppression)
        if "phone" in frame:
            phones, _ = standardize_phones(_text(frame, "phone").reset_index(drop=True), rules.phone_region)
            mask |= _matches(phones, "phone", suppression)
    return mask


def raw_text_rows(texts: pd.Series, suppression: SuppressionList) -> np.ndarray:
    """Malformed lines that name a suppressed person. Their fields cannot be told apart, so every
    field is tried as an order id, an e-mail and a phone, and every pair of fields (the first before
    the second, as `source` precedes `source_id` in every table) as a record reference: a line is kept
    whole in quarantine, so any identifier of the person in it makes it theirs."""
    mask = np.zeros(len(texts), dtype=bool)
    if suppression.empty:
        return mask
    rules = suppression.standardization
    for position, text in enumerate(texts.tolist()):
        if not isinstance(text, str) or not text.strip():
            continue
        fields = [f.strip() for line in csv.reader(text.splitlines()) for f in line if f.strip()]
        candidates = [("order", f) for f in fields]
        candidates += [("email", e) for f in fields if "@" in f and (e := standardize_email(f, rules.email_rules))]
        candidates += [("phone", p) for f in fields
                       if PHONE_LIKE.fullmatch(f) and (p := standardize_phone(f, rules.phone_region))]
        candidates += [("record", f"{a.lower()}:{b}") for i, a in enumerate(fields) for b in fields[i + 1:]]
        mask[position] = any(keyed_hash(suppression.salt, kind, value) in suppression.hashes
                             for kind, value in candidates)
    return mask


def attribute_columns(table: str, names: Iterable[str]) -> list[str]:
    """The columns among `names` the contract does not define, but for reserved ones (`_source_file`):
    custom attributes of `customers`, and in a quarantined record the columns ingestion ignores."""
    known = set(CONTRACTS[table].column_names)
    return [name for name in names if name not in known and not name.startswith("_")]


def suppressed_mentions(values: pd.Series, suppression: SuppressionList) -> np.ndarray:
    """Which free-form values name a suppressed e-mail (anywhere in the text) or phone (the whole value
    phone-shaped), standardized as `suppressed_rows` does; each distinct value is tested once."""
    text = values.astype("string").str.strip()
    distinct = text.dropna().drop_duplicates()
    if suppression.empty or distinct.empty:
        return np.zeros(len(values), dtype=bool)
    rules = suppression.standardization
    found = distinct[distinct.str.contains("@", regex=False)].str.findall(EMAIL_IN_TEXT).explode().dropna()
    emails = found.map(lambda e: standardize_email(e.rstrip("."), rules.email_rules))  # a sentence's full stop
    named = set(distinct.loc[emails.index[_matches(emails, "email", suppression)]])
    phone_shaped = _phone_shaped(distinct)
    if len(phone_shaped):
        phones, _ = standardize_phones(phone_shaped.reset_index(drop=True), rules.phone_region)
        named |= set(phone_shaped[_matches(phones, "phone", suppression)])
    return text.isin(named).to_numpy(dtype=bool) if named else np.zeros(len(values), dtype=bool)


def _phone_shaped(text: pd.Series) -> pd.Series:
    """The values written as a phone number, as the detector of personal custom attributes has it
    (features/customer_features.py): 9 to 15 digits, a bare number only with a leading + or 0 (else an id
    or an amount, which would each cost a phone-number parse)."""
    shaped = text[text.str.fullmatch(PHONE_SHAPED.pattern)]
    digits = shaped.str.count(r"\d")
    bare = shaped.str.fullmatch(r"\d+")
    return shaped[digits.between(9, 15) & (~bare | shaped.str.startswith("0"))]


def blank_suppressed_mentions(table: pa.Table, columns: Iterable[str],
                              suppression: SuppressionList) -> tuple[pa.Table, int]:
    """The table with every text value of `columns` that names a suppressed e-mail or phone set to null
    (the row stays: it may be another person's, who gave the erased one as a contact); and how many."""
    blanked = 0
    for name in columns:
        if suppression.empty or name not in table.column_names:
            continue
        position = table.schema.get_field_index(name)
        column = table.column(position)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        hit = suppressed_mentions(column.to_pandas(), suppression)
        if hit.any():
            nulls = pa.nulls(len(column), column.type)
            table = table.set_column(position, table.schema.field(position), pc.if_else(pa.array(hit), nulls, column))
            blanked += int(hit.sum())
    return table, blanked


def blank_suppressed_mentions_in_records(records: pd.Series, table: str,
                                         suppression: SuppressionList) -> tuple[pd.Series, int]:
    """Quarantined records (JSON text, as read) with each value of a column the contract does not
    define that names a suppressed e-mail or phone set to null; and how many values were. A malformed
    line (`raw_text`, fields unknown) is `raw_text_rows`' to judge, whole."""
    if suppression.empty:
        return records, 0
    parsed = [json.loads(r) if isinstance(r, str) else None for r in records]
    # each value's text leaves: a nested value (a list of contacts, kept as JSON) is blanked whole when
    # any of its texts names the person
    places = [(position, name, _text_leaves(record[name])) for position, record in enumerate(parsed)
              if isinstance(record, dict) for name in attribute_columns(table, record) if name != "raw_text"]
    places = [place for place in places if place[2]]
    if not places:
        return records, 0
    hit = suppressed_mentions(pd.Series([leaf for *_, leaves in places for leaf in leaves], dtype=object),
                              suppression)
    changed, count, start = {}, 0, 0
    for position, name, leaves in places:
        named = bool(np.asarray(hit[start:start + len(leaves)]).any())
        start += len(leaves)
        if named:
            parsed[position][name] = None
            changed[position] = json.dumps(parsed[position], ensure_ascii=False, allow_nan=False)
            count += 1
    if not changed:
        return records, 0
    blanked = records.copy()
    blanked.iloc[list(changed)] = list(changed.values())
    return blanked, count


def _text_leaves(value) -> list[str]:
    """The strings in a JSON value, however deep."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _text_leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _text_leaves(item)]
    return []


def identifier_hashes(salt: bytes, identifiers: dict[str, Iterable[str]]) -> dict[str, str]:
    """hash -> kind for every identifier of a person (kind -> values)."""
    return {keyed_hash(salt, kind, value): kind for kind, values in identifiers.items() for value in values}
