"""Named, independent random streams so that every part of the model is reproducible alone.

Each (stream, day) pair gets its own generator from one SeedSequence. The oracle replays
only the state-changing streams and skips the detail streams (amounts, timestamps, event
types, opens) without shifting any random number the state depends on.
"""

from __future__ import annotations

import numpy as np

POPULATION_STREAM = 0
IDENTITY_STREAM = 1
STATE_STREAM = 2
DETAIL_STREAM = 3
MARKETING_STREAM = 4
MARKETING_DETAIL_STREAM = 5


def stream_generator(seed: int, stream: int, day: int = 0) -> np.random.Generator:
    """A PCG64 generator for one purpose on one simulated day."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, day + 100_000)))
    )


def sparse_bernoulli(rng: np.random.Generator, size: int, probability_bound: float) -> np.ndarray:
    """Indices in range(size) drawn independently with probability `probability_bound`.

    Exact, and much cheaper than `rng.random(size)` for rare events: the caller thins the
    candidates with `rng.random(len(candidates)) < p_i / probability_bound`.
    """
    if size == 0 or probability_bound <= 0:
        return np.empty(0, dtype=np.int64)
    if probability_bound >= 1:
        return np.arange(size, dtype=np.int64)
    count = rng.binomial(size, probability_bound)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    chosen = rng.choice(size, size=count, replace=False)
    chosen.sort()
    return chosen.astype(np.int64)
