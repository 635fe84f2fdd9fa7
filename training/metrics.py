"""Model metrics logged beside every model and baseline: ranking, calibration, gains and uplift.

All functions are pure: arrays or Series in, numbers or DataFrames out. Where scores tie, the
metrics use the expected value over every order of the tied rows (each tied row counts as the mean
of its group), so a model that predicts few distinct values (an RFM rule, a constant) is neither
rewarded nor punished by the arbitrary order of its ties.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

DECILES = 10


def _as_float_array(values) -> np.ndarray:
    return np.asarray(values, dtype="float64").ravel()


def _check_same_length(*arrays: np.ndarray) -> None:
    if len({len(array) for array in arrays}) > 1:
        raise ValueError(f"inputs have different lengths: {[len(array) for array in arrays]}")


def _sort_with_tied_means(values: np.ndarray, order_by: np.ndarray) -> np.ndarray:
    """`values` ordered by `order_by` descending, each group of tied `order_by` replaced by its mean.

    The mean is what a tied row contributes on average over all orders of the ties, so metrics built
    on this do not depend on how ties happen to be broken.
    """
    if len(values) == 0:
        return values
    order = np.argsort(-order_by, kind="stable")
    sorted_values = values[order]
    sorted_keys = order_by[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_keys)])
    group_means = np.add.reduceat(sorted_values, starts) / sizes
    return np.repeat(group_means, sizes)


def _decile_bounds(rows: int) -> list[tuple[int, int]]:
    """Start and end positions of 10 equal-count slices (sizes differ by at most one row)."""
    edges = np.linspace(0, rows, DECILES + 1).round().astype(int)
    return [(int(start), int(end)) for start, end in zip(edges[:-1], edges[1:], strict=True)]


def calibration_table(y_true, y_score, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against observed rate in equal-width score bins on [0, 1].

    Feeds the calibration-curve plot and the expected calibration error; only bins holding rows
    are listed. `bin` is 1 for scores in [0, 1/bins) up to `bins` for [1 - 1/bins, 1].
    """
    labels = _as_float_array(y_true)
    scores = np.clip(_as_float_array(y_score), 0.0, 1.0)
    _check_same_length(labels, scores)
    if np.isnan(scores).any():
        raise ValueError("y_score contains NaN")
    bin_index = np.minimum((scores * bins).astype(int), bins - 1) + 1
    table = (
        pd.DataFrame({"bin": bin_index, "score": scores, "label": labels})
        .groupby("bin", sort=True)
        .agg(mean_predicted=("score", "mean"), observed_rate=("label", "mean"), rows=("label", "size"))
        .reset_index()
    )
    return table.astype({"bin": "int64", "rows": "int64"})


def expected_calibration_error(y_true, y_score, bins: int = 10) -> float:
    """Row-weighted mean of |mean predicted - observed rate| over equal-width bins on [0, 1].

    A probability we show marketers should mean what it says; ROC-AUC alone cannot tell that.
    """
    table = calibration_table(y_true, y_score, bins)
    if table.empty:
        return math.nan
    gaps = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((gaps * table["rows"]).sum() / table["rows"].sum())


def classification_metrics(y_true, y_score) -> dict[str, float]:
    """Ranking (ROC-AUC, PR-AUC), accuracy of the probabilities (Brier, ECE) and the base rate.

    ROC-AUC and PR-AUC are NaN when only one class is present, so a tiny validation window is
    reported instead of crashing the run.
    """
    labels = _as_float_array(y_true)
    scores = _as_float_array(y_score)
    _check_same_length(labels, scores)
    both_classes = len(np.unique(labels)) == 2
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, scores)) if both_classes else math.nan,
        "brier": float(np.mean((scores - labels) ** 2)) if len(labels) else math.nan,
        "ece": expected_calibration_error(labels, scores),
        "positive_rate": float(labels.mean()) if len(labels) else math.nan,
        "rows": float(len(labels)),
    }


def gains_by_decile(y_true, y_score) -> pd.DataFrame:
    """Rows ranked by score and cut into 10 equal-count deciles (decile 1 = highest scores).

    Answers "if we contact the top x%, how much of the outcome do we reach": `positives` is the
    count of positives (binary labels) or the sum of the value (CLV), `rate` its mean per row,
    `cumulative_share_captured` the running share of the total (NaN when the total is not
    positive) and `lift` the rate over the overall rate (NaN when the overall rate is 0).
    Tied scores share their group's mean value, so `positives` can be fractional with ties.
    """
    values = _as_float_array(y_true)
    scores = _as_float_array(y_score)
    _check_same_length(values, scores)
    ranked = _sort_with_tied_means(values, scores)
    total = ranked.sum()
    overall_rate = total / len(ranked) if len(ranked) else math.nan
    records = []
    for decile, (start, end) in enumerate(_decile_bounds(len(ranked)), start=1):
        if end > start:
            records.append({"decile": decile, "rows": end - start, "positives": ranked[start:end].sum()})
    gains = pd.DataFrame(records, columns=["decile", "rows", "positives"])
    gains["rate"] = gains["positives"] / gains["rows"]
    gains["cumulative_share_captured"] = gains["positives"].cumsum() / total if total > 0 else math.nan
    gains["lift"] = gains["rate"] / overall_rate if overall_rate else math.nan
    return gains.astype({"decile": "int64", "rows": "int64", "positives": "float64"})


def _gini_numerator(values_in_rank_order: np.ndarray) -> float:
    """Area between the cumulative-value curve and the diagonal, up to a factor that cancels."""
    rows = len(values_in_rank_order)
    return float(np.cumsum(values_in_rank_order).sum() - values_in_rank_order.sum() * (rows + 1) / 2)


