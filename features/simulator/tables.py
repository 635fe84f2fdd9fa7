"""Turning the engine's integer-coded chunks into Arrow tables that follow the contract.

Strings are built without Python loops: ids from digit matrices, labels and record ids
by `take` on small dictionaries, so millions of rows format in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import CONTRACTS
from features.simulator import engine
from features.simulator.dynamics import OFFERS

TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": TIMESTAMP,
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int64(),
}


def contract_schema(table: str, extra: list[pa.Field] | None = None) -> pa.Schema:
    """Arrow schema of a contract table, in contract column order (plus custom columns)."""
    fields = [
        pa.field(column.name, ARROW_TYPES[column.kind]) for column in CONTRACTS[table].columns
    ]
    return pa.schema(fields + list(extra or []))


def strings_from_byte_matrix(matrix: np.ndarray) -> pa.Array:
    """A (n, width) uint8 matrix of ASCII bytes becomes n strings of that width, zero-copy-ish."""
    count, width = matrix.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data)).cast(
        pa.string()
    )


def digit_matrix(numbers: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers as a (n, width) byte matrix."""
    values = np.asarray(numbers, dtype=np.int64).copy()
    matrix = np.empty((len(values), width), dtype=np.uint8)
    for position in range(width - 1, -1, -1):
        matrix[:, position] = 48 + values % 10
        values //= 10
    return matrix


def format_numbered_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """e.g. ("O", [12], 10) -> "O0000000012"."""
    digits = digit_matrix(numbers, width)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    matrix = np.hstack([np.broadcast_to(head, (len(digits), len(head))), digits])
    return strings_from_byte_matrix(matrix)


def format_hex_ids(values: np.ndarray, width: int = 16) -> pa.Array:
    """Lower-case hexadecimal strings of unsigned integers (app installation ids)."""
    values = np.asarray(values, dtype=np.uint64).copy()
    alphabet = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    matrix = np.empty((len(values), width), dtype=np.uint8)
    for position in range(width - 1, -1, -1):
        matrix[:, position] = alphabet[(values & np.uint64(15)).astype(np.int64)]
        values >>= np.uint64(4)
    return strings_from_byte_matrix(matrix)


def labels(codes: np.ndarray, vocabulary: tuple[str, ...] | list[str]) -> pa.Array:
    """Codes into a small vocabulary; negative codes become null."""
    codes = np.asarray(codes)
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.array(list(vocabulary), type=pa.string()).take(indices)


def timestamps(micros: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(micros, dtype=np.int64), type=TIMESTAMP, mask=missing)


@dataclass(frozen=True)
class RecordLookup:
    """Source system and source id of every record, indexable by record number."""

    source: pa.Array
    source_id: pa.Array

    def sources(self, records: np.ndarray) -> pa.Array:
        return self.source.take(pa.array(records))

    def source_ids(self, records: np.ndarray) -> pa.Array:
        return self.source_id.take(pa.array(records))


def orders_table(columns: dict[str, np.ndarray], lookup: RecordLookup) -> pa.Table:
    return pa.Table.from_arrays(
        [
            format_numbered_ids("O", columns["number"], 10),
            lookup.sources(columns["record"]),
            lookup.source_ids(columns["record"]),
            timestamps(columns["time"]),
            pa.array(columns["amount"], type=pa.float64()),
            labels(columns["channel"], engine.ORDER_CHANNELS),
            pa.array(columns["items"], type=pa.int64()),
            pa.array(columns["discount"], type=pa.float64()),
        ],
        schema=contract_schema("orders"),
    )


def returns_table(columns: dict[str, np.ndarray], lookup: RecordLookup) -> pa.Table:
    return pa.Table.from_arrays(
        [
            format_numbered_ids("O", columns["order_number"], 10),
            timestamps(columns["time"]),
            pa.array(columns["amount"], type=pa.float64()),
        ],
        schema=contract_schema("returns"),
    )


def events_table(columns: dict[str, np.ndarray], lookup: RecordLookup) -> pa.Table:
    return pa.Table.from_arrays(
        [
            format_numbered_ids("E", columns["number"], 11),
            lookup.sources(columns["record"]),
            lookup.source_ids(columns["record"]),
            timestamps(columns["time"]),
            labels(columns["event_type"], engine.EVENT_TYPES),
        ],
        schema=contract_schema("events"),
    )


def touches_table(
    columns: dict[str, np.ndarray], lookup: RecordLookup, campaign_ids: list[str]
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            format_numbered_ids("T", columns["number"], 10),
            lookup.sources(columns["record"]),
            lookup.source_ids(columns["record"]),
            timestamps(columns["time"]),
            labels(columns["channel"], engine.TOUCH_CHANNEL_LABELS),
            labels(columns["offer"], OFFERS),
            labels(columns["campaign"], campaign_ids),
            labels(columns["campaign_type"], engine.CAMPAIGN_TYPES),
            timestamps(columns["opened"], columns["opened"] < 0),
            timestamps(columns["clicked"], columns["clicked"] < 0),
            pa.array(columns["cost"], type=pa.float64()),
        ],
        schema=contract_schema("touches"),
    )


def consents_table(columns: dict[str, np.ndarray], lookup: RecordLookup) -> pa.Table:
    channel_names = ("email", "push", "sms")
    return pa.Table.from_arrays(
        [
            lookup.sources(columns["record"]),
            lookup.source_ids(columns["record"]),
            labels(columns["channel"], channel_names),
            labels(columns["status"], engine.CONSENT_STATUSES),
            timestamps(columns["time"]),
        ],
        schema=contract_schema("consents"),
    )


def tickets_table(columns: dict[str, np.ndarray], lookup: RecordLookup) -> pa.Table:
    csat = columns["csat"]
    return pa.Table.from_arrays(
        [
            format_numbered_ids("K", columns["number"], 9),
            lookup.sources(columns["record"]),
            lookup.source_ids(columns["record"]),
            timestamps(columns["time"]),
            labels(columns["category"], engine.TICKET_CATEGORIES),
            pa.array(csat, type=pa.int64(), mask=csat <= 0),
        ],
        schema=contract_schema("tickets"),
    )


TABLE_BUILDERS = {
    "orders": orders_table,
    "returns": returns_table,
    "events": events_table,
    "consents": consents_table,
    "tickets": tickets_table,
}


def to_csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 UTC strings with a Z (whole seconds), everything else as is."""
    arrays = []
    fields = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            seconds = pc.cast(pc.floor_temporal(column, unit="second"), pa.timestamp("s", tz="UTC"))
            column = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
            field = pa.field(field.name, pa.string())
        arrays.append(column)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
