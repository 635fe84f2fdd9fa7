"""Raw file readers: stream a contract table as batches of text columns with their row numbers.

Row numbers are 1-based positions of records in the file, header excluded, counting malformed
records too, so a quarantine entry can be found again in the original file.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from features.contract import CONTRACTS, TableContract, header_key


class TableFileError(ValueError):
    """The whole file cannot be ingested; the message names the file and the reason."""


class FastReaderStopped(pa.ArrowInvalid):
    """pyarrow's CSV reader gave up on the file (the tolerant reader takes over). The message holds
    positions, counts and the kind of problem only: pyarrow's own quotes the record, personal data."""


PYARROW_PARSE_ERROR = re.compile(r"(?:Row #(?P<line>\d+): )?Expected (?P<expected>\d+) columns, got (?P<found>\d+)")


@dataclass(frozen=True)
class MalformedRecord:
    row: int
    reason: str
    text: str


@dataclass
class RawBatch:
    table: pa.Table
    """Columns as read: binary for CSV (decoded later), native types for Parquet."""
    rows: np.ndarray
    """1-based record positions, one per table row."""
    malformed: list[MalformedRecord] = field(default_factory=list)
    """Records in this stretch of the file that could not be split into the header's fields."""
    bytes_done: int = 0


ProgressCallback = Callable[[int], None]


class _MalformedCollector:
    """Collects rows pyarrow cannot split; positions map parsed records to file positions."""

    def __init__(self) -> None:
        self.records: list[MalformedRecord] = []
        self.undecodable = False
        """pyarrow could not hand a malformed record to the collector: its text is not valid UTF-8."""
        self._handed_out = 0

    def __call__(self, row: pa.csv.InvalidRow) -> str:  # type: ignore[name-defined]
        line = row.number if row.number is not None else -1
        self.records.append(
            MalformedRecord(
                row=line - 1,
                reason=unterminated_quote(row.text or "", row.expected_columns)
                or f"malformed CSV record: expected {row.expected_columns} fields, found {row.actual_columns}",
                text=row.text,
            )
        )
        return "skip"

    def take_new(self) -> list[MalformedRecord]:
        new = self.records[self._handed_out :]
        self._handed_out = len(self.records)
        return new

    def positions_of_parsed(self, first_parsed: int, count: int) -> np.ndarray:
        """File positions of parsed records first_parsed .. first_parsed+count-1 (0-based)."""
        parsed_index = np.arange(first_parsed, first_parsed + count, dtype=np.int64)
        malformed_rows = np.array(sorted(r.row for r in self.records), dtype=np.int64)
        parsed_before = malformed_rows - np.arange(len(malformed_rows), dtype=np.int64)
        shift = np.searchsorted(parsed_before, parsed_index + 1, side="right")
        return parsed_index + 1 + shift


BYTE_ORDER_MARKS = (
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
    (b"\xfe\xff", "UTF-16 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"),
)


def refuse_other_encodings(path: Path) -> None:
    """A CSV file must be UTF-8: one starting with a UTF-16 or UTF-32 byte-order mark (Excel's "Unicode
    Text", many Windows exports), or whose header holds NUL bytes (UTF-16 without a mark), fails with the
    encoding named instead of reading as a file without its header."""
    with path.open("rb") as handle:
        start = handle.read(4096)
    for mark, encoding in BYTE_ORDER_MARKS:
        if start.startswith(mark):
            raise TableFileError(f"{path}: not UTF-8: the file is {encoding} (it starts with that byte-order "
                                 "mark); re-export it as UTF-8 (CSV UTF-8) and ingest again")
    first_line = start.split(b"\n", 1)[0]
    if b"\x00" in first_line:
        raise TableFileError(f"{path}: not UTF-8: the header row holds NUL bytes, as UTF-16 or UTF-32 text does; "
                             "re-export it as UTF-8 (CSV UTF-8) and ingest again")


def contract_of(path: Path, contract: TableContract | None) -> TableContract | None:
    """The table a file is read for: given, else the one its name says (`Orders.csv` is orders)."""
    return contract if contract is not None else CONTRACTS.get(path.stem.lower())


