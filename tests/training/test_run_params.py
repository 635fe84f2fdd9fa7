"""What a training run logs about boosting: every part of a model, not only the first."""

from __future__ import annotations

import lightgbm
import mlflow
import numpy as np
import pytest

from training.models import CustomerModel, FeatureEncoding, TrainingParameters
from training.pipeline import boosting_rounds
from training.tracking import use_workspace_tracking


def boost_counting_rounds(labels: np.ndarray, features: np.ndarray, learning_rate: float,
                          parameters: TrainingParameters) -> tuple[lightgbm.Booster, int]:
    """A booster trained as `training.models` trains one (early stopping on held-out rows), and the
    number of rounds LightGBM actually ran."""
    ran = []
    half = len(labels) // 2
    booster = lightgbm.train(
        {"objective": "regression", "learning_rate": learning_rate, "verbosity": -1, "seed": 0, "num_threads": 1},
        lightgbm.Dataset(features[:half], labels[:half]), num_boost_round=parameters.max_rounds,
        valid_sets=[lightgbm.Dataset(features[half:], labels[half:])],
        callbacks=[lightgbm.early_stopping(parameters.early_stopping_rounds, verbose=False),
                   lambda env: ran.append(env.iteration)])
    return booster, len(ran)


def test_each_part_of_a_two_part_model_logs_its_best_iteration_and_rounds():
    # Given a two-part CLV model whose buyer part learns noise (early stopping ends it soon) and whose
    # value part learns a strong signal slowly (it runs to the round cap)
    parameters = TrainingParameters(max_rounds=120, early_stopping_rounds=10)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2_000, 3))
    buyer, buyer_ran = boost_counting_rounds(rng.normal(size=2_000), features, 0.3, parameters)
    log_value, log_value_ran = boost_counting_rounds(3 * features[:, 0], features, 0.01, parameters)
    model = CustomerModel("clv", FeatureEncoding(["a", "b", "c"]), {"buyer": buyer, "log_value": log_value},
                          variant="two_part_log")
    # When the run's boosting figures are worked out
    logged = boosting_rounds(model, parameters)
    # Then each part has its own best iteration and the rounds LightGBM ran: the value part's reach the cap
    assert logged == {"best_iteration_buyer": buyer.best_iteration, "rounds_buyer": buyer_ran,
                      "best_iteration_log_value": log_value.best_iteration, "rounds_log_value": log_value_ran}
    assert buyer_ran < parameters.max_rounds == log_value_ran


@pytest.mark.slow
def test_every_run_logs_the_best_iteration_and_rounds_of_each_part_of_its_model(trained):
    # Given the trained workspace's runs
    client = use_workspace_tracking(trained.workspace)
    for report in trained.reports:
        params = client.get_run(report.run_id).data.params
        model = mlflow.pyfunc.load_model(f"models:/{report.task}/{report.version}").unwrap_python_model().model
        # Then every booster of the registered model has its figures, and no single figure stands for all
        for part, booster in model.boosters.items():
            assert int(params[f"best_iteration_{part}"]) == booster.best_iteration > 0, (report.task, part)
            assert booster.best_iteration <= int(params[f"rounds_{part}"]) <= int(params["lightgbm_max_rounds"])
        assert "best_iteration" not in params
