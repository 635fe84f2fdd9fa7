"""The I/O edge of feature engineering: lake views in, feature tables (Parquet) out."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cdp.files import temporary_beside
from cdp.workspace import Workspace
from features.contract import CONTRACTS
from features.customer_features import (
    CHANNELS,
    KEY_COLUMNS,
    build_customer_features,
    personal_attribute_reason,
)
from features.identity.store import REFERENCING_TABLES, identity_paths

SQL_TYPES = {"string": "VARCHAR", "timestamp": "TIMESTAMPTZ", "date": "DATE", "float": "DOUBLE", "int": "BIGINT"}
log = logging.getLogger("cdp.features")
ACTIVITY_TABLES = {"orders": "ordered_at", "events": "occurred_at", "touches": "sent_at", "consents": "recorded_at",
                   "tickets": "opened_at"}


class FeatureInputError(ValueError):
    """A stage before features has not run, or an as-of time is unusable; the message says which."""


def feature_table_path(workspace: Workspace, family: str) -> Path:
    return workspace.data / "features" / f"{family}.parquet"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


DATA_END_TOLERANCE_DAYS = 7
"""How far past the last day with any activity an as-of time may lie before features and scores warn
about it: a quiet last day or two is not a gap. Training allows none (labels would count the days
without data as days without orders: training/pipeline.py)."""


def days_after_the_data(as_of: dt.datetime | dt.date, last_day: dt.date | None) -> int:
    """Whole days between the day after the last data and `as_of` (0 when as of the day after or
    before; the tolerance is the caller's to apply)."""
    day = as_of.date() if isinstance(as_of, dt.datetime) else as_of
    return 0 if last_day is None else max(0, (day - last_day).days - 1)


def last_data_day(workspace: Workspace) -> dt.date | None:
    """The last day with any activity in the lake (None when it holds none): features or scores as of
    long after it describe every customer as lapsed for want of data, not because they left."""
    latest = []
    for table, column in ACTIVITY_TABLES.items():  # the dated activity snapshots are made of
        path = workspace.lake_table(table)
        if path.exists():
            value = duckdb.sql(f"SELECT max({column}) FROM read_parquet({_literal(str(path))})").fetchone()[0]
            if value is not None:
                latest.append(value)
    return max(latest).astimezone(dt.UTC).date() if latest else None


def open_lake(workspace: Workspace, memory_limit: str = "4GB",
              with_pushes: bool = False) -> tuple[duckdb.DuckDBPyConnection, tuple[str, ...]]:
    """A DuckDB connection with every contract table and the identity map as views.
    Missing tables are empty (orders-only data works); a missing identity map is an error.
    `with_pushes`: the consents pushed to the service too (the feature build's input; else empty)."""
    paths = identity_paths(workspace)
    if not paths["identity_map"].exists():
        raise FeatureInputError(f"{paths['identity_map']} not found; run `cdp resolve` first")
    connection = duckdb.connect()
    connection.execute(f"SET memory_limit = {_literal(memory_limit)}")
    connection.execute("SET TimeZone = 'UTC'")
    for name in CONTRACTS:
        path = workspace.lake_table(name)
        if path.exists():
            connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_literal(str(path))})")
    if with_pushes:
        connection.register("pushed_consents_frame", pushed_consents(workspace))
        connection.execute("CREATE VIEW pushed_consents AS SELECT * FROM pushed_consents_frame")
    create_missing_tables(connection)
    connection.execute(f"CREATE VIEW identity_map AS SELECT * FROM read_parquet({_literal(str(paths['identity_map']))})")
    known = set(CONTRACTS["customers"].column_names)
    custom_columns = connection.sql("SELECT * FROM customers LIMIT 0").columns
    custom = tuple(c for c in custom_columns if c not in known and not c.startswith("_"))
    return connection, custom


def count_unresolved_records(connection: duckdb.DuckDBPyConnection) -> int:
    """Source records (customers rows and customer references of the other tables) the identity map
    lacks: ingested after the last resolution, they belong to no customer, so features leave them out
    without a word unless this says so."""
    records = " UNION ".join(f"SELECT source, CAST(source_id AS VARCHAR) AS source_id FROM {table}"
                             for table in ("customers", *REFERENCING_TABLES))
    return connection.execute(
        f"SELECT count(*) FROM ({records}) r WHERE NOT EXISTS (SELECT 1 FROM identity_map m "
        "WHERE m.source = r.source AND CAST(m.source_id AS VARCHAR) = r.source_id)").fetchone()[0]


