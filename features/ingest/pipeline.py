"""Ingest a raw directory into the lake: stream, validate, quarantine, upsert, report.

Accounting is exact: every record read is loaded, quarantined with a reason, or suppressed (it
names a person erased with `cdp forget`, see features/suppression.py), and the report says so per
table (loaded + quarantined + suppressed = read is checked, not assumed).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import logging
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdp.config import IngestSettings, PrivacySettings
from cdp.files import remove_abandoned_temporaries
from cdp.locks import exclusive_lock
from cdp.workspace import Workspace
from features.contract import CONTRACTS, RAW_SUFFIXES, TableContract
from features.identity.standardize import standardize_email_leniently, standardize_phone
from features.ingest import lake
from features.ingest.readers import (
    FastReaderStopped,
    RawBatch,
    TableFileError,
    aliases_set_aside,
    in_lake_spelling,
    parquet_schema,
    read_csv_header,
    stream_csv_fast,
    stream_csv_robust,
    stream_parquet,
)
from features.ingest.validation import (
    SOURCE_ROW,
    ValidatedBatch,
    ValidationRules,
    contract_schema,
    custom_columns_of,
    output_schema,
    raw_records,
    unreadable_columns,
    validate_batch,
)
from features.suppression import (
    SuppressionList,
    attribute_columns,
    blank_suppressed_mentions,
    blank_suppressed_mentions_in_records,
    keyed_hash,
    load_suppression,
    matched_columns,
    raw_text_rows,
    suppressed_rows,
)

log = logging.getLogger("cdp.ingest")

# Progress is reported as (table, bytes done, bytes total).
IngestProgress = Callable[[str, int, int], None]
CSV_BLOCK_BYTES = 64 << 20


@dataclass
class TableReport:
    table: str
    file: str
    status: str = "ok"
    """ok, or failed (the whole file could not be ingested: see error)."""
    error: str | None = None
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    """Rows dropped because they name an erased person (the suppression list); never stored."""
    nulled_values: dict[str, int] = field(default_factory=dict)
    """PII values set to null, per column; the originals are kept in quarantine."""
    inserted: int = 0
    updated: int = 0
    """Rows whose key the lake held with other values; `unchanged`: held as they are (nothing rewritten
    when every row is: the lake file and the feature tables built from it stay valid)."""
    unchanged: int = 0
    lake_rows: int = 0
    """The rows the lake's table holds after this run; for a failed table, the rows it still holds (the
    lake keeps the table as it was), not 0."""
    ignored_columns: list[str] = field(default_factory=list)
    custom_columns: list[str] = field(default_factory=list)
    reader: str = ""
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.loaded + self.quarantined + self.suppressed == self.read


@dataclass
class IngestReport:
    raw_dir: str
    tables: list[TableReport]
    skipped_files: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[TableReport]:
        return [t for t in self.tables if t.status != "ok"]

    def as_dict(self) -> dict:
        return {
            "raw_dir": self.raw_dir,
            "tables": [asdict(t) for t in self.tables],
            "skipped_files": self.skipped_files,
        }


def find_raw_tables(raw_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Map contract tables to their files; files that are not contract tables are listed apart.
    Names are matched ignoring case (`Orders.CSV` is orders): an export tool's capitals must not make
    a nightly run go on without the table."""
    if not raw_dir.is_dir():
        raise TableFileError(f"{raw_dir}: raw directory not found")
    found: dict[str, Path] = {}
    skipped: list[str] = []
    for path in sorted(raw_dir.iterdir()):
        if not path.is_file():
            continue
        table = path.stem.lower()
        if path.suffix.lower() not in RAW_SUFFIXES or table not in CONTRACTS:
            skipped.append(path.name)
            continue
        if table in found:
            raise TableFileError(
                f"{raw_dir}: table {table!r} is given twice ({found[table].name} and {path.name}); keep one"
            )
        found[table] = path
    return found, skipped


