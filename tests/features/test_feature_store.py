"""The Feast feature store for real: SQLite and Redis online stores, point-in-time retrieval, push."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from cdp.config import FeatureSettings, load_settings
from feature_repo.definitions import MODEL_FEATURE_VIEWS, REALTIME_VIEW
from features.feature_store import (
    FeatureStoreError,
    _frame,
    apply_feature_definitions,
    get_online_features,
    get_training_features,
    materialize_online,
    online_feature_reader,
    online_freshness,
    open_feature_store,
    push_realtime_signals,
)
from features.feature_tables import build_feature_tables, feature_table_path
from features.identity.store import run_identity_resolution

warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*", category=DeprecationWarning)
SNAPSHOTS = [dt.datetime(2025, 4, 1, tzinfo=dt.UTC), dt.datetime(2025, 6, 1, tzinfo=dt.UTC)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port (`make setup` installs it; never skipped)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: run `make setup` (it installs Debian's redis-server)"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_setup(request, simulated, tmp_path_factory):
    """Features built, applied and materialized, in a workspace of their own per online store."""
    _, source = simulated
    from cdp.workspace import Workspace

    workspace = Workspace.at(tmp_path_factory.mktemp(f"feast-{request.param}"))
    shutil.copytree(source.lake, workspace.lake)
    run_identity_resolution(workspace, load_settings().identity)
    build_feature_tables(workspace, SNAPSHOTS)
    settings = FeatureSettings(online_store=request.param, project=f"cdp_{request.param}",
                               redis_connection_string=request.getfixturevalue("redis_server")
                               if request.param == "redis" else "localhost:6379")
    apply_feature_definitions(workspace, settings)
    materialize_online(workspace, settings, end=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    return workspace, settings, open_feature_store(workspace, settings)


def latest_offline(workspace, family: str) -> pd.DataFrame:
    table = pd.read_parquet(feature_table_path(workspace, family))
    return table.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last").set_index("customer_id")


def test_online_values_equal_the_latest_offline_values(store_setup):
    # Given materialized features, when customers are read online
    workspace, _, store = store_setup
    offline = latest_offline(workspace, "purchase_history")
    customers = offline.sample(25, random_state=0).index.tolist()
    online = get_online_features(store, "churn_v1", customers)
    # Then each value equals the latest snapshot's value for that customer
    frame = online.frame.set_index("customer_id")
    for column in ("orders_total", "net_revenue_total", "days_since_last_order", "orders_90d"):
        expected = offline.loc[customers, column].astype(float)
        actual = frame.loc[customers, column].astype(float)
        pd.testing.assert_series_equal(actual, expected, check_names=False, atol=1e-6)
    assert all(online.found)


def test_unknown_customers_come_back_empty_not_as_errors(store_setup):
    _, _, store = store_setup
    online = get_online_features(store, "churn_v1", ["nobody", "also-nobody"])
    assert online.found == [False, False] and len(online.frame) == 2


def test_historical_retrieval_is_point_in_time_and_keeps_duplicates(store_setup):
    # Given entity rows between and after the snapshots, one of them twice
    workspace, _, store = store_setup
    offline = pd.read_parquet(feature_table_path(workspace, "purchase_history"))
    customer = offline.groupby("customer_id")["orders_total"].nunique().idxmax()
    rows = pd.DataFrame({
        "customer_id": [customer, customer, customer],
        "event_timestamp": [pd.Timestamp("2025-05-15", tz="UTC"), pd.Timestamp("2025-05-15", tz="UTC"),
                            pd.Timestamp("2025-06-15", tz="UTC")],
        "label": [1, 1, 0],
    })
    # When features are retrieved through the churn FeatureService
    result = get_training_features(store, "churn_v1", rows).sort_values("event_timestamp")
    # Then every row comes back, each with the snapshot before it, never a later one
    assert len(result) == 3 and result["label"].tolist() == [1, 1, 0]
    by_snapshot = offline[offline["customer_id"] == customer].set_index("event_timestamp")["orders_total"]
    assert result["orders_total"].tolist() == [by_snapshot[pd.Timestamp(SNAPSHOTS[0])]] * 2 + [
        by_snapshot[pd.Timestamp(SNAPSHOTS[1])]]


def test_a_pushed_consent_withdrawal_is_read_at_once(store_setup):
    # Given a customer whose latest e-mail consent is granted online
    workspace, _, store = store_setup
    offline = latest_offline(workspace, "realtime_signals")
    customer = offline[offline["latest_email_consent"] == 1].index[0]
    before = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]
    assert before["latest_email_consent"] == 1
    # When a withdrawal is pushed
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "latest_email_consent": [0]}))
    after = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]
    # Then the next read sees it, and the other signals are unchanged
    assert after["latest_email_consent"] == 0
    assert (workspace.feast / ".realtime_push.lock").exists(), "the push lock lives in the workspace"
    assert after["last_order_epoch_seconds"] == before["last_order_epoch_seconds"]


def test_a_pushed_moment_never_moves_back_and_a_flag_is_0_or_1(store_setup):
    # Given a customer with a last order online
    workspace, _, store = store_setup
    offline = latest_offline(workspace, "realtime_signals")
    customer = offline[offline["last_order_epoch_seconds"].notna()].index[0]
    last_order = int(get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]["last_order_epoch_seconds"])
    # When an older order is pushed, then a newer one
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "last_order_epoch_seconds": [last_order - 86400]}))
    kept = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]["last_order_epoch_seconds"]
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "last_order_epoch_seconds": [last_order + 60]}))
    newer = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]["last_order_epoch_seconds"]
    # Then the older one changes nothing and the newer one is taken
    assert (kept, newer) == (last_order, last_order + 60)
    # and a consent of 7 or a negative moment is refused, naming the field
    with pytest.raises(FeatureStoreError, match="latest_email_consent must be 0 or 1, not 7"):
        push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "latest_email_consent": [7]}))
    with pytest.raises(FeatureStoreError, match="last_visit_epoch_seconds must be seconds since 1970"):
        push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "last_visit_epoch_seconds": [-5]}))
    # ...and so is a moment more than a day in the future, which would otherwise stick
    with pytest.raises(FeatureStoreError, match="last_order_epoch_seconds is 2286-11-20 17:46 UTC, more than a day"):
        push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "last_order_epoch_seconds": [9_999_999_999]}))


def test_asking_for_what_is_not_there_is_a_clear_error(store_setup, tmp_path):
    _, settings, store = store_setup
    with pytest.raises(FeatureStoreError, match="not registered"):
        get_online_features(store, "churn_v9", ["C1"])
    with pytest.raises(FeatureStoreError, match="unknown realtime fields"):
        push_realtime_signals(store, pd.DataFrame({"customer_id": ["C1"], "favourite_colour": ["red"]}))
    # a customer with no online row yet: a row of only the pushed field would hide their batch consents
    with pytest.raises(FeatureStoreError, match="not in the online store yet: C-NEW; run `cdp features materialize`"):
        push_realtime_signals(store, pd.DataFrame({"customer_id": ["C-NEW"], "latest_email_consent": [1]}))
    from cdp.workspace import Workspace

    with pytest.raises(FeatureStoreError, match="cdp features build"):
        apply_feature_definitions(Workspace.at(tmp_path), settings)


def test_an_older_value_never_overwrites_a_newer_one(store_setup):
    # Given a customer's current signals online
    workspace, _, store = store_setup
    offline = latest_offline(workspace, "realtime_signals")
    customer = offline.index[1]
    current = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]
    # When a row dated before the materialized snapshot arrives late
    stale = offline.loc[[customer]].reset_index()
    stale["latest_app_installed"] = 1 - int(current["latest_app_installed"])
    stale["event_timestamp"] = pd.Timestamp("2020-01-01", tz="UTC")
    store.write_to_online_store("realtime_signals", stale)
    # Then the online value does not go back in time
    after = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]
    assert after["latest_app_installed"] == current["latest_app_installed"]


def test_a_stale_or_never_loaded_online_store_is_reported(store_setup, tmp_path):
    workspace, settings, _ = store_setup
    # Given the store loaded today with the latest snapshot of the feature tables
    described = max(pd.read_parquet(feature_table_path(workspace, "purchase_history"), columns=["event_timestamp"])
                    ["event_timestamp"]).to_pydatetime()
    loaded = json.loads((workspace.feast / "materialized.json").read_text())
    assert dt.datetime.fromisoformat(loaded["features_as_of"]) == described
    # Then it is fresh on the day it describes, and says what moment that is
    fresh = online_freshness(workspace, settings, now=described + dt.timedelta(days=1))
    assert not fresh.stale and fresh.features_as_of == described and f"as of {described:%Y-%m-%d}" in fresh.message
    # but stale today: features of a past snapshot describe customers then, however recently loaded
    today = online_freshness(workspace, settings)
    assert today.stale and "describe customers as of" in today.message and "cdp features build --as-of" in today.message
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.stale_after_days + 1)
    stale = online_freshness(workspace, settings, now=later)
    assert stale.stale and "cdp features materialize" in stale.message and stale.age_days > settings.stale_after_days
    from cdp.workspace import Workspace

    never = online_freshness(Workspace.at(tmp_path), settings)
    assert never.stale and "never materialized" in never.message


def test_materializing_a_window_without_snapshots_says_so_and_changes_nothing(store_setup):
    # Given the store as loaded, with its record
    workspace, settings, store = store_setup
    record = (workspace.feast / "materialized.json").read_text()
    customer = latest_offline(workspace, "purchase_history").index[0]
    before = get_online_features(store, "recommendation_v1", [customer]).frame
    # When a window that holds no snapshot is materialized
    loaded = materialize_online(workspace, settings, end=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    # Then nothing was loaded, the record still names the last real load, and the values are the same
    assert loaded.customers == 0 and (workspace.feast / "materialized.json").read_text() == record
    pd.testing.assert_frame_equal(get_online_features(store, "recommendation_v1", [customer]).frame, before)


def read_through_feast(store, features, customers: list[str]) -> pd.DataFrame:
    """Feast's own online path, as the reference the fast path must equal."""
    response = store.get_online_features(features=features, entity_rows=[{"customer_id": c} for c in customers])
    return pd.DataFrame(response.to_dict())


