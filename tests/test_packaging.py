"""What a Bento installs: requirements-serving.txt (exported from uv.lock by `make bento`) must hold every
dependency the project declares, or a plain `bentoml build` makes a Bento that cannot import the service."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_serving_requirements_hold_every_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    pinned = {normalized(line.split("==")[0]) for line in (ROOT / "requirements-serving.txt").read_text().splitlines()
              if "==" in line and not line.startswith((" ", "#"))}
    assert declared - pinned == set(), "run `make bento` (or uv export) to refresh requirements-serving.txt"


def test_feasts_ui_can_be_imported():
    # `cdp features ui` runs Feast's UI server, which imports grpc (the feast[grpcio] extra)
    import feast.registry_server  # noqa: F401
    import feast.ui_server  # noqa: F401
