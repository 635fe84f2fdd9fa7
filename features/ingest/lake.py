"""Lake and quarantine writers: staged Parquet merged into the lake with DuckDB, upserting on keys.

Writes go to a temporary file that replaces the table in one rename, so an interrupted run
leaves the previous lake table intact.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cdp.files import temporary_beside
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
class MergeResult:
    duplicates: int
    inserted: int
    updated: int
    """Rows whose key the lake held with other values."""
    lake_rows: int
    unchanged: int = 0
    """Rows the lake already held as they are (a file ingested again)."""


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
) -> MergeResult:
    """Upsert staged rows on the primary key; the other rows of a key repeated in one file are superseded.

    A key repeated within one file keeps its latest version (`updated_at`, for a table that has one), else
    its last row; the others go to quarantine. A key already in the lake is replaced by the new row, so
    re-ingesting a file is a no-op. `absent`: the contract's optional columns the file does not have
    (staged as nulls); the file says nothing about them, nor about a custom column only the lake has, so a
    row replacing the lake's keeps the lake's values of those columns (a column present with an empty value
    clears it), and a row equal to the lake's in the columns the file has is unchanged.
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
        # columns the file does not have (an optional contract column left out, a custom column only the lake
        # has): a row replacing the lake's keeps the lake's values there, as if the file had sent them
        kept = [c for c in pq.read_schema(lake_file).names
                if not c.startswith("_") and (c in absent or c not in staged_columns)]
        _define_latest(connection, contract, existing, kept, [c for c in kept if c in staged_columns])
        same = " AND ".join(f"n.{_quote(c)} IS NOT DISTINCT FROM e.{_quote(c)}" for c in staged_columns
                            if c in lake_columns and c not in kept) or "true"
        # lineage too: the quarantine's entries of a file are replaced by row number, and erasure and
        # subject access match them to lake rows by (file, row), so a row that moved must be rewritten
        placed = "n._source_file = e._source_file AND n._source_row = e._source_row"
        matched, changed, moved = connection.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT ({same})), count(*) FILTER (WHERE NOT ({placed})) "
            f"FROM latest n JOIN {existing} e ON {join}"
        ).fetchone()
        if matched == incoming and changed == 0 and moved == 0 and lake_columns.issuperset(staged_columns):
            # Nothing new (a file ingested again): the lake file stays as it is, byte for byte, so the
            # feature tables built from it stay valid (their digest of the lake does not change).
            return MergeResult(duplicates=len(excluded), inserted=0, updated=0, lake_rows=pq.ParquetFile(lake_file)
                               .metadata.num_rows, unchanged=matched)
        query = f"""
            SELECT * FROM {existing} e WHERE NOT EXISTS (SELECT 1 FROM latest n WHERE {join})
            UNION ALL BY NAME SELECT * FROM latest
        """
    else:
        matched = changed = 0
        query = "SELECT * FROM arrived"
    connection.execute(f"COPY ({query}) TO {_literal(str(temporary))} (FORMAT parquet, COMPRESSION zstd)")
    os.replace(temporary, lake_file)
    lake_rows = pq.ParquetFile(lake_file).metadata.num_rows
    return MergeResult(
        duplicates=len(excluded),
        inserted=incoming - matched,
        updated=changed,
        lake_rows=lake_rows,
        unchanged=matched - changed,
    )


def _define_latest(connection: duckdb.DuckDBPyConnection, contract: TableContract, existing: str,
                   kept: list[str], staged_kept: list[str]) -> None:
    """`latest`: the rows arrived, with the lake's values in the `kept` columns for a key the lake holds
    (`staged_kept`: those of them staged, as nulls, because the contract has them)."""
    if not kept:
        connection.execute("CREATE OR REPLACE TEMP VIEW latest AS SELECT * FROM arrived")
        return
    on_key = " AND ".join(f"n.{_quote(c)} = e.{_quote(c)}" for c in contract.primary_key)
    replaced = ", ".join(f"e.{_quote(c)} AS {_quote(c)}" for c in staged_kept)
    added = "".join(f", e.{_quote(c)} AS {_quote(c)}" for c in kept if c not in staged_kept)
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
    connection: duckdb.DuckDBPyConnection, staged: list[Path], target: Path, source_file: str
) -> int:
    """Swap the entries of `source_file` in a quarantine table for the newly staged ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(target)
    new = _read_all(staged)
    if target.exists():
        query = (
            f"SELECT * FROM read_parquet({_literal(str(target))}) WHERE file <> {_literal(source_file)} "
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
