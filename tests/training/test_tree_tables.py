"""The trees as arrays (training/tree_tables.py) against LightGBM itself: given boosters with
numeric, categorical and missing-value splits, scores must be bit-identical and contributions equal
LightGBM's exact `pred_contrib` to rounding."""

from __future__ import annotations

import lightgbm
import numpy as np
import pandas as pd
import pytest

from training.tree_tables import flatten_trees, tree_tables


def _training_frame(rows: int, seed: int, extra: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Five features of every kind, plus `extra` numeric ones that matter a little each."""
    generator = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "recency": generator.exponential(60, rows),
        "orders": generator.poisson(3, rows).astype(float),
        "mostly_zero": np.where(generator.random(rows) < 0.6, 0.0, generator.normal(2, 1, rows)),
        "region": pd.Categorical(generator.choice(["north", "south", "east", "west", "centre"], rows)),
        "spend": generator.gamma(2, 50, rows),
    })
    frame.loc[generator.random(rows) < 0.2, "recency"] = np.nan  # NaN goes its learned way
    frame.loc[generator.random(rows) < 0.1, "spend"] = np.nan
    signal = (-0.02 * frame["recency"].fillna(200) + 0.4 * frame["orders"] + 0.5 * (frame["region"] == "east")
              + 0.3 * (frame["mostly_zero"] > 0) + 0.003 * frame["spend"].fillna(0))
    for index in range(extra):
        frame[f"extra_{index}"] = generator.normal(size=rows)
        signal = signal + 0.3 * np.sin(2 * frame[f"extra_{index}"])
    return frame, signal.to_numpy()


def _probe_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Encoded rows plus edge cases: NaN everywhere, zeros, values within 1e-35 of zero, unseen and
    negative category codes."""
    matrix = frame.assign(region=frame["region"].cat.codes.astype(float)).to_numpy(dtype=float)
    edges = np.array([
        [np.nan] * 5,
        [0.0] * 5,
        [1e-40, -1e-40, 1e-36, 0.0, 1e-300],
        [30.0, 2.0, 0.0, 17.0, 80.0],  # a category code never seen in training
        [30.0, 2.0, 0.0, -1.0, 80.0],
        [30.0, 2.0, 0.0, 2.7, 80.0],  # a fractional code truncates like LightGBM's cast
    ])
    edges = np.hstack([edges, np.tile(edges[:, :1], (1, matrix.shape[1] - edges.shape[1]))])  # extra columns
    return np.vstack([matrix, edges])


@pytest.fixture(scope="module", params=["binary", "regression", "tweedie", "deep"])
def booster(request) -> tuple[lightgbm.Booster, np.ndarray]:
    """"deep": trees without a depth limit, so leaves with more distinct features than the default
    depth 6 gives (more quadrature points, wider padding)."""
    deep = request.param == "deep"
    frame, signal = _training_frame(3000, seed=3, extra=12 if deep else 0)
    labels = {"binary": (signal + np.random.default_rng(4).logistic(size=len(signal)) > 1).astype(int),
              "regression": signal, "tweedie": np.exp(signal / 4), "deep": signal}[request.param]
    parameters = {"objective": "regression" if deep else request.param, "num_leaves": 63 if deep else 31,
                  "max_depth": -1 if deep else 6, "min_data_in_leaf": 3 if deep else 20,
                  "learning_rate": 0.1, "verbosity": -1, "seed": 1, "deterministic": True,
                  "zero_as_missing": False, "min_data_per_group": 5, "cat_smooth": 1}
    model = lightgbm.train(parameters, lightgbm.Dataset(frame, label=labels), num_boost_round=60)
    probe, _ = _training_frame(400, seed=9, extra=12 if deep else 0)
    return model, _probe_matrix(probe)


def test_scores_are_bit_identical_to_lightgbm(booster):
    model, matrix = booster
    tables = tree_tables(model)
    assert np.array_equal(tables.raw_scores(matrix), model.predict(matrix, raw_score=True))
    assert np.array_equal(tables.predict(matrix), model.predict(matrix))


def test_values_exactly_at_a_threshold_score_like_lightgbm(booster):
    model, matrix = booster
    trees = flatten_trees(model.dump_model())
    numeric = np.flatnonzero(~trees.categorical)[:300]
    rows = np.tile(matrix[:1], (len(numeric), 1))
    rows[np.arange(len(numeric)), trees.feature[numeric]] = trees.threshold[numeric]
    tables = tree_tables(model)
    assert np.array_equal(tables.raw_scores(rows), model.predict(rows, raw_score=True))
    np.testing.assert_allclose(tables.contributions(rows), model.predict(rows, pred_contrib=True), rtol=0, atol=1e-9)


def test_contributions_equal_lightgbm_pred_contrib(booster):
    model, matrix = booster
    expected = model.predict(matrix, pred_contrib=True)
    got = tree_tables(model).contributions(matrix)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * max(1.0, np.abs(expected).max()))


