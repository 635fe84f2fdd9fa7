"""Coerce raw columns to the contract's types and check them: a pure transform of one batch.

Two steps, so every problem gets a precise reason: parsing (text to timestamp, number, date)
happens here with Arrow kernels; value rules (required, allowed values, ranges, PII formats)
are a pandera schema built from the contract. A problem in a PII column nulls that value and
records it; a problem anywhere else rejects the row to quarantine. Reasons never quote PII.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import Column, TableContract

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int64(),
}
SOURCE_ROW = "_source_row"

ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
ZONE_SUFFIX = r"(Z|[+-]\d{2}:?\d{2})$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
INTEGER = r"^[+-]?\d+(\.0*)?$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"
PHONE = r"^\+?[0-9 ().\-/]{6,25}$"
PHONE_DIGITS = (6, 15)

PARSE_REASONS = {
    "timestamp": "not an ISO-8601 timestamp",
    "date": "not a YYYY-MM-DD date",
    "float": "not a number",
    "int": "not a whole number",
    "string": "not text",
}


@dataclass(frozen=True)
class ValidationRules:
    """Bounds that are configuration, not contract."""

    earliest_timestamp: dt.date = dt.date(1970, 1, 1)
    latest_timestamp: dt.date = dt.date(2100, 1, 1)
    earliest_birth_date: dt.date = dt.date(1900, 1, 1)
    latest_birth_date: dt.date | None = None
    """None: today."""


@dataclass
class ValidatedBatch:
    valid: pa.Table
    """Typed contract columns, custom columns as text, and the record's position in its file."""
    rejected: pd.DataFrame
    """row, columns, reason, record (JSON of the raw values)."""
    nulled: pd.DataFrame
    """row, column, reason, original_value: PII values that failed and were set to null."""


def output_schema(contract: TableContract, custom_columns: list[str]) -> pa.Schema:
    fields = [pa.field(c.name, ARROW_TYPES[c.kind]) for c in contract.columns]
    fields += [pa.field(name, pa.string()) for name in custom_columns]
    fields.append(pa.field(SOURCE_ROW, pa.int64()))
    return pa.schema(fields)


def custom_columns_of(contract: TableContract, file_columns: list[str]) -> list[str]:
    known = set(contract.column_names)
    if not contract.allows_custom_columns:
        return []
    return [name for name in file_columns if name not in known and not name.startswith("_")]


class _Problems:
    """Per-row problems gathered while parsing and checking, keyed by batch position."""

    def __init__(self, size: int) -> None:
        self.reject_reasons: dict[int, list[str]] = {}
        self.reject_columns: dict[int, list[str]] = {}
        self.rejected = np.zeros(size, dtype=bool)
        self.nulled: list[tuple[int, str, str]] = []
        self._nulled_cells: set[tuple[int, str]] = set()

    def reject(self, positions: np.ndarray, column: str, reason: str) -> None:
        for position in positions.tolist():
            columns = self.reject_columns.setdefault(position, [])
            if column not in columns:
                columns.append(column)
                self.reject_reasons.setdefault(position, []).append(f"{column}: {reason}")
        self.rejected[positions] = True

    def null(self, positions: np.ndarray, column: str, reason: str) -> None:
        for position in positions:
            if (int(position), column) not in self._nulled_cells:
                self._nulled_cells.add((int(position), column))
                self.nulled.append((int(position), column, reason))


