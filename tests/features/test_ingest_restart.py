"""Ingestion killed mid-run and restarted (issue 8): given a raw directory, when `cdp ingest` dies
by SIGKILL part-way (between writing a lake table's new file and renaming it over the old one, the
worst moment) and is run again, then every lake table holds exactly the rows and keys of a clean
run: nothing duplicated, nothing lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import duckdb
import pytest

from cdp.config import IngestSettings
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.ingest import ingest_directory

pytestmark = pytest.mark.slow

DIE_BEFORE_RENAME = textwrap.dedent("""
    import os, signal, sys
    raw, workspace, allowed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lake_dir = os.path.join(workspace, "data", "lake")
    real_replace, renames = os.replace, []

    def replace(source, target, *args, **kwargs):
        if str(target).startswith(lake_dir):
            if len(renames) == allowed:  # the new file is written; die before it replaces the old one
                os.kill(os.getpid(), signal.SIGKILL)
            renames.append(target)
        return real_replace(source, target, *args, **kwargs)

    os.replace = replace
    from cdp.cli import app
    sys.argv = ["cdp", "ingest", "--raw", raw, "--workspace", workspace]
    app()
""")


def lake_contents(workspace: Workspace) -> dict[str, tuple[int, int]]:
    """Per lake table: (rows, distinct primary keys)."""
    contents = {}
    for path in sorted(workspace.lake.glob("*.parquet")):
        keys = ", ".join(f'"{k}"' for k in CONTRACTS[path.stem].primary_key)
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
        distinct = duckdb.sql(f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM read_parquet('{path}'))").fetchone()[0]
        contents[path.stem] = (rows, distinct)
    return contents


@pytest.fixture(scope="module")
def clean_lake(simulated_raw, tmp_path_factory) -> dict[str, tuple[int, int]]:
    workspace = Workspace.at(tmp_path_factory.mktemp("clean"))
    ingest_directory(simulated_raw, workspace, IngestSettings())
    return lake_contents(workspace)


@pytest.mark.parametrize("tables_renamed", [0, 3])
def test_a_killed_ingest_rerun_loads_every_row_exactly_once(simulated_raw, clean_lake, tmp_path, tables_renamed):
    workspace = Workspace.at(tmp_path / "ws")
    # Given: an ingest killed right before its (tables_renamed + 1)-th lake table replaces the old one
    killed = subprocess.run([sys.executable, "-c", DIE_BEFORE_RENAME, str(simulated_raw), str(workspace.root),
                             str(tables_renamed)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    partial = lake_contents(workspace)
    assert len(partial) == tables_renamed, "the kill did not happen part-way"
    # When: it is run again
    ingest_directory(simulated_raw, workspace, IngestSettings())
    # Then: the lake is the clean run's, row for row, key for key
    contents = lake_contents(workspace)
    assert contents == clean_lake
    assert all(rows == keys for rows, keys in contents.values()), "a primary key appears twice"
