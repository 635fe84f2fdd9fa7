"""Lake and quarantine writers: staged Parquet merged into the lake with DuckDB, upserting on keys.

Writes go to a temporary file that replaces the table in one rename, so an interrupted run
leaves the previous lake table intact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cdp.files import temporary_beside, write_json
from features.contract import TableContract

QUARANTINE_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("file", pa.string()),
        ("row", pa.int64()),
        ("columns", pa.string()),
        ("reason", pa.string()),
        ("record", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
NULLED_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("file", pa.string()),
        ("row", pa.int64()),
        ("column", pa.string()),
        ("reason", pa.string()),
        ("original_value", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class LegacyColumn:
    """A lake column that is a contract column's other spelling (`legacy_columns`), as this merge left it."""

    contract_column: str
    cleared: int
    """Rows this file replaced whose value in it went (the file has the contract column)."""
    left: int
    """Lake rows still holding a value in it (not replaced by this file, or the file lacks the contract column)."""
    dropped: bool
    """No row holds a value any more: the column is gone from the lake."""


@dataclass(frozen=True)
class MergeResult:
    duplicates: int
    inserted: int
    updated: int
    """Rows whose key the lake held with other values."""
    lake_rows: int
    unchanged: int = 0
    """Rows the lake already held as they are (a file ingested again)."""
    legacy: dict[str, LegacyColumn] = field(default_factory=dict)
    """The lake's columns that are another spelling of a contract column, by name (`legacy_columns`)."""


DUCKDB_SUFFIX = re.compile(r"(?:_\d+)+$")
"""What DuckDB appends to a column name another column already has, ignoring case (`EMAIL_1` beside `email`)."""


def legacy_columns(contract: TableContract, lake_names: Sequence[str]) -> dict[str, str]:
    """The lake's custom columns that are a contract column's name in another case, with or without a
    DuckDB suffix (`EMAIL`, `EMAIL_1`, `First_Name`): written before header names were matched to the
    contract, since today such a header is the contract column. By name, the contract column. Not other
    names (`Mobile`, `Phone Number`: today a custom column set aside beside the column's own header, or a
    flag of the same name), nor the exact name with a suffix (`address_line_2`, `email_2`: columns of their
    own)."""
    known = {name.lower(): name for name in contract.column_names}
    found = {}
    for name in lake_names:
        if name.startswith("_") or name.lower() in known:
            continue
        base = DUCKDB_SUFFIX.sub("", name)
        if base.lower() in known and base != known[base.lower()]:
            found[name] = known[base.lower()]
    return found


DELIVERIES_FILE = "deliveries.json"
"""In the quarantine directory: for each path ingested, the content digest of each ingest of it (by its
`ingested_at`), so that a later file at the same path can tell its own entries from another delivery's."""


