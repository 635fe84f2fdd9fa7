"""Fellegi–Sunter match weights, learned without labels (EM) or from labelled pairs.

Each field's comparison level has an m probability (how often true matches show that level)
and a u probability (how often non-matches do); the evidence of a level is log2(m/u), the
match weight of a pair is the prior log-odds plus the sum over fields, and the match
probability is its logistic transform. Level 0 (a value missing) carries no evidence.
Exact agreement on a name is adjusted by the name's frequency: agreeing on a rare surname is
stronger evidence than agreeing on "smith".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.identity.matching import LEVELS, TERM_FREQUENCY_FIELDS

PSEUDO_COUNT = 1.0


@dataclass
class MatchModel:
    m: dict[str, list[float]]
    u: dict[str, list[float]]
    prior: float
    """Share of candidate pairs that are matches."""
    term_frequency_baseline: dict[str, float] = field(default_factory=dict)
    """Sum of squared value frequencies per field: the chance two random records agree."""
    iterations: int = 0
    trained_on: str = "em"

    def level_weights(self, name: str) -> np.ndarray:
        m = np.asarray(self.m[name])
        u = np.asarray(self.u[name])
        weights = np.log2(m / u)
        weights[0] = 0.0
        return weights

    def prior_weight(self) -> float:
        return float(np.log2(self.prior / (1 - self.prior)))

    def as_dict(self) -> dict:
        return {
            "m": self.m, "u": self.u, "prior": self.prior, "iterations": self.iterations,
            "term_frequency_baseline": self.term_frequency_baseline, "trained_on": self.trained_on,
            "levels": {name: list(levels) for name, levels in LEVELS.items()},
        }

    @classmethod
    def from_dict(cls, payload: dict) -> MatchModel:
        return cls(
            m=payload["m"], u=payload["u"], prior=payload["prior"],
            term_frequency_baseline=payload.get("term_frequency_baseline", {}),
            iterations=payload.get("iterations", 0), trained_on=payload.get("trained_on", "em"),
        )


def _initial_m() -> dict[str, list[float]]:
    """A start for EM: true matches mostly agree."""
    m = {}
    for name, levels in LEVELS.items():
        values = np.geomspace(1.0, 0.05, len(levels) - 1)
        m[name] = [1.0, *(values / values.sum())]
    return m


def _level_distribution(observed: np.ndarray, weights: np.ndarray, count: int) -> list[float]:
    totals = np.bincount(observed, weights=weights, minlength=count)[1:] + PSEUDO_COUNT
    return [1.0, *(totals / totals.sum()).tolist()]


def estimate_u(random_levels: pd.DataFrame) -> dict[str, list[float]]:
    """u from random record pairs: almost none of them are the same person."""
    ones = np.ones(len(random_levels))
    return {n: _level_distribution(random_levels[n].to_numpy(), ones, len(v)) for n, v in LEVELS.items()}


def _posterior(levels: pd.DataFrame, m: dict, u: dict, prior: float, fields: list[str]) -> np.ndarray:
    log_odds = np.full(len(levels), np.log(prior / (1 - prior)))
    for name in fields:
        ratio = np.log(np.asarray(m[name])) - np.log(np.asarray(u[name]))
        ratio[0] = 0.0
        log_odds += ratio[levels[name].to_numpy()]
    return 1.0 / (1.0 + np.exp(-np.clip(log_odds, -50, 50)))


def train_m_with_em(
    levels: pd.DataFrame,
    u: dict[str, list[float]],
    excluded: tuple[str, ...],
    max_iterations: int = 50,
    tolerance: float = 1e-5,
) -> tuple[dict[str, list[float]], int]:
    """EM for m with u held fixed, on pairs that share a blocking key (its fields excluded):
    fixing u anchors the non-match class, so EM cannot mistake 'same address' for 'same person'."""
    fields = [n for n in LEVELS if n not in excluded]
    m = _initial_m()
    prior = 0.5
    iterations = 0
    for _ in range(max_iterations):
        iterations += 1
        posterior = _posterior(levels, m, u, prior, fields)
        new_m = dict(m)
        for name in fields:
            new_m[name] = _level_distribution(levels[name].to_numpy(), posterior, len(LEVELS[name]))
        new_prior = float(np.clip(posterior.mean(), 1e-6, 1 - 1e-6))
        change = max(abs(new_prior - prior), *(np.abs(np.subtract(new_m[n], m[n])).max() for n in fields))
        m, prior = new_m, new_prior
        if change < tolerance:
            break
    return {n: m[n] for n in fields}, iterations


# Training blocks: pairs that agree exactly on these fields train the m of all other fields.
TRAINING_BLOCKS: dict[str, tuple[str, ...]] = {
    "same_email": ("email",),
    "same_names": ("first_name", "last_name"),
    "same_birth_date": ("date_of_birth",),
}


EM_MIN_PAIRS = 50
"""Candidate pairs a training block needs before EM learns from it."""


def train_with_em(
    candidate_levels: pd.DataFrame,
    random_levels: pd.DataFrame,
    records: int,
    min_pairs: int = EM_MIN_PAIRS,
) -> MatchModel:
    """Unsupervised Fellegi–Sunter in the way Splink does it: u from random pairs; m by EM
    on several training blocks, averaged; the prior from the candidate pairs' expected matches."""
    u = estimate_u(random_levels)
    estimates: dict[str, list[list[float]]] = {n: [] for n in LEVELS}
    iterations = 0
    for fields in TRAINING_BLOCKS.values():
        mask = np.ones(len(candidate_levels), dtype=bool)
        for name in fields:
            mask &= candidate_levels[name].to_numpy() == 1
        if mask.sum() < min_pairs:
            continue
        m_block, used = train_m_with_em(candidate_levels[mask], u, fields)
        iterations += used
        for name, values in m_block.items():
            estimates[name].append(values)
    initial = _initial_m()
    m = {n: (np.mean(estimates[n], axis=0).tolist() if estimates[n] else initial[n]) for n in LEVELS}
    return MatchModel(m=m, u=u, prior=estimate_prior(candidate_levels, m, u, records), iterations=iterations,
                      trained_on="em")


