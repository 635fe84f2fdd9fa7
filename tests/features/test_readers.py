"""The tolerant CSV reader (used when pyarrow gives up on a file): nothing of a record is lost."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pytest

from features.ingest.readers import stream_csv_fast, stream_csv_robust


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


def test_a_field_past_the_csv_limit_is_quarantined_with_its_text_and_the_next_rows_load(tmp_path):
    # Given a field of 200,000 characters (Python's csv refuses fields over 131,072)
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\nq," + "z" * 200_000 + "\n5,6\n")
    # When read
    rows, values, malformed = _read(path)
    # Then that record is quarantined with its line as written, and the rows around it load
    assert rows == [1, 3] and [v["a"] for v in values] == [b"1", b"5"]
    assert [m.row for m in malformed] == [2] and "field larger than field limit" in malformed[0].reason
    assert malformed[0].text == "q," + "z" * 200_000


def test_a_stray_quote_swallows_no_row_unseen(tmp_path):
    # Given a quote that never closes, followed by 4,000 good rows (more than csv's 128 KiB field limit)
    path = tmp_path / "t.csv"
    good = [f"id{i:05d}-padding-padding-padding,{i}" for i in range(4000)]
    path.write_text("a,b\n1,2\nq,\"oops\n" + "\n".join(good) + "\n")
    # When read
    rows, values, malformed = _read(path)
    # Then every line of the file is either a loaded row or inside a quarantined record's text
    loaded = {v["a"].decode() + "," + v["b"].decode() for v in values}
    quarantined = "\n".join(m.text for m in malformed)
    assert all(line in loaded or line in quarantined for line in good)
    assert 'q,"oops' in quarantined and len(loaded) > 1, "the rows after the swallowed part load again"


def test_a_quote_left_open_is_quarantined_with_the_rows_it_swallowed_not_loaded_as_one_value(tmp_path):
    # Given a small file whose third record opens a quote it never closes
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,2\nq,"oops\n3,4\n5,6\n')
    # When read by the tolerant reader
    rows, values, malformed = _read(path)
    # Then the record is quarantined with every line it took in, and says why; nothing loads as one value
    assert rows == [1] and [m.row for m in malformed] == [2]
    assert malformed[0].text == 'q,"oops\n3,4\n5,6'
    assert malformed[0].reason.startswith("unterminated quote") and "2 of them looking like records" in malformed[0].reason
    # ...and the fast reader refuses the batch, so the tolerant one reads the file
    with pytest.raises(pa.ArrowInvalid, match="look like records of their own"):
        list(stream_csv_fast(path, ["a", "b"], 1 << 20))


def test_an_address_over_two_lines_still_loads_as_one_value(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"1 Elm Road\nFlat 2"\n')
    assert [b.table.column("b").to_pylist() for b in stream_csv_fast(path, ["a", "b"], 1 << 20)][0] == [b"1 Elm Road\nFlat 2"]
    rows, values, malformed = _read(path)
    assert rows == [1] and not malformed and values[0]["b"] == b"1 Elm Road\nFlat 2"