def assert_same_as_feast(store, services: list[str], customers: list[str]) -> None:
    reader = online_feature_reader(store, services)
    ours = reader.read(customers)
    references = [f"{view.name}:{name}" for view, wanted in zip(reader.views, reader.positions, strict=True)
                  for _, name in wanted]
    feast = read_through_feast(store, store.get_feature_service(services[0]) if len(services) == 1 else references,
                               customers)
    # Same columns (ours in the services' order, Feast's in set order), values and dtypes
    assert ours.frame.columns[0] == "customer_id" and sorted(ours.frame.columns) == sorted(feast.columns)
    pd.testing.assert_frame_equal(ours.frame, feast[ours.frame.columns])
    assert ours.found == feast.drop(columns="customer_id").notna().any(axis=1).tolist()


def test_the_fast_online_path_returns_what_feast_returns(store_setup):
    # Given materialized features and a request with known, unknown and repeated customers
    workspace, _, store = store_setup
    known = latest_offline(workspace, "purchase_history").sample(30, random_state=1).index.tolist()
    customers = [*known, "nobody", known[0]]
    # When each service, and all of them at once (every view: the full vector), is read both ways
    for services in [[name] for name in MODEL_FEATURE_VIEWS] + [list(MODEL_FEATURE_VIEWS)]:
        # Then the frames are identical: values, Feast's Python types, dtypes, found flags
        assert_same_as_feast(store, services, customers)
        for customer in (known[0], known[1], "nobody"):  # one customer: dtypes differ from a batch's
            assert_same_as_feast(store, services, [customer])
    full = online_feature_reader(store, list(MODEL_FEATURE_VIEWS))
    assert len(full.views) == len(store.list_feature_views()) and full is online_feature_reader(store, list(MODEL_FEATURE_VIEWS))
    result = full.read(customers)
    assert result.found == [True] * len(known) + [False, True]
    assert result.frame.iloc[-2].drop("customer_id").isna().all()


