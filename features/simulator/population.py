"""People, their latent traits, households and source records (no PII: see identity.py).

Everything here is a pure function of the parameters (one POPULATION stream), so the
oracle rebuilds exactly the same population from ``truth/simulation.json``.
Days are integers relative to ``parameters.start`` (day 0); negative = before the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulator.parameters import SimulationParameters
from features.simulator.randomness import POPULATION_STREAM, stream_generator

SYSTEMS = ("web", "app", "store", "crm")
WEB, APP, STORE, CRM = range(4)
RESPONSIVENESS_SEGMENTS = ("none", "email", "push", "sms", "all")
NEVER = -(10**6)
"""Sentinel day for "has not happened"."""


@dataclass
class Population:
    """Column arrays over people (length n) and over source records (length r)."""

    # people
    household: np.ndarray  # int64 household index
    household_rank: np.ndarray  # 0 = first member of the household
    household_size: np.ndarray
    join_day: np.ndarray  # int64, day the first record was created
    alive_at_start: np.ndarray  # bool
    last_purchase_before_start: np.ndarray  # int64 day (< 0) or NEVER
    purchase_rate: np.ndarray  # base daily intensity
    value_log_mean: np.ndarray
    return_propensity: np.ndarray
    serial_returner: np.ndarray  # bool
    discount_sensitivity: np.ndarray
    base_hazard: np.ndarray
    responsiveness: np.ndarray  # (n, 3) email, push, sms
    responsiveness_segment: np.ndarray  # int index into RESPONSIVENESS_SEGMENTS
    service_propensity: np.ndarray
    engagement: np.ndarray  # daily browsing-session intensity
    channel_preference: np.ndarray  # (n, 4) weights of ordering via web, app, store, phone(crm)
    # records
    record_person: np.ndarray  # int64
    record_system: np.ndarray  # int8 index into SYSTEMS
    record_created_day: np.ndarray  # int64
    record_created_second: np.ndarray  # int64 second of the day
    record_registered: np.ndarray  # bool: False = unregistered loyalty card (no customers row)
    person_record: np.ndarray  # (n, 4) record index per system, -1 if none
    # consents known before the window: granted at signup, maybe withdrawn since
    initial_consent: np.ndarray  # (r, 3) bool state at start for email, push, sms
    initial_grant: np.ndarray  # (r, 3) bool: a grant row exists before the window
    initial_withdrawal_day: np.ndarray  # (r, 3) int64 day of a pre-window withdrawal or NEVER

    @property
    def person_count(self) -> int:
        return len(self.join_day)

    @property
    def record_count(self) -> int:
        return len(self.record_person)

    def consent_slots(self) -> np.ndarray:
        """(r, 3) bool: which records can hold which consent (email/sms on web and crm, push on app)."""
        registered = self.record_registered
        web_or_crm = (self.record_system == WEB) | (self.record_system == CRM)
        slots = np.zeros((self.record_count, 3), dtype=bool)
        slots[:, 0] = web_or_crm & registered
        slots[:, 1] = (self.record_system == APP) & registered
        slots[:, 2] = web_or_crm & registered
        return slots

    def contact_records(self) -> np.ndarray:
        """(n, 3) record that would send email, push, sms to each person (-1 if none).

        Email and sms go through the CRM record if there is one, else the web account;
        push goes through the app.
        """
        email = np.where(
            self.person_record[:, CRM] >= 0, self.person_record[:, CRM], self.person_record[:, WEB]
        )
        return np.stack([email, self.person_record[:, APP], email], axis=1)


def build_households(
    person_count: int, parameters: SimulationParameters, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Household index, rank within household and household size for each person."""
    weights = np.asarray(parameters.household_size_weights, dtype=float)
    weights = weights / weights.sum()
    mean_size = float((np.arange(1, len(weights) + 1) * weights).sum())
    sizes = rng.choice(
        np.arange(1, len(weights) + 1), size=int(person_count / mean_size * 1.2) + 10, p=weights
    )
    while sizes.sum() < person_count:  # pragma: no cover - the 1.2 margin makes this rare
        sizes = np.concatenate(
            [sizes, rng.choice(np.arange(1, len(weights) + 1), size=len(sizes), p=weights)]
        )
    ends = np.cumsum(sizes)
    household_count = int(np.searchsorted(ends, person_count) + 1)
    sizes = sizes[:household_count].copy()
    sizes[-1] -= ends[household_count - 1] - person_count
    household = np.repeat(np.arange(household_count), sizes)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rank = np.arange(person_count) - starts
    return household, rank, np.repeat(sizes, sizes)


