"""The daily simulation loop, vectorized over people.

`DailySimulation` holds each person's state (alive, touch boost, fatigue, bad service,
consents, ...) and advances it one day at a time with the shared formulas of
`dynamics`. With ``emit=True`` it also produces raw rows as columnar numpy chunks
(records are integer indices; the writer turns them into strings). With ``emit=False``
it only evolves the state: the oracle uses this to learn each person's true state at
an as-of date. State draws and row-detail draws use separate random streams, so both
modes evolve the state identically.

A day is split in two so the oracle can stop in between: `begin_day` (decay, dropout,
purchases, browsing, tickets, consents) and `send_marketing` (the day's touches).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from features.simulator import dynamics
from features.simulator.dynamics import OFFER_DEPTHS
from features.simulator.parameters import SimulationParameters
from features.simulator.population import APP, CRM, NEVER, STORE, WEB, Population
from features.simulator.randomness import (
    DETAIL_STREAM,
    MARKETING_DETAIL_STREAM,
    MARKETING_STREAM,
    STATE_STREAM,
    sparse_bernoulli,
    stream_generator,
)

ORDER_CHANNELS = ("web", "app", "store", "phone")
"""Order channel per ordering system (web, app, store, crm)."""
EVENT_TYPES = ("page_view", "product_view", "search", "add_to_cart", "checkout_start", "app_open")
PAGE_VIEW, PRODUCT_VIEW, SEARCH, ADD_TO_CART, CHECKOUT_START, APP_OPEN = range(6)
TOUCH_CHANNEL_LABELS = ("email", "push", "sms", "none")
NO_CHANNEL = 3
CAMPAIGN_TYPES = ("newsletter", "promo", "cart_abandon", "win_back")
NEWSLETTER, PROMO, CART_ABANDON, WIN_BACK = range(4)
TICKET_CATEGORIES = ("delivery", "returns", "payment", "product", "account", "other")
CONSENT_STATUSES = ("granted", "withdrawn")
DAY_MICROS = 86_400 * 1_000_000
SECOND_MICROS = 1_000_000
RECENT_ORDER_DAYS = 14


@dataclass
class PersonState:
    """The part of the state the oracle needs, copied at a point in time."""

    day: int
    alive: np.ndarray
    boost: np.ndarray
    fatigue: np.ndarray
    bad_service: np.ndarray
    offer_depth: np.ndarray
    offer_until: np.ndarray


@dataclass
class RowBuffer:
    """Columnar chunks per table, waiting to be written."""

    chunks: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    def add(self, table: str, **columns: np.ndarray) -> None:
        if len(next(iter(columns.values()))):
            self.chunks.setdefault(table, []).append(columns)

    def take(self) -> dict[str, dict[str, np.ndarray]]:
        """Concatenate and clear: one dict of columns per table."""
        merged = {
            table: {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
            for table, chunks in self.chunks.items()
        }
        self.chunks = {}
        return merged


def calendar_of(parameters: SimulationParameters, day_count: int) -> dict[str, np.ndarray]:
    """Date facts per simulated day: weekday, day of month, season, epoch day."""
    dates = np.datetime64(parameters.start, "D") + np.arange(day_count)
    epoch_day = dates.astype(np.int64)
    months = dates.astype("datetime64[M]")
    return {
        "dates": dates,
        "epoch_day": epoch_day,
        "weekday": (epoch_day + 3) % 7,
        "day_of_month": (dates - months).astype(np.int64) + 1,
        "season": dynamics.seasonal_intensity(dates, parameters),
    }


def choose_weighted(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Row-wise categorical draw from non-negative weights (each row has a positive weight)."""
    cumulative = np.cumsum(weights, axis=1)
    draw = rng.random(len(weights)) * cumulative[:, -1]
    return np.minimum((draw[:, None] >= cumulative).sum(axis=1), weights.shape[1] - 1)


def draw_seconds_in_window(
    rng: np.random.Generator, size: int, first_hour: float, last_hour: float
) -> np.ndarray:
    return (rng.uniform(first_hour, last_hour, size=size) * 3600).astype(np.int64)


