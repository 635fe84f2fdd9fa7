"""Property: whatever is done to a file, every record is accounted for and no valid row is lost."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.config import load_settings
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.ingest import ingest_table

HEADER = ["order_id", "source", "source_id", "ordered_at", "amount", "channel", "items", "discount"]
REQUIRED_FIELDS = [0, 1, 2, 3, 4]
CORRUPTIONS = ["garbage", "drop_field", "extra_field", "blank_required", "invalid_bytes", "duplicate", "blank_line", "stray_quote"]

text_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
garbage = st.text(
    alphabet=st.characters(blacklist_characters=',"\r\n', blacklist_categories=("Cs",)), min_size=0, max_size=12
)


@st.composite
def order_rows(draw) -> list[dict]:
    count = draw(st.integers(min_value=1, max_value=30))
    rows = []
    for index in range(count):
        moment = draw(st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2026, 1, 1)))  # past: later is quarantined
        moment = moment.replace(microsecond=0)
        zone = draw(st.sampled_from(["", "Z", "+02:00", "-05:30"]))
        rows.append(
            {
                "order_id": f"o{index}",
                "source": draw(st.sampled_from(["web", "app", "store"])),
                "source_id": draw(text_token),
                "moment": moment,
                "zone": zone,
                "amount": draw(st.floats(min_value=0, max_value=1e5, allow_nan=False).map(lambda x: round(x, 2))),
                "channel": draw(st.sampled_from(["web", "app", "store", "phone", ""])),
                "items": draw(st.one_of(st.just(""), st.integers(0, 20).map(str))),
                "discount": draw(st.one_of(st.just(""), st.floats(0, 100).map(lambda x: f"{x:.2f}"))),
            }
        )
    return rows


def render(row: dict) -> list[str]:
    return [
        row["order_id"], row["source"], row["source_id"], row["moment"].isoformat() + row["zone"],
        repr(row["amount"]), row["channel"], row["items"], row["discount"],
    ]


def expected_utc(row: dict) -> pd.Timestamp:
    offsets = {"": dt.timedelta(0), "Z": dt.timedelta(0), "+02:00": dt.timedelta(hours=2), "-05:30": dt.timedelta(hours=-5, minutes=-30)}
    return pd.Timestamp(row["moment"] - offsets[row["zone"]], tz="UTC")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=order_rows(),
    corruptions=st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from(CORRUPTIONS), st.integers(0, 7), garbage), max_size=8
    ),
    truncate=st.integers(0, 30),
)
def test_every_record_is_accounted_for_and_valid_rows_survive(rows, corruptions, truncate):
    # Given a valid orders file damaged in arbitrary ways
    lines: list[bytes] = []
    record_of_line: list[int | None] = []  # which generated row each output line carries
    corrupted: set[int] = set()
    plan: dict[int, list[tuple[str, int, str]]] = {}
    for index, kind, field, junk in corruptions:
        if index < len(rows):
            plan.setdefault(index, []).append((kind, field, junk))
    for index, row in enumerate(rows):
        fields = [f.encode() for f in render(row)]
        extra_lines: list[tuple[bytes, int | None]] = []
        for kind, field, junk in plan.get(index, []):
            field %= max(len(fields), 1)  # earlier drop_fields may have shortened the row
            if not fields and kind in ("garbage", "invalid_bytes", "stray_quote"):
                fields = [b""]
            if kind == "garbage":
                fields[field] = junk.encode()
            elif kind == "drop_field":
                fields = fields[:-1]
            elif kind == "extra_field":
                fields = [*fields, b"x"]
            elif kind == "blank_required":
                required = REQUIRED_FIELDS[field % len(REQUIRED_FIELDS)]
                if required < len(fields):
                    fields[required] = b""
            elif kind == "invalid_bytes":
                fields[field] = b"\xff" + junk.encode()[:3] + b"\xfe"
            elif kind == "stray_quote":
                fields[field] = fields[field] + b'"' + junk.encode()[:2] if fields[field] else b"x\""
            elif kind == "duplicate":
                extra_lines.append((None, index))  # an exact copy, written after the row
            elif kind == "blank_line":
                extra_lines.append((b"", None))
            if kind not in ("duplicate", "blank_line"):
                corrupted.add(index)
        lines.append(b",".join(fields))
        record_of_line.append(index)
        for content, copy_of in extra_lines:
            lines.append(b",".join(fields) if content is None else content)
            record_of_line.append(copy_of)
    body = b"\n".join(lines) + b"\n"
    cut = min(truncate, len(body) - 1)
    data = ",".join(HEADER).encode() + b"\n" + (body[: len(body) - cut] if cut else body)
    if cut:
        # every line touched by the cut is corrupted
        kept = len(body) - cut
        offset = 0
        for line, index in zip(lines, record_of_line, strict=True):
            end = offset + len(line) + 1
            if end > kept and index is not None:
                corrupted.add(index)
            offset = end
    records_in_file = sum(1 for line in data.split(b"\n")[1:] if line.strip(b"\r"))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "orders.csv"
        path.write_bytes(data)
        workspace = Workspace.at(Path(tmp) / "workspace")
        # When it is ingested
        report = ingest_table(path, CONTRACTS["orders"], workspace, load_settings().ingest)
        # Then every record is read, and loaded or quarantined, never both, never neither
        assert report.status == "ok", report.error
        assert report.read == records_in_file
        assert report.loaded + report.quarantined == report.read
        lake = pd.read_parquet(workspace.lake_table("orders")) if report.loaded else pd.DataFrame(columns=HEADER)
        quarantine_file = workspace.quarantine / "orders.parquet"
        quarantined = pd.read_parquet(quarantine_file) if quarantine_file.exists() else pd.DataFrame()
        assert len(lake) == report.loaded and len(quarantined) == report.quarantined
        # ...and every untouched row is in the lake with its exact values
        lake = lake.set_index("order_id")
        for index, row in enumerate(rows):
            if index in corrupted:
                continue
            loaded = lake.loc[row["order_id"]]
            assert loaded["source"] == row["source"] and loaded["source_id"] == row["source_id"]
            assert loaded["ordered_at"] == expected_utc(row)
            assert loaded["amount"] == row["amount"]
            assert (loaded["channel"] or "") == row["channel"]
