"""MLflow at the edges: the workspace's tracking store, logging a trained model, the registry's aliases.

Every workspace keeps its own SQLite tracking store and artifacts under `<workspace>/mlruns/`, so
two workspaces (and the test suite's temporary ones) never share runs or models.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import warnings
from dataclasses import dataclass

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from cdp import PACKAGE, package_version
from cdp.workspace import Workspace
from training.models import CustomerModel

EXPERIMENT = "customer-models"
CHAMPION, CHALLENGER = "champion", "challenger"
REGISTERED_MODELS = {"churn": "churn", "propensity": "propensity", "clv": "clv"}
log = logging.getLogger("cdp.training")


def tracking_uri(workspace: Workspace) -> str:
    return f"sqlite:///{workspace.mlruns / 'mlflow.db'}"


def use_workspace_tracking(workspace: Workspace) -> MlflowClient:
    """Point MLflow at the workspace (tracking, registry, artifacts) and make sure the experiment exists."""
    workspace.mlruns.mkdir(parents=True, exist_ok=True)
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uv-made environments have no pip; MLflow warns about it on every logged model.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    # MLflow's store uses a loader SQLAlchemy 2 deprecates: not ours to fix, and it was printed by every
    # command that opens the registry. Set here, at use: importing Feast resets warning filters.
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated", category=DeprecationWarning)
    # MLflow draws a "Downloading artifacts" bar for every model loaded, in logs and CI output as much
    # as on a terminal; our commands say what they load. A user's own setting wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(workspace)
    artifacts = (workspace.mlruns / "artifacts").as_uri()
    if (workspace.mlruns / "mlflow.db").exists():
        relocate_tracking_store(workspace)
    else:
        # Made here, the store's own "Default" experiment keeps its artifacts in the workspace too (the
        # client would put them in ./mlruns of whatever directory the command ran in).
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        SqlAlchemyStore(uri, artifacts)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return client


TRACKING_LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                      ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                      ("model_versions", "source"))
"""Where MLflow's SQLite store keeps absolute artifact locations (file:// URIs)."""


def relocate_tracking_store(workspace: Workspace) -> str | None:
    """Point a copied or moved workspace's MLflow locations at its own `mlruns/`; returns the old root.

    MLflow stores artifact locations as absolute URIs, so a `cp -r` of a workspace went on loading
    (and logging) models in the original's directory, and failed once that was gone. The old root is
    read from this project's experiment (`<old>/artifacts`); every location under it is rewritten, in
    one immediate transaction so workers starting together do it once. A workspace is assumed to be
    reached by one path: opened by two (a container's bind mount and the host's), each would point
    the store back at itself."""
    new_root = workspace.mlruns.as_uri()
    connection = sqlite3.connect(workspace.mlruns / "mlflow.db", timeout=60, isolation_level=None)
    try:
        if _recorded_root(connection) in (None, new_root):  # the usual case: a read, no write lock
            return None
        connection.execute("BEGIN IMMEDIATE")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        old_root = _recorded_root(connection)  # again, under the lock: another worker may have done it
        if old_root is None or old_root == new_root:
            connection.execute("COMMIT")
            return None
        for table, column in TRACKING_LOCATIONS:
            if table in tables:
                connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (new_root + "/", len(old_root) + 2, len(old_root) + 1, old_root + "/"),
                )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()
    log.info("workspace moved: MLflow locations under %s now point at %s", old_root, new_root)
    return old_root


def _recorded_root(connection) -> str | None:
    """The `mlruns` URI this project's experiment was created under, or None (no such experiment yet,
    or a location that is not a local file)."""
    try:
        row = connection.execute("SELECT artifact_location FROM experiments WHERE name = ?", (EXPERIMENT,)).fetchone()
    except sqlite3.OperationalError:  # a store MLflow has not created its tables in yet
        return None
    location = row[0] if row else None
    if not location or not location.startswith("file://") or not location.endswith("/artifacts"):
        return None
    return location.removesuffix("/artifacts")


class ScoringModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a CustomerModel: what the registry stores and Spark's UDF calls."""

    def __init__(self, model: CustomerModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ARG002 — MLflow's signature
        """As `cdp score` scores: churn is empty outside the population the model learned from."""
        from training.scoring import outside_churn_population

        predictions = np.asarray(self.model.predict(model_input), dtype=float)
        if self.model.task == "churn" and "days_since_last_order" in model_input:
            predictions = np.where(outside_churn_population(model_input, self.model), np.nan, predictions)
        return pd.Series(predictions, name=self.model.task)


def signature_example(example: pd.DataFrame) -> pd.DataFrame:
    """The input example with whole-number columns as floats: counts are missing for a customer with no
    row in a view, and a signature typed `long` made MLflow refuse such rows (pyfunc, Spark UDF)."""
    whole = [c for c in example.columns if pd.api.types.is_integer_dtype(example[c])]
    return example.astype(dict.fromkeys(whole, "float64"))


def log_model(model: CustomerModel, example: pd.DataFrame) -> tuple[str, str]:
    """Log the model with signature and input example into the active run and register a version.
    Returns (registered model name, version)."""
    import lightgbm
    import sklearn

    name = REGISTERED_MODELS[model.task]
    example = signature_example(example)
    signature = infer_signature(example, model.predict(example))
    info = mlflow.pyfunc.log_model(
        name="model", python_model=ScoringModel(model), signature=signature, input_example=example,
        registered_model_name=name,
        pip_requirements=[f"lightgbm=={lightgbm.__version__}", f"scikit-learn=={sklearn.__version__}",
                          f"pandas=={pd.__version__}", PACKAGE + (f"=={version}" if (version := package_version()) else "")],
    )
    return name, str(info.registered_model_version)


def load_model(name: str, alias: str = CHAMPION) -> CustomerModel:
    """The CustomerModel behind a registered alias."""
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    return pyfunc.unwrap_python_model().model


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def run_lineage(run_id: str) -> dict:
    """The lineage a training run logged: snapshots, validation start, horizon, split, input hash."""
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/lineage.json")


def champion_versions(client: MlflowClient) -> dict[str, str | None]:
    """Per task, the registered version behind its `champion` alias (None without one)."""
    return {task: alias_version(client, name, CHAMPION) for task, name in REGISTERED_MODELS.items()}


def how_to_promote(version: str) -> str:
    """What makes a version that was not promoted champion, by a person's decision."""
    return (f"to promote it deliberately, train again with --force (the same data gives the same model) or move "
            f"the champion alias to version {version} (docs/models.md, Registry)")


@dataclass
class Promotion:
    promoted: bool
    reason: str


def promote(client: MlflowClient, name: str, version: str, challenger_score: float,
            champion_score: float | None, metric: str, force: bool, not_comparable: str | None = None,
            min_gain: float = 0.0) -> Promotion:
    """The new version becomes challenger; it becomes champion only if it beats the champion on
    the same rows by more than `min_gain` (or with force, or when there is no champion). One that
    cannot be compared fairly (`not_comparable` says why) stays challenger unless forced."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    if force:
        decision = Promotion(True, "forced")
    elif not_comparable is not None:
        decision = Promotion(False, f"not compared: {not_comparable}; {how_to_promote(version)}")
    elif champion_score is None:
        decision = Promotion(True, "no champion to compare with")
    elif challenger_score > champion_score + min_gain:
        decision = Promotion(True, f"{metric} {challenger_score:.4f} beats the champion's {champion_score:.4f}")
    elif challenger_score > champion_score:
        decision = Promotion(False, f"{metric} {challenger_score:.4f} beats the champion's {champion_score:.4f} by "
                                    f"{challenger_score - champion_score:.4f}, not more than "
                                    f"training.promotion_min_gain ({min_gain:g}); {how_to_promote(version)}")
    else:
        decision = Promotion(False, f"{metric} {challenger_score:.4f} does not beat the champion's {champion_score:.4f}")
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion", decision.reason)
    return decision
