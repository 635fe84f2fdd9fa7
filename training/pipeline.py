"""`cdp train`: labels and snapshots from the data, features through Feast, LightGBM, baselines,
MLflow runs and the registry's champion/challenger aliases.

This module is the orchestration edge; the pieces it calls (labels, models, metrics, baselines)
are pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from cdp.config import Settings, TrainingSettings
from cdp.moments import utc_timestamp
from cdp.workspace import Workspace
from features.feature_tables import last_data_day
from training import baselines, metrics
from training.datasets import (
    hash_frame,
    net_transactions,
    read_activity,
    retrieve_training_frame,
    split_for_testing,
    unique_times,
)
from training.labels import (
    InsufficientDataError,
    choose_snapshots,
    choose_touch_days,
    label_churn,
    label_conversions,
    label_net_revenue,
)
from training.models import (
    TOUCH_COLUMNS,
    CustomerModel,
    TrainingParameters,
    fit_classifier,
    fit_value_models,
)
from training.scoring import average_uplifts
from training.tracking import (
    CHAMPION,
    alias_version,
    load_model,
    log_model,
    promote,
    use_workspace_tracking,
)

TASKS = ("churn", "propensity", "clv")
FEATURE_SERVICES = {"churn": "churn_v1", "propensity": "propensity_v1", "clv": "clv_v1"}
PRIMARY_METRIC = {"churn": "roc_auc", "propensity": "roc_auc", "clv": "spearman"}
LABEL = {"churn": "churned", "propensity": "converted", "clv": "net_revenue"}
log = logging.getLogger("cdp.training")


@dataclass
class TaskPlan:
    """What one model trains on: labelled entity rows and where validation starts."""

    task: str
    rows: pd.DataFrame
    snapshots: list[pd.Timestamp]
    validation_from: pd.Timestamp


@dataclass
class ModelReport:
    task: str
    status: str
    """trained or skipped."""
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    version: str | None = None
    promoted: bool = False
    run_id: str | None = None

    def beats_baselines(self) -> bool:
        return not self.baselines_not_beaten()

    def baselines_not_beaten(self) -> dict[str, float]:
        """Baseline name -> its primary metric, for those the model does not beat (a baseline with no
        score, e.g. one class in the test rows, is left out; a model with none beats nothing)."""
        key = PRIMARY_METRIC[self.task]
        mine = self.metrics.get(key, np.nan)
        scored = {name: float(scores.get(key, np.nan)) for name, scores in self.baselines.items()}
        return {name: score for name, score in scored.items() if np.isfinite(score) and not mine > score}


def training_parameters(settings: TrainingSettings) -> TrainingParameters:
    names = {f.name for f in dataclasses.fields(TrainingParameters)}
    return TrainingParameters(**{n: getattr(settings, n) for n in names})


def validation_path(workspace: Workspace, task: str, version: str | None = None) -> Path:
    """The test predictions of a model's latest run, or of one registered version (`<task>-v<N>`)."""
    return workspace.outputs / "validation" / (f"{task}.parquet" if version is None else f"{task}-v{version}.parquet")


def champion_validation_files(workspace: Workspace) -> dict[str, tuple[Path, str | None]]:
    """Per model, the test predictions to judge it by and whose they are: the champion's (its version),
    or, for a champion trained before versions kept their own file or a model with no champion, the
    latest run's (None)."""
    from training.tracking import champion_versions

    files = {}
    for task, version in champion_versions(use_workspace_tracking(workspace)).items():
        own = validation_path(workspace, task, version) if version else None
        files[task] = (own, version) if own is not None and own.exists() else (validation_path(workspace, task), None)
    return files


