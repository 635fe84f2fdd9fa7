"""Compiled forests (lleaves) give LightGBM's predictions, and are compiled once per model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.test_models import FAST, churn_frame
from training.compiled_forest import compile_forests, compiled_forest, forget_compiled_forests
from training.models import FAST_ROWS, fit_classifier, fit_value_models


@pytest.fixture(autouse=True)
def no_compiled_forests_left_behind():
    yield
    forget_compiled_forests()


def test_compiled_predictions_equal_lightgbm_and_the_compile_is_cached(tmp_path):
    # Given: a churn classifier (with a categorical input and missing values) and a two-part value model
    frame, labels = churn_frame(4000, 1)
    tune, tune_labels = churn_frame(1500, 2)
    churn = fit_classifier("churn", frame, labels, tune, tune_labels, FAST, "churn_v1")
    value = fit_value_models(frame, labels * frame["orders_365d"].to_numpy() * 10, tune, FAST,
                             tune_labels * tune["orders_365d"].to_numpy() * 10, "clv_v1")["two_part"]
    probe, _ = churn_frame(FAST_ROWS * 2, 3)
    probe.loc[::7, "days_since_last_order"] = np.nan
    expected = {"churn": churn.predict(probe), "clv": value.predict(probe)}
    boosters = [*churn.boosters.values(), *value.boosters.values()]
    # When: their trees are compiled
    first = compile_forests(boosters, tmp_path / "compiled")
    # Then: large inputs go through the compiled forests and give the same numbers
    assert all(compiled_forest(b) is not None for b in boosters)
    np.testing.assert_allclose(churn.predict(probe), expected["churn"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(value.predict(probe), expected["clv"], rtol=1e-12, atol=1e-9)
    # And: a second run (a new process after training) loads the cache instead of compiling
    forget_compiled_forests()
    assert first > 0 and compile_forests(boosters, tmp_path / "compiled") == 0.0
    assert len(list((tmp_path / "compiled").glob("*.o"))) == len(boosters)
    assert not list((tmp_path / "compiled").glob("*.partial"))
