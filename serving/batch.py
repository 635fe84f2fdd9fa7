"""`cdp score`: the whole customer base scored by the champion models and decided by the same policy
as the service, streamed chunk by chunk to data/outputs/scores.parquet (or any --out, parquet or
CSV) with a JSON summary beside it. Memory stays flat as the base grows: features arrive from one
point-in-time query in chunks (features/batch_retrieval.py) and each chunk is scored, decided and
appended before the next is read."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from cdp.config import Settings
from cdp.files import temporary_beside
from cdp.moments import utc_timestamp
from cdp.workspace import Workspace
from serving.engine import POLICY_SERVICE
from serving.policy import WIN_BACK_TIMING
from training.scoring import load_champions, outside_churn_population, score_features

log = logging.getLogger(__name__)

POLICY_COLUMNS = ("next_best_action", "next_best_channel", "expected_value", "win_back", "win_back_action",
                  "win_back_timing", "win_back_value", "win_back_reason", "policy_win_back_action", "holdout", "policy_action",
                  "no_contact_reason")
ReasonsMode = Literal["all", "segments", "none"]
REASONS_MODES: tuple[str, ...] = ("all", "segments", "none")
"""Which customers get reason phrases: everyone; those the policy acts on (a contact or a win-back:
the customers exported segments are made of); nobody. Exact contributions cost 0.3-1.7 ms a row."""
OutputFormat = Literal["parquet", "csv"]


class ScoringError(RuntimeError):
    """Scoring cannot run (no champion model, no features); the message says what to run."""


@dataclass
class ScoreSummary:
    customers: int
    as_of: str
    campaign_id: str = ""
    """The campaign that salted the holdout (`cdp report lift` needs the same one)."""
    models: dict[str, str] = field(default_factory=dict)
    """Registered model name -> champion version used."""
    skipped: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    next_best_actions: dict[str, int] = field(default_factory=dict)
    next_best_channels: dict[str, int] = field(default_factory=dict)
    win_back_customers: int = 0
    win_back_later_customers: int = 0
    """Customers whose win-back waits for a quiet period to end (`win_back` false, `win_back_timing`
    `in N days`): not in `win_back_customers`, today's."""
    holdout_customers: int = 0
    total_expected_value: float = 0.0
    mean_churn_probability: float | None = None
    """Over the customers with a churn probability (those in the churn model's population)."""
    customers_without_churn_score: int = 0
    """Outside the churn model's population: never ordered, or not within `training.churn_active_days`."""
    total_clv: float | None = None
    reasons: str = "segments"
    customers_with_reasons: int = 0
    output: str = ""
    output_format: str = "parquet"
    seconds: float = 0.0
    compile_seconds: float = 0.0
    """Of `seconds`, spent compiling models (only the first large run after training)."""


def later_withdrawals(workspace: Workspace, as_of: pd.Timestamp) -> dict[str, frozenset[str]]:
    """Channel -> customers who withdrew consent through /events or `cdp push` after `as_of`: features as of a
    past moment cannot know it, and a campaign decided from them today must not contact them on it."""
    from features.feature_tables import pushed_consents
    from serving.segments import consents_withdrawn_since

    return {channel: frozenset(customers)
            for channel, customers in consents_withdrawn_since(pushed_consents(workspace), as_of).items()}


def with_consents_withdrawn(features: pd.DataFrame, withdrawn: dict[str, frozenset[str]] | None) -> pd.DataFrame:
    """The features as the policy may act on them today: a consent withdrawn since they were computed is
    withdrawn (the models still score the features as of their moment)."""
    if not withdrawn:
        return features
    features = features.copy()
    for channel, customers in withdrawn.items():
        gone = features["customer_id"].isin(customers).to_numpy()
        for column in (f"{channel}_consent", f"latest_{channel}_consent"):
            if column in features and gone.any():
                features.loc[gone, column] = 0
    return features