def plan_tasks(activity: dict[str, pd.DataFrame], as_of: pd.Timestamp, tasks: Sequence[str],
               settings: TrainingSettings, last_day: dt.date | None = None,
               ) -> tuple[dict[str, TaskPlan | InsufficientDataError], list[pd.Timestamp]]:
    """Snapshots and labels per model from the data; a model the data cannot support is skipped, and
    all are when the last label windows would run past the last day with data (`last_data_day` of the
    lake; `days_without_data`)."""
    orders = activity["orders"]
    plans: dict[str, TaskPlan | InsufficientDataError] = {}
    if orders.empty:
        return {t: InsufficientDataError(f"{t}: no orders in the lake") for t in tasks}, []
    data_start = orders["ordered_at"].min().floor("D")
    if as_of <= data_start:
        return {t: InsufficientDataError(f"{t}: --as-of {as_of.date()} is before the first order ({data_start.date()})")
                for t in tasks}, []
    missing_days = days_without_data(as_of, last_day)
    if missing_days:
        return {t: after_the_data(t, as_of, last_day, missing_days) for t in tasks}, []
    common = {"count": settings.snapshot_count, "spacing_days": settings.snapshot_spacing_days,
              "minimum_history_days": settings.minimum_history_days}
    for task in tasks:
        try:
            if task == "churn":
                snapshots = choose_snapshots(data_start, as_of, settings.churn_horizon_days, model=task, **common)
                rows = label_churn(orders, snapshots, settings.churn_horizon_days, settings.churn_active_days)
                plans[task] = TaskPlan(task, rows, snapshots, snapshots[-1])
            elif task == "clv":
                snapshots = choose_snapshots(data_start, as_of, settings.clv_horizon_days, model=task, **common)
                plans[task] = TaskPlan(task, pd.DataFrame(), snapshots, snapshots[-1])  # rows once features exist
            else:
                plans[task] = _plan_propensity(activity, as_of, data_start, settings)
        except InsufficientDataError as skipped:
            plans[task] = skipped
    times = [t for plan in plans.values() if isinstance(plan, TaskPlan) for t in plan.snapshots]
    return plans, unique_times(times)


UNRECORDED_OUTCOME = {
    "churn": "count customers who would have ordered in them as churned",
    "clv": "count what customers would have spent in them as nothing",
    "propensity": "count customers who would have converted in them as not converting",
}


def days_without_data(as_of: pd.Timestamp, last_day: dt.date | None) -> list[dt.date]:
    """The days from the one after the last data up to `as_of` (a day it cuts into counts). Training
    allows none, unlike features and scores (`DATA_END_TOLERANCE_DAYS`, a week): a label window that
    runs into them holds no orders because none were recorded, not because nobody bought."""
    if last_day is None:
        return []
    first = last_day + dt.timedelta(days=1)
    return [first + dt.timedelta(days=n) for n in range((as_of.ceil("D").date() - first).days)]


def after_the_data(task: str, as_of: pd.Timestamp, last_day: dt.date, missing_days: Sequence[dt.date]
                   ) -> InsufficientDataError:
    """Why a model is not trained as of a time past the last data, naming the days without it."""
    days = (f"{missing_days[0]}" if len(missing_days) == 1 else
            f"{len(missing_days)} days, {missing_days[0]} to {missing_days[-1]}")
    moment = f"{as_of.date()}" if as_of == as_of.normalize() else f"{as_of:%Y-%m-%d %H:%M} UTC"
    return InsufficientDataError(
        f"{task}: --as-of {moment} is after the last data ({last_day}): the last label windows would end in "
        f"days with no data ({days}) and {UNRECORDED_OUTCOME.get(task, 'miss what happened in them')}, in the "
        f"training and the test rows alike; train as of {missing_days[0]} or earlier")


def _plan_propensity(activity: dict[str, pd.DataFrame], as_of: pd.Timestamp, data_start: pd.Timestamp,
                     settings: TrainingSettings) -> TaskPlan:
    touches = activity["touches"]
    if touches.empty:
        raise InsufficientDataError("propensity: no touches in the lake (the touches table is missing or empty)")
    days = choose_touch_days(touches, as_of, settings.conversion_window_days, settings.propensity_touch_days,
                             settings.minimum_history_days, data_start)
    if len(days) < 2:
        raise InsufficientDataError(
            f"propensity: {len(days)} usable day(s) of controlled campaigns (touches with `channel = none` rows "
            f"whose {settings.conversion_window_days}-day window ends by {as_of.date()}); two are needed"
        )
    chosen = touches[touches["sent_at"].dt.floor("D").isin(days)]
    rows = label_conversions(chosen, activity["orders"], settings.conversion_window_days)
    validation_days = min(settings.propensity_validation_days, len(days) - 1)
    return TaskPlan("propensity", rows, days, days[-validation_days])


