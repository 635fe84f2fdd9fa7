"""`cdp score`: the whole customer base scored by the champion models and decided by the same policy
as the service, written to data/outputs/scores.parquet (+ scores.json)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from cdp.config import Settings
from cdp.workspace import Workspace
from serving.engine import POLICY_SERVICE
from training.scoring import load_champions, score_features

POLICY_COLUMNS = ("next_best_action", "next_best_channel", "expected_value", "win_back", "win_back_action",
                  "holdout", "policy_action", "no_contact_reason")


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
    next_best_actions: dict[str, int] = field(default_factory=dict)
    win_back_customers: int = 0
    holdout_customers: int = 0
    total_expected_value: float = 0.0
    mean_churn_probability: float | None = None
    total_clv: float | None = None


def retrieve_scoring_features(workspace: Workspace, settings: Settings, services: set[str],
                              as_of: pd.Timestamp) -> pd.DataFrame:
    """Every customer known at `as_of`, with the features of the given FeatureServices as of then
    (built first when the tables lack that snapshot)."""
    from features.feature_store import (
        apply_feature_definitions,
        get_training_features,
        open_feature_store,
    )
    from features.feature_tables import ensure_feature_snapshots, feature_table_path

    if ensure_feature_snapshots(workspace, [as_of.to_pydatetime()]):
        apply_feature_definitions(workspace, settings.features)
    known = pd.read_parquet(feature_table_path(workspace, "purchase_history"), columns=["customer_id", "event_timestamp"])
    at_time = known[pd.to_datetime(known["event_timestamp"], utc=True) == as_of]
    entity_rows = at_time[["customer_id"]].drop_duplicates().assign(event_timestamp=as_of).reset_index(drop=True)
    store = open_feature_store(workspace, settings.features)
    retrieved = get_training_features(store, sorted(services), entity_rows)
    return entity_rows.merge(retrieved.drop(columns="event_timestamp"), on="customer_id", how="left")


def decide(features: pd.DataFrame, scores: pd.DataFrame, settings: Settings, models: dict,
           now: pd.Timestamp, campaign_id: str | None = None) -> pd.DataFrame:
    """Scores plus the policy's decisions and, for the customers someone will act on (a contact or a
    win-back), the churn model's top reasons."""
    from serving.policy import recommend
    from serving.reasons import reason_phrases

    decisions = recommend(pd.concat([features.reset_index(drop=True), scores.drop(columns="customer_id")], axis=1),
                          settings.policy, campaign_id=campaign_id, alternatives=False, now=now)
    result = scores.copy()
    for column in [*POLICY_COLUMNS, *(c for c in decisions.columns if c.startswith("eligible_"))]:
        if column in decisions:
            result[column] = decisions[column].to_numpy()
    acted_on = (result["next_best_action"] != "none").to_numpy() | result["win_back"].fillna(False).to_numpy(bool)
    reasons = pd.Series([None] * len(result), dtype=object)
    if "churn" in models and acted_on.any():
        chosen = features.reset_index(drop=True)[acted_on]
        model = models["churn"]
        phrases = reason_phrases(*model.explain(chosen))
        reasons[np.flatnonzero(acted_on)] = ["; ".join(p) for p in phrases]
    result["reasons"] = reasons.to_numpy()
    return result


def score_customer_base(workspace: Workspace, settings: Settings, as_of: dt.datetime,
                        campaign_id: str | None = None) -> tuple[pd.DataFrame, ScoreSummary]:
    """Score and decide for every customer; `campaign_id` salts the holdout (default: the policy's)."""
    models, versions, missing = load_champions(workspace)
    if not models:
        raise ScoringError("no champion model in the registry; run `cdp train` first ("
                           + "; ".join(missing.values()) + ")")
    moment = pd.Timestamp(as_of)
    moment = moment.tz_convert("UTC") if moment.tzinfo else moment.tz_localize("UTC")
    services = {m.feature_service for m in models.values()} | {POLICY_SERVICE}
    features = retrieve_scoring_features(workspace, settings, services, moment)
    scores = decide(features, score_features(features, models), settings, models, moment, campaign_id)
    scores.insert(1, "as_of", moment)
    workspace.outputs.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(workspace.outputs / "scores.parquet", index=False)
    summary = ScoreSummary(
        customers=len(scores), as_of=moment.isoformat(), models=versions, skipped=missing,
        actions=[c for c in scores.columns if c.startswith("conversion_")],
        next_best_actions={str(k): int(v) for k, v in scores["next_best_action"].value_counts().items()},
        win_back_customers=int(scores["win_back"].fillna(False).astype(bool).sum()),
        holdout_customers=int(scores["holdout"].fillna(False).astype(bool).sum()),
        total_expected_value=float(scores["expected_value"].fillna(0).sum()),
        mean_churn_probability=float(scores["churn_probability"].mean()) if "churn_probability" in scores else None,
        total_clv=float(scores["clv"].sum()) if "clv" in scores else None,
    )
    (workspace.outputs / "scores.json").write_text(json.dumps(asdict(summary), indent=2))
    return scores, summary
