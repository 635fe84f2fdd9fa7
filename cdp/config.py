"""One typed configuration for every stage.

Precedence, highest first: values passed in code, environment variables named
``CDP_<SECTION>__<KEY>`` (e.g. ``CDP_POLICY__CONSENT_MODE=opt_out``), an optional YAML
file, then the defaults below. Nothing is read until :func:`load_settings` is called.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_FILE_NAME = "cdp.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SimulationSettings(_Section):
    """Defaults of `cdp simulate`; the command line overrides them."""

    customers: int = Field(20_000, ge=1)
    seed: int = 42
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


class IdentitySettings(_Section):
    """Identity resolution: standardization, matching, clustering and survivorship."""

    default_phone_region: str = "GB"
    """Region assumed for phone numbers written without a country code (ISO 3166 alpha-2)."""
    email_strip_plus_tags: bool = True
    email_dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    """Providers that ignore dots in the local part."""
    match_threshold: float = Field(0.99, gt=0, lt=1)
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
    ttl_days: int = Field(400, ge=1)
    """How old a feature snapshot may be and still be served for a later time."""
    stale_after_days: float = Field(2.0, gt=0)
    """Online features loaded longer ago than this are stale: readers are told (and logs say so)."""


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
    propensity_validation_days: int = Field(4, ge=1)
    """The latest of those days form the validation window."""
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
    seed: int = 42
    threads: int = Field(0, ge=0)
    """LightGBM threads; 0 = all cores."""


class PolicySettings(_Section):
    consent_mode: Literal["opt_in", "opt_out"] = "opt_in"


class ServingSettings(_Section):
    api_token: str | None = None


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
    serving: ServingSettings = ServingSettings()

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


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, an optional YAML file, the environment and overrides."""
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"config file not found: {config_file}")
    _YAML_FILE["path"] = Path(config_file) if config_file is not None else None
    try:
        return Settings(**overrides)
    except Exception as error:  # pydantic's ValidationError lists every bad field
        where = f" (file {config_file})" if config_file else ""
        raise ConfigError(f"invalid configuration{where}:\n{error}") from error
    finally:
        _YAML_FILE["path"] = None


def find_config_file(workspace: Path, explicit: Path | None) -> Path | None:
    """The explicit --config file, else `cdp.yaml` in the workspace when it exists."""
    if explicit is not None:
        return explicit
    candidate = workspace / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None