def _population(workspace: Workspace, snapshots: Sequence[pd.Timestamp]) -> pd.DataFrame:
    """Customers known at each snapshot: the rows of the feature tables at those times."""
    from features.feature_tables import feature_table_path

    table = pd.read_parquet(feature_table_path(workspace, "purchase_history"), columns=["customer_id", "event_timestamp"])
    table["event_timestamp"] = pd.to_datetime(table["event_timestamp"], utc=True)
    return table[table["event_timestamp"].isin(pd.to_datetime(list(snapshots), utc=True))].reset_index(drop=True)


def train_models(
    workspace: Workspace,
    settings: Settings,
    as_of: dt.datetime,
    tasks: Sequence[str] = TASKS,
    force: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> list[ModelReport]:
    """Train, evaluate, log and register every requested model; skipped models say why."""
    from features.feature_store import apply_feature_definitions
    from features.feature_tables import ensure_feature_snapshots

    as_of_time = utc_timestamp(as_of)
    progress("reading orders, returns and touches")
    activity = read_activity(workspace)
    plans, times = plan_tasks(activity, as_of_time, tasks, settings.training, last_data_day(workspace))
    reports = [ModelReport(t, "skipped", str(p)) for t, p in plans.items() if isinstance(p, InsufficientDataError)]
    if not times:
        record_untrainable(workspace, reports)
        return reports
    progress(f"feature snapshots at {len(times)} times (building those the tables lack)")
    ensure_feature_snapshots(workspace, [t.to_pydatetime() for t in times])
    apply_feature_definitions(workspace, settings.features)
    client = use_workspace_tracking(workspace)
    for task in tasks:
        plan = plans[task]
        if not isinstance(plan, TaskPlan):
            continue
        progress(f"training {task}")
        try:
            report = _train_task(workspace, settings, plan, as_of_time, activity, client, force)
        except InsufficientDataError as skipped:
            report = ModelReport(task, "skipped", str(skipped))
        reports.append(report)
    record_untrainable(workspace, reports)
    order = {t: i for i, t in enumerate(tasks)}
    return sorted(reports, key=lambda r: order[r.task])


def _untrainable_path(workspace: Workspace) -> Path:
    return workspace.reports / "untrainable_models.json"


def record_untrainable(workspace: Workspace, reports: Sequence[ModelReport]) -> None:
    """Remember which models the last training skipped for want of data, and why (a model trained since
    is taken off): the service answers without such a model instead of waiting for it forever."""
    known = read_untrainable(workspace)
    for report in reports:
        if report.status == "skipped":
            known[report.task] = report.message
        elif report.status == "trained":
            known.pop(report.task, None)
    path = _untrainable_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2))


def untrainable_reason(workspace: Workspace, task: str) -> str | None:
    """Why this workspace's data cannot train a model (None when it can, as far as is known)."""
    import pyarrow.parquet as pq

    touches = workspace.lake_table("touches")
    if task == "propensity" and (not touches.exists() or pq.ParquetFile(touches).metadata.num_rows == 0):
        return "the lake holds no touches"
    return read_untrainable(workspace).get(task)


