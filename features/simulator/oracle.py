"""The oracle: each person's true probabilities, computed from the generative model itself.

How it works. `Oracle.load` reads ``truth/simulation.json``, rebuilds the population
deterministically and replays the simulation (state only, no rows) up to the as-of date,
stopping after that day's behaviour and before that day's marketing. That gives each
person's true state: alive or not, touch boost, contact fatigue, bad service, active offer.

From that state it projects forward day by day with the same functions the simulator
uses (`dynamics.decay_state`, `dynamics.dropout_hazard`, `dynamics.purchase_probability`),
assuming **no marketing contact in the horizon** other than the one being evaluated. The
hazard state decays deterministically and new support tickets are not anticipated.
Let q_d = P(alive and no purchase through day d) and s_d = P(alive at day d); on day d,
with dropout hazard h_d and purchase probability p_d (both 0 before the person joins):

- ``churn_probability``: P(no purchase in (as_of, as_of + horizon]) = 1 - sum_d q_{d-1} (1-h_d) p_d.
- ``expected_net_revenue``: sum_d s_{d-1} (1-h_d) p_d * E[order value] * (1 - offer depth
  while an earlier offer is still valid) * (1 - expected returned fraction).
- ``conversion_probability``: for c in email, push, sms, a touch on c (with ``offer``) at
  as_of adds ``touch_boost`` (campaign strength 1, i.e. a promo-style touch) and fatigue,
  then P(purchase within window days); ``none`` = no touch. Every person gets every column:
  it is counterfactual, whether or not they can actually be reached on c.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.simulator import dynamics
from features.simulator.engine import DailySimulation, PersonState
from features.simulator.identity import format_person_ids
from features.simulator.parameters import SimulationParameters
from features.simulator.population import Population, build_population

CONVERSION_CHANNELS = ("email", "push", "sms", "none")
SNAPSHOT_CACHE_SIZE = 4


def to_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def project_horizon(
    state: PersonState,
    population: Population,
    parameters: SimulationParameters,
    horizon_days: int,
    boost: np.ndarray | None = None,
    fatigue: np.ndarray | None = None,
    with_revenue: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """P(no purchase in the horizon) and, optionally, expected net revenue, per person."""
    as_of_day = state.day
    boost = state.boost.copy() if boost is None else boost.copy()
    fatigue = state.fatigue.copy() if fatigue is None else fatigue.copy()
    bad_service = state.bad_service.copy()
    alive = state.alive.astype(float)
    no_purchase_yet = alive.copy()
    first_purchase = np.zeros_like(alive)
    revenue = np.zeros_like(alive) if with_revenue else None
    dates = np.datetime64(parameters.start, "D") + as_of_day + 1 + np.arange(horizon_days)
    season = dynamics.seasonal_intensity(dates, parameters)
    if with_revenue:
        value = dynamics.expected_order_value(
            population.value_log_mean, parameters.order_value_within_sigma
        )
        net_value = value * (
            1.0 - dynamics.expected_returned_fraction(population.return_propensity, parameters)
        )
    for offset in range(horizon_days):
        day = as_of_day + 1 + offset
        boost, fatigue, bad_service = dynamics.decay_state(boost, fatigue, bad_service, parameters)
        active = population.join_day <= day
        survive = 1.0 - np.where(
            active,
            dynamics.dropout_hazard(population.base_hazard, bad_service, fatigue, parameters),
            0.0,
        )
        buy = np.where(
            active,
            dynamics.purchase_probability(population.purchase_rate, season[offset], boost),
            0.0,
        )
        first_purchase += no_purchase_yet * survive * buy
        no_purchase_yet *= survive * (1.0 - buy)
        if revenue is not None:
            alive = alive * survive
            depth = np.where(state.offer_until >= day, state.offer_depth, 0.0)
            revenue += alive * buy * net_value * (1.0 - depth)
    return 1.0 - first_purchase, revenue


class Oracle:
    """True churn, value and channel-response probabilities of every simulated person."""

    def __init__(
        self,
        parameters: SimulationParameters,
        truth_dir: Path | None = None,
        population: Population | None = None,
    ) -> None:
        self.parameters = parameters
        self.truth_dir = truth_dir
        self.population = population if population is not None else build_population(parameters)
        self.person_ids = format_person_ids(np.arange(self.population.person_count)).to_numpy(
            zero_copy_only=False
        )
        self.simulation: DailySimulation | None = None
        self.snapshots: OrderedDict[int, PersonState] = OrderedDict()

    @classmethod
    def load(cls, truth_dir: Path) -> Oracle:
        truth_dir = Path(truth_dir)
        document = json.loads((truth_dir / "simulation.json").read_text())
        parameters = SimulationParameters.from_json_dict(document["parameters"])
        return cls(parameters, truth_dir)

    # ----------------------------------------------------------------- state
    def as_of_day(self, as_of: dt.date | str) -> int:
        date = to_date(as_of)
        day = (date - self.parameters.start).days
        if not 0 <= day < self.parameters.day_count:
            raise ValueError(
                f"as_of {date} is outside the simulated window {self.parameters.start}..{self.parameters.end}"
            )
        return day

    def state_at(self, as_of: dt.date | str) -> PersonState:
        """True state after the as-of day's behaviour, before its marketing (cached)."""
        day = self.as_of_day(as_of)
        if day in self.snapshots:
            self.snapshots.move_to_end(day)
            return self.snapshots[day]
        if self.simulation is None or self.simulation.days_done > day:
            self.simulation = DailySimulation(self.parameters, self.population, emit=False)
        state = self.simulation.run_until_before_marketing(day)
        self.snapshots[day] = state
        while len(self.snapshots) > SNAPSHOT_CACHE_SIZE:
            self.snapshots.popitem(last=False)
        return state

    # ------------------------------------------------------------- answers
    def churn_probability(self, as_of: dt.date | str, horizon_days: int = 90) -> pd.DataFrame:
        """person_id, p_no_purchase: P(no order in (as_of, as_of + horizon_days])."""
        state = self.state_at(as_of)
        no_purchase, _ = project_horizon(state, self.population, self.parameters, horizon_days)
        return pd.DataFrame({"person_id": self.person_ids, "p_no_purchase": no_purchase})

    def expected_net_revenue(self, as_of: dt.date | str, horizon_days: int = 365) -> pd.DataFrame:
        """person_id, expected_net_revenue: expected order amounts minus expected returns."""
        state = self.state_at(as_of)
        _, revenue = project_horizon(
            state, self.population, self.parameters, horizon_days, with_revenue=True
        )
        return pd.DataFrame({"person_id": self.person_ids, "expected_net_revenue": revenue})

    def conversion_probability(
        self, as_of: dt.date | str, window_days: int = 7, offer: str | None = None
    ) -> pd.DataFrame:
        """person_id, email, push, sms, none: P(order within window | touched on that channel at as_of)."""
        state = self.state_at(as_of)
        population, parameters = self.population, self.parameters
        depth = dynamics.offer_depth_of(offer)
        columns: dict[str, np.ndarray] = {"person_id": self.person_ids}
        for index, channel in enumerate(CONVERSION_CHANNELS):
            if channel == "none":
                boost, fatigue = state.boost, state.fatigue
            else:
                boost = state.boost + dynamics.touch_boost(
                    population.responsiveness[:, index],
                    depth,
                    population.discount_sensitivity,
                    1.0,
                    parameters,
                )
                fatigue = state.fatigue + parameters.fatigue_weights[index]
            no_purchase, _ = project_horizon(
                state, population, parameters, window_days, boost=boost, fatigue=fatigue
            )
            columns[channel] = 1.0 - no_purchase
        return pd.DataFrame(columns)

    # ---------------------------------------------------------------- truth
    def record_map(self) -> pd.DataFrame:
        """source, source_id, person_id, household_id of every record (also unregistered ones)."""
        return pq.read_table(self.require_truth_dir() / "record_person.parquet").to_pandas()

    def traits(self) -> pd.DataFrame:
        """The latent traits of every person (truth/people.parquet)."""
        return pq.read_table(self.require_truth_dir() / "people.parquet").to_pandas()

    def require_truth_dir(self) -> Path:
        if self.truth_dir is None:
            raise ValueError("this oracle was not loaded from a truth directory")
        return self.truth_dir
