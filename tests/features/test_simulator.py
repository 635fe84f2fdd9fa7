"""The simulator: deterministic, contract-shaped, internally consistent, and an honest oracle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import CONTRACTS
from features.simulator import Oracle, SimulationParameters, simulate_to_directory

TABLES = tuple(CONTRACTS)
ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int64(),
}
SMALL = SimulationParameters(
    customers=3_000, seed=5, start=dt.date(2025, 1, 1), end=dt.date(2025, 8, 31)
)


def read(directory: Path, table: str) -> pd.DataFrame:
    return pq.read_table(directory / f"{table}.parquet").to_pandas()


def day_of(timestamps: pd.Series) -> pd.Series:
    return timestamps.dt.tz_convert(None).dt.normalize()


def with_person(frame: pd.DataFrame, record_map: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(
        record_map[["source", "source_id", "person_id"]], on=["source", "source_id"], how="left"
    )


@pytest.fixture(scope="module")
def simulated(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, int], list[tuple[int, int]]]:
    directory = tmp_path_factory.mktemp("simulated")
    calls: list[tuple[int, int]] = []
    counts = simulate_to_directory(
        SMALL, directory, "parquet", progress=lambda done, total: calls.append((done, total))
    )
    return directory, counts, calls


@pytest.fixture(scope="module")
def directory(simulated: tuple[Path, dict[str, int], list[tuple[int, int]]]) -> Path:
    return simulated[0]


@pytest.fixture(scope="module")
def record_map(directory: Path) -> pd.DataFrame:
    return Oracle.load(directory / "truth").record_map()


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_tables_and_a_different_seed_does_not(
    directory: Path, tmp_path: Path
) -> None:
    # Given the same parameters run twice, and once more with another seed
    again = simulate_to_directory(SMALL, tmp_path / "again")
    other = simulate_to_directory(
        dataclasses.replace(SMALL, seed=6), tmp_path / "other"
    )
    # Then every table is identical for the same seed and differs for another seed
    assert sum(again.values()) > 0 and sum(other.values()) > 0
    for table in TABLES:
        first = pq.read_table(directory / f"{table}.parquet")
        assert first.equals(pq.read_table(tmp_path / "again" / f"{table}.parquet")), table
        assert not first.equals(pq.read_table(tmp_path / "other" / f"{table}.parquet")), table
    for name in ("people.parquet", "record_person.parquet"):
        assert pq.read_table(directory / "truth" / name).equals(
            pq.read_table(tmp_path / "again" / "truth" / name)
        )


def test_parameters_survive_a_json_round_trip() -> None:
    # Given parameters with non-default values; when saved and loaded; then nothing changes
    parameters = SimulationParameters(
        customers=123, seed=9, marketing=False, system_shares=(0.5, 0.5, 0.5, 0.5)
    )
    assert SimulationParameters.from_json_dict(json.loads(parameters.to_json())) == parameters


# --------------------------------------------------------------------------- contract
def test_every_table_follows_the_contract(
    simulated: tuple[Path, dict[str, int], list[tuple[int, int]]],
) -> None:
    directory, counts, calls = simulated
    # Then all eight tables exist with the contract's columns (in order) and types
    for table in TABLES:
        schema = pq.read_schema(directory / f"{table}.parquet")
        contract = CONTRACTS[table]
        assert tuple(schema.names[: len(contract.columns)]) == contract.column_names, table
        for column in contract.columns:
            assert schema.field(column.name).type == ARROW_TYPES[column.kind], (table, column.name)
        assert pq.read_metadata(directory / f"{table}.parquet").num_rows == counts[table] > 0, table
        if not contract.allows_custom_columns:
            assert len(schema.names) == len(contract.columns), table
    # And customers carries custom attributes as extra columns
    extra = pq.read_schema(directory / "customers.parquet").names[
        len(CONTRACTS["customers"].columns) :
    ]
    assert {"loyalty_tier", "marketing_segment"} <= set(extra)
    # And progress was reported day by day up to the end
    assert calls[-1] == (SMALL.day_count, SMALL.day_count) and len(calls) == SMALL.day_count


def test_values_respect_allowed_sets_and_keys_are_unique(directory: Path) -> None:
    for table in TABLES:
        frame = read(directory, table)
        contract = CONTRACTS[table]
        for column in contract.columns:
            if column.required:
                assert frame[column.name].notna().all(), (table, column.name)
            if column.allowed is not None:
                assert set(frame[column.name].dropna()) <= column.allowed, (table, column.name)
            if column.minimum is not None:
                assert (frame[column.name].dropna() >= column.minimum).all(), (table, column.name)
            if column.maximum is not None:
                assert (frame[column.name].dropna() <= column.maximum).all(), (table, column.name)
        assert not frame.duplicated(list(contract.primary_key)).any(), table


def test_csv_output_uses_iso_timestamps_and_dates(tmp_path: Path) -> None:
    # Given a small CSV simulation
    parameters = SimulationParameters(
        customers=300, seed=1, start=dt.date(2025, 3, 1), end=dt.date(2025, 4, 15)
    )
    counts = simulate_to_directory(parameters, tmp_path, "csv")
    # Then headers match the contract, timestamps are ISO-8601 UTC with a Z and dates YYYY-MM-DD
    for table in TABLES:
        frame = pd.read_csv(tmp_path / f"{table}.csv", dtype=str)
        assert len(frame) == counts[table]
        assert (
            tuple(frame.columns[: len(CONTRACTS[table].columns)]) == CONTRACTS[table].column_names
        )
        for column in CONTRACTS[table].columns:
            values = frame[column.name].dropna()
            if column.kind == "timestamp":
                assert values.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all(), (
                    table,
                    column.name,
                )
            if column.kind == "date":
                assert values.str.fullmatch(r"\d{4}-\d\d-\d\d").all(), (table, column.name)


# --------------------------------------------------------------------------- consistency
def test_every_reference_maps_to_a_record_in_truth(
    directory: Path, record_map: pd.DataFrame
) -> None:
    known = set(zip(record_map.source, record_map.source_id, strict=True))
    for table in ("customers", "orders", "events", "touches", "consents", "tickets"):
        frame = read(directory, table)
        assert set(zip(frame.source, frame.source_id, strict=True)) <= known, table
    links = read(directory, "links")
    assert set(zip(links.source_a, links.id_a, strict=True)) <= known
    assert set(zip(links.source_b, links.id_b, strict=True)) <= known
    # And linked records really belong to the same person
    person = record_map.set_index(["source", "source_id"]).person_id
    assert (
        person.loc[list(zip(links.source_a, links.id_a, strict=True))].to_numpy()
        == person.loc[list(zip(links.source_b, links.id_b, strict=True))].to_numpy()
    ).all()
    # And some orders come from records with no customers row (unregistered cards)
    customers = read(directory, "customers")
    registered = set(zip(customers.source, customers.source_id, strict=True))
    orders = read(directory, "orders")
    assert any(
        reference not in registered
        for reference in zip(orders.source, orders.source_id, strict=True)
    )


def test_returns_follow_their_orders(directory: Path) -> None:
    orders = read(directory, "orders").set_index("order_id")
    returns = read(directory, "returns")
    assert returns.order_id.isin(orders.index).all()
    ordered = orders.loc[returns.order_id]
    delay = returns.returned_at.reset_index(drop=True) - ordered.ordered_at.reset_index(drop=True)
    assert (delay > pd.Timedelta(0)).all() and (delay <= pd.Timedelta(days=31)).all()
    assert (returns.amount.to_numpy() <= ordered.amount.to_numpy() + 1e-9).all()
    # And serial returners exist: a few people send back most of what they buy
    assert 0.01 < len(returns) / len(orders) < 0.2


def test_nothing_happens_after_the_window_or_after_dropout(
    directory: Path, record_map: pd.DataFrame
) -> None:
    end = pd.Timestamp(SMALL.end + dt.timedelta(days=1), tz="UTC")
    for table in TABLES:
        frame = read(directory, table)
        for column in CONTRACTS[table].columns:
            if column.kind == "timestamp":
                assert (frame[column.name].dropna() < end).all(), (table, column.name)
    # Dead people do not buy
    orders = with_person(read(directory, "orders"), record_map)
    traits = Oracle.load(directory / "truth").traits()
    dropout = orders.person_id.map(traits.set_index("person_id").dropout_date)
    after = pd.to_datetime(dropout).notna() & (day_of(orders.ordered_at) > pd.to_datetime(dropout))
    assert not after.any()
    assert traits.dropout_date.notna().sum() > 0


def test_touches_go_only_to_consented_channels_and_the_right_systems(directory: Path) -> None:
    touches = read(directory, "touches")
    consents = read(directory, "consents")
    sent = touches[touches.channel != "none"].sort_values("sent_at")
    # Given the latest consent record of each touched (record, channel) before the send
    latest = pd.merge_asof(
        sent,
        consents.sort_values("recorded_at"),
        left_on="sent_at",
        right_on="recorded_at",
        by=["source", "source_id", "channel"],
        direction="backward",
    )
    # Then it is always a grant
    assert (latest.status == "granted").all()
    assert set(sent[sent.channel == "push"].source) == {"app"}
    assert set(sent[sent.channel.isin(["email", "sms"])].source) <= {"web", "crm"}
    # And every randomized campaign has a control arm and all channels
    for campaign in ("promo", "cart_abandon", "win_back"):
        assert set(touches[touches.campaign_type == campaign].channel) == {
            "email",
            "push",
            "sms",
            "none",
        }
    assert (touches[touches.channel == "none"].cost == 0).all()


def test_no_marketing_means_no_touches(tmp_path: Path) -> None:
    parameters = SimulationParameters(
        customers=200, seed=3, start=dt.date(2025, 1, 1), end=dt.date(2025, 2, 28), marketing=False
    )
    counts = simulate_to_directory(parameters, tmp_path)
    assert counts["touches"] == 0 and counts["orders"] > 0
    assert pq.read_schema(tmp_path / "touches.parquet").names == list(
        CONTRACTS["touches"].column_names
    )


# --------------------------------------------------------------------------- identity
def test_households_share_addresses_but_not_people(
    directory: Path, record_map: pd.DataFrame
) -> None:
    customers = read(directory, "customers").merge(record_map, on=["source", "source_id"])
    with_address = customers.dropna(subset=["address_line", "last_name"])
    with_address = with_address.assign(
        address=with_address.address_line.str.lower().str.replace(
            r"\b(road|rd)\b", "rd", regex=True
        )
    )
    shared = with_address.groupby(["household_id", "address"]).person_id.nunique()
    assert (shared >= 2).sum() >= 20
    # Different members of a household have different first names or birth dates most of the time
    members = customers.dropna(subset=["first_name", "date_of_birth"]).drop_duplicates("person_id")
    pairs = members.merge(members, on="household_id")
    pairs = pairs[pairs.person_id_x < pairs.person_id_y]
    assert len(pairs) > 0
    assert (pairs.date_of_birth_x != pairs.date_of_birth_y).mean() > 0.9


def test_records_carry_realistic_identity_noise(directory: Path, record_map: pd.DataFrame) -> None:
    customers = read(directory, "customers").merge(record_map, on=["source", "source_id"])
    phones = customers.phone.dropna()
    assert (
        phones.str.startswith("+44").any()
        and phones.str.startswith("07").any()
        and phones.str.fullmatch(r"07\d{9}").any()
    )
    assert customers.first_name.isin(["Bill", "Liz", "Mike", "Jim", "Kate", "Tom", "Dave"]).any()
    non_latin = customers.first_name.dropna().map(
        lambda name: any(ord(character) > 0x36F for character in name)
    )
    assert non_latin.any()
    per_person = customers.dropna(subset=["email"]).groupby("person_id").email.nunique()
    assert (per_person > 1).any()  # second e-mail addresses
    emails = (
        customers.dropna(subset=["email"]).groupby(customers.email.str.lower()).person_id.nunique()
    )
    shared = emails[emails > 1].index
    # shared e-mails only within a household (family addresses), never between strangers
    owners = (
        customers[customers.email.str.lower().isin(shared)]
        .groupby(customers.email.str.lower())
        .household_id.nunique()
    )
    assert (owners == 1).all()
    # hard negatives: different people with the same name in the same city
    named = customers.dropna(subset=["first_name", "last_name", "city"])
    namesakes = named.groupby(
        [named.first_name.str.lower(), named.last_name.str.lower(), named.city.str.lower()]
    ).person_id.nunique()
    assert (namesakes > 1).sum() >= 10
    # and missing fields differ by system: loyalty cards often lack an e-mail
    missing_email = customers.groupby("source").email.apply(lambda values: values.isna().mean())
    assert missing_email["store"] > 0.4 > missing_email["web"]
    assert re.fullmatch(r"P\d{8}", record_map.person_id.iloc[0])


# --------------------------------------------------------------------------- oracle
@pytest.fixture(scope="module")
def quiet_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("quiet")
    parameters = SimulationParameters(
        customers=5_000,
        seed=7,
        start=dt.date(2025, 1, 1),
        end=dt.date(2025, 12, 31),
        marketing=False,
    )
    simulate_to_directory(parameters, directory)
    return directory


def realized_orders(directory: Path, record_map: pd.DataFrame) -> pd.DataFrame:
    orders = with_person(read(directory, "orders"), record_map)
    returned = read(directory, "returns").groupby("order_id").amount.sum()
    return orders.assign(
        day=day_of(orders.ordered_at), net=orders.amount - orders.order_id.map(returned).fillna(0.0)
    )


def test_churn_oracle_is_calibrated_by_decile(quiet_world: Path) -> None:
    # Given the oracle at an as-of date in a world without marketing
    oracle = Oracle.load(quiet_world / "truth")
    as_of = dt.date(2025, 4, 30)
    churn = oracle.churn_probability(as_of, horizon_days=90)
    orders = realized_orders(quiet_world, oracle.record_map())
    first = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    window = orders[(orders.day >= first) & (orders.day < first + pd.Timedelta(days=90))]
    # When we compare with who actually did not buy in the horizon
    churn["realized"] = ~churn.person_id.isin(window.person_id)
    churn["decile"] = pd.qcut(churn.p_no_purchase.rank(method="first"), 10, labels=False)
    by_decile = churn.groupby("decile")[["p_no_purchase", "realized"]].mean()
    # Then each decile's mean prediction matches the realized rate
    assert (by_decile.p_no_purchase - by_decile.realized).abs().max() < 0.06
    assert by_decile.p_no_purchase.iloc[0] < 0.3 and churn.p_no_purchase.between(0, 1).all()


def test_revenue_oracle_tracks_realized_net_revenue(quiet_world: Path) -> None:
    oracle = Oracle.load(quiet_world / "truth")
    as_of = dt.date(2025, 3, 31)
    expected = oracle.expected_net_revenue(as_of, horizon_days=180)
    orders = realized_orders(quiet_world, oracle.record_map())
    first = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    window = orders[(orders.day >= first) & (orders.day < first + pd.Timedelta(days=180))]
    expected["realized"] = expected.person_id.map(window.groupby("person_id").net.sum()).fillna(0.0)
    assert expected[["expected_net_revenue", "realized"]].corr("spearman").iloc[0, 1] > 0.5
    assert expected.expected_net_revenue.sum() == pytest.approx(expected.realized.sum(), rel=0.1)


@pytest.fixture(scope="module")
def promo_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Promo touches with the oracle's conversion prediction and the realized 7-day outcome."""
    directory = tmp_path_factory.mktemp("promo")
    parameters = SimulationParameters(
        customers=5_000,
        seed=11,
        start=dt.date(2025, 1, 1),
        end=dt.date(2025, 9, 30),
        promo_share=0.5,
    )
    simulate_to_directory(parameters, directory)
    oracle = Oracle.load(directory / "truth")
    record_map = oracle.record_map()
    touches = with_person(read(directory, "touches"), record_map)
    promos = touches[touches.campaign_type == "promo"].assign(
        day=lambda frame: day_of(frame.sent_at), offer=lambda frame: frame.offer.fillna("none")
    )
    scored = []
    for (day, offer), group in promos.groupby(["day", "offer"]):
        conversion = oracle.conversion_probability(
            day.date(), window_days=7, offer=offer
        ).set_index("person_id")
        rows = conversion.index.get_indexer(group.person_id)
        columns = conversion.columns.get_indexer(group.channel)
        scored.append(group.assign(predicted=conversion.to_numpy()[rows, columns]))
    promos = pd.concat(scored)
    orders = realized_orders(directory, record_map)[["person_id", "day"]]
    pairs = promos[["touch_id", "person_id", "day"]].merge(
        orders, on="person_id", suffixes=("", "_order")
    )
    converted = pairs[
        (pairs.day_order > pairs.day) & (pairs.day_order <= pairs.day + pd.Timedelta(days=7))
    ]
    promos["converted"] = promos.touch_id.isin(converted.touch_id)
    traits = oracle.traits().set_index("person_id")
    promos["responsiveness"] = [
        traits.at[person, f"responsiveness_{channel}"]
        if channel != "none"
        else traits.loc[
            person, ["responsiveness_email", "responsiveness_push", "responsiveness_sms"]
        ].max()
        for person, channel in zip(promos.person_id, promos.channel, strict=True)
    ]
    return directory, promos