def read_untrainable(workspace: Workspace) -> dict[str, str]:
    """Model -> why the last training skipped it for want of data (`record_untrainable`)."""
    path = _untrainable_path(workspace)
    try:
        return dict(json.loads(path.read_text())) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def _train_task(workspace: Workspace, settings: Settings, plan: TaskPlan, as_of: pd.Timestamp,
                activity: dict[str, pd.DataFrame], client, force: bool) -> ModelReport:
    task, options = plan.task, settings.training
    rows = plan.rows
    if task == "clv":
        rows = label_net_revenue(activity["orders"], activity["returns"], _population(workspace, plan.snapshots),
                                 options.clv_horizon_days)
    service = FEATURE_SERVICES[task]
    frame, names = retrieve_training_frame(workspace, settings.features, service, rows)
    inputs = [*names, *TOUCH_COLUMNS] if task == "propensity" else names
    label = frame[LABEL[task]].to_numpy(dtype=float)
    validation = (frame["event_timestamp"] >= plan.validation_from).to_numpy()
    held_out = split_for_testing(frame["customer_id"], options.test_share, options.seed)
    train, tune, test = ~validation, validation & ~held_out, validation & held_out
    counts = {"train": int(train.sum()), "tune": int(tune.sum()), "test": int(test.sum())}
    if min(counts.values()) < options.minimum_rows:
        raise InsufficientDataError(f"{task}: too few rows (train {counts['train']}, tune {counts['tune']}, test "
                           f"{counts['test']}; at least {options.minimum_rows} each are needed)")
    if task != "clv":
        for part, mask in (("training", train), ("tuning", tune), ("test", test)):
            if len(np.unique(label[mask])) < 2:
                raise InsufficientDataError(f"{task}: the {part} rows hold a single class ({int(label[mask][0])})")
    x = frame[inputs]
    parameters = training_parameters(options)
    chosen_by = {}
    if task == "clv":
        candidates = fit_value_models(x[train], label[train], x[tune], parameters, label[tune], service)
        chosen_by = {f"tune_spearman_{name}": metrics.regression_metrics(label[tune], m.predict(x[tune]))["spearman"]
                     for name, m in candidates.items()}
        model = candidates[max(candidates, key=lambda n: chosen_by[f"tune_spearman_{n}"])]
    else:
        model = fit_classifier(task, x[train], label[train], x[tune], label[tune], parameters, service)
    if task == "propensity":
        model.average_uplift = average_uplifts(model, frame[train])
        model.uplift_shrinkage = options.uplift_shrinkage
    if task == "churn":
        model.population_days = options.churn_active_days
    predictions = model.predict(x[test])
    scores = _baseline_scores(task, frame, x, label, train, test, activity, plan, options)
    evaluate = metrics.regression_metrics if task == "clv" else metrics.classification_metrics
    report = ModelReport(task, "trained", metrics=evaluate(label[test], predictions),
                         baselines={name: evaluate(label[test], s) for name, s in scores.items()})
    lineage = {
        "feature_service": service, "as_of": as_of.isoformat(), "snapshots": [t.isoformat() for t in plan.snapshots],
        "validation_from": plan.validation_from.isoformat(), "rows": counts, "input_hash": hash_frame(frame[[*inputs, LABEL[task]]]),
        "horizon_days": {"churn": options.churn_horizon_days, "clv": options.clv_horizon_days,
                         "propensity": options.conversion_window_days}[task],
        "test_share": options.test_share, "split_seed": options.seed,
    }
    with mlflow.start_run(run_name=f"{task} as of {as_of.date()}") as run:
        report.run_id = run.info.run_id
        _log_run(task, model, parameters, lineage, report, chosen_by, frame[test], x[test], label[test],
                 predictions, scores)
        name, version = log_model(model, x[test].head(5))
        _write_validation(workspace, task, frame[test], label[test], predictions, model, lineage["horizon_days"],
                          version)
        comparison = compare_with_champion(client, name, frame[test], x[test], label[test], predictions, task,
                                           lineage["horizon_days"], (options.test_share, options.seed),
                                           report.metrics[PRIMARY_METRIC[task]])
        decision = promote(client, name, version, comparison.challenger_score, comparison.champion_score,
                           PRIMARY_METRIC[task], force, comparison.refused, options.promotion_min_gain)
        mlflow.set_tags({"registered_version": version, "promoted": str(decision.promoted), "promotion": decision.reason})
        report.version, report.promoted = version, decision.promoted
        report.message = f"version {version}: {'champion' if decision.promoted else 'challenger'} ({decision.reason})"
        below = report.baselines_not_beaten()
        mlflow.set_tag("beats_baselines", str(not below).lower())
        if below:  # the first model of a workspace is champion whatever it scores: say so rather than hide it
            key = PRIMARY_METRIC[task]
            said = (f"{key} {report.metrics[key]:.4f} does not beat its baseline(s) on the same test rows: "
                    + ", ".join(f"{name} {score:.4f}" for name, score in below.items()))
            log.warning("%s version %s: %s", task, version, said)
            report.message += f"; WARNING: {said}"
        # logged last, so that it says which version the run registered and whether it was promoted
        mlflow.log_text(json.dumps({"report": dataclasses.asdict(report)}, default=str, indent=2), "report.json")
    return report