def decide(features: pd.DataFrame, scores: pd.DataFrame, settings: Settings, models: dict,
           now: pd.Timestamp, campaign_id: str | None = None, reasons: ReasonsMode = "segments",
           withdrawn: dict[str, frozenset[str]] | None = None) -> pd.DataFrame:
    """Scores plus the policy's decisions, and for the customers `reasons` selects (see REASONS_MODES)
    the churn model's top reasons (why the risk is high, or low) and, for those the policy would contact,
    the propensity model's for its action (`contact_reasons`)."""
    from serving.policy import NO_CONTACT, explained_touches, recommend
    from serving.reasons import (
        own_channel_contributions,
        phrases_from_contributions,
        reason_phrases,
        unscored_churn_phrases,
    )

    if reasons not in REASONS_MODES:
        raise ValueError(f"reasons must be one of {', '.join(REASONS_MODES)}, not {reasons!r}")
    policy_inputs = with_consents_withdrawn(features.reset_index(drop=True), withdrawn)
    decisions = recommend(pd.concat([policy_inputs, scores.drop(columns="customer_id")], axis=1),
                          settings.policy, campaign_id=campaign_id, alternatives=False, now=now)
    result = scores.copy()
    for column in [*POLICY_COLUMNS, *(c for c in decisions.columns if c.startswith("eligible_"))]:
        if column in decisions:
            result[column] = decisions[column].to_numpy()
    if reasons == "all":
        explained = np.ones(len(result), dtype=bool)
    elif reasons == "segments":
        explained = (result["next_best_action"] != "none").to_numpy() | result["win_back"].fillna(False).to_numpy(bool)
    else:
        explained = np.zeros(len(result), dtype=bool)
    phrases = pd.Series([None] * len(result), dtype=object)
    if "churn" in models:
        frame = features.reset_index(drop=True)
        outside = outside_churn_population(frame, models["churn"])
        scored = explained & ~outside
        if scored.any():
            phrases[np.flatnonzero(scored)] = ["; ".join(p) for p in
                                               reason_phrases(*models["churn"].explain(frame[scored]), direction="net")]
        if (explained & outside).any():
            rows = np.flatnonzero(explained & outside)
            phrases[rows] = unscored_churn_phrases(frame["days_since_last_order"].to_numpy(dtype=float)[rows],
                                                   models["churn"].population_days)
    result["reasons"] = phrases.to_numpy()
    contact_phrases = pd.Series([None] * len(result), dtype=object)
    contacted = explained & (result["policy_action"] != NO_CONTACT).to_numpy()
    if "propensity" in models and contacted.any():
        rows = np.flatnonzero(contacted)
        channels, offers = explained_touches(result["policy_action"].to_numpy()[rows])
        touched = features.reset_index(drop=True).iloc[rows].assign(channel=channels, offer=offers)
        contributions, encoded = models["propensity"].explain(touched)
        names = [c for c in contributions.columns if c != "bias"]
        own = own_channel_contributions(names, contributions[names].to_numpy(dtype=float, na_value=0.0), channels,
                                        settings.policy.channels)
        contact_phrases[rows] = ["; ".join(p) for p in phrases_from_contributions(names, own, encoded)]
    result["contact_reasons"] = contact_phrases.to_numpy()
    return result


def score_chunk(features: pd.DataFrame, models: dict, settings: Settings, now: pd.Timestamp,
                campaign_id: str | None = None, reasons: ReasonsMode = "segments",
                withdrawn: dict[str, frozenset[str]] | None = None) -> pd.DataFrame:
    """One chunk of customers scored and decided. Conversion probabilities are computed only for
    the channels the policy may use for each customer (the others are NaN); decisions are the same
    as with every action scored."""
    from serving.policy import channels_the_policy_may_use

    usable = channels_the_policy_may_use(features.reset_index(drop=True), settings.policy)
    scores = score_features(features.reset_index(drop=True), models, eligible_channels=usable)
    decided = decide(features, scores, settings, models, now, campaign_id, reasons, withdrawn)
    decided.insert(1, "as_of", now)
    return decided


