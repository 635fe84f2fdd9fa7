"""The tolerant CSV reader (used when pyarrow gives up on a file): nothing of a record is lost."""

from __future__ import annotations

import csv
import io

from features.ingest.readers import stream_csv_robust


def _read(path):
    batches = list(stream_csv_robust(path, ["a", "b"], batch_rows=100))
    rows = [int(r) for batch in batches for r in batch.rows]
    values = [dict(zip(["a", "b"], row, strict=True)) for batch in batches
              for row in zip(*(batch.table.column(n).to_pylist() for n in ("a", "b")), strict=True)]
    return rows, values, [m for batch in batches for m in batch.malformed]


def test_a_malformed_record_is_kept_as_a_csv_line_that_reads_back_to_its_fields(tmp_path):
    # Given a record with one field too many, one of them a quoted field holding a comma and a quote
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,2\n"x, ""y""",2,3\n4,5\n')
    # When read
    rows, _, malformed = _read(path)
    # Then it is quarantined with its row, and its text reads back to the same three fields
    assert rows == [1, 3] and [m.row for m in malformed] == [2]
    assert next(csv.reader(io.StringIO(malformed[0].text))) == ['x, "y"', "2", "3"]


def test_a_field_longer_than_the_csv_modules_default_limit_is_read_not_dropped(tmp_path):
    # Given a field of 200,000 characters (Python's csv refuses fields over 131,072 by default)
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\nq," + "z" * 200_000 + "\n5,6\n")
    # When read
    rows, values, malformed = _read(path)
    # Then the record is read whole, for the contract's checks to judge, and no row goes missing
    assert rows == [1, 2, 3] and not malformed
    assert values[1] == {"a": b"q", "b": b"z" * 200_000}