def file_digest(path: Path) -> str:
    """The content's digest (BLAKE2b): the same bytes, the same file, wherever and whenever they were read."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "blake2b").hexdigest()


@dataclass(frozen=True)
class Delivery:
    """A file as ingested now: its path (what its quarantine entries, nulled values and lake rows are
    named by: `file`, `_source_file`) and its content's digest, with the digest of every earlier ingest
    of that path (`history`, by ingested_at).

    A path holds one delivery after another (a nightly export overwritten in place). Entries and lake
    rows of an earlier content are renamed `<path>@content-<digest[:16]>` when another content arrives
    at the path, so that they are kept (not replaced as this file's), and so that (file, row), by which
    erasure and subject access match quarantined and nulled entries to lake rows, never names two
    records. Those of the same content are replaced (a file ingested again). Entries from before
    digests were recorded (no `history` entry) are renamed `<path>@ingested-<time>`, but for
    quarantined and nulled entries the new run reproduces exactly (same row, same values): replaced."""

    file: str
    digest: str
    history: dict[dt.datetime, str] = field(default_factory=dict)

    @property
    def archived(self) -> str:
        """This content's name once another content has come at its path."""
        return archived_name(self.file, self.digest)

    def register(self, connection: duckdb.DuckDBPyConnection) -> None:
        times = list(self.history)
        connection.register("deliveries", pa.table({
            "ingested_at": pa.array(times, pa.timestamp("us", tz="UTC")),
            "digest": pa.array([self.history[t] for t in times], pa.string()),
        }))

    def name(self, file: str, ingested_at: str) -> str:
        """SQL: the name a row named `file` and ingested at `ingested_at` keeps, joined with `deliveries h`."""
        path, stamp = _literal(self.file), "strftime(timezone('UTC', {}), '%Y-%m-%dT%H:%M:%S.%fZ')"
        return (f"CASE WHEN {file} = {path} THEN CASE WHEN h.digest = {_literal(self.digest)} THEN {path} "
                f"WHEN h.digest IS NOT NULL THEN {path} || '@content-' || left(h.digest, 16) "
                f"ELSE {path} || '@ingested-' || coalesce({stamp.format(ingested_at)}, 'unknown') END "
                f"WHEN {file} = {_literal(self.archived)} THEN {path} ELSE {file} END")

    def same(self, file: str) -> str:
        """SQL: the row came from this very content (joined with `deliveries h`)."""
        return (f"(coalesce({file} = {_literal(self.file)} AND h.digest = {_literal(self.digest)}, false) "
                f"OR {file} = {_literal(self.archived)})")

    def unrecorded(self, file: str) -> str:
        """SQL: the row came from an ingest of the path before digests were recorded."""
        return f"({file} = {_literal(self.file)} AND h.digest IS NULL)"


def archived_name(path: str, digest: str) -> str:
    return f"{path}@content-{digest[:16]}"


def record_delivery(quarantine: Path, path: str, ingested_at: dt.datetime, digest: str) -> Delivery:
    """Add this ingest of `path` to the record of deliveries (before anything is written: a run killed
    midway leaves entries this record can still name), and return it with the path's history."""
    target = quarantine / DELIVERIES_FILE
    record = json.loads(target.read_text()) if target.exists() else {}
    ingests = record.setdefault(path, {})
    ingests[ingested_at.isoformat()] = digest
    write_json(target, record)
    history = {dt.datetime.fromisoformat(when): seen for when, seen in ingests.items()}
    return Delivery(path, digest, history)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(memory_limit: str, temp_directory: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(f"SET memory_limit = {_literal(memory_limit)}")
    connection.execute(f"SET temp_directory = {_literal(str(temp_directory))}")
    connection.execute("SET preserve_insertion_order = false")
    return connection


def merge_into_lake(
    connection: duckdb.DuckDBPyConnection,
    contract: TableContract,
    staged: Path,
    lake_file: Path,
    source_file: str,
    ingested_at: dt.datetime,
    duplicates_out: pq.ParquetWriter,
    respect_versions: bool = True,
    absent: Sequence[str] = (),
    delivery: Delivery | None = None,
    track_replaced: bool = False,
) -> MergeResult:
    """Upsert staged rows on the primary key; the other rows of a key repeated in one file are superseded.

    A key repeated within one file keeps its latest version (`updated_at`, for a table that has one), else
    its last row; the others go to quarantine. A key already in the lake is replaced by the new row, so
    re-ingesting a file is a no-op. `absent`: the contract's optional columns the file does not have
    (staged as nulls); the file says nothing about them, nor about a custom column only the lake has, so a
    row replacing the lake's keeps the lake's values of those columns (a column present with an empty value
    clears it), and a row equal to the lake's in the columns the file has is unchanged. `delivery`: the
    file's content; the lake's rows of another content at its path that it does not replace are renamed
    as `Delivery` says (their quarantined and nulled entries are renamed alike). `track_replaced`: the
    (file, row) of the lake rows this file replaces, named as they stay, go to the connection's temporary
    table `replaced_places` (for `replace_file_entries(drop_replaced=True)`).
    """
    key = ", ".join(_quote(c) for c in contract.primary_key)
    payload = ", ".join(f"{_literal(c)}: s.{_quote(c)}" for c in contract.column_names)
    staged_rows = f"read_parquet({_literal(str(staged))})"
    on_key = " AND ".join(f"s.{_quote(c)} = d.{_quote(c)}" for c in contract.primary_key)
    # Repeated keys are rare: find them with one hash aggregate, and rank only their rows.
    newest_first = (f"s.{_quote(contract.version_column)} DESC NULLS LAST, " if contract.version_column else "")
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE repeated AS
        WITH keys AS (SELECT {key} FROM {staged_rows} GROUP BY {key} HAVING count(*) > 1)
        SELECT {", ".join(f"s.{_quote(c)}" for c in contract.primary_key)}, s._source_row AS _last_row
        FROM {staged_rows} s SEMI JOIN keys d ON {on_key}
        QUALIFY row_number() OVER (PARTITION BY {", ".join(f"s.{_quote(c)}" for c in contract.primary_key)}
                                   ORDER BY {newest_first}s._source_row DESC) = 1
        """
    )
    superseded = connection.sql(
        f"""
        SELECT s._source_row AS row, d._last_row AS last_row, to_json({{{payload}}})::VARCHAR AS record
        FROM {staged_rows} s JOIN repeated d ON {on_key}
        WHERE s._source_row <> d._last_row ORDER BY s._source_row
        """
    ).to_arrow_table()
    if superseded.num_rows:
        _write_superseded(superseded, contract, source_file, ingested_at, duplicates_out)
    excluded = superseded.column("row").cast(pa.int64()).to_pylist()
    if lake_file.exists() and contract.version_column and respect_versions:
        outdated = _outdated_rows(connection, contract, staged_rows, lake_file, payload, on_key, excluded)
        if outdated.num_rows:
            _write_superseded(outdated, contract, source_file, ingested_at, duplicates_out)
            excluded += outdated.column("row").cast(pa.int64()).to_pylist()
    connection.register("superseded_rows", pa.table({"_source_row": pa.array(excluded, pa.int64())}))
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW arrived AS
        SELECT s.*, {_literal(source_file)} AS _source_file,
               {_literal(ingested_at.isoformat())}::TIMESTAMPTZ AS _ingested_at
        FROM {staged_rows} s ANTI JOIN superseded_rows USING (_source_row)
        """
    )
    incoming = pq.ParquetFile(staged).metadata.num_rows - len(excluded)
    join = " AND ".join(f"n.{_quote(c)} = e.{_quote(c)}" for c in contract.primary_key)
    temporary = temporary_beside(lake_file)
    lake_file.parent.mkdir(parents=True, exist_ok=True)
    if lake_file.exists():
        existing = f"read_parquet({_literal(str(lake_file))}, union_by_name = true)"
        staged_columns = [c for c in pq.read_schema(staged).names if c != "_source_row"]
        lake_columns = set(pq.read_schema(lake_file).names)
        # DuckDB's column names ignore case (`loyalty_tier` is the lake's `Loyalty_Tier`): so do these sets
        staged_folded, lake_folded = {c.lower() for c in staged_columns}, {c.lower() for c in lake_columns}
        # columns the file does not have (an optional contract column left out, a custom column only the lake
        # has): a row replacing the lake's keeps the lake's values there, as if the file had sent them
        # a contract column's old spelling (a custom column before headers were matched to the contract:
        # personal data outside the PII checks) goes from the rows a file with that contract column replaces
        legacy = legacy_columns(contract, [c for c in lake_columns if c.lower() not in staged_folded]
                                ) if contract.allows_custom_columns else {}
        cleared_columns = [c for c, column in legacy.items() if column not in absent]
        kept = [c for c in pq.read_schema(lake_file).names
                if not c.startswith("_") and (c in absent or c.lower() not in staged_folded)]
        kept_folded = {c.lower() for c in kept}
        # an old spelling held the contract column's value only where the lake's contract column is empty;
        # beside a value there it is another datum (a CRM's Mobile beside its Phone), kept like any other
        cleared_where = {c: f"e.{_quote(legacy[c])} IS NULL" for c in cleared_columns}
        _define_latest(connection, contract, existing, kept, [c for c in kept if c.lower() in staged_folded],
                       cleared_where)
        same = " AND ".join(f"n.{_quote(c)} IS NOT DISTINCT FROM e.{_quote(c)}" for c in staged_columns
                            if c.lower() in lake_folded and c.lower() not in kept_folded) or "true"
        # lineage too: the quarantine's entries of a file are replaced by row number, and erasure and
        # subject access match them to lake rows by (file, row), so a row that moved must be rewritten
        placed = "n._source_file = e._source_file AND n._source_row = e._source_row"
        matched, changed, moved = connection.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT ({same})), count(*) FILTER (WHERE NOT ({placed})) "
            f"FROM latest n JOIN {existing} e ON {join}"
        ).fetchone()
        kept_rows, renamed = existing, 0
        if delivery is not None and {"_source_file", "_ingested_at"} <= lake_columns:
            # rows of another content at this path, which this file does not replace, take that content's name
            delivery.register(connection)
            name = delivery.name("e._source_file", "e._ingested_at")
            kept_rows = (f"(SELECT e.* REPLACE ({name} AS _source_file) FROM {existing} e "
                         f"LEFT JOIN deliveries h ON e._ingested_at = h.ingested_at)")
            renamed = connection.execute(
                f"SELECT count(*) FROM {existing} e LEFT JOIN deliveries h ON e._ingested_at = h.ingested_at "
                f"WHERE e._source_file IN ({_literal(delivery.file)}, {_literal(delivery.archived)}) "
                f"AND ({name}) <> e._source_file AND NOT EXISTS (SELECT 1 FROM latest n WHERE {join})"
            ).fetchone()[0]
        if track_replaced:
            lineage = {"_source_file", "_source_row"} <= lake_columns
            connection.execute(
                "CREATE OR REPLACE TEMP TABLE replaced_places AS " + (
                    f"SELECT e._source_file AS file, e._source_row AS row FROM {kept_rows} e "
                    f"WHERE EXISTS (SELECT 1 FROM latest n WHERE {join})" if lineage else
                    "SELECT NULL::VARCHAR AS file, NULL::BIGINT AS row WHERE false"))
        legacy_left = _legacy_counts(connection, existing, join, legacy, cleared_where)
        dropped = [c for c in cleared_columns if legacy_left[c][1] == 0]
        legacy_result = {c: LegacyColumn(column, legacy_left[c][0], legacy_left[c][1], c in dropped)
                         for c, column in legacy.items()}
        if (matched == incoming and changed == 0 and moved == 0 and renamed == 0
                and lake_folded.issuperset(staged_folded)
                and not dropped and not any(result.cleared for result in legacy_result.values())):
            # Nothing new (a file ingested again): the lake file stays as it is, byte for byte, so the
            # feature tables built from it stay valid (their digest of the lake does not change).
            return MergeResult(duplicates=len(excluded), inserted=0, updated=0, lake_rows=pq.ParquetFile(lake_file)
                               .metadata.num_rows, unchanged=matched, legacy=legacy_result)
        query = f"""
            SELECT * FROM {kept_rows} e WHERE NOT EXISTS (SELECT 1 FROM latest n WHERE {join})
            UNION ALL BY NAME SELECT * FROM latest
        """
        if dropped:
            query = f"SELECT * EXCLUDE ({', '.join(_quote(c) for c in dropped)}) FROM ({query})"
    else:
        matched = changed = 0
        legacy_result = {}
        query = "SELECT * FROM arrived"
        if track_replaced:
            connection.execute("CREATE OR REPLACE TEMP TABLE replaced_places AS "
                               "SELECT NULL::VARCHAR AS file, NULL::BIGINT AS row WHERE false")
    connection.execute(f"COPY ({query}) TO {_literal(str(temporary))} (FORMAT parquet, COMPRESSION zstd)")
    os.replace(temporary, lake_file)
    lake_rows = pq.ParquetFile(lake_file).metadata.num_rows
    return MergeResult(
        duplicates=len(excluded),
        inserted=incoming - matched,
        updated=changed,
        lake_rows=lake_rows,
        unchanged=matched - changed,
        legacy=legacy_result,
    )