class _SummaryTotals:
    """Running totals over the chunks, for the printed and JSON summary."""

    def __init__(self):
        self.customers = self.win_back = self.win_back_later = self.holdout = self.with_reasons = 0
        self.churn_scored = 0
        self.expected_value = self.churn = self.clv = 0.0
        self.actions: Counter = Counter()
        self.channels: Counter = Counter()
        self.columns: list[str] = []

    def add(self, chunk: pd.DataFrame) -> None:
        self.customers += len(chunk)
        self.columns = list(chunk.columns)
        self.actions.update(chunk["next_best_action"].astype(str).to_numpy())
        self.channels.update(chunk["next_best_channel"].dropna().astype(str).to_numpy())
        win_back = chunk["win_back"].fillna(False).astype(bool)
        self.win_back += int(win_back.sum())
        if "win_back_timing" in chunk:  # files scored before a win-back could wait have none waiting
            timing = chunk["win_back_timing"]
            self.win_back_later += int((timing.notna() & timing.ne(WIN_BACK_TIMING)).sum())
        self.holdout += int(chunk["holdout"].fillna(False).astype(bool).sum())
        self.with_reasons += int(chunk["reasons"].notna().sum())
        self.expected_value += float(chunk["expected_value"].fillna(0).sum())
        if "churn_probability" in chunk:
            self.churn += float(chunk["churn_probability"].sum())
            self.churn_scored += int(chunk["churn_probability"].notna().sum())
        self.clv += float(chunk["clv"].sum()) if "clv" in chunk else 0.0

    def counts(self, churn: bool, clv: bool) -> dict:
        """The summary's fields these totals give (`churn`, `clv`: whether those models scored)."""
        return dict(
            customers=self.customers,
            next_best_actions=dict(self.actions.most_common()), next_best_channels=dict(self.channels.most_common()),
            win_back_customers=self.win_back, win_back_later_customers=self.win_back_later,
            holdout_customers=self.holdout, total_expected_value=self.expected_value,
            mean_churn_probability=self.churn / self.churn_scored if churn and self.churn_scored else None,
            customers_without_churn_score=self.customers - self.churn_scored if churn else 0,
            total_clv=self.clv if clv else None, customers_with_reasons=self.with_reasons,
        )


class _ChunkWriter:
    """Appends chunks to one Parquet or CSV file under a temporary name, renamed when complete, so
    a failed run never leaves a half-written file where the last good one was. The schema comes
    from the first chunk; columns that were all empty there become strings."""

    def __init__(self, path: Path, output_format: OutputFormat):
        if path.is_dir() and not (path / "_SUCCESS").exists():
            raise ScoringError(f"{path} is a directory; give a file name")
        self.path, self.output_format = path, output_format
        self.temporary = temporary_beside(path)
        self.schema: pa.Schema | None = None
        self.writer = None

    def write(self, chunk: pd.DataFrame) -> None:
        import pyarrow.csv as arrow_csv
        import pyarrow.parquet as pq

        if self.schema is None:
            inferred = pa.Schema.from_pandas(chunk, preserve_index=False)
            self.schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in inferred])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.output_format == "csv":
                self.writer = arrow_csv.CSVWriter(self.temporary, self.schema)
            else:
                self.writer = pq.ParquetWriter(self.temporary, self.schema)
        table = pa.Table.from_pandas(chunk, schema=self.schema, preserve_index=False)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            if self.path.is_dir():  # a Spark run's output (part files and _SUCCESS) in the same place
                shutil.rmtree(self.path)
            self.temporary.replace(self.path)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.temporary.unlink(missing_ok=True)


def default_output(workspace: Workspace, output_format: OutputFormat = "parquet") -> Path:
    return workspace.outputs / f"scores.{output_format}"


def summary_path(output: Path) -> Path:
    """The JSON summary beside the output: scores.parquet -> scores.json."""
    return output.with_suffix(".json")


