"""LightGBM models as plain objects: fit on DataFrames, predict on DataFrames, explain per row.

A `CustomerModel` carries everything needed to score a feature frame the way it was trained —
column order, category levels, calibration, the CLV variant — so the batch job, the service and
Spark all call the same `predict`. Nothing here reads or writes storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import lightgbm
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

Task = Literal["churn", "propensity", "clv"]
TOUCH_COLUMNS = ("channel", "offer")
"""Inputs of the propensity model that describe the contact, not the customer."""
TOUCH_CHANNEL_FEATURES = ("open_rate_90d", "click_rate_90d", "days_since_last_touch", "sends_90d", "response_rate_365d")
"""Per-channel engagement features, also copied into `touched_*` for the channel being evaluated:
the model then compares a customer's response across channels through one set of columns."""
MONOTONE: dict[str, dict[str, int]] = {
    # Churn risk does not fall as recency worsens, nor rise with more recent orders.
    "churn": {"days_since_last_order": 1, "orders_365d": -1},
    # More recent net spend and orders do not lower expected value.
    "clv": {"net_revenue_365d": 1, "orders_365d": 1},
    "propensity": {},
}
MISSING_CATEGORY = "(missing)"


@dataclass(frozen=True)
class TrainingParameters:
    learning_rate: float = 0.1
    num_leaves: int = 31
    max_depth: int = 6
    max_rounds: int = 600
    early_stopping_rounds: int = 50
    min_data_in_leaf: int = 50
    seed: int = 42
    threads: int = 0

    def lightgbm(self, objective: str, monotone: list[int] | None = None) -> dict:
        parameters = {
            "objective": objective, "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "max_depth": self.max_depth, "min_data_in_leaf": self.min_data_in_leaf, "seed": self.seed,
            "deterministic": True, "force_row_wise": True, "num_threads": self.threads, "verbosity": -1,
            "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
        }
        if monotone and any(monotone):
            parameters["monotone_constraints"] = monotone
            parameters["monotone_constraints_method"] = "intermediate"  # "advanced" doubled training time
        return parameters


@dataclass
class FeatureEncoding:
    """Column order and category levels fixed at training time, so scoring sees the same codes."""

    columns: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> FeatureEncoding:
        categories = {}
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
                levels = frame[column].astype("string").fillna(MISSING_CATEGORY).unique().tolist()
                categories[column] = sorted({*levels, MISSING_CATEGORY})
        return cls(list(frame.columns), categories)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise KeyError(f"feature columns missing from the input: {', '.join(missing)}")
        encoded = {}
        for column in self.columns:
            values = frame[column]
            if column in self.categories:
                text = values.astype("string").fillna(MISSING_CATEGORY)
                known = text.isin(self.categories[column])
                # A level unseen in training scores like a missing value, not as an unknown code.
                encoded[column] = pd.Categorical(text.where(known, MISSING_CATEGORY), categories=self.categories[column])
            else:
                encoded[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        return pd.DataFrame(encoded, index=frame.index)


def add_touch_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy the touched channel's engagement features into `touched_*` (NaN for no contact)."""
    result = frame.copy()
    channel = result["channel"].astype("string").fillna("none")
    for name in TOUCH_CHANNEL_FEATURES:
        values = pd.Series(np.nan, index=result.index)
        for level in channel.unique():
            column = f"{level}_{name}"
            if column in result.columns:
                chosen = channel == level
                values[chosen] = pd.to_numeric(result.loc[chosen, column], errors="coerce")
        result[f"touched_{name}"] = values
    return result


@dataclass
class Calibration:
    """Raw score -> calibrated probability. Isotonic (stored as points for np.interp) for churn;
    Platt scaling on the logit for propensity, whose flat isotonic steps would erase the small
    differences between actions that uplift is made of."""

    raw: np.ndarray
    calibrated: np.ndarray
    kind: str = "isotonic"
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, raw_scores: np.ndarray, labels: np.ndarray, kind: str = "isotonic") -> Calibration:
        if kind == "platt":
            from sklearn.linear_model import LogisticRegression

            logistic = LogisticRegression(C=1e6).fit(_logit(raw_scores)[:, None], labels)
            return cls(np.array([]), np.array([]), "platt", float(logistic.coef_[0, 0]), float(logistic.intercept_[0]))
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw_scores, labels)
        return cls(np.asarray(isotonic.X_thresholds_, dtype=float), np.asarray(isotonic.y_thresholds_, dtype=float))

    def apply(self, raw_scores: np.ndarray) -> np.ndarray:
        if self.kind == "platt":
            return 1.0 / (1.0 + np.exp(-(self.slope * _logit(raw_scores) + self.intercept)))
        if len(self.raw) == 0:
            return raw_scores
        return np.interp(raw_scores, self.raw, self.calibrated)


def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probabilities, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(clipped / (1 - clipped))


