"""`cdp report drift`: the features the champions score today against the rows they were trained on.

For each champion model the training rows are rebuilt from its run's `lineage.json` (snapshot times,
validation start, horizon) with the same label rules and the same point-in-time retrieval through
its FeatureService as `cdp train`; when nothing was sampled, the rebuilt inputs are checked against
the lineage's `input_hash`. The scoring rows are every customer known at the as-of time, with the
features scoring reads. Per feature, a population stability index (PSI); for the model, the PSI of
its predictions on both sets of rows. Features and predictions past `drift.psi_warning` /
`drift.psi_alert` are flagged.

The statistics and the HTML are pure functions of frames; reading the registry, rebuilding rows,
writing data/reports/drift.{html,json} and logging to MLflow are the I/O edge at the bottom.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cdp.config import DriftSettings, Settings
from cdp.moments import utc_timestamp
from cdp.workspace import Workspace

MISSING_BIN = "(missing)"
OTHER_BIN = "(other)"
Status = Literal["ok", "warning", "alert"]
log = logging.getLogger("cdp.training")


class DriftError(RuntimeError):
    """The report cannot be made (no champion, no scores, no features); the message says what to run."""


# --- pure statistics ---------------------------------------------------------------------------------

def is_numeric_feature(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def numeric_bin_edges(reference: pd.Series | np.ndarray, bins: int) -> np.ndarray:
    """Interior quantile edges of the reference's non-missing values (repeated quantiles merged):
    each bin holds about 1/bins of the training rows."""
    values = pd.to_numeric(pd.Series(reference), errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.array([], dtype=float)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def numeric_bin_labels(edges: np.ndarray) -> list[str]:
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    return [f"({low}, {high}]" for low, high in zip(bounds[:-1], bounds[1:], strict=True)] + [MISSING_BIN]


def numeric_bin_shares(values: pd.Series | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of rows per bin (-inf, e0], (e0, e1], ..., (e_last, inf), then missing."""
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    missing = ~np.isfinite(numbers)
    counts = np.bincount(np.searchsorted(edges, numbers[~missing], side="left"), minlength=len(edges) + 1)
    counts = np.append(counts, missing.sum()).astype(float)
    return counts / max(len(numbers), 1)


def categorical_bins(reference: pd.Series, max_categories: int) -> list[str]:
    """The reference's most common categories (at most `max_categories`), then `(other)` and `(missing)`."""
    common = reference.dropna().astype(str).value_counts().index[:max_categories].tolist()
    return [*sorted(common), OTHER_BIN, MISSING_BIN]


def categorical_bin_shares(values: pd.Series, labels: list[str]) -> np.ndarray:
    named = set(labels) - {OTHER_BIN, MISSING_BIN}
    text = values.astype(object).where(values.notna(), None)
    binned = [MISSING_BIN if v is None else (str(v) if str(v) in named else OTHER_BIN) for v in text]
    counts = pd.Series(binned, dtype=object).value_counts()
    return counts.reindex(labels, fill_value=0).to_numpy(dtype=float) / max(len(binned), 1)


def psi_from_shares(reference: np.ndarray, current: np.ndarray, minimum_share: float = 1e-4) -> float:
    """sum((current - reference) * ln(current / reference)) over bins, shares floored so an empty bin
    counts as a large but finite shift."""
    expected = np.maximum(np.asarray(reference, dtype=float), minimum_share)
    actual = np.maximum(np.asarray(current, dtype=float), minimum_share)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def population_stability_index(reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray,
                               bins: int = 10, minimum_share: float = 1e-4, max_categories: int = 30) -> float:
    """PSI of `current` against `reference`: quantile bins of the reference for numbers, one bin per
    category otherwise; missing values are a bin of their own. 0 = same distribution; 0.1 moderate
    shift; 0.25 and above a major one (the usual reading)."""
    return _binned_comparison(pd.Series(reference), pd.Series(current), bins, minimum_share, max_categories)["psi"]


def _binned_comparison(reference: pd.Series, current: pd.Series, bins: int, minimum_share: float,
                       max_categories: int) -> dict[str, Any]:
    if is_numeric_feature(reference) and (is_numeric_feature(current) or current.isna().all()):
        edges = numeric_bin_edges(reference, bins)
        labels = numeric_bin_labels(edges)
        expected, actual = numeric_bin_shares(reference, edges), numeric_bin_shares(current, edges)
        kind = "numeric"
    else:
        labels = categorical_bins(reference, max_categories)
        expected, actual = categorical_bin_shares(reference, labels), categorical_bin_shares(current, labels)
        kind = "categorical"
    contributions = (np.maximum(actual, minimum_share) - np.maximum(expected, minimum_share)) * np.log(
        np.maximum(actual, minimum_share) / np.maximum(expected, minimum_share))
    largest = int(np.argmax(contributions)) if len(contributions) else 0
    return {"kind": kind, "psi": float(contributions.sum()), "largest_shift_bin": labels[largest],
            "largest_shift_reference_share": float(expected[largest]), "largest_shift_current_share": float(actual[largest])}


