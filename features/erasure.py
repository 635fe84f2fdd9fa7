"""Erasure (`cdp forget`) and access (`cdp export-subject`) for one person, across every store.

A person is named by an e-mail, a customer id or a source record and found through the identity map,
so an e-mail reaches the customer and then ALL of their records and identifiers, their quarantined
`customers` records too, with the lake rows under those, any customer known only from them and the
e-mails and phones they give (`quarantined_records_of`, `Subject.linked_ids`). Erasure adds the keyed hashes of those identifiers
to the suppression list first (so an interrupted erasure still keeps re-ingested files out, and can
simply be run again), then rewrites every store without the
person — lake, quarantine, feature tables, outputs (scores, validation, exports), the online stores,
reports — and the identity map, profiles and edges last. Every file is rewritten to a temporary
file and renamed over the old one. E-mails and phones that other customers also have (a household's
landline) are neither hashed nor removed from those customers: they are the others' data too. Another
customer's custom attribute that names the person's e-mail or phone (`backup_contact`) loses that value
only, in the lake, quarantine, feature tables and profiles (`blank_suppressed_mentions`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cdp.config import Settings
from cdp.files import temporary_beside, write_json
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.identity.explain import explain_customer
from features.identity.standardize import (
    clean_identifier,
    clean_text,
    standardize_email_leniently,
    standardize_phone,
)
from features.identity.store import identity_paths, read_identity_state
from features.suppression import (
    Standardization,
    SuppressionList,
    append_suppression,
    attribute_columns,
    blank_suppressed_mentions,
    blank_suppressed_mentions_in_records,
    identifier_hashes,
    keyed_hash,
    load_or_create_salt,
    load_suppression,
    read_salt,
    suppressed_rows,
    suppression_path,
)

BATCH_ROWS = 200_000
CUSTOMER_COLUMNS = ("customer_id", "left_customer_id", "right_customer_id")
RECORD_COLUMNS = ("left_record", "right_record")
LINEAGE_COLUMNS = ("_source_file", "_source_row")
ERASED = "[erased]"
log = logging.getLogger("cdp.erasure")


class SubjectNotFoundError(LookupError):
    """No customer matches the request (or it is ambiguous); raised before anything is changed.
    `outcome`: why, in words the audit log may keep (no identifier)."""

    def __init__(self, message: str, outcome: str = "no such customer") -> None:
        super().__init__(message)
        self.outcome = outcome


class ErasureError(RuntimeError):
    """A store could not be cleaned; the message names it. Running the command again resumes."""


@dataclass(frozen=True)
class SubjectQuery:
    """Exactly one of: an e-mail, a customer id, or a source record."""

    email: str | None = None
    customer_id: str | None = None
    source: str | None = None
    source_id: str | None = None

    def __post_init__(self) -> None:
        # as typed or pasted: " C000000050 ", an id with a zero-width space (`clean_identifier`); blank is none
        for name in ("customer_id", "source", "source_id"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, clean_identifier(value) or None)
        if self.email is not None:
            object.__setattr__(self, "email", clean_text(self.email).strip() or None)
        given = [self.email is not None, self.customer_id is not None,
                 self.source is not None or self.source_id is not None]
        if sum(given) != 1 or (given[2] and (self.source is None or self.source_id is None)):
            raise ValueError("name the person with exactly one of: --email; --customer-id; --source and --source-id")

    @property
    def kind(self) -> str:
        return "e-mail" if self.email is not None else "customer id" if self.customer_id is not None else "record"


@dataclass
class Subject:
    """Everything that identifies one customer, found through the identity map; or a person held outside
    it (`customer_id` None): only in quarantine, and in lake rows of activity under their quarantined
    records (`find_held_person`)."""

    customer_id: str | None
    records: list[tuple[str, str]]
    emails: list[str]
    phones: list[str]
    order_ids: list[str]
    shared_identifiers: int = 0
    """E-mails and phones other customers also have: kept for them, not hashed."""
    former_ids: list[str] = field(default_factory=list)
    """Customer ids identity resolution retired by merging them into this one: data may still be kept,
    and campaign tools may still ask, under them."""
    linked_ids: list[str] = field(default_factory=list)
    """Customers known only from the person's quarantined `customers` records (`quarantined_records_of`):
    ingestion rejected the record, but loaded the orders or touches under it, and identity resolution made
    each such record a customer of its own (no PII, so joined to nobody). Their features, scores and online
    rows are the person's purchase history under another id: erased with the person."""
    quarantined_contacts: dict[str, list[str]] = field(default_factory=lambda: {"emails": [], "phones": []})
    """E-mails and phones (standardized) that only the person's quarantined `customers` records give, not
    their profile (`QuarantinedRecords`): suppressed with them unless another customer has them too."""

    @property
    def record_keys(self) -> list[str]:
        return [f"{source}:{source_id}" for source, source_id in self.records]

    @property
    def customer_ids(self) -> list[str]:
        return [self.customer_id, *self.former_ids, *self.linked_ids] if self.customer_id is not None else []

    @property
    def audit_identity(self) -> tuple[str, str]:
        """The (kind, value) whose keyed hash names the person in the audit log, as their suppression entry:
        the customer id; for a person held outside the identity map, their first record (sorted), else
        their e-mail."""
        if self.customer_id is not None:
            return "customer", self.customer_id
        return ("record", sorted(self.record_keys)[0]) if self.records else ("email", sorted(self.emails)[0])

    @property
    def described(self) -> str:
        if self.customer_id is None:
            return "the person held outside the identity map"
        linked = (f" (with customer(s) {', '.join(self.linked_ids)}, known only from quarantined records of theirs)"
                  if self.linked_ids else "")
        return f"customer {self.customer_id}{linked}"

    def identifiers(self) -> dict[str, list[str]]:
        return {"customer": self.customer_ids, "record": self.record_keys, "email": self.emails,
                "phone": self.phones, "order": self.order_ids}


@dataclass
class ErasureReport:
    request_id: str
    records: int
    suppression_entries_added: int
    shared_identifiers_kept: int
    rows_removed: dict[str, int] = field(default_factory=dict)
    """Store (path below the workspace, or online store) -> rows or keys removed."""
    files_scrubbed: list[str] = field(default_factory=list)
    abandoned_files_removed: int = 0
    """Temporary files of killed writers (partial table copies) deleted on the way."""
    values_blanked: dict[str, int] = field(default_factory=dict)
    """Store -> values of other people's rows nulled because they name the person (`backup_contact`)."""
    raw_files_kept: list[str] = field(default_factory=list)
    """Source export files inside the workspace that still hold (or may hold) the person: `cdp forget`
    never rewrites input files (`raw_files_in_workspace`)."""


RAW_DIRECTORY = "raw"
"""`data/raw/` of a workspace: where `make demo` and `cdp simulate` put the raw exports ingested."""


def raw_files_in_workspace(workspace: Workspace, source_files: Iterable[str]) -> list[str]:
    """Input files inside the workspace that hold or may hold a person, relative to it: the files their
    ingested rows came from (lineage, quarantine) and every file under data/raw/. Ingestion reads them,
    erasure does not rewrite them: their owner must delete or re-export them."""
    root = workspace.root.resolve()
    found = set()
    for name in source_files:
        path = Path(name)
        if path.is_file() and path.resolve().is_relative_to(root):
            found.add(path.resolve())
    raw = workspace.data / RAW_DIRECTORY
    if raw.is_dir():
        found.update(path.resolve() for path in raw.rglob("*") if path.is_file() and not path.name.startswith("."))
    return sorted(str(path.relative_to(root)) for path in found)


def warn_about_raw_files(files: list[str], action: str) -> None:
    if files:
        log.warning("%s: raw export files inside the workspace still hold or may hold the person, and no command "
                    "of cdp rewrites them; delete them or have their owner re-export them without the person "
                    "(else they are only kept out of the lake by the suppression list): %s", action, ", ".join(files))


def _standardization(settings: Settings) -> Standardization:
    return Standardization.from_identity(settings.identity)


