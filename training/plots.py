"""Evaluation plots written as PNG files (logged to MLflow by the caller)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 — the backend must be chosen first
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from training.metrics import calibration_table, gains_by_decile  # noqa: E402


def plot_calibration(labels: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    """Observed rate against mean predicted probability per bin, for the model and its baselines."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    for name, score in scores.items():
        table = calibration_table(labels, score)
        axis.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
    axis.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration (test rows)")
    axis.legend()
    return _save(figure, path)


def plot_gains(labels: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    """Cumulative share of positives (or value) captured by decile of score."""
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([0, 10], [0, 1], linestyle=":", color="grey", label="random")
    for name, score in scores.items():
        table = gains_by_decile(labels, score)
        axis.plot([0, *table["decile"]], [0, *table["cumulative_share_captured"]], marker="o", label=name)
    axis.set(xlabel="decile (highest scores first)", ylabel="cumulative share captured", title="Gains (test rows)")
    axis.legend()
    return _save(figure, path)


def plot_shap_summary(contributions: pd.DataFrame, features: pd.DataFrame, path: Path, top: int = 20) -> Path:
    """SHAP summary (beeswarm) of per-row contributions."""
    import shap

    values = contributions.drop(columns="bias")
    numeric = features[values.columns].apply(lambda c: c.cat.codes if isinstance(c.dtype, pd.CategoricalDtype) else c)
    shap.summary_plot(values.to_numpy(), numeric, max_display=top, show=False)
    return _save(plt.gcf(), path)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