def skipped_file_hint(name: str) -> str:
    """The table a skipped file most likely is ("did you mean orders.csv?"), or nothing: a file named
    nearly like a table (order.csv, orders.txt, customer.parquet) is more likely a mistake than a note."""
    stem, _, suffix = name.partition(".")
    tables = difflib.get_close_matches(stem.lower(), CONTRACTS, n=1, cutoff=0.8)
    if not tables:
        return ""
    given = f".{suffix.lower()}"
    names = [tables[0] + given] if given in RAW_SUFFIXES else [tables[0] + raw for raw in RAW_SUFFIXES]
    return f"; did you mean {' or '.join(names)}?"


def lake_lock_path(workspace: Workspace) -> Path:
    """The lock every ingest holds while it writes the workspace's lake, quarantine and reports."""
    return workspace.lake / ".ingest.lock"


@contextmanager
def lake_lock(workspace: Workspace) -> Iterator[None]:
    """Hold the workspace's lake for one ingest: two runs each merging into the lake file as they read
    it would each replace the other's rows. A second run waits for the first, and says so. The lock is
    the kernel's (flock): it goes with the process holding it, so a run that crashed never blocks."""
    with exclusive_lock(lake_lock_path(workspace), when_waiting=lambda: log.info(
            "%s: another ingest is writing to this workspace's lake; waiting for it to finish", workspace.lake)):
        yield


def staging_root(workspace: Workspace) -> Path:
    """Where an ingest stages each table (`<table>-<id>/`: the file's valid, rejected and nulled rows,
    DuckDB's spill files) before merging it into the lake; removed when the table is done."""
    return workspace.lake / ".staging"


def remove_abandoned_staging(workspace: Workspace) -> int:
    """Delete what runs killed mid-write left behind (SIGKILL, a cron timeout's SIGTERM, the OOM killer, a
    reboot): the staging directories of ingests (full copies of a table, personal data and all, that no
    later ingest or erasure would otherwise look at), and the temporary files (`cdp.files.temporary_beside`)
    under data/ whose writer is gone. Returns how many staging directories and files were removed.

    Call it holding the lake (`lake_lock`), as `ingest_directory` and `cdp forget` do: only an ingest
    stages, and an ingest stages only while it holds the lake, so with the lock held no staging directory
    belongs to a running ingest (the lock is the kernel's: it is released when its holder dies, however).
    Temporary files are removed only when their writer no longer runs (`remove_abandoned_temporaries`)."""
    removed = 0
    root = staging_root(workspace)
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        _remove_if_empty(root)
    removed += len(remove_abandoned_temporaries(workspace.data))
    return removed


def ingest_directory(
    raw_dir: Path,
    workspace: Workspace,
    settings: IngestSettings,
    progress: IngestProgress | None = None,
    privacy: PrivacySettings | None = None,
    replace: bool = False,
) -> IngestReport:
    """`replace`: rows replace the lake's rows of their key even when the lake's `updated_at` is later (a
    correction, e.g. after changing `ingest.naive_timezone`); otherwise an older export is quarantined."""
    tables, skipped = find_raw_tables(raw_dir)
    for name in skipped:
        log.warning("%s: not a contract table (expected <table>.csv or <table>.parquet), skipped%s",
                    name, skipped_file_hint(name))
    if not tables:
        raise TableFileError(
            f"{raw_dir}: no contract tables found (expected files like orders.csv or orders.parquet)"
        )
    with lake_lock(workspace):
        abandoned = remove_abandoned_staging(workspace)
        if abandoned:
            log.warning("%s: removed %d staging director(ies) and temporary file(s) left by interrupted runs "
                        "(killed while writing; they held copies of lake tables)", workspace.data, abandoned)
        suppression = load_suppression(workspace, privacy)
        reports = [ingest_table(path, CONTRACTS[name], workspace, settings, progress, suppression, replace)
                   for name, path in tables.items()]
        report = IngestReport(str(raw_dir), reports, skipped)
        workspace.reports.mkdir(parents=True, exist_ok=True)
        (workspace.reports / "ingest.json").write_text(json.dumps(report.as_dict(), indent=2))
    return report


