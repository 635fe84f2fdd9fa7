"""`cdp export --segment NAME`: lists campaign tools load, one row per source record of each customer
in a segment, with the customer's own ids in every system, their primary e-mail and the recommended
action.

A segment is a DuckDB boolean expression over the latest scores (data/outputs/scores.parquet, written
by `cdp score`, or the file `--scores` names) joined with the scoring features as of the scores' `as_of`
(an export refuses when later runs dropped that snapshot from the tables); built-in and user-defined segments
are the same kind of object (`segments` in cdp/config.py). Contact segments never hold a holdout customer
(the control group gets no contact, whatever the expression says) nor a customer with no eligible channel
(no consent, unreachable, capped or in a quiet period on every channel), and carry the e-mail address
only of customers e-mail is eligible for.

`select_segment` and `build_export` are pure (frames in, frames out); the readers and the writer
below them are the I/O edge. Nothing here logs personal data: summaries hold counts and paths only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdp.config import SegmentDefinition, Settings
from cdp.files import temporary_beside
from cdp.workspace import Workspace

ExportFormat = Literal["csv", "parquet"]
DERIVED_COLUMNS = {"clv_percentile": "clv"}
"""Columns computed over the whole scored base for segment expressions -> the score they need.
clv_percentile: the share of customers with a lower predicted CLV (0 lowest, 1 highest)."""
ACTION_COLUMNS = ("next_best_action", "next_best_channel", "expected_value", "win_back_action",
                  "win_back_timing", "reasons",
                  "holdout", "no_contact_reason")
"""What the policy recommends (serving/batch.py's columns), copied to every exported row."""
ELIGIBLE_PREFIX = "eligible_"
"""Scores' `eligible_<channel>`: the channel may be used today (consent, reach, caps, quiet periods)."""
CONTACT_COLUMNS = {"email": "email", "phone": "sms"}
"""The profile's primary contact points an export carries -> the channel that may use them: a contact list
gives one only where its channel is eligible (`eligible_<channel>`); a suppression list keeps them all."""
EXPORT_COLUMNS = ("customer_id", "source", "source_id", *CONTACT_COLUMNS, *ACTION_COLUMNS, "eligible_channels",
                  "segment", "campaign_id", "as_of")
FEATURE_KEYS = ("customer_id", "event_timestamp", "created_timestamp")
WITHDRAWN_SINCE_REASON = "consent withdrawn since the scores' as_of"
NO_ELIGIBLE_CHANNEL_REASON = "no eligible channel"
log = logging.getLogger("cdp.serving")


class SegmentError(ValueError):
    """A segment cannot be exported (unknown name, no scores, a bad expression); the message says why."""


class MissingFeatureSnapshotError(SegmentError):
    """The feature tables hold no snapshot at the scores' as_of (a later run started them over)."""


@dataclass
class ExportSummary:
    segment: str
    customers: int
    rows: int
    path: str
    output_format: str
    as_of: str
    where: str
    contact: bool
    holdout_excluded: int
    """Customers the expression matched who are in the holdout, left out of a contact segment."""
    withdrawn_since_scores: int = 0
    """Customers whose recommended channel lost its consent after the scores' as_of (/events, `cdp push`)."""
    scores: str = ""
    """The scores file the segment was selected from."""
    campaign_id: str | None = None
    """The campaign whose holdout the scores hold (from their `cdp score` summary); None when unknown."""
    no_channel_excluded: int = 0
    """Customers the expression matched, outside the holdout, left out of a contact segment because no
    channel is eligible for them (`eligible_<channel>` all false, consents withdrawn since included)."""
    no_channel_reasons: dict[str, int] = field(default_factory=dict)
    """Those customers by the policy's reason (`no_contact_reason` up to its details)."""
    email_not_eligible: int = 0
    """Customers in a contact list whose e-mail is not eligible: their `email` is left empty."""
    phone_not_eligible: int = 0
    """Customers in a contact list whose SMS is not eligible: their `phone` is left empty."""
    customers_without_features: int = 0
    """Scored customers with no row in that snapshot: never selected by an expression over features."""


def consents_withdrawn_since(consents: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, set[str]]:
    """Channel -> customers whose last consent push after `as_of` withdrew it (a later grant undoes it):
    what scores made at `as_of` cannot know. `consents`: the pushed consents as the feature build reads
    them (`features.feature_tables.pushed_consents`: customer_id, channel, status, happened_at; oldest first)."""
    later = consents[consents["happened_at"] > as_of]
    last = later.groupby(["customer_id", "channel"], sort=False)["status"].last().reset_index()
    withdrawn = last[last["status"] == "withdrawn"]
    channels: dict[str, set[str]] = {}
    for customer, channel in zip(withdrawn["customer_id"], withdrawn["channel"], strict=True):
        channels.setdefault(channel, set()).add(customer)
    return channels


def honour_later_withdrawals(scores: pd.DataFrame, withdrawn: dict[str, set[str]]) -> tuple[pd.DataFrame, int]:
    """Scores as a campaign may use them today: a channel whose consent was withdrawn since is not
    eligible, and a decision using it becomes no contact, saying why (which other channel the policy would
    pick is for `cdp score` to say: the export never guesses). Returns the scores and how many customers'
    decision changed."""
    scores = scores.copy()
    changed = np.zeros(len(scores), dtype=bool)
    for channel, customers in withdrawn.items():
        gone = scores["customer_id"].isin(customers).to_numpy()
        if f"eligible_{channel}" in scores:
            scores.loc[gone, f"eligible_{channel}"] = False
        uses = gone & (scores["next_best_channel"] == channel).to_numpy()
        win_back = gone & scores["win_back_action"].fillna("").str.split(":").str[0].eq(channel).to_numpy()
        why = f"consent to {channel} withdrawn since the scores' as_of; run `cdp score` again for another channel"
        scores.loc[uses, ["next_best_action", "next_best_channel", "expected_value", "no_contact_reason"]] = (
            "none", None, 0.0, why)
        scores.loc[win_back, "win_back_action"] = None
        if "win_back" in scores:
            scores.loc[win_back, "win_back"] = False
        changed |= uses | win_back
    return scores, int(changed.sum())


# --- pure -------------------------------------------------------------------------------------------

def referenced_names(where: str) -> set[str]:
    """Lower-case identifiers an expression may name as columns (string literals and `$parameters`
    left out): which score and feature columns to read."""
    without_literals = re.sub(r"'(?:[^']|'')*'", " ", where)
    quoted = {name.lower() for name in re.findall(r'"([^"]+)"', without_literals)}
    bare = re.sub(r'"[^"]*"|\$\w+', " ", without_literals)
    return quoted | {name.lower() for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare)}


