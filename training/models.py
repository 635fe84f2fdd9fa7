"""LightGBM models as plain objects: fit on DataFrames, predict on DataFrames (or columns), explain per row.

A `CustomerModel` carries everything needed to score a feature frame the way it was trained —
column order, category levels, calibration, the CLV variant — so the batch job, the service and
Spark all call the same `predict`. Nothing here reads or writes storage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import lightgbm
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from training.compiled_forest import compiled_forest, predict_compiled
from training.tree_tables import tree_tables

Task = Literal["churn", "propensity", "clv"]
TOUCH_COLUMNS = ("channel", "offer")
"""Inputs of the propensity model that describe the contact, not the customer."""
TOUCH_CHANNEL_FEATURES = ("open_rate_90d", "click_rate_90d", "days_since_last_touch", "sends_90d", "response_rate_365d")
"""Per-channel engagement features, also copied into `touched_*` for the channel being evaluated (NaN
for no contact): the model compares a customer's response across channels through one set of columns.
Left unconstrained: holding them monotone (with 0 for no contact) erased the uplift signal."""
MONOTONE: dict[str, dict[str, int]] = {
    # Churn risk does not fall as the customer's own recency worsens, nor rise with more recent orders,
    # spend or visits: time passing with no news (every one of these moving the bad way at once) never
    # lowers it. Marketing touches and tenure are left free: they are not the customer's behaviour.
    "churn": {
        "days_since_last_order": 1, "overdue_ratio": 1, "days_since_last_visit": 1, "days_since_last_app_open": 1,
        **{f"orders_{days}d": -1 for days in (7, 30, 90, 365)},
        **{f"gross_revenue_{days}d": -1 for days in (7, 30, 90, 365)},
        "net_revenue_90d": -1, "net_revenue_365d": -1, "revenue_smoothed_90d": -1,
        "active_days_30d": -1, "events_30d": -1,
    },
    # More recent net spend and orders do not lower expected value; returns (net spend held) never raise it:
    # the value is net of returns.
    "clv": {"net_revenue_365d": 1, "net_revenue_90d": 1, "net_revenue_total": 1, "orders_365d": 1,
            "returned_total": -1, "return_rate": -1},
    # A contact, and a deeper discount, never lower the chance of buying: uplift is not negative.
    "propensity": {},  # every touch_<channel> indicator and touch_offer_depth: see _monotone_vector
}
TOUCH_CHANNELS = ("email", "push", "sms")
"""Default contact channels; a propensity model uses the channels of its training touches."""
MISSING_CATEGORY = "(missing)"
Features = pd.DataFrame | Mapping[str, np.ndarray]
"""Model inputs: a DataFrame, or columns by name as equal-length arrays (the service's online
vector, which skips pandas' per-call overhead on a few rows). Both give the same numbers."""
FAST_ROWS = 2_000
"""From this many rows, predictions come from the compiled forest when batch scoring built one."""
THREADED_ROWS = 16
"""Below this many rows, LightGBM predicts on one thread (starting OpenMP threads costs more than the
trees). Measured on the 599-tree churn model: 16 rows 0.52 ms on one thread, 0.27 on two; 100 rows 3.4
against 1.7 ms."""


def feature_rows(features: Features) -> int:
    """Number of rows of a DataFrame or of a mapping of equal-length columns."""
    if isinstance(features, pd.DataFrame):
        return len(features)
    return len(next(iter(features.values()))) if features else 0


def feature_values(features: Features, column: str) -> np.ndarray:
    """One column as a numpy array (a DataFrame's keeps its dtype; object for text)."""
    values = features[column]
    return values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)