@dataclass
class CustomerModel:
    """A trained model: `predict` gives calibrated probabilities (churn, propensity) or expected net
    revenue (CLV); `contributions` gives per-row SHAP values of the main booster."""

    task: Task
    encoding: FeatureEncoding
    boosters: dict[str, lightgbm.Booster]
    """churn/propensity: {"classifier"}; CLV: {"tweedie"} or {"buyer", "value"} (two-part)."""
    calibration: Calibration | None = None
    variant: str = "classifier"
    feature_service: str = ""

    @property
    def input_columns(self) -> list[str]:
        """What callers must pass: the FeatureService's features (plus channel and offer for propensity)."""
        derived = {f"touched_{name}" for name in TOUCH_CHANNEL_FEATURES}
        return [c for c in self.encoding.columns if c not in derived]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.task == "propensity":
            frame = add_touch_features(frame)
        return self.encoding.transform(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        encoded = self.prepare(frame)
        if self.variant == "two_part":
            buyer = self.boosters["buyer"].predict(encoded)
            value = np.maximum(self.boosters["value"].predict(encoded), 0.0)
            return buyer * value
        booster = next(iter(self.boosters.values()))
        scores = booster.predict(encoded)
        if self.calibration is not None:
            scores = self.calibration.apply(scores)
        return np.asarray(scores, dtype=float)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row, per-feature contributions (log-odds or raw units) of the main booster, plus `bias`."""
        encoded = self.prepare(frame)
        booster = self.boosters.get("buyer") or next(iter(self.boosters.values()))
        values = booster.predict(encoded, pred_contrib=True)
        return pd.DataFrame(values, columns=[*self.encoding.columns, "bias"], index=frame.index)


def _monotone_vector(task: Task, columns: list[str]) -> list[int]:
    rules = MONOTONE.get(task, {})
    return [rules.get(c, 0) for c in columns]


def _boost(parameters: dict, train: lightgbm.Dataset, tune: lightgbm.Dataset, rounds: int, patience: int):
    return lightgbm.train(parameters, train, num_boost_round=rounds, valid_sets=[tune],
                          callbacks=[lightgbm.early_stopping(patience, verbose=False)])


def fit_classifier(task: Task, train: pd.DataFrame, train_labels: np.ndarray, tune: pd.DataFrame,
                   tune_labels: np.ndarray, parameters: TrainingParameters, feature_service: str) -> CustomerModel:
    """Binary LightGBM with early stopping and isotonic calibration, both on the tuning rows."""
    if task == "propensity":
        train, tune = add_touch_features(train), add_touch_features(tune)
    encoding = FeatureEncoding.fit(train)
    train_set = lightgbm.Dataset(encoding.transform(train), label=train_labels, free_raw_data=False)
    tune_set = lightgbm.Dataset(encoding.transform(tune), label=tune_labels, reference=train_set)
    booster = _boost(parameters.lightgbm("binary", _monotone_vector(task, encoding.columns)), train_set, tune_set,
                     parameters.max_rounds, parameters.early_stopping_rounds)
    raw = booster.predict(encoding.transform(tune))
    calibration = Calibration.fit(raw, tune_labels, "platt" if task == "propensity" else "isotonic")
    return CustomerModel(task, encoding, {"classifier": booster}, calibration, "classifier", feature_service)


def fit_value_models(train: pd.DataFrame, train_values: np.ndarray, tune: pd.DataFrame,
                     parameters: TrainingParameters, tune_values: np.ndarray, feature_service: str) -> dict[str, CustomerModel]:
    """The two CLV candidates: one Tweedie model, and P(buys) × E[value | buys]."""
    encoding = FeatureEncoding.fit(train)
    monotone = _monotone_vector("clv", encoding.columns)
    train_x, tune_x = encoding.transform(train), encoding.transform(tune)
    target, tune_target = np.maximum(train_values, 0.0), np.maximum(tune_values, 0.0)
    tweedie = _boost(parameters.lightgbm("tweedie", monotone) | {"tweedie_variance_power": 1.3},
                     lightgbm.Dataset(train_x, label=target), lightgbm.Dataset(tune_x, label=tune_target),
                     parameters.max_rounds, parameters.early_stopping_rounds)
    bought, tune_bought = (target > 0).astype(int), (tune_target > 0).astype(int)
    buyer = _boost(parameters.lightgbm("binary", monotone), lightgbm.Dataset(train_x, label=bought),
                   lightgbm.Dataset(tune_x, label=tune_bought), parameters.max_rounds, parameters.early_stopping_rounds)
    positive, tune_positive = target > 0, tune_target > 0
    value = _boost(parameters.lightgbm("regression", monotone),
                   lightgbm.Dataset(train_x[positive], label=target[positive]),
                   lightgbm.Dataset(tune_x[tune_positive], label=tune_target[tune_positive]),
                   parameters.max_rounds, parameters.early_stopping_rounds)
    return {
        "tweedie": CustomerModel("clv", encoding, {"tweedie": tweedie}, None, "tweedie", feature_service),
        "two_part": CustomerModel("clv", encoding, {"buyer": buyer, "value": value}, None, "two_part", feature_service),
    }
