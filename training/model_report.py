"""Model evaluation for people (notebooks/02-evaluate-models): the MLflow runs of a workspace as
tables, each model's test metrics next to its baselines, and the registry's champion and challenger.

The pure functions take the frame `mlflow.search_runs` returns (`read_runs`) and the registry's
versions (`read_model_versions`); the readers are the I/O edge.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cdp.workspace import Workspace
from training.pipeline import PRIMARY_METRIC, validation_path
from training.tracking import (
    CHALLENGER,
    CHAMPION,
    EXPERIMENT,
    REGISTERED_MODELS,
    use_workspace_tracking,
)

TEST_PREFIX = "metrics.test_"
BASELINE_PREFIX = "metrics.baseline_"
MODEL_SCORER = "model"
TASK_OF_MODEL = {name: task for task, name in REGISTERED_MODELS.items()}


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs.columns else pd.Series(None, index=runs.index, dtype=object)


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per training run, newest first: task, when, registered version, whether it was
    promoted and why, and its primary test metric next to its best baseline's."""
    if runs.empty:
        return pd.DataFrame(columns=["task", "run_name", "started", "as_of", "variant", "version", "promoted",
                                     "primary_metric", "test_value", "best_baseline_value", "promotion", "run_id"])
    task = _column(runs, "params.task")
    primary = task.map(PRIMARY_METRIC)
    table = pd.DataFrame({
        "task": task, "run_name": _column(runs, "tags.mlflow.runName"), "started": _column(runs, "start_time"),
        "as_of": _column(runs, "params.as_of"), "variant": _column(runs, "params.variant"),
        "version": _column(runs, "tags.registered_version"), "promoted": _column(runs, "tags.promoted"),
        "primary_metric": primary,
        "test_value": [_metric(runs, i, f"{TEST_PREFIX}{m}") for i, m in zip(runs.index, primary, strict=True)],
        "best_baseline_value": [_best_baseline(runs.loc[i], m) for i, m in zip(runs.index, primary, strict=True)],
        "promotion": _column(runs, "tags.promotion"), "run_id": runs["run_id"],
    })
    return table.sort_values("started", ascending=False).reset_index(drop=True)


def _metric(runs: pd.DataFrame, index, column: str) -> float | None:
    return runs.at[index, column] if column in runs.columns else None


def _baseline_metrics(run: pd.Series) -> dict[str, dict[str, float]]:
    """baseline name -> metric -> value, splitting `baseline_<name>_<metric>` on the metric names
    the model's own `test_<metric>` columns use (both may contain underscores)."""
    metric_names = sorted((c.removeprefix(TEST_PREFIX) for c in run.index if c.startswith(TEST_PREFIX)),
                          key=len, reverse=True)
    found: dict[str, dict[str, float]] = {}
    for column in run.index:
        if not column.startswith(BASELINE_PREFIX) or pd.isna(run[column]):
            continue
        rest = column.removeprefix(BASELINE_PREFIX)
        metric = next((m for m in metric_names if rest.endswith(f"_{m}")), None)
        if metric is not None:
            found.setdefault(rest.removesuffix(f"_{metric}"), {})[metric] = float(run[column])
    return found


def _best_baseline(run: pd.Series, metric: str | None) -> float | None:
    values = [scores[metric] for scores in _baseline_metrics(run).values() if metric in scores]
    return max(values) if values else None


def latest_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each task."""
    if runs.empty:
        return runs
    newest = runs.sort_values("start_time", ascending=False)
    return newest.drop_duplicates("params.task").reset_index(drop=True)


def compare_with_baselines(runs: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """The newest run of each task (or of one): the model's test metrics and each baseline's on the
    same test rows, one row per (task, scorer); `model_beats_it` compares the primary metric."""
    rows = []
    newest = latest_runs(runs)
    if task is not None and not newest.empty:
        newest = newest[newest["params.task"] == task]
    for _, run in newest.iterrows():
        task = run["params.task"]
        model = {c.removeprefix(TEST_PREFIX): run[c] for c in run.index
                 if c.startswith(TEST_PREFIX) and pd.notna(run[c])}
        rows.append({"task": task, "scorer": MODEL_SCORER, **model})
        for name, scores in _baseline_metrics(run).items():
            primary = PRIMARY_METRIC.get(task)
            beaten = model.get(primary, float("nan")) > scores.get(primary, float("nan"))
            rows.append({"task": task, "scorer": name, **scores, "model_beats_it": beaten})
    return pd.DataFrame(rows).dropna(axis="columns", how="all")


def champion_and_challenger(versions: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per registered model, the versions behind the champion and challenger aliases with the
    primary test metric of the run that trained each and the registry's promotion reason.
    (The two runs' test rows may differ; the promotion reason compares them on the same rows.)"""
    columns = ["task", "model", "alias", "version", "primary_metric", "test_value", "promotion", "promoted", "run_id"]
    if versions.empty:
        return pd.DataFrame(columns=columns)
    by_run = runs.set_index("run_id") if not runs.empty else pd.DataFrame()
    rows = []
    for _, version in versions.iterrows():
        for alias in (CHAMPION, CHALLENGER):
            if alias not in version["aliases"]:
                continue
            task = TASK_OF_MODEL.get(version["model"], version["model"])
            metric = PRIMARY_METRIC.get(task)
            column = f"{TEST_PREFIX}{metric}"
            known_run = version["run_id"] in by_run.index
            value = by_run.at[version["run_id"], column] if known_run and column in by_run else None
            promoted = by_run.at[version["run_id"], "tags.promoted"] if known_run and "tags.promoted" in by_run else None
            rows.append({"task": task, "model": version["model"], "alias": alias, "version": version["version"],
                         "primary_metric": metric, "test_value": value, "promotion": version["promotion"],
                         "promoted": {"True": True, "False": False}.get(promoted), "run_id": version["run_id"]})
    return pd.DataFrame(rows, columns=columns).sort_values(["task", "alias"], ascending=[True, False]).reset_index(drop=True)


