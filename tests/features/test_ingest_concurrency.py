"""Two ingests into one workspace take turns on its lake (user test: run A's lake file replaced run
B's, and B's orders were gone though both said "loaded"); a run that died holding the lake blocks
nobody."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pandas as pd

from features.ingest import ingest_directory, lake

HEADER = "order_id,source,source_id,ordered_at,amount\n"


def _orders(directory, prefix: str, count: int = 5):
    directory.mkdir()
    rows = "".join(f"{prefix}{i},web,w{i},2025-01-01,{i}\n" for i in range(count))
    (directory / "orders.csv").write_text(HEADER + rows)
    return directory


class _Waiting(logging.Handler):
    """Set when an ingest logs that it waits for another."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for it to finish" in record.getMessage():
            self.seen.set()


def test_two_concurrent_ingests_lose_no_row(tmp_path, workspace, ingest_settings, monkeypatch, caplog):
    # Given run A paused after writing its new orders file and before renaming it over the lake's (the
    # moment a lost update needs), until run B has finished or says it waits for A
    raw_a, raw_b = _orders(tmp_path / "a", "A"), _orders(tmp_path / "b", "B")
    a_paused, b_finished, waiting = threading.Event(), threading.Event(), _Waiting()
    caplog.set_level(logging.INFO, logger="cdp.ingest")
    logging.getLogger("cdp.ingest").addHandler(waiting)
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if threading.current_thread().name == "run-A" and str(target) == str(workspace.lake_table("orders")):
            a_paused.set()
            for _ in range(600):  # 30 s at most: a failing test must not hang
                if b_finished.is_set() or waiting.seen.is_set():
                    break
                b_finished.wait(0.05)
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(lake.os, "replace", replace)
    run_a = threading.Thread(target=ingest_directory, args=(raw_a, workspace, ingest_settings), name="run-A")
    run_b = threading.Thread(target=lambda: (ingest_directory(raw_b, workspace, ingest_settings), b_finished.set()),
                             name="run-B")
    # When B starts while A is paused
    try:
        run_a.start()
        assert a_paused.wait(30)
        run_b.start()
        run_a.join(60)
        run_b.join(60)
    finally:
        logging.getLogger("cdp.ingest").removeHandler(waiting)
    # Then the lake holds the orders of both runs, B having waited for A
    orders = pd.read_parquet(workspace.lake_table("orders"))["order_id"]
    assert sorted(orders) == [f"A{i}" for i in range(5)] + [f"B{i}" for i in range(5)]
    assert waiting.seen.is_set() and b_finished.is_set()


HOLD_THE_LAKE = textwrap.dedent("""
    import sys, time
    from cdp.workspace import Workspace
    from features.ingest.pipeline import lake_lock
    with lake_lock(Workspace.at(sys.argv[1])):
        print("held", flush=True)
        time.sleep(120)
""")


def test_an_ingest_waits_for_a_process_holding_the_lake_and_goes_on_when_it_dies(
        tmp_path, workspace, ingest_settings):
    # Given another process holding the workspace's lake
    raw = _orders(tmp_path / "raw", "A")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LAKE, str(workspace.root)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # When an ingest starts
        run = threading.Thread(target=ingest_directory, args=(raw, workspace, ingest_settings))
        run.start()
        run.join(1.5)
        # Then it waits, writing nothing
        assert run.is_alive() and not workspace.lake_table("orders").exists()
        # and when the holder is killed (no chance to clean up), the ingest goes on
        os.kill(holder.pid, signal.SIGKILL)
        run.join(60)
        assert not run.is_alive()
        assert len(pd.read_parquet(workspace.lake_table("orders"))) == 5
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