def _read_identity(workspace: Workspace) -> tuple[pd.DataFrame, pd.DataFrame]:
    paths = identity_paths(workspace)
    if not paths["identity_map"].exists():
        raise SubjectNotFoundError(f"{paths['identity_map']} not found: nobody can be looked up; run `cdp resolve` first",
                                   "no identity map")
    identity_map = pd.read_parquet(paths["identity_map"])
    profiles = pd.read_parquet(paths["profiles"]) if paths["profiles"].exists() else pd.DataFrame(
        columns=["customer_id", "emails", "phones"])
    return identity_map, profiles


def _listed(profiles: pd.DataFrame, column: str) -> pd.DataFrame:
    """customer_id, value for every element of a list column of the profiles."""
    if column not in profiles:
        return pd.DataFrame(columns=["customer_id", "value"])
    exploded = profiles[["customer_id", column]].explode(column).dropna()
    return exploded.rename(columns={column: "value"})


def find_customer(identity_map: pd.DataFrame, profiles: pd.DataFrame, query: SubjectQuery,
                  standardization: Standardization, merged_into: dict[str, str] | None = None,
                  merged_then_split: dict[str, str] | None = None) -> str:
    """The customer id a request names (an id retired by a merge names the customer it went to;
    one whose customer split since names no one: either part may be another person);
    SubjectNotFoundError when none (or several) match."""
    if query.customer_id is not None:
        if not (identity_map["customer_id"] == query.customer_id).any():
            if query.customer_id in (merged_then_split or {}):
                raise SubjectNotFoundError(
                    f"customer {query.customer_id!r} was retired by a merge into a customer that a later run split: "
                    "which part holds the person is not known; name them by e-mail or --source/--source-id",
                    "retired id of a customer split since")
            survivor = (merged_into or {}).get(query.customer_id)
            if survivor is not None and (identity_map["customer_id"] == survivor).any():
                return survivor
            raise SubjectNotFoundError(f"no customer {query.customer_id!r} in the identity map")
        return query.customer_id
    if query.source is not None:
        hit = identity_map[(identity_map["source"] == query.source.strip().lower())
                           & (identity_map["source_id"].astype(str) == query.source_id.strip())]
        if hit.empty:
            raise SubjectNotFoundError(f"no record {query.source}:{query.source_id} in the identity map")
        return str(hit["customer_id"].iloc[0])
    email = standardize_email_leniently(query.email, standardization.email_rules)
    emails = _listed(profiles, "emails")
    owners = sorted(set(emails.loc[emails["value"] == email, "customer_id"])) if email else []
    if not owners:
        raise SubjectNotFoundError("no customer has that e-mail in the profiles")
    if len(owners) > 1:
        raise SubjectNotFoundError(f"that e-mail is shared by {len(owners)} customers; name one with --customer-id "
                                   f"({', '.join(owners)})", "e-mail shared by several customers")
    return owners[0]


def find_subject(workspace: Workspace, settings: Settings, query: SubjectQuery) -> Subject:
    """The customer a request names with all their records and identifiers (I/O: identity outputs, orders)."""
    identity_map, profiles = _read_identity(workspace)
    standardization = _standardization(settings)
    state = read_identity_state(workspace)
    merged_into = state["merged_into"]
    try:
        customer_id = find_customer(identity_map, profiles, query, standardization, merged_into,
                                    state["merged_then_split"])
    except SubjectNotFoundError as error:
        erased_at = _erased_at(workspace, settings, query, standardization)
        if error.outcome == "no such customer" and erased_at is not None:
            raise SubjectNotFoundError(f"{error}: that {query.kind} was erased on {erased_at:%Y-%m-%d %H:%M} UTC "
                                       "(cdp forget); its suppression entry keeps it out", "already erased") from error
        if error.outcome == "no such customer":
            named = ({standardize_email_leniently(query.email, standardization.email_rules)} - {None}
                     if query.email is not None else set())
            record = _record_key(query.source, query.source_id) if query.source is not None else None
            held = held_outside_identity(workspace, named, {record} - {None}, standardization)
            if held:
                raise SubjectNotFoundError(f"{error}, but {held}", "held but not resolved") from error
            try:
                person = find_held_person(workspace, query, standardization, identity_map, profiles)
            except SubjectNotFoundError as refused:
                raise SubjectNotFoundError(f"{error}; {refused}", refused.outcome) from error
            if person is not None:
                return person
        raise
    records = identity_map.loc[identity_map["customer_id"] == customer_id, ["source", "source_id"]]
    record_list = [(str(s), str(i)) for s, i in zip(records["source"], records["source_id"], strict=True)]
    contacts: dict[str, list[str]] = {}
    shared = 0
    for column in ("emails", "phones"):
        listed = _listed(profiles, column)
        own = set(listed.loc[listed["customer_id"] == customer_id, "value"].astype(str))
        others = set(listed.loc[listed["customer_id"] != customer_id, "value"].astype(str))
        contacts[column] = sorted(own - others)
        shared += len(own & others)
    former = sorted(old for old, new in merged_into.items() if new == customer_id)
    quarantined = quarantined_records_of(workspace, identity_map, profiles, customer_id,
                                         {_record_key(s, i) for s, i in record_list}, standardization)
    record_list += [tuple(key.split(":", 1)) for key in quarantined.records]
    return Subject(customer_id, record_list, sorted({*contacts["emails"], *quarantined.emails}),
                   sorted({*contacts["phones"], *quarantined.phones}), _order_ids(workspace, set(record_list)),
                   shared + quarantined.shared, former, quarantined.customers,
                   {"emails": quarantined.given_emails, "phones": quarantined.given_phones})


class QuarantinedRecords(NamedTuple):
    """A customer's quarantined `customers` records outside the identity map's records of them."""

    records: list[str]
    """Their record keys (`source:source_id`), erased and suppressed with the customer: lake rows under them
    (orders, touches loaded while the record itself was rejected) and their order ids too."""
    customers: list[str]
    """Customers all of whose records are among them: known only from those records' activity."""
    kept: list[str]
    """Customers holding one of them together with other records: maybe someone else, left alone (as are
    the records they hold)."""
    emails: list[str]
    """E-mails (standardized leniently) that their quarantined records give (those erased, and those under
    the customer's own record keys) and no profile has: suppressed with them."""
    phones: list[str]
    """Phones those records give that neither their profile nor anyone else has (another customer, a lake
    customers row, another quarantined record: a household's landline): suppressed with them."""
    shared: int
    """E-mails and phones those records give that another customer (or row) has too: kept, not hashed."""
    given_emails: list[str]
    """Every e-mail those records give beyond their profile, shared ones too (the access export's)."""
    given_phones: list[str]
    """Every phone those records give beyond their profile, shared ones too."""


NO_QUARANTINED_RECORDS = QuarantinedRecords([], [], [], [], [], 0, [], [])


