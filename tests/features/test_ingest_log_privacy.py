"""Logs never hold a value of the raw files (docs/data-contract.md, Personal data): when pyarrow's CSV
reader stops on a record, its message (which quotes the record) is not logged, and a record that is
not UTF-8 prints no traceback (user test: both carried a customer's row to the log)."""

from __future__ import annotations

import logging
import sys

import pytest

from features.ingest import ingest_directory

HEADER = b"order_id,source,source_id,ordered_at,amount\n"


def test_a_malformed_record_that_is_not_utf8_is_logged_by_row_and_kind_only(
        raw_dir, workspace, ingest_settings, caplog, monkeypatch):
    # Given orders whose second record has a field too many, an e-mail address and a byte that is not UTF-8
    (raw_dir / "orders.csv").write_bytes(
        HEADER + b"A1,web,W1,2025-01-01,5\n" + b"A2,web,W\xe92,2025-01-01,5,q@example.com\n" + b"A3,web,W3,2025-01-01,5\n")
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    # When ingested
    with caplog.at_level(logging.INFO, logger="cdp.ingest"):
        report = ingest_directory(raw_dir, workspace, ingest_settings).tables[0]
    # Then the record is still quarantined and the others load
    assert (report.read, report.loaded, report.quarantined) == (3, 2, 1)
    # and the log says which row and what kind of problem, without any of its values
    assert "q@example.com" not in caplog.text and "2025-01-01" not in caplog.text
    assert "fast CSV reader stopped (row 2: expected 5 fields, found 6; the record is not valid UTF-8)" in caplog.text
    # and no "Exception ignored ... UnicodeDecodeError" traceback was printed
    assert unraisable == []


@pytest.mark.parametrize(("message", "described"), [
    ("CSV parse error: Row #3: Expected 5 columns, got 6: A2,web,W2,q@example.com", "row 2: expected 5 fields, found 6"),
    ("CSV parse error: Expected 5 columns, got 6: A2,web,q@example.com", "expected 5 fields, found 6"),
    ("CSV conversion error: 'q@example.com'", "a record pyarrow cannot parse (its message is not repeated"),
])
def test_pyarrow_parse_errors_are_described_without_the_record(message, described):
    # Given pyarrow's message, quoting a record; when described; then the counts stay and the record goes
    from features.ingest.readers import describe_parse_error

    assert describe_parse_error(message).startswith(described)
    assert "q@example.com" not in describe_parse_error(message)