def contract_names(path: Path, names: list[str], contract: TableContract | None) -> list[str]:
    """Header names as ingestion uses them: a name that is a contract column written another way is that
    column (`EMAIL`, `First Name`, `FirstName`, `E-mail`: case, and spaces, hyphens and underscores, do not
    matter), and so is one of the column's aliases (`Mobile`, `Phone Number` are `phone`: `Column.aliases`);
    any other keeps its name, trimmed (a reserved `_` name is never a contract column).

    Several names for one contract column: two written alike (`email` and `EMAIL`, `Mobile` and `mobile`)
    fail the file, naming both. Else the one that is the column's own name (`Phone`) is the column, and its
    aliases (`Mobile`, a second number) keep their names as custom columns (`aliases_set_aside`). Two
    aliases and no own name (`Mobile` and `Tel`) fail the file naming both: which is the column is not
    guessed from column order. Custom names are compared ignoring case as the lake does (`Notes` beside
    `notes` is refused too)."""
    names = [name.strip() for name in names]
    target = [contract.column_for_header(name) if contract is not None and not name.startswith("_") else None
              for name in names]
    seen: dict[str, int] = {}
    for index, name in enumerate(names):  # written alike: one column twice, whatever the rule below
        if not name:
            continue
        first = seen.setdefault(header_key(name) if target[index] else name.lower(), index)
        if first != index:
            _refuse_twice(path, names, first, index, target[index], contract)
    for column in dict.fromkeys(t for t in target if t):
        written = [index for index, t in enumerate(target) if t == column]
        own = [index for index in written if header_key(names[index]) == header_key(column)]
        if len(written) > 1 and not own:
            first, second = written[:2]
            raise TableFileError(
                f"{path}: header columns {first + 1} ({names[first]}) and {second + 1} ({names[second]}) are both "
                f"other names of the contract column {column!r}, and no column is named {column}: which one is "
                f"{column} is not guessed; rename that one {column} (the other then loads as a custom column "
                "under its own name)")
        for index in written:
            if not own or index in own:
                target[index] = column
            else:
                target[index] = None  # an alias beside the column itself: a custom column, its name kept
    matched = [t or name for t, name in zip(target, names, strict=True)]
    seen = {}
    for index, name in enumerate(matched):  # what is left: custom names the lake could not tell apart
        if name:
            first = seen.setdefault(name.lower(), index)
            if first != index:
                _refuse_twice(path, names, first, index, None, contract)
    return matched


def aliases_set_aside(contract: TableContract, columns: list[str]) -> dict[str, list[str]]:
    """The custom columns (as `contract_names` names them) that are a contract column's alias, kept under
    their own names because the file also has that column (`Mobile` beside `Phone`), by contract column."""
    aside: dict[str, list[str]] = {}
    for name in columns:
        column = None if name.startswith("_") or name in contract.column_names else contract.column_for_header(name)
        if column is not None and column in columns:
            aside.setdefault(column, []).append(name)
    return aside


def _refuse_twice(path: Path, names: list[str], first: int, index: int, column: str | None,
                  contract: TableContract | None) -> None:
    written = names[first], names[index]
    if written[0] == written[1]:
        raise TableFileError(f"{path}: duplicated column(s) in header: {written[0]}")
    if column is not None and contract is not None:
        aliases = contract.column(column).aliases
        other_names = f", and {', '.join(aliases)} are other names of it" if aliases else ""
        what = (f"both the contract column {column!r} (header names are matched ignoring case, spaces, hyphens "
                f"and underscores{other_names})")
    else:
        what = "the same column (column names are compared ignoring case)"
    raise TableFileError(f"{path}: header columns {first + 1} ({written[0]}) and {index + 1} ({written[1]}) "
                         f"are {what}; keep one")


def in_lake_spelling(names: list[str], lake_names: Collection[str], contract: TableContract | None) -> list[str]:
    """Header names with a custom column the lake already holds, spelled another way (`loyalty_tier` for
    the lake's `Loyalty_Tier`: the lake compares column names ignoring case), in the lake's spelling: one
    column, whatever each export calls it, as a contract column written another way is that column."""
    known = set(contract.column_names) if contract is not None else set()
    spelled = {name.lower(): name for name in lake_names if not name.startswith("_") and name not in known}
    return [name if name in known else spelled.get(name.lower(), name) for name in names]


def read_csv_header(path: Path, contract: TableContract | None = None) -> list[str]:
    """The header's names as ingestion uses them (`contract_names`); `contract`: default, the table the
    file's name says."""
    refuse_other_encodings(path)
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        try:
            header = next(csv.reader(handle))
        except StopIteration:
            raise TableFileError(f"{path}: file is empty (expected a header row)") from None
        except csv.Error as error:
            raise TableFileError(f"{path}: cannot read the header row: {error}") from error
    names = [name.strip() for name in header]
    if not any(names):
        raise TableFileError(f"{path}: the header row is empty")
    names = contract_names(path, names, contract_of(path, contract))
    if "" in names:
        raise TableFileError(f"{path}: column {names.index('') + 1} of the header has no name")
    return names


