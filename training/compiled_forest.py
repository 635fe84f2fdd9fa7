"""Boosters compiled to machine code (lleaves, on LLVM) for scoring a whole customer base.

LightGBM walks its trees node by node in an interpreter; compiled, each tree is a function of
branches, and a 600-tree model predicts about 6x faster on this machine with the same numbers (to
float rounding: tests/training/test_compiled_forest.py). Compiling costs about a minute per 600 trees,
so it pays only for large bases; the compiled code is cached on disk by a hash of the model text and
reused by every later run of the same model version. `compile_forests` registers the compiled
forests; `training.models` uses one when a booster has it and the input is large.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightgbm
import numpy as np

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""booster -> its compiled forest, for as long as the booster lives."""


def forest_key(booster: lightgbm.Booster) -> str:
    """Names the compiled file: the same model text always maps to the same file."""
    return hashlib.sha256(booster.model_to_string().encode()).hexdigest()[:24]


def compiled_forest(booster: lightgbm.Booster):
    """The booster's compiled forest, or None when it was not compiled in this process."""
    return _COMPILED.get(booster)


def forget_compiled_forests() -> None:
    _COMPILED.clear()


def predict_compiled(forest, encoded: np.ndarray) -> np.ndarray:
    """What `booster.predict(encoded)` returns (the objective's transform applied), on every core."""
    return forest.predict(np.ascontiguousarray(encoded, dtype=np.float64))


def compile_forests(boosters: Sequence[lightgbm.Booster], cache_dir: Path, workers: int = 2,
                    progress: Callable[[str], None] = lambda message: None) -> float:
    """Compile each booster (in `workers` processes) unless its compiled file is cached, then load
    and register them all. Returns the seconds spent compiling (0 when everything was cached)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files = []
    for booster in boosters:
        key = forest_key(booster)
        model_file, object_file = cache_dir / f"{key}.txt", cache_dir / f"{key}.o"
        if not model_file.exists():
            booster.save_model(str(model_file))
        files.append((booster, model_file, object_file))
    missing = [(m, o) for _, m, o in files if not o.exists()]
    if missing:
        progress(f"compiling {len(missing)} model(s) to machine code (once per model version; cached in {cache_dir})")
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
            list(pool.map(_compile_to_file, *zip(*missing, strict=True)))
    compiling = time.perf_counter() - started if missing else 0.0
    for booster, model_file, object_file in files:
        _COMPILED[booster] = _load_compiled(model_file, object_file)
    return compiling


def _compile_to_file(model_file: Path, object_file: Path) -> None:
    partial = object_file.with_suffix(".partial")
    _load_compiled(model_file, partial)
    partial.replace(object_file)  # a killed compile leaves no truncated cache entry


def _load_compiled(model_file: Path, object_file: Path):
    import lleaves

    _support_current_llvmlite()
    model = lleaves.Model(model_file=str(model_file))
    model.compile(cache=str(object_file))
    return model


def _support_current_llvmlite() -> None:
    """lleaves 1.3 calls two llvmlite functions that llvmlite 0.45 removed (numba pins llvmlite here):
    `initialize()` (now automatic) and the legacy pass-manager builder. Swap in the new pass builder
    with the same optimisation level; nothing else in lleaves changes."""
    import llvmlite.binding as llvm

    if hasattr(llvm, "PassManagerBuilder"):
        return
    import llvmlite.ir
    from lleaves import compiler, llvm_binding
    from lleaves.compiler.ast import parse_to_ast
    from lleaves.compiler.codegen import gen_forest

    def initialize_native() -> None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()

    def compile_to_module(file_path, raw_score=False, fblocksize=34, finline=True, froot_func_name="forest_root",
                          use_fp64=True):
        forest = parse_to_ast(str(file_path))
        forest.raw_score = raw_score
        ir = llvmlite.ir.Module(name="forest")
        gen_forest(forest, ir, fblocksize, froot_func_name, use_fp64)
        ir.triple = llvm.get_process_triple()
        module = llvm.parse_assembly(str(ir))
        module.name = str(file_path)
        module.verify()
        machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
        builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=2))
        builder.getModulePassManager().run(module, builder)
        return module

    llvm_binding._initialize_llvm = initialize_native
    compiler.compile_to_module = compile_to_module
