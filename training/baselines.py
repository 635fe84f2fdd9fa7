"""Baselines each model must beat, fitted and scored in the same run as the model.

A LightGBM model is only worth shipping if it does better than what a marketer could do without
it: a logistic regression and an RFM rule for churn, last period's spend and BG/NBD + Gamma-Gamma
for CLV, and each channel's average response for conversion propensity. Every function is pure:
frames in, arrays or scoring functions out.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cdp.moments import utc_timestamp

MISSING_CATEGORY = "__missing__"
CHANNEL_PRIOR_ROWS = 20.0
SEED = 20240605


def _split_columns(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numeric (including boolean) and categorical column names; other types are not used."""
    numeric = [name for name, dtype in features.dtypes.items()
               if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)]
    categorical = [name for name, dtype in features.dtypes.items()
                   if name not in numeric and (pd.api.types.is_object_dtype(dtype)
                                               or isinstance(dtype, pd.CategoricalDtype)
                                               or pd.api.types.is_string_dtype(dtype))]
    return numeric, categorical


def _prepare_for_logistic_regression(features: pd.DataFrame, numeric: list[str],
                                     categorical: list[str]) -> pd.DataFrame:
    """Plain float64 and object columns: nullable pandas dtypes (pd.NA) trip up scikit-learn."""
    prepared = pd.DataFrame(index=features.index)
    for name in numeric:
        prepared[name] = features[name].astype("float64")
    for name in categorical:
        column = features[name].astype(object)
        prepared[name] = column.where(column.notna(), MISSING_CATEGORY).astype(str)
    return prepared


def fit_logistic_regression(features: pd.DataFrame, labels) -> Callable[[pd.DataFrame], np.ndarray]:
    """Fit the linear baseline and return a function giving P(label = 1) for a feature frame.

    Numeric columns are median-imputed with missing indicators and standardized; object and
    category columns are one-hot encoded (categories unseen in training are ignored). Columns of
    other types (datetimes) are not used. Pass only model inputs, not identifiers. With a single
    class in `labels` the function returns that class's rate: there is nothing to learn.
    """
    numeric, categorical = _split_columns(features)
    target = np.asarray(labels, dtype="float64").ravel()
    if len(np.unique(target)) < 2:
        rate = float(target.mean()) if len(target) else 0.0
        return lambda frame: np.full(len(frame), rate)
    preprocess = ColumnTransformer(
        [("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                 keep_empty_features=True), StandardScaler()), numeric),
         ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)],
        remainder="drop",
    )
    pipeline = Pipeline([("preprocess", preprocess), ("model", LogisticRegression(max_iter=1000))])
    pipeline.fit(_prepare_for_logistic_regression(features, numeric, categorical), target.astype(int))

    def predict_probability(frame: pd.DataFrame) -> np.ndarray:
        prepared = _prepare_for_logistic_regression(frame, numeric, categorical)
        return pipeline.predict_proba(prepared)[:, 1]

    return predict_probability


def _quintile_score(values: pd.Series, higher_is_better: bool) -> np.ndarray:
    """1-5 by quintile of rank within the frame (5 = best); ties share a score, missing = 1."""
    ranks = (values if higher_is_better else -values).rank(method="average", pct=True)
    scores = np.ceil(ranks * 5).clip(1, 5)
    return scores.fillna(1).to_numpy(dtype="float64")


def score_rfm_churn(features: pd.DataFrame) -> np.ndarray:
    """Churn risk in [0, 1] from the classic RFM rule, higher = more likely to churn.

    Recency (`days_since_last_order`, fewer days = better), frequency (`orders_365d`) and
    monetary value (`net_revenue_365d`) each get a quintile score 1-5 within the given frame;
    risk = (15 - R - F - M) / 12. A missing value scores 1 (no order known = the worst case).
    """
    recency = _quintile_score(features["days_since_last_order"].astype("float64"), higher_is_better=False)
    frequency = _quintile_score(features["orders_365d"].astype("float64"), higher_is_better=True)
    monetary = _quintile_score(features["net_revenue_365d"].astype("float64"), higher_is_better=True)
    return (15.0 - recency - frequency - monetary) / 12.0