def quarantined_records_of(workspace: Workspace, identity_map: pd.DataFrame, profiles: pd.DataFrame,
                           customer_id: str, records: set[str | None],
                           standardization: Standardization) -> QuarantinedRecords:
    """The quarantined `customers` records that give one of the customer's own e-mails or one of their
    record keys, and those that give an e-mail or record of those (the rule `find_held_person` follows:
    e-mail and record, not a phone, which a household shares; an e-mail other customers have too, or a
    record of another customer, joins no more), beyond the records the identity map already gives them;
    the customers of the identity map holding those records; and the e-mails and phones those records and
    the quarantined records under their own record keys give (`QuarantinedRecords`). Said in the log, by
    customer id only."""
    listed = _listed(profiles, "emails")
    mine = (listed["customer_id"] == customer_id).to_numpy()
    own_emails, others_emails = set(listed.loc[mine, "value"].astype(str)), set(listed.loc[~mine, "value"].astype(str))
    emails, records = own_emails - others_emails, records - {None}
    quarantine_file = workspace.quarantine / "customers.parquet"
    if not quarantine_file.exists() or not (emails or records):
        return NO_QUARANTINED_RECORDS
    quarantined = _quarantined_records(pd.read_parquet(quarantine_file, columns=["record"]))
    keys, found_emails, found_phones = _contacts(quarantined, standardization)
    customer_of = dict(zip((_record_key(s, i) for s, i in zip(identity_map["source"], identity_map["source_id"],
                                                                strict=True)),
                           identity_map["customer_id"].astype(str), strict=True))
    joining = np.array([customer_of.get(key, customer_id) == customer_id for key in keys], dtype=bool)
    theirs, _, _ = _gathered(quarantined, keys, found_emails, emails, records, standardization,
                             joining=joining, never_joining=others_emails)
    if not theirs.any():
        return NO_QUARANTINED_RECORDS
    found = {key for key, mine in zip(keys, theirs, strict=True) if mine and key} - records
    source_ids = {key.split(":", 1)[1] for key in found}
    candidates = identity_map[identity_map["source_id"].astype(str).str.strip().isin(source_ids)]
    owners = {str(c) for s, i, c in zip(candidates["source"], candidates["source_id"], candidates["customer_id"],
                                        strict=True) if _record_key(s, i) in found} - {customer_id}
    held = identity_map[identity_map["customer_id"].isin(owners)]
    held_keys = [_record_key(s, i) for s, i in zip(held["source"], held["source_id"], strict=True)]
    by_owner: dict[str, set[str | None]] = {}
    for owner, key in zip(held["customer_id"].astype(str), held_keys, strict=True):
        by_owner.setdefault(owner, set()).add(key)
    linked = sorted(owner for owner, theirs in by_owner.items() if theirs <= found)
    kept = sorted(set(by_owner) - set(linked))
    left_alone = {key for owner in kept for key in by_owner[owner]}
    erased = sorted(found - left_alone)
    given = theirs & np.array([key not in left_alone for key in keys], dtype=bool)
    contacts = _contacts_given(workspace, profiles, {customer_id, *linked}, records | set(erased),
                               (found_emails, found_phones), given, standardization)
    if erased:
        log.info("customer %s: %d quarantined customers record(s) give their e-mail or one of their records: "
                 "erased with them%s", customer_id, len(erased),
                 f", and customer(s) {', '.join(linked)}, known only from those records" if linked else "")
    if kept:
        log.warning("customer %s: customer(s) %s hold one of their quarantined customers records together with "
                    "other records, so they may be someone else: left alone, with those records (check with "
                    "`cdp identity explain`; erase them separately if they are the same person)",
                    customer_id, ", ".join(kept))
    return QuarantinedRecords(erased, linked, kept, *contacts)


def _contacts_given(workspace: Workspace, profiles: pd.DataFrame, customer_ids: set[str], records: set[str],
                    found: tuple[list, list], given: np.ndarray,
                    standardization: Standardization) -> tuple[list[str], list[str], int, list[str], list[str]]:
    """The e-mails and phones (standardized, per quarantined record: `found`) of the records `given` beyond
    the profiles of `customer_ids` (the person's): to suppress (e-mails no other customer has; phones
    nobody else has, `_phones_of_others`), how many are kept as shared, and all of them."""
    theirs = profiles["customer_id"].astype(str).isin(customer_ids).to_numpy() if "customer_id" in profiles \
        else np.zeros(len(profiles), dtype=bool)
    own, others = profiles[theirs], profiles[~theirs]
    found_emails, found_phones = found
    emails = {e for e, mine in zip(found_emails, given, strict=True) if mine and e} - set(
        _listed(own, "emails")["value"].astype(str))
    phones = {p for p, mine in zip(found_phones, given, strict=True) if mine and p} - set(
        _listed(own, "phones")["value"].astype(str))
    shared_emails = emails & set(_listed(others, "emails")["value"].astype(str))
    shared_phones = phones & _phones_of_others(workspace, others, [p for p, mine in zip(found_phones, given,
                                                                                         strict=True) if not mine],
                                               standardization, records) if phones else set()
    return (sorted(emails - shared_emails), sorted(phones - shared_phones), len(shared_emails) + len(shared_phones),
            sorted(emails), sorted(phones))


def _gathered(quarantined: pd.DataFrame, keys: list, found_emails: list, emails: set[str], records: set[str],
              standardization: Standardization, joining: np.ndarray | None = None,
              never_joining: set[str] = frozenset()) -> tuple[np.ndarray, set[str], set[str]]:
    """The quarantined customers records (as columns, with their record keys and e-mails: `_contacts`) that
    give one of these e-mails or records, and those giving an e-mail or record of the records found, until
    no more are found (as identity resolution would join them by e-mail); with all the e-mails and records.
    `joining`: the records whose e-mails and records are followed (default all); `never_joining`: e-mails
    never followed."""
    emails, records = set(emails), set(records)
    theirs = np.zeros(len(quarantined), dtype=bool)
    while True:
        more = theirs | _naming(quarantined, emails, records, standardization)
        followed = more if joining is None else more & joining
        emails |= {e for e, mine in zip(found_emails, followed, strict=True) if mine and e} - never_joining
        records |= {k for k, mine in zip(keys, followed, strict=True) if mine and k}
        if (more == theirs).all():
            return theirs, emails, records
        theirs = more


def _naming(quarantined: pd.DataFrame, emails: set[str], records: set[str],
            standardization: Standardization) -> np.ndarray:
    """Quarantined customers records (as columns) that give one of these e-mails (standardized leniently)
    or record keys."""
    return _record_rows(quarantined, "customers", _matcher({"email": emails, "record": records}, standardization))


def _record_key(source, source_id) -> str | None:
    """`source:source_id` as the suppression list keys a record (source lower-cased, both trimmed); None
    when either is missing."""
    if source is None or source_id is None or (isinstance(source, float) and np.isnan(source)) or (
            isinstance(source_id, float) and np.isnan(source_id)):
        return None
    source, source_id = str(source).strip().lower(), str(source_id).strip()
    return f"{source}:{source_id}" if source and source_id else None


def _column_values(frame: pd.DataFrame, column: str) -> list:
    return frame[column].tolist() if column in frame else [None] * len(frame)


def _contacts(frame: pd.DataFrame, standardization: Standardization) -> tuple[list, list, list]:
    """Per row of a customers frame (lake rows, or quarantined records as columns): its record key, its
    e-mail and phone standardized leniently (None where missing or unreadable)."""
    keys = [_record_key(s, i) for s, i in zip(_column_values(frame, "source"), _column_values(frame, "source_id"),
                                               strict=True)]
    emails = [standardize_email_leniently(v, standardization.email_rules) if isinstance(v, str) else None
              for v in _column_values(frame, "email")]
    phones = [standardize_phone(v, standardization.phone_region) if isinstance(v, str) and v.strip() else None
              for v in _column_values(frame, "phone")]
    return keys, emails, phones


def _matcher(identifiers: dict[str, Iterable[str]], standardization: Standardization) -> SuppressionList:
    """A throw-away suppression list of these identifiers (random salt)."""
    salt = secrets.token_bytes(32)
    return SuppressionList(salt, frozenset(identifier_hashes(salt, identifiers)), standardization)


def held_outside_identity(workspace: Workspace, emails: Iterable[str], records: Iterable[str],
                          standardization: Standardization) -> str | None:
    """Where the lake's customers table holds rows with one of these e-mails (standardized) or record keys
    not resolved into a customer yet (None: nowhere), said with what to do: `cdp resolve` first, which may
    join them to more of the person's records, so that the erasure reaches all of them."""
    emails, records = set(emails), set(records)
    lake_file = workspace.lake_table("customers")
    if not lake_file.exists() or not (emails or records):
        return None
    columns = [c for c in ("source", "source_id", "email") if c in pq.ParquetFile(lake_file).schema_arrow.names]
    keys, found, _ = _contacts(pd.read_parquet(lake_file, columns=columns), standardization)
    rows = sum(1 for key, email in zip(keys, found, strict=True) if key in records or email in emails)
    if not rows:
        return None
    return (f"{rows} row(s) of the lake's customers table ({_relative(workspace, lake_file)}) hold it, not resolved "
            "into a customer yet: run `cdp resolve`, then this command again (resolving may join more of the "
            "person's records, which the erasure must reach too)")


