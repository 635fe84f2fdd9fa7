"""Fixtures for the service's tests."""

from __future__ import annotations

import pytest


def forget_bentoml_metrics() -> None:
    """BentoML registers its request metrics in prometheus_client's global registry on an app's first
    request, so a second app in one process (one test module's beside another's) fails with
    "Duplicated timeseries"; drop what an earlier app registered."""
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


@pytest.fixture(autouse=True, scope="module")
def _one_bentoml_app_per_module():
    """Each test module starts with no BentoML metrics registered, whatever app ran before it."""
    forget_bentoml_metrics()
    yield
