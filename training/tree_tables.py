"""A LightGBM model's trees as flat arrays: raw scores and exact SHAP contributions without
LightGBM's per-call overhead.

Why: LightGBM's `pred_contrib` runs the TreeSHAP recursion for every row (O(leaves x depth²) per
tree), about 2-3 ms a row for 600 trees of depth 6 on this machine, and each `predict` call costs
tens of microseconds of set-up before the first tree: together most of a one-customer answer, and
hundreds of milliseconds for 100 customers. The path-dependent SHAP values LightGBM computes depend
on a row, leaf by leaf, only through which of the leaf's path features the row agrees with (the
observation behind Fast TreeSHAP, Yang 2021). So a row costs one decision per node, then per leaf
a bit mask of agreeing features and a closed form over the leaf's d distinct features (a product
polynomial of the cover fractions, one division per feature: O(d²)). Tabulating every mask once per
model (Fast TreeSHAP v2) was measured too: its tables (about 30 MB for 600 trees) fall out of the
cache between requests, and a one-customer call then took 2.3 ms against 1.1 ms computed directly;
on 1,000-row batches (two threads) the tables took 0.32 ms a row, this 0.36 ms.

The trees come from the booster's own JSON dump (thresholds printed with 17 digits, so exact), and a
row goes left or right by LightGBM's rules (`Tree::Decision`: values within 1e-35 of zero read as
zero, missing-value types, categorical bitsets), so raw scores summed here equal LightGBM's bit for
bit and contributions agree to rounding (both tested on trained models). Pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import lightgbm
import numba
import numpy as np

ZERO_THRESHOLD = float(np.float32(1e-35))
"""LightGBM's kZeroThreshold (a float): input values this close to zero are read as 0."""
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_TRANSFORMS = {"binary": 1, "tweedie": 2, "regression": 0, "regression_l2": 0}


@dataclass(frozen=True)
class Trees:
    """Every tree of one booster, flattened. Nodes and leaves are numbered per tree (as in the dump)
    and offset by `tree_nodes[t]` / `tree_leaves[t]`; a child below 0 is leaf ~child."""

    num_features: int
    bias: float
    """Sum over trees of the leaf values weighted by training counts: the contributions' `bias`."""
    transform: int
    """0 identity (raw), 1 sigmoid (binary), 2 exp (tweedie), -1 unknown (predict with LightGBM)."""
    sigmoid: float
    tree_nodes: np.ndarray
    tree_leaves: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    categorical: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    left: np.ndarray
    right: np.ndarray
    category_start: np.ndarray
    categories: np.ndarray
    leaf_value: np.ndarray
    left_if_missing: np.ndarray
    """Per node, where a missing value goes; `left_if_zero`, where a value that reads as zero goes.
    Numeric nodes then decide without branching on the missing-value type."""
    left_if_zero: np.ndarray
    path_start: np.ndarray
    """Per leaf, its path (root first): each node (tree-local), whether the path goes left there
    (`path_left`, 0 or 1) and the distinct-feature slot of the node's feature (`path_slot`)."""
    path_node: np.ndarray
    path_left: np.ndarray
    path_slot: np.ndarray
    unique_start: np.ndarray
    """Per leaf, the distinct features of its path (unique_feature) and their cover fractions (zero)."""
    unique_feature: np.ndarray
    zero: np.ndarray

    def _nodes(self) -> tuple:
        return (self.tree_nodes, self.tree_leaves, self.feature, self.threshold, self.categorical,
                self.default_left, self.missing, self.category_start, self.categories)


