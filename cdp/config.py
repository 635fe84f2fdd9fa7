"""One typed configuration for every stage.

Precedence, highest first: values passed in code, environment variables named
``CDP_<SECTION>__<KEY>`` (e.g. ``CDP_POLICY__CONSENT_MODE=opt_out``), an optional YAML
file, then the defaults below. Nothing is read until :func:`load_settings` is called.
A section and key joined by one underscore (``CDP_INGEST_BATCH_ROWS``) is refused, as an unknown
section is; a variable that only resembles a setting (``CDP_API_TOKEN``) is warned about.
``CDP_WORKSPACE``, ``CDP_CONFIG_FILE`` and ``CDP_TRUTH`` are not settings.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

CONFIG_FILE_NAME = "cdp.yaml"
NOT_SETTINGS = frozenset({"CDP_WORKSPACE", "CDP_CONFIG_FILE", "CDP_TRUTH"})
"""CDP_ variables read elsewhere: the service's and notebooks' workspace and config file (serving/service.py),
the notebooks' simulator output (notebooks/03-recommendations.ipynb)."""

log = logging.getLogger("cdp.config")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SimulationSettings(_Section):
    """Defaults of `cdp simulate`; the command line overrides them."""

    customers: int = Field(20_000, ge=1)
    seed: int = Field(42, ge=0)
    start: dt.date = dt.date(2024, 7, 1)
    end: dt.date = dt.date(2026, 6, 30)
    format: Literal["parquet", "csv"] = "parquet"


class IngestSettings(_Section):
    """Streaming ingestion: rows per batch bounds memory, not results."""

    batch_rows: int = Field(1_000_000, ge=1_000)
    duckdb_memory_limit: str = "2GB"
    earliest_timestamp: dt.date = dt.date(1970, 1, 1)
    latest_timestamp: dt.date = dt.date(2100, 1, 1)
    earliest_birth_date: dt.date = dt.date(1900, 1, 1)
    naive_timezone: str = "UTC"
    """The zone of timestamps written without one (`2026-03-29 01:30`), an IANA name such as
    Europe/London: a shop exporting local time would otherwise be an hour off for half the year."""
    future_tolerance_days: float = Field(1.0, ge=0)
    """A moment more than this after the ingestion is quarantined: an order dated next year cannot have
    happened, and it would make the lake's data seem to run until then (clocks differ by less)."""

    @field_validator("naive_timezone", mode="after")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: give an IANA name such as UTC or Europe/London") from None
        return value

    @model_validator(mode="after")
    def _timestamps_form_an_interval(self) -> IngestSettings:
        if self.latest_timestamp <= self.earliest_timestamp:
            raise ValueError(f"latest_timestamp ({self.latest_timestamp}) must be after "
                             f"earliest_timestamp ({self.earliest_timestamp})")
        return self


class IdentitySettings(_Section):
    """Identity resolution: standardization, matching, clustering and survivorship."""

    default_phone_region: str = "GB"
    """Region assumed for phone numbers written without a country code (ISO 3166 alpha-2)."""

    @field_validator("default_phone_region", mode="after")
    @classmethod
    def _region_with_a_numbering_plan(cls, region: str) -> str:
        import phonenumbers

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {region!r}: an ISO 3166 alpha-2 code with a numbering plan, e.g. GB, US, DE")
        return region.upper()

    email_strip_plus_tags: bool = True
    email_dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    """Providers that ignore dots in the local part."""
    email_family_mailboxes: bool = True
    """Treat family mailboxes ("the" + a surname + "s", e.g. thesmiths12@…) as a household's: they
    neither merge records alone nor count as one person's e-mail in a probabilistic match."""
    nickname_groups: dict[str, tuple[str, ...]] = {}
    """Given-name variants added to the built-in table (features/identity/nicknames.py), e.g.
    {"margaret": ["mags"]}: a variant then agrees with its name, and one listed under several names
    agrees with each of them."""
    match_threshold: float = Field(0.95, gt=0, lt=1)
    """Match probability from which two records are the same person."""
    block_window: int = Field(20, ge=2)
    """Within an over-common blocking key, each record is compared with this many neighbours."""
    em_max_pairs: int = Field(2_000_000, ge=1_000)
    """EM trains on a random sample of at most this many candidate pairs."""
    labelled_pairs: Path | None = None
    """Optional CSV/Parquet of source_a, id_a, source_b, id_b, is_match: m/u from labels, not EM."""
    large_cluster_size: int = Field(20, ge=2)
    """Clusters with more records than this are listed in the report for review."""
    survivorship: dict[str, Literal["most_recent", "most_frequent", "source_priority"]] = {}
    """Per-attribute rule overrides for golden profiles (see features/identity/profiles.py)."""
    source_priority: tuple[str, ...] = ("crm", "web", "app", "store")


