"""The nightly job (a data engineer's user test): exports overwritten at the same path night after night,
exports that leave optional columns out, ingests killed by a cron timeout, and failed tables' reports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from features.ingest import ingest_directory
from features.ingest.pipeline import remove_abandoned_staging, staging_root

KILLED_WHILE_MERGING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from cdp.config import load_settings
    from cdp.files import temporary_beside
    from cdp.workspace import Workspace
    from features.ingest import ingest_directory, lake

    raw, root = Path(sys.argv[1]), Path(sys.argv[2])
    workspace = Workspace.at(root)

    def die(connection, contract, staged, lake_file, *args, **kwargs):
        # the table is staged in full; a half-written lake file is beside the lake's: killed right now
        temporary_beside(lake_file).write_bytes(staged.read_bytes())
        os.kill(os.getpid(), signal.SIGKILL)

    lake.merge_into_lake = die
    ingest_directory(raw, workspace, load_settings().ingest)
""")


def orders_file(directory: Path, header: str, *rows: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "orders.csv"
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


def test_an_ingest_removes_the_staging_left_by_a_killed_run(tmp_path, raw_dir, workspace, ingest_settings, caplog):
    # Given a first night in the lake, and a second ingest killed (SIGKILL) with the table staged in full
    # and a temporary lake file half-written: the copies hold every customer's row
    header = "order_id,source,source_id,ordered_at,amount"
    orders_file(raw_dir, header, "N1-1,web,W1,2026-06-30T10:00:00Z,5")
    ingest_directory(raw_dir, workspace, ingest_settings)
    orders_file(raw_dir, header, "N2-1,web,W1,2026-07-01T10:00:00Z,5", "N2-2,web,W2,2026-07-01T10:00:00Z,7")
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_MERGING, str(raw_dir), str(workspace.root)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [p for p in staging_root(workspace).rglob("*") if p.is_file()]
    assert any(p.name == "valid.parquet" for p in left)
    assert list(workspace.lake.glob(".orders.parquet.*.tmp"))

    # When the next night's ingest runs
    caplog.set_level("WARNING", logger="cdp.ingest")
    report = ingest_directory(raw_dir, workspace, ingest_settings)

    # Then it loads, and nothing of the killed run is left: no staging directory, no temporary file;
    # the log says how many it removed (one staging directory, one temporary file)
    assert report.tables[0].status == "ok" and report.tables[0].lake_rows == 3
    assert not staging_root(workspace).exists()
    assert not list(workspace.data.rglob("*.tmp"))
    assert any("removed 2 staging" in r.getMessage() for r in caplog.records)
    # and the cleanup, exposed for erasure, finds nothing more
    assert remove_abandoned_staging(workspace) == 0


def test_a_failed_table_reports_the_rows_the_lake_still_holds(raw_dir, workspace, ingest_settings):
    # Given a lake holding 3 orders
    header = "order_id,source,source_id,ordered_at,amount"
    orders_file(raw_dir, header, *(f"O{i},web,W{i},2026-06-30T10:00:00Z,5" for i in range(3)))
    ingest_directory(raw_dir, workspace, ingest_settings)

    # When the next export is semicolon-separated: the table fails
    orders_file(raw_dir, header.replace(",", ";"), "X;web;1;2026-06-01;1")
    report = ingest_directory(raw_dir, workspace, ingest_settings)

    # Then the report says the lake still holds its 3 rows, not 0 (console and the table's JSON report)
    table = report.tables[0]
    assert table.status == "failed" and table.loaded == 0
    assert table.lake_rows == 3 == pq.read_metadata(workspace.lake_table("orders")).num_rows
    assert json.loads((workspace.reports / "ingest" / "orders.json").read_text())["lake_rows"] == 3
