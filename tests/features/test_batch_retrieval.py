"""The streamed point-in-time features batch scoring reads equal Feast's own historical retrieval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.batch_retrieval import retrieve_features_with_feast, stream_point_in_time_features
from features.feature_store import open_feature_store
from features.feature_tables import feature_table_path
from tests.conftest import AS_OF

SERVICES = ["churn_v1", "clv_v1", "propensity_v1", "recommendation_v1"]


def _same_values(left: pd.Series, right: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
        return np.array_equal(left.to_numpy(float), right.to_numpy(float), equal_nan=True)
    return left.astype(object).where(left.notna(), None).tolist() == right.astype(object).where(right.notna(), None).tolist()


@pytest.mark.slow
def test_streamed_features_equal_feasts_point_in_time_retrieval(served):
    # Given a workspace with feature snapshots at several times, AS_OF among them
    workspace, settings = served.workspace, served.settings
    moment = pd.Timestamp(AS_OF)
    store = open_feature_store(workspace, settings.features)

    # When the base is streamed in small chunks, and retrieved through Feast in one go
    chunks = list(stream_point_in_time_features(store, SERVICES, moment, str(feature_table_path(workspace, "purchase_history")),
                                                chunk_rows=700))
    streamed = pd.concat(chunks, ignore_index=True)
    feast = (retrieve_features_with_feast(workspace, settings.features, SERVICES, moment)
             .drop(columns="event_timestamp").sort_values("customer_id").reset_index(drop=True))

    # Then every chunk but the last is full, each customer comes once, and every value and dtype match
    assert [len(c) for c in chunks[:-1]] == [700] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 700
    assert streamed["customer_id"].is_unique and len(streamed) == len(feast) > 1000
    assert sorted(streamed.columns) == sorted(feast.columns)
    mismatched = [c for c in feast.columns if not _same_values(streamed[c], feast[c])]
    assert mismatched == []
    assert dict(streamed[feast.columns].dtypes) == dict(feast.dtypes)


def test_features_after_the_moment_are_not_read(served, tmp_path):
    # Given the feature tables, and a moment between two snapshots
    workspace, settings = served.workspace, served.settings
    store = open_feature_store(workspace, settings.features)
    path = feature_table_path(workspace, "purchase_history")
    snapshots = sorted(pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"].unique())
    assert len(snapshots) >= 2
    earlier, later = pd.Timestamp(snapshots[-2]), pd.Timestamp(snapshots[-1])

    # When the customers of the earlier snapshot are read as of it
    features = pd.concat(stream_point_in_time_features(store, ["churn_v1"], earlier, str(path)), ignore_index=True)

    # Then the values are the earlier snapshot's, not the later one's
    table = pd.read_parquet(path)
    expected = table[table["event_timestamp"] == earlier].set_index("customer_id")
    got = features.set_index("customer_id")
    column = "orders_365d"
    assert column in got.columns
    assert np.array_equal(got[column].to_numpy(float), expected.loc[got.index, column].to_numpy(float), equal_nan=True)
    assert later > earlier
