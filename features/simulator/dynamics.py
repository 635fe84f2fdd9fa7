"""The behavioural formulas shared by the simulator and the oracle.

Both sides import these functions, so the oracle can never disagree with the data it is
meant to explain. Time runs in whole days; within a day the order is:

1. the hazard state decays (``decay_state``) from the end of the previous day;
2. an alive person drops out with ``dropout_hazard``;
3. a still-alive person buys with ``purchase_probability`` (at most one order a day);
4. tickets, consents and marketing touches of the day update the state for tomorrow.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from features.simulator.parameters import SimulationParameters

TOUCH_CHANNELS = ("email", "push", "sms")
"""Channels that can carry a touch; `none` is the control arm."""
OFFERS = ("none", "10pct", "20pct")
OFFER_DEPTHS = np.array([0.0, 0.1, 0.2])
PARTIAL_RETURN_MEAN_FRACTION = 0.5
"""Partial returns send back a uniform 20-80% of the order."""


def half_life_decay(half_life_days: float) -> float:
    """Daily multiplicative decay for a quantity with the given half-life."""
    return float(0.5 ** (1.0 / half_life_days))


def decay_state(
    boost: np.ndarray,
    fatigue: np.ndarray,
    bad_service: np.ndarray,
    parameters: SimulationParameters,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One day of exponential forgetting of touch boosts, contact fatigue and bad service."""
    return (
        boost * half_life_decay(parameters.touch_boost_half_life_days),
        fatigue * half_life_decay(parameters.fatigue_half_life_days),
        bad_service * half_life_decay(parameters.bad_service_half_life_days),
    )


def season_factor(dates: np.ndarray) -> np.ndarray:
    """Relative purchase intensity by calendar day: Nov/Dec peak plus a weekend lift.

    ``dates`` is datetime64[D]; the peak height is applied by ``seasonal_intensity``.
    Returns the unscaled yearly bump (0..1) and the weekly factor as a pair of arrays.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    years = dates.astype("datetime64[Y]")
    day_of_year = (dates - years).astype(np.int64)
    # Gaussian bump centred on 1 December (day 334), ~3 weeks wide; wraps into January.
    distance = np.minimum(np.abs(day_of_year - 334), 365 - np.abs(day_of_year - 334))
    yearly_bump = np.exp(-0.5 * (distance / 22.0) ** 2)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekly = np.array([0.95, 0.93, 0.95, 0.98, 1.05, 1.12, 1.02])[weekday]
    return yearly_bump, weekly


def seasonal_intensity(dates: np.ndarray, parameters: SimulationParameters) -> np.ndarray:
    """Multiplier of the base purchase rate on each date (mean close to 1)."""
    yearly_bump, weekly = season_factor(dates)
    return (
        (1.0 + parameters.seasonal_peak * yearly_bump)
        / (1.0 + parameters.seasonal_peak * 0.151)
        * weekly
    )


def seasonal_intensity_for_range(
    start: dt.date, days: int, parameters: SimulationParameters
) -> np.ndarray:
    dates = np.datetime64(start, "D") + np.arange(days)
    return seasonal_intensity(dates, parameters)


def purchase_probability(
    purchase_rate: np.ndarray, season: float | np.ndarray, boost: np.ndarray
) -> np.ndarray:
    """P(an alive person orders today) = 1 - exp(-(rate * season + active touch boosts))."""
    return -np.expm1(-(purchase_rate * season + boost))


def dropout_hazard(
    base_hazard: np.ndarray,
    bad_service: np.ndarray,
    fatigue: np.ndarray,
    parameters: SimulationParameters,
) -> np.ndarray:
    """Daily dropout probability, raised by recent bad service and contact fatigue."""
    hazard = (
        base_hazard
        * (1.0 + parameters.bad_service_effect * bad_service)
        * (1.0 + parameters.fatigue_effect * fatigue)
    )
    return np.minimum(hazard, 1.0)


def offer_multiplier(
    offer_depth: np.ndarray | float,
    discount_sensitivity: np.ndarray,
    parameters: SimulationParameters,
) -> np.ndarray:
    """How much an offer amplifies a touch: deeper offers move discount-sensitive people more."""
    return 1.0 + parameters.offer_strength * offer_depth * discount_sensitivity


def touch_boost(
    responsiveness: np.ndarray,
    offer_depth: np.ndarray | float,
    discount_sensitivity: np.ndarray,
    strength: float,
    parameters: SimulationParameters,
) -> np.ndarray:
    """Intensity added at the end of the send day; it decays before it first acts next day."""
    return (
        responsiveness * offer_multiplier(offer_depth, discount_sensitivity, parameters) * strength
    )


def expected_order_value(value_log_mean: np.ndarray, value_log_sigma: float) -> np.ndarray:
    """Mean of the person's lognormal list price."""
    return np.exp(value_log_mean + 0.5 * value_log_sigma**2)


def expected_returned_fraction(
    return_propensity: np.ndarray, parameters: SimulationParameters
) -> np.ndarray:
    """Expected share of an order's amount that comes back."""
    full = parameters.full_return_share
    return return_propensity * (full + (1.0 - full) * PARTIAL_RETURN_MEAN_FRACTION)


def offer_depth_of(offer: str | None) -> float:
    if offer is None:
        return 0.0
    if offer not in OFFERS:
        raise ValueError(f"unknown offer {offer!r}; expected one of {OFFERS}")
    return float(OFFER_DEPTHS[OFFERS.index(offer)])