def draw_responsiveness(
    person_count: int, parameters: SimulationParameters, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel first-day boost: a mixture of people who answer nothing, one channel, or all."""
    weights = np.asarray(parameters.responsiveness_segment_weights, dtype=float)
    segment = rng.choice(len(weights), size=person_count, p=weights / weights.sum())
    low = parameters.unresponsive_level * rng.gamma(2.0, 0.5, size=(person_count, 3))
    high = parameters.responsive_level * rng.gamma(3.0, 1 / 3, size=(person_count, 3))
    favourite = np.zeros((person_count, 3), dtype=bool)
    for channel in range(3):
        favourite[:, channel] = segment == channel + 1
    everything = segment == 4
    favourite[everything] = True
    level = np.where(favourite, high, low)
    level[everything] *= 0.6  # responsive to all channels, but less to each
    return level, segment


def build_population(parameters: SimulationParameters) -> Population:
    """Draw people, traits, households and records; deterministic for the parameters."""
    rng = stream_generator(parameters.seed, POPULATION_STREAM)
    n = parameters.customers
    day_count = parameters.day_count

    household, rank, size = build_households(n, parameters, rng)

    joins_in_window = rng.random(n) < parameters.share_joining_in_window
    join_day = np.where(
        joins_in_window,
        rng.integers(0, day_count, size=n),
        -rng.integers(1, parameters.tenure_before_start_days + 1, size=n),
    ).astype(np.int64)

    mean_rate = 1.0 / parameters.mean_days_between_orders
    shape = parameters.purchase_rate_shape
    purchase_rate = np.minimum(rng.gamma(shape, mean_rate / shape, size=n), 0.5)
    value_log_mean = np.log(
        parameters.order_value_median
    ) + parameters.order_value_person_spread * rng.standard_normal(n)
    serial_returner = rng.random(n) < parameters.serial_returner_share
    return_propensity = np.where(
        serial_returner, rng.beta(6.0, 2.5, size=n), rng.beta(1.2, 20.0, size=n)
    )
    discount_sensitivity = rng.beta(1.5, 2.5, size=n)
    hazard_shape = parameters.hazard_shape
    base_hazard = rng.gamma(hazard_shape, parameters.mean_daily_hazard / hazard_shape, size=n)
    responsiveness, segment = draw_responsiveness(n, parameters, rng)
    service_propensity = rng.gamma(1.0, 1.0, size=n)
    relative_rate = purchase_rate / mean_rate
    engagement = np.minimum(
        parameters.mean_daily_sessions
        * np.sqrt(relative_rate)
        * rng.lognormal(-0.18, 0.6, size=n)
        / 0.85,
        0.5,
    )

    tenure = np.maximum(-join_day, 0)
    alive_at_start = rng.random(n) >= -np.expm1(
        -parameters.dead_at_start_scale * base_hazard * tenure
    )
    gap = np.ceil(rng.exponential(1.0, size=n) / np.maximum(purchase_rate, 1e-4)).astype(np.int64)
    gap = np.where(alive_at_start, gap, gap + (rng.random(n) * tenure).astype(np.int64))
    last_purchase = np.where(join_day < 0, -gap, NEVER)
    last_purchase = np.where(last_purchase < join_day, NEVER, last_purchase)

    # --- records ---
    membership = rng.random((n, 4)) < np.asarray(parameters.system_shares)
    nobody = ~membership.any(axis=1)
    shares = np.asarray(parameters.system_shares) / np.sum(parameters.system_shares)
    membership[nobody, rng.choice(4, size=int(nobody.sum()), p=shares)] = True
    # the first record is created at join; later ones after an exponential delay
    first_system = np.argmax(rng.random((n, 4)) * membership, axis=1)
    delay = np.ceil(rng.exponential(parameters.later_record_mean_delay_days, size=(n, 4))).astype(
        np.int64
    )
    created = join_day[:, None] + delay
    created[np.arange(n), first_system] = join_day
    membership &= created < day_count
    people, systems = np.nonzero(membership)
    record_count = len(people)
    record_created_day = created[people, systems]
    record_created_second = rng.integers(0, 86_400, size=record_count)
    record_registered = ~(
        (systems == STORE) & (rng.random(record_count) < parameters.unregistered_store_share)
    )
    person_record = np.full((n, 4), -1, dtype=np.int64)
    person_record[people, systems] = np.arange(record_count)

    channel_preference = rng.dirichlet(np.ones(4), size=n) * membership
    channel_preference[:, CRM] *= 0.25  # phone orders are rarer
    channel_preference /= channel_preference.sum(axis=1, keepdims=True)

    population = Population(
        household=household,
        household_rank=rank,
        household_size=size,
        join_day=join_day,
        alive_at_start=alive_at_start,
        last_purchase_before_start=last_purchase.astype(np.int64),
        purchase_rate=purchase_rate,
        value_log_mean=value_log_mean,
        return_propensity=return_propensity,
        serial_returner=serial_returner,
        discount_sensitivity=discount_sensitivity,
        base_hazard=base_hazard,
        responsiveness=responsiveness,
        responsiveness_segment=segment,
        service_propensity=service_propensity,
        engagement=engagement,
        channel_preference=channel_preference,
        record_person=people.astype(np.int64),
        record_system=systems.astype(np.int8),
        record_created_day=record_created_day,
        record_created_second=record_created_second,
        record_registered=record_registered,
        person_record=person_record,
        initial_consent=np.zeros((record_count, 3), dtype=bool),
        initial_grant=np.zeros((record_count, 3), dtype=bool),
        initial_withdrawal_day=np.full((record_count, 3), NEVER, dtype=np.int64),
    )
    draw_initial_consents(population, parameters, rng)
    return population


def draw_initial_consents(
    population: Population, parameters: SimulationParameters, rng: np.random.Generator
) -> None:
    """Consent history of records created before the window: signup grant, maybe a withdrawal."""
    slots = population.consent_slots()
    before = population.record_created_day < 0
    grant_share = np.asarray(parameters.consent_grant_shares)
    granted = slots & before[:, None] & (rng.random(slots.shape) < grant_share)
    age = np.maximum(-population.record_created_day, 0)[:, None]
    withdrawn = granted & (
        rng.random(slots.shape) < -np.expm1(-parameters.daily_withdrawal_rate * age)
    )
    withdrawal_day = (
        population.record_created_day[:, None]
        + 1
        + (rng.random(slots.shape) * np.maximum(age - 1, 0)).astype(np.int64)
    )
    population.initial_grant = granted
    population.initial_consent = granted & ~withdrawn
    population.initial_withdrawal_day = np.where(withdrawn, np.minimum(withdrawal_day, -1), NEVER)
