"""Scoring with the champion models: churn probability, CLV and the conversion probability of every
candidate action, for any frame of features. Used by batch scoring and the service alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cdp.moments import utc_timestamp
from cdp.workspace import Workspace
from training.labels import in_churn_population
from training.models import MISSING_CATEGORY, CustomerModel, Features, feature_rows, feature_values

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


def action_rows(actions: list[tuple[str, str]], customers: int,
                eligible_channels: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (customer row, action position) pairs to predict, customer by customer: every action, or
    with `eligible_channels` no contact plus the actions of each customer's eligible channels."""
    wanted = np.ones((customers, len(actions)), dtype=bool)
    if eligible_channels is not None:
        for position, (channel, _) in enumerate(actions[1:], start=1):
            wanted[:, position] = eligible_channels[channel].to_numpy(bool) if channel in eligible_channels else False
    return np.nonzero(wanted)


def score_features(features: pd.DataFrame, models: dict[str, CustomerModel],
                   eligible_channels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Scores for a frame holding every model's input features (one row per customer).

    With `eligible_channels` (customer x channel booleans, the policy's `channels_the_policy_may_use`), the
    conversion probability of a contact is computed only where the policy may use its channel and left
    NaN elsewhere: the policy never picks those actions, and most customers of a whole base have
    no consented, reachable channel, so batch scoring skips most of the propensity model's rows."""
    return pd.DataFrame(score_columns(features, models, eligible_channels))


def score_columns(features: Features, models: dict[str, CustomerModel],
                  eligible_channels: pd.DataFrame | None = None,
                  churn_contributions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`score_features` as numpy columns; `features` may be numpy columns by name too (the service
    scores a few customers without building DataFrames). `churn_contributions`: the churn model's
    SHAP values for these rows, when the caller explains them anyway (the service's reasons); the
    churn probability is then read from them instead of from a second pass over the trees."""
    scores: dict[str, np.ndarray] = {"customer_id": feature_values(features, "customer_id")}
    if "churn" in models:
        outside = outside_churn_population(features, models["churn"])
        churn = None
        if churn_contributions is not None:
            churn = models["churn"].predict_from_contributions(churn_contributions)
        if churn is None:
            churn = np.full(len(outside), np.nan) if outside.all() else models["churn"].predict(features)
        scores["churn_probability"] = np.where(outside, np.nan, churn)
    if "clv" in models:
        scores["clv"] = models["clv"].predict(features)
    if "propensity" in models:
        model = models["propensity"]
        actions = candidate_actions(model)
        rows, positions = action_rows(actions, feature_rows(features), eligible_channels)
        # One prediction over customers x actions, each customer's columns encoded once.
        count = feature_rows(features)
        probabilities = np.full((count, len(actions)), np.nan)
        if _averages_decide(model, actions):
            # Full shrinkage: a contact's uplift is its average, so only P(none) is predicted and every
            # wanted (customer, contact) pair starts from it; shrink_uplifts adds the average.
            probabilities[:, 0] = model.predict_no_contact(features)
            probabilities[rows, positions] = probabilities[rows, 0]
        else:
            probabilities[rows, positions] = model.predict_touches(
                features, rows, [actions[p][0] for p in positions], [actions[p][1] for p in positions])
        # A contact never lowers the chance of buying: the channel indicators and offer depth are
        # monotone in the model, but the touched channel's engagement is not, so hold the floor here.
        probabilities[:, 1:] = np.maximum(probabilities[:, 1:], probabilities[:, :1])
        probabilities = shrink_uplifts(probabilities, actions, model)
        for position, (channel, offer) in enumerate(actions):
            scores[conversion_column(channel, offer)] = probabilities[:, position]
    return scores


def outside_churn_population(features: Features, model: CustomerModel) -> np.ndarray:
    """True for the rows the churn model gives no probability: outside the population it learned from
    (`training.labels.in_churn_population`; never for a model that did not record it)."""
    if model.population_days is None:
        return np.zeros(feature_rows(features), dtype=bool)
    return ~in_churn_population(feature_values(features, "days_since_last_order"), model.population_days)


def _averages_decide(model: CustomerModel, actions: list[tuple[str, str]]) -> bool:
    averages = model.average_uplift or {}
    return model.uplift_shrinkage == 1.0 and all(action_name(c, o) in averages for c, o in actions[1:])


def shrink_uplifts(probabilities: np.ndarray, actions: list[tuple[str, str]], model: CustomerModel) -> np.ndarray:
    """Pull each customer's predicted uplift of each contact toward that contact's average uplift.

    The per-customer differences between contacts are what the propensity model knows least: on the
    simulator they ranked the true uplift at Spearman ~0.3 and choosing by them lost a quarter of the
    profit that the average uplift earns (docs/policy.md). The baseline P(convert | none) is kept."""
    shrinkage, averages = model.uplift_shrinkage, model.average_uplift  # class defaults for older models
    if not shrinkage or not averages:
        return probabilities
    shrunk = probabilities.copy()
    baseline = probabilities[:, 0]
    for position, (channel, offer) in enumerate(actions[1:], start=1):
        average = averages.get(action_name(channel, offer))
        if average is not None:
            own = probabilities[:, position] - baseline
            shrunk[:, position] = np.clip(baseline + (1 - shrinkage) * own + shrinkage * average, 0.0, 1.0)
    return shrunk


def average_uplifts(model: CustomerModel, features: pd.DataFrame) -> dict[str, float]:
    """Each contact's uplift averaged over these customers (the training rows), by action name."""
    probabilities = score_columns(features, {"propensity": model})
    baseline = probabilities[conversion_column(NO_CONTACT, NO_CONTACT)]
    return {action_name(channel, offer): float(np.nanmean(probabilities[conversion_column(channel, offer)] - baseline))
            for channel, offer in candidate_actions(model)[1:]}


def load_champions(workspace: Workspace) -> tuple[dict[str, CustomerModel], dict[str, str], dict[str, str]]:
    """The champion of each registered model; models without one are reported, not fatal."""
    from training.tracking import (
        CHAMPION,
        REGISTERED_MODELS,
        champion_versions,
        load_model,
        use_workspace_tracking,
    )

    models, versions, missing = {}, {}, {}
    for task, version in champion_versions(use_workspace_tracking(workspace)).items():
        name = REGISTERED_MODELS[task]
        if version is None:
            from training.pipeline import untrainable_reason

            cannot = untrainable_reason(workspace, task)
            missing[task] = (f"no `{name}@{CHAMPION}`: this data cannot train it ({cannot})" if cannot else
                             f"no `{name}@{CHAMPION}` in the registry; run `cdp train {task}`")
            continue
        models[task], versions[name] = load_model(name, CHAMPION), version
    return models, versions, missing


def champions_trained_past(workspace: Workspace, moment) -> list[tuple[str, str, str]]:
    """(registered model, version, training as-of) of each champion trained as of a time after `moment`:
    its labels (and its validation rows) hold outcomes after `moment`, so its scores as of `moment` see
    the future: in-sample where `moment` is among its training snapshots, and in any case optimistic
    for a backtest. Read from the run's lineage (`as_of`, else `validation_from` for older runs)."""
    from mlflow.exceptions import MlflowException

    from training.tracking import (
        REGISTERED_MODELS,
        champion_versions,
        run_lineage,
        use_workspace_tracking,
    )

    client = use_workspace_tracking(workspace)
    moment = utc_timestamp(moment)
    late = []
    for task, version in champion_versions(client).items():
        if version is None:
            continue
        name = REGISTERED_MODELS[task]
        try:
            lineage = run_lineage(client.get_model_version(name, version).run_id)
        except (MlflowException, OSError, ValueError):  # no lineage: nothing to say (drift reports name such runs)
            continue
        known_until = lineage.get("as_of") or lineage.get("validation_from")
        end = utc_timestamp(known_until) if known_until else None
        if end is not None and moment < end:
            late.append((name, version, str(end.date())))
    return late