def referenced_parameters(where: str) -> set[str]:
    return set(re.findall(r"\$(\w+)", re.sub(r"'(?:[^']|'')*'", " ", where)))


def select_segment(scores: pd.DataFrame, features: pd.DataFrame, definition: SegmentDefinition,
                   parameters: dict[str, float] | None = None, name: str = "segment") -> pd.DataFrame:
    """The score rows of the customers the segment's expression selects, in scores' order.

    `features` (customer_id plus any feature columns; may be empty) is joined to the scores on
    customer_id; score columns win a name clash. When it holds feature columns, a customer without a
    row is never selected (its features are unknown, not NULL). A contact segment drops holdout
    customers and customers with no eligible channel (`eligible_<channel>` all false: no consent,
    unreachable, capped or in a quiet period); scores without those columns are refused for it."""
    if "customer_id" not in scores.columns:
        raise SegmentError("scores have no customer_id column")
    parameters = parameters or {}
    wanted = referenced_parameters(definition.where)
    unknown = sorted(wanted - set(parameters))
    if unknown:
        raise SegmentError(f"segment {name!r}: parameter(s) {', '.join('$' + u for u in unknown)} not defined in "
                           f"segments.parameters (defined: {', '.join(sorted(parameters)) or 'none'})")
    if definition.contact and not channel_columns(scores):
        raise SegmentError(f"segment {name!r}: the scores have no eligible_<channel> columns, so who may be contacted "
                           "is unknown; run `cdp score` again")
    scored = with_win_back_timing(scores).reset_index(drop=True).assign(_position=np.arange(len(scores)))
    extra = [c for c in features.columns if c != "customer_id" and c not in scored.columns]
    known = "true"
    if extra:
        featured = features[["customer_id", *extra]].drop_duplicates("customer_id").assign(_has_features=True)
        scored = scored.merge(featured, on="customer_id", how="left")
        known = "coalesce(_has_features, false)"
    if "clv" in scored.columns:
        scored["clv_percentile"] = scored["clv"].rank(method="min", pct=False).sub(1).div(max(len(scored) - 1, 1))
    connection = duckdb.connect()
    try:
        connection.register("segment_input", scored)
        query = f"SELECT _position FROM segment_input WHERE {known} AND coalesce(({definition.where}), false)"
        matched = connection.execute(query, {k: parameters[k] for k in wanted}).fetchnumpy()["_position"]
    except duckdb.Error as error:
        raise SegmentError(describe_expression_error(name, definition.where, error)) from error
    finally:
        connection.close()
    chosen = scores.iloc[np.sort(np.asarray(matched, dtype=np.int64))]
    if definition.contact:
        if "holdout" in chosen.columns:
            chosen = chosen[~chosen["holdout"].fillna(False).astype(bool).to_numpy()]
        chosen = chosen[contactable(chosen)]
    return chosen.reset_index(drop=True)