def drift_status(psi: float, settings: DriftSettings) -> Status:
    if not np.isfinite(psi):
        return "ok"
    if psi >= settings.psi_alert:
        return "alert"
    return "warning" if psi >= settings.psi_warning else "ok"


def compare_feature_distributions(reference: pd.DataFrame, current: pd.DataFrame, features: list[str],
                                  settings: DriftSettings) -> pd.DataFrame:
    """One row per feature, largest PSI first: kind, psi, status, the bin that moved most, missing
    shares and (numeric) means on both sides."""
    rows = []
    for feature in features:
        before = reference[feature] if feature in reference else pd.Series(dtype=float)
        after = current[feature] if feature in current else pd.Series([None] * len(current), dtype=object)
        compared = _binned_comparison(before.reset_index(drop=True), after.reset_index(drop=True), settings.bins,
                                      settings.minimum_share, settings.max_categories)
        numeric = compared["kind"] == "numeric"
        rows.append({
            "feature": feature, **compared, "status": drift_status(compared["psi"], settings),
            "reference_missing": float(before.isna().mean()) if len(before) else float("nan"),
            "current_missing": float(after.isna().mean()) if len(after) else float("nan"),
            "reference_mean": float(pd.to_numeric(before, errors="coerce").mean()) if numeric else None,
            "current_mean": float(pd.to_numeric(after, errors="coerce").mean()) if numeric else None,
        })
    columns = ["feature", "kind", "psi", "status", "largest_shift_bin", "largest_shift_reference_share",
               "largest_shift_current_share", "reference_missing", "current_missing", "reference_mean", "current_mean"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["psi", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)


def compare_predictions(reference: np.ndarray, current: np.ndarray, settings: DriftSettings) -> dict[str, Any]:
    """PSI of the model's predictions on the training rows against the scoring rows, with the means."""
    compared = _binned_comparison(pd.Series(reference, dtype=float), pd.Series(current, dtype=float), settings.bins,
                                  settings.minimum_share, settings.max_categories)
    return {"psi": compared["psi"], "status": drift_status(compared["psi"], settings),
            "reference_mean": float(np.nanmean(reference)) if len(reference) else None,
            "current_mean": float(np.nanmean(current)) if len(current) else None,
            "largest_shift_bin": compared["largest_shift_bin"]}


def summarize_drift(models: dict[str, dict]) -> dict[str, Any]:
    """Counts of flagged features and predictions over every model."""
    flagged = {status: sorted({f"{task}:{row['feature']}" for task, entry in models.items()
                               for row in entry["features"] if row["status"] == status})
               for status in ("alert", "warning")}
    predictions = {task: entry["prediction"]["status"] for task, entry in models.items()}
    worst = "alert" if flagged["alert"] or "alert" in predictions.values() else (
        "warning" if flagged["warning"] or "warning" in predictions.values() else "ok")
    return {"status": worst, "features_alert": flagged["alert"], "features_warning": flagged["warning"],
            "predictions": predictions}


def render_drift_html(report: dict[str, Any]) -> str:
    """A self-contained page: one table per model, flagged rows highlighted; no scripts."""
    escape = html.escape

    def number(value, digits=4) -> str:
        return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}g}"

    thresholds = report["thresholds"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f2f2f2}"
        "td.name{text-align:left}tr.alert td{background:#f8d0d0}tr.warning td{background:#fff1c2}"
        ".badge{padding:2px 6px;border-radius:3px}.alert .badge,.badge.alert{background:#c62828;color:#fff}"
        ".warning .badge,.badge.warning{background:#f9a825}.badge.ok{background:#c8e6c9}",
        "</style></head><body>",
        f"<h1>Drift report as of {escape(report['as_of'])}</h1>",
        f"<p>Generated {escape(report['generated_at'])}. Population stability index (PSI) of the scoring rows "
        f"against each champion's training rows; warning from {thresholds['psi_warning']}, alert from "
        f"{thresholds['psi_alert']}. Overall: <span class='badge {escape(report['summary']['status'])}'>"
        f"{escape(report['summary']['status'])}</span></p>",
    ]
    for task, entry in report["models"].items():
        prediction = entry["prediction"]
        parts += [
            f"<h2>{escape(task)}: {escape(entry['registered_model'])} v{escape(str(entry['version']))}</h2>",
            f"<p>Run {escape(str(entry['run_id']))}, FeatureService {escape(entry['feature_service'])}; training rows "
            f"{entry['reference_rows']:,} (snapshots {escape(', '.join(entry['training_snapshots']))}), scoring rows "
            f"{entry['current_rows']:,} ({escape(entry['population'])}; "
            f"{entry['customers_outside_population']:,} scored customers outside it). "
            f"Lineage check: {escape(entry['lineage_check'])}.</p>",
            "<table><tr><th>prediction</th><th>PSI</th><th>status</th><th>training mean</th><th>scoring mean</th>"
            "<th>bin that moved most</th></tr>",
            f"<tr class='{escape(prediction['status'])}'><td class='name'>{escape(entry['prediction_of'])}</td>"
            f"<td>{number(prediction['psi'])}</td><td><span class='badge {escape(prediction['status'])}'>"
            f"{escape(prediction['status'])}</span></td><td>{number(prediction['reference_mean'])}</td>"
            f"<td>{number(prediction['current_mean'])}</td><td class='name'>{escape(str(prediction['largest_shift_bin']))}</td></tr></table>",
            "<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>status</th><th>bin that moved most</th>"
            "<th>training share</th><th>scoring share</th><th>training missing</th><th>scoring missing</th>"
            "<th>training mean</th><th>scoring mean</th></tr>",
        ]
        for row in entry["features"]:
            status = escape(row["status"])
            parts.append(
                f"<tr class='{status}'><td class='name'>{escape(row['feature'])}</td><td class='name'>{escape(row['kind'])}</td>"
                f"<td>{number(row['psi'])}</td><td><span class='badge {status}'>{status}</span></td>"
                f"<td class='name'>{escape(str(row['largest_shift_bin']))}</td>"
                f"<td>{number(row['largest_shift_reference_share'], 3)}</td><td>{number(row['largest_shift_current_share'], 3)}</td>"
                f"<td>{number(row['reference_missing'], 3)}</td><td>{number(row['current_missing'], 3)}</td>"
                f"<td>{number(row['reference_mean'])}</td><td>{number(row['current_mean'])}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- I/O edge ----------------------------------------------------------------------------------------

@dataclass
class Champion:
    task: str
    registered_model: str
    version: str
    run_id: str
    lineage: dict
    model: Any
    """training.models.CustomerModel"""


def load_champion_lineages(workspace: Workspace) -> list[Champion]:
    """Each registered champion with its model and the lineage its training run logged."""
    from training.scoring import load_champions
    from training.tracking import REGISTERED_MODELS, run_lineage, use_workspace_tracking

    models, versions, _ = load_champions(workspace)
    client = use_workspace_tracking(workspace)
    champions = []
    for task, model in models.items():
        name = REGISTERED_MODELS[task]
        version = versions[name]
        run_id = client.get_model_version(name, version).run_id
        try:
            lineage = run_lineage(run_id)
        except Exception as error:  # an artifact store that lost the file: say which run
            raise DriftError(f"{name} v{version}: run {run_id} has no lineage.json ({error}); retrain with `cdp train {task}`") from error
        champions.append(Champion(task, name, version, run_id, lineage, model))
    if not champions:
        raise DriftError("no champion model in the registry; run `cdp train` first")
    return champions


def latest_scores_as_of(workspace: Workspace) -> pd.Timestamp:
    """The as_of of the latest default scores (`Workspace.latest_scores`; the default comparison time)."""
    import pyarrow.parquet as pq

    path = workspace.latest_scores
    if not path.exists():
        raise DriftError(f"{path} not found: run `cdp score --as-of DATE` first or give --as-of")
    moments = (pd.read_csv(path, usecols=["as_of"])["as_of"] if path.suffix == ".csv"
               else pq.read_table(path, columns=["as_of"]).column(0).to_pandas())
    if moments.empty:
        raise DriftError(f"{path} holds no customers: run `cdp score --as-of DATE` or give --as-of")
    return pd.Timestamp(pd.to_datetime(moments, utc=True).max())


def rebuild_training_rows(workspace: Workspace, settings: Settings, champion: Champion,
                          activity: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The labelled entity rows of the champion's training run, from its lineage and the label rules
    of training/labels.py (customer_id, event_timestamp, label, plus channel/offer for propensity)."""
    from training.labels import label_churn, label_conversions, label_net_revenue

    lineage = champion.lineage
    snapshots = [utc_timestamp(t) for t in lineage["snapshots"]]
    horizon = int(lineage["horizon_days"])
    if champion.task == "churn":
        # the model's own population, not today's setting: a champion trained with another
        # `churn_active_days` was trained on other customers (and scores only those)
        days = getattr(champion.model, "population_days", None) or settings.training.churn_active_days
        return label_churn(activity["orders"], snapshots, horizon, days)
    if champion.task == "clv":
        from features.feature_tables import feature_table_path

        table = pd.read_parquet(feature_table_path(workspace, "purchase_history"), columns=["customer_id", "event_timestamp"])
        table["event_timestamp"] = pd.to_datetime(table["event_timestamp"], utc=True)
        population = table[table["event_timestamp"].isin(pd.DatetimeIndex(snapshots))].reset_index(drop=True)
        return label_net_revenue(activity["orders"], activity["returns"], population, horizon)
    touches = activity["touches"]
    chosen = touches[touches["sent_at"].dt.floor("D").isin(pd.DatetimeIndex(snapshots))]
    return label_conversions(chosen, activity["orders"], horizon)


def retrieve_reference_frame(workspace: Workspace, settings: Settings, champion: Champion,
                             activity: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str], str]:
    """The champion's training rows (before its validation window) with their features, the
    FeatureService's feature names and the lineage check (rebuilt inputs hash == input_hash)."""
    from training.datasets import hash_frame, retrieve_training_frame
    from training.models import TOUCH_COLUMNS
    from training.pipeline import LABEL

    rows = rebuild_training_rows(workspace, settings, champion, activity)
    service = champion.lineage["feature_service"]
    validation_from = utc_timestamp(champion.lineage["validation_from"])
    limit = settings.drift.sample_rows
    if len(rows) <= limit:
        frame, names = retrieve_training_frame(workspace, settings.features, service, rows)
        inputs = [*names, *TOUCH_COLUMNS] if champion.task == "propensity" else names
        matches = hash_frame(frame[[*inputs, LABEL[champion.task]]]) == champion.lineage.get("input_hash")
        check = ("rebuilt rows match the training run's input_hash" if matches else
                 "rebuilt rows differ from the training run's input_hash (the lake or label settings changed "
                 "since training); compared with the rebuilt rows")
        frame = frame[frame["event_timestamp"] < validation_from]
    else:
        training = rows[pd.to_datetime(rows["event_timestamp"], utc=True) < validation_from]
        sample = training.sample(n=min(limit, len(training)), random_state=settings.training.seed)
        frame, names = retrieve_training_frame(workspace, settings.features, service, sample)
        check = f"not checked: {len(sample):,} of {len(rows):,} rows sampled (drift.sample_rows)"
    return frame.reset_index(drop=True), names, check


def retrieve_current_frame(workspace: Workspace, settings: Settings, services: list[str],
                           as_of: pd.Timestamp) -> pd.DataFrame:
    """Every customer known at `as_of` (a fixed sample beyond drift.sample_rows) with the features
    of the services as of then: what scoring reads. Builds the snapshot when the tables lack it."""
    from features.batch_retrieval import retrieve_features_with_feast

    current = retrieve_features_with_feast(workspace, settings.features, services, as_of,
                                           sample_rows=settings.drift.sample_rows, seed=settings.training.seed)
    if current.empty:
        raise DriftError(f"no customer has features as of {as_of.isoformat()}; run `cdp features build --as-of ...`")
    return current


def select_model_population(task: str, current: pd.DataFrame, settings: Settings,
                            population_days: int | None = None) -> tuple[pd.DataFrame, str]:
    """The scoring rows of the population the model was trained on, and that population in words.
    Churn learns only from customers who bought in the `churn_active_days` before a snapshot
    (training/labels.py): comparing lapsed customers with them would flag recency every time."""
    if task != "churn":
        return current, "every customer known at the as-of time"
    from training.labels import in_churn_population

    days = population_days if population_days is not None else settings.training.churn_active_days
    active = in_churn_population(current["days_since_last_order"].to_numpy(dtype=float), days)
    return current[active].reset_index(drop=True), f"customers with an order in the {days} days before"


def predict_for_drift(champion: Champion, frame: pd.DataFrame) -> np.ndarray:
    """Churn and CLV as scored; propensity's conversion without contact (the one action every row,
    training or scoring, can be scored for)."""
    if champion.task == "propensity":
        frame = frame.assign(channel="none", offer="none")
    return np.asarray(champion.model.predict(frame), dtype=float)


PREDICTION_OF = {"churn": "churn probability", "clv": "CLV (expected net revenue)",
                 "propensity": "conversion probability without contact"}


def build_drift_report(workspace: Workspace, settings: Settings, as_of: dt.datetime | None = None) -> dict[str, Any]:
    """Compare every champion's training rows with the scoring rows at `as_of` (default: the as_of
    of the latest scores)."""
    from features.feature_tables import ensure_feature_snapshots
    from training.datasets import read_activity

    moment = utc_timestamp(as_of) if as_of is not None else latest_scores_as_of(workspace)
    champions = load_champion_lineages(workspace)
    # The champions' training snapshots may be gone: new data in the lake starts the feature tables over
    # with the snapshot asked for (a nightly score without retraining). Build what is missing.
    times = sorted({moment, *(utc_timestamp(t) for c in champions for t in c.lineage["snapshots"])})
    built = ensure_feature_snapshots(workspace, [t.to_pydatetime() for t in times])
    if built:
        log.info("drift: built %d feature snapshot(s) the comparison needs (the tables lacked them)", len(built))
    activity = read_activity(workspace)
    current = retrieve_current_frame(workspace, settings, [c.lineage["feature_service"] for c in champions], moment)
    models = {}
    for champion in champions:
        reference, names, check = retrieve_reference_frame(workspace, settings, champion, activity)
        population, described = select_model_population(champion.task, current, settings,
                                                      getattr(champion.model, "population_days", None))
        features = compare_feature_distributions(reference, population, names, settings.drift)
        models[champion.task] = {
            "registered_model": champion.registered_model, "version": champion.version, "run_id": champion.run_id,
            "feature_service": champion.lineage["feature_service"], "trained_as_of": champion.lineage.get("as_of"),
            "training_snapshots": [t for t in champion.lineage["snapshots"]
                                   if utc_timestamp(t) < utc_timestamp(champion.lineage["validation_from"])],
            "validation_from": champion.lineage["validation_from"], "lineage_check": check,
            "reference_rows": len(reference), "current_rows": len(population), "population": described,
            "customers_outside_population": len(current) - len(population),
            "prediction_of": PREDICTION_OF[champion.task],
            "prediction": compare_predictions(predict_for_drift(champion, reference),
                                              predict_for_drift(champion, population), settings.drift),
            "features": json.loads(features.to_json(orient="records")),
        }
    return {
        "as_of": moment.isoformat(), "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "thresholds": {"psi_warning": settings.drift.psi_warning, "psi_alert": settings.drift.psi_alert,
                       "bins": settings.drift.bins},
        "models": models, "summary": summarize_drift(models),
    }


def write_drift_report(workspace: Workspace, report: dict[str, Any]) -> tuple[Path, Path]:
    workspace.reports.mkdir(parents=True, exist_ok=True)
    html_path, json_path = workspace.reports / "drift.html", workspace.reports / "drift.json"
    html_path.write_text(render_drift_html(report), encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=2, default=str))
    return html_path, json_path


