"""Coerce raw columns to the contract's types and check them: a pure transform of one batch.

Two steps, so every problem gets a precise reason: parsing (text to timestamp, number, date)
happens here with Arrow kernels; value rules (required, allowed values, ranges, PII formats)
are a pandera schema built from the contract. A problem in a PII column nulls that value and
records it; a problem anywhere else rejects the row to quarantine. Reasons never quote PII.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import VALUE_SEPARATORS, Column, TableContract

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int64(),
}
SOURCE_ROW = "_source_row"

ISO_TIMESTAMP = (r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
                 r"|^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?[+-]\d{2}$")
"""ISO 8601: a date, a time to the nanosecond (kept to the microsecond), a zone `Z`, `±HH:MM`, `±HHMM`, or
`±HH` after a time (PostgreSQL's `2024-07-01 19:08:07+00`)."""
ZONE_SUFFIX = r"(Z|[+-]\d{2}:?\d{2}|[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?[+-]\d{2})$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
EXACT_INTEGER = r"^[+-]?\d{1,18}(\.0*)?$"
"""Whole numbers that fit in 64 bits whatever their digits: cast from the text, not via a float."""
INT64_LIMIT = 2.0**63
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"
PHONE = r"^\+?[0-9 ().\-/]{6,25}$"
PHONE_DIGITS = (6, 15)

PARSE_REASONS = {
    "timestamp": "not a real ISO-8601 timestamp",
    "date": "not a real YYYY-MM-DD date",
    "float": "not a number",
    "int": "not a whole number",
    "string": "not text",
}
OUT_OF_RANGE_REASONS = {
    "float": "out of range: too large for a number",
    "int": "out of range: too large for a whole number",
}
EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class ValidationRules:
    """Bounds that are configuration, not contract."""

    earliest_timestamp: dt.date = dt.date(1970, 1, 1)
    latest_timestamp: dt.date = dt.date(2100, 1, 1)
    earliest_birth_date: dt.date = dt.date(1900, 1, 1)
    latest_birth_date: dt.date | None = None
    """None: today."""
    latest_moment: dt.datetime | None = None
    """Timestamps after this are in the future (the ingestion time plus a tolerance); None: no check."""
    naive_timezone: str = "UTC"
    """The zone of timestamps written without one (`ingest.naive_timezone`)."""


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


def unreadable_columns(schema: pa.Schema, contract_columns: list[str], custom_columns: list[str]) -> dict[str, str]:
    """Contract and custom columns of a Parquet file whose values are not one value each (a list,
    struct or map: nothing the lake's text, number or timestamp columns can hold), with their type."""
    return {name: str(schema.field(name).type) for name in [*contract_columns, *custom_columns]
            if not _holds_single_values(schema.field(name).type)}


def _holds_single_values(kind: pa.DataType) -> bool:
    if pa.types.is_nested(kind):
        return False
    try:
        pa.array([], kind).cast(pa.string())
    except pa.ArrowNotImplementedError:
        return False
    return True


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


def _decode_text(array: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Binary to UTF-8 text; undecodable values become null and are flagged.

    Also returns the values as they are kept in quarantine: the same, except that an undecodable
    value keeps its bytes, escaped (`W\\xff\\xfe2`), instead of being lost."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    invalid = np.zeros(len(array), dtype=bool)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = array.cast(pa.string())
        return text, invalid, text
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        return array, invalid, array
    try:
        text = array.cast(pa.string())
        return text, invalid, text
    except pa.ArrowInvalid:
        values, kept = [], []
        for index, raw in enumerate(array.to_pylist()):
            try:
                value = None if raw is None else raw.decode("utf-8")
            except UnicodeDecodeError:
                values.append(None)
                kept.append(raw.decode("utf-8", "backslashreplace"))
                invalid[index] = True
                continue
            values.append(value)
            kept.append(value)
        return pa.array(values, pa.string()), invalid, pa.array(kept, pa.string())


def _blank_to_null(text: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _localize(naive: pa.Array, zone: str) -> pa.Array:
    """Zone-less moments (timestamp[us]) as UTC, read as wall-clock times in `zone`
    (`ingest.naive_timezone`). An hour that occurs twice when clocks go back is its first occurrence;
    one skipped when they go forward becomes the last moment before the jump."""
    target = ARROW_TYPES["timestamp"]
    if zone == "UTC":
        return naive.cast(target)
    return pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="earliest").cast(target)


def _parse_timestamps(text: pa.Array, zone: str = "UTC") -> pa.Array:
    shaped = pc.match_substring_regex(text, ISO_TIMESTAMP)
    candidate = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
    zoned = pc.match_substring_regex(candidate, ZONE_SUFFIX)
    target = ARROW_TYPES["timestamp"]
    try:
        with_zone = pc.if_else(zoned, candidate, pa.scalar(None, pa.string())).cast(target)
        naive = pc.if_else(zoned, pa.scalar(None, pa.string()), candidate)
        without_zone = _localize(naive.cast(pa.timestamp("us")), zone)
        return pc.coalesce(with_zone, without_zone)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Well-shaped but impossible values (month 13): let pandas null them one by one. Pandas
        # cannot hold years before 1677 or after 2262; Python parses those, so that a real but
        # far-off moment gets the range reason whatever else is in the batch.
        # Values with and without a zone apart: in one call pandas gives a value without a zone the
        # offset of the last zoned value before it (a "-05:00" row moved every later zone-less one).
        texts = candidate.to_pylist()
        series = pd.Series(texts, dtype=object)
        with_offset = _mask(zoned)
        parsed = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns, UTC]")
        if with_offset.any():
            parsed[with_offset] = pd.to_datetime(series[with_offset], utc=True, format="ISO8601", errors="coerce")
        if (~with_offset).any():
            wall = pd.to_datetime(series[~with_offset], format="ISO8601", errors="coerce").astype("datetime64[us]")
            local = _localize(pa.array(wall, pa.timestamp("us")), zone).to_pandas()
            parsed[~with_offset] = pd.to_datetime(local, utc=True).to_numpy()
        micros = pa.array(parsed.astype("datetime64[us, UTC]"), target).cast(pa.int64()).to_pylist()
        for index in np.flatnonzero(parsed.isna().to_numpy() & _mask(pc.is_valid(candidate))):
            micros[index] = _iso_micros(texts[index])
        return pa.array(micros, pa.int64()).cast(target)


def _iso_micros(text: str) -> int | None:
    """Microseconds since 1970-01-01 UTC of an ISO-8601 timestamp, None if it is not a real one."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = moment.utcoffset() or dt.timedelta(0)
    return (moment.replace(tzinfo=None) - EPOCH - offset) // dt.timedelta(microseconds=1)


def _parse_dates(text: pa.Array) -> pa.Array:
    candidate = pc.if_else(pc.match_substring_regex(text, ISO_DATE), text, pa.scalar(None, pa.string()))
    try:
        return candidate.cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Impossible dates (February 30): null them one by one (Python, not pandas, so that the
        # year 1 is still a date, out of range).
        return pa.array([_iso_date(text) for text in candidate.to_pylist()], pa.date32())


def _iso_date(text: str | None) -> dt.date | None:
    try:
        return None if text is None else dt.date.fromisoformat(text)
    except ValueError:
        return None


def _parse_numbers(text: pa.Array, kind: str) -> tuple[pa.Array, np.ndarray]:
    candidate = pc.if_else(pc.match_substring_regex(text, DECIMAL), text, pa.scalar(None, pa.string()))
    values, too_large = _numbers_of_kind(candidate.cast(pa.float64()), kind)  # 1e400 is infinity here
    if kind == "int":
        exact = pc.match_substring_regex(candidate, EXACT_INTEGER)
        digits = pc.if_else(exact, candidate, pa.scalar(None, pa.string()))
        values = pc.coalesce(pc.replace_substring_regex(digits, r"^\+|\.0*$", "").cast(pa.int64()), values)
    return values, too_large


def _numbers_of_kind(numbers: pa.Array, kind: str) -> tuple[pa.Array, np.ndarray]:
    """float64 to the column's type. NaN, a fraction in a whole-number column and a value too large
    to store (infinity; a whole number beyond 64 bits) become null; returns where it was too large."""
    limit = INT64_LIMIT if kind == "int" else math.inf
    too_large = pc.and_(pc.invert(pc.is_nan(numbers)), pc.greater_equal(pc.abs(numbers), limit))
    too_large = pc.fill_null(too_large, False)
    keep = pc.and_(pc.is_finite(numbers), pc.invert(too_large))
    if kind == "int":
        keep = pc.and_(keep, pc.equal(pc.floor(numbers), numbers))
    values = pc.if_else(keep, numbers, pa.scalar(None, pa.float64()))
    if kind == "int":
        values = values.cast(pa.int64())
    else:
        values = pc.if_else(pc.equal(values, 0.0), 0.0, values)  # -0 is stored as 0
    return values, _mask(too_large)


def _mask(condition: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)


def _coerce_typed(array: pa.Array, column: Column, zone: str = "UTC") -> tuple[pa.Array, np.ndarray]:
    """Columns that arrive typed (Parquet): cast where it is lossless. Values that cannot be cast
    come back null; also returns where a number was too large to store."""
    target = ARROW_TYPES[column.kind]
    too_large = np.zeros(len(array), dtype=bool)
    if column.kind == "timestamp" and pa.types.is_timestamp(array.type):
        # Nanoseconds (pandas' unit) are cut to the lake's microseconds: a safe cast refused a whole file
        # over digits nobody reads ("would lose data").
        micros = array.cast(pa.timestamp("us", tz=array.type.tz), safe=array.type.unit != "ns")
        if array.type.tz is None:
            return _localize(micros, zone), too_large
        return micros.cast(target), too_large
    if column.kind == "timestamp" and pa.types.is_date(array.type):
        return _localize(array.cast(pa.timestamp("us")), zone), too_large
    if column.kind == "date" and (pa.types.is_date(array.type) or pa.types.is_timestamp(array.type)):
        return array.cast(pa.date32()), too_large
    if column.kind == "int" and pa.types.is_integer(array.type):
        if array.type == pa.uint64():
            beyond = pc.greater(array, pa.scalar(2**63 - 1, pa.uint64()))
            return pc.if_else(beyond, pa.scalar(None, array.type), array).cast(target), _mask(beyond)
        return array.cast(target), too_large
    if column.kind in ("float", "int") and (
        pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type)
    ):
        # A decimal or a 64-bit integer may have more digits than a float holds: rounded, like in CSV.
        return _numbers_of_kind(array.cast(pa.float64(), safe=False), column.kind)
    return pa.nulls(len(array), target), too_large


def _parse_column(text: pa.Array, column: Column, zone: str = "UTC") -> tuple[pa.Array, np.ndarray]:
    """Text to the column's type: unparseable values become null; also returns where a number was
    too large to store. `zone`: how to read timestamps written without one."""
    if column.kind in ("float", "int"):
        return _parse_numbers(text, column.kind)
    if column.kind == "timestamp":
        values = _parse_timestamps(text, zone)
    elif column.kind == "date":
        values = _parse_dates(text)
    else:
        values = pc.utf8_lower(text) if column.lowercase else text
        if column.spellings:
            values = _respelled(text, values, column)
    return values, np.zeros(len(text), dtype=bool)


def _respelled(text: pa.Array, values: pa.Array, column: Column) -> pa.Array:
    """Values written as one of the column's spellings (`E-mail`) as the value they spell (`email`)."""
    spellings = dict(column.spellings)
    folded = pc.replace_substring_regex(pc.utf8_lower(text), VALUE_SEPARATORS, "")
    found = pc.index_in(folded, value_set=pa.array(list(spellings), pa.string()))
    return pc.coalesce(pc.take(pa.array(list(spellings.values()), pa.string()), found), values)


def _value_checks(column: Column, rules: ValidationRules) -> list[pandera.Check]:
    checks: list[pandera.Check] = []
    if column.allowed is not None:
        allowed = sorted(column.allowed)
        spelled = " (nor a spelling of one the contract knows)" if column.spellings else ""
        checks.append(pandera.Check.isin(allowed, error=f"not one of {', '.join(allowed)}{spelled}"))
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
        if rules.latest_moment is not None:
            future = pd.Timestamp(rules.latest_moment).tz_convert("UTC")
            checks.append(pandera.Check.le(future, error=f"in the future: after {future:%Y-%m-%d %H:%M} UTC "
                                                         "(the ingestion time and its tolerance)"))
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
        text, bad_utf8, kept = _read_text(raw.column(column.name), as_string=column.kind == "string")
        raw_text[column.name] = kept
        _record(problems, np.flatnonzero(bad_utf8), column, "invalid UTF-8 text")
        if pa.types.is_string(text.type):
            text = _blank_to_null(text)
            values, too_large = _parse_column(text, column, rules.naive_timezone)
        else:
            values, too_large = _coerce_typed(text, column, rules.naive_timezone)
        if too_large.any():
            _record(problems, np.flatnonzero(too_large), column, OUT_OF_RANGE_REASONS[column.kind])
        failed = _mask(pc.and_(pc.is_valid(text), pc.is_null(values)))
        _record(problems, np.flatnonzero(failed), column, PARSE_REASONS[column.kind])
        typed[column.name] = values

    for name in custom_columns:  # invalid UTF-8 nulled, as in a PII column (free text, a Latin-1 note): the row stays
        text, bad_utf8, kept = _read_text(raw.column(name), as_string=True)
        raw_text[name] = kept
        problems.null(np.flatnonzero(bad_utf8), name, "invalid UTF-8 text")
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

    # a quarantined row keeps all its raw values: its invalid PII is one more reason, not a nulled value
    for position, column_name, reason in problems.nulled:
        if problems.rejected[position] and column_name not in problems.reject_columns[position]:
            problems.reject_reasons[position].append(f"{column_name}: {reason}")
            problems.reject_columns[position].append(column_name)
    problems.nulled = [entry for entry in problems.nulled if not problems.rejected[entry[0]]]
    rejected_positions = np.flatnonzero(problems.rejected)
    if len(rejected_positions):  # a quarantined record keeps every field as read, ignored columns too
        _add_columns_as_read(raw_text, raw)
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


def _read_text(column: pa.ChunkedArray, as_string: bool) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """`_decode_text` of a column as read, as text when the column is kept as text."""
    text, bad_utf8, kept = _decode_text(column.combine_chunks())
    if as_string and not pa.types.is_string(text.type):
        text, kept = text.cast(pa.string()), kept.cast(pa.string())
    return text, bad_utf8, kept


def raw_records(raw: pa.Table, positions: np.ndarray, contract: TableContract) -> list[str]:
    """The rows at `positions` of a batch as read, as JSON: the `record` a rejected row gets in
    `validate_batch`, for rows found unwanted only later (a key repeated further down the file)."""
    raw_text = {column.name: _read_text(raw.column(column.name), as_string=column.kind == "string")[2]
                for column in contract.columns if column.name in raw.column_names}
    _add_columns_as_read(raw_text, raw)  # custom and ignored columns: the record as read
    return _records_as_json(raw_text, positions)


def _add_columns_as_read(raw_text: dict[str, pa.Array], raw: pa.Table) -> None:
    """The batch's columns not yet in `raw_text` (custom, or ignored by the contract), as text as read;
    a nested column the contract ignores (a list of order lines) as its values, JSON in the record."""
    raw_text.update({name: _column_as_read(raw.column(name)) for name in raw.column_names if name not in raw_text})


def _column_as_read(column: pa.ChunkedArray) -> pa.Array:
    if not _holds_single_values(column.type):
        return column.combine_chunks()
    return _read_text(column, as_string=True)[2]


def _text_at(raw_text: dict[str, pa.Array], column: str, position: int) -> str | None:
    value = raw_text[column][position].as_py() if column in raw_text else None
    return None if value is None else str(value)


def _records_as_json(raw_text: dict[str, pa.Array], positions: np.ndarray) -> list[str]:
    if len(positions) == 0:
        return []
    indices = pa.array(positions)
    columns = {name: values.take(indices).to_pylist() for name, values in raw_text.items()}
    return [
        json.dumps({name: _jsonable(values[i]) for name, values in columns.items()}, ensure_ascii=False,
                   allow_nan=False)
        for i in range(len(positions))
    ]


def _jsonable(value: object) -> object:
    """A raw value as JSON: NaN and infinity (not JSON) as the text `NaN`, `Infinity`, `-Infinity`;
    a list as an array, a struct as an object, a map as an array of [key, value] pairs."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return str(value)