def unread_consent_channels(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Consent rows of a channel the features do not read, by channel: a lake filled before the contract
    read `E-mail` as `email` holds withdrawals under `e-mail` that nothing would honour."""
    known = ", ".join(f"'{channel}'" for channel in CHANNELS)
    return dict(connection.execute(
        f"SELECT channel, count(*) FROM consents WHERE channel NOT IN ({known}) GROUP BY channel ORDER BY channel"
    ).fetchall())


ATTRIBUTE_SAMPLE_ROWS = 100_000


def usable_custom_attributes(connection: duckdb.DuckDBPyConnection, custom: Sequence[str]) -> tuple[str, ...]:
    """The custom `customers` columns that may become features; each other one is named in the log
    with why (`personal_attribute_reason`). It stays in the lake and the golden profiles."""
    usable = []
    for name in custom:
        column = '"' + name.replace('"', '""') + '"'
        values = connection.sql(f"SELECT CAST({column} AS VARCHAR) AS v FROM customers WHERE {column} IS NOT NULL "
                                f"LIMIT {ATTRIBUTE_SAMPLE_ROWS}").df()["v"]
        reason = personal_attribute_reason(name, values)
        if reason is None:
            usable.append(name)
        else:
            log.warning("customers column %r is not used as a feature: %s (personal data never enters the "
                        "feature store or the models)", name, reason)
    return tuple(usable)


def pushed_consents(workspace: Workspace) -> pd.DataFrame:
    """Consent changes pushed through /events or `cdp push` (the push log), as consent events of the
    customer: the feature build counts them with the lake's consents, each from the moment it was
    pushed, so a withdrawal survives the next build and materialize."""
    from features.feature_store import FLAG_PREFIX, read_push_log
    from features.identity.store import read_identity_state

    consents = read_push_log(workspace, read_identity_state(workspace))  # consents only
    # text as pandas strings: DuckDB reads them as VARCHAR even when there are none (no push log yet)
    return pd.DataFrame({
        "customer_id": consents["customer_id"].astype("string"),
        "channel": consents["field"].str.removeprefix(FLAG_PREFIX).str.removesuffix("_consent").astype("string"),
        "status": consents["value"].map(lambda v: "granted" if float(v) == 1 else "withdrawn").astype("string"),
        "happened_at": consents["pushed_at"].astype("datetime64[us, UTC]"),
    })


def create_missing_tables(connection: duckdb.DuckDBPyConnection) -> None:
    """An empty, typed table for every contract table not present: orders-only data works; also the
    pushed consents when no push log was read."""
    present = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for name, contract in CONTRACTS.items():
        if name not in present:
            columns = ", ".join(f'"{c.name}" {SQL_TYPES[c.kind]}' for c in contract.columns)
            connection.execute(f"CREATE TABLE {name} ({columns})")
    if "pushed_consents" not in present:
        connection.execute("CREATE TABLE pushed_consents (customer_id VARCHAR, channel VARCHAR, status VARCHAR, "
                           "happened_at TIMESTAMPTZ)")


def register_snapshots(connection: duckdb.DuckDBPyConnection, as_of: Sequence[dt.datetime]) -> int:
    """Snapshots: every customer with any dated activity before each as-of time."""
    if not as_of:
        raise FeatureInputError("give at least one --as-of time")
    times = pd.DataFrame({"as_of": pd.to_datetime(list(as_of), utc=True)})
    connection.register("as_of_times", times)
    activity = " UNION ALL ".join(
        f"SELECT source, source_id, min({column}) AS first_seen FROM {table} GROUP BY ALL"
        for table, column in ACTIVITY_TABLES.items()
    )
    # each record's first dated activity: the profile family counts a record from then, however late its
    # customers row was last updated (see `profile`)
    connection.execute(f"CREATE OR REPLACE TEMP TABLE record_first_seen AS SELECT source, source_id, "
                       f"min(first_seen) AS first_seen FROM ({activity}) a GROUP BY ALL")
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE snapshots AS
        WITH first_seen AS (
            SELECT m.customer_id, min(a.first_seen) AS first_seen
            FROM record_first_seen a JOIN identity_map m USING (source, source_id) GROUP BY ALL
        )
        SELECT f.customer_id, t.as_of FROM first_seen f JOIN as_of_times t ON f.first_seen < t.as_of
        """
    )
    return connection.execute("SELECT count(*) FROM snapshots").fetchone()[0]