class FeatureSettings(_Section):
    """The Feast feature store: registry and SQLite online store live under the workspace."""

    project: str = "cdp"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    """sqlite: embedded, nothing to start (default). redis: production, see redis_connection_string."""
    redis_connection_string: str = "localhost:6379"
    """Feast's format: host:port[,password=...,ssl=true,db=N]."""
    redis_namespace: str | None = None
    """Prefix of this workspace's Redis keys, so that workspaces sharing one Redis never read, overwrite
    or erase each other's customers (their ids repeat). None: derived from the workspace's path. Set
    it when the service and the nightly job reach one workspace by different paths."""
    ttl_days: int = Field(400, ge=1)
    """How old a feature snapshot may be and still be served for a later time."""
    stale_after_days: float = Field(2.0, gt=0)
    """Online features loaded longer ago than this are stale: readers are told (and logs say so)."""

    @field_validator("redis_connection_string", mode="after")
    @classmethod
    def _feast_connection_format(cls, value: str) -> str:
        """Feast reads host:port[,key=value...]; a URL passed here failed much later, deep in a command."""
        nodes = [part for part in value.split(",") if "=" not in part]
        if "://" in value or not nodes or not all(re.fullmatch(r"[^:/@\s]+:\d+", node.strip()) for node in nodes):
            raise ValueError("expected Feast's format host:port[,password=...,ssl=true,db=N] (e.g. localhost:6379,db=1): "
                             "the port is required, a password goes in password=... (not user@host), and a "
                             "redis:// URL is not read")
        return value