def channel_columns(scores: pd.DataFrame) -> list[str]:
    return [c for c in scores.columns if c.startswith(ELIGIBLE_PREFIX)]


def contactable(scores: pd.DataFrame) -> np.ndarray:
    """Per row: some channel is eligible (`eligible_<channel>` true). False without those columns."""
    columns = channel_columns(scores)
    if not columns:
        return np.zeros(len(scores), dtype=bool)
    return scores[columns].fillna(False).astype(bool).to_numpy().any(axis=1)


def no_channel_reasons(left_out: pd.DataFrame, withdrawn: Iterable[str] = ()) -> dict[str, int]:
    """How many of the customers a contact segment left out for want of an eligible channel, by
    reason: the policy's `no_contact_reason` without its per-channel details ("no consented, reachable
    channel", "frequency cap", "quiet period", ...), or WITHDRAWN_SINCE_REASON for the customers in
    `withdrawn` (their last eligible channel lost its consent after the scores). Largest first."""
    policy = left_out.get("no_contact_reason", pd.Series(None, index=left_out.index, dtype=object))
    reasons = policy.astype(object).where(policy.notna(), NO_ELIGIBLE_CHANNEL_REASON).astype(str)
    reasons = reasons.str.split(" (", n=1, regex=False).str[0]
    reasons = reasons.where(~left_out["customer_id"].isin(set(withdrawn)), WITHDRAWN_SINCE_REASON)
    return {reason: int(count) for reason, count in reasons.value_counts().items()}


def describe_expression_error(name: str, where: str, error: Exception) -> str:
    """DuckDB's error in words that name the segment and, when it is one, the unknown column."""
    text = str(error)
    missing = re.search(r'Referenced column "([^"]+)" not found', text)
    if missing:
        return (f"segment {name!r}: column {missing.group(1)!r} is neither a score column nor a scoring feature "
                f"(where: {where})")
    first_line = text.splitlines()[0] if text else type(error).__name__
    return f"segment {name!r}: invalid where expression ({first_line}) (where: {where})"