class TreeTables:
    """A booster's trees for fast scoring and exact contributions."""

    PARALLEL_ROWS = 32
    """From this many rows, contributions are split over two threads (the kernel releases the GIL)."""

    def __init__(self, trees: Trees):
        self.trees = trees

    @property
    def num_features(self) -> int:
        return self.trees.num_features

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """Sum of the trees' leaf values per row, in LightGBM's order (its `raw_score=True`)."""
        trees = self.trees
        return _raw_scores(_float_matrix(matrix, trees.num_features), trees.left, trees.right, trees.leaf_value,
                           *trees._nodes())

    @property
    def can_predict(self) -> bool:
        return self.trees.transform >= 0

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """What `Booster.predict` gives: the raw score through the objective's link."""
        if not self.can_predict:
            raise ValueError("unknown objective: predict with LightGBM")
        return _transform(self.raw_scores(matrix), self.trees.transform, self.trees.sigmoid)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Exact path-dependent SHAP values per row: one column per feature, then the bias (the
        layout of LightGBM's `pred_contrib=True`)."""
        trees = self.trees
        matrix = _float_matrix(matrix, trees.num_features)
        out = np.zeros((matrix.shape[0], trees.num_features + 1))

        def run(rows: slice) -> None:
            _contributions(matrix[rows], out[rows], trees.path_start, trees.path_node, trees.path_left,
                           trees.path_slot, trees.unique_start, trees.unique_feature, trees.zero, trees.leaf_value,
                           trees.left_if_missing, trees.left_if_zero, *trees._nodes())

        if len(matrix) >= self.PARALLEL_ROWS:
            half = len(matrix) // 2
            helper = threading.Thread(target=run, args=(slice(half, None),))
            helper.start()
            run(slice(0, half))
            helper.join()
        else:
            run(slice(None))
        out[:, -1] = trees.bias
        return out


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def tree_tables(booster: lightgbm.Booster) -> TreeTables:
    """The booster's trees as arrays, built on first use and kept as long as the booster lives."""
    tables = _CACHE.get(booster)
    if tables is None:
        with _CACHE_LOCK:
            tables = _CACHE.get(booster)
            if tables is None:
                tables = _CACHE[booster] = TreeTables(flatten_trees(booster.dump_model()))
    return tables


def flatten_trees(dump: dict) -> Trees:
    """Flatten `Booster.dump_model()` (the trees `predict` uses: up to the best iteration)."""
    if dump.get("num_tree_per_iteration", 1) != 1:
        raise ValueError("only models with one tree per iteration (binary, regression) are supported")
    objective = str(dump.get("objective", "")).split()
    transform = -1 if dump.get("average_output") else _TRANSFORMS.get(objective[0] if objective else "", -1)
    sigmoid = next((float(p.split(":")[1]) for p in objective[1:] if p.startswith("sigmoid:")), 1.0)
    nodes: dict[str, list] = {k: [] for k in ("feature", "threshold", "categorical", "default_left", "missing",
                                              "left", "right", "category_start", "categories")}
    leaves: dict[str, list] = {k: [] for k in ("value", "path_start", "path_node", "path_left", "path_slot",
                                               "unique_start", "unique_feature", "zero")}
    tree_nodes, tree_leaves, bias = [0], [0], 0.0
    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        flat: dict[int, dict] = {}
        leaf_nodes: dict[int, tuple[dict, list]] = {}
        _walk(root, [], flat, leaf_nodes)
        for index in range(len(flat)):
            node = flat[index]
            nodes["feature"].append(node["split_feature"])
            nodes["default_left"].append(bool(node["default_left"]))
            nodes["missing"].append(_MISSING[node["missing_type"]])
            nodes["left"].append(_child(node["left_child"]))
            nodes["right"].append(_child(node["right_child"]))
            nodes["category_start"].append(len(nodes["categories"]))
            if node["decision_type"] == "==":
                nodes["categorical"].append(True)
                nodes["threshold"].append(0.0)
                nodes["categories"].extend(int(c) for c in str(node["threshold"]).split("||"))
            else:
                nodes["categorical"].append(False)
                nodes["threshold"].append(float(node["threshold"]))
        total = root.get("internal_count", root.get("leaf_count", 0))
        expected = 0.0
        for index in range(len(leaf_nodes)):
            leaf, path = leaf_nodes[index]
            value = float(leaf["leaf_value"])
            leaves["value"].append(value)
            expected += (leaf.get("leaf_count", 0) / total if total else 1.0) * value
            _add_path(path, leaves)
        bias += expected if flat else float(root["leaf_value"])
        tree_nodes.append(tree_nodes[-1] + len(flat))
        tree_leaves.append(tree_leaves[-1] + len(leaf_nodes))
    leaves["path_start"].append(len(leaves["path_slot"]))
    leaves["unique_start"].append(len(leaves["unique_feature"]))
    nodes["category_start"].append(len(nodes["categories"]))
    integers = {k: np.asarray(v, dtype=np.int64) for k, v in nodes.items()
                if k in ("feature", "left", "right", "category_start", "categories")}
    threshold = np.asarray(nodes["threshold"], dtype=float)
    categorical = np.asarray(nodes["categorical"], dtype=np.bool_)
    default_left = np.asarray(nodes["default_left"], dtype=np.bool_)
    missing = np.asarray(nodes["missing"], dtype=np.int8)
    decide = (threshold, categorical, default_left, missing, integers["category_start"], integers["categories"])
    return Trees(
        num_features=int(dump["max_feature_idx"]) + 1, bias=bias, transform=transform, sigmoid=sigmoid,
        tree_nodes=np.asarray(tree_nodes, dtype=np.int64), tree_leaves=np.asarray(tree_leaves, dtype=np.int64),
        threshold=threshold, categorical=categorical, default_left=default_left, missing=missing,
        left_if_missing=_fixed_decisions(math.nan, *decide), left_if_zero=_fixed_decisions(0.0, *decide),
        leaf_value=np.asarray(leaves["value"], dtype=float),
        path_start=np.asarray(leaves["path_start"], dtype=np.int64),
        path_node=np.asarray(leaves["path_node"], dtype=np.int64),
        path_left=np.asarray(leaves["path_left"], dtype=np.int64),
        path_slot=np.asarray(leaves["path_slot"], dtype=np.int64),
        unique_start=np.asarray(leaves["unique_start"], dtype=np.int64),
        unique_feature=np.asarray(leaves["unique_feature"], dtype=np.int64),
        zero=np.asarray(leaves["zero"], dtype=float), **integers,
    )


def _child(node: dict) -> int:
    """Tree-local child pointer as LightGBM stores it: a node index, or ~leaf index."""
    return int(node["split_index"]) if "split_index" in node else ~int(node.get("leaf_index", 0))


def _walk(node: dict, path: list, flat: dict, leaf_nodes: dict) -> None:
    """Index internal nodes and record each leaf's path (root first) as (feature, cover ratio, node,
    goes left)."""
    if "split_index" not in node:
        leaf_nodes[int(node.get("leaf_index", 0))] = (node, list(path))
        return
    flat[int(node["split_index"])] = node
    count = node["internal_count"]
    for side in ("left_child", "right_child"):
        child = node[side]
        child_count = child.get("internal_count", child.get("leaf_count"))
        path.append((int(node["split_feature"]), child_count / count, int(node["split_index"]), side == "left_child"))
        _walk(child, path, flat, leaf_nodes)
        path.pop()


def _add_path(path: list, leaves: dict) -> None:
    """A leaf's path entries, its distinct features (in path order) and their cover fractions."""
    leaves["path_start"].append(len(leaves["path_slot"]))
    leaves["unique_start"].append(len(leaves["unique_feature"]))
    slots: dict[int, int] = {}
    zero: list[float] = []
    for feature, ratio, node, goes_left in path:
        if feature not in slots:
            slots[feature] = len(slots)
            zero.append(1.0)
        zero[slots[feature]] *= ratio
        leaves["path_slot"].append(slots[feature])
        leaves["path_node"].append(node)
        leaves["path_left"].append(int(goes_left))
    leaves["unique_feature"].extend(slots)
    leaves["zero"].extend(zero)


def _float_matrix(matrix: np.ndarray, num_features: int) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != num_features:
        raise ValueError(f"expected a matrix of {num_features} features, got shape {matrix.shape}")
    return matrix


@numba.njit(inline="always")
def _goes_left(value, node, threshold, categorical, default_left, missing, category_start, categories):  # pragma: no cover
    """LightGBM's `Tree::Decision` for one node (after its dense-row reading of near-zero values)."""
    if not math.isnan(value) and abs(value) <= ZERO_THRESHOLD:
        value = 0.0
    if categorical[node]:
        if math.isnan(value) or value >= 2147483648.0 or value <= -2147483649.0:
            return False  # static_cast<int> gives INT_MIN: negative, so right
        code = int(value)
        if code < 0:
            return False
        for k in range(category_start[node], category_start[node + 1]):
            if categories[k] == code:
                return True
        return False
    kind = missing[node]
    if math.isnan(value):
        if kind == 2:
            return default_left[node]
        value = 0.0
    if kind == 1 and -ZERO_THRESHOLD <= value <= ZERO_THRESHOLD:
        return default_left[node]
    return value <= threshold[node]


@numba.njit(cache=True)
def _fixed_decisions(value, threshold, categorical, default_left, missing, category_start, categories):  # pragma: no cover
    """Where each node sends one given value (NaN, or zero)."""
    out = np.empty(len(threshold), dtype=np.bool_)
    for node in range(len(threshold)):
        out[node] = _goes_left(value, node, threshold, categorical, default_left, missing, category_start, categories)
    return out


@numba.njit(inline="always")
def _decide(value, at, left_if_missing, left_if_zero, threshold, categorical, default_left, missing, category_start,
            categories):  # pragma: no cover - compiled
    """`_goes_left` with the missing and zero cases of numeric nodes read from per-node tables: fewer
    branches the CPU mispredicts when every node of a tree is decided at once, the same decisions."""
    if categorical[at]:
        return _goes_left(value, at, threshold, categorical, default_left, missing, category_start, categories)
    if math.isnan(value):
        return left_if_missing[at]
    if abs(value) <= ZERO_THRESHOLD:
        return left_if_zero[at]
    return value <= threshold[at]


@numba.njit(nogil=True, cache=True)
def _raw_scores(matrix, left, right, leaf_value, tree_nodes, tree_leaves, feature, threshold, categorical,
                default_left, missing, category_start, categories):  # pragma: no cover - compiled
    """One walk per row and tree. (Reading the missing and zero cases from tables, as `_decide` does for the
    contributions, made this walk slower: each step waits for the previous one's loads.)"""
    rows = matrix.shape[0]
    out = np.zeros(rows)
    for row in range(rows):
        total = 0.0
        for tree in range(len(tree_nodes) - 1):
            base = tree_nodes[tree]
            node = 0 if tree_nodes[tree + 1] > base else -1
            while node >= 0:
                at = base + node
                if _goes_left(matrix[row, feature[at]], at, threshold, categorical, default_left, missing,
                              category_start, categories):
                    node = left[at]
                else:
                    node = right[at]
            total += leaf_value[tree_leaves[tree] + ~node]
        out[row] = total
    return out


@numba.njit(nogil=True, cache=True)
def _transform(raw, kind, sigmoid):  # pragma: no cover - compiled
    out = np.empty_like(raw)
    for i in range(len(raw)):
        if kind == 1:
            out[i] = 1.0 / (1.0 + math.exp(-sigmoid * raw[i]))
        elif kind == 2:
            out[i] = math.exp(raw[i])
        else:
            out[i] = raw[i]
    return out


@numba.njit(nogil=True, cache=True)
def _contributions(matrix, out, path_start, path_node, path_left, path_slot, unique_start, unique_feature, zero,
                   leaf_value, left_if_missing, left_if_zero, tree_nodes, tree_leaves, feature, threshold,
                   categorical, default_left, missing, category_start, categories):  # pragma: no cover - compiled
    """Tree by tree, row by row: decide every node once, then per leaf the mask of its distinct features
    the row agrees with (bit k: the row follows the path at every node splitting on feature k), and
    each feature's Shapley value of the leaf's game w(S) = prod_{k in S} agrees_k * prod_{k not in S}
    zero_k (zero_k: share of training rows that follow the path at k's splits), times the leaf value:
    phi_j = value * (agrees_j - zero_j) * prod_{k disagreeing, k != j} zero_k
            * sum_s weight(d, s) * e_{a-s}(zero of the agreeing features other than j),
    with e_m the elementary symmetric polynomials (coefficients of prod (1 + zero_k x)), a agreeing
    features other than j, and weight(d, s) = s! (d-s-1)! / d!. Straight loops over arrays in order: a
    one-row call is bound by branch mispredictions and cache misses, not by arithmetic."""
    widest, features = 1, 1
    for tree in range(len(tree_nodes) - 1):
        widest = max(widest, tree_nodes[tree + 1] - tree_nodes[tree])
    for leaf in range(len(unique_start) - 1):
        features = max(features, unique_start[leaf + 1] - unique_start[leaf])
    weight = np.zeros((features + 1, features + 1))
    for d in range(1, features + 1):
        for s in range(d):
            choose = 1.0  # C(d - 1, s)
            for i in range(s):
                choose = choose * (d - 1 - i) / (i + 1)
            weight[d, s] = 1.0 / (d * choose)
    goes_left = np.empty(widest, dtype=np.int64)
    polynomial = np.empty(features + 1)
    quotient = np.empty(features + 1)
    for tree in range(len(tree_nodes) - 1):
        base = tree_nodes[tree]
        nodes = tree_nodes[tree + 1] - base
        if nodes == 0:
            continue  # a single leaf: only the bias
        for row in range(matrix.shape[0]):
            for node in range(nodes):
                at = base + node
                goes_left[node] = _decide(matrix[row, feature[at]], at, left_if_missing, left_if_zero, threshold,
                                          categorical, default_left, missing, category_start, categories)
            for leaf in range(tree_leaves[tree], tree_leaves[tree + 1]):
                start = unique_start[leaf]
                d = unique_start[leaf + 1] - start
                mask = (1 << d) - 1
                for i in range(path_start[leaf], path_start[leaf + 1]):
                    mask &= ~((goes_left[path_node[i]] ^ path_left[i]) << path_slot[i])
                polynomial[0] = 1.0  # prod over agreeing k of (1 + zero_k x)
                agreeing, rest = 0, 1.0  # rest: prod over disagreeing k of zero_k
                for k in range(d):
                    z = zero[start + k]
                    if (mask >> k) & 1:
                        agreeing += 1
                        polynomial[agreeing] = 0.0
                        for m in range(agreeing, 0, -1):
                            polynomial[m] += polynomial[m - 1] * z
                    else:
                        rest *= z
                leaf_weight = leaf_value[leaf]
                # A disagreeing j: zero_j times the product over the other disagreeing features is `rest`,
                # and the sum runs over all agreeing features: one value for every such j.
                disagreeing = 0.0
                if agreeing < d:
                    for s in range(agreeing + 1):
                        disagreeing += weight[d, s] * polynomial[agreeing - s]
                    disagreeing *= leaf_weight * rest
                for j in range(d):
                    z = zero[start + j]
                    if (mask >> j) & 1:  # divide (1 + z x) out of the polynomial
                        count = agreeing - 1
                        quotient[0] = 1.0
                        total = weight[d, count]
                        for m in range(1, count + 1):
                            quotient[m] = polynomial[m] - z * quotient[m - 1]
                            total += weight[d, count - m] * quotient[m]
                        out[row, unique_feature[start + j]] += leaf_weight * (1.0 - z) * rest * total
                    else:
                        out[row, unique_feature[start + j]] -= disagreeing