def log_drift_report(workspace: Workspace, settings: Settings, report: dict[str, Any],
                     files: tuple[Path, Path]) -> str:
    """One run in the monitoring experiment: the report files, PSI metrics per model, and tags naming
    the champion versions compared. Returns the run id."""
    import mlflow

    from training.tracking import use_workspace_tracking

    client = use_workspace_tracking(workspace)
    experiment = client.get_experiment_by_name(settings.drift.experiment)
    experiment_id = (experiment.experiment_id if experiment is not None else client.create_experiment(
        settings.drift.experiment, artifact_location=(workspace.mlruns / "artifacts").as_uri()))
    tags = {"report": "drift", "as_of": report["as_of"], "status": report["summary"]["status"]}
    metrics: dict[str, float] = {}
    for task, entry in report["models"].items():
        tags[f"champion.{entry['registered_model']}"] = str(entry["version"])
        tags[f"champion.{entry['registered_model']}.run_id"] = str(entry["run_id"])
        metrics[f"{task}_prediction_psi"] = entry["prediction"]["psi"]
        psis = [row["psi"] for row in entry["features"] if row["psi"] is not None]
        metrics[f"{task}_max_feature_psi"] = max(psis) if psis else 0.0
        metrics[f"{task}_features_alert"] = sum(row["status"] == "alert" for row in entry["features"])
        metrics[f"{task}_features_warning"] = sum(row["status"] == "warning" for row in entry["features"])
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"drift as of {report['as_of'][:10]}",
                          tags=tags) as run:
        mlflow.log_params({"psi_warning": settings.drift.psi_warning, "psi_alert": settings.drift.psi_alert,
                           "bins": settings.drift.bins, "sample_rows": settings.drift.sample_rows})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="drift")
        return run.info.run_id