def predict_last_period_spend(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """CLV as "the next period looks like the last year": net revenue of 365 days, pro rata."""
    revenue = features["net_revenue_365d"].astype("float64").fillna(0.0).to_numpy()
    return revenue * horizon_days / 365.0


def fit_channel_average_response(channels: pd.Series, converted,
                                 prior_rows: float = CHANNEL_PRIOR_ROWS) -> Callable[[pd.Series], np.ndarray]:
    """Fit each channel's conversion rate and return a function scoring channels with it.

    The propensity model must beat "send on the channel that usually works". A channel's rate is
    shrunk toward the overall rate as if it had `prior_rows` extra rows at that rate, so a channel
    seen a handful of times is not scored 0 or 1; a channel not seen in training gets the overall
    rate. A missing channel is a channel of its own.
    """
    outcome = np.asarray(converted, dtype="float64").ravel()
    keys = _channel_keys(channels)
    if len(keys) != len(outcome):
        raise ValueError(f"channels has {len(keys)} rows, converted has {len(outcome)}")
    overall = float(outcome.mean()) if len(outcome) else 0.0
    grouped = pd.DataFrame({"channel": keys, "converted": outcome}).groupby("channel")["converted"]
    rates = (grouped.sum() + prior_rows * overall) / (grouped.size() + prior_rows)

    def predict_response(new_channels: pd.Series) -> np.ndarray:
        return _channel_keys(new_channels).map(rates).fillna(overall).to_numpy(dtype="float64")

    return predict_response


def _channel_keys(channels) -> pd.Series:
    values = pd.Series(channels).reset_index(drop=True).astype(object)
    return values.where(values.notna(), MISSING_CATEGORY).astype(str)


def _summarize_transactions(transactions: pd.DataFrame, as_of) -> pd.DataFrame:
    """Per-customer frequency, recency, T (days) and monetary value, as BG/NBD and Gamma-Gamma expect.

    Orders are grouped by calendar day (UTC), as in `lifetimes` and PyMC-Marketing's rfm_summary:
    frequency = purchase days after the first, recency = days from the first to the last purchase
    day, T = days from the first purchase day to `as_of`, monetary_value = mean net amount of the
    repeat purchase days (0 with no repeat). Orders at or after `as_of` are ignored.
    """
    as_of = utc_timestamp(as_of).tz_convert(None)
    ordered_at = pd.to_datetime(transactions["ordered_at"], utc=True).dt.tz_convert(None)
    known = (ordered_at < as_of).to_numpy()
    days = (pd.DataFrame({"customer_id": transactions["customer_id"].astype(str).to_numpy()[known],
                          "day": ordered_at.dt.floor("D").to_numpy()[known],
                          "net_amount": transactions["net_amount"].astype("float64").fillna(0.0).to_numpy()[known]})
            .groupby(["customer_id", "day"], sort=True)["net_amount"].sum()
            .reset_index())
    if days.empty:
        return pd.DataFrame({"customer_id": pd.Series(dtype=object), "frequency": pd.Series(dtype="float64"),
                             "recency": pd.Series(dtype="float64"), "T": pd.Series(dtype="float64"),
                             "monetary_value": pd.Series(dtype="float64")})
    first_day = days.groupby("customer_id", sort=False)["day"].transform("min")
    days["repeat_amount"] = days["net_amount"].where(days["day"] > first_day)
    summary = days.groupby("customer_id", sort=True).agg(
        first=("day", "min"), last=("day", "max"), purchase_days=("day", "size"),
        monetary_value=("repeat_amount", "mean"))
    one_day = pd.Timedelta(days=1)
    return pd.DataFrame({
        "customer_id": summary.index.to_numpy(),
        "frequency": (summary["purchase_days"] - 1).to_numpy(dtype="float64"),
        "recency": ((summary["last"] - summary["first"]) / one_day).to_numpy(dtype="float64"),
        "T": ((as_of - summary["first"]) / one_day).to_numpy(dtype="float64"),
        "monetary_value": summary["monetary_value"].fillna(0.0).to_numpy(dtype="float64"),
    })


@contextlib.contextmanager
def _quiet_pymc() -> Iterator[None]:
    """Silence PyMC / PyTensor / PyMC-Marketing logs and warnings for the duration of a fit."""
    loggers = [logging.getLogger(name) for name in ("pymc", "pytensor", "pymc_marketing", "arviz")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _point_estimate(values) -> pd.Series:
    """MAP predictions (one chain, one draw) as a Series indexed by customer_id."""
    reduced = values.mean([dim for dim in ("chain", "draw") if dim in values.dims])
    return reduced.to_series()


def predict_bgnbd_gamma_gamma(transactions: pd.DataFrame, as_of, horizon_days: int,
                              customers: Sequence[str]) -> np.ndarray:
    """Expected net spend over `horizon_days` after `as_of` from BG/NBD x Gamma-Gamma, per customer.

    The textbook CLV model the LightGBM CLV model must beat. `transactions` holds customer_id,
    ordered_at (UTC) and net_amount (order minus what was returned of it, as known at `as_of`).
    Both models are fitted by MAP with PyMC-Marketing (fast and deterministic; we need a point
    prediction, not a posterior). Expected CLV = expected purchase days in the horizon x expected
    net amount per purchase day.

    Gamma-Gamma needs a positive mean spend: it is fitted on repeat customers whose mean repeat
    net amount is positive, and predicted for everyone with that mean clipped at 0, so a customer
    who returned everything is shrunk toward 0 and a one-time buyer gets the population mean
    spend. If fewer than two customers qualify (or the fit has no finite mean), the mean positive
    repeat amount (else the mean positive order amount) stands in for every customer.
    Customers in `customers` without any transaction get 0: the models describe how buyers
    repeat, not whether someone who never bought will start. The result is aligned with
    `customers`.
    """
    summary = _summarize_transactions(transactions, as_of)
    result = pd.Series(0.0, index=pd.Index([str(customer) for customer in customers]))
    if summary.empty:
        return result.to_numpy()

    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    with _quiet_pymc():
        purchase_model = BetaGeoModel()
        purchase_model.fit(data=summary[["customer_id", "frequency", "recency", "T"]], method="map",
                           progressbar=False, seed=SEED)
        purchases = _point_estimate(purchase_model.expected_purchases(
            data=summary[["customer_id", "frequency", "recency", "T"]], future_t=horizon_days))
        known = pd.to_datetime(transactions["ordered_at"], utc=True) < utc_timestamp(as_of)
        spend = _expected_spend(summary, GammaGammaModel, transactions.loc[known, "net_amount"])

    value = (purchases.reindex(summary["customer_id"]).to_numpy()
             * spend.reindex(summary["customer_id"]).to_numpy())
    value = pd.Series(np.where(np.isfinite(value), value, 0.0), index=summary["customer_id"].to_numpy())
    return value.reindex(result.index).fillna(0.0).to_numpy(dtype="float64")


def _expected_spend(summary: pd.DataFrame, gamma_gamma_class, known_amounts: pd.Series) -> pd.Series:
    """Gamma-Gamma expected net amount per purchase day, indexed by customer_id."""
    repeat = summary.loc[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    spend_data = summary[["customer_id", "frequency"]].assign(
        monetary_value=summary["monetary_value"].clip(lower=0.0))
    if len(repeat) >= 2:
        spend_model = gamma_gamma_class()
        spend_model.fit(data=repeat[["customer_id", "frequency", "monetary_value"]], method="map",
                        progressbar=False, seed=SEED)
        population_mean = float(spend_model.expected_new_customer_spend().mean())
        if np.isfinite(population_mean) and population_mean > 0:
            spend = _point_estimate(spend_model.expected_customer_spend(data=spend_data))
            return spend.reindex(summary["customer_id"])
    amounts = repeat["monetary_value"] if len(repeat) else known_amounts.astype("float64")
    positive = amounts[amounts > 0]
    fallback = float(positive.mean()) if len(positive) else 0.0
    return pd.Series(fallback, index=summary["customer_id"].to_numpy())