def count_scoring_customers(workspace: Workspace, as_of: pd.Timestamp) -> int:
    """How many customers have a feature snapshot at `as_of` (the progress bar's total)."""
    import duckdb

    from features.feature_tables import feature_table_path

    path = str(feature_table_path(workspace, "purchase_history")).replace("'", "''")
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        return connection.execute(
            f"SELECT count(DISTINCT customer_id) FROM read_parquet('{path}') WHERE event_timestamp = ?",
            [as_of.to_pydatetime()]).fetchone()[0]


def prepare_scoring(workspace: Workspace, as_of: dt.datetime, output_format: str, reasons: str
                    ) -> tuple[dict, dict[str, str], dict[str, str], pd.Timestamp, list[str]]:
    """What both engines start from: the options checked, the champions (models, versions, missing
    ones), the moment in UTC and the FeatureServices to read."""
    if output_format not in ("parquet", "csv"):
        raise ScoringError(f"output format must be parquet or csv, not {output_format!r}")
    if reasons not in REASONS_MODES:
        raise ScoringError(f"reasons must be one of {', '.join(REASONS_MODES)}, not {reasons!r}")
    models, versions, missing = load_champions(workspace)
    if not models:
        raise ScoringError("no champion model in the registry; run `cdp train` first ("
                           + "; ".join(missing.values()) + ")")
    services = sorted({m.feature_service for m in models.values()} | {POLICY_SERVICE})
    return models, versions, missing, utc_timestamp(as_of), services


def champion_inputs_missing(error: KeyError, models: dict, versions: dict[str, str]) -> str:
    """The message for a champion that cannot score because inputs it was trained on are gone."""
    text = str(error.args[0]) if error.args else ""
    if not text.startswith("feature columns missing from the input: "):
        raise error
    gone = set(text.removeprefix("feature columns missing from the input: ").split(", "))
    needing = [f"{task} (version {versions.get(task, '?')})" for task, model in models.items()
               if gone & set(model.input_columns)]
    return (f"champion {', '.join(needing) or 'model'} cannot score: its input(s) {', '.join(sorted(gone))} are "
            "gone from the feature tables (a column dropped from the lake?); restore the column and run `cdp "
            "features build`, or train a model without it (`cdp train <model> --force`)")


def compiled_models_directory(workspace: Workspace) -> Path:
    return workspace.data / "models" / "compiled"


def prepare_compiled_models(workspace: Workspace, models: dict, customers: int, from_customers: int,
                            progress: Callable[[str], None] = log.info) -> float:
    """Compile the models' trees when the base is large enough to repay it (cached per model
    version, so only the first run after training pays); returns the seconds spent compiling."""
    if not from_customers or customers < from_customers:
        return 0.0
    return compile_models(workspace, models, progress)


def compile_models(workspace: Workspace, models: dict, progress: Callable[[str], None] = log.info) -> float:
    """Compile every booster of the models into the workspace's cache (a cached one is only loaded)
    and use them from now on in this process; returns the seconds spent compiling."""
    from training.compiled_forest import compile_forests

    boosters = [booster for model in models.values() for booster in model.boosters.values()]
    return compile_forests(boosters, compiled_models_directory(workspace), progress=progress)


