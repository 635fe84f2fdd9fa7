"""Validated ingestion of raw source files into the workspace's lake."""

from features.ingest.pipeline import (
    IngestReport,
    TableReport,
    find_raw_tables,
    ingest_directory,
    ingest_table,
)
from features.ingest.readers import TableFileError

__all__ = ["IngestReport", "TableFileError", "TableReport", "find_raw_tables", "ingest_directory", "ingest_table"]