def _legacy_counts(connection: duckdb.DuckDBPyConnection, existing: str, join: str, legacy: dict[str, str],
                   cleared_where: dict[str, str]) -> dict[str, tuple[int, int]]:
    """For each legacy column: (lake rows replaced by `latest` whose value in it is cleared, those where
    `cleared_where` holds; lake rows holding a value in it afterwards)."""
    if not legacy:
        return {}
    names = list(legacy)
    replaced = f"EXISTS (SELECT 1 FROM latest n WHERE {join})"
    cleared = {c: f"{replaced} AND {cleared_where[c]}" if c in cleared_where else "false" for c in names}
    counts = connection.execute("SELECT " + ", ".join(
        f"count({_quote(c)}) FILTER (WHERE {cleared[c]}), count({_quote(c)}) FILTER (WHERE NOT ({cleared[c]}))"
        for c in names) + f" FROM {existing} e").fetchone()
    return {c: (counts[2 * index], counts[2 * index + 1]) for index, c in enumerate(names)}


def _define_latest(connection: duckdb.DuckDBPyConnection, contract: TableContract, existing: str,
                   kept: list[str], staged_kept: list[str], cleared_where: dict[str, str] | None = None) -> None:
    """`latest`: the rows arrived, with the lake's values in the `kept` columns for a key the lake holds
    (`staged_kept`: those of them staged, as nulls, because the contract has them), but none in a column
    of `cleared_where` where its condition on the lake's row (`e`) holds."""
    cleared_where = cleared_where or {}
    if not kept:
        connection.execute("CREATE OR REPLACE TEMP VIEW latest AS SELECT * FROM arrived")
        return
    on_key = " AND ".join(f"n.{_quote(c)} = e.{_quote(c)}" for c in contract.primary_key)
    replaced = ", ".join(f"e.{_quote(c)} AS {_quote(c)}" for c in staged_kept)
    added = "".join(
        f", CASE WHEN {cleared_where[c]} THEN NULL ELSE e.{_quote(c)} END AS {_quote(c)}" if c in cleared_where
        else f", e.{_quote(c)} AS {_quote(c)}" for c in kept if c not in staged_kept)
    connection.execute(
        f"CREATE OR REPLACE TEMP VIEW latest AS SELECT n.*{f' REPLACE ({replaced})' if replaced else ''}{added} "
        f"FROM arrived n LEFT JOIN {existing} e ON {on_key}"
    )


