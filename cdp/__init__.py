"""The `cdp` package: command line, typed configuration and workspace paths."""

from __future__ import annotations

PACKAGE = "cdp-intelligence"


def package_version() -> str | None:
    """This project's installed version (pyproject.toml); None in a checkout that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return None
