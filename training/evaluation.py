"""Models next to the simulator's oracle, on the same out-of-time test rows.

The oracle knows each person's true probabilities; scoring it on our customers' realized labels
gives the ceiling a model could reach on that data. Customers map to the person most of their
records belong to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training import metrics


def person_of_customer(identity_map: pd.DataFrame, record_person: pd.DataFrame) -> pd.Series:
    """customer_id -> the person most of its records belong to."""
    joined = identity_map.merge(record_person, on=["source", "source_id"], how="inner")
    counts = joined.groupby(["customer_id", "person_id"]).size().rename("records").reset_index()
    best = counts.sort_values(["customer_id", "records", "person_id"], ascending=[True, False, True])
    return best.drop_duplicates("customer_id").set_index("customer_id")["person_id"]


def oracle_day(snapshot: pd.Timestamp) -> str:
    """The oracle's as-of day is the last day known before a snapshot at midnight."""
    return (pd.Timestamp(snapshot).tz_convert("UTC") - pd.Timedelta(days=1)).date().isoformat()


def _rows_with_truth(validation: pd.DataFrame, people: pd.Series, truth_at) -> pd.DataFrame:
    """The test rows joined to the oracle's answer (person_id + value) at each snapshot."""
    rows = _with_person(validation, people)
    truth = pd.concat([truth_at(oracle_day(t)).assign(event_timestamp=t) for t in rows["event_timestamp"].unique()])
    return rows.merge(truth, on=["person_id", "event_timestamp"], how="inner")


def compare_churn(validation: pd.DataFrame, people: pd.Series, oracle, horizon_days: int) -> dict:
    rows = _rows_with_truth(validation, people, lambda day: oracle.churn_probability(day, horizon_days=horizon_days))
    model, best = (metrics.classification_metrics(rows["label"], rows[c]) for c in ("prediction", "p_no_purchase"))
    return {"rows": len(rows), "model_roc_auc": model["roc_auc"], "oracle_roc_auc": best["roc_auc"],
            "ratio_to_oracle": model["roc_auc"] / best["roc_auc"], "model_ece": model["ece"],
            "oracle_ece": best["ece"], "bar": "model_roc_auc >= 0.95 x oracle_roc_auc and model_ece <= 0.02"}


def compare_clv(validation: pd.DataFrame, people: pd.Series, oracle, horizon_days: int) -> dict:
    rows = _rows_with_truth(validation, people, lambda day: oracle.expected_net_revenue(day, horizon_days=horizon_days))
    model, best = (metrics.regression_metrics(rows["label"], rows[c]) for c in ("prediction", "expected_net_revenue"))
    return {"rows": len(rows), "model_spearman": model["spearman"], "oracle_spearman": best["spearman"],
            "ratio_to_oracle": model["spearman"] / best["spearman"], "model_normalized_gini": model["normalized_gini"],
            "oracle_normalized_gini": best["normalized_gini"], "bar": "model_spearman >= 0.90 x oracle_spearman"}


def compare_propensity(validation: pd.DataFrame, people: pd.Series, oracle, window_days: int) -> dict:
    """Predicted uplift per channel against the oracle's true uplift (no offer), per test row; and
    the model's conversion AUC next to the oracle's true probability of the touch each row received."""
    rows = _with_person(validation, people)
    rows = rows.assign(day=rows["event_timestamp"].dt.floor("D"))
    channels = [c.removeprefix("uplift_") for c in rows.columns if c.startswith("uplift_")]
    uplift_frames, received = [], []
    for day, on_day in rows.groupby("day"):
        for offer in sorted(on_day["offer"].unique()):
            truth = oracle.conversion_probability(oracle_day(day), window_days=window_days,
                                                  offer=None if offer == "none" else offer)
            chosen = on_day[on_day["offer"] == offer].merge(truth, on="person_id", how="inner")
            received.append(chosen.assign(oracle_probability=[r[c] for r, c in zip(
                chosen[list(truth.columns.drop("person_id"))].to_dict("records"), chosen["channel"], strict=True)]))
            if offer == "none":
                uplift = truth[["person_id"]].assign(day=day)
                for channel in channels:
                    uplift[f"true_uplift_{channel}"] = truth[channel] - truth["none"]
                uplift_frames.append(uplift)
    scored = pd.concat(received, ignore_index=True)
    model_scores = metrics.classification_metrics(scored["label"], scored["prediction"])
    oracle_scores = metrics.classification_metrics(scored["label"], scored["oracle_probability"])
    paired = rows.merge(pd.concat(uplift_frames), on=["person_id", "day"], how="inner")
    predicted = paired[[f"uplift_{c}" for c in channels]].to_numpy().ravel()
    actual = paired[[f"true_uplift_{c}" for c in channels]].to_numpy().ravel()
    top = max(1, len(predicted) // 10)
    return {
        "rows": len(scored), "model_roc_auc": model_scores["roc_auc"], "oracle_roc_auc": oracle_scores["roc_auc"],
        "ratio_to_oracle": model_scores["roc_auc"] / oracle_scores["roc_auc"],
        "customer_channel_pairs": len(predicted),
        "uplift_spearman_with_true": float(pd.Series(predicted).corr(pd.Series(actual), method="spearman")),
        "true_uplift_mean": float(actual.mean()),
        "true_uplift_of_model_top_decile": float(actual[np.argsort(-predicted, kind="stable")[:top]].mean()),
        "true_uplift_of_best_top_decile": float(np.sort(actual)[::-1][:top].mean()),
    }


def _with_person(validation: pd.DataFrame, people: pd.Series) -> pd.DataFrame:
    rows = validation.assign(event_timestamp=pd.to_datetime(validation["event_timestamp"], utc=True))
    return rows.assign(person_id=rows["customer_id"].map(people)).dropna(subset=["person_id"])


TRUTH_MATCH_SHARE = 0.9
"""Share of the workspace's records the truth must know: less, and it is another simulation's truth."""


class TruthMismatchError(ValueError):
    """The truth directory does not describe the data this workspace ingested."""


def check_truth_matches(identity_map: pd.DataFrame, record_person: pd.DataFrame, truth_dir: Path) -> None:
    """Refuse another simulation's truth: its record ids overlap the workspace's only by chance, and
    the comparison would be nonsense (an oracle AUC of 0.5, ratios above 1)."""
    keys = identity_map["source"].astype(str) + ":" + identity_map["source_id"].astype(str)
    known = keys.isin(set(record_person["source"].astype(str) + ":" + record_person["source_id"].astype(str)))
    if len(keys) and known.mean() < TRUTH_MATCH_SHARE:
        raise TruthMismatchError(
            f"{truth_dir} knows only {known.mean():.0%} of this workspace's {len(keys):,} records (at least "
            f"{TRUTH_MATCH_SHARE:.0%} expected): it is the truth of another simulation; pass the --truth of the "
            "data this workspace ingested")


def evaluate_against_oracle(validation_files: dict[str, Path], identity_map: pd.DataFrame, truth_dir: Path,
                            horizons: dict[str, int]) -> dict[str, dict]:
    """Every model with a validation file, next to the oracle."""
    from features.simulator import Oracle

    oracle = Oracle.load(truth_dir)
    records = oracle.record_map()
    check_truth_matches(identity_map, records, truth_dir)
    people = person_of_customer(identity_map, records)
    comparisons = {"churn": compare_churn, "clv": compare_clv, "propensity": compare_propensity}
    return {task: comparisons[task](pd.read_parquet(path), people, oracle, horizons[task])
            for task, path in validation_files.items() if path.exists()}