def test_the_fast_online_path_sees_a_push_at_once(store_setup):
    # Given a customer's current SMS consent read through the fast path
    workspace, _, store = store_setup
    customer = latest_offline(workspace, "realtime_signals").index[-1]
    before = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]
    flipped = 0 if before["latest_sms_consent"] == 1 else 1
    # When the opposite is pushed
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "latest_sms_consent": [flipped]}))
    # Then the next fast read has it, as an int, and still equals Feast's read
    after = get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]
    assert after["latest_sms_consent"] == flipped and type(after["latest_sms_consent"]).__name__ == "int64"
    assert after["last_order_epoch_seconds"] == before["last_order_epoch_seconds"]
    assert_same_as_feast(store, ["recommendation_v1"], [customer, "nobody"])


def test_the_fast_path_rereads_the_registry_only_when_it_changed(store_setup, monkeypatch):
    # Given a reader whose registry cache has expired
    workspace, settings, _ = store_setup
    reader = online_feature_reader(open_feature_store(workspace, settings), ["churn_v1"])
    customer = latest_offline(workspace, "purchase_history").index[0]
    resolved = []
    original = type(reader)._resolve
    monkeypatch.setattr(type(reader), "_resolve", lambda self: (resolved.append(1), original(self))[1])
    reader._resolved_at -= reader.refresh_seconds + 1
    # When it reads with the registry file unchanged, then the features are not resolved again
    reader.read_columns([customer])
    assert resolved == [] and time.monotonic() - reader._resolved_at < reader.refresh_seconds
    # When the registry file changes (features applied again) and the cache expires, then they are
    apply_feature_definitions(workspace, settings)
    reader._resolved_at -= reader.refresh_seconds + 1
    columns, found = reader.read_columns([customer])
    assert resolved == [1] and found == [True] and reader.feature_names


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_the_fast_frame_equals_what_pandas_builds(length):
    # Given columns of every mix of the Python values online reads give (None, bool, int, float, str)
    values = [None, True, 7, 2.5, "x"]
    columns = {f"column_{i}": list(mix) for i, mix in enumerate(itertools.product(values, repeat=length))}
    columns = columns or {"customer_id": [], "empty": []}
    # Then the block-built frame equals pandas' own, dtypes included
    pd.testing.assert_frame_equal(_frame(columns), pd.DataFrame(columns))


