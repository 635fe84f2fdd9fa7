"""Lake and quarantine writers: staged Parquet merged into the lake with DuckDB, upserting on keys.

Writes go to a temporary file that replaces the table in one rename, so an interrupted run
leaves the previous lake table intact.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

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
    lake_rows: int


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
) -> MergeResult:
    """Upsert staged rows on the primary key; earlier rows with a repeated key are superseded.

    A key repeated within one file keeps its last row; the earlier ones go to quarantine.
    A key already in the lake is replaced by the new row, so re-ingesting a file is a no-op.
    """
    key = ", ".join(_quote(c) for c in contract.primary_key)
    payload = ", ".join(f"{_literal(c)}: {_quote(c)}" for c in contract.column_names)
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT *, max(_source_row) OVER (PARTITION BY {key}) AS _last_row
        FROM read_parquet({_literal(str(staged))})
        """
    )
    superseded = connection.sql(
        f"""
        SELECT _source_row AS row, _last_row AS last_row, to_json({{{payload}}})::VARCHAR AS record
        FROM ranked WHERE _source_row < _last_row ORDER BY _source_row
        """
    ).to_arrow_table()
    if superseded.num_rows:
        reasons = [
            f"duplicate primary key ({', '.join(contract.primary_key)}): superseded by row {last} of the same file"
            for last in superseded.column("last_row").to_pylist()
        ]
        duplicates_out.write_table(
            pa.table(
                {
                    "table": pa.array([contract.name] * superseded.num_rows, pa.string()),
                    "file": pa.array([source_file] * superseded.num_rows, pa.string()),
                    "row": superseded.column("row"),
                    "columns": pa.array([",".join(contract.primary_key)] * superseded.num_rows, pa.string()),
                    "reason": pa.array(reasons, pa.string()),
                    "record": superseded.column("record"),
                    "ingested_at": pa.array([ingested_at] * superseded.num_rows, QUARANTINE_SCHEMA.field("ingested_at").type),
                },
                schema=QUARANTINE_SCHEMA,
            )
        )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE latest AS
        SELECT * EXCLUDE (_last_row), {_literal(source_file)} AS _source_file,
               {_literal(ingested_at.isoformat())}::TIMESTAMPTZ AS _ingested_at
        FROM ranked WHERE _source_row = _last_row
        """
    )
    connection.execute("DROP TABLE ranked")
    incoming = connection.execute("SELECT count(*) FROM latest").fetchone()[0]
    join = " AND ".join(f"n.{_quote(c)} = e.{_quote(c)}" for c in contract.primary_key)
    temporary = lake_file.with_name(f".{lake_file.name}.{os.getpid()}.tmp")
    lake_file.parent.mkdir(parents=True, exist_ok=True)
    if lake_file.exists():
        existing = f"read_parquet({_literal(str(lake_file))}, union_by_name = true)"
        updated = connection.execute(
            f"SELECT count(*) FROM latest n WHERE EXISTS (SELECT 1 FROM {existing} e WHERE {join})"
        ).fetchone()[0]
        query = f"""
            SELECT * FROM {existing} e WHERE NOT EXISTS (SELECT 1 FROM latest n WHERE {join})
            UNION ALL BY NAME SELECT * FROM latest
        """
    else:
        updated = 0
        query = "SELECT * FROM latest"
    connection.execute(f"COPY ({query}) TO {_literal(str(temporary))} (FORMAT parquet, COMPRESSION zstd)")
    connection.execute("DROP TABLE latest")
    os.replace(temporary, lake_file)
    lake_rows = pq.ParquetFile(lake_file).metadata.num_rows
    return MergeResult(
        duplicates=superseded.num_rows,
        inserted=incoming - updated,
        updated=updated,
        lake_rows=lake_rows,
    )


def _read_all(files: list[Path]) -> str:
    return "read_parquet([" + ", ".join(_literal(str(f)) for f in files) + "], union_by_name = true)"


def replace_file_entries(
    connection: duckdb.DuckDBPyConnection, staged: list[Path], target: Path, source_file: str
) -> int:
    """Swap the entries of `source_file` in a quarantine table for the newly staged ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
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
    """Quarantined rows per first reason, most frequent first."""
    rows = connection.execute(
        f"SELECT split_part(reason, '; ', 1) AS reason, count(*) FROM {_read_all(staged)} "
        "GROUP BY reason ORDER BY 2 DESC, 1"
    ).fetchall()
    return {reason: int(count) for reason, count in rows}