def with_win_back_timing(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores written before win-back timing was a column: every win-back was for today."""
    if "win_back" not in scores.columns or "win_back_timing" in scores.columns:
        return scores
    return scores.assign(win_back_timing=np.where(scores["win_back"].fillna(False).astype(bool), "today", None))


def build_export(selected: pd.DataFrame, identity_map: pd.DataFrame, profiles: pd.DataFrame,
                 segment: str, contact: bool = True, campaign_id: str | None = None) -> pd.DataFrame:
    """One row per source record of each selected customer: the customer's id in that system, their
    primary e-mail and phone, the channels eligible for them and the recommended action
    (EXPORT_COLUMNS). A customer without any source record keeps one row with empty source and
    source_id. In a `contact` list a contact point is given only where its channel is eligible
    (CONTACT_COLUMNS: the e-mail where `eligible_email`, the phone where `eligible_sms`); a suppression
    list keeps them, to match the customers it suppresses."""
    selected = with_win_back_timing(selected)
    columns = channel_columns(selected)
    eligible = selected[columns].fillna(False).astype(bool).to_numpy() if columns else np.zeros((len(selected), 0), bool)
    channels = [c.removeprefix(ELIGIBLE_PREFIX) for c in columns]
    allowed = {f"_{contact_point}_allowed": eligible[:, channels.index(channel)] if channel in channels else False
               for contact_point, channel in CONTACT_COLUMNS.items()}
    actions = selected.reindex(columns=["customer_id", *ACTION_COLUMNS, "as_of"]).assign(
        eligible_channels=pd.Series([",".join(c for c, ok in zip(channels, row, strict=True) if ok) or None
                                     for row in eligible], index=selected.index, dtype=object), **allowed)
    records = identity_map[["customer_id", "source", "source_id"]]
    contact_points = profiles.reindex(columns=["customer_id", *CONTACT_COLUMNS]).drop_duplicates("customer_id")
    export = (actions.merge(records, on="customer_id", how="left")
              .merge(contact_points, on="customer_id", how="left")
              .assign(segment=segment, campaign_id=campaign_id))
    if contact:
        for contact_point in CONTACT_COLUMNS:
            export[contact_point] = export[contact_point].where(export[f"_{contact_point}_allowed"].astype(bool), None)
    export["holdout"] = export["holdout"].astype("boolean")
    for column in ("source", "source_id", *CONTACT_COLUMNS):
        export[column] = export[column].astype(object).where(export[column].notna(), None)
    export = export.sort_values(["customer_id", "source", "source_id"], kind="stable", na_position="last")
    return export[list(EXPORT_COLUMNS)].reset_index(drop=True)


# --- I/O edge ----------------------------------------------------------------------------------------

def default_scores_path(workspace: Workspace) -> Path:
    """The latest default scores; segments read Parquet, so a last run written as CSV is refused."""
    path = workspace.latest_scores
    if path.suffix == ".csv":
        raise SegmentError(f"the latest `cdp score` wrote {path} (CSV); segments read the Parquet scores, and "
                           f"{path.with_suffix('.parquet').name} is an older run's: run `cdp score` again without "
                           "--format csv")
    return path


def default_export_path(workspace: Workspace, segment: str, output_format: ExportFormat) -> Path:
    return workspace.outputs / "segments" / f"{segment}.{output_format}"


def find_segment(settings: Settings, name: str) -> SegmentDefinition:
    definitions = settings.segments.definitions  # their names checked at load (`SEGMENT_NAME`): no path
    if name not in definitions:
        raise SegmentError(f"unknown segment {name!r}; known segments: {', '.join(sorted(definitions))} "
                           "(define more under `segments.definitions` in cdp.yaml)")
    return definitions[name]


def read_scores(path: Path, names: Iterable[str]) -> pd.DataFrame:
    """customer_id, as_of, the action columns, `eligible_<channel>` and the score columns an expression
    names, and nothing else: at a million customers the conversion columns are most of the file."""
    if not path.exists():
        raise SegmentError(f"no scores yet: {path} not found; run `cdp score --as-of DATE` first")
    try:  # a file, or the directory of part files Spark writes (whatever its name)
        available = pq.ParquetDataset(path).schema.names
    except (pa.ArrowInvalid, OSError) as error:
        raise SegmentError(f"{path}: segments read Parquet scores (`cdp score` without --format csv); "
                           f"this is not Parquet ({type(error).__name__})") from None
    wanted = {"customer_id", "as_of", *ACTION_COLUMNS, *names}
    wanted |= {DERIVED_COLUMNS[n] for n in names if n in DERIVED_COLUMNS}
    columns = [c for c in available if c.lower() in {w.lower() for w in wanted} or c.startswith(ELIGIBLE_PREFIX)]
    scores = pd.read_parquet(path, columns=columns)
    if scores.empty:
        raise SegmentError(f"{path} holds no customers; run `cdp score --as-of DATE`")
    return scores


def scoring_campaign(path: Path, as_of: pd.Timestamp) -> str | None:
    """The campaign whose holdout the scores at `path` hold: `campaign_id` in the `cdp score` summary
    beside them (scores.parquet -> scores.json), when that summary is this file's (its output has the
    file's name and its as_of is the scores'). None when there is none (a file copied without it)."""
    from serving.batch import summary_path

    try:
        summary = json.loads(summary_path(path).read_text())
        if (Path(str(summary["output"])).name == path.name and pd.Timestamp(summary["as_of"]) == as_of
                and summary.get("campaign_id") is not None):
            return str(summary["campaign_id"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def scores_as_of(scores: pd.DataFrame) -> pd.Timestamp:
    moments = pd.to_datetime(scores["as_of"], utc=True).unique()
    if len(moments) != 1:
        raise SegmentError(f"scores hold {len(moments)} as-of times; expected one (re-run `cdp score`)")
    return pd.Timestamp(moments[0])


def feature_tables(workspace: Workspace) -> list[Path]:
    folder = workspace.data / "features"
    return sorted(folder.glob("*.parquet")) if folder.exists() else []


def feature_columns(workspace: Workspace, names: Iterable[str], skip: Iterable[str] = ()) -> dict[Path, list[str]]:
    """Feature table -> the named columns it holds (not in `skip`; the first table holding a name wins)."""
    names, taken = {n.lower() for n in names}, {s.lower() for s in skip} | {"customer_id"}
    tables = {}
    for path in feature_tables(workspace):
        columns = [c for c in pq.read_schema(path).names
                   if c not in FEATURE_KEYS and c.lower() in names and c.lower() not in taken]
        if columns:
            taken |= {c.lower() for c in columns}
            tables[path] = columns
    return tables


def read_features_as_of(workspace: Workspace, as_of: pd.Timestamp, names: Iterable[str],
                        skip: Iterable[str] = ()) -> pd.DataFrame:
    """The named feature columns (those present in some feature table and not in `skip`) of each
    customer's snapshot at `as_of`: the values scoring used. Tables holding none of the names are not
    read. Raises MissingFeatureSnapshotError when a table needed has no snapshot at `as_of` (a later `cdp
    score` or `cdp features build` started the tables over): every value would read empty, and an
    expression such as `x IS NULL` would match everyone."""
    result: pd.DataFrame | None = None
    for path, columns in feature_columns(workspace, names, skip).items():
        selected = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            frame = connection.execute(
                f"""SELECT customer_id, {selected} FROM read_parquet(?)
                    WHERE event_timestamp = ?
                    QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY created_timestamp DESC) = 1""",
                [str(path), as_of.to_pydatetime()]).df()
        if frame.empty:
            day = as_of.isoformat()
            raise MissingFeatureSnapshotError(
                f"{path} holds no feature snapshot as of {day}, the scores' as_of (a later `cdp score` or `cdp "
                f"features build` for another date started the tables over): the segment's features would all "
                f"read empty; run `cdp score --as-of {as_of.date().isoformat()}` again")
        result = frame if result is None else result.merge(frame, on="customer_id", how="outer")
    return result if result is not None else pd.DataFrame({"customer_id": pd.Series(dtype=object)})


def read_identity(workspace: Workspace, customer_ids: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The source records and the primary e-mail of the given customers only."""
    from features.identity.store import identity_paths

    paths = identity_paths(workspace)
    for needed in ("identity_map", "profiles"):
        if not paths[needed].exists():
            raise SegmentError(f"{paths[needed]} not found; run `cdp resolve` first")
    wanted = pa.array(customer_ids.astype(str).unique(), type=pa.string())  # typed: an empty list is not null
    records = pq.read_table(paths["identity_map"], columns=["customer_id", "source", "source_id"])
    records = records.filter(pc.is_in(records["customer_id"], value_set=wanted)).to_pandas()
    profile_columns = [c for c in ("customer_id", *CONTACT_COLUMNS) if c in pq.read_schema(paths["profiles"]).names]
    profiles = pq.read_table(paths["profiles"], columns=profile_columns)
    profiles = profiles.filter(pc.is_in(profiles["customer_id"], value_set=wanted)).to_pandas()
    return records, profiles