def test_stored_payloads_read_back_with_the_types_feast_gives():
    # Given payloads as the packed store writes them: json.dumps, so an infinite value is `Infinity`
    from features.online_store import _load_payload, _python_values

    types = [float, int, str, bool, float]
    payload = json.dumps([0, 3, "gold", True, float("inf")])
    # When they are read back (a short, older payload too)
    values = _python_values(_load_payload(payload), types)
    older = _python_values(_load_payload(json.dumps([1.5, 2])), types)
    # Then numbers take the field's type, the infinite value survives, missing fields are None
    assert values == [0.0, 3, "gold", True, float("inf")] and type(values[0]) is float
    assert older == [1.5, 2, None, None, None]


def test_a_push_for_several_customers_changes_only_what_each_sent():
    from features.feature_store import merge_signals

    # Given two customers online, A with e-mail consent withdrawn earlier and B with consent granted
    fields = ["latest_email_consent", "last_order_epoch_seconds"]
    current = pd.DataFrame({"customer_id": ["A", "B"], "latest_email_consent": [0, 1],
                            "last_order_epoch_seconds": [1_000, 2_000]}).set_index("customer_id")
    # When one push carries A's new order and B's withdrawal (each field empty for the other customer)
    changes = pd.DataFrame({"customer_id": ["A", "B"], "latest_email_consent": [None, 0],
                            "last_order_epoch_seconds": [1_500, None]}).set_index("customer_id")
    merged = merge_signals(current, changes, fields)
    # Then A keeps its withdrawal and B its last order
    assert merged.loc["A"].tolist() == [0, 1_500] and merged.loc["B"].tolist() == [0, 2_000]


