"""A LightGBM model's trees as flat arrays: raw scores and exact SHAP contributions without
LightGBM's per-call overhead.

Why: LightGBM's `pred_contrib` runs the TreeSHAP recursion for every row (O(leaves x depth²) per
tree), about 2-3 ms a row for 600 trees of depth 6 on this machine, and each `predict` call costs
tens of microseconds of set-up before the first tree: together most of a one-customer answer, and
hundreds of milliseconds for 100 customers. The path-dependent SHAP values LightGBM computes
depend on a row, leaf by leaf, only through which of the leaf's path features the row agrees with (the
observation behind Fast TreeSHAP, Yang 2021). So a row costs one decision per node (all nodes at once,
branch-free), then per leaf a bit mask of agreeing features and a closed form over the leaf's d
distinct features: a Beta integral evaluated exactly by Gauss-Legendre quadrature, in a kernel
generated with its loops written out (`_kernel_source`). Measured on the 599-tree churn model: one row
0.47 ms and 100 rows 10 ms (LightGBM's `pred_contrib`: 2.2 ms and 216 ms), 0.065 ms a row on 1,000
(two threads).
Tabulating every mask once per model (Fast TreeSHAP v2) was measured too: its tables (about 30 MB
for 600 trees) fall out of the cache between requests (2.3 ms a row).

The trees come from the booster's own JSON dump (thresholds printed with 17 digits, so exact), and a
row goes left or right by LightGBM's rules (`Tree::Decision`: values within 1e-35 of zero read as
zero, missing-value types, categorical bitsets), so raw scores summed here equal LightGBM's bit for
bit and contributions agree to rounding (both tested on trained models). Pure: arrays in, arrays out.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

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
    """Per node, where a missing value goes (1: left); `left_if_zero`, where a value that reads as zero
    goes. Numeric nodes then decide without branching on the missing-value type."""
    left_if_zero: np.ndarray
    categorical_nodes: np.ndarray
    """The nodes that split on categories (decided one by one, after the numeric ones)."""
    leaf_feature: np.ndarray
    """Per leaf (rows), the distinct features of its path (root first), padded to the widest leaf with
    columns past the bias (`num_features + 1 + slot`, dropped by the caller); `leaf_zero`, their cover
    fractions (the share of training rows that follow the path at that feature's splits), padded with
    1: a padded feature never changes a leaf's game."""
    leaf_zero: np.ndarray
    step_node: np.ndarray
    """Per leaf, its path's nodes (global index, root first), whether the path goes left there
    (`step_left`) and the distinct-feature slot of the node's feature (`step_slot`); padded steps
    point at slot `leaf_feature.shape[1]`, a bit nobody reads."""
    step_left: np.ndarray
    step_slot: np.ndarray

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

    MAX_EXPLAIN_WIDTH = 32
    """Leaves with more distinct path features than this are left to LightGBM's `pred_contrib`: the
    kernel's source grows with the square of the width (and a row's mask is one 64-bit integer)."""

    @property
    def can_explain(self) -> bool:
        return self.trees.leaf_zero.shape[1] <= self.MAX_EXPLAIN_WIDTH

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Exact path-dependent SHAP values per row: one column per feature, then the bias (the
        layout of LightGBM's `pred_contrib=True`)."""
        trees = self.trees
        if not self.can_explain:
            raise ValueError(f"leaves with {trees.leaf_zero.shape[1]} distinct features (at most "
                             f"{self.MAX_EXPLAIN_WIDTH}): use LightGBM's pred_contrib")
        matrix = _float_matrix(matrix, trees.num_features)
        out = np.zeros((matrix.shape[0], trees.num_features + 1))
        points, weights = quadrature(trees.leaf_zero.shape[1])

        def run(rows: slice) -> None:
            decisions = _decide_all(matrix[rows], trees.left_if_missing, trees.left_if_zero, trees.categorical_nodes,
                                    *trees._nodes()[2:])
            block = np.zeros((trees.num_features + 1 + trees.leaf_feature.shape[1], decisions.shape[1]))
            kernel = _contribution_kernel(trees.leaf_zero.shape[1], trees.step_node.shape[1], decisions.shape[1] > 1)
            kernel(decisions, block, trees.leaf_feature, trees.leaf_zero, trees.step_node, trees.step_left,
                   trees.step_slot, trees.leaf_value, points, weights)
            out[rows] = block[:trees.num_features + 1].T  # features by rows; padding columns dropped

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
    values: list[float] = []
    paths: list[tuple[list[int], list[float], list[tuple[int, int, int]]]] = []
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
            values.append(value)
            expected += (leaf.get("leaf_count", 0) / total if total else 1.0) * value
            paths.append(_leaf_path(path, tree_nodes[-1]))
        bias += expected if flat else float(root["leaf_value"])
        tree_nodes.append(tree_nodes[-1] + len(flat))
        tree_leaves.append(tree_leaves[-1] + len(leaf_nodes))
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
        left_if_missing=_fixed_decisions(math.nan, *decide).astype(np.int8),
        left_if_zero=_fixed_decisions(0.0, *decide).astype(np.int8), categorical_nodes=np.flatnonzero(categorical),
        leaf_value=np.asarray(values, dtype=float), **_padded_paths(paths, int(dump["max_feature_idx"]) + 1),
        **integers,
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


def _leaf_path(path: list, base: int) -> tuple[list[int], list[float], list[tuple[int, int, int]]]:
    """A leaf's distinct features (in path order), their cover fractions, and its path's steps as
    (global node, goes left, feature slot)."""
    slots: dict[int, int] = {}
    zero: list[float] = []
    steps = []
    for feature, ratio, node, goes_left in path:
        if feature not in slots:
            slots[feature] = len(slots)
            zero.append(1.0)
        zero[slots[feature]] *= ratio
        steps.append((base + node, int(goes_left), slots[feature]))
    return list(slots), zero, steps


def _padded_paths(paths: list, num_features: int) -> dict[str, np.ndarray]:
    """Every leaf's path padded to the widest (see `Trees.leaf_feature`), so that one compiled kernel
    with fixed loop counts serves every leaf."""
    width = max([1, *(len(features) for features, _, _ in paths)])
    depth = max([1, *(len(steps) for _, _, steps in paths)])
    # padded slot k writes to column num_features + 1 + k: distinct columns, so the compiler's alias
    # checks pass and the kernel's loop over rows runs vectorized for every leaf
    leaf_feature = np.tile(np.arange(num_features + 1, num_features + 1 + width, dtype=np.int32), (len(paths), 1))
    leaf_zero = np.ones((len(paths), width))
    step_node = np.zeros((len(paths), depth), dtype=np.int32)
    step_left = np.zeros((len(paths), depth), dtype=np.int8)
    step_slot = np.full((len(paths), depth), width, dtype=np.int8 if width < 127 else np.int32)
    for leaf, (features, zero, steps) in enumerate(paths):
        leaf_feature[leaf, :len(features)] = features
        leaf_zero[leaf, :len(zero)] = zero
        for index, (node, goes_left, slot) in enumerate(steps):
            step_node[leaf, index], step_left[leaf, index], step_slot[leaf, index] = node, goes_left, slot
    return {"leaf_feature": leaf_feature, "leaf_zero": leaf_zero, "step_node": step_node, "step_left": step_left,
            "step_slot": step_slot}


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


@numba.njit(nogil=True, cache=True)
def _decide_all(matrix, left_if_missing, left_if_zero, categorical_nodes, feature, threshold, categorical,
                default_left, missing, category_start, categories):  # pragma: no cover - compiled
    """Where every node of every tree sends each row (1: left; nodes by rows), the numeric nodes without a
    branch: the missing and zero cases read from per-node tables and chosen by selects, rows innermost
    (over the transposed matrix, so the compiler vectorizes them). Deciding node by node through
    `_goes_left` cost five times as much for one row (one mispredicted branch after another)."""
    rows = matrix.shape[0]
    by_feature = np.ascontiguousarray(matrix.T)
    out = np.empty((len(threshold), rows), dtype=np.int8)
    for at in range(len(threshold)):
        values = by_feature[feature[at]]
        limit, if_zero, if_missing = threshold[at], left_if_zero[at], left_if_missing[at]
        decided = out[at]
        for row in range(rows):
            value = values[row]
            left = np.int8(value <= limit)
            left = if_zero if abs(value) <= ZERO_THRESHOLD else left
            decided[row] = if_missing if value != value else left
    for at in categorical_nodes:
        for row in range(rows):
            out[at, row] = _goes_left(matrix[row, feature[at]], at, threshold, categorical, default_left, missing,
                                      category_start, categories)
    return out


@numba.njit(nogil=True, cache=True)
def _raw_scores(matrix, left, right, leaf_value, tree_nodes, tree_leaves, feature, threshold, categorical,
                default_left, missing, category_start, categories):  # pragma: no cover - compiled
    """One walk per row and tree. (Reading the missing and zero cases from tables, as `_decide_all` does
    for the contributions, made this walk slower: each step waits for the previous one's loads.)"""
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


@functools.cache
def quadrature(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre points and weights on [0, 1], enough of them (ceil(width / 2)) to integrate a
    polynomial of degree `width - 1` exactly (see `_kernel_source`)."""
    points, weights = np.polynomial.legendre.leggauss(max(1, (width + 1) // 2))
    return (points + 1) / 2, weights / 2


_KERNELS: dict[tuple[int, int, bool], object] = {}


def _contribution_kernel(width: int, depth: int, rows_inner: bool):
    """The compiled kernel for leaves of `width` distinct features and paths of `depth` steps, built on
    first use and kept for the process. `rows_inner`: leaf by leaf, all rows for each (a batch reads
    every leaf once and the loop over rows is vectorized); otherwise row by row (one row: 0.34 against
    0.46 ms, no loop set-up per leaf)."""
    key = (width, depth, rows_inner)
    kernel = _KERNELS.get(key)
    if kernel is None:
        with _CACHE_LOCK:
            kernel = _KERNELS.get(key)
            if kernel is None:
                kernel = _KERNELS[key] = _compiled_kernel(_kernel_source(width, depth, rows_inner))
    return kernel


def _kernel_directories() -> list[Path]:
    """Where generated kernel modules (and numba's cache of them) go, first writable one wins."""
    return [Path(__file__).parent / "__pycache__" / "kernels", Path(tempfile.gettempdir()) / "cdp-kernels"]


def _compiled_kernel(source: str):
    """The kernel compiled from a module file named by its source's hash, so that numba's on-disk cache
    applies: about 1.5 s of compiling saved in every process that explains (service workers, their
    replacements, `cdp score`). Where no cache directory is writable, compiled in memory."""
    name = "cdp_contribution_kernel_" + hashlib.sha256(source.encode()).hexdigest()[:16]
    module_source = f"import numba\nimport numpy as np\n\n\n@numba.njit(nogil=True, cache=True)\n{source}"
    for directory in _kernel_directories():
        path = directory / f"{name}.py"
        try:
            if not path.exists() or path.read_text() != module_source:
                directory.mkdir(parents=True, exist_ok=True)
                partial = directory / f".{name}.{os.getpid()}.tmp"
                partial.write_text(module_source)
                os.replace(partial, path)
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # numba's cache re-imports the kernel's globals by module name
                spec.loader.exec_module(module)
            return module.kernel
        except OSError:
            continue
    namespace: dict = {"np": np}
    exec(compile(source, "<contribution kernel>", "exec"), namespace)
    return numba.njit(nogil=True)(namespace["kernel"])


def _kernel_source(width: int, depth: int, rows_inner: bool) -> str:
    """Python source of a kernel adding each leaf's exact Shapley values to `out` (features by rows).

    For a row, leaf l with value v and distinct path features k = 1..d plays the game
    w(S) = prod_{k in S} o_k * prod_{k not in S} z_k (o_k = 1 when the row follows the path at every
    split on k, else 0; z_k the cover fraction), whose Shapley values are
        phi_j = v * (o_j - z_j) * sum_S |S|! (d - |S| - 1)! / d! * prod_{k in S} o_k * prod_{k not in S, k != j} z_k
              = v * (o_j - z_j) * integral_0^1 prod_{k != j} (z_k + (o_k - z_k) t) dt
    (the weight is a Beta integral). The integrand is a polynomial of degree d - 1, so Gauss-Legendre
    with ceil(d / 2) points is exact; the products over k != j come from prefix and suffix products.
    The loops over features, steps and points are written out (this source is generated per width and
    depth) so that a leaf's values stay in registers and nothing branches on the row: the loop-based
    closed form this replaced (elementary symmetric polynomials and synthetic division, O(d^2) with a
    branch per feature) took 0.85 ms for the 17,000 leaves of the 599-tree churn model, this 0.34 ms
    for one row and 0.065 ms a row in batches (the loop over rows vectorized)."""
    ks, qs = range(width), range(len(quadrature(width)[0]))
    header = [
        "def kernel(decisions, out, leaf_feature, leaf_zero, step_node, step_left, step_slot, leaf_value, points,"
        " weights):",
        *(f"    t{q} = points[{q}]; w{q} = weights[{q}]" for q in qs),
    ]
    per_leaf = [  # what the kernel reads once per leaf
        "v = leaf_value[leaf]",
        *(f"node{s} = step_node[leaf, {s}]; left{s} = step_left[leaf, {s}]; slot{s} = step_slot[leaf, {s}]"
          for s in range(depth)),
        *(f"z{k} = leaf_zero[leaf, {k}]; f{k} = leaf_feature[leaf, {k}]" for k in ks),
    ]
    rows = "for row in range(decisions.shape[1]):"
    leaves = "for leaf in range(leaf_value.shape[0]):"
    if rows_inner:
        loops = [f"    {leaves}", *(f"        {line}" for line in per_leaf), f"        {rows}"]
        body = []
    else:
        loops = [f"    {rows}", f"        {leaves}"]
        body = list(per_leaf)
    body.append("off = 0")  # bit k set: the row leaves the path at a split on feature k
    body += [f"off |= np.int64(decisions[node{s}, row] ^ left{s}) << slot{s}" for s in range(depth)]
    body += [f"d{k} = 1.0 - ((off >> {k}) & 1) - z{k}" for k in ks]
    for q in qs:
        body += [f"g{q}_{k} = z{k} + d{k} * t{q}" for k in ks]
        body.append(f"p{q}_0 = 1.0")
        body += [f"p{q}_{k} = p{q}_{k - 1} * g{q}_{k - 1}" for k in ks[1:]]
        body.append(f"s{q}_{width - 1} = 1.0")
        body += [f"s{q}_{k} = s{q}_{k + 1} * g{q}_{k + 1}" for k in reversed(ks[:-1])]
    for k in ks:
        integral = " + ".join(f"w{q} * p{q}_{k} * s{q}_{k}" for q in qs)
        body.append(f"out[f{k}, row] += v * d{k} * ({integral})")
    return "\n".join([*header, *loops, *(f"            {line}" for line in body)]) + "\n"