def find_held_person(workspace: Workspace, query: SubjectQuery, standardization: Standardization,
                     identity_map: pd.DataFrame, profiles: pd.DataFrame) -> Subject | None:
    """The person a request names who is no customer but held in quarantine (their customers records,
    rejected: they never reach the identity map) or in activity rows under such a record; None when
    nothing holds them. Their records and e-mails are gathered through the quarantined customers records
    that share one (as identity resolution would join them by e-mail); their phones, unless another row or
    customer has them too (a household's landline: kept, counted as shared); the ids of their orders, in
    the lake or quarantined. Refused (SubjectNotFoundError, "held but not resolved") when one of those
    records or e-mails is a customer's, or in a lake customers row not resolved yet: erase the customer,
    or run `cdp resolve` first, so that the erasure reaches all of the person's records."""
    if query.customer_id is not None:
        return None
    emails: set[str] = set()
    records: set[str] = set()
    if query.email is not None:
        wanted = standardize_email_leniently(query.email, standardization.email_rules)
        if wanted is None:
            return None
        emails.add(wanted)
    else:
        records.add(_record_key(query.source, query.source_id))
    quarantine_file = workspace.quarantine / "customers.parquet"
    frame = pd.read_parquet(quarantine_file) if quarantine_file.exists() else pd.DataFrame(columns=["record"])
    quarantined = _quarantined_records(frame)
    keys, found_emails, found_phones = _contacts(quarantined, standardization)
    theirs, emails, records = _gathered(quarantined, keys, found_emails, emails, records, standardization)
    customers = dict(zip((_record_key(s, i) for s, i in zip(identity_map["source"], identity_map["source_id"],
                                                              strict=True)), identity_map["customer_id"], strict=True))
    listed_emails = _listed(profiles, "emails")
    owned = {str(k): customers[k] for k in records if k in customers}
    owned.update({e: str(c) for e, c in zip(listed_emails["value"], listed_emails["customer_id"], strict=True)
                  if e in emails})
    if owned:
        raise SubjectNotFoundError(
            f"the quarantined records the request names share a record or e-mail with customer(s) "
            f"{', '.join(sorted(set(owned.values())))}: erase the customer (`cdp forget --customer-id …`), which "
            "removes these records with them", "held but not resolved")
    unresolved = held_outside_identity(workspace, emails, records, standardization)
    located = set(zip(frame["file"].astype(str), frame["row"].astype(int), strict=True)) if len(frame) else set()
    loaded = _loaded_rows_with_nulled_emails(workspace, emails, located, standardization)
    if unresolved or loaded:
        raise SubjectNotFoundError(f"the person is also held in {unresolved or loaded}", "held but not resolved")
    phones = {p for p, mine in zip(found_phones, theirs, strict=True) if mine and p}
    shared = phones & _phones_of_others(workspace, profiles, [p for p, mine in zip(found_phones, theirs, strict=True)
                                                              if not mine], standardization)
    record_pairs = sorted(tuple(key.split(":", 1)) for key in records)
    subject = Subject(None, record_pairs, sorted(emails), sorted(phones - shared),
                      _held_order_ids(workspace, records), len(shared))
    if not theirs.any() and not any(len(rows) for *_, rows in rows_of_subject(workspace, subject, standardization)):
        return None
    return subject


def _loaded_rows_with_nulled_emails(workspace: Workspace, emails: set[str], quarantined: set[tuple[str, int]],
                                    standardization: Standardization) -> str | None:
    """Lake customers rows whose e-mail validation nulled on the way in is one of these (their
    `customers.nulled.parquet` entry points at a loaded row, not a quarantined one): said as a place."""
    nulled_file, lake_file = workspace.quarantine / "customers.nulled.parquet", workspace.lake_table("customers")
    if not emails or not nulled_file.exists() or not lake_file.exists() or not _has_lineage(lake_file):
        return None
    nulled = pd.read_parquet(nulled_file, columns=["file", "row", "column", "original_value"])
    places = {(str(f), int(r)) for f, r, c, v in zip(nulled["file"], nulled["row"], nulled["column"],
                                                     nulled["original_value"], strict=True)
              if c == "email" and isinstance(v, str)
              and standardize_email_leniently(v, standardization.email_rules) in emails} - quarantined
    if not places:
        return None
    lake = pd.read_parquet(lake_file, columns=list(LINEAGE_COLUMNS))
    rows = sum(1 for place in zip(lake["_source_file"].astype(str), lake["_source_row"].astype(int), strict=True)
               if place in places)
    return (f"{rows} row(s) of the lake's customers table whose e-mail was nulled on the way in "
            f"({_relative(workspace, nulled_file)}): name their record with --source/--source-id, after "
            "`cdp resolve` if it is not resolved yet") if rows else None


def _phones_of_others(workspace: Workspace, profiles: pd.DataFrame, quarantined_phones: list,
                      standardization: Standardization, own_records: set[str] = frozenset()) -> set[str]:
    """Phones customers (`profiles`), lake customers rows (but those under `own_records`, the person's) and
    other quarantined records (`quarantined_phones`, standardized) have."""
    phones = {p for p in quarantined_phones if p} | set(_listed(profiles, "phones")["value"].astype(str))
    lake_file = workspace.lake_table("customers")
    names = pq.ParquetFile(lake_file).schema_arrow.names if lake_file.exists() else []
    if "phone" in names:
        columns = [c for c in ("source", "source_id", "phone") if c in names]
        lake = pd.read_parquet(lake_file, columns=columns)
        if own_records:
            lake = lake[[_record_key(s, i) not in own_records for s, i in zip(
                _column_values(lake, "source"), _column_values(lake, "source_id"), strict=True)]]
        phones |= {p for v in lake["phone"].dropna().unique()
                   if isinstance(v, str) and (p := standardize_phone(v, standardization.phone_region))}
    return phones


def _held_order_ids(workspace: Workspace, records: set[str]) -> list[str]:
    """Ids of the orders under these records, loaded or quarantined."""
    found = set()
    lake_file = workspace.lake_table("orders")
    if lake_file.exists():
        orders = pd.read_parquet(lake_file, columns=["order_id", "source", "source_id"])
        found |= {str(o) for o, s, i in zip(orders["order_id"], orders["source"], orders["source_id"], strict=True)
                  if _record_key(s, i) in records}
    quarantine_file = workspace.quarantine / "orders.parquet"
    if quarantine_file.exists():
        rejected = _quarantined_records(pd.read_parquet(quarantine_file, columns=["record"]))
        found |= {str(o).strip() for o, s, i in zip(_column_values(rejected, "order_id"),
                                                    _column_values(rejected, "source"),
                                                    _column_values(rejected, "source_id"), strict=True)
                  if _record_key(s, i) in records and isinstance(o, str | int) and str(o).strip()}
    return sorted(found)


def _erased_at(workspace: Workspace, settings: Settings, query: SubjectQuery,
               standardization: Standardization) -> dt.datetime | None:
    """When the identifier a request names was added to the suppression list (None: never)."""
    salt = read_salt(workspace, settings.privacy)
    path = suppression_path(workspace, settings.privacy)
    if salt is None or not path.exists():
        return None
    if query.customer_id is not None:
        kind, value = "customer", query.customer_id
    elif query.source is not None:
        kind, value = "record", f"{query.source.strip().lower()}:{query.source_id.strip()}"
    else:
        kind, value = "email", standardize_email_leniently(query.email, standardization.email_rules) or ""
    entries = pq.read_table(path, columns=["hash", "erased_at"]).to_pandas()
    found = entries.loc[entries["hash"] == keyed_hash(salt, kind, value), "erased_at"]
    return found.min().to_pydatetime() if len(found) else None


