"""Temporary files: named so that a killed writer's partial copies can be found and deleted."""

from __future__ import annotations

import os
import subprocess
import time

from cdp.files import FOREIGN_TEMPORARY_SECONDS, remove_abandoned_temporaries, temporary_beside


def finished_process_id() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_only_the_temporaries_of_writers_that_are_gone_are_deleted(tmp_path):
    # Given temporaries of a killed writer, of this process (a thread's too), of another host, and others
    table = tmp_path / "lake" / "customers.parquet"
    table.parent.mkdir()
    dead = table.with_name(f".customers.parquet.{finished_process_id()}.tmp")  # the naming before hosts
    mine = temporary_beside(table)
    threads = temporary_beside(tmp_path / "lake" / "reload.json", tag="140039329897344")
    foreign_fresh = table.with_name(".customers.parquet.12345@elsewhere.tmp")
    foreign_old = table.with_name(".orders.parquet.12345@elsewhere.tmp")
    unrelated = table.with_name(".notes.tmp")
    for path in (dead, mine, threads, foreign_fresh, foreign_old, unrelated):
        path.write_text("rows")
    stale = time.time() - FOREIGN_TEMPORARY_SECONDS - 60
    os.utime(foreign_old, (stale, stale))
    # When abandoned ones are removed
    removed = remove_abandoned_temporaries(tmp_path)
    # Then the killed writer's and the day-old foreign one go; a running writer's and the rest stay
    assert sorted(removed) == sorted([dead, foreign_old])
    assert all(path.exists() for path in (mine, threads, foreign_fresh, unrelated))