def test_conversion_oracle_matches_realized_conversion(
    promo_world: tuple[Path, pd.DataFrame],
) -> None:
    _, promos = promo_world
    treated = promos.channel != "none"
    for arm in (treated, ~treated):
        assert arm.sum() > 500
        assert promos[arm].predicted.mean() == pytest.approx(promos[arm].converted.mean(), abs=0.03)
    # The oracle sees the uplift of a touch over control
    assert promos[treated].predicted.mean() > promos[~treated].predicted.mean()


def test_a_channel_effect_exists_for_responsive_people(
    promo_world: tuple[Path, pd.DataFrame],
) -> None:
    _, promos = promo_world
    responsive = promos.responsiveness > 0.04
    treated = promos[responsive & (promos.channel != "none")].converted.mean()
    control = promos[responsive & (promos.channel == "none")].converted.mean()
    unresponsive_treated = promos[
        (promos.responsiveness < 0.01) & (promos.channel != "none")
    ].converted.mean()
    assert treated > control + 0.05
    assert treated > unresponsive_treated


def test_oracle_answers_for_every_person_and_rejects_dates_outside_the_window(
    directory: Path,
) -> None:
    oracle = Oracle.load(directory / "truth")
    conversion = oracle.conversion_probability("2025-05-15", window_days=7, offer="20pct")
    assert list(conversion.columns) == ["person_id", "email", "push", "sms", "none"]
    assert len(conversion) == SMALL.customers
    channels = conversion[["email", "push", "sms", "none"]]
    assert ((channels >= 0) & (channels <= 1)).all().all()
    # a touch helps on average (for unresponsive people its fatigue can slightly hurt)
    assert (conversion[["email", "push", "sms"]].mean() > conversion["none"].mean()).all()
    # The replayed state agrees with what the writer recorded: the same people dropped out
    traits = oracle.traits()
    final_state = oracle.state_at(SMALL.end)
    assert (
        final_state.alive == (traits.alive_at_start & traits.dropout_date.isna()).to_numpy()
    ).all()
    # An earlier as-of after a later one replays from the start and gives the same answer
    later = oracle.churn_probability("2025-06-01")
    earlier = oracle.churn_probability("2025-02-01")
    assert earlier.p_no_purchase.mean() != later.p_no_purchase.mean()
    assert Oracle.load(directory / "truth").churn_probability("2025-02-01").equals(earlier)
    with pytest.raises(ValueError):
        oracle.churn_probability(dt.date(2024, 12, 31))
    assert {"purchase_rate", "base_hazard", "responsiveness_push", "return_propensity"} <= set(
        oracle.traits().columns
    )