def test_the_online_store_probe_says_whether_it_answers_and_holds_customers(store_setup):
    from features.feature_store import probe_online_store

    workspace, settings, _ = store_setup
    customers = latest_offline(workspace, "realtime_signals").index[:5].tolist()
    assert probe_online_store(workspace, settings, [*customers, "C-NOBODY"]) == "holds 5 of 6 sampled customers"
    unreachable = settings.model_copy(update={"online_store": "redis", "redis_connection_string": "localhost:1"})
    assert probe_online_store(workspace, unreachable, customers).startswith("unreadable (ConnectionError")


def test_workspaces_sharing_one_redis_never_touch_each_others_customers(store_setup, tmp_path):
    from cdp.workspace import Workspace
    from features.erasure import erase_from_online_stores
    from features.feature_store import redis_namespace

    workspace, settings, store = store_setup
    # Given a second workspace on the same store server (a copy: the same customer ids), loaded too (with
    # SQLite each has its own file; with Redis, its own namespace)
    other = Workspace.at(tmp_path / "other")
    for part in ("lake", "outputs", "features", "feast"):
        shutil.copytree(workspace.data / part, other.data / part)
    assert redis_namespace(other, settings) != redis_namespace(workspace, settings)
    materialize_online(other, settings, end=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    customer = latest_offline(workspace, "purchase_history").index[0]
    before = get_online_features(store, "recommendation_v1", [customer]).frame
    # When the customer is erased from the second workspace's online store
    removed = erase_from_online_stores(other, load_settings().model_copy(update={"features": settings}), [customer])
    # Then the second workspace no longer holds them, and the first still serves its own values
    assert removed[f"online store ({settings.online_store})"] > 0
    other_store = open_feature_store(other, settings)
    assert get_online_features(other_store, "recommendation_v1", [customer]).frame.drop(columns="customer_id").isna().all(axis=None)
    pd.testing.assert_frame_equal(get_online_features(store, "recommendation_v1", [customer]).frame, before)


def test_erasure_refuses_to_run_against_sqlite_when_the_workspace_was_loaded_into_redis(tmp_path):
    from cdp.workspace import Workspace
    from features.erasure import ErasureError, require_configured_online_store

    # Given a workspace last materialized into Redis, and a configuration naming SQLite (the default)
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    (workspace.feast / "materialized.json").write_text(json.dumps({"online_store": "redis"}))
    # Then erasure refuses before touching anything, saying how to reach the store
    with pytest.raises(ErasureError, match="CDP_FEATURES__ONLINE_STORE=redis"):
        require_configured_online_store(workspace, load_settings())


def _own_loaded_workspace(store_setup, tmp_path, email_consent: int):
    """A workspace of its own (a copy: with Redis, its own namespace), loaded with the June snapshot; a
    customer whose e-mail consent there is `email_consent`; and a reader of their online e-mail consent."""
    from cdp.workspace import Workspace

    source, settings, _ = store_setup
    workspace = Workspace.at(tmp_path / "own")
    for part in ("lake", "outputs", "features", "feast"):
        shutil.copytree(source.data / part, workspace.data / part)
    materialize_online(workspace, settings, end=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    store = open_feature_store(workspace, settings)
    offline = latest_offline(workspace, "realtime_signals")
    customer = offline[offline["latest_email_consent"] == email_consent].index[-1]

    def consent() -> int:
        return get_online_features(store, "recommendation_v1", [customer]).frame.iloc[0]["latest_email_consent"]

    return workspace, settings, store, customer, consent


def test_a_pushed_consent_withdrawal_outlives_the_online_store_and_the_next_build(store_setup, tmp_path):
    from features.feature_store import push_log_path

    # Given a workspace of its own, loaded, and a customer who consented to e-mail
    workspace, settings, store, customer, consent = _own_loaded_workspace(store_setup, tmp_path, email_consent=1)

    # When the customer withdraws through a push (the service's /events)
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "latest_email_consent": [0],
                                               "last_visit_epoch_seconds": [int(time.time()) - 60]}))
    assert consent() == 0 and customer in push_log_path(workspace).read_text()
    assert "last_visit" not in push_log_path(workspace).read_text()  # moments reach the lake by ingest
    # Then losing the online row (a Redis restart) and materializing the June snapshot again keeps it
    online = store._get_provider().online_store
    online.delete_customers(store.config, store.list_feature_views(), [customer])
    materialize_online(workspace, settings, end=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    assert consent() == 0
    # and so does the next build of a snapshot after the push, and its materialize: the push is a consent event
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_feature_tables(workspace, [tomorrow])
    reach = pd.read_parquet(feature_table_path(workspace, "reachability")).set_index(["customer_id", "event_timestamp"])
    assert reach.loc[(customer, pd.Timestamp(tomorrow)), "email_consent"] == 0
    materialize_online(workspace, settings, end=tomorrow + dt.timedelta(minutes=1))
    assert consent() == 0


def test_a_materialize_loads_a_logged_withdrawal_with_the_rows_not_after_them(store_setup, tmp_path, monkeypatch):
    # Given a customer who withdrew e-mail consent through a push, and then lost the online row (Redis emptied)
    workspace, settings, store, customer, consent = _own_loaded_workspace(store_setup, tmp_path, email_consent=1)
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "latest_email_consent": [0]}))
    store._get_provider().online_store.delete_customers(store.config, store.list_feature_views(), [customer])
    # When the snapshot is materialized again, looking at the store the moment its realtime rows are in (the
    # service answers from them while the other views load; the pushes were applied again only at the end)
    seen = []
    load = type(store._get_provider().online_store).bulk_load

    def watched(online, config, view, rows, *args):
        loaded = load(online, config, view, rows, *args)
        if view.name == REALTIME_VIEW:
            seen.append(consent())
        return loaded

    monkeypatch.setattr(type(store._get_provider().online_store), "bulk_load", watched)
    materialize_online(workspace, settings, end=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    # Then the withdrawal was in from the first moment, and stays
    assert seen == [0] and consent() == 0


def test_a_customer_missing_from_one_view_is_not_found(store_setup, tmp_path):
    # Given a loaded customer, then deleted from one view only (a materialize half-way through its views)
    workspace, settings, store, customer, _ = _own_loaded_workspace(store_setup, tmp_path, email_consent=1)
    views = [v for v in store.list_feature_views() if v.name == "purchase_history"]
    store._get_provider().online_store.delete_customers(store.config, views, [customer])
    # When read through a FeatureService of that view and others
    online = get_online_features(store, "churn_v1", [customer])
    # Then it is not found (answered as not in the online store yet), rather than scored from half its features
    assert online.found == [False]


def test_a_grant_pushed_under_an_id_whose_merge_was_undone_leaves_the_online_store_at_the_next_materialize(
        store_setup, tmp_path):
    from cdp.files import write_json
    from features.identity.store import identity_paths, read_identity_state

    # Given a customer who never consented to e-mail, and an e-mail grant pushed for them while a campaign
    # tool's id C999999997 was merged into them (redirected: the push log keeps the id it was sent under)
    workspace, settings, store, customer, consent = _own_loaded_workspace(store_setup, tmp_path, email_consent=0)
    push_realtime_signals(store, pd.DataFrame({"customer_id": [customer], "latest_email_consent": [1],
                                               "sent_as": [["C999999997"]]}))
    assert consent() == 1
    # When a later resolution undoes that merge (C999999997 may be the other part's person), and the
    # online store is materialized again
    write_json(identity_paths(workspace)["state"],
               {**read_identity_state(workspace), "merged_then_split": {"C999999997": customer}})
    materialize_online(workspace, settings, end=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    # Then the grant is gone from their online row: no contact on a consent that may be someone else's
    assert consent() == 0


def test_the_redis_client_fails_fast_unless_the_connection_string_says_otherwise():
    from redis.backoff import NoBackoff

    from features.online_store import PackedRedisOnlineStore, PackedRedisOnlineStoreConfig

    # Given the packed Redis store's client, with and without the user's own timeout
    plain = PackedRedisOnlineStore()._get_client(PackedRedisOnlineStoreConfig(connection_string="127.0.0.1:1"))
    own = PackedRedisOnlineStore()._get_client(
        PackedRedisOnlineStoreConfig(connection_string="127.0.0.1:1,socket_connect_timeout=7"))
    # Then a down Redis costs one quick retry and a 1 s connect timeout, not redis-py's three retries with
    # backoff up to 10 s (every request waited 5-13 s for its 503), and the user's setting wins
    options = plain.connection_pool.connection_kwargs
    assert options["socket_connect_timeout"] == 1.0 and options["socket_timeout"] == 2.0
    retry = plain.get_retry()
    assert retry.get_retries() == 1 and isinstance(retry._backoff, NoBackoff)
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    assert retry._supported_errors == (RedisConnectionError,)  # a hung Redis is not waited for twice
    assert not issubclass(RedisTimeoutError, RedisConnectionError)
    assert own.connection_pool.connection_kwargs["socket_connect_timeout"] == 7


def test_erasure_refuses_a_configuration_that_reaches_other_redis_keys_than_materialize_used(tmp_path):
    from cdp.workspace import Workspace
    from features.erasure import ErasureError, require_configured_online_store
    from features.feature_store import online_store_identity

    # Given a workspace loaded into Redis db 0 of one server, under its path's namespace
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    loaded = FeatureSettings(online_store="redis", redis_connection_string="cache:6379,password=pw123")
    (workspace.feast / "materialized.json").write_text(json.dumps(
        {"online_store": "redis", **online_store_identity(workspace, loaded)}))
    assert "pw123" not in (workspace.feast / "materialized.json").read_text()
    settings = load_settings()
    # Then the same server and namespace pass; another db or another namespace is refused before any erasure
    require_configured_online_store(workspace, settings.model_copy(update={"features": loaded}))
    for other in (loaded.model_copy(update={"redis_connection_string": "cache:6379,db=2"}),
                  loaded.model_copy(update={"redis_namespace": "elsewhere"})):
        with pytest.raises(ErasureError, match="other Redis keys than the workspace was loaded into"):
            require_configured_online_store(workspace, settings.model_copy(update={"features": other}))


def test_a_copied_workspace_reads_its_own_feature_tables_not_the_originals(store_setup, tmp_path):
    from cdp.workspace import Workspace
    from features.batch_retrieval import view_sources

    source, settings, _ = store_setup
    # Given a workspace copied from a copy whose tables are then gone (Feast's registry keeps absolute paths)
    first, second = Workspace.at(tmp_path / "first"), Workspace.at(tmp_path / "second")
    for part in ("lake", "outputs", "features", "feast"):
        shutil.copytree(source.data / part, first.data / part)
    open_feature_store(first, settings, offline=True)
    for part in ("lake", "outputs", "features", "feast"):
        shutil.copytree(first.data / part, second.data / part)
    shutil.rmtree(first.data / "features")
    # When the second copy's store is opened to read tables (training, scoring, drift)
    store = open_feature_store(second, settings, offline=True)
    # Then every view reads the second copy's tables, and a retrieval through them works
    sources = view_sources(store, ["churn_v1", "recommendation_v1"])
    assert {str(Path(s.path).parent) for s in sources} == {str(second.data / "features")}
    customers = latest_offline(second, "purchase_history").index[:3]
    frame = store.get_historical_features(
        entity_df=pd.DataFrame({"customer_id": customers, "event_timestamp": pd.Timestamp("2025-07-01", tz="UTC")}),
        features=store.get_feature_service("churn_v1")).to_df()
    assert len(frame) == 3
    # ...and a copy without its tables says what to run instead of reading another workspace's, while
    # the online store's readers (the service) open it as it is, creating nothing
    third = Workspace.at(tmp_path / "third")
    shutil.copytree(source.data / "feast", third.data / "feast", ignore=shutil.ignore_patterns("online_store.db"))
    with pytest.raises(FeatureStoreError, match="cdp features build"):
        open_feature_store(third, settings, offline=True)
    open_feature_store(third, settings)
    assert not (third.feast / "online_store.db").exists()


def test_pushed_consents_under_an_id_whose_customer_split_since_keep_only_their_withdrawals(tmp_path):
    import pandas as pd

    from cdp.workspace import Workspace
    from features.feature_store import append_push_log, read_push_log

    # Given consents pushed under C7 and C9, both retired later by merges into C1; C1 then split again,
    # so C7's person may be in either part, while C9 was merged into C2, which did not split
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    moment = pd.Timestamp("2026-11-01", tz="UTC")
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C7", "C9"], "latest_email_consent": [0, 1],
                                                   "latest_sms_consent": [1, 0]}), moment)
    state = {"merged_into": {"C9": "C2"}, "merged_then_split": {"C7": "C1"}}
    # When the push log is read with that merge history
    pushes = read_push_log(workspace, state)
    # Then C9's consents are C2's; of C7's only the withdrawal remains, on the part that kept C1, and its
    # grant goes nowhere (it could reach another person)
    rows = set(pushes[["customer_id", "field", "value"]].itertuples(index=False, name=None))
    assert rows == {("C1", "latest_email_consent", 0), ("C2", "latest_email_consent", 1),
                    ("C2", "latest_sms_consent", 0)}
    # ...and when the part that kept C1 is merged into C0 later, the withdrawal follows it there
    later = read_push_log(workspace, {"merged_into": {"C9": "C2", "C1": "C0"}, "merged_then_split": {"C7": "C1"}})
    assert ("C0", "latest_email_consent", 0) in set(later[["customer_id", "field", "value"]].itertuples(index=False, name=None))
    # ...and without a history every push stays under the id it was sent for
    assert set(read_push_log(workspace)["customer_id"]) == {"C7", "C9"}