def normalized_gini(y_true, y_pred) -> float:
    """Gini of `y_true` ordered by `y_pred` divided by the Gini of `y_true` ordered by itself.

    The Kaggle-style normalized Gini: 1 for a perfect ranking, -1 for the reversed one, 0 for a
    constant prediction. Written without dividing by the total, so it also works when values are
    negative or sum to zero; NaN when every `y_true` is equal.
    """
    values = _as_float_array(y_true)
    predictions = _as_float_array(y_pred)
    _check_same_length(values, predictions)
    best = _gini_numerator(np.sort(values)[::-1])
    if len(values) == 0 or best == 0:
        return math.nan
    return _gini_numerator(_sort_with_tied_means(values, predictions)) / best


def top_decile_capture(y_true, y_pred) -> float:
    """Share of the positive value held by the 10% of rows with the highest predictions.

    Uses the positive part max(y, 0), so the share stays in [0, 1] even when returns make some
    values (or the total) negative; with no negative values it is the plain share of the total.
    NaN when no value is positive. Ties at the cut count at their group's mean.
    """
    values = _as_float_array(y_true)
    predictions = _as_float_array(y_pred)
    _check_same_length(values, predictions)
    positive = np.clip(values, 0.0, None)
    if positive.sum() <= 0:
        return math.nan
    top_rows = math.ceil(len(values) / DECILES)
    return float(_sort_with_tied_means(positive, predictions)[:top_rows].sum() / positive.sum())


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """CLV metrics: ranking (Spearman, normalized Gini, top-decile capture) and size of errors.

    `aggregate_error` is (sum predicted - sum true) / |sum true|: whether the book's total value
    is right, which per-customer errors hide. NaN where a metric is undefined (constant inputs,
    zero total).
    """
    values = _as_float_array(y_true)
    predictions = _as_float_array(y_pred)
    _check_same_length(values, predictions)
    varied = len(values) > 1 and np.ptp(values) > 0 and np.ptp(predictions) > 0
    total = values.sum()
    return {
        "spearman": float(spearmanr(values, predictions).statistic) if varied else math.nan,
        "normalized_gini": normalized_gini(values, predictions),
        "top_decile_capture": top_decile_capture(values, predictions),
        "mae": float(np.mean(np.abs(predictions - values))) if len(values) else math.nan,
        "aggregate_error": float((predictions.sum() - total) / abs(total)) if total != 0 else math.nan,
        "rows": float(len(values)),
    }


def _uplift_inputs(treated, converted, uplift_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    treatment = _as_float_array(treated)
    outcome = _as_float_array(converted)
    scores = _as_float_array(uplift_score)
    _check_same_length(treatment, outcome, scores)
    return treatment, outcome, scores


def qini_coefficient(treated, converted, uplift_score) -> float:
    """Area between the Qini curve of the uplift ranking and random targeting, per row squared.

    Rows are ranked by `uplift_score` (highest first). After targeting the top k rows the Qini
    curve is Q(k) = conversions among treated - conversions among control * treated / control
    (the control term is 0 while no control row has been reached): incremental conversions. Both
    axes are divided by the number of rows N, so x is the share targeted and y the incremental
    conversions per customer; the coefficient is the area under that curve minus the area under
    the straight line to Q(N)/N (random targeting). Positive = better than random, 0 = random.
    Tied scores are one step of the curve (trapezoid), so tie order does not matter.
    """
    treatment, outcome, scores = _uplift_inputs(treated, converted, uplift_score)
    rows = len(scores)
    if rows == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    treatment, outcome, sorted_scores = treatment[order], outcome[order], scores[order]
    treated_rows = np.cumsum(treatment)
    control_rows = np.cumsum(1 - treatment)
    treated_conversions = np.cumsum(outcome * treatment)
    control_conversions = np.cumsum(outcome * (1 - treatment))
    scaled_control = np.divide(control_conversions * treated_rows, control_rows,
                               out=np.zeros(rows), where=control_rows > 0)
    qini = treated_conversions - scaled_control
    group_ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    share_targeted = np.r_[0.0, (group_ends + 1) / rows]
    incremental_per_row = np.r_[0.0, qini[group_ends] / rows]
    area = float(np.sum(np.diff(share_targeted) * (incremental_per_row[1:] + incremental_per_row[:-1]) / 2))
    return area - incremental_per_row[-1] / 2


def uplift_by_decile(treated, converted, uplift_score) -> pd.DataFrame:
    """Observed uplift (treated rate - control rate) in each decile of predicted uplift.

    A well-ranked uplift model shows observed uplift falling from decile 1 (highest scores) to 10.
    Deciles are equal-count slices of the stable sort by score; a rate is NaN when its group has
    no rows in that decile.
    """
    treatment, outcome, scores = _uplift_inputs(treated, converted, uplift_score)
    order = np.argsort(-scores, kind="stable")
    treatment, outcome, scores = treatment[order], outcome[order], scores[order]
    records = []
    for decile, (start, end) in enumerate(_decile_bounds(len(scores)), start=1):
        if end == start:
            continue
        is_treated = treatment[start:end] == 1
        decile_outcome = outcome[start:end]
        treated_rate = decile_outcome[is_treated].mean() if is_treated.any() else math.nan
        control_rate = decile_outcome[~is_treated].mean() if (~is_treated).any() else math.nan
        records.append({
            "decile": decile,
            "rows": end - start,
            "treated_rows": int(is_treated.sum()),
            "control_rows": int((~is_treated).sum()),
            "mean_score": float(scores[start:end].mean()),
            "treated_rate": treated_rate,
            "control_rate": control_rate,
            "observed_uplift": treated_rate - control_rate,
        })
    return pd.DataFrame(records, columns=["decile", "rows", "treated_rows", "control_rows", "mean_score",
                                          "treated_rate", "control_rate", "observed_uplift"])
