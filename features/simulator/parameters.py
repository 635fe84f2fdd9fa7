"""Every knob of the generative model in one frozen dataclass.

The parameters are saved to ``truth/simulation.json`` so that the oracle can rebuild the
population and replay the simulation deterministically; anything that changes the model
therefore has to live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SimulationParameters:
    """The generative model of a retailer; defaults give ~20k people over two years."""

    customers: int = 20_000
    """Number of people (each has 1-4 source records)."""
    seed: int = 42
    start: dt.date = dt.date(2024, 7, 1)
    end: dt.date = dt.date(2026, 6, 30)
    """Last simulated day, inclusive."""
    marketing: bool = True
    """False: no touches at all (oracle calibration without interference)."""

    # --- population and identity ---
    household_size_weights: tuple[float, ...] = (0.66, 0.22, 0.08, 0.04)
    """Share of households with 1, 2, 3, 4 members."""
    share_joining_in_window: float = 0.3
    """People whose first record is created during the simulated window."""
    tenure_before_start_days: int = 1460
    """Pre-existing people joined uniformly within this many days before `start`."""
    system_shares: tuple[float, float, float, float] = (0.62, 0.35, 0.45, 0.28)
    """Probability of having a web, app, store (loyalty card), crm record."""
    later_record_mean_delay_days: float = 300.0
    """Records after the first one are created this long after joining (exponential)."""
    unregistered_store_share: float = 0.12
    """Store cards with purchases but no customers row (an unregistered card)."""
    mover_household_share: float = 0.12
    non_latin_share: float = 0.02
    second_email_share: float = 0.2
    shared_family_email_share: float = 0.1
    shared_landline_share: float = 0.3
    name_typo_rate: float = 0.03
    nickname_rate: float = 0.12
    swapped_name_rate: float = 0.015
    stale_address_rate: float = 0.6
    """Share of a mover's pre-move records that were never updated to the new address."""

    # --- purchasing ---
    mean_days_between_orders: float = 50.0
    purchase_rate_shape: float = 0.8
    """Gamma shape of the base purchase rate: small means a wide spread."""
    order_value_median: float = 42.0
    order_value_person_spread: float = 0.5
    """Sd of the person-level log mean order value."""
    order_value_within_sigma: float = 0.5
    """Sd of log order value within a person."""
    seasonal_peak: float = 0.45
    """Extra purchase rate at the Nov/Dec peak (relative)."""
    serial_returner_share: float = 0.03
    full_return_share: float = 0.6
    """A returned order is returned in full this often, otherwise 20-80% of it."""

    # --- dropout ---
    mean_daily_hazard: float = 1 / 900
    hazard_shape: float = 1.5
    dead_at_start_scale: float = 0.5
    """Pre-existing people are dead at start with prob 1-exp(-scale*hazard*tenure)."""
    bad_service_effect: float = 0.8
    """alpha: hazard multiplier per unit of decayed low-CSAT ticket count."""
    bad_service_half_life_days: float = 60.0
    fatigue_effect: float = 0.08
    """beta: hazard multiplier per unit of decayed touch count."""
    fatigue_half_life_days: float = 14.0

    # --- marketing response ---
    touch_boost_half_life_days: float = 2.0
    """A touch's effect on the daily purchase intensity halves this fast."""
    responsive_level: float = 0.05
    """Typical first-day intensity boost on a person's favourite channel."""
    unresponsive_level: float = 0.003
    responsiveness_segment_weights: tuple[float, ...] = (0.40, 0.20, 0.18, 0.10, 0.12)
    """Share of people responding to: nothing, email, push, sms, everything."""
    offer_strength: float = 10.0
    """Offer multiplier = 1 + offer_strength * depth * discount_sensitivity."""
    newsletter_strength: float = 0.5
    """A newsletter moves people less than a targeted campaign."""
    offer_valid_days: int = 7
    fatigue_weights: tuple[float, float, float] = (0.5, 0.7, 1.0)
    """Fatigue added by one touch on email, push, sms."""

    # --- web/app behaviour ---
    mean_daily_sessions: float = 0.007
    cart_add_share: float = 0.3
    """Share of browsing sessions with an add_to_cart (abandoned when no purchase)."""

    # --- service ---
    daily_ticket_rate: float = 1 / 900
    recent_order_ticket_factor: float = 4.0
    """Extra ticket intensity in the 14 days after an order."""
    csat_weights: tuple[float, float, float, float, float] = (0.12, 0.12, 0.16, 0.25, 0.35)
    csat_missing_share: float = 0.35

    # --- consents ---
    consent_grant_shares: tuple[float, float, float] = (0.5, 0.6, 0.3)
    """Probability of granting email, push, sms at signup (the order of TOUCH_CHANNELS)."""
    daily_withdrawal_rate: float = 1 / 1500
    fatigue_withdrawal_effect: float = 0.5
    daily_regrant_rate: float = 1 / 3000

    # --- campaigns ---
    newsletter_weekday: int = 1
    """Tuesday (Monday = 0)."""
    promo_share: float = 0.2
    """Share of reachable people picked for each monthly promo (first Thursday)."""
    promo_control_share: float = 0.2
    cart_abandon_control_share: float = 0.25
    win_back_lapse_days: int = 120
    win_back_repeat_days: int = 90
    win_back_control_share: float = 0.2
    channel_costs: tuple[float, float, float] = (0.002, 0.001, 0.05)
    """Cost per touch on email, push, sms (control touches cost nothing)."""

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        if self.end < self.start:
            raise ValueError("end must not be before start")

    @property
    def day_count(self) -> int:
        return (self.end - self.start).days + 1

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types, dates as ISO strings."""
        data = dataclasses.asdict(self)
        data["start"] = self.start.isoformat()
        data["end"] = self.end.isoformat()
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in data.items()
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> SimulationParameters:
        """Inverse of `to_json_dict`; unknown keys are an error so drift is caught early."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown simulation parameters: {sorted(unknown)}")
        values = dict(data)
        for key in ("start", "end"):
            if key in values and isinstance(values[key], str):
                values[key] = dt.date.fromisoformat(values[key])
        values = {
            key: tuple(value) if isinstance(value, list) else value for key, value in values.items()
        }
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2, sort_keys=True)