def _outdated_rows(connection: duckdb.DuckDBPyConnection, contract: TableContract, staged_rows: str,
                   lake_file: Path, payload: str, on_key: str, excluded: list[int]) -> pa.Table:
    """Rows whose key the lake holds with a later version (`updated_at`): an older export ingested after a
    newer one (also at the same path: a nightly drop overwritten by an old file). They are quarantined,
    saying so, and the lake keeps the newer row; `cdp ingest --replace` is the way to correct rows."""
    version = _quote(contract.version_column)
    connection.register("already_superseded", pa.table({"_source_row": pa.array(excluded, pa.int64())}))
    return connection.sql(
        f"""
        SELECT s._source_row AS row, NULL::BIGINT AS last_row, to_json({{{payload}}})::VARCHAR AS record,
               true AS outdated
        FROM {staged_rows} s ANTI JOIN already_superseded USING (_source_row)
        JOIN read_parquet({_literal(str(lake_file))}, union_by_name = true) d ON {on_key}
        WHERE d.{version} > s.{version}
        ORDER BY s._source_row
        """
    ).to_arrow_table()


def _write_superseded(
    superseded: pa.Table,
    contract: TableContract,
    source_file: str,
    ingested_at: dt.datetime,
    duplicates_out: pq.ParquetWriter,
) -> None:
    count = superseded.num_rows
    key = ", ".join(contract.primary_key)
    if "outdated" in superseded.column_names:  # one reason for all: the record holds the row's version
        reasons = [f"older than the lake's row for this key ({key}): its {contract.version_column} is earlier"] * count
    else:
        reasons = [
            f"duplicate primary key ({key}): superseded by row {last} of the same file"
            for last in superseded.column("last_row").to_pylist()
        ]
    duplicates_out.write_table(
        pa.table(
            {
                "table": pa.array([contract.name] * count, pa.string()),
                "file": pa.array([source_file] * count, pa.string()),
                "row": superseded.column("row"),
                "columns": pa.array([",".join(contract.primary_key)] * count, pa.string()),
                "reason": pa.array(reasons, pa.string()),
                "record": superseded.column("record"),
                "ingested_at": pa.array([ingested_at] * count, QUARANTINE_SCHEMA.field("ingested_at").type),
            },
            schema=QUARANTINE_SCHEMA,
        )
    )