def test_a_grant_sent_under_a_retired_id_does_not_stay_with_another_person_once_the_merge_is_undone(tmp_path):
    import pandas as pd

    from cdp.workspace import Workspace
    from features.feature_store import SENT_AS, append_push_log, read_push_log

    # Given a grant and a withdrawal sent under C7 while C7 was merged into C1 (so pushed for C1, the id
    # it was sent under kept), and a grant sent under C1 itself
    workspace = Workspace.at(tmp_path)
    workspace.feast.mkdir(parents=True)
    moment = pd.Timestamp("2026-11-01", tz="UTC")
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C1"], "latest_sms_consent": [1],
                                                   "latest_email_consent": [0], SENT_AS: [["C7"]]}), moment)
    append_push_log(workspace.feast, pd.DataFrame({"customer_id": ["C1"], "latest_push_consent": [1]}), moment)
    # When the merge still holds, then both of C7's consents are C1's
    held = read_push_log(workspace, {"merged_into": {"C7": "C1"}, "merged_then_split": {}})
    assert len(held) == 3
    # When a later run undid it (C7 may be the other part's person), then C7's grant goes nowhere, its
    # withdrawal stays on C1, and C1's own grant is untouched
    undone = read_push_log(workspace, {"merged_into": {}, "merged_then_split": {"C7": "C1"}})
    assert set(undone[["customer_id", "field", "value"]].itertuples(index=False, name=None)) == {
        ("C1", "latest_email_consent", 0), ("C1", "latest_push_consent", 1)}
