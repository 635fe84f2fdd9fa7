"""Scoring with the champion models: churn probability, CLV and the conversion probability of every
candidate action, for any frame of features. Used by batch scoring and the service alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cdp.workspace import Workspace
from training.models import MISSING_CATEGORY, CustomerModel

NO_CONTACT = "none"


def candidate_actions(model: CustomerModel) -> list[tuple[str, str]]:
    """(channel, offer) pairs the propensity model knows from the touch history; no contact first."""
    channels = [c for c in model.channels if c not in (MISSING_CATEGORY, NO_CONTACT)]
    offers = [o for o in model.offers if o != MISSING_CATEGORY]
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
        actions = candidate_actions(model)
        # One prediction over customers x actions: per-call overhead, not trees, dominates small requests.
        stacked = features.loc[features.index.repeat(len(actions))].assign(
            channel=[c for c, _ in actions] * len(features), offer=[o for _, o in actions] * len(features))
        probabilities = model.predict(stacked).reshape(len(features), len(actions))
        # A contact never lowers the chance of buying: the channel indicators and offer depth are
        # monotone in the model, but the touched channel's engagement is not, so hold the floor here.
        probabilities[:, 1:] = np.maximum(probabilities[:, 1:], probabilities[:, :1])
        for position, (channel, offer) in enumerate(actions):
            scores[conversion_column(channel, offer)] = probabilities[:, position]
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