def _floats(values) -> np.ndarray:
    """A column as float64, missing and unreadable values as NaN (what `to_numpy(dtype=float)` gives)."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan)


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

    @cached_property
    def positions(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.columns)}

    @cached_property
    def _plans(self) -> dict[tuple[str, ...], tuple]:
        """`_plan` by the names of the derived columns."""
        return {}

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> FeatureEncoding:
        """The levels seen in training; a level that names an e-mail or phone (`mentions_contact`) is never
        kept (it scores as missing), whatever the feature tables hold: the levels are stored with the model.
        Custom attributes reach training as levels many customers share (features/customer_features.py)."""
        from features.customer_features import mentions_contact

        categories = {}
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
                levels = frame[column].astype("string").fillna(MISSING_CATEGORY).unique().tolist()
                categories[column] = sorted({*(level for level in levels if not mentions_contact(level)),
                                             MISSING_CATEGORY})
        return cls(list(frame.columns), categories)

    def _check(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise KeyError(f"feature columns missing from the input: {', '.join(missing)}")

    def matrix(self, frame: Features, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The input as LightGBM sees a pandas frame — numbers as floats, categories as their codes —
        built directly: pandas' per-call conversion dominated the latency of small requests. Columns
        in `extra` (derived ones) are taken from there. `frame` may also be a mapping of columns."""
        extra = extra or {}
        missing = [c for c in self.columns if c not in frame and c not in extra]
        if missing:
            raise KeyError(f"feature columns missing from the input: {', '.join(missing)}")
        numeric, numeric_names, categorical, derived = self._plan(tuple(extra))
        result = np.empty((feature_rows(frame), len(self.columns)), dtype=float)
        if isinstance(frame, pd.DataFrame):
            block = frame[numeric_names]
            try:
                result[:, numeric] = block.to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError):  # text in a numeric column: what cannot be read is missing
                result[:, numeric] = block.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        else:
            try:  # one conversion for all numeric columns; column by column only if one holds text
                result[:, numeric] = np.array([frame[name] for name in numeric_names], dtype=float).T
            except (TypeError, ValueError):
                for index, name in zip(numeric, numeric_names, strict=True):
                    result[:, index] = _floats(frame[name])
        for index, column in derived:
            result[:, index] = extra[column]
        for index, column in categorical:
            values = frame[column]
            values = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values, dtype=object)
            result[:, index] = self._codes(column, values)
        return result

    def _plan(self, derived_names: tuple[str, ...]) -> tuple:
        """Which positions are numeric, categorical or derived, worked out once per set of derived
        columns (a one-customer request pays for every Python step here)."""
        plan = self._plans.get(derived_names)
        if plan is None:
            derived = set(derived_names)
            numeric = [i for i, c in enumerate(self.columns) if c not in self.categories and c not in derived]
            plan = self._plans[derived_names] = (
                numeric, [self.columns[i] for i in numeric],
                [(i, c) for i, c in enumerate(self.columns) if c in self.categories and c not in derived],
                [(i, c) for i, c in enumerate(self.columns) if c in derived])
        return plan

    def _codes(self, column: str, values: np.ndarray) -> np.ndarray:
        """Category codes; a level unseen in training scores like a missing value, not as an unknown code."""
        lookup = getattr(self, "_lookup", None)
        if lookup is None:
            lookup = self._lookup = {name: {level: code for code, level in enumerate(v)}
                                     for name, v in self.categories.items()}
        table = lookup[column]
        missing = table[MISSING_CATEGORY]
        if len(values) >= DISTINCT_ROWS:
            return map_distinct(values, lambda v: table.get(str(v), missing), float(missing), float)
        return np.fromiter((table.get(v if v.__class__ is str else (MISSING_CATEGORY if _is_missing(v) else str(v)),
                                      missing) for v in values), dtype=float, count=len(values))

    def transform(self, frame: pd.DataFrame, extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        """The same input as a frame with categorical columns (for plots and reason phrases)."""
        return self.frame_of(self.matrix(frame, extra), frame.index)

    def frame_of(self, matrix: np.ndarray, row_index) -> pd.DataFrame:
        encoded = {}
        for index, column in enumerate(self.columns):
            if column in self.categories:
                encoded[column] = pd.Categorical.from_codes(matrix[:, index].astype(int), categories=self.categories[column])
            else:
                encoded[column] = matrix[:, index]
        return pd.DataFrame(encoded, index=row_index)


class EncodedColumns(Mapping):
    """An encoded input read by column name: numbers as they are, categories as their level names."""

    def __init__(self, encoding: FeatureEncoding, encoded: np.ndarray):
        self.encoding, self.encoded, self.positions = encoding, encoded, encoding.positions

    def __getitem__(self, column: str) -> np.ndarray:
        values = self.encoded[:, self.positions[column]]
        levels = self.encoding.categories.get(column)
        return values if levels is None else np.asarray(levels, dtype=object)[values.astype(int)]

    def __contains__(self, column: object) -> bool:
        return column in self.positions

    def __iter__(self):
        return iter(self.encoding.columns)

    def __len__(self) -> int:
        return len(self.encoding.columns)


def add_touch_features(frame: pd.DataFrame, channels: Sequence[str] = TOUCH_CHANNELS) -> pd.DataFrame:
    """Copy the touched channel's engagement features into `touched_*` (NaN for no contact)."""
    return frame.assign(**touch_features(frame, channels))


DISTINCT_ROWS = 256
"""From this many values on, per-value conversions run once per distinct value (a base of a million
customers has a handful of channels, offers and category levels)."""


def map_distinct(values: np.ndarray, convert, missing_result, dtype) -> np.ndarray:
    """`convert(v)` for every value, computed once per distinct value; missing values (None, NaN,
    pd.NA) give `missing_result`."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    mapped = np.array([*(convert(u) for u in uniques), missing_result], dtype=dtype)
    return mapped[codes]  # the sentinel -1 picks `missing_result`


def _offer_depth(offer: str) -> float:
    match = _OFFER_DEPTH.match(offer)
    return 0.0 if offer == "none" else (float(match.group(1)) / 100 if match else np.nan)


def offer_depths(offers: pd.Series | np.ndarray) -> np.ndarray:
    """`10pct` -> 0.10; `none` or missing -> 0; other names -> NaN (unknown depth)."""
    values = np.asarray(offers, dtype=object)
    if len(values) >= DISTINCT_ROWS:
        return map_distinct(values, lambda offer: _offer_depth(str(offer)), 0.0, float)
    depths: dict = {}
    result = np.empty(len(values))
    for position, offer in enumerate(values):
        key = "none" if _is_missing(offer) else str(offer)
        depth = depths.get(key)
        if depth is None:
            depth = depths[key] = _offer_depth(key)
        result[position] = depth
    return result


_OFFER_DEPTH = re.compile(r"^(\d+(?:\.\d+)?)pct$")


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value) or value is pd.NaT


def touch_features(frame: Features, channels: Sequence[str] = TOUCH_CHANNELS) -> dict[str, np.ndarray]:
    """What describes the contact, as numbers the model can hold monotone: one indicator per channel,
    the offer's depth, and the touched channel's engagement (`touched_*`, NaN for no contact)."""
    rows = feature_rows(frame)
    given = feature_values(frame, "channel")
    channel = (map_distinct(given, lambda c: c, "none", object) if len(given) >= DISTINCT_ROWS else
               np.array(["none" if _is_missing(c) else c for c in given], dtype=object))
    added = {f"touch_{c}": (channel == c).astype(float) for c in channels}
    added["touch_offer_depth"] = offer_depths(feature_values(frame, "offer")) if "offer" in frame else np.zeros(rows)
    levels = pd.unique(channel) if rows >= DISTINCT_ROWS else dict.fromkeys(channel.tolist())
    for name in TOUCH_CHANNEL_FEATURES:
        values = np.full(rows, np.nan)
        for level in levels:
            column = f"{level}_{name}"
            if column in frame:
                chosen = channel == level
                source = feature_values(frame, column)[chosen]
                values[chosen] = source if source.dtype.kind in "biuf" else _floats(source)
        added[f"touched_{name}"] = values
    return added


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
        points = np.asarray(isotonic.y_thresholds_, dtype=float)
        block_sizes = _block_sizes(isotonic.predict(raw_scores), points)
        return cls(np.asarray(isotonic.X_thresholds_, dtype=float),
                   shrink_isotonic_blocks(points, block_sizes))

    def apply(self, raw_scores: np.ndarray) -> np.ndarray:
        if self.kind == "platt":
            return 1.0 / (1.0 + np.exp(-(self.slope * _logit(raw_scores) + self.intercept)))
        if len(self.raw) == 0:
            return raw_scores
        return np.interp(raw_scores, self.raw, self.calibrated)


def shrink_isotonic_blocks(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Blocks that isotonic regression set to exactly 0 or 1 get Laplace's rule of succession,
    (k + 1) / (n + 2), kept non-decreasing; every other block keeps its rate.

    No block of customers is certain to churn or to stay: 330 of 1,966 customers of a small workspace
    had a churn probability of exactly 1.0, and its 0.0 block churned at 17% on the test rows. Only the
    certain blocks change: any other block's rate is its evidence (docs/models.md)."""
    certain = (values == 0.0) | (values == 1.0)
    laplace = (values * sizes + 1.0) / (sizes + 2.0)
    return np.maximum.accumulate(np.where(certain, laplace, values))


def _block_sizes(fitted: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many fitting rows each threshold's block holds (rows fitted to the same value)."""
    distinct, counts = np.unique(fitted, return_counts=True)
    lookup = dict(zip(distinct.tolist(), counts.tolist(), strict=True))
    return np.array([lookup.get(v, 1) for v in values.tolist()], dtype=float)


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
    """churn/propensity: {"classifier"}; CLV: {"tweedie"}, {"buyer", "value"} (two_part) or {"buyer", "log_value"} (two_part_log)."""
    calibration: Calibration | None = None
    variant: str = "classifier"
    feature_service: str = ""
    channels: list[str] = field(default_factory=list)
    """Propensity: the contact channels and offers seen in training, i.e. the candidate actions."""
    offers: list[str] = field(default_factory=list)
    average_uplift: dict[str, float] | None = None
    """Propensity: each contact's uplift (P(convert | action) - P(convert | none)) averaged over the
    training rows, by action name (`email`, `email:10pct`); what `uplift_shrinkage` pulls toward."""
    uplift_shrinkage: float = 0.0
    """Propensity: 0 = each customer's own predicted uplift, 1 = the action's average uplift
    (training.uplift_shrinkage; docs/policy.md shows why the default is 1)."""
    value_smearing: float = 1.0
    """CLV two_part_log: E[1 + value | buys] = exp(prediction) x this factor (Duan's smearing, the mean
    of exp(residual) over the tuning buyers). exp of a predicted mean logarithm is a typical value, not
    the mean: without it the demo's CLV summed to 19% under the truth. 1.0 for models trained before."""
    population_days: int | None = None
    """Churn: the model learned only from customers with an order in this many days before a snapshot
    (training.churn_active_days); scoring gives no churn probability outside that population. None
    (models trained before this was kept): every customer is scored."""

    @property
    def input_columns(self) -> list[str]:
        """What callers must pass: the FeatureService's features (plus channel and offer for propensity)."""
        derived = {f"touched_{name}" for name in TOUCH_CHANNEL_FEATURES} | {f"touch_{c}" for c in self.channels}
        derived.add("touch_offer_depth")
        columns = [c for c in self.encoding.columns if c not in derived]
        return [*columns, *TOUCH_COLUMNS] if self.task == "propensity" else columns

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The encoded input as a frame (categories named): what plots and reason phrases read."""
        return self.encoding.frame_of(self._matrix(frame), frame.index)

    def _matrix(self, frame: Features) -> np.ndarray:
        return self.encoding.matrix(frame, touch_features(frame, self.channels) if self.task == "propensity" else None)

    def predict(self, frame: Features) -> np.ndarray:
        return self.predict_encoded(self._matrix(frame))

    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """Predictions for an input already encoded (`encoding.matrix`)."""
        if self.variant == "two_part":
            buyer = _predict_booster(self.boosters["buyer"], encoded)
            value = np.maximum(_predict_booster(self.boosters["value"], encoded), 0.0)
            return buyer * value
        if self.variant == "two_part_log":
            buyer = _predict_booster(self.boosters["buyer"], encoded)
            log_value = np.maximum(_predict_booster(self.boosters["log_value"], encoded), 0.0)
            return buyer * np.maximum(self.value_smearing * np.exp(log_value) - 1.0, 0.0)
        scores = _predict_booster(next(iter(self.boosters.values())), encoded)
        if self.calibration is not None:
            scores = self.calibration.apply(scores)
        return np.asarray(scores, dtype=float)

    def predict_from_contributions(self, contributions: np.ndarray) -> np.ndarray | None:
        """`predict` for the rows whose SHAP values these are (`contribution_values`: one column per
        input plus the bias), or None when the model is not one booster with a plain binary link.
        The values sum to the booster's raw score, so a caller that explains anyway skips a second
        pass over the trees; the result equals `predict` to float rounding (tested)."""
        booster = next(iter(self.boosters.values()))
        if self.variant != "classifier" or len(self.boosters) != 1 or not _plain_binary(booster):
            return None
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(contributions, dtype=float).sum(axis=1)))
        return self.calibration.apply(probabilities) if self.calibration is not None else probabilities

    def predict_touches(self, features: Features, rows: np.ndarray, channels: Sequence[str],
                        offers: Sequence[str]) -> np.ndarray:
        """Propensity of the pairs (customer at `rows[i]` of `features`, contact `channels[i]` with
        `offers[i]`): the same numbers as `predict` on the stacked frame of those rows with channel
        and offer set, but each customer's columns are encoded once, not once per candidate contact."""
        rows = np.asarray(rows, dtype=np.int64)
        encoded = self._no_contact_matrix(features)[rows]
        positions = self.encoding.positions
        for column, values in touch_features(_touch_inputs(features, rows, channels, offers), self.channels).items():
            encoded[:, positions[column]] = values
        return self.predict_encoded(encoded)

    def predict_no_contact(self, features: Features) -> np.ndarray:
        """Propensity without a contact for every customer: `predict_touches` with channel and offer
        `none` throughout, in one encoding pass."""
        return self.predict_encoded(self._no_contact_matrix(features))

    def _no_contact_matrix(self, features: Features) -> np.ndarray:
        """The encoded input with channel and offer `none` for every customer."""
        none = np.full(feature_rows(features), "none", dtype=object)
        return self.encoding.matrix(features, touch_features(_touch_inputs(features, slice(None), none, none),
                                                             self.channels))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row, per-feature contributions (log-odds or raw units) of the main booster, plus `bias`."""
        return self.explain(frame)[0]

    def explain(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Contributions and the encoded input they refer to, from one encoding pass."""
        encoded = self._matrix(frame)
        contributions = pd.DataFrame(self.contribution_values(encoded), columns=[*self.encoding.columns, "bias"],
                                     index=frame.index)
        return contributions, self.encoding.frame_of(encoded, frame.index)

    def explain_columns(self, features: Features,
                        rows: np.ndarray | None = None) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """`explain` without DataFrames: the contributions matrix (columns `encoding.columns` then
        bias) and the encoded input by column, categories named, each column built when first read
        (for a few rows, the frames cost more than the contributions; reason phrases read a handful
        of the columns). With `rows` (a boolean mask), only those rows are explained; the others'
        contributions are NaN."""
        encoded = self._matrix(features)
        if rows is None or rows.all():
            return self.contribution_values(encoded), EncodedColumns(self.encoding, encoded)
        values = np.full((len(encoded), encoded.shape[1] + 1), np.nan)
        values[rows] = self.contribution_values(encoded[rows])
        return values, EncodedColumns(self.encoding, encoded)

    def contribution_values(self, encoded: np.ndarray) -> np.ndarray:
        """Exact per-row SHAP values of the main booster for an encoded input (training/tree_tables.py:
        about 5x faster than LightGBM's `pred_contrib` for one row, same values to rounding); from
        LightGBM itself for trees too deep for the compiled kernel."""
        booster = self.boosters.get("buyer") or next(iter(self.boosters.values()))
        tables = tree_tables(booster)
        if not tables.can_explain:
            return booster.predict(encoded, pred_contrib=True)
        return tables.contributions(encoded)


def _predict_booster(booster: lightgbm.Booster, encoded: np.ndarray) -> np.ndarray:
    """LightGBM's predictions, from the compiled forest when batch scoring compiled one (same values)."""
    forest = compiled_forest(booster) if len(encoded) >= FAST_ROWS else None
    if forest is not None:
        return predict_compiled(forest, encoded)
    return booster.predict(encoded, num_threads=_threads_for(len(encoded)))


def _touch_inputs(features: Features, rows: np.ndarray | slice, channels: Sequence[str],
                  offers: Sequence[str]) -> dict[str, np.ndarray]:
    """What `touch_features` reads for contacts on `channels` with `offers` of the customers at `rows`:
    the channel, the offer, and each named channel's own engagement columns (`none_*` for no contact,
    e.g. the response rate when held out)."""
    touches: dict[str, np.ndarray] = {"channel": np.asarray(channels, dtype=object),
                                      "offer": np.asarray(offers, dtype=object)}
    for channel in dict.fromkeys(touches["channel"].tolist()):
        for name in TOUCH_CHANNEL_FEATURES:
            column = f"{channel}_{name}"
            if column in features:
                touches[column] = feature_values(features, column)[rows]
    return touches


def _plain_binary(booster: lightgbm.Booster) -> bool:
    """A binary objective with LightGBM's default sigmoid (what `fit_classifier` trains)."""
    return booster.params.get("objective") == "binary" and float(booster.params.get("sigmoid", 1.0)) == 1.0


def _threads_for(rows: int) -> int:
    """One thread for a few rows; all otherwise."""
    return 1 if rows < THREADED_ROWS else 0


def _monotone_vector(task: Task, columns: list[str]) -> list[int]:
    rules = MONOTONE.get(task, {})
    touch = task == "propensity"
    return [1 if touch and c.startswith("touch_") else rules.get(c, 0) for c in columns]


def _boost(parameters: dict, train: lightgbm.Dataset, tune: lightgbm.Dataset, rounds: int, patience: int):
    return lightgbm.train(parameters, train, num_boost_round=rounds, valid_sets=[tune],
                          callbacks=[lightgbm.early_stopping(patience, verbose=False)])


def fit_classifier(task: Task, train: pd.DataFrame, train_labels: np.ndarray, tune: pd.DataFrame,
                   tune_labels: np.ndarray, parameters: TrainingParameters, feature_service: str) -> CustomerModel:
    """Binary LightGBM with early stopping and isotonic calibration, both on the tuning rows."""
    vocabulary = {}
    if task == "propensity":
        vocabulary = {"channels": sorted(set(train["channel"].dropna()) - {"none"}),
                      "offers": sorted(set(train["offer"].fillna("none")))}
        # The raw channel and offer stay out: as categories they would let the model make contact hurt.
        train = add_touch_features(train, vocabulary["channels"]).drop(columns=list(TOUCH_COLUMNS))
        tune = add_touch_features(tune, vocabulary["channels"]).drop(columns=list(TOUCH_COLUMNS))
    encoding = FeatureEncoding.fit(train)
    train_set = lightgbm.Dataset(encoding.transform(train), label=train_labels, free_raw_data=False)
    tune_set = lightgbm.Dataset(encoding.transform(tune), label=tune_labels, reference=train_set)
    booster = _boost(parameters.lightgbm("binary", _monotone_vector(task, encoding.columns)), train_set, tune_set,
                     parameters.max_rounds, parameters.early_stopping_rounds)
    raw = booster.predict(encoding.transform(tune))
    calibration = Calibration.fit(raw, tune_labels, "platt" if task == "propensity" else "isotonic")
    return CustomerModel(task, encoding, {"classifier": booster}, calibration, "classifier", feature_service,
                         **vocabulary)


def fit_value_models(train: pd.DataFrame, train_values: np.ndarray, tune: pd.DataFrame,
                     parameters: TrainingParameters, tune_values: np.ndarray, feature_service: str) -> dict[str, CustomerModel]:
    """The CLV candidates: one Tweedie model, and P(buys) × E[value | buys] with the value learned as it
    is or as its logarithm. Net revenue is heavy-tailed, so squared error on the value itself follows
    a few big spenders; on its logarithm it ranks the rest better (CLV Spearman with the oracle's
    0.910 against 0.900 on seed 42, 0.918 against 0.908 on seed 7; the tuning rows choose)."""
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
    log_value = _boost(parameters.lightgbm("regression", monotone),
                       lightgbm.Dataset(train_x[positive], label=np.log1p(target[positive])),
                       lightgbm.Dataset(tune_x[tune_positive], label=np.log1p(tune_target[tune_positive])),
                       parameters.max_rounds, parameters.early_stopping_rounds)
    residuals = np.log1p(tune_target[tune_positive]) - log_value.predict(tune_x[tune_positive])
    smearing = float(np.mean(np.exp(residuals))) if len(residuals) else 1.0
    return {
        "tweedie": CustomerModel("clv", encoding, {"tweedie": tweedie}, None, "tweedie", feature_service),
        "two_part_log": CustomerModel("clv", encoding, {"buyer": buyer, "log_value": log_value}, None, "two_part_log",
                                      feature_service, value_smearing=smearing),
        "two_part": CustomerModel("clv", encoding, {"buyer": buyer, "value": value}, None, "two_part", feature_service),
    }