def _baseline_scores(task: str, frame: pd.DataFrame, x: pd.DataFrame, label: np.ndarray, train: np.ndarray,
                     test: np.ndarray, activity: dict[str, pd.DataFrame], plan: TaskPlan,
                     options: TrainingSettings) -> dict[str, np.ndarray]:
    """Each model's baselines, fitted on the same training rows and scored on the same test rows."""
    if task == "churn":
        numeric = x.select_dtypes("number")
        logistic = baselines.fit_logistic_regression(numeric[train], label[train])
        return {"logistic_regression": logistic(numeric[test]), "rfm_rule": baselines.score_rfm_churn(x[test])}
    if task == "propensity":
        respond = baselines.fit_channel_average_response(x["channel"][train], label[train])
        return {"channel_average_response": respond(x["channel"][test])}
    test_frame = frame[test]
    transactions = net_transactions(activity["orders"], activity["returns"], plan.validation_from)
    bgnbd = baselines.predict_bgnbd_gamma_gamma(transactions, plan.validation_from, options.clv_horizon_days,
                                               test_frame["customer_id"].tolist())
    return {"bgnbd_gamma_gamma": np.asarray(bgnbd, dtype=float),
            "last_period_spend": baselines.predict_last_period_spend(x[test], options.clv_horizon_days)}


def _log_run(task, model: CustomerModel, parameters: TrainingParameters, lineage: dict, report: ModelReport,
             chosen_by: dict, test_frame: pd.DataFrame, test_x: pd.DataFrame, test_labels: np.ndarray,
             predictions: np.ndarray, scores: dict[str, np.ndarray]) -> None:
    from training import plots

    mlflow.log_params({
        "task": task, "variant": model.variant, "feature_service": lineage["feature_service"],
        "as_of": lineage["as_of"], "horizon_days": lineage["horizon_days"], "validation_from": lineage["validation_from"],
        "snapshot_count": len(lineage["snapshots"]), "input_hash": lineage["input_hash"],
        "test_share": lineage["test_share"], "split_seed": lineage["split_seed"],
        **{f"rows_{k}": v for k, v in lineage["rows"].items()},
        **{f"lightgbm_{k}": v for k, v in dataclasses.asdict(parameters).items()},
        **boosting_rounds(model, parameters), "features": len(model.encoding.columns),
    })
    mlflow.log_metrics({f"test_{k}": v for k, v in report.metrics.items() if np.isfinite(v)})
    if model.population_days is not None:
        mlflow.log_param("population_days", model.population_days)
    if model.average_uplift:
        mlflow.log_param("uplift_shrinkage", model.uplift_shrinkage)
        mlflow.log_metrics({f"average_uplift_{action.replace(':', '_')}": value
                            for action, value in model.average_uplift.items() if np.isfinite(value)})
    for name, values in report.baselines.items():
        mlflow.log_metrics({f"baseline_{name}_{k}": v for k, v in values.items() if np.isfinite(v)})
    mlflow.log_metrics({k: v for k, v in chosen_by.items() if np.isfinite(v)})
    mlflow.log_dict(lineage, "lineage.json")
    compared = {"model": predictions, **scores}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if task != "clv":
            plots.plot_calibration(test_labels, {k: v for k, v in compared.items() if k != "rfm_rule"},
                                   folder / "calibration_curve.png")
        plots.plot_gains(test_labels, compared, folder / "gains_chart.png")
        sample = test_x.head(2_000)
        plots.plot_shap_summary(model.contributions(sample), model.prepare(sample), folder / "shap_summary.png")
        metrics.gains_by_decile(test_labels, predictions).to_csv(folder / "gains_by_decile.csv", index=False)
        mlflow.log_artifacts(scratch, artifact_path="evaluation")


def boosting_rounds(model: CustomerModel, parameters: TrainingParameters) -> dict[str, int]:
    """Per booster of the model (`classifier`; CLV `tweedie`, or `buyer` with `value` or `log_value`),
    the iteration early stopping chose on the tuning rows and the rounds trained: one figure hid a
    two-part model's other part. The rounds follow from the best iteration (LightGBM keeps only the
    trees up to it): early stopping ends `early_stopping_rounds` after it, unless `max_rounds` comes
    first: a part whose rounds reach `max_rounds` never stopped early (its tuning score was still improving)."""
    rounds = {}
    for part, booster in model.boosters.items():
        rounds[f"best_iteration_{part}"] = booster.best_iteration
        rounds[f"rounds_{part}"] = min(booster.best_iteration + parameters.early_stopping_rounds, parameters.max_rounds)
    return rounds


@dataclass(frozen=True)
class ChampionComparison:
    challenger_score: float
    champion_score: float | None = None
    """The champion on the same rows; None when there is no champion or it cannot be compared."""
    refused: str | None = None
    """Why the two cannot be compared fairly (the challenger then stays challenger unless forced)."""