def challenger_note(promotion: str | None, promoted: bool | None, champion_version: str | None) -> str:
    """Why a challenger is not the champion. A version promoted when it was trained and later replaced
    (a rollback that moved the champion alias back, or a newer champion) was promoted: saying "not
    promoted: forced" would contradict the registry's history."""
    if not promotion:
        return ""
    if promoted:
        moved = f" to v{champion_version}" if champion_version else ""
        return f" — promoted when trained ({promotion}); the champion alias has moved since{moved}"
    return f" — not promoted: {promotion}"


def run_of(versions: pd.DataFrame, task: str, alias: str = CHAMPION) -> str:
    """The run that trained the version behind `alias` of a task's registered model."""
    name = REGISTERED_MODELS.get(task, task)
    chosen = versions[(versions["model"] == name) & versions["aliases"].map(lambda aliases: alias in aliases)]
    if chosen.empty:
        raise LookupError(f"no `{name}@{alias}` in the registry; run `cdp train {task}` first")
    return str(chosen["run_id"].iloc[0])


def read_runs(workspace: Workspace) -> pd.DataFrame:
    """Every run of the workspace's experiment as MLflow's frame (metrics.*, params.*, tags.*)."""
    import mlflow

    use_workspace_tracking(workspace)
    return mlflow.search_runs(experiment_names=[EXPERIMENT], order_by=["attributes.start_time DESC"])


def read_model_versions(workspace: Workspace) -> pd.DataFrame:
    """Every version of every registered model: its aliases, run and promotion reason."""
    client = use_workspace_tracking(workspace)
    rows = []
    for name in REGISTERED_MODELS.values():
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            continue
        aliases = client.get_registered_model(name).aliases  # search results leave aliases out
        for version in versions:
            held = sorted(alias for alias, number in aliases.items() if str(number) == str(version.version))
            rows.append({"model": name, "version": str(version.version), "aliases": held,
                         "run_id": version.run_id, "created": pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC"),
                         "promotion": (version.tags or {}).get("promotion")})
    columns = ["model", "version", "aliases", "run_id", "created", "promotion"]
    return pd.DataFrame(rows, columns=columns).sort_values(["model", "created"]).reset_index(drop=True)


def download_evaluation_plots(workspace: Workspace, run_id: str, folder: Path) -> dict[str, Path]:
    """The plots a training run logged (calibration curve, gains chart, SHAP summary, with the
    baselines on the same test rows), downloaded into `folder`; name -> file."""
    import mlflow.artifacts

    use_workspace_tracking(workspace)
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation", dst_path=str(folder)))
    return {path.stem: path for path in sorted(local.glob("*.png"))}


def plot_validation(validation: pd.DataFrame, task: str, folder: Path) -> dict[str, Path]:
    """Gains chart (and, for the probability models, the calibration curve) of the test rows'
    predictions in `read_validation`'s frame, drawn into `folder`; name -> file."""
    from training import plots

    labels, scores = validation["label"].to_numpy(), {"model": validation["prediction"].to_numpy()}
    drawn = {"gains_chart": plots.plot_gains(labels, scores, Path(folder) / f"{task}_gains_chart.png")}
    if task != "clv":
        drawn["calibration_curve"] = plots.plot_calibration(labels, scores, Path(folder) / f"{task}_calibration_curve.png")
    return drawn


def read_validation(workspace: Workspace, task: str) -> pd.DataFrame:
    """The newest training run's test rows for a task: label and prediction per customer and time."""
    path = validation_path(workspace, task)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `cdp train {task}` in {workspace.root}")
    return pd.read_parquet(path)
