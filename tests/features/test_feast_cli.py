"""Feast's own command line (and so its UI) sees the store `cdp` registered for a workspace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from features.feature_store import write_feast_repository


def test_feasts_command_line_lists_our_feature_services(served):
    # Given a workspace whose features were applied by cdp
    directory = write_feast_repository(served.workspace, served.settings.features)

    # When Feast's CLI reads the written repository configuration
    feast = Path(sys.executable).with_name("feast")
    listed = subprocess.run([str(feast), "-c", str(directory), "feature-services", "list"],
                            capture_output=True, text=True, timeout=300, cwd=directory)

    # Then it finds every FeatureService, read from this workspace's registry
    assert listed.returncode == 0, listed.stderr[-2000:]
    for service in ("churn_v1", "clv_v1", "propensity_v1", "recommendation_v1"):
        assert service in listed.stdout
    assert str(served.workspace.feast / "registry.db") in (directory / "feature_store.yaml").read_text()