def test_the_trees_cover_categorical_and_missing_value_splits(booster):
    model, _ = booster
    trees = flatten_trees(model.dump_model())
    assert trees.categorical.any(), "no categorical split: the test would not exercise the bitsets"
    assert (trees.missing == 2).any(), "no NaN-aware split"


def test_leaves_are_padded_to_the_widest_path(booster):
    """Every model here has leaves narrower than the widest, so padding is exercised; the deep one
    has leaves wider than depth 6 allows (more than three quadrature points)."""
    model, _ = booster
    trees = flatten_trees(model.dump_model())
    width = (trees.leaf_feature < trees.num_features).sum(axis=1)
    assert width.min() < trees.leaf_feature.shape[1] == width.max()
    if model.params.get("max_depth") == -1:
        assert width.max() > 6


def test_contributions_are_the_same_for_a_row_alone_or_in_a_batch(booster):
    model, matrix = booster
    tables = tree_tables(model)
    together = tables.contributions(matrix[:80])  # two threads from 32 rows on
    alone = np.vstack([tables.contributions(matrix[i:i + 1]) for i in range(80)])
    assert np.array_equal(together, alone)


def test_only_the_best_iteration_is_used_like_lightgbm():
    frame, signal = _training_frame(2000, seed=5)
    train, tune = lightgbm.Dataset(frame[:1500], label=signal[:1500]), lightgbm.Dataset(frame[1500:], label=signal[1500:])
    model = lightgbm.train({"objective": "regression", "verbosity": -1, "learning_rate": 0.5}, train,
                           num_boost_round=200, valid_sets=[tune], callbacks=[lightgbm.early_stopping(5, verbose=False)])
    assert 0 < model.best_iteration < 200
    matrix = _probe_matrix(frame[:50])
    assert np.array_equal(tree_tables(model).predict(matrix), model.predict(matrix))


def test_a_matrix_of_the_wrong_width_is_refused(booster):
    model, matrix = booster
    with pytest.raises(ValueError, match="features"):
        tree_tables(model).predict(matrix[:, :3])


def test_leaves_wider_than_the_kernel_takes_are_refused_with_a_reason(booster, monkeypatch):
    model, matrix = booster
    tables = tree_tables(model)
    monkeypatch.setattr(type(tables), "MAX_EXPLAIN_WIDTH", 1)
    assert not tables.can_explain
    with pytest.raises(ValueError, match="pred_contrib"):
        tables.contributions(matrix[:2])


def test_kernels_compile_from_a_cached_module_or_in_memory_when_nothing_is_writable(tmp_path, monkeypatch):
    """Given a generated kernel's source, it is compiled from a module file in the first writable cache
    directory (so numba's disk cache applies), and in memory when no directory can be written; both
    kernels compute the same values."""
    from training import tree_tables

    source = tree_tables._kernel_source(2, 2, rows_inner=False) + "# a source no other test compiles\n"
    monkeypatch.setattr(tree_tables, "_kernel_directories", lambda: [tmp_path / "kernels"])
    cached = tree_tables._compiled_kernel(source)
    assert [p.suffix for p in (tmp_path / "kernels").iterdir() if p.is_file()] == [".py"]
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setattr(tree_tables, "_kernel_directories", lambda: [blocked / "kernels"])
    in_memory = tree_tables._compiled_kernel(source + "# in memory\n")
    decisions = np.array([[1], [0]], dtype=np.int8)
    arguments = (np.array([[0, 1]], dtype=np.int32), np.array([[0.5, 0.25]]), np.array([[0, 1]], dtype=np.int32),
                 np.array([[1, 1]], dtype=np.int8), np.array([[0, 1]], dtype=np.int8), np.array([2.0]),
                 *tree_tables.quadrature(2))
    outputs = [np.zeros((4, 1)), np.zeros((4, 1))]
    cached(decisions, outputs[0], *arguments)
    in_memory(decisions, outputs[1], *arguments)
    assert np.array_equal(outputs[0], outputs[1])
    # the leaf's game by hand: w({}) = 0.5 * 0.25, w({0}) = 0.25, w({1}) = w({0, 1}) = 0; times the value 2
    np.testing.assert_allclose(outputs[0][:2, 0], [0.125, -0.375], rtol=0, atol=1e-15)