def compare_with_champion(client, name: str, test_frame: pd.DataFrame, test_x: pd.DataFrame, test_labels: np.ndarray,
                          predictions: np.ndarray, task: str, horizon_days: int,
                          split: tuple[float, int], own: float) -> ChampionComparison:
    """Both models scored on the challenger's test rows that the champion never trained on: rows of
    snapshots from the champion's own validation start on, whose customers it held out for testing
    too (the same `split`: test share and seed of the customer hash; with another, its tuning
    customers would be among them). A champion of another horizon predicts another quantity, and one
    that trained on every test row cannot be judged on them, nor one that cannot score them (an input
    gone from the data): all refused. `own`: the challenger's score on all its test rows (what it is
    compared with when there is no champion)."""
    evaluate = metrics.regression_metrics if task == "clv" else metrics.classification_metrics
    metric = PRIMARY_METRIC[task]
    version = alias_version(client, name, CHAMPION)
    if version is None:
        return ChampionComparison(own)
    params = client.get_run(client.get_model_version(name, version).run_id).data.params
    champion_horizon = int(params.get("horizon_days", horizon_days))
    if champion_horizon != horizon_days:
        return ChampionComparison(own, refused=f"the champion (version {version}) predicts {champion_horizon} days "
                                               f"ahead, this model {horizon_days}")
    champion_split = (float(params.get("test_share", split[0])), int(params.get("split_seed", split[1])))
    if champion_split != tuple(split):
        return ChampionComparison(own, refused=f"the champion (version {version}) split its validation customers "
                                               f"with test share and seed {champion_split}, this model {tuple(split)}")
    unseen = np.ones(len(test_frame), dtype=bool)
    if "validation_from" in params:
        unseen = (test_frame["event_timestamp"] >= pd.Timestamp(params["validation_from"])).to_numpy()
    if unseen.sum() == 0:
        return ChampionComparison(own, refused=f"the champion (version {version}) trained on these test rows (its "
                                               f"validation starts {params.get('validation_from')})")
    if task != "clv" and len(np.unique(test_labels[unseen])) < 2:
        return ChampionComparison(own, refused=f"the {int(unseen.sum())} test rows the champion (version {version}) "
                                               "did not train on hold a single class")
    try:
        champion = load_model(name, CHAMPION)
        champion_predictions = champion.predict(test_x[unseen])
    except (KeyError, ValueError) as error:
        # Not scored with the input as missing: that measures what losing the input does to the
        # champion, not which model is better, and a column gone upstream is a fault to look at, not a
        # reason to replace the champion (docs/models.md, Registry).
        refused = (f"the champion (version {version}) cannot score the test rows "
                   f"({error.args[0] if error.args else error})"
                   + (": an input it was trained on is gone from the data" if isinstance(error, KeyError) else ""))
        log.warning("%s: %s; the new version stays challenger", name, refused)
        return ChampionComparison(own, refused=refused)
    return ChampionComparison(evaluate(test_labels[unseen], predictions[unseen])[metric],
                              evaluate(test_labels[unseen], champion_predictions)[metric])


def _write_validation(workspace: Workspace, task: str, test_frame: pd.DataFrame, labels: np.ndarray,
                      predictions: np.ndarray, model: CustomerModel, horizon_days: int, version: str) -> None:
    """The test rows' labels and predictions, for `cdp evaluate models` against the simulator's oracle
    (with the horizon the labels were counted over: the oracle must predict the same one), kept per
    registered version so that the champion is evaluated, not whichever model trained last."""
    keep = ["customer_id", "event_timestamp", *[c for c in TOUCH_COLUMNS if c in test_frame.columns]]
    out = test_frame[keep].assign(label=labels, prediction=predictions, horizon_days=horizon_days,
                                  model_version=str(version)).reset_index(drop=True)
    if task == "propensity":
        features = test_frame.reset_index(drop=True)
        untouched = model.predict(features.assign(channel="none", offer="none"))
        for channel in sorted(set(test_frame["channel"]) - {"none"}):
            out[f"uplift_{channel}"] = model.predict(features.assign(channel=channel, offer="none")) - untouched
    for path in (validation_path(workspace, task, version), validation_path(workspace, task)):
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_parquet(path, index=False)