def _read_all(files: list[Path]) -> str:
    return "read_parquet([" + ", ".join(_literal(str(f)) for f in files) + "], union_by_name = true)"


def replace_file_entries(
    connection: duckdb.DuckDBPyConnection, staged: list[Path], target: Path, delivery: Delivery,
    identity: Sequence[str] = ("row", "reason", "record"), drop_replaced: bool = False,
) -> int:
    """Swap the entries of this file's content in a quarantine table for the newly staged ones; entries of
    another content at its path are kept, renamed (`Delivery`), so that nothing quarantined is lost when a
    nightly export is overwritten in place. `identity`: the columns that make an entry the same entry (an
    entry from before contents were recorded is replaced only when the new run reproduces it).
    `drop_replaced`: entries of the lake rows this file replaced (`replaced_places`, from `merge_into_lake`)
    go too: nulled values belong to a loaded row, and one of a version the lake no longer holds could be
    matched to no row by erasure or subject access (they match nulled values to lake rows by (file, row))."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(target)
    new = _read_all(staged)
    if target.exists():
        delivery.register(connection)
        ingested_at = "o.ingested_at" if "ingested_at" in pq.read_schema(target).names else "NULL::TIMESTAMPTZ"
        reproduced = " AND ".join(f"o.{_quote(c)} IS NOT DISTINCT FROM r.{_quote(c)}" for c in identity)
        name = delivery.name("o.file", ingested_at)
        replaced = (f"AND NOT EXISTS (SELECT 1 FROM replaced_places p WHERE p.file = ({name}) AND p.row = o.row) "
                    if drop_replaced else "")
        query = (
            f"SELECT o.* REPLACE ({name} AS file) "
            f"FROM read_parquet({_literal(str(target))}) o LEFT JOIN deliveries h ON {ingested_at} = h.ingested_at "
            f"WHERE NOT {delivery.same('o.file')} AND NOT ({delivery.unrecorded('o.file')} "
            f"AND EXISTS (SELECT 1 FROM {new} r WHERE {reproduced})) {replaced}"
            f"UNION ALL BY NAME SELECT * FROM {new}"
        )
    else:
        query = f"SELECT * FROM {new}"
    connection.execute(f"COPY ({query}) TO {_literal(str(temporary))} (FORMAT parquet, COMPRESSION zstd)")
    os.replace(temporary, target)
    return connection.execute(f"SELECT count(*) FROM {new}").fetchone()[0]


def count_reasons(connection: duckdb.DuckDBPyConnection, staged: list[Path]) -> dict[str, int]:
    """Quarantined rows per first reason, most frequent first. A reason naming another row ("superseded
    by row 812 of the same file") is counted as its kind ("row N"): one key per duplicate would make
    a report of 10,000 keys."""
    rows = connection.execute(
        f"SELECT regexp_replace(split_part(reason, '; ', 1), 'by row [0-9]+', 'by row N', 'g') AS reason, count(*) "
        f"FROM {_read_all(staged)} GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    return {reason: int(count) for reason, count in rows}
