"""`cdp score`: every customer's churn probability, CLV and conversion probability per candidate
action, from the registry's champion models and features as of one time."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cdp.config import Settings
from cdp.workspace import Workspace
from training.models import MISSING_CATEGORY, CustomerModel

NO_CONTACT = "none"


class ScoringError(RuntimeError):
    """Scoring cannot run (no champion model, no features); the message says what to run."""


@dataclass
class ScoreSummary:
    customers: int
    as_of: str
    models: dict[str, str] = field(default_factory=dict)
    """Registered model name -> champion version used."""
    skipped: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)


def candidate_actions(model: CustomerModel) -> list[tuple[str, str]]:
    """(channel, offer) pairs the propensity model knows from the touch history; no contact first."""
    channels = [c for c in model.encoding.categories.get("channel", []) if c not in (MISSING_CATEGORY, NO_CONTACT)]
    offers = [o for o in model.encoding.categories.get("offer", []) if o != MISSING_CATEGORY]
    offers = sorted(offers, key=lambda o: (o != NO_CONTACT, o)) or [NO_CONTACT]
    return [(NO_CONTACT, NO_CONTACT)] + [(c, o) for c in sorted(channels) for o in offers]


def action_name(channel: str, offer: str) -> str:
    """`email`, `email:10pct`, or `none`."""
    return channel if offer == NO_CONTACT else f"{channel}:{offer}"


def conversion_column(channel: str, offer: str) -> str:
    return "conversion_" + action_name(channel, offer).replace(":", "_")


def score_features(features: pd.DataFrame, models: dict[str, CustomerModel]) -> pd.DataFrame:
    """Scores for a frame holding every model's input features (one row per customer)."""
    scores = pd.DataFrame({"customer_id": features["customer_id"].to_numpy()})
    if "churn" in models:
        scores["churn_probability"] = models["churn"].predict(features)
    if "clv" in models:
        scores["clv"] = models["clv"].predict(features)
    if "propensity" in models:
        model = models["propensity"]
        for channel, offer in candidate_actions(model):
            scores[conversion_column(channel, offer)] = model.predict(features.assign(channel=channel, offer=offer))
    return scores


def load_champions(workspace: Workspace) -> tuple[dict[str, CustomerModel], dict[str, str], dict[str, str]]:
    """The champion of each registered model; models without one are reported, not fatal."""
    from training.tracking import (
        CHAMPION,
        REGISTERED_MODELS,
        alias_version,
        load_model,
        use_workspace_tracking,
    )

    client = use_workspace_tracking(workspace)
    models, versions, missing = {}, {}, {}
    for task, name in REGISTERED_MODELS.items():
        version = alias_version(client, name, CHAMPION)
        if version is None:
            missing[task] = f"no `{name}@{CHAMPION}` in the registry; run `cdp train {task}`"
            continue
        models[task], versions[name] = load_model(name, CHAMPION), version
    return models, versions, missing


def score_customers(workspace: Workspace, settings: Settings, as_of: dt.datetime) -> tuple[pd.DataFrame, ScoreSummary]:
    """Build features as of `as_of` when needed, retrieve them through each model's FeatureService
    and score every customer known then. Writes data/outputs/scores.parquet and scores.json."""
    from features.feature_store import (
        apply_feature_definitions,
        get_training_features,
        open_feature_store,
    )
    from features.feature_tables import build_feature_tables, feature_table_path

    models, versions, missing = load_champions(workspace)
    if not models:
        raise ScoringError("no champion model in the registry; run `cdp train` first ("
                           + "; ".join(missing.values()) + ")")
    moment = pd.Timestamp(as_of)
    moment = moment.tz_convert("UTC") if moment.tzinfo else moment.tz_localize("UTC")
    table = feature_table_path(workspace, "purchase_history")
    known = pd.read_parquet(table, columns=["customer_id", "event_timestamp"]) if table.exists() else pd.DataFrame()
    if known.empty or not (pd.to_datetime(known["event_timestamp"], utc=True) == moment).any():
        build_feature_tables(workspace, [moment.to_pydatetime()])
        apply_feature_definitions(workspace, settings.features)
        known = pd.read_parquet(table, columns=["customer_id", "event_timestamp"])
    customers = known.loc[pd.to_datetime(known["event_timestamp"], utc=True) == moment, ["customer_id"]]
    entity_rows = customers.drop_duplicates().assign(event_timestamp=moment).reset_index(drop=True)
    store = open_feature_store(workspace, settings.features)
    features = entity_rows
    for service in sorted({m.feature_service for m in models.values()}):
        retrieved = get_training_features(store, service, entity_rows)
        new_columns = [c for c in retrieved.columns if c not in features.columns]
        features = features.merge(retrieved[["customer_id", *new_columns]], on="customer_id", how="left")
    scores = score_features(features, models)
    scores.insert(1, "as_of", moment)
    workspace.outputs.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(workspace.outputs / "scores.parquet", index=False)
    summary = ScoreSummary(len(scores), moment.isoformat(), versions, missing,
                           [c for c in scores.columns if c.startswith("conversion_")])
    (workspace.outputs / "scores.json").write_text(json.dumps(
        {**summary.__dict__, "mean_churn_probability": _mean(scores, "churn_probability"),
         "total_clv": _sum(scores, "clv")}, indent=2))
    return scores, summary


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    return float(np.mean(frame[column])) if column in frame else None


def _sum(frame: pd.DataFrame, column: str) -> float | None:
    return float(np.sum(frame[column])) if column in frame else None