def build_feature_tables(workspace: Workspace, as_of: Sequence[dt.datetime]) -> dict[str, int]:
    """Compute every family for the as-of times and merge them into the feature tables."""
    connection, custom = open_lake(workspace, with_pushes=True)
    # Snapshots built from an earlier lake would mix two versions of the data: start over, each table
    # replaced only once its new rows are computed (a run killed meanwhile leaves the old tables, which the
    # unchanged fingerprint still marks as not matching the lake: the next build starts over again).
    start_over = not tables_match_inputs(workspace)
    if start_over:
        for path in (workspace.data / "features").glob("*.parquet"):
            log.info("%s: the lake or identity map changed since it was built; rebuilding", path.name)
    try:
        unresolved = count_unresolved_records(connection)
        if unresolved:
            log.warning("%d source record(s) in the lake are not in the identity map (ingested since the last "
                        "`cdp resolve`): they are in no feature, model or score until `cdp resolve` runs", unresolved)
        for channel, rows in unread_consent_channels(connection).items():
            log.warning("consents: %d row(s) of channel %r, which no feature reads (the contract now reads it as one "
                        "of %s or quarantines it): loaded before; ingest that export again", rows, channel,
                        ", ".join(CHANNELS))
        snapshots = register_snapshots(connection, as_of)
        if snapshots == 0:
            raise FeatureInputError(f"no customer has any activity before {min(as_of)}")
        tables = build_customer_features(connection, usable_custom_attributes(connection, custom))
    finally:
        connection.close()
    created = pd.Timestamp(dt.datetime.now(dt.UTC))
    for family, frame in tables.items():
        # DuckDB's parallel sums differ in the last bits between runs; rounding keeps rebuilds identical.
        decimals = frame.select_dtypes("float").columns
        frame[decimals] = frame[decimals].round(9)
        write_feature_table(feature_table_path(workspace, family), frame.assign(created_timestamp=created),
                            keep_other_snapshots=not start_over)
    _fingerprint_path(workspace).write_text(json.dumps(_inputs_fingerprint(workspace)))
    return {family: len(frame) for family, frame in tables.items()}


def _inputs_fingerprint(workspace: Workspace) -> dict[str, str]:
    """A digest of the content of every lake table and the identity map (what features read). Content,
    not modification times: a workspace copied with `cp -r` (new times, same data) keeps its tables;
    hashing reads each file once, about a second per GB."""
    paths = [workspace.lake_table(name) for name in CONTRACTS] + [identity_paths(workspace)["identity_map"]]
    fingerprint = {}
    for path in paths:
        if path.exists():
            with path.open("rb") as handle:
                fingerprint[path.name] = hashlib.file_digest(handle, "blake2b").hexdigest()
    return fingerprint


def _fingerprint_path(workspace: Workspace) -> Path:
    return workspace.data / "features" / "inputs.json"


def tables_match_inputs(workspace: Workspace) -> bool:
    """Whether the feature tables were built from the lake and identity map as they are now."""
    record = _fingerprint_path(workspace)
    return record.exists() and json.loads(record.read_text()) == _inputs_fingerprint(workspace)


def ensure_feature_snapshots(workspace: Workspace, as_of: Sequence[dt.datetime]) -> list[dt.datetime]:
    """Build only the snapshots the tables lack; when the lake or identity map changed since the tables
    were written, start the tables over with the snapshots asked for (older snapshots would otherwise
    mix two versions of the data). Returns the times built."""
    table = feature_table_path(workspace, "purchase_history")
    wanted = list(as_of)
    if tables_match_inputs(workspace) and table.exists():
        present = set(pd.to_datetime(pq.read_table(table, columns=["event_timestamp"]).column(0).to_pandas(), utc=True))
        wanted = [t for t in as_of if pd.Timestamp(t).tz_convert("UTC") not in present]
    if wanted:
        build_feature_tables(workspace, wanted)
    return wanted


def write_feature_table(path: Path, frame: pd.DataFrame, keep_other_snapshots: bool = True) -> None:
    """Replace the rows of the same snapshots, keep the others (an idempotent merge), or with
    `keep_other_snapshots=False` replace the whole table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and keep_other_snapshots:
        existing = pq.read_table(path).to_pandas()
        if list(existing.columns) != list(frame.columns):
            log.warning("%s: feature definitions changed; earlier snapshots are dropped (rebuild them with "
                        "`cdp features build --as-of ...`)", path.name)
        else:
            existing = existing[~existing["event_timestamp"].isin(frame["event_timestamp"].unique())]
            frame = pd.concat([existing, frame], ignore_index=True)
    frame = frame.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
    temporary = temporary_beside(path)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
    temporary.replace(path)