def _decode_text(array: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Binary to UTF-8 text; undecodable values become null and are flagged."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    invalid = np.zeros(len(array), dtype=bool)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array.cast(pa.string()), invalid
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        return array, invalid
    try:
        return array.cast(pa.string()), invalid
    except pa.ArrowInvalid:
        values = []
        for index, raw in enumerate(array.to_pylist()):
            try:
                values.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
                invalid[index] = True
        return pa.array(values, pa.string()), invalid


def _blank_to_null(text: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _parse_timestamps(text: pa.Array) -> pa.Array:
    shaped = pc.match_substring_regex(text, ISO_TIMESTAMP)
    candidate = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
    zoned = pc.match_substring_regex(candidate, ZONE_SUFFIX)
    target = ARROW_TYPES["timestamp"]
    try:
        with_zone = pc.if_else(zoned, candidate, pa.scalar(None, pa.string())).cast(target)
        naive = pc.if_else(zoned, pa.scalar(None, pa.string()), candidate)
        without_zone = naive.cast(pa.timestamp("us")).cast(target)
        return pc.coalesce(with_zone, without_zone)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Well-shaped but impossible values (month 13): let pandas null them one by one.
        parsed = pd.to_datetime(
            pd.Series(candidate.to_pylist(), dtype=object), utc=True, format="ISO8601", errors="coerce"
        )
        return pa.array(parsed.astype("datetime64[us, UTC]"), target)


def _parse_dates(text: pa.Array) -> pa.Array:
    candidate = pc.if_else(pc.match_substring_regex(text, ISO_DATE), text, pa.scalar(None, pa.string()))
    try:
        return candidate.cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(
            pd.Series(candidate.to_pylist(), dtype=object), format="%Y-%m-%d", errors="coerce"
        )
        return pa.array(parsed.dt.date, pa.date32())


def _parse_numbers(text: pa.Array, kind: str) -> pa.Array:
    pattern = INTEGER if kind == "int" else DECIMAL
    candidate = pc.if_else(pc.match_substring_regex(text, pattern), text, pa.scalar(None, pa.string()))
    numbers = candidate.cast(pa.float64())
    if kind == "int":
        return numbers.cast(pa.int64())
    return numbers


def _coerce_typed(array: pa.Array, column: Column) -> tuple[pa.Array, np.ndarray]:
    """Columns that arrive typed (Parquet): cast where it is lossless, flag the rest."""
    target = ARROW_TYPES[column.kind]
    failed = np.zeros(len(array), dtype=bool)
    if column.kind == "timestamp" and pa.types.is_timestamp(array.type):
        if array.type.tz is None:
            return array.cast(pa.timestamp("us")).cast(target), failed
        return array.cast(target), failed
    if column.kind == "timestamp" and pa.types.is_date(array.type):
        return array.cast(pa.timestamp("us")).cast(target), failed
    if column.kind == "date" and (pa.types.is_date(array.type) or pa.types.is_timestamp(array.type)):
        return array.cast(pa.date32()), failed
    if column.kind in ("float", "int") and (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        numbers = array.cast(pa.float64())
        finite = pc.is_finite(numbers)
        if column.kind == "int":
            finite = pc.and_(finite, pc.equal(pc.floor(numbers), numbers))
        ok = pc.fill_null(finite, True)
        failed = ~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
        return pc.if_else(ok, numbers, pa.scalar(None, pa.float64())).cast(target), failed
    return pa.nulls(len(array), target), np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)


def _parse_column(text: pa.Array, column: Column) -> pa.Array:
    if column.kind == "timestamp":
        return _parse_timestamps(text)
    if column.kind == "date":
        return _parse_dates(text)
    if column.kind in ("float", "int"):
        return _parse_numbers(text, column.kind)
    return pc.utf8_lower(text) if column.lowercase else text


def _value_checks(column: Column, rules: ValidationRules) -> list[pandera.Check]:
    checks: list[pandera.Check] = []
    if column.allowed is not None:
        allowed = sorted(column.allowed)
        checks.append(pandera.Check.isin(allowed, error=f"not one of {', '.join(allowed)}"))
    if column.minimum is not None:
        checks.append(pandera.Check.ge(column.minimum, error=f"must be >= {column.minimum:g}"))
    if column.maximum is not None:
        checks.append(pandera.Check.le(column.maximum, error=f"must be <= {column.maximum:g}"))
    if column.kind == "timestamp":
        low = pd.Timestamp(rules.earliest_timestamp, tz="UTC")
        high = pd.Timestamp(rules.latest_timestamp, tz="UTC")
        checks.append(
            pandera.Check.in_range(low, high, include_max=False,
                                   error=f"outside {rules.earliest_timestamp} .. {rules.latest_timestamp}")
        )
    if column.name == "date_of_birth":
        latest = rules.latest_birth_date or dt.date.today()
        checks.append(
            pandera.Check.in_range(rules.earliest_birth_date, latest,
                                   error=f"not a plausible date of birth ({rules.earliest_birth_date} .. {latest})")
        )
    if column.name == "email":
        checks.append(pandera.Check.str_matches(EMAIL, error="not an e-mail address"))
    if column.name == "phone":
        checks.append(pandera.Check.str_matches(PHONE, error="not a phone number"))
        checks.append(
            pandera.Check(
                lambda s: s.str.count(r"\d").between(*PHONE_DIGITS),
                error=f"a phone number has {PHONE_DIGITS[0]} to {PHONE_DIGITS[1]} digits",
            )
        )
    return checks


def contract_schema(contract: TableContract, rules: ValidationRules) -> pandera.DataFrameSchema:
    """The contract's value rules as a pandera schema over the typed columns."""
    return pandera.DataFrameSchema(
        {
            column.name: pandera.Column(
                None,
                _value_checks(column, rules),
                nullable=not column.required,
                required=True,
                name=column.name,
            )
            for column in contract.columns
        },
        name=contract.name,
    )


def validate_batch(
    raw: pa.Table,
    rows: np.ndarray,
    contract: TableContract,
    rules: ValidationRules,
    custom_columns: list[str],
    schema: pandera.DataFrameSchema | None = None,
) -> ValidatedBatch:
    """Split one batch into typed valid rows, rejected rows and nulled PII values."""
    size = raw.num_rows
    problems = _Problems(size)
    raw_text: dict[str, pa.Array] = {}
    typed: dict[str, pa.Array] = {}

    for column in contract.columns:
        if column.name not in raw.column_names:
            typed[column.name] = pa.nulls(size, ARROW_TYPES[column.kind])
            continue
        array = raw.column(column.name).combine_chunks()
        text, bad_utf8 = _decode_text(array)
        if column.kind == "string" and not pa.types.is_string(text.type):
            text = text.cast(pa.string())
        raw_text[column.name] = text
        _record(problems, np.flatnonzero(bad_utf8), column, "invalid UTF-8 text")
        if pa.types.is_string(text.type):
            cleaned = _blank_to_null(text)
            values = _parse_column(cleaned, column)
            failed = pc.and_(pc.is_valid(cleaned), pc.is_null(values))
            failed_mask = np.asarray(failed.to_numpy(zero_copy_only=False), dtype=bool)
        else:
            values, failed_mask = _coerce_typed(text, column)
        _record(problems, np.flatnonzero(failed_mask), column, PARSE_REASONS[column.kind])
        typed[column.name] = values

    for name in custom_columns:
        text, bad_utf8 = _decode_text(raw.column(name).combine_chunks())
        if not pa.types.is_string(text.type):
            text = text.cast(pa.string())
        raw_text[name] = text
        problems.reject(np.flatnonzero(bad_utf8), name, "invalid UTF-8 text")
        typed[name] = _blank_to_null(text)

    schema = schema or contract_schema(contract, rules)
    frame = pa.table({c.name: typed[c.name] for c in contract.columns}).to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = pd.RangeIndex(size)
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        _record_schema_failures(problems, errors.failure_cases, contract)

    nulled_by_column: dict[str, list[int]] = {}
    for position, column_name, _ in problems.nulled:
        nulled_by_column.setdefault(column_name, []).append(position)
    for column_name, positions in nulled_by_column.items():
        mask = np.zeros(size, dtype=bool)
        mask[positions] = True
        typed[column_name] = pc.if_else(pa.array(mask), pa.scalar(None, typed[column_name].type), typed[column_name])

    keep = ~problems.rejected
    valid_columns = {c.name: typed[c.name] for c in contract.columns}
    valid_columns.update({name: typed[name] for name in custom_columns})
    valid_columns[SOURCE_ROW] = pa.array(rows, pa.int64())
    valid = pa.table(valid_columns, schema=output_schema(contract, custom_columns)).filter(pa.array(keep))

    rejected_positions = np.flatnonzero(problems.rejected)
    rejected = pd.DataFrame(
        {
            "row": rows[rejected_positions].astype(np.int64),
            "columns": [",".join(problems.reject_columns[p]) for p in rejected_positions],
            "reason": ["; ".join(problems.reject_reasons[p]) for p in rejected_positions],
            "record": _records_as_json(raw_text, rejected_positions),
        }
    )
    nulled = pd.DataFrame(
        {
            "row": [int(rows[p]) for p, _, _ in problems.nulled],
            "column": [c for _, c, _ in problems.nulled],
            "reason": [r for _, _, r in problems.nulled],
            "original_value": [_text_at(raw_text, c, p) for p, c, _ in problems.nulled],
        }
    )
    return ValidatedBatch(valid=valid, rejected=rejected, nulled=nulled)


def _record(problems: _Problems, positions: np.ndarray, column: Column, reason: str) -> None:
    if len(positions) == 0:
        return
    if column.pii:
        problems.null(positions, column.name, reason)
    else:
        problems.reject(positions, column.name, reason)


def _record_schema_failures(problems: _Problems, failures: pd.DataFrame, contract: TableContract) -> None:
    failures = failures.dropna(subset=["index"])
    for (column_name, check), group in failures.groupby(["column", "check"], sort=False):
        column = contract.column(str(column_name))
        reason = "required value is missing" if check == "not_nullable" else str(check)
        positions = group["index"].astype(np.int64).to_numpy()
        _record(problems, positions, column, reason)


def _text_at(raw_text: dict[str, pa.Array], column: str, position: int) -> str | None:
    value = raw_text[column][position].as_py() if column in raw_text else None
    return None if value is None else str(value)


def _records_as_json(raw_text: dict[str, pa.Array], positions: np.ndarray) -> list[str]:
    if len(positions) == 0:
        return []
    indices = pa.array(positions)
    columns = {name: values.take(indices).to_pylist() for name, values in raw_text.items()}
    return [
        json.dumps({name: _jsonable(values[i]) for name, values in columns.items()}, ensure_ascii=False)
        for i in range(len(positions))
    ]


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