def stream_csv_fast(path: Path, header: list[str], batch_bytes: int) -> Iterator[RawBatch]:
    """pyarrow's streaming reader: single-threaded so malformed rows keep their line numbers."""
    collector = _MalformedCollector()
    with _stops_without_values(collector):  # pyarrow reads the first block here already
        reader = arrow_csv.open_csv(
            path,
            read_options=arrow_csv.ReadOptions(
                use_threads=False, block_size=batch_bytes, column_names=header, skip_rows=1
            ),
            parse_options=arrow_csv.ParseOptions(invalid_row_handler=collector, newlines_in_values=True),
            convert_options=arrow_csv.ConvertOptions(
                column_types={name: pa.binary() for name in header}, strings_can_be_null=False
            ),
        )
    parsed = 0
    size = path.stat().st_size
    done = 0
    while (record_batch := _next_batch(reader, collector)) is not None:
        table = pa.Table.from_batches([record_batch])
        swallowed = _swallowed_records(table, len(header))
        if swallowed:  # the tolerant reader quarantines that record with its lines
            raise FastReaderStopped(f"a quoted field runs over {swallowed} line(s) that look like records of their own")
        rows = collector.positions_of_parsed(parsed, table.num_rows)
        parsed += table.num_rows
        done = min(size, done + batch_bytes)
        table, rows, oversized = _without_oversized_fields(table, rows)
        yield RawBatch(table, rows, collector.take_new() + oversized, done)
    yield RawBatch(
        pa.table({name: pa.array([], pa.binary()) for name in header}),
        np.array([], dtype=np.int64),
        collector.take_new(),
        size,
    )


def _without_oversized_fields(table: pa.Table, rows: np.ndarray) -> tuple[pa.Table, np.ndarray, list[MalformedRecord]]:
    """Records with a field longer than Python's csv limit (`csv.field_size_limit()`, 128 KiB) taken out as
    malformed, as the tolerant reader quarantines them: a record is loaded or quarantined whichever
    reader reads the file. Their text is the record written back as CSV."""
    import pyarrow.compute as pc

    limit = csv.field_size_limit()
    too_long = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:  # bytes first (cheap); characters, as csv counts, only for those rows
        longer = np.flatnonzero(np.asarray(pc.fill_null(pc.greater(pc.binary_length(column), limit), False)))
        for index in longer.tolist():
            value = column[index].as_py()
            too_long[index] |= len(value.decode("utf-8", "surrogateescape")) > limit
    if not too_long.any():
        return table, rows, []
    oversized = []
    for index in np.flatnonzero(too_long).tolist():
        values = [table.column(name)[index].as_py() or b"" for name in table.column_names]
        written = io.StringIO()
        csv.writer(written, lineterminator="").writerow([v.decode("utf-8", "backslashreplace") for v in values])
        oversized.append(MalformedRecord(int(rows[index]), f"unreadable CSV record: field larger than field limit ({limit})",
                                         written.getvalue()))
    keep = pa.array(~too_long)
    return table.filter(keep), rows[~too_long], oversized


def _next_batch(reader, collector: _MalformedCollector) -> pa.RecordBatch | None:
    """The reader's next batch, None at the end."""
    with _stops_without_values(collector):
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None


@contextmanager
def _stops_without_values(collector: _MalformedCollector) -> Iterator[None]:
    """When pyarrow stops, stop with a message that keeps no value of the file (`describe_parse_error`)
    and without a traceback on stderr. pyarrow decodes a malformed record's text before calling the
    collector; text that is not UTF-8 fails there, and pyarrow prints that failure ("Exception ignored
    in ...", the record's bytes in it) and stops. Note it on the collector instead; any other
    unraisable error is printed as usual."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if unraisable.object is collector and issubclass(unraisable.exc_type, UnicodeDecodeError):
            collector.undecodable = True
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except pa.ArrowInvalid as error:
        raise FastReaderStopped(describe_parse_error(str(error), collector.undecodable)) from None
    finally:
        sys.unraisablehook = previous


def describe_parse_error(message: str, undecodable: bool = False) -> str:
    """pyarrow's CSV parse error without the record it quotes ("Row #3: Expected 5 columns, got 6: <the
    row>"): the row, as counted in the quarantine, and the counts; `undecodable`: the record is not UTF-8."""
    found = PYARROW_PARSE_ERROR.search(message)
    if found is None:
        described = "a record pyarrow cannot parse (its message is not repeated: it may quote the record)"
    else:
        where = f"row {int(found['line']) - 1}: " if found["line"] else ""
        described = f"{where}expected {found['expected']} fields, found {found['found']}"
    return described + ("; the record is not valid UTF-8" if undecodable else "")