def forget_former_ids(workspace: Workspace, subject: Subject) -> int:
    """Drop the subject's ids from the merge history (rewritten atomically); how many entries went."""
    state = read_identity_state(workspace)
    ids = set(subject.customer_ids)
    kept = {name: {old: new for old, new in state[name].items() if old not in ids and new not in ids}
            for name in ("merged_into", "merged_then_split")}
    dropped = sum(len(state[name]) - len(kept[name]) for name in kept)
    if dropped:
        write_json(identity_paths(workspace)["state"], {**state, **kept})
    return dropped


def _order_ids(workspace: Workspace, records: set[tuple[str, str]]) -> list[str]:
    path = workspace.lake_table("orders")
    if not path.exists() or not records:
        return []
    orders = pd.read_parquet(path, columns=["order_id", "source", "source_id"])
    keys = pd.Series(list(zip(orders["source"], orders["source_id"].astype(str), strict=True)), index=orders.index)
    return sorted(orders.loc[keys.isin(records), "order_id"].astype(str))


def subject_matcher(subject: Subject, standardization: Standardization) -> SuppressionList:
    """A throw-away suppression list of this one person (random salt): finds their rows for an export."""
    salt = secrets.token_bytes(32)
    return SuppressionList(salt, frozenset(identifier_hashes(salt, subject.identifiers())), standardization)


# ---------------------------------------------------------------- rewriting files


class Rewritten(NamedTuple):
    dropped: int
    """Rows removed."""
    blanked: int = 0
    """Values nulled in the rows kept."""


Blank = Callable[[pa.Table], tuple[pa.Table, int]]
"""Nulls the values of a batch that name the person, and says how many."""


def rewrite_parquet(path: Path, drop: Callable[[pd.DataFrame], np.ndarray],
                    on_dropped: Callable[[pd.DataFrame], None] | None = None, blank: Blank | None = None) -> Rewritten:
    """Rewrite a Parquet file without the rows `drop` marks, and with `blank` applied to the rows kept,
    batch by batch, then rename it over the original; the file is left untouched when nothing changes."""
    source = pq.ParquetFile(path)
    temporary = temporary_beside(path)
    dropped = blanked = 0
    try:
        with pq.ParquetWriter(temporary, source.schema_arrow, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                table = pa.Table.from_batches([batch], schema=source.schema_arrow)
                frame = table.to_pandas()
                mask = np.asarray(drop(frame), dtype=bool)
                if mask.any():
                    dropped += int(mask.sum())
                    if on_dropped is not None:
                        on_dropped(frame[mask])
                kept = table.filter(pa.array(~mask))
                if blank is not None:
                    kept, count = blank(kept)
                    blanked += count
                writer.write_table(kept)
        if dropped or blanked:
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return Rewritten(dropped, blanked)


def rewrite_csv(path: Path, drop: Callable[[pd.DataFrame], np.ndarray]) -> int:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    mask = np.asarray(drop(frame), dtype=bool)
    if mask.any():
        temporary = temporary_beside(path)
        frame[~mask].to_csv(temporary, index=False)
        os.replace(temporary, path)
    return int(mask.sum())


def rewrite_json_lines(path: Path, drop_entry: Callable[[dict], bool]) -> int:
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not (line.strip() and drop_entry(json.loads(line)))]
    if len(kept) != len(lines):
        temporary = temporary_beside(path)
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, path)
    return len(lines) - len(kept)


def scrub_json(value, identifiers: set[str]):
    """The JSON value with every string equal to an identifier replaced, and every object key equal
    to one dropped (reports may list ids)."""
    if isinstance(value, str):
        return ERASED if value in identifiers else value
    if isinstance(value, list):
        return [scrub_json(item, identifiers) for item in value]
    if isinstance(value, dict):
        return {key: scrub_json(item, identifiers) for key, item in value.items() if key not in identifiers}
    return value


def rewrite_json(path: Path, identifiers: set[str]) -> bool:
    try:
        original = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    scrubbed = scrub_json(original, identifiers)
    if scrubbed == original:
        return False
    temporary = temporary_beside(path)
    temporary.write_text(json.dumps(scrubbed, indent=2))
    os.replace(temporary, path)
    return True


def customer_rows(frame: pd.DataFrame, customer_ids: set[str], record_keys: set[str]) -> np.ndarray:
    """Rows of an output or feature table that belong to the customers (by id or by record)."""
    mask = np.zeros(len(frame), dtype=bool)
    for column in CUSTOMER_COLUMNS:
        if column in frame:
            mask |= frame[column].astype(str).isin(customer_ids).to_numpy()
    for column in RECORD_COLUMNS:
        if column in frame:
            mask |= frame[column].astype(str).isin(record_keys).to_numpy()
    return mask


def _quarantined_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw records kept in a quarantine file, as columns (malformed lines have only raw_text)."""
    return pd.DataFrame([json.loads(r) if isinstance(r, str) else {} for r in frame["record"]], index=frame.index)


def _record_rows(records: pd.DataFrame, table: str, suppression: SuppressionList) -> np.ndarray:
    """Quarantined records (as columns) that name a person of the list: `suppressed_rows`, and in customers
    an e-mail or phone that standardizes to theirs leniently (`Name <addr>`, `mailto:`, `tel:`), as
    ingestion drops such a record (`suppressed_contacts` in features/ingest/pipeline.py)."""
    from features.ingest.pipeline import suppressed_contacts

    mask = suppressed_rows(records, table, suppression)
    if table == "customers" and not suppression.empty:
        for column in ("email", "phone"):
            if column in records:
                values = records[column].astype(object).where(records[column].notna(), None)
                mask |= suppressed_contacts(pd.Series([column] * len(records)), values, suppression)
    return mask


def _quarantine_rows(frame: pd.DataFrame, table: str, suppression: SuppressionList) -> np.ndarray:
    """Rows of a quarantine file whose raw record names a person of the list (`_record_rows`)."""
    return _record_rows(_quarantined_records(frame), table, suppression)


def _nulled_contact_rows(frame: pd.DataFrame, subject: Subject, standardization: Standardization) -> np.ndarray:
    """Nulled e-mail or phone values that standardize to one of the person's (leniently: the address out of
    `Name <addr>` or `mailto:`; `tel:` and other ways of writing a number, as `standardize_phone` reads them).
    Ingestion drops the nulled values of suppressed contacts the same way (`drop_suppressed_nulled_values`)."""
    emails, phones = set(subject.emails), set(subject.phones)
    mask = np.zeros(len(frame), dtype=bool)
    for position, (column, value) in enumerate(zip(frame["column"], frame["original_value"], strict=True)):
        if value is None:
            continue
        if column == "email":
            mask[position] = standardize_email_leniently(str(value), standardization.email_rules) in emails
        elif column == "phone":
            mask[position] = standardize_phone(str(value), standardization.phone_region) in phones
    return mask


# ---------------------------------------------------------------- erasure


def _relative(workspace: Workspace, path: Path) -> str:
    return str(path.relative_to(workspace.root)) if path.is_relative_to(workspace.root) else str(path)


def erase_from_lake(workspace: Workspace, suppression: SuppressionList, subject: Subject,
                    standardization: Standardization,
                    source_files: set[str] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Lake and quarantine tables without the person's rows (raw records and nulled values included),
    and without their e-mails and phones in other rows' custom attributes. Returns rows removed and
    values blanked, per file; `source_files` receives the input files the removed rows came from."""
    removed: dict[str, int] = {}
    blanked: dict[str, int] = {}
    source_files = set() if source_files is None else source_files
    for table in CONTRACTS:
        locations: set[tuple[str, int]] = set()

        def remember(frame: pd.DataFrame, file_column: str, row_column: str, into=locations) -> None:
            into.update(zip(frame[file_column].astype(str), frame[row_column].astype(int), strict=True))

        lake_file = workspace.lake_table(table)
        if lake_file.exists():
            attributes = attribute_columns(table, pq.ParquetFile(lake_file).schema_arrow.names)
            rewritten = rewrite_parquet(
                lake_file, lambda frame, t=table: suppressed_rows(frame, t, suppression),
                (lambda frame: remember(frame, *LINEAGE_COLUMNS)) if _has_lineage(lake_file) else None,
                lambda batch, names=attributes: blank_suppressed_mentions(batch, names, suppression))
            _count(workspace, lake_file, rewritten, removed, blanked)
        rejected_file = workspace.quarantine / f"{table}.parquet"
        if rejected_file.exists():
            rewritten = rewrite_parquet(
                rejected_file, lambda frame, t=table: _quarantine_rows(frame, t, suppression),
                lambda frame: remember(frame, "file", "row"),
                lambda batch, t=table: _blank_quarantined_records(batch, t, suppression))
            _count(workspace, rejected_file, rewritten, removed, blanked)
        source_files.update(file for file, _ in locations)
        nulled_file = workspace.quarantine / f"{table}.nulled.parquet"
        if nulled_file.exists():
            removed[_relative(workspace, nulled_file)] = rewrite_parquet(
                nulled_file, lambda frame, places=locations: nulled_rows(frame, places, subject, standardization)).dropped
    return removed, blanked