def ingest_table(
    path: Path,
    contract: TableContract,
    workspace: Workspace,
    settings: IngestSettings,
    progress: IngestProgress | None = None,
    suppression: SuppressionList | None = None,
    replace: bool = False,
) -> TableReport:
    """Ingest one file; a file-level problem fails this table only, with a message naming it.
    Rows naming an erased person (default: the workspace's suppression list) are dropped and counted.
    The caller holds the lake (`lake_lock`), as `ingest_directory` does."""
    suppression = suppression if suppression is not None else load_suppression(workspace)
    started = time.perf_counter()
    path = path.resolve()
    report = TableReport(table=contract.name, file=str(path))
    staging = staging_root(workspace) / f"{contract.name}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        _ingest_into(report, path, contract, workspace, settings, staging, progress, suppression, replace)
    except TableFileError as error:
        _fail(report, str(error))
    except pa.ArrowException as error:  # a file pyarrow cannot take that no check foresaw: this table only
        _fail(report, f"{path}: cannot be ingested: {describe_arrow_error(error)}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(staging.parent)
    report.seconds = round(time.perf_counter() - started, 3)
    if report.status != "ok":  # the lake keeps the table as it was: say how many rows it still holds
        report.lake_rows = lake_row_count(workspace, contract.name)
    if report.status == "ok" and not report.balanced:
        raise AssertionError(f"{path}: accounting error: {report.loaded} + {report.quarantined} "
                             f"+ {report.suppressed} != {report.read}")
    _write_table_report(workspace, report)
    if report.status == "ok":
        log.info(
            "%s: read %d, loaded %d, quarantined %d, PII values nulled %d (%s)",
            path.name, report.read, report.loaded, report.quarantined,
            sum(report.nulled_values.values()), contract.name,
        )
    return report


def lake_row_count(workspace: Workspace, table: str) -> int:
    """The rows the lake's table holds now (0 when there is none yet)."""
    path = workspace.lake_table(table)
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def _fail(report: TableReport, message: str) -> None:
    """The table failed as a whole: its report says why, and its row counts stay 0 (but `lake_rows`)."""
    report.status, report.error = "failed", message
    log.error("%s", message)


def _remove_if_empty(directory: Path) -> None:
    with suppress(OSError):  # not empty (another table's staging) or already gone
        directory.rmdir()


SAFE_ARROW_MESSAGE = re.compile(r"^Unsupported cast from .+? to \S+")
"""pyarrow messages that name types only; any other may quote a value, so it is not repeated."""


def describe_arrow_error(error: pa.ArrowException) -> str:
    """A pyarrow error as the log and reports may hold it: never a value of the file."""
    if isinstance(error, FastReaderStopped):
        return str(error)
    safe = SAFE_ARROW_MESSAGE.match(str(error))
    if safe:
        return safe.group(0)
    return f"{type(error).__name__} (pyarrow's message is not repeated: it may quote values of the file)"


def _separator_hint(columns: list[str]) -> str:
    """A header read as one column holding ';', tab or '|': the file is most likely separated by it."""
    if len(columns) != 1:
        return ""
    for separator, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if separator in columns[0]:
            return f"; the header looks separated by {name}: CSV files here must be comma-separated"
    return ""


def _found_columns(columns: list[str], contract: TableContract) -> str:
    """The header as found, unless none of it is a column of the table: then the first line is
    likely a data row (a file without its header), and its values may be personal data that the
    message would carry into the log and the reports."""
    if any(c in contract.column_names for c in columns):
        return f"found: {', '.join(columns)}"
    return (f"found {len(columns)} field(s), none of them a column of {contract.name!r}: is the header row "
            "missing? (the first line is not repeated here: it may hold personal data)")


def _ingest_into(
    report: TableReport,
    path: Path,
    contract: TableContract,
    workspace: Workspace,
    settings: IngestSettings,
    staging: Path,
    progress: IngestProgress | None,
    suppression: SuppressionList,
    replace: bool = False,
) -> None:
    is_csv = path.suffix.lower() == ".csv"
    schema_of_file = None if is_csv else parquet_schema(path, contract)
    columns = read_csv_header(path, contract) if is_csv else list(schema_of_file.names)
    lake_file = workspace.lake_table(contract.name)
    if lake_file.exists():  # a custom column the lake holds spelled another way is that column
        columns = in_lake_spelling(columns, pq.read_schema(lake_file).names, contract)
        if schema_of_file is not None:
            schema_of_file = pa.schema([f.with_name(name) for f, name in zip(schema_of_file, columns, strict=True)],
                                       metadata=schema_of_file.metadata)
    missing = [c for c in contract.required_columns if c not in columns]
    if missing:
        raise TableFileError(
            f"{path}: missing required column(s) {', '.join(missing)} for table {contract.name!r} "
            f"({_found_columns(columns, contract)}){_separator_hint(columns) if is_csv else ''}"
        )
    custom = custom_columns_of(contract, columns)
    if schema_of_file is not None:
        refuse_unreadable_columns(path, schema_of_file, contract, custom)
    report.custom_columns = custom
    for column, aside in aliases_set_aside(contract, columns).items():
        log.warning("%s: column(s) %s are other names of the contract column %r but were not used as it, because "
                    "the file also has a %r column: kept as custom column(s) under their own names, outside the "
                    "PII checks (docs/data-contract.md)",
                    path.name, ", ".join(repr(name) for name in aside), column, column)
    report.ignored_columns = [c for c in columns if c not in contract.column_names and c not in custom]
    if report.ignored_columns:
        log.warning("%s: columns not in the contract for %r are ignored: %s",
                    path, contract.name, ", ".join(report.ignored_columns))

    # an optional column left out of the file says nothing about it: rows replacing the lake's keep its values
    absent = [c.name for c in contract.columns if c.name not in columns]
    if absent:
        log.info("%s: no column %s: rows replacing the lake's keep the lake's values there",
                 path.name, ", ".join(absent))

    ingested_at = dt.datetime.now(dt.UTC)
    rules = ValidationRules(
        earliest_timestamp=settings.earliest_timestamp,
        latest_timestamp=settings.latest_timestamp,
        earliest_birth_date=settings.earliest_birth_date,
        latest_moment=ingested_at + dt.timedelta(days=settings.future_tolerance_days),
        naive_timezone=settings.naive_timezone,
    )
    schema = contract_schema(contract, rules)
    total_bytes = path.stat().st_size
    attempts: list[tuple[str, Callable[[], Iterator[RawBatch]]]]
    if is_csv:
        attempts = [
            ("pyarrow", lambda: stream_csv_fast(path, columns, CSV_BLOCK_BYTES)),
            ("python-csv", lambda: stream_csv_robust(path, columns, settings.batch_rows)),
        ]
    else:
        attempts = [("parquet", lambda: stream_parquet(path, settings.batch_rows, contract, columns))]

    for attempt, (reader_name, open_stream) in enumerate(attempts):
        try:
            counts = _stage_batches(
                open_stream(), path, contract, rules, schema, custom, staging, ingested_at, progress, total_bytes,
                suppression,
            )
            report.reader = reader_name
            reader = open_stream
            break
        except pa.ArrowInvalid as error:
            if attempt + 1 == len(attempts):
                raise TableFileError(f"{path}: cannot be read: {describe_arrow_error(error)}") from error
            log.warning("%s: fast CSV reader stopped (%s); re-reading with the tolerant reader",
                        path.name, describe_arrow_error(error))

    # the content, so that another file at this path later keeps (not replaces) this one's entries
    delivery = lake.record_delivery(workspace.quarantine, str(path), ingested_at, lake.file_digest(path))
    nulled_target = workspace.quarantine / f"{contract.name}.nulled.parquet"
    connection = lake.connect(settings.duckdb_memory_limit, staging)
    try:
        with pq.ParquetWriter(staging / "rejected-duplicates.parquet", lake.QUARANTINE_SCHEMA) as duplicates:
            merge = lake.merge_into_lake(
                connection, contract, staging / "valid.parquet", workspace.lake_table(contract.name),
                str(path), ingested_at, duplicates, respect_versions=not replace, absent=absent, delivery=delivery,
                track_replaced=nulled_target.exists(),
            )
        if merge.duplicates:
            restore_raw_records(staging / "rejected-duplicates.parquet", reader(), contract)
            counts["nulled_by_column"] = drop_nulled_of_quarantined(
                staging / "nulled.parquet", staging / "rejected-duplicates.parquet")
        rejected = [staging / "rejected.parquet", staging / "rejected-duplicates.parquet"]
        quarantine = workspace.quarantine
        lake.replace_file_entries(connection, rejected, quarantine / f"{contract.name}.parquet", delivery)
        # nulled values belong to loaded rows: those of a lake row this file replaced go with it
        lake.replace_file_entries(connection, [staging / "nulled.parquet"], nulled_target, delivery,
                                  identity=("row", "column", "reason", "original_value"), drop_replaced=True)
        by_reason = lake.count_reasons(connection, rejected)
    finally:
        connection.close()

    report.read = counts["read"]
    report.loaded = counts["valid"] - merge.duplicates
    report.quarantined = counts["rejected"] + merge.duplicates
    report.suppressed = counts["suppressed"]
    report.quarantined_by_reason = by_reason
    report.nulled_values = dict(counts["nulled_by_column"])
    report.inserted, report.updated, report.lake_rows = merge.inserted, merge.updated, merge.lake_rows
    report.unchanged = merge.unchanged
    _warn_of_legacy_columns(path, merge.legacy)
    for column, nulled in report.nulled_values.items():
        if report.read and nulled * 2 > report.read:  # a format problem, or a header read as the wrong column
            log.warning("%s: %d of %d value(s) of %r were not valid and were nulled (kept in %s.nulled.parquet): is "
                        "the file's column read as %r the right one? (its header names: `cdp contract %s`)",
                        path.name, nulled, report.read, column, contract.name, column, contract.name)
    if custom:
        _warn_of_contacts_in_custom_columns(path, staging / "valid.parquet", custom)


CONTACT_SAMPLE_ROWS = 1000


def _warn_of_contacts_in_custom_columns(path: Path, valid: Path, custom: list[str]) -> None:
    """A WARNING per custom column whose values, in the file's first loaded rows, look like e-mails or phone
    numbers (`personal_attribute_reason`, as feature builds judge custom attributes): contact data the PII
    checks do not see, likely under a header the contract does not know. Names only."""
    from features.customer_features import personal_attribute_reason

    batch = next(pq.ParquetFile(valid).iter_batches(batch_size=CONTACT_SAMPLE_ROWS, columns=custom), None)
    if batch is None:
        return
    sample = batch.to_pandas()
    for name in custom:
        reason = personal_attribute_reason(name, sample[name])
        if reason is not None and reason.startswith(("it holds e-mail", "it holds phone")):
            log.warning("%s: custom column %r looks like contact data (%s): it is kept as a custom attribute, "
                        "outside the PII checks; if it is an e-mail or phone column, name it as the contract does "
                        "(docs/data-contract.md)", path.name, name, reason)


def _warn_of_legacy_columns(path: Path, legacy: dict[str, lake.LegacyColumn]) -> None:
    """A WARNING per lake column that is a contract column's old spelling: personal data kept outside the PII
    checks until the rows holding it are sent again with the contract column. Names and counts only."""
    for name, column in legacy.items():
        what = (f"lake column {name!r} is an old spelling of the contract column {column.contract_column!r} (a custom "
                "column from before header names were matched to the contract): its values are outside the PII "
                "checks")
        if column.dropped:
            done = f"cleared in the {column.cleared} row(s) this file replaced; no row holds it any more: dropped"
        elif column.left and column.cleared:
            done = (f"cleared in the {column.cleared} row(s) this file replaced; {column.left} other lake row(s) "
                    f"still hold it, until they are sent again with a {column.contract_column} column")
        elif column.left:
            done = (f"{column.left} lake row(s) hold it, until they are sent again with a "
                    f"{column.contract_column} column")
        else:
            continue
        log.warning("%s: %s; %s", path.name, what, done)


def refuse_unreadable_columns(path: Path, schema: pa.Schema, contract: TableContract, custom: list[str]) -> None:
    """A Parquet column the lake cannot hold as one value (a list, struct or map) in a contract or custom
    column fails the table before any row is read: quarantining every row would only hide a file
    that needs fixing, and leaving the column out would lose its values."""
    unreadable = unreadable_columns(schema, [c.name for c in contract.columns if c.name in schema.names], custom)
    if not unreadable:
        return
    rows = pq.ParquetFile(path).metadata.num_rows
    described = ", ".join(f"{name} ({kind})" for name, kind in unreadable.items())
    one = len(unreadable) == 1
    them = "it" if one else "them"
    fix = f"flatten {them} into plain columns" + (f" or drop {them}" if set(unreadable) <= set(custom) else "")
    raise TableFileError(
        f"{path}: {'column' if one else 'columns'} {described} {'holds' if one else 'hold'} nested values "
        f"(a list, struct or map), which no {contract.name!r} column can store: {fix} and ingest again; "
        f"none of the file's {rows:,} rows was loaded or quarantined (the lake keeps the table as it was)"
    )


def drop_nulled_of_quarantined(nulled: Path, quarantined: Path) -> Counter:
    """Remove the nulled values of rows quarantined at the merge (their record keeps every value as
    read, as for any quarantined row); returns the nulled values left, per column."""
    if not nulled.exists():
        return Counter()
    table = pq.read_table(nulled)
    superseded = pq.read_table(quarantined, columns=["row"]).column("row")
    kept = table.filter(pc.invert(pc.is_in(table.column("row"), value_set=superseded)))
    if kept.num_rows != table.num_rows:
        pq.write_table(kept, nulled)
    return Counter(kept.column("column").to_pylist())


def restore_raw_records(quarantined: Path, batches: Iterator[RawBatch], contract: TableContract) -> None:
    """Put the rows as read into the `record` of rows quarantined at the merge (superseded by a key
    repeated later in the file), in place of the typed values staging kept: like every quarantined row,
    they must be recoverable as they were sent. One more pass over the file, only when a key repeats."""
    table = pq.read_table(quarantined)
    wanted = table.column("row").to_numpy()
    records: dict[int, str] = {}
    for batch in batches:
        positions = np.flatnonzero(np.isin(batch.rows, wanted))
        if len(positions):
            records.update(zip(batch.rows[positions].tolist(), raw_records(batch.table, positions, contract),
                               strict=True))
    restored = [records.get(row, typed) for row, typed in zip(wanted.tolist(), table.column("record").to_pylist(),
                                                              strict=True)]
    index = table.schema.get_field_index("record")
    pq.write_table(table.set_column(index, table.schema.field(index), pa.array(restored, pa.string())), quarantined)


def _stage_batches(
    batches: Iterator[RawBatch],
    path: Path,
    contract: TableContract,
    rules: ValidationRules,
    schema,
    custom: list[str],
    staging: Path,
    ingested_at: dt.datetime,
    progress: IngestProgress | None,
    total_bytes: int,
    suppression: SuppressionList,
) -> dict:
    """Validate each batch and append it to the staged valid / rejected / nulled files."""
    counts: dict = {"read": 0, "valid": 0, "rejected": 0, "suppressed": 0, "nulled_by_column": Counter()}
    file_name = str(path)
    with (
        pq.ParquetWriter(staging / "valid.parquet", output_schema(contract, custom)) as valid_out,
        pq.ParquetWriter(staging / "rejected.parquet", lake.QUARANTINE_SCHEMA) as rejected_out,
        pq.ParquetWriter(staging / "nulled.parquet", lake.NULLED_SCHEMA) as nulled_out,
    ):
        for batch in batches:
            malformed = pd.DataFrame(
                {
                    "row": [m.row for m in batch.malformed],
                    "columns": [""] * len(batch.malformed),
                    "reason": [m.reason for m in batch.malformed],
                    "record": [json.dumps({"raw_text": m.text}, ensure_ascii=False) for m in batch.malformed],
                }
            )
            counts["read"] += batch.table.num_rows + len(batch.malformed)
            malformed, suppressed_malformed = drop_suppressed_malformed(malformed, suppression)
            counts["suppressed"] += suppressed_malformed
            suppressed = 0
            if batch.table.num_rows:
                checked = validate_batch(batch.table, batch.rows, contract, rules, custom, schema)
                checked, suppressed = drop_suppressed(checked, contract.name, suppression)
                counts["suppressed"] += suppressed
                valid_out.write_table(checked.valid)
                rejected = pd.concat([malformed, checked.rejected], ignore_index=True)
                nulled = checked.nulled
            else:
                rejected, nulled = malformed, pd.DataFrame(columns=["row", "column", "reason", "original_value"])
            counts["valid"] += batch.table.num_rows - (len(rejected) - len(malformed)) - suppressed
            counts["rejected"] += len(rejected)
            counts["nulled_by_column"].update(nulled["column"].tolist())
            if len(rejected):
                rejected_out.write_table(_with_file(rejected, contract.name, file_name, ingested_at, lake.QUARANTINE_SCHEMA))
            if len(nulled):
                nulled_out.write_table(_with_file(nulled, contract.name, file_name, ingested_at, lake.NULLED_SCHEMA))
            if progress is not None:
                progress(contract.name, batch.bytes_done, total_bytes)
    return counts


def drop_suppressed_malformed(malformed: pd.DataFrame, suppression: SuppressionList) -> tuple[pd.DataFrame, int]:
    """Malformed lines that name an erased person left out (matched field by field on their raw text)."""
    if suppression.empty or malformed.empty:
        return malformed, 0
    texts = pd.Series([json.loads(record)["raw_text"] for record in malformed["record"]])
    hit = raw_text_rows(texts, suppression)
    return malformed[~hit].reset_index(drop=True), int(hit.sum())


def suppressed_contacts(columns: pd.Series, values: pd.Series, suppression: SuppressionList) -> np.ndarray:
    """Which (column, value) pairs are an e-mail or phone of the suppression list, standardized leniently
    as erasure matches nulled values (`features.erasure._nulled_contact_rows`): `Name <addr>`,
    `mailto:addr`, `tel:0…` and any other spelling the standardizers read. Each distinct pair once."""
    mask = np.zeros(len(values), dtype=bool)
    if suppression.empty or len(values) == 0:
        return mask
    rules = suppression.standardization
    standardize = {"email": lambda text: standardize_email_leniently(text, rules.email_rules),
                   "phone": lambda text: standardize_phone(text, rules.phone_region)}
    seen: dict[tuple[str, str], bool] = {}
    for position, (column, value) in enumerate(zip(columns, values, strict=True)):
        if column not in standardize or not isinstance(value, str) or not value.strip():
            continue
        key = (column, value)
        if key not in seen:
            contact = standardize[column](value)
            seen[key] = contact is not None and keyed_hash(suppression.salt, column, contact) in suppression.hashes
        mask[position] = seen[key]
    return mask


def _rejected_contact_rows(records: pd.DataFrame, suppression: SuppressionList) -> np.ndarray:
    """Quarantined `customers` records whose e-mail or phone, as written, is a suppressed contact."""
    mask = np.zeros(len(records), dtype=bool)
    for column in ("email", "phone"):
        if column in records:
            values = records[column].astype(object).where(records[column].notna(), None)
            mask |= suppressed_contacts(pd.Series([column] * len(records)), values, suppression)
    return mask


def drop_suppressed(checked: ValidatedBatch, table: str, suppression: SuppressionList) -> tuple[ValidatedBatch, int]:
    """Valid and rejected rows that name an erased person, and their nulled values, left out of the
    batch; returns the batch and how many rows were dropped. A row names them also when the e-mail or
    phone validation nulled (or rejected) is theirs, written in a way the standardizers still read
    (`suppressed_contacts`): ingestion drops what erasure would remove."""
    if suppression.empty:
        return checked, 0
    checked = blank_mentions(checked, table, suppression)
    columns = [c for c in matched_columns(table) if c in checked.valid.column_names]
    valid_hit = suppressed_rows(checked.valid.select(columns).to_pandas(), table, suppression)
    records = pd.DataFrame([json.loads(r) for r in checked.rejected["record"]]) if len(checked.rejected) else pd.DataFrame()
    rejected_hit = suppressed_rows(records, table, suppression) if len(records) else np.zeros(0, dtype=bool)
    if table == "customers":
        nulled_hit = suppressed_contacts(checked.nulled["column"], checked.nulled["original_value"], suppression)
        if nulled_hit.any():  # the person's row, whatever else it holds: the contact is theirs alone
            contact_rows = set(checked.nulled["row"].to_numpy()[nulled_hit].tolist())
            valid_hit |= np.isin(checked.valid.column(SOURCE_ROW).to_numpy(), list(contact_rows))
            rejected_hit |= checked.rejected["row"].isin(contact_rows).to_numpy(dtype=bool)
        if len(records):
            rejected_hit |= _rejected_contact_rows(records, suppression)
    if not valid_hit.any() and not rejected_hit.any():
        return checked, 0
    rows = set(checked.valid.column(SOURCE_ROW).to_numpy()[valid_hit].tolist())
    rows |= set(checked.rejected["row"].to_numpy()[rejected_hit].tolist())
    kept = ValidatedBatch(
        valid=checked.valid.filter(pa.array(~valid_hit)),
        rejected=checked.rejected[~rejected_hit].reset_index(drop=True),
        nulled=checked.nulled[~checked.nulled["row"].isin(rows)].reset_index(drop=True),
    )
    return kept, int(valid_hit.sum() + rejected_hit.sum())


def blank_mentions(checked: ValidatedBatch, table: str, suppression: SuppressionList) -> ValidatedBatch:
    """Custom attributes naming an erased person's e-mail or phone nulled, in valid rows and quarantined
    records: the row stays (it may be another person's, who gave theirs as a contact), as `cdp forget` does."""
    valid, _ = blank_suppressed_mentions(checked.valid, attribute_columns(table, checked.valid.column_names),
                                         suppression)
    rejected = checked.rejected
    if len(rejected):
        records, _ = blank_suppressed_mentions_in_records(rejected["record"], table, suppression)
        rejected = rejected.assign(record=records)
    return ValidatedBatch(valid=valid, rejected=rejected, nulled=checked.nulled)


def _with_file(
    frame: pd.DataFrame, table: str, file_name: str, ingested_at: dt.datetime, schema: pa.Schema
) -> pa.Table:
    frame = frame.assign(table=table, file=file_name, ingested_at=pd.Timestamp(ingested_at))
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _write_table_report(workspace: Workspace, report: TableReport) -> None:
    target = workspace.reports / "ingest"
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{report.table}.json").write_text(json.dumps(asdict(report), indent=2))