def score_to_file(workspace: Workspace, settings: Settings, as_of: dt.datetime, campaign_id: str | None = None, *,
                  out: Path | None = None, output_format: OutputFormat = "parquet", reasons: ReasonsMode = "segments",
                  chunk_rows: int | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> ScoreSummary:
    """Score and decide for every customer known at `as_of`, chunk by chunk, into `out` (default
    data/outputs/scores.<format>) with its JSON summary beside it. `campaign_id` salts the holdout
    (default: the policy's); `on_progress(done, total)` follows the customers scored."""
    from features.batch_retrieval import stream_point_in_time_features
    from features.feature_store import (
        FeatureStoreError,
        apply_feature_definitions,
        open_feature_store,
        service_features,
    )
    from features.feature_tables import ensure_feature_snapshots, feature_table_path

    started = time.perf_counter()
    models, versions, missing, moment, services = prepare_scoring(workspace, as_of, output_format, reasons)
    if ensure_feature_snapshots(workspace, [moment.to_pydatetime()]):
        apply_feature_definitions(workspace, settings.features)
    store = open_feature_store(workspace, settings.features, offline=True)
    try:
        service_features(store, services)
    except FeatureStoreError:  # tables built but never registered (e.g. `cdp features build` alone)
        apply_feature_definitions(workspace, settings.features)
        store = open_feature_store(workspace, settings.features, offline=True)
    total = count_scoring_customers(workspace, moment)
    if total == 0:
        raise ScoringError(f"no customer has features as of {moment.isoformat()}; run `cdp features build --as-of ...`")
    compile_seconds = prepare_compiled_models(workspace, models, total, settings.scoring.compile_models_from_customers)
    withdrawn = later_withdrawals(workspace, moment)
    output = Path(out) if out is not None else default_output(workspace, output_format)
    writer, totals = _ChunkWriter(output, output_format), _SummaryTotals()
    chunks = stream_point_in_time_features(store, services, moment, str(feature_table_path(workspace, "purchase_history")),
                                           chunk_rows=chunk_rows or settings.scoring.chunk_rows,
                                           memory_limit=settings.scoring.duckdb_memory_limit)
    try:
        for features in chunks:
            scored = score_chunk(features, models, settings, moment, campaign_id, reasons, withdrawn)
            writer.write(scored)
            totals.add(scored)
            if on_progress is not None:
                on_progress(totals.customers, total)
    except KeyError as error:  # a champion's input gone from the feature tables: say which and what to do
        writer.abort()
        raise ScoringError(champion_inputs_missing(error, models, versions)) from None
    except BaseException:
        writer.abort()
        raise
    writer.close()
    summary = ScoreSummary(
        as_of=moment.isoformat(),
        campaign_id=campaign_id if campaign_id is not None else settings.policy.default_campaign_id,
        models=versions, skipped=missing,
        actions=[c for c in totals.columns if c.startswith("conversion_")],
        reasons=reasons, output=str(output), output_format=output_format,
        seconds=round(time.perf_counter() - started, 2), compile_seconds=round(compile_seconds, 2),
        **totals.counts(churn="churn" in models, clv="clv" in models),
    )
    summary_path(output).write_text(json.dumps(asdict(summary), indent=2))
    return summary


def recount_score_summary(output: Path) -> bool:
    """Make a scores file's JSON summary count what the file holds again, after rows were removed from
    it (`cdp forget`); False when the file has no scoring summary beside it."""
    import pyarrow.parquet as pq

    from cdp.files import write_json

    path = summary_path(output)
    if not (output.is_file() and path.exists() and output.suffix in (".parquet", ".csv")):
        return False
    summary = json.loads(path.read_text())
    # scores.parquet and scores.csv share scores.json: it is the summary of the one it names
    if not (isinstance(summary, dict) and summary.get("output_format") == output.suffix.removeprefix(".")
            and Path(str(summary.get("output", ""))).name == output.name):
        return False
    totals = _SummaryTotals()
    if output.suffix == ".parquet":
        for batch in pq.ParquetFile(output).iter_batches(batch_size=200_000):
            totals.add(batch.to_pandas())
    else:
        for chunk in pd.read_csv(output, chunksize=200_000):
            totals.add(chunk)
    scored = summary.get("models") or {}
    write_json(path, {**summary, **totals.counts(churn="churn" in scored, clv="clv" in scored)})
    return True


def score_customer_base(workspace: Workspace, settings: Settings, as_of: dt.datetime, campaign_id: str | None = None,
                        **options) -> tuple[pd.DataFrame, ScoreSummary]:
    """`score_to_file` into the default output, read back: for callers that want the frame (tests,
    notebooks, evaluation) on bases that fit in memory."""
    summary = score_to_file(workspace, settings, as_of, campaign_id, **options)
    path = Path(summary.output)
    scores = pd.read_parquet(path) if summary.output_format == "parquet" else pd.read_csv(path)
    return scores, summary