def estimate_prior(candidate_levels: pd.DataFrame, m: dict, u: dict, records: int) -> float:
    """The chance that two random records match: the expected matches among the candidate
    pairs (m and u fixed, EM on the share only), spread over all pairs of records."""
    if len(candidate_levels) == 0:  # nothing was compared: no pair can match
        return 1e-12
    candidate_prior = 0.5
    for _ in range(50):
        updated = float(np.clip(_posterior(candidate_levels, m, u, candidate_prior, list(LEVELS)).mean(), 1e-6, 1 - 1e-6))
        if abs(updated - candidate_prior) < 1e-6:
            break
        candidate_prior = updated
    expected_matches = candidate_prior * len(candidate_levels)
    all_pairs = max(records * (records - 1) / 2, 1.0)
    return float(np.clip(expected_matches / all_pairs, 1e-12, 0.5))


def train_with_labels(
    levels: pd.DataFrame,
    is_match: np.ndarray,
    random_levels: pd.DataFrame,
    candidate_levels: pd.DataFrame,
    records: int,
) -> MatchModel:
    """m counted from labelled matches, for users who have them; u from random pairs as in EM
    (labelled non-matches are usually hard cases, not typical ones); the prior from the data."""
    weights = np.asarray(is_match, dtype=float)
    if weights.sum() == 0:
        raise ValueError("labelled pairs must include matches")
    m = {n: _level_distribution(levels[n].to_numpy(), weights, len(v)) for n, v in LEVELS.items()}
    u = estimate_u(random_levels)
    return MatchModel(m=m, u=u, prior=estimate_prior(candidate_levels, m, u, records), trained_on="labels")


def term_frequencies(values: pd.Series) -> tuple[pd.Series, float]:
    """Each value's share of records, and the chance two random records agree on the field."""
    frequencies = values.dropna().value_counts(normalize=True)
    return frequencies, float((frequencies**2).sum())


def score_pairs(
    levels: pd.DataFrame,
    model: MatchModel,
    agreed_values: dict[str, pd.Series] | None = None,
    frequencies: dict[str, pd.Series] | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Match weight, match probability, and the per-field weights that explain them.

    Exact agreement on a name is worth log2(m / tf), tf being how common the agreed value is:
    two records named "Fang Yang" are weak evidence where many people are called that. When
    first and last name both agree, tf is that of the full name, because first names and
    surnames are not independent (they follow culture and script).
    """
    contributions = pd.DataFrame(index=levels.index)
    for name in LEVELS:
        contributions[name] = model.level_weights(name)[levels[name].to_numpy()]
    if agreed_values is None or frequencies is None:
        return _combine(model, contributions)
    exact = {name: levels[name].to_numpy() == 1 for name in TERM_FREQUENCY_FIELDS}
    value_weight = {}
    for name in TERM_FREQUENCY_FIELDS:
        m_exact = model.m[name][1]
        tf = agreed_values[name].map(frequencies[name]).to_numpy(dtype=float)
        value_weight[name] = np.where(np.isfinite(tf) & (tf > 0), np.log2(m_exact / tf), np.nan)
    m_both = model.m["first_name"][1] * model.m["last_name"][1]
    tf_full = agreed_values["name_pair"].map(frequencies["name_pair"]).to_numpy(dtype=float)
    full_weight = np.where(np.isfinite(tf_full) & (tf_full > 0), np.log2(m_both / tf_full), np.nan)
    both = exact["first_name"] & exact["last_name"] & np.isfinite(full_weight)
    for name in TERM_FREQUENCY_FIELDS:
        alone = exact[name] & ~both & np.isfinite(value_weight[name])
        contributions.loc[alone, name] = value_weight[name][alone]
    # Split the full-name weight so that explain shows a part for each name.
    first_part = np.where(np.isfinite(value_weight["first_name"]), value_weight["first_name"], full_weight / 2)
    first_part = np.minimum(first_part, full_weight)
    contributions.loc[both, "first_name"] = first_part[both]
    contributions.loc[both, "last_name"] = (full_weight - first_part)[both]
    return _combine(model, contributions)


def _combine(model: MatchModel, contributions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    weight = model.prior_weight() + contributions.sum(axis=1).to_numpy()
    probability = 1.0 / (1.0 + np.power(2.0, -np.clip(weight, -60, 60)))
    return weight, probability, contributions