def _count(workspace: Workspace, path: Path, rewritten: Rewritten, removed: dict[str, int],
           blanked: dict[str, int]) -> None:
    removed[_relative(workspace, path)] = rewritten.dropped
    if rewritten.blanked:
        blanked[_relative(workspace, path)] = rewritten.blanked


def _blank_quarantined_records(batch: pa.Table, table: str, suppression: SuppressionList) -> tuple[pa.Table, int]:
    """A quarantine batch whose raw records no longer name a suppressed e-mail or phone in a column the
    contract does not define."""
    records, count = blank_suppressed_mentions_in_records(batch.column("record").to_pandas(), table, suppression)
    if not count:
        return batch, 0
    position = batch.schema.get_field_index("record")
    return batch.set_column(position, batch.schema.field(position), pa.array(records, pa.string())), count


def custom_attributes(workspace: Workspace) -> list[str]:
    """The lake's custom `customers` columns (as profiles and, prefixed `attribute_`, the profile feature
    table carry them)."""
    path = workspace.lake_table("customers")
    return attribute_columns("customers", pq.ParquetFile(path).schema_arrow.names) if path.exists() else []


def nulled_rows(frame: pd.DataFrame, locations: set[tuple[str, int]], subject: Subject,
                standardization: Standardization) -> np.ndarray:
    """Nulled values of the person: from one of their rows (file, row), or a contact that standardizes
    to one of theirs."""
    keys = pd.Series(list(zip(frame["file"].astype(str), frame["row"].astype(int), strict=True)), dtype=object)
    return keys.isin(locations).to_numpy() | _nulled_contact_rows(frame, subject, standardization)


def _has_lineage(path: Path) -> bool:
    return set(LINEAGE_COLUMNS) <= set(pq.ParquetFile(path).schema_arrow.names)


def erase_from_tables(workspace: Workspace, directories: Iterable[Path], subject: Subject,
                      skip: set[Path], blank: Blank | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Every Parquet, CSV and JSON-lines file below the directories (feature tables, scores,
    validation, exports) without the person's rows, and `blank` applied to the Parquet ones' other rows.
    Returns rows removed and values blanked, per file."""
    removed: dict[str, int] = {}
    blanked: dict[str, int] = {}
    ids, records = set(subject.customer_ids), set(subject.record_keys)
    for path in customer_tables(directories, skip):
        if path.suffix == ".parquet":
            _count(workspace, path, rewrite_parquet(path, lambda frame: customer_rows(frame, ids, records), blank=blank),
                   removed, blanked)
            continue
        if path.suffix == ".csv":
            count = rewrite_csv(path, lambda frame: customer_rows(frame, ids, records))
        else:
            count = rewrite_json_lines(path, lambda entry: bool(customer_rows(pd.DataFrame([entry]), ids, records)[0]))
        removed[_relative(workspace, path)] = count
    return removed, blanked


TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")


def customer_tables(directories: Iterable[Path], skip: set[Path]) -> list[Path]:
    """The table files below the directories that may hold customers' rows (feature tables, scores,
    validation predictions, segment exports): what an erasure rewrites and an access request shows."""
    return [path for directory in directories if directory.exists() for path in sorted(directory.rglob("*"))
            if path.is_file() and path not in skip and not path.name.startswith(".") and path.suffix in TABLE_SUFFIXES]


def read_customer_rows(path: Path, subject: Subject) -> pd.DataFrame:
    """A table file's rows of the person (any format `customer_tables` lists)."""
    ids, records = set(subject.customer_ids), set(subject.record_keys)
    if path.suffix == ".parquet":
        return _matching_rows(path, lambda frame: customer_rows(frame, ids, records))
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        frame = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return frame[customer_rows(frame, ids, records)] if len(frame) else frame


def require_configured_online_store(workspace: Workspace, settings: Settings) -> None:
    """Refuse (before anything is erased) when `cdp features materialize` last loaded this workspace into
    Redis but the configuration names SQLite: the person's features would stay in Redis, served, while
    the erasure reported success."""
    from features.feature_store import online_store_identity, read_materialization

    loaded = read_materialization(workspace)
    if loaded.get("online_store") != "redis":
        return
    if settings.features.online_store != "redis":
        raise ErasureError(
            "the online store of this workspace was last loaded into Redis (data/feast/materialized.json), but "
            "this configuration names SQLite, so the person would stay in Redis: run the command again with "
            "CDP_FEATURES__ONLINE_STORE=redis and the workspace's CDP_FEATURES__REDIS_CONNECTION_STRING (nothing "
            "was erased)")
    configured = online_store_identity(workspace, settings.features)
    differing = {k: (loaded[k], configured[k]) for k in configured if k in loaded and loaded[k] != configured[k]}
    if differing:
        said = "; ".join(f"{k}: loaded into {was!r}, configured {now!r}" for k, (was, now) in differing.items())
        raise ErasureError(f"this configuration reaches other Redis keys than the workspace was loaded into ({said}), "
                           "so the person would stay where they are: run the command again with the settings "
                           "materialize used (features.redis_connection_string, features.redis_namespace; nothing "
                           "was erased)")


def erase_from_online_stores(workspace: Workspace, settings: Settings, customer_ids: list[str]) -> dict[str, int]:
    """The configured online store, and the workspace's SQLite store file too when Redis is configured."""
    from features.feature_store import open_feature_store, sqlite_store_path

    if not (workspace.feast / "registry.db").exists():
        return {}
    sqlite_file = sqlite_store_path(workspace).exists()
    targets = [settings.features] if settings.features.online_store != "sqlite" or sqlite_file else []
    if settings.features.online_store != "sqlite" and sqlite_file:
        targets.append(settings.features.model_copy(update={"online_store": "sqlite"}))
    removed = {}
    for features in targets:
        store = open_feature_store(workspace, features)
        online = store._get_provider().online_store
        if not hasattr(online, "delete_customers"):
            raise ErasureError(f"online store {type(online).__name__} cannot delete customers; use cdp's packed stores")
        try:
            removed[f"online store ({features.online_store})"] = online.delete_customers(
                store.config, store.list_feature_views(), customer_ids)
        except Exception as error:  # Redis down, file locked: say which store, keep the rest for a re-run
            raise ErasureError(f"online store ({features.online_store}) could not be cleaned: {error}; "
                               "nothing was removed from the identity map, run the command again") from error
    return removed


def scrub_reports(workspace: Workspace, subject: Subject, skip: set[Path]) -> list[str]:
    """JSON reports and summaries that name the person by id: the values replaced with "[erased]"."""
    identifiers = {*subject.customer_ids, *subject.record_keys, *(i for _, i in subject.records),
                   *subject.emails, *subject.phones, *subject.order_ids}
    scrubbed = []
    for directory in (workspace.reports, workspace.outputs, workspace.data / "features", workspace.feast):
        if not directory.exists():
            continue
        for path in sorted(directory.rglob("*.json")):
            if path not in skip and rewrite_json(path, identifiers):
                scrubbed.append(_relative(workspace, path))
    return scrubbed


