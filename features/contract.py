"""The input data contract, as code: the single source for ingestion, the simulator and the docs.

`docs/data-contract.md` explains it for people; `cdp contract` prints this module's view of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["string", "timestamp", "date", "float", "int"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = False
    """The column must exist in the file and every value must be present and valid."""
    pii: bool = False
    """Personal data: an invalid value is nulled (and recorded) instead of rejecting the row."""
    allowed: frozenset[str] | None = None
    """For strings: the only accepted values, compared after lower-casing and trimming."""
    minimum: float | None = None
    maximum: float | None = None
    lowercase: bool = False
    spellings: tuple[tuple[str, str], ...] = ()
    """For strings: other ways of writing a value, as (`fold_value` of the spelling, the value): `E-mail`
    is read as `email`. A value matching none is kept lower-cased (and checked against `allowed`)."""
    description: str = ""
    aliases: tuple[str, ...] = ()
    """Other header names of the column, matched as its name is (`header_key`): `Mobile` is `phone`, unless
    the file also has the column under its own name (`Phone`): then `Mobile` is a custom column
    (`features.ingest.readers.contract_names`). Never another column's name or alias (checked when the table
    is defined)."""

    def canonical_value(self, value: str) -> str:
        """The value as the lake stores it: one of its spellings as the value, else lower-cased or trimmed."""
        spelled = dict(self.spellings).get(fold_value(value))
        if spelled is not None:
            return spelled
        return value.strip().lower() if self.lowercase else value.strip()


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    description: str
    allows_custom_columns: bool = False
    """Extra columns are custom attributes kept as they are (only `customers`)."""
    timestamp_column: str | None = None
    version_column: str | None = None
    """When a row's key is already in the lake, the row with the later value here is kept: re-ingesting
    an old export must not undo a newer one. A row without a value replaces the lake's."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.required)

    @property
    def pii_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.pii)

    def __post_init__(self) -> None:
        taken: dict[str, str] = {}
        for column in self.columns:
            for name in (column.name, *column.aliases):
                other = taken.setdefault(header_key(name), column.name)
                if other != column.name:
                    raise ValueError(f"table {self.name!r}: header name {name!r} would be both {other!r} "
                                     f"and {column.name!r}")

    def column_for_header(self, name: str) -> str | None:
        """The contract column a header name is (`header_key`: case, spaces, hyphens and underscores do not
        matter; a column's `aliases` are its names too), or None: a custom or unknown column."""
        key = header_key(name)
        for column in self.columns:
            if key == header_key(column.name) or any(key == header_key(alias) for alias in column.aliases):
                return column.name
        return None

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r}")


VALUE_SEPARATORS = r"[\s_.\-]+"
"""Left out when a value is compared with the spellings of a column (`E-Mail`, `e_mail`, `e mail` are one)."""


def fold_value(value: str) -> str:
    """A value as compared with a column's spellings: lower-cased, without spaces, `_`, `-` or `.`."""
    return re.sub(VALUE_SEPARATORS, "", value.lower())


def header_key(name: str) -> str:
    """A header name as compared with the contract's column names and aliases: trimmed, lower-cased, without
    spaces, hyphens or underscores (`First Name`, `first-name`, `FirstName`, `E-mail` are `firstname`,
    `firstname`, `firstname`, `email`)."""
    return re.sub(r"[\s\-_]+", "", name.strip().lower())


def _source_columns() -> tuple[Column, ...]:
    return (
        Column("source", "string", required=True, lowercase=True,
               description="System the record came from (web, app, store, crm, ...)."),
        Column("source_id", "string", required=True,
               description="The customer's id in that system."),
    )


ORDER_CHANNELS = frozenset({"web", "app", "store", "phone"})
CONSENT_STATUSES = frozenset({"granted", "withdrawn"})
CONTACT_CHANNELS = frozenset({"email", "push", "sms"})
"""The channels consent is given for and the policy contacts through (`features.customer_features.CHANNELS`)."""
CONTROL_CHANNEL = "none"
"""A touch row for a customer selected but held out as a control."""