def stream_csv_robust(path: Path, header: list[str], batch_rows: int) -> Iterator[RawBatch]:
    """Python's csv module: slower, but reads files that pyarrow gives up on. A record it cannot use
    is quarantined with its lines exactly as in the file (`_RecordLines`), an unreadable one too."""
    size = path.stat().st_size
    with path.open("rb") as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        lines = _RecordLines(text)
        # strict=False: a stray quote reads on until a field passes csv's limit (128 KiB), and that
        # record is quarantined whole, lines and all; the records after it are read again
        reader = csv.reader(lines, strict=False)
        next(reader, None)
        lines.take()
        columns: list[list[bytes]] = [[] for _ in header]
        rows: list[int] = []
        malformed: list[MalformedRecord] = []
        position = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                position += 1
                malformed.append(MalformedRecord(position, f"unreadable CSV record: {error}", lines.take()))
                continue
            raw = lines.take()
            if not record:
                continue  # blank line: not a record
            position += 1
            open_quote = unterminated_quote(raw, len(header))
            if open_quote or len(record) != len(header):
                malformed.append(MalformedRecord(
                    position, open_quote or f"malformed CSV record: expected {len(header)} fields, found {len(record)}",
                    raw))
                continue
            for values, value in zip(columns, record, strict=True):
                values.append(value.encode("utf-8", "surrogateescape"))
            rows.append(position)
            if len(rows) >= batch_rows:
                yield _robust_batch(header, columns, rows, malformed, binary.tell())
                columns, rows, malformed = [[] for _ in header], [], []
        yield _robust_batch(header, columns, rows, malformed, size)


def _looks_like_a_record(line: str, fields: int) -> bool:
    """A line inside a quoted value that would be a whole record of the file on its own: the sign of a
    quote left open, which would otherwise swallow the rows after it into one value."""
    return fields > 1 and line.count(",") >= fields - 1 and len(next(csv.reader([line]), [])) == fields


def unterminated_quote(text: str, fields: int) -> str | None:
    """Why a record's text is a quote left open (lines after its first that look like records of
    their own), or None."""
    lines = text.split("\n")[1:]
    swallowed = sum(_looks_like_a_record(line, fields) for line in lines)
    if not swallowed:
        return None
    return (f"unterminated quote: a quoted field runs over {len(lines)} more line(s), {swallowed} of them "
            "looking like records of their own")


def _swallowed_records(table: pa.Table, fields: int) -> int:
    """How many lines inside the batch's multi-line values look like records of their own."""
    import pyarrow.compute as pc

    count = 0
    for column in table.columns:
        multiline = pc.match_substring(column, "\n")
        if pc.any(multiline).as_py():
            for value in column.filter(multiline).to_pylist():
                text = value.decode("utf-8", "replace")
                count += sum(_looks_like_a_record(line, fields) for line in text.split("\n")[1:])
    return count


class _RecordLines:
    """The file's lines for the csv module, remembering those of the record being read: what the
    quarantine keeps of a record it cannot use, as written (invalid UTF-8 escaped, \\xff)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._taken: list[str] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> str:
        """The lines read since the last call, without the final line break."""
        text = "".join(self._taken).removesuffix("\n").removesuffix("\r")
        self._taken.clear()
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _robust_batch(
    header: list[str], columns: list[list[bytes]], rows: list[int], malformed: list, done: int
) -> RawBatch:
    table = pa.table({name: pa.array(values, pa.binary()) for name, values in zip(header, columns, strict=True)})
    return RawBatch(table, np.array(rows, dtype=np.int64), list(malformed), done)


def parquet_schema(path: Path, contract: TableContract | None = None) -> pa.Schema:
    """The file's schema, its column names as ingestion uses them (`contract_names`)."""
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise TableFileError(f"{path}: not a readable Parquet file: {error}") from error
    names = contract_names(path, list(schema.names), contract_of(path, contract))
    return pa.schema([field.with_name(name) for field, name in zip(schema, names, strict=True)],
                     metadata=schema.metadata)


def stream_parquet(path: Path, batch_rows: int, contract: TableContract | None = None,
                   names: list[str] | None = None) -> Iterator[RawBatch]:
    """The file's rows in batches, columns named as `parquet_schema` names them (or `names`, one per column)."""
    try:
        parquet = pq.ParquetFile(path)
        if names is None:
            names = contract_names(path, list(parquet.schema_arrow.names), contract_of(path, contract))
        position = 0
        total = max(parquet.metadata.num_rows, 1)
        size = path.stat().st_size
        for record_batch in parquet.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([record_batch]).rename_columns(names)
            rows = np.arange(position + 1, position + 1 + table.num_rows, dtype=np.int64)
            position += table.num_rows
            yield RawBatch(table, rows, [], int(size * position / total))
    except TableFileError:
        raise
    except Exception as error:
        raise TableFileError(f"{path}: not a readable Parquet file: {error}") from error