def draw_shopping_seconds(rng: np.random.Generator, size: int) -> np.ndarray:
    """Time of day for online activity: mostly daytime with an evening peak."""
    hour = np.where(
        rng.random(size) < 0.55, rng.normal(20.0, 2.0, size), rng.uniform(7.0, 23.0, size)
    )
    return (np.clip(hour, 0.0, 23.95) * 3600).astype(np.int64)


class DailySimulation:
    """Advances every person one day at a time; see the module docstring."""

    def __init__(
        self, parameters: SimulationParameters, population: Population, emit: bool = True
    ) -> None:
        self.parameters = parameters
        self.population = population
        self.emit = emit
        self.day_count = parameters.day_count
        self.calendar = calendar_of(parameters, self.day_count)
        n = population.person_count
        self.alive = np.where(population.join_day < 0, population.alive_at_start, True)
        self.boost = np.zeros(n)
        self.fatigue = np.zeros(n)
        self.bad_service = np.zeros(n)
        self.offer_depth = np.zeros(n)
        self.offer_until = np.full(n, NEVER, dtype=np.int64)
        self.last_purchase = population.last_purchase_before_start.copy()
        self.last_win_back = np.full(n, NEVER, dtype=np.int64)
        self.death_day = np.full(n, NEVER, dtype=np.int64)
        self.cart_today = np.zeros(n, dtype=bool)
        self.cart_yesterday = np.zeros(n, dtype=bool)
        self.consent = population.initial_consent.copy()
        self.consent_slots = population.consent_slots()
        self.contact = population.contact_records()
        created = population.record_created_day
        far_future = np.int64(10**9)
        self.contact_created = np.where(
            self.contact >= 0, created[np.maximum(self.contact, 0)], far_future
        )
        web_app = population.person_record[:, [WEB, APP]]
        self.online_since = np.where(web_app >= 0, created[np.maximum(web_app, 0)], far_future).min(
            axis=1
        )
        order = np.argsort(created, kind="stable")
        self.records_by_creation = order
        self.creation_bounds = np.searchsorted(created[order], np.arange(self.day_count + 1))
        self.primary_contact = np.where(
            self.contact[:, 0] >= 0, self.contact[:, 0], self.contact[:, 1]
        )
        self.days_done = 0
        """Days fully simulated (begin_day and send_marketing)."""
        self.day_begun = False
        self.rows = RowBuffer()
        self.counters = {"orders": 0, "events": 0, "touches": 0, "tickets": 0}
        self.campaign_ids: list[str] = []
        self.campaign_codes: dict[str, int] = {}
        if emit:
            self.emit_initial_consents()

    # ----------------------------------------------------------------- driving
    def simulate_day(self) -> None:
        """Run the next whole day."""
        if not self.day_begun:
            self.begin_day()
        self.send_marketing()

    def run_until_before_marketing(self, day: int) -> PersonState:
        """Advance to `day` after its behaviour but before its touches, and copy the state."""
        if day < self.days_done:
            raise ValueError("the simulation cannot go back in time; start a new one")
        while self.days_done < day:
            self.simulate_day()
        if not self.day_begun:
            self.begin_day()
        return self.snapshot()

    def snapshot(self) -> PersonState:
        return PersonState(
            day=self.days_done,
            alive=self.alive.copy(),
            boost=self.boost.copy(),
            fatigue=self.fatigue.copy(),
            bad_service=self.bad_service.copy(),
            offer_depth=self.offer_depth.copy(),
            offer_until=self.offer_until.copy(),
        )

    def next_number(self, table: str, count: int) -> np.ndarray:
        start = self.counters[table]
        self.counters[table] = start + count
        return np.arange(start, start + count, dtype=np.int64) + 1

    def micros(self, day: int | np.ndarray, seconds: np.ndarray) -> np.ndarray:
        epoch_day = self.calendar["epoch_day"][0] + np.asarray(day, dtype=np.int64)
        return epoch_day * DAY_MICROS + np.asarray(seconds, dtype=np.int64) * SECOND_MICROS

    # ------------------------------------------------------------- behaviour
    def begin_day(self) -> None:
        """Decay, dropout, purchases, browsing, tickets and consent changes of one day."""
        day = self.days_done
        parameters = self.parameters
        population = self.population
        rng = stream_generator(parameters.seed, STATE_STREAM, day)
        detail = stream_generator(parameters.seed, DETAIL_STREAM, day) if self.emit else None
        self.boost, self.fatigue, self.bad_service = dynamics.decay_state(
            self.boost, self.fatigue, self.bad_service, parameters
        )
        season = self.calendar["season"][day]
        n = population.person_count

        self.open_new_records(day, rng, detail)

        active = population.join_day <= day
        hazard = dynamics.dropout_hazard(
            population.base_hazard, self.bad_service, self.fatigue, parameters
        )
        dies = self.alive & active & (rng.random(n) < hazard)
        self.alive &= ~dies
        self.death_day[dies] = day

        probability = dynamics.purchase_probability(population.purchase_rate, season, self.boost)
        buying = self.alive & active & (rng.random(n) < probability)
        buyers = np.flatnonzero(buying)

        browsing = (
            self.alive
            & (self.online_since <= day)
            & ~buying
            & (rng.random(n) < population.engagement * season)
        )
        sessions = np.flatnonzero(browsing)
        with_cart = rng.random(len(sessions)) < parameters.cart_add_share
        self.cart_yesterday, self.cart_today = self.cart_today, self.cart_yesterday
        self.cart_today[:] = False
        self.cart_today[sessions[with_cart]] = True

        recent = (day - self.last_purchase) <= RECENT_ORDER_DAYS
        ticket_probability = (
            parameters.daily_ticket_rate
            * population.service_propensity
            * (1.0 + parameters.recent_order_ticket_factor * recent)
        )
        ticketing = active & (self.alive | recent) & (rng.random(n) < ticket_probability)
        ticket_people = np.flatnonzero(ticketing)
        csat = (
            rng.choice(
                5,
                size=len(ticket_people),
                p=np.asarray(parameters.csat_weights) / np.sum(parameters.csat_weights),
            )
            + 1
        )
        np.add.at(self.bad_service, ticket_people[csat <= 2], 1.0)
        self.last_purchase[buyers] = day

        self.change_consents(day, rng, detail)
        if detail is not None:
            self.emit_orders(day, buyers, detail)
            self.emit_browsing(day, sessions, with_cart, detail)
            self.emit_tickets(day, ticket_people, csat, recent, detail)
        self.day_begun = True

    def open_new_records(
        self, day: int, rng: np.random.Generator, detail: np.random.Generator | None
    ) -> None:
        """Records created today: signup consents (and an app_open for app installs)."""
        bounds = self.creation_bounds
        new = self.records_by_creation[bounds[day] : bounds[day + 1]]
        if len(new) == 0:
            return
        grant_share = np.asarray(self.parameters.consent_grant_shares)
        granted = self.consent_slots[new] & (rng.random((len(new), 3)) < grant_share)
        self.consent[new] = granted
        if detail is None:
            return
        records, channels = np.nonzero(granted)
        seconds = self.population.record_created_second[new[records]]
        self.rows.add(
            "consents",
            record=new[records],
            channel=channels.astype(np.int8),
            status=np.zeros(len(records), dtype=np.int8),
            time=self.micros(day, seconds),
        )
        installs = new[self.population.record_system[new] == APP]
        self.rows.add(
            "events",
            number=self.next_number("events", len(installs)),
            record=installs,
            time=self.micros(day, self.population.record_created_second[installs]),
            event_type=np.full(len(installs), APP_OPEN, dtype=np.int8),
        )

    def change_consents(
        self, day: int, rng: np.random.Generator, detail: np.random.Generator | None
    ) -> None:
        """Withdrawals (more likely when fatigued) and occasional re-grants."""
        parameters = self.parameters
        fatigue_max = float(self.fatigue.max()) if len(self.fatigue) else 0.0
        bound = max(
            parameters.daily_regrant_rate,
            parameters.daily_withdrawal_rate
            * (1 + parameters.fatigue_withdrawal_effect * fatigue_max),
        )
        candidates = sparse_bernoulli(rng, self.consent.size, bound)
        records, channels = candidates // 3, candidates % 3
        valid = self.consent_slots[records, channels] & (
            self.population.record_created_day[records] < day
        )
        currently = self.consent[records, channels]
        fatigue = self.fatigue[self.population.record_person[records]]
        probability = np.where(
            currently,
            parameters.daily_withdrawal_rate * (1 + parameters.fatigue_withdrawal_effect * fatigue),
            parameters.daily_regrant_rate,
        )
        flip = valid & (rng.random(len(candidates)) * bound < probability)
        records, channels, currently = records[flip], channels[flip], currently[flip]
        self.consent[records, channels] = ~currently
        if detail is not None and len(records):
            self.rows.add(
                "consents",
                record=records,
                channel=channels.astype(np.int8),
                status=currently.astype(np.int8),  # was granted -> now withdrawn (1)
                time=self.micros(day, draw_seconds_in_window(detail, len(records), 0.0, 8.0)),
            )

    # ------------------------------------------------------------ row details
    def active_records(self, people: np.ndarray, day: int) -> np.ndarray:
        """(k, 4) bool: which of the people's records exist on `day`."""
        records = self.population.person_record[people]
        created = self.population.record_created_day[np.maximum(records, 0)]
        return (records >= 0) & (created <= day)

    def emit_orders(self, day: int, buyers: np.ndarray, rng: np.random.Generator) -> None:
        parameters = self.parameters
        population = self.population
        count = len(buyers)
        if count == 0:
            return
        weights = population.channel_preference[buyers] * self.active_records(buyers, day)
        empty = weights.sum(axis=1) <= 0
        weights[empty] = self.active_records(buyers[empty], day)
        system = choose_weighted(rng, weights)
        record = population.person_record[buyers, system]
        list_price = np.maximum(
            np.exp(
                population.value_log_mean[buyers]
                + parameters.order_value_within_sigma * rng.standard_normal(count)
            ),
            1.0,
        )
        depth = np.where(self.offer_until[buyers] >= day, self.offer_depth[buyers], 0.0)
        discount = np.round(list_price * depth, 2)
        amount = np.round(list_price, 2) - discount
        items = 1 + rng.poisson(list_price / 40.0)
        online = (system == WEB) | (system == APP)
        seconds = np.where(
            online,
            draw_shopping_seconds(rng, count),
            np.where(
                system == STORE,
                draw_seconds_in_window(rng, count, 9.0, 19.0),
                draw_seconds_in_window(rng, count, 9.0, 17.5),
            ),
        )
        seconds = np.maximum(seconds, 900)  # leave room for the checkout session before it
        numbers = self.next_number("orders", count)
        self.rows.add(
            "orders",
            number=numbers,
            record=record,
            time=self.micros(day, seconds),
            amount=amount,
            channel=system.astype(np.int8),
            items=items.astype(np.int64),
            discount=discount,
        )
        self.emit_checkout_sessions(day, record[online], system[online], seconds[online], rng)
        self.emit_returns(day, buyers, numbers, amount, rng)

    def emit_returns(
        self,
        day: int,
        buyers: np.ndarray,
        numbers: np.ndarray,
        amount: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Each order comes back (fully or partly) with the person's return propensity."""
        count = len(buyers)
        returned = rng.random(count) < self.population.return_propensity[buyers]
        full = rng.random(count) < self.parameters.full_return_share
        fraction = np.where(full, 1.0, rng.uniform(0.2, 0.8, size=count))
        delay = 3 + np.minimum(np.floor(rng.gamma(2.0, 4.0, size=count)), 27).astype(np.int64)
        seconds = draw_seconds_in_window(rng, count, 8.0, 20.0)
        keep = returned & (day + delay < self.day_count) & (amount > 0)
        self.rows.add(
            "returns",
            order_number=numbers[keep],
            time=self.micros(day + delay[keep], seconds[keep]),
            amount=np.round(amount[keep] * fraction[keep], 2),
        )

    def emit_checkout_sessions(
        self,
        day: int,
        records: np.ndarray,
        system: np.ndarray,
        order_seconds: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Web/app orders come with the session that led to them, ending in checkout."""
        count = len(records)
        browse = 1 + rng.poisson(1.5, size=count)
        length = browse + 3  # entry + browsing + add_to_cart + checkout_start
        first = np.where(system == APP, APP_OPEN, PAGE_VIEW).astype(np.int8)
        self.emit_sessions(
            day,
            records,
            first,
            browse,
            np.ones(count, dtype=bool),
            True,
            order_seconds - 60 * length - 30,
            rng,
        )

    def emit_browsing(
        self, day: int, people: np.ndarray, with_cart: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Browsing sessions without a purchase; a cart here is an abandoned cart."""
        count = len(people)
        if count == 0:
            return
        active = self.active_records(people, day)
        app_weight = active[:, APP] * (self.population.channel_preference[people, APP] + 0.2)
        web_weight = active[:, WEB] * (self.population.channel_preference[people, WEB] + 0.2)
        use_app = rng.random(count) * (app_weight + web_weight) < app_weight
        records = np.where(
            use_app,
            self.population.person_record[people, APP],
            self.population.person_record[people, WEB],
        )
        first = np.where(use_app, APP_OPEN, PAGE_VIEW).astype(np.int8)
        browse = rng.poisson(1.5, size=count)
        self.emit_sessions(
            day, records, first, browse, with_cart, False, draw_shopping_seconds(rng, count), rng
        )

    def emit_sessions(
        self,
        day: int,
        records: np.ndarray,
        first: np.ndarray,
        browse: np.ndarray,
        with_cart: np.ndarray,
        checkout: bool,
        start_seconds: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Expand sessions into event rows: entry, browsing, optional cart and checkout."""
        length = 1 + browse + with_cart + (1 if checkout else 0)
        total = int(length.sum())
        if total == 0:
            return
        session = np.repeat(np.arange(len(records)), length)
        position = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
        remaining = np.repeat(length, length) - position
        event_type = rng.choice(
            np.array([PAGE_VIEW, PRODUCT_VIEW, SEARCH], dtype=np.int8),
            size=total,
            p=[0.3, 0.5, 0.2],
        )
        event_type[position == 0] = first[session[position == 0]]
        if checkout:
            event_type[remaining == 1] = CHECKOUT_START
            event_type[remaining == 2] = ADD_TO_CART
        else:
            event_type[(remaining == 1) & with_cart[session] & (position > 0)] = ADD_TO_CART
        seconds = (
            np.maximum(start_seconds, 0)[session] + position * 60 + rng.integers(0, 50, size=total)
        )
        seconds = np.minimum(seconds, 86_399)
        self.rows.add(
            "events",
            number=self.next_number("events", total),
            record=records[session],
            time=self.micros(day, seconds),
            event_type=event_type,
        )

    def emit_tickets(
        self,
        day: int,
        people: np.ndarray,
        csat: np.ndarray,
        recent: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        count = len(people)
        if count == 0:
            return
        preference = self.active_records(people, day)[:, [CRM, WEB, APP, STORE]]
        system = np.array([CRM, WEB, APP, STORE])[np.argmax(preference, axis=1)]
        records = self.population.person_record[people, system]
        after_order = recent[people]
        category = np.where(
            after_order,
            rng.choice(6, size=count, p=[0.4, 0.25, 0.1, 0.15, 0.05, 0.05]),
            rng.choice(6, size=count, p=[0.1, 0.1, 0.15, 0.2, 0.3, 0.15]),
        )
        observed = np.where(rng.random(count) < self.parameters.csat_missing_share, 0, csat)
        self.rows.add(
            "tickets",
            number=self.next_number("tickets", count),
            record=records,
            time=self.micros(day, draw_seconds_in_window(rng, count, 8.0, 21.0)),
            category=category.astype(np.int8),
            csat=observed.astype(np.int64),
        )

    def emit_initial_consents(self) -> None:
        """Consent history from before the window: grant at signup, maybe a withdrawal."""
        population = self.population
        records, channels = np.nonzero(population.initial_grant)
        created = population.record_created_day[records]
        second = population.record_created_second[records]
        self.rows.add(
            "consents",
            record=records,
            channel=channels.astype(np.int8),
            status=np.zeros(len(records), dtype=np.int8),
            time=self.micros(created, second),
        )
        withdrawal_day = population.initial_withdrawal_day[records, channels]
        withdrawn = withdrawal_day != NEVER
        day = withdrawal_day[withdrawn]
        same_day = day == created[withdrawn]
        seconds = np.where(same_day, np.minimum(second[withdrawn] + 600, 86_399), 4 * 3600)
        self.rows.add(
            "consents",
            record=records[withdrawn],
            channel=channels[withdrawn].astype(np.int8),
            status=np.ones(int(withdrawn.sum()), dtype=np.int8),
            time=self.micros(day, seconds),
        )

    # ------------------------------------------------------------- marketing
    def eligible_channels(self, people: np.ndarray | None, day: int) -> np.ndarray:
        """(k, 3) bool: the person can be reached on email, push, sms (record exists, consent held)."""
        contact = self.contact if people is None else self.contact[people]
        created = self.contact_created if people is None else self.contact_created[people]
        return (contact >= 0) & (created < day) & self.consent[np.maximum(contact, 0), np.arange(3)]

    def send_marketing(self) -> None:
        """The day's campaigns: newsletter, monthly promo, cart abandon, win-back."""
        day = self.days_done
        if self.parameters.marketing:
            self.run_campaigns(day)
        self.days_done += 1
        self.day_begun = False

    def run_campaigns(self, day: int) -> None:
        parameters = self.parameters
        population = self.population
        rng = stream_generator(parameters.seed, MARKETING_STREAM, day)
        detail = (
            stream_generator(parameters.seed, MARKETING_DETAIL_STREAM, day) if self.emit else None
        )
        weekday = int(self.calendar["weekday"][day])
        date = self.calendar["dates"][day].astype(dt.date)
        joined = population.join_day < day

        if weekday == parameters.newsletter_weekday:
            eligible = self.eligible_channels(None, day)
            people = np.flatnonzero(eligible[:, 0] & joined)
            channel = np.zeros(len(people), dtype=np.int64)
            offer = np.zeros(len(people), dtype=np.int64)
            self.send_touches(
                day,
                people,
                channel,
                offer,
                NEWSLETTER,
                f"nl-{date:%Y-%m-%d}",
                parameters.newsletter_strength,
                rng,
                detail,
            )

        if weekday == 3 and self.calendar["day_of_month"][day] <= 7:
            eligible = self.eligible_channels(None, day)
            reachable = np.flatnonzero(eligible.any(axis=1) & joined)
            picked = reachable[rng.random(len(reachable)) < parameters.promo_share]
            channel, offer = self.assign_arms(
                rng, eligible[picked], parameters.promo_control_share, (1 / 3, 1 / 3, 1 / 3)
            )
            self.send_touches(
                day, picked, channel, offer, PROMO, f"promo-{date:%Y-%m}", 1.0, rng, detail
            )

        carts = np.flatnonzero(self.cart_yesterday)
        if len(carts):
            eligible = self.eligible_channels(carts, day)
            reachable = eligible.any(axis=1)
            channel, offer = self.assign_arms(
                rng, eligible[reachable], parameters.cart_abandon_control_share, (0.5, 0.5, 0.0)
            )
            self.send_touches(
                day,
                carts[reachable],
                channel,
                offer,
                CART_ABANDON,
                "cart-abandon",
                1.0,
                rng,
                detail,
            )

        if weekday == 0:
            since = np.maximum(self.last_purchase, population.join_day)
            lapsed = (
                joined
                & (day - since > parameters.win_back_lapse_days)
                & (day - self.last_win_back > parameters.win_back_repeat_days)
            )
            candidates = np.flatnonzero(lapsed)
            eligible = self.eligible_channels(candidates, day)
            reachable = eligible.any(axis=1)
            people = candidates[reachable]
            channel, offer = self.assign_arms(
                rng, eligible[reachable], parameters.win_back_control_share, (1 / 3, 1 / 3, 1 / 3)
            )
            self.last_win_back[people] = day
            self.send_touches(
                day, people, channel, offer, WIN_BACK, f"win-back-{date:%Y-%m}", 1.0, rng, detail
            )

    @staticmethod
    def assign_arms(
        rng: np.random.Generator,
        eligible: np.ndarray,
        control_share: float,
        offer_weights: tuple[float, float, float],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Randomize: control (channel none) or a uniformly chosen reachable channel, and an offer."""
        count = len(eligible)
        channel = np.argmax((1.0 - rng.random((count, 3))) * eligible, axis=1)
        channel = np.where(rng.random(count) < control_share, NO_CHANNEL, channel)
        offer = rng.choice(3, size=count, p=np.asarray(offer_weights) / np.sum(offer_weights))
        return channel, offer

    def send_touches(
        self,
        day: int,
        people: np.ndarray,
        channel: np.ndarray,
        offer: np.ndarray,
        campaign_type: int,
        campaign_id: str,
        strength: float,
        rng: np.random.Generator,
        detail: np.random.Generator | None,
    ) -> None:
        """Apply the touches' effect on the state (boost, fatigue, offers) and emit their rows."""
        if len(people) == 0:
            return
        parameters = self.parameters
        population = self.population
        treated = channel != NO_CHANNEL
        target, target_channel = people[treated], channel[treated]
        depth = OFFER_DEPTHS[offer[treated]]
        self.boost[target] += dynamics.touch_boost(
            population.responsiveness[target, target_channel],
            depth,
            population.discount_sensitivity[target],
            strength,
            parameters,
        )
        self.fatigue[target] += np.asarray(parameters.fatigue_weights)[target_channel]
        with_offer = depth > 0
        self.offer_depth[target[with_offer]] = depth[with_offer]
        self.offer_until[target[with_offer]] = day + parameters.offer_valid_days
        if detail is not None:
            self.emit_touches(day, people, channel, offer, campaign_type, campaign_id, detail)

    def emit_touches(
        self,
        day: int,
        people: np.ndarray,
        channel: np.ndarray,
        offer: np.ndarray,
        campaign_type: int,
        campaign_id: str,
        rng: np.random.Generator,
    ) -> None:
        population = self.population
        count = len(people)
        treated = channel != NO_CHANNEL
        record = np.where(
            treated, self.contact[people, np.minimum(channel, 2)], self.primary_contact[people]
        )
        hours = {
            NEWSLETTER: (9.0, 10.0),
            PROMO: (10.0, 11.0),
            CART_ABANDON: (12.0, 20.0),
            WIN_BACK: (11.0, 12.0),
        }[campaign_type]
        sent = self.micros(day, draw_seconds_in_window(rng, count, *hours))
        responsiveness = population.responsiveness[people, np.minimum(channel, 2)]
        interest = np.sqrt(
            np.minimum(population.engagement[people] / self.parameters.mean_daily_sessions, 4.0)
        )
        interest = interest * np.where(self.alive[people], 1.0, 0.3)
        open_base = np.array([0.18, 0.08, 0.0, 0.0])[channel]
        opened = (
            treated
            & (channel != 2)
            & (rng.random(count) < np.minimum(open_base * interest + 4 * responsiveness, 0.95))
        )
        click_base = np.where(channel == 2, 0.04, 0.12)
        clicked = (
            treated
            & np.where(channel == 2, True, opened)
            & (rng.random(count) < np.minimum(click_base * interest + 4 * responsiveness, 0.9))
        )
        open_delay = (rng.exponential(2.0 * 3600, size=count)).astype(np.int64) * SECOND_MICROS
        click_delay = open_delay + rng.integers(5, 300, size=count) * SECOND_MICROS
        window_end = self.micros(self.day_count, np.zeros(1, dtype=np.int64))[0]
        opened_at = np.where(opened & (sent + open_delay < window_end), sent + open_delay, -1)
        clicked_at = np.where(clicked & (sent + click_delay < window_end), sent + click_delay, -1)
        cost = np.append(np.asarray(self.parameters.channel_costs), 0.0)[channel]
        code = self.campaign_codes.setdefault(campaign_id, len(self.campaign_codes))
        if code == len(self.campaign_ids):
            self.campaign_ids.append(campaign_id)
        self.rows.add(
            "touches",
            number=self.next_number("touches", count),
            record=record,
            time=sent,
            channel=channel.astype(np.int8),
            offer=np.where(treated, offer, -1).astype(np.int8),
            campaign=np.full(count, code, dtype=np.int32),
            campaign_type=np.full(count, campaign_type, dtype=np.int8),
            opened=opened_at,
            clicked=clicked_at,
            cost=cost,
        )