def forget(workspace: Workspace, settings: Settings, query: SubjectQuery,
           on_start: Callable[[Subject, str], None] | None = None) -> tuple[Subject, ErasureReport]:
    """Erase one person from every store and add them to the suppression list. `on_start(subject,
    request_id)` runs once the person is found, before anything is changed (the audit line: an erasure
    killed halfway is on record).

    Raises SubjectNotFoundError (nothing changed) when the request names nobody, and ErasureError
    (nothing changed) when the online store the workspace was last loaded into is not the one this
    configuration reaches."""
    from features.ingest.pipeline import lake_lock, remove_abandoned_staging

    subject = find_subject(workspace, settings, query)
    customer = subject.customer_id is not None  # else held only in quarantine (and activity under its records)
    if customer:
        require_configured_online_store(workspace, settings)
    standardization = _standardization(settings)
    request_id = uuid.uuid4().hex
    if on_start is not None:
        on_start(subject, request_id)
    salt = load_or_create_salt(workspace, settings.privacy)
    added = append_suppression(workspace, settings.privacy, identifier_hashes(salt, subject.identifiers()),
                               request_id, standardization)
    suppression = load_suppression(workspace, settings.privacy)
    report = ErasureReport(request_id, len(subject.records), added, subject.shared_identifiers)
    # The lake is held from here to the end, as every `cdp ingest` holds it: an ingest meanwhile would write
    # back the lake it read, person included, and the features' record of the lake they were built from
    # must be of the lake as erased, not of one an ingest changed since.
    with lake_lock(workspace):
        # partial copies of tables left by a process killed mid-rewrite (an earlier erasure, an ingest) and an
        # ingest's staged copy of a whole table hold other people's rows, and this person's, where no rewrite
        # below would look (under the lock: not those of an ingest running now)
        report.abandoned_files_removed = remove_abandoned_staging(workspace)
        features_were_current = _features_match_lake(workspace)
        # the lake's custom attributes, as profiles carry them and the profile feature table as attribute_<name>
        custom = custom_attributes(workspace)
        attributes = [*custom, *(f"attribute_{name}" for name in custom)]

        def blank(batch: pa.Table) -> tuple[pa.Table, int]:
            return blank_suppressed_mentions(batch, attributes, suppression)

        source_files: set[str] = set()
        removed, blanked = erase_from_lake(workspace, suppression, subject, standardization, source_files)
        report.raw_files_kept = raw_files_in_workspace(workspace, source_files)
        report.rows_removed.update(removed)
        report.values_blanked.update(blanked)
        paths = identity_paths(workspace)
        identity_files = {paths["identity_map"], paths["profiles"], paths["edges"]}
        removed, blanked = erase_from_tables(workspace, [workspace.data / "features", workspace.outputs], subject,
                                             identity_files, blank)
        report.rows_removed.update(removed)
        report.values_blanked.update(blanked)
        if customer:  # a person held outside the identity map has no features online, no pushes
            report.rows_removed.update(erase_from_online_stores(workspace, settings, subject.customer_ids))
            report.rows_removed.update(erase_from_push_log(workspace, subject))
        report.files_scrubbed = scrub_reports(workspace, subject, identity_files | {paths["state"]})
        # Last: while the identity map still holds the person, an interrupted erasure can be run again.
        for path in (paths["edges"], paths["profiles"], paths["identity_map"]):
            if path.exists():
                rewritten = rewrite_parquet(
                    path, lambda frame: customer_rows(frame, set(subject.customer_ids), set(subject.record_keys)),
                    blank=blank if path == paths["profiles"] else None)
                _count(workspace, path, rewritten, report.rows_removed, report.values_blanked)
        retired = forget_former_ids(workspace, subject)
        if retired:
            report.rows_removed[_relative(workspace, paths["state"])] = retired
        if features_were_current:
            _record_features_current(workspace)
    warn_about_raw_files(report.raw_files_kept, f"{subject.described} erased")
    return subject, report


def _features_match_lake(workspace: Workspace) -> bool:
    from features.feature_tables import tables_match_inputs

    return tables_match_inputs(workspace)


def _record_features_current(workspace: Workspace) -> None:
    """The feature tables were built from this lake and lost the same person: still current, so the
    next build need not start over."""
    from features.feature_tables import _fingerprint_path, _inputs_fingerprint

    _fingerprint_path(workspace).write_text(json.dumps(_inputs_fingerprint(workspace)))


# ---------------------------------------------------------------- access


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _rows(frame: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _matching_rows(path: Path, drop: Callable[[pd.DataFrame], np.ndarray]) -> pd.DataFrame:
    source = pq.ParquetFile(path)
    found = []
    for batch in source.iter_batches(batch_size=BATCH_ROWS):
        frame = batch.to_pandas()
        mask = np.asarray(drop(frame), dtype=bool)
        if mask.any():
            found.append(frame[mask])
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


def rows_of_subject(workspace: Workspace, subject: Subject,
                    standardization: Standardization) -> Iterator[tuple[str, str, Path, pd.DataFrame]]:
    """(table, store, file, rows) of the person's rows, store by store: "lake" (each lake table that
    exists), "quarantine" and "nulled" (each quarantine file that exists): what an erasure removes from
    them, shown (erasure matches with the whole suppression list, this with the person's identifiers)."""
    matcher = subject_matcher(subject, standardization)
    for table in CONTRACTS:
        locations: set[tuple[str, int]] = set()
        lake_file = workspace.lake_table(table)
        if lake_file.exists():
            rows = _matching_rows(lake_file, lambda frame, t=table: suppressed_rows(frame, t, matcher))
            if set(LINEAGE_COLUMNS) <= set(rows.columns):
                locations.update(zip(rows["_source_file"].astype(str), rows["_source_row"].astype(int), strict=True))
            yield table, "lake", lake_file, rows
        rejected = workspace.quarantine / f"{table}.parquet"
        if rejected.exists():
            rows = _matching_rows(rejected, lambda frame, t=table: _quarantine_rows(frame, t, matcher))
            if len(rows):
                locations.update(zip(rows["file"].astype(str), rows["row"].astype(int), strict=True))
            yield table, "quarantine", rejected, rows
        nulled_file = workspace.quarantine / f"{table}.nulled.parquet"
        if nulled_file.exists():
            yield table, "nulled", nulled_file, _matching_rows(
                nulled_file, lambda frame, places=locations: nulled_rows(frame, places, subject, standardization))


def preview_held_erasure(workspace: Workspace, settings: Settings, subject: Subject) -> dict[str, int]:
    """`cdp forget --dry-run` for a person held outside the identity map: rows that would be removed, per
    file below the workspace (changes nothing)."""
    found = rows_of_subject(workspace, subject, _standardization(settings))
    return {_relative(workspace, path): len(rows) for _, _, path, rows in found if len(rows)}


def export_subject(workspace: Workspace, settings: Settings, query: SubjectQuery,
                   served: Callable[[str], list[dict]] | None = None,
                   logged: Callable[[str], list[dict]] | None = None) -> dict:
    """Everything held about one person, as a JSON-ready dict: profile, source records of every lake
    table (and quarantine, and the invalid values nulled on the way in), identity links with their evidence, latest features, scores, and the
    recommendations served (from the audit log, through `served(customer_id)`)."""
    subject = find_subject(workspace, settings, query)
    standardization = _standardization(settings)
    if subject.customer_id is None:
        return _export_held(workspace, settings, subject, logged)
    identity_map, profiles = _read_identity(workspace)
    paths = identity_paths(workspace)
    edges = pd.read_parquet(paths["edges"]) if paths["edges"].exists() else None
    ids, records = set(subject.customer_ids), set(subject.record_keys)
    source_records, quarantined, nulled, source_files = _held_rows(workspace, subject, standardization)
    features = _latest_features(workspace, ids - set(subject.linked_ids))
    scores_path = workspace.outputs / "scores.parquet"
    scores = _rows(_matching_rows(scores_path, lambda frame: customer_rows(frame, ids, records))) \
        if scores_path.exists() else []
    # every other output holding the person (validation predictions and labels, segment exports sent to
    # campaign tools, other score files): what `forget` erases, shown
    outputs = {}
    for path in customer_tables([workspace.outputs], set(paths.values()) | {scores_path}):
        rows = read_customer_rows(path, subject)
        if len(rows):
            outputs[_relative(workspace, path)] = _rows(rows)
    profile = _rows(profiles[profiles["customer_id"] == subject.customer_id])
    identity = (_plain(explain_customer(subject.customer_id, identity_map, edges)) if edges is not None else
                {"records": _rows(identity_map[identity_map["customer_id"] == subject.customer_id])})
    # left out: the joins refused name another person's record and customer id, and what they share
    identity.pop("refused", None)
    raw_files = raw_files_in_workspace(workspace, source_files)
    warn_about_raw_files(raw_files, f"access export of customer {subject.customer_id}")
    audited = [r for c in subject.customer_ids for r in served(c)] if served is not None else []
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customer_id": subject.customer_id,
        "profile": profile[0] if profile else None,
        "identity": identity,
        "source_records": source_records,
        "quarantined_records": quarantined,
        "nulled_values": nulled,
        "features": features,
        "scores": scores,
        "other_outputs": outputs,
        "former_customer_ids": subject.former_ids,
        # e-mails and phones only their quarantined customers records give (not their profile): erased with them
        "quarantined_contacts": subject.quarantined_contacts,
        # customers known only from their quarantined records' activity (`Subject.linked_ids`): erased with them
        "linked_customers": [{
            "customer_id": linked,
            "profile": next(iter(_rows(profiles[profiles["customer_id"] == linked])), None),
            "records": _rows(identity_map[identity_map["customer_id"] == linked]),
            "features": _latest_features(workspace, {linked}),
        } for linked in subject.linked_ids],
        "recommendations_served": [e for e in audited if e.get("event") == "recommend"],
        # the audit log's other lines about them: consents granted or withdrawn, earlier access requests
        "consents_and_requests": [e for e in audited if e.get("event") != "recommend"],
        "pushed_signals": pushed_signals_of(workspace, subject),
        # not read into this export: input files cdp does not rewrite (their owner's to delete or re-export)
        "raw_files_in_workspace": raw_files,
    }