def write_export(frame: pd.DataFrame, path: Path, output_format: ExportFormat) -> None:
    """Written under a temporary name and renamed, so a campaign tool never reads half a list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    table = frame.assign(as_of=pd.to_datetime(frame["as_of"], utc=True))
    if output_format == "csv":
        table.to_csv(temporary, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    else:  # text columns stay text in an empty list (pandas' all-None columns would be written as type null)
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        pq.write_table(arrow.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                             for f in arrow.schema], metadata=arrow.schema.metadata)), temporary)
    temporary.replace(path)


def export_segment(workspace: Workspace, settings: Settings, name: str, output_format: ExportFormat = "csv",
                   out: Path | None = None, scores_path: Path | None = None) -> ExportSummary:
    """Select the segment from the scores (default: the latest `cdp score`), add every customer's
    source records, primary e-mail (in a contact list: only where e-mail is eligible) and eligible
    channels, write the list (default data/outputs/segments/NAME.FORMAT) and a summary without personal
    data beside it (NAME.json) naming the scores, their as_of and campaign, and who was left out and why."""
    from features.feature_tables import pushed_consents

    if output_format not in ("csv", "parquet"):
        raise SegmentError(f"format must be csv or parquet, not {output_format!r}")
    definition = find_segment(settings, name)
    path = Path(out) if out is not None else default_export_path(workspace, name, output_format)
    if path.suffix == ".json":
        raise SegmentError(f"--out {path}: the summary is written beside the export as .json; choose another name")
    names = referenced_names(definition.where)
    source = Path(scores_path).absolute() if scores_path is not None else default_scores_path(workspace)
    scores = read_scores(source, names)
    as_of = scores_as_of(scores)
    campaign = scoring_campaign(source, as_of)
    before = contactable(scores)
    scores, withdrawn = honour_later_withdrawals(scores, consents_withdrawn_since(pushed_consents(workspace), as_of))
    lost = set(scores.loc[before & ~contactable(scores), "customer_id"])
    skip = [*scores.columns, *DERIVED_COLUMNS]
    try:
        features = read_features_as_of(workspace, as_of, names, skip)
    except MissingFeatureSnapshotError:  # rebuilt now, it could describe other data than the scores did
        raise SegmentError(f"the feature tables no longer hold the scores' snapshot as of {as_of.isoformat()} (a later "
                           "`cdp score` or `cdp features build` started them over): run `cdp score --as-of "
                           f"{as_of.date().isoformat()}` again, then export") from None
    without_features = int((~scores["customer_id"].isin(features["customer_id"])).sum()) if features.shape[1] > 1 else 0
    everyone = select_segment(scores, features, definition.model_copy(update={"contact": False}),
                              settings.segments.parameters, name)
    selected = select_segment(scores, features, definition, settings.segments.parameters, name)
    left_out = everyone[~everyone["customer_id"].isin(selected["customer_id"])]
    in_holdout = left_out["holdout"].fillna(False).astype(bool) if "holdout" in left_out else pd.Series(False, index=left_out.index)
    no_channel = left_out[~in_holdout.to_numpy()]
    records, profiles = read_identity(workspace, selected["customer_id"])
    export = build_export(selected, records, profiles, name, definition.contact, campaign)
    write_export(export, path, output_format)
    not_eligible = {contact_point: int((~selected.get(f"{ELIGIBLE_PREFIX}{channel}", pd.Series(False, index=selected.index))
                                        .fillna(False).astype(bool)).sum()) if definition.contact else 0
                    for contact_point, channel in CONTACT_COLUMNS.items()}
    summary = ExportSummary(segment=name, customers=len(selected), rows=len(export), path=str(path),
                            output_format=output_format, as_of=as_of.isoformat(), where=definition.where,
                            contact=definition.contact, holdout_excluded=int(in_holdout.sum()),
                            withdrawn_since_scores=withdrawn, scores=str(source), campaign_id=campaign,
                            no_channel_excluded=len(no_channel), no_channel_reasons=no_channel_reasons(no_channel, lost),
                            email_not_eligible=not_eligible["email"], phone_not_eligible=not_eligible["phone"],
                            customers_without_features=without_features)
    path.with_suffix(".json").write_text(json.dumps(asdict(summary), indent=2))
    log.info("segment %s: %d customers, %d rows -> %s", name, summary.customers, summary.rows, path)
    return summary