class TrainingSettings(_Section):
    """Labels, training snapshots and LightGBM. Horizons are also options of `cdp train` and `cdp run`."""

    churn_horizon_days: int = Field(90, ge=7)
    """Churned = no purchase in this many days after the snapshot."""
    churn_active_days: int = Field(365, ge=30)
    """Only customers who bought in this many days before the snapshot can churn."""
    clv_horizon_days: int = Field(365, ge=30)
    """CLV = net revenue (orders minus their returns) in this many days after the snapshot."""
    conversion_window_days: int = Field(7, ge=1)
    """A touch converted if the customer ordered within this many days after it."""
    snapshot_count: int = Field(6, ge=2)
    """Training snapshots per model, the latest of which is the validation window."""
    snapshot_spacing_days: int = Field(30, ge=1)
    minimum_history_days: int = Field(90, ge=0)
    """A snapshot needs at least this much data before it."""
    propensity_touch_days: int = Field(16, ge=2)
    """Days of controlled campaigns (those with `channel = none` rows) used for propensity, busiest first."""
    promotion_min_gain: float = Field(0.005, ge=0)
    """A challenger becomes champion only when its primary test metric beats the champion's, on the same
    rows, by more than this: a re-run on nearly the same data should not swap models over noise."""
    propensity_validation_days: int = Field(4, ge=1)
    """The latest of those days form the validation window."""
    uplift_shrinkage: float = Field(1.0, ge=0, le=1)
    """How far each customer's predicted uplift of a contact is pulled toward that contact's average
    uplift over the training rows: 0 = the customer's own, 1 = the average. The default is 1: on the
    simulator the per-customer uplifts cost profit, and 0.75 to 1 measured the same (docs/policy.md)."""
    minimum_rows: int = Field(200, ge=10)
    """Fewer training or validation rows than this and the model is skipped with a message."""
    test_share: float = Field(0.5, gt=0, lt=1)
    """Share of validation customers held out for reported metrics; the rest tunes early stopping,
    calibration and the CLV model choice."""
    learning_rate: float = Field(0.1, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = Field(6, ge=1)
    """Kept shallow: per-customer reason codes cost grows with depth."""
    max_rounds: int = Field(600, ge=10)
    early_stopping_rounds: int = Field(50, ge=5)
    min_data_in_leaf: int = Field(50, ge=1)
    seed: int = Field(42, ge=0)
    threads: int = Field(0, ge=0)
    """LightGBM threads; 0 = all cores."""


class PolicySettings(_Section):
    """The recommendation policy (serving/policy.py, docs/policy.md): eligibility, value, win-back,
    holdout. Money is in the shop's currency (the same unit as order values and CLV)."""

    consent_mode: Literal["opt_in", "opt_out"] = "opt_in"
    """opt_in: a channel needs a recorded grant (1). opt_out: allowed unless withdrawn (0)."""
    channels: tuple[str, ...] = ("email", "push", "sms")
    """Channels the policy may recommend (also limited to those the propensity model knows)."""
    offers: tuple[str, ...] | None = None
    """Discount offers the policy may recommend; None = every offer the propensity model knows.
    The plain channel (no offer) is always a candidate."""
    offer_depths: dict[str, float] = {}
    """Discount depth (0-1) per offer name, for names that do not read `<n>pct` (e.g. `10pct` = 0.10)."""
    channel_costs: dict[str, float] = {"email": 0.002, "push": 0.001, "sms": 0.05}
    """Cost of one touch per channel (the simulator's); every channel in `channels` needs one."""
    default_order_value: float = Field(50.0, gt=0)
    """Expected order value of customers without an `average_order_value` (never ordered)."""
    min_expected_value: float = 0.0
    """A contact is recommended only when its expected incremental value exceeds this."""
    reach_from_past_sends: bool = True
    """A send on the channel in the last 90 days proves the customer is reachable on it when the
    contact flag (e-mail/phone on file, app installed) says no; it never overrides consent."""
    max_sends_7d: dict[str, int] = {"email": 3, "push": 3, "sms": 1}
    """Frequency cap per channel: no new send once this many went out in the last 7 days."""
    max_sends_30d: dict[str, int] = {"email": 10, "push": 8, "sms": 2}
    """Frequency cap per channel over the last 30 days."""
    quiet_days: dict[str, float] = {"email": 2.0, "push": 1.0, "sms": 7.0}
    """Quiet period per channel: no send within this many days of the last one on it."""
    quiet_days_any_channel: float = Field(1.0, ge=0)
    """No send within this many days of the last touch on any channel."""
    max_touches_7d: int = Field(5, ge=1)
    """Cap over all channels: no new touch once this many went out in the last 7 days."""
    max_touches_30d: int = Field(16, ge=1)
    """Cap over all channels over the last 30 days."""
    win_back_churn_threshold: float = Field(0.5, ge=0, le=1)
    """Win-back candidates: churn probability at least this ..."""
    win_back_lapse_days: float = Field(120.0, gt=0)
    """... or no order for more than this many days (lapsed; the simulator's win-back rule)."""
    win_back_save_rate: float = Field(0.1, gt=0, le=1)
    """Assumed share of at-risk value a win-back contact saves: value saved = churn probability x
    CLV x this; it must exceed the action's cost (touch and discount)."""
    loyal_min_clv: float = Field(500.0, ge=0)
    """Loyal high-value customers (CLV at least this, or net revenue over 365 days at least
    `loyal_min_net_revenue_365d`) are won back without a discount."""
    loyal_min_net_revenue_365d: float = Field(500.0, ge=0)
    holdout_share: float = Field(0.05, ge=0, lt=1)
    """Share of customers per campaign held out (no contact) to measure lift."""
    default_campaign_id: str = Field("default", min_length=1, pattern=r"^\S(.*\S)?$")
    """Campaign id hashed with the customer id when a request names none (no surrounding spaces: requests'
    ids are trimmed)."""

    def model_post_init(self, context: Any, /) -> None:
        """Refuse a channel without a cost and an offer depth outside [0, 1)."""
        missing = [c for c in self.channels if c not in self.channel_costs]
        if missing:
            raise ValueError(f"channel_costs has no cost for channel(s) {missing}")
        for name, depth in self.offer_depths.items():
            if not 0 <= depth < 1:
                raise ValueError(f"offer_depths[{name!r}] must be in [0, 1), got {depth}")


class PrivacySettings(_Section):
    """Erasure, access requests and the audit log (docs/privacy.md). Relative paths are below the workspace."""

    salt_file: Path = Path("data/privacy/salt")
    """The workspace's secret key for hashing identifiers (created on first use, mode 0600); the
    suppression list of erased people is kept beside it (suppression.parquet)."""
    audit_log: Path = Path("data/audit/audit.log")
    """Append-only JSON lines: every /recommend answer (rotated by size, below)."""
    requests_log: Path = Path("data/audit/requests.log")
    """Append-only JSON lines: every erasure and access request and every consent change; never rotated,
    so that the proof of an erasure or a withdrawal does not age out with the answers (at 200 answers a
    second the rotation keeps about 2.4 hours of them)."""
    audit_max_bytes: int = Field(50_000_000, ge=1_000)
    """The log is rotated (audit.log -> audit.log.1 -> ...) when it grows past this size."""
    audit_backups: int = Field(10, ge=1)
    """Rotated files kept; the oldest beyond this is deleted."""


class ScoringSettings(_Section):
    """Batch scoring (`cdp score`): the whole base, streamed in chunks so memory stays flat."""

    chunk_rows: int = Field(100_000, gt=0)
    """Customers scored per chunk: larger chunks spend less per-call overhead, more memory."""
    duckdb_memory_limit: str = "2GB"
    """For the point-in-time query that feeds the chunks (DuckDB spills beyond it)."""
    compile_models_from_customers: int = Field(200_000, ge=0)
    """From this many customers on, the champions' trees are compiled to machine code before scoring
    (about 6x faster predictions, same values; about a minute per 600 trees, once per model version,
    cached under data/models/compiled). 0 = never compile."""


class SegmentDefinition(_Section):
    """One exportable segment: a DuckDB boolean expression over the columns of the latest scores
    joined with the scoring features as of their `as_of` (docs/segments-and-drift.md)."""

    where: str = Field(min_length=1)
    """E.g. `win_back`, `eligible_push AND clv_percentile >= $high_clv_percentile`; `$name` reads
    `segments.parameters[name]`."""
    description: str = ""
    contact: bool = True
    """A contact list: holdout customers are never in it, whatever `where` says. False for
    suppression lists (`do_not_contact`), which keep them with `holdout = true`."""


BUILT_IN_SEGMENTS: dict[str, SegmentDefinition] = {
    "win_back_today": SegmentDefinition(
        where="win_back",
        description="The policy's win-back list for today: lapsed or at-risk customers worth an offer, on a channel "
                    "open today (those waiting for a quiet period to end join it on the day it ends)."),
    "high_clv_at_risk": SegmentDefinition(
        where="clv_percentile >= $high_clv_percentile AND churn_probability >= $at_risk_churn_probability",
        description="Top customers by predicted CLV whose churn probability is high."),
    "push_reachable": SegmentDefinition(
        where="eligible_push",
        description="Customers the policy may push today: consent, an installed app, under caps and quiet periods."),
    "do_not_contact": SegmentDefinition(
        where="holdout OR (next_best_action = 'none' AND NOT coalesce(win_back, false))",
        description="Suppression list: the holdout (control group) and everyone the policy does not contact today.",
        contact=False),
}


DEFAULT_SEGMENT_PARAMETERS: dict[str, float] = {"high_clv_percentile": 0.8, "at_risk_churn_probability": 0.5}


TEXT_BLANKS = " \t\n\r\f\v"
"""What ids and names are trimmed of, by the service and the command line alike (a campaign id trimmed of a
no-break space by one and not the other drew two holdouts)."""


EMAIL_SHAPED = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def campaign_id_problem(campaign_id: str) -> str | None:
    """Why a campaign id is refused, or None. It is written as given into the audit log, score summaries and
    report file names, so it must not be a person's e-mail address (a campaign tool's mix-up)."""
    if EMAIL_SHAPED.search(campaign_id):
        return "campaign_id looks like an e-mail address; campaign ids are logged as given: use the campaign's name"
    return None


SEGMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""A segment's name is also its export's file name: letters, digits, `_` and `-`, no path."""


class SegmentSettings(_Section):
    """`cdp export --segment NAME`: built-in segments plus any defined here (same name replaces a built-in)."""

    parameters: dict[str, float] = DEFAULT_SEGMENT_PARAMETERS
    """Thresholds segments read as `$name`: high CLV = this share of the base or more below the
    customer (0.8: the top 20%); at risk = churn probability at least this. Yours add to these."""
    definitions: dict[str, SegmentDefinition] = BUILT_IN_SEGMENTS
    """Name -> {where, description, contact}. The built-ins are always present."""
    default_format: Literal["csv", "parquet"] = "csv"

    @field_validator("parameters", mode="after")
    @classmethod
    def keep_default_parameters(cls, parameters: dict[str, float]) -> dict[str, float]:
        """A user's parameters add to (or change) the built-ins' thresholds, never remove them."""
        return {**DEFAULT_SEGMENT_PARAMETERS, **parameters}

    @field_validator("definitions", mode="after")
    @classmethod
    def keep_built_in_segments(cls, definitions: dict[str, SegmentDefinition]) -> dict[str, SegmentDefinition]:
        """A user's definitions add to the built-ins (or replace one by name), never remove them. A name is
        also its export's file name: refused at load, not at the first export."""
        bad = [name for name in definitions if not SEGMENT_NAME.match(name)]
        if bad:
            raise ValueError(f"segment name(s) {', '.join(map(repr, bad))}: use letters, digits, `_` and `-` (at most "
                             "64, starting with a letter or digit), no path")
        return {**BUILT_IN_SEGMENTS, **definitions}


class DriftSettings(_Section):
    """`cdp report drift`: scoring features and predictions against each champion's training rows."""

    psi_warning: float = Field(0.1, gt=0)
    """Population stability index from which a feature is flagged `warning` (moderate shift)."""
    psi_alert: float = Field(0.25, gt=0)
    """... and `alert` (a major shift: retrain or investigate)."""
    bins: int = Field(10, ge=2)
    """Quantile bins of a numeric feature, from the training distribution (missing is one more bin)."""
    max_categories: int = Field(30, ge=2)
    """Categories of a categorical feature beyond the most common this many (in training) share one bin."""
    minimum_share: float = Field(1e-4, gt=0, lt=0.01)
    """Floor on each bin's share, so an empty bin gives a large but finite PSI."""
    sample_rows: int = Field(200_000, ge=1_000)
    """At most this many training and scoring rows per model (a fixed random sample beyond it)."""
    experiment: str = "monitoring"
    """MLflow experiment the reports are logged to."""

    def model_post_init(self, context: Any, /) -> None:
        if self.psi_alert <= self.psi_warning:
            raise ValueError(f"psi_alert ({self.psi_alert}) must be above psi_warning ({self.psi_warning})")


class ServingSettings(_Section):
    api_token: str | None = Field(None, pattern=r"^\S+$")
    """The bearer token every API call must send; no spaces (a token of spaces was accepted). Empty: none
    set (`CDP_SERVING__API_TOKEN=`), so every API call is refused."""

    @field_validator("api_token", mode="before")
    @classmethod
    def empty_token_is_none(cls, token: object) -> object:
        return None if token == "" else token
    workers: int = Field(2, ge=1, le=64)
    """Worker processes of `cdp serve`, each with its own engine (models, identity map, online store
    connection): one per core. BentoML restarts a worker that dies; the others keep answering."""
    tracing: bool = False
    """OpenTelemetry spans for the service's requests (BentoML's tracing; set the exporter in BentoML's
    configuration). Off by default: with no exporter the spans went nowhere and cost about 1.5 ms of
    CPU per /recommend call on this machine (8.6 -> 7.0 ms, docs/serving.md)."""


class SparkSettings(_Section):
    """`cdp score --engine spark`: the Spark session the whole base is scored on (docs/scale-out.md)."""

    master: str = "local[*]"
    """Spark master URL: `local[*]` (every core of this machine), `spark://host:7077`, `yarn`,
    `k8s://https://host:443`. A Spark session already running in the process (a notebook's) is used as is."""
    app_name: str = "cdp-score"
    shuffle_partitions: int | None = Field(None, ge=1)
    """`spark.sql.shuffle.partitions`; None = Spark's default (adaptive execution coalesces small ones)."""
    config: dict[str, str] = {}
    """Any other Spark configuration, e.g. {"spark.executor.memory": "8g"}."""
    feature_tables_uri: str | None = None
    """Where executors read the feature tables (`<uri>/<view>.parquet`, e.g. `s3a://bucket/cdp/features`);
    None = the workspace's data/features, which must then be on storage every executor mounts."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CDP_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    simulation: SimulationSettings = SimulationSettings()
    ingest: IngestSettings = IngestSettings()
    identity: IdentitySettings = IdentitySettings()
    features: FeatureSettings = FeatureSettings()
    training: TrainingSettings = TrainingSettings()
    policy: PolicySettings = PolicySettings()
    scoring: ScoringSettings = ScoringSettings()
    serving: ServingSettings = ServingSettings()
    privacy: PrivacySettings = PrivacySettings()
    spark: SparkSettings = SparkSettings()
    segments: SegmentSettings = SegmentSettings()
    drift: DriftSettings = DriftSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _YAML_FILE.get("path")
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


# The YAML path is handed to the source hook through this holder because pydantic-settings
# builds sources from the class; it is set only for the duration of one load_settings call.
_YAML_FILE: dict[str, Path | None] = {"path": None}


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names it."""


def describe_validation_errors(error: ValidationError) -> str:
    """Every bad setting as `section.key: reason` (env CDP_SECTION__KEY), one after another; not
    pydantic's multi-line dump with its input values and documentation links."""
    parts = []
    for problem in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        parts.append(f"{field}: {problem['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def describe_environment_error(error: Exception) -> str:
    """pydantic-settings names only the section when a CDP_<SECTION>__<KEY> value does not parse; name
    the variables of that section holding a list or mapping, which must be JSON."""
    import json
    import os
    import typing

    found = re.search(r'field "(\w+)"', str(error))
    section = Settings.model_fields.get(found.group(1)) if found else None
    if section is None or not isinstance(section.annotation, type) or not issubclass(section.annotation, BaseModel):
        return str(error)
    prefix = f"CDP_{found.group(1).upper()}__"
    culprits = []
    for variable, value in os.environ.items():
        key = variable.upper().removeprefix(prefix).lower()
        field = section.annotation.model_fields.get(key) if variable.upper().startswith(prefix) else None
        if field is None or typing.get_origin(field.annotation) not in (list, tuple, dict, set):
            continue
        try:
            json.loads(value)
        except ValueError:
            culprits.append(variable)
    if not culprits:
        return str(error)
    return (f"environment variable {', '.join(sorted(culprits))}: a list or mapping is written as JSON, e.g. "
            '\'["gmail.com", "example.com"]\' or \'{"margaret": ["mags"]}\'')


def _refuse_misspelt_environment_variables() -> None:
    """pydantic-settings ignores CDP_<SECTION>__<KEY> of a section that does not exist (a typo such as
    CDP_POLICYY__…), where the same mistake in YAML is refused: refuse it too. The same for a section and
    key joined by one underscore (CDP_INGEST_BATCH_ROWS); what only resembles a setting (a bare key,
    CDP_API_TOKEN, or a section with no such key) is warned about: another program may own the name."""
    import os

    unknown = sorted(name for name in os.environ
                     if (found := re.fullmatch(r"CDP_(\w+?)__\w+", name, flags=re.IGNORECASE))
                     and found.group(1).lower() not in Settings.model_fields)
    if unknown:
        raise ConfigError(f"environment variable {', '.join(unknown)}: no such configuration section (sections: "
                          f"{', '.join(Settings.model_fields)})")
    misspelt = {name: spelling for name in sorted(os.environ) if (spelling := setting_spelling(name)) is not None}
    refused = [f"{name}: a setting is spelt CDP_<SECTION>__<KEY>, with two underscores: {right}"
               for name, (right, certain) in misspelt.items() if certain]
    if refused:
        raise ConfigError(f"environment variable {'; '.join(refused)}")
    for name, (right, _) in misspelt.items():
        log.warning("environment variable %s is not read: a setting is spelt CDP_<SECTION>__<KEY>, e.g. %s",
                    name, right)


def setting_spelling(variable: str) -> tuple[str, bool] | None:
    """How a CDP_ variable that is not CDP_<SECTION>__<KEY> but looks like a setting is spelt, and whether
    that is certain: a section and one of its keys (CDP_INGEST_BATCH_ROWS), not a bare key (CDP_API_TOKEN)
    or a section with no such key (CDP_INGEST_BATCHROWS). None for anything else: CDP_<SECTION>__<KEY>
    itself, a whole section as JSON (CDP_INGEST), the variables that are not settings (NOT_SETTINGS),
    another program's CDP_ variable."""
    name = variable.upper()
    if not name.startswith("CDP_") or "__" in name or name in NOT_SETTINGS:
        return None
    rest = name.removeprefix("CDP_").lower()
    sections = {section: field.annotation.model_fields for section, field in Settings.model_fields.items()}
    for section, keys in sections.items():
        if rest.startswith(section + "_"):
            key = rest.removeprefix(section + "_")
            prefix = f"CDP_{section.upper()}__"
            if key in keys:
                return prefix + key.upper(), True
            return f"{prefix}<KEY> (keys: {', '.join(keys)})", False
    owners = [section for section, keys in sections.items() if rest in keys]
    if owners:
        return " or ".join(f"CDP_{section}__{rest}".upper() for section in owners), False
    return None


def _refuse_a_file_that_is_not_a_mapping(config_file: Path) -> None:
    """pydantic-settings takes any YAML document and fails on a list or a text at the top level with
    Python's `dictionary update sequence element #0 …`: say what the file must hold instead. A file
    that does not parse is left to it (its message gives the line)."""
    import yaml

    try:
        content = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return
    if content is not None and not isinstance(content, dict):
        found = "a list" if isinstance(content, list) else f"a single value ({type(content).__name__})"
        raise ConfigError(f"invalid configuration (file {config_file}): the file must be a mapping of sections, "
                          f"each with its keys indented below it (e.g. `ingest:` then `  batch_rows: 500000`), "
                          f"not {found}; sections: {', '.join(Settings.model_fields)}")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, an optional YAML file, the environment and overrides."""
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"config file not found: {config_file}")
    if config_file is not None:
        _refuse_a_file_that_is_not_a_mapping(config_file)
    _refuse_misspelt_environment_variables()
    _YAML_FILE["path"] = Path(config_file) if config_file is not None else None
    try:
        return Settings(**overrides)
    except ValidationError as error:
        where = f" (file {config_file})" if config_file else ""
        raise ConfigError(f"invalid configuration{where}: {describe_validation_errors(error)}") from error
    except SettingsError as error:
        raise ConfigError(f"invalid configuration: {describe_environment_error(error)}") from error
    except Exception as error:  # a YAML file that does not parse
        where = f" (file {config_file})" if config_file else ""
        raise ConfigError(f"invalid configuration{where}: {error}") from error
    finally:
        _YAML_FILE["path"] = None


def find_config_file(workspace: Path, explicit: Path | None) -> Path | None:
    """The explicit --config file, else `cdp.yaml` in the workspace when it exists."""
    if explicit is not None:
        return explicit
    candidate = workspace / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


SECRET_MASK = "***"


def mask_connection_secret(connection: str) -> str:
    """A Redis connection string with its password masked (Feast's `,password=...` and `user:pw@` in a URL)."""
    import re

    masked = re.sub(r"(?i)([,?&;]\s*\w*password\s*=)[^,&;]*", lambda m: m.group(1) + SECRET_MASK, connection)
    # user:password@host: up to the last @ before the path, a password may hold @ itself
    return re.sub(r"(://[^:/@]*:)[^/]*@", lambda m: m.group(1) + SECRET_MASK + "@", masked)


def settings_for_display(settings: Settings) -> dict:
    """The settings as JSON with their secrets masked: say a secret is set, never print it."""
    shown = settings.model_dump(mode="json")
    if shown["serving"]["api_token"]:
        shown["serving"]["api_token"] = SECRET_MASK
    shown["features"]["redis_connection_string"] = mask_connection_secret(shown["features"]["redis_connection_string"])
    return shown