def _latest_features(workspace: Workspace, ids: set[str]) -> dict[str, dict]:
    """The latest row of each feature table among these customers' rows (tables holding some)."""
    features = {}
    for path in sorted((workspace.data / "features").glob("*.parquet")):
        rows = _matching_rows(path, lambda frame: customer_rows(frame, ids, set()))
        if len(rows):
            features[path.stem] = _rows(rows.sort_values("event_timestamp").tail(1))[0]
    return features


def _held_rows(workspace: Workspace, subject: Subject,
               standardization: Standardization) -> tuple[dict, dict, dict, set[str]]:
    """The person's lake rows (every lake table, empty ones too), quarantined records and nulled values
    (tables holding some), as JSON-ready rows; and the input files those rows came from."""
    source_records, quarantined, nulled, source_files = {}, {}, {}, set()
    for table, store, _, rows in rows_of_subject(workspace, subject, standardization):
        if store == "lake":
            source_records[table] = _rows(rows)
            if "_source_file" in rows:
                source_files.update(rows["_source_file"].astype(str))
        elif len(rows):
            (quarantined if store == "quarantine" else nulled)[table] = _rows(rows)
            if store == "quarantine":
                source_files.update(rows["file"].astype(str))
    return source_records, quarantined, nulled, source_files


def _export_held(workspace: Workspace, settings: Settings, subject: Subject,
                 logged: Callable[[str], list[dict]] | None) -> dict:
    """The access export of a person held outside the identity map: no profile, identity, features or
    scores (they are no customer), their quarantined records, nulled values and lake rows (activity under
    their records), and their earlier requests (`logged(pseudonym)`)."""
    source_records, quarantined, nulled, source_files = _held_rows(workspace, subject, _standardization(settings))
    raw_files = raw_files_in_workspace(workspace, source_files)
    warn_about_raw_files(raw_files, "access export of the person held outside the identity map")
    pseudonym = audit_pseudonym(workspace, settings, subject)
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customer_id": None,
        "held_outside_identity": "not a customer: held only in quarantine (records rejected on the way in, which "
                                 "never reach identity resolution) and in lake rows under those records",
        "audit_subject": pseudonym,
        "profile": None,
        "identity": {},
        "source_records": {table: rows for table, rows in source_records.items() if rows},
        "quarantined_records": quarantined,
        "nulled_values": nulled,
        "features": {},
        "scores": [],
        "other_outputs": {},
        "former_customer_ids": [],
        "quarantined_contacts": {"emails": subject.emails, "phones": subject.phones},
        "linked_customers": [],
        "recommendations_served": [],
        "consents_and_requests": logged(pseudonym) if logged is not None else [],
        "pushed_signals": [],
        "raw_files_in_workspace": raw_files,
    }


def audit_pseudonym(workspace: Workspace, settings: Settings, subject: Subject) -> str:
    """How the audit log names the person: the keyed hash of `Subject.audit_identity` (for a customer, the
    pseudonym `serving.audit` gives their id); the salt is created if this is the first entry ever."""
    return keyed_hash(load_or_create_salt(workspace, settings.privacy), *subject.audit_identity)


def _pushed_by_subject(workspace: Workspace, subject: Subject, maybe_theirs: bool = False) -> Callable[[dict], bool]:
    """Whether a push log entry is the person's: pushed under one of their ids, or under an id a merge
    retired into one of them. `maybe_theirs`: also under an id retired into one of theirs before that
    customer split (`merged_then_split`; it may be the other part's person). Erasure takes those too:
    their withdrawals applied only to the erased customer, so once it is gone they reach no one."""
    from features.feature_store import sent_under_split_id
    from features.identity.store import read_identity_state

    state = read_identity_state(workspace)
    retired = {**state["merged_then_split"], **state["merged_into"]} if maybe_theirs else state["merged_into"]
    ids = set(subject.customer_ids) | set(subject.former_ids)

    def theirs(entry: dict) -> bool:
        if not maybe_theirs and sent_under_split_id(entry, state["merged_then_split"]):
            return False  # sent under an id the split left with nobody: maybe the other part's
        return entry.get("customer_id") in ids or retired.get(entry.get("customer_id", "")) in ids

    return theirs


def pushed_signals_of(workspace: Workspace, subject: Subject) -> list[dict]:
    """The person's consent changes sent to /events or `cdp push` (the push log)."""
    from features.feature_store import push_log_entries

    mine = _pushed_by_subject(workspace, subject)
    return [entry for entry in push_log_entries(workspace)[0] if mine(entry)]


def erase_from_push_log(workspace: Workspace, subject: Subject) -> dict[str, int]:
    """The person's lines out of the push log, under the lock every push holds (a push appended while the
    file is rewritten would otherwise be lost: another customer's consent withdrawal). A line that cannot
    be read is kept unless it names one of the person's ids."""
    from features.feature_store import push_log_lock, push_log_path

    path = push_log_path(workspace)
    if not path.exists():
        return {}
    mine = _pushed_by_subject(workspace, subject, maybe_theirs=True)
    ids = set(subject.customer_ids) | set(subject.former_ids)

    def drop(line: str) -> bool:
        try:
            return bool(mine(json.loads(line)))
        except (ValueError, AttributeError):
            return any(customer in line for customer in ids)

    with push_log_lock(workspace):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [line for line in lines if line.strip() and not drop(line)]
        removed = sum(1 for line in lines if line.strip()) - len(kept)
        if removed:
            temporary = temporary_beside(path)
            temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(temporary, path)
    return {_relative(workspace, path): removed}


__all__ = ["ErasureError", "ErasureReport", "Subject", "SubjectNotFoundError", "SubjectQuery", "export_subject",
           "find_subject", "forget", "write_json"]