def _spellings(canonical: dict[str, tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    return tuple((fold_value(spelling), value) for value, spellings in canonical.items()
                 for spelling in (value, *spellings))


CHANNEL_SPELLINGS = _spellings({
    "email": ("e-mail", "e mail"),
    "sms": ("text", "texts", "text message", "text messages", "sms message", "txt"),
    "push": ("push notification", "push notifications", "app push", "mobile push", "push message"),
})
"""Common spellings of the contact channels. `mail` is not one: it is as likely post (direct mail)."""
CONTROL_SPELLINGS = _spellings({CONTROL_CHANNEL: ("control", "holdout", "hold out", "held out", "control group")})

CUSTOMERS = TableContract(
    name="customers",
    description="Identity records, one per (source, source_id). Every PII column is optional.",
    columns=(
        *_source_columns(),
        Column("first_name", "string", pii=True, aliases=("given name", "forename")),
        Column("last_name", "string", pii=True, aliases=("surname", "family name")),
        Column("email", "string", pii=True, description="Must contain one @ and a dotted domain.",
               aliases=("email address",)),
        Column("phone", "string", pii=True, description="Digits with optional +, spaces, dashes, dots, brackets.",
               aliases=("phone number", "telephone", "telephone number", "tel", "mobile", "mobile number",
                        "mobile phone")),
        Column("address_line", "string", pii=True),
        Column("city", "string", pii=True),
        Column("postcode", "string", pii=True, aliases=("zip", "zip code", "postal code")),
        Column("region", "string"),
        Column("country", "string", description="ISO 3166 alpha-2 preferred."),
        Column("date_of_birth", "date", pii=True, description="YYYY-MM-DD, not in the future.",
               aliases=("dob", "birth date", "birthday")),
        Column("updated_at", "timestamp"),
    ),
    primary_key=("source", "source_id"),
    allows_custom_columns=True,
    timestamp_column="updated_at",
    version_column="updated_at",
)

ORDERS = TableContract(
    name="orders",
    description="Purchases. `amount` is gross, before returns. Only table needed for training.",
    columns=(
        Column("order_id", "string", required=True, description="Unique across all sources."),
        *_source_columns(),
        Column("ordered_at", "timestamp", required=True),
        Column("amount", "float", required=True, minimum=0),
        Column("channel", "string", allowed=ORDER_CHANNELS, lowercase=True),
        Column("items", "int", minimum=0),
        Column("discount", "float", minimum=0),
    ),
    primary_key=("order_id",),
    timestamp_column="ordered_at",
)

RETURNS = TableContract(
    name="returns",
    description="Money sent back for an order (full or partial).",
    columns=(
        Column("order_id", "string", required=True),
        Column("returned_at", "timestamp", required=True),
        Column("amount", "float", required=True, minimum=0),
    ),
    primary_key=("order_id", "returned_at"),
    timestamp_column="returned_at",
)

EVENTS = TableContract(
    name="events",
    description="Web and app behaviour.",
    columns=(
        Column("event_id", "string", required=True),
        *_source_columns(),
        Column("occurred_at", "timestamp", required=True),
        Column("event_type", "string", required=True, lowercase=True,
               description="page_view, product_view, add_to_cart, checkout_start, app_open, search, ..."),
    ),
    primary_key=("event_id",),
    timestamp_column="occurred_at",
)

TOUCHES = TableContract(
    name="touches",
    description="Marketing sends and control assignments (channel `none` = held out).",
    columns=(
        Column("touch_id", "string", required=True),
        *_source_columns(),
        Column("sent_at", "timestamp", required=True),
        Column("channel", "string", required=True, lowercase=True, spellings=CHANNEL_SPELLINGS + CONTROL_SPELLINGS,
               description="email, push, sms (as for consents: E-mail is email), other channels kept, "
                           "or none for a control (control, holdout)."),
        Column("offer", "string", lowercase=True),
        Column("campaign_id", "string"),
        Column("campaign_type", "string", lowercase=True),
        Column("opened_at", "timestamp"),
        Column("clicked_at", "timestamp"),
        Column("cost", "float", minimum=0),
    ),
    primary_key=("touch_id",),
    timestamp_column="sent_at",
)

CONSENTS = TableContract(
    name="consents",
    description="Consent grants and withdrawals per channel, over time.",
    columns=(
        *_source_columns(),
        Column("channel", "string", required=True, lowercase=True, allowed=CONTACT_CHANNELS,
               spellings=CHANNEL_SPELLINGS,
               description="email, push or sms; E-mail, text, push notification, ... are read as these."),
        Column("status", "string", required=True, allowed=CONSENT_STATUSES, lowercase=True),
        Column("recorded_at", "timestamp", required=True),
    ),
    primary_key=("source", "source_id", "channel", "recorded_at"),
    timestamp_column="recorded_at",
)

LINKS = TableContract(
    name="links",
    description="Deterministic identity links known to a system (a login tying two ids).",
    columns=(
        Column("source_a", "string", required=True, lowercase=True),
        Column("id_a", "string", required=True),
        Column("source_b", "string", required=True, lowercase=True),
        Column("id_b", "string", required=True),
    ),
    primary_key=("source_a", "id_a", "source_b", "id_b"),
)

TICKETS = TableContract(
    name="tickets",
    description="Support tickets with an optional satisfaction score.",
    columns=(
        Column("ticket_id", "string", required=True),
        *_source_columns(),
        Column("opened_at", "timestamp", required=True),
        Column("category", "string", required=True, lowercase=True),
        Column("csat", "int", minimum=1, maximum=5),
    ),
    primary_key=("ticket_id",),
    timestamp_column="opened_at",
)

CONTRACTS: dict[str, TableContract] = {
    table.name: table
    for table in (CUSTOMERS, ORDERS, RETURNS, EVENTS, TOUCHES, CONSENTS, LINKS, TICKETS)
}

RAW_SUFFIXES = (".csv", ".parquet")

