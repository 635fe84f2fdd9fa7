"""Config: defaults in code, optional YAML, CDP_<SECTION>__<KEY> overrides, frozen and strict."""

from __future__ import annotations

import pydantic
import pytest

from cdp.config import ConfigError, find_config_file, load_settings


def test_defaults_need_no_file_or_environment():
    settings = load_settings()
    assert settings.policy.consent_mode == "opt_in"
    assert settings.simulation.customers == 20_000


def test_environment_overrides_a_nested_value(monkeypatch):
    monkeypatch.setenv("CDP_POLICY__CONSENT_MODE", "opt_out")
    monkeypatch.setenv("CDP_INGEST__BATCH_ROWS", "5000")
    settings = load_settings()
    assert settings.policy.consent_mode == "opt_out" and settings.ingest.batch_rows == 5000


def test_yaml_file_is_read_and_environment_wins_over_it(tmp_path, monkeypatch):
    config = tmp_path / "cdp.yaml"
    config.write_text("simulation:\n  customers: 500\n  seed: 7\npolicy:\n  consent_mode: opt_out\n")
    monkeypatch.setenv("CDP_SIMULATION__SEED", "9")
    settings = load_settings(config)
    assert settings.simulation.customers == 500
    assert settings.simulation.seed == 9
    assert settings.policy.consent_mode == "opt_out"


def test_unknown_keys_and_bad_values_are_refused_with_the_file_named(tmp_path):
    config = tmp_path / "cdp.yaml"
    config.write_text("policy:\n  consent_mod: opt_out\n")
    with pytest.raises(ConfigError, match="cdp.yaml"):
        load_settings(config)
    config.write_text("policy:\n  consent_mode: sometimes\n")
    with pytest.raises(ConfigError, match="consent_mode"):
        load_settings(config)


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(pydantic.ValidationError):
        settings.policy.consent_mode = "opt_out"  # type: ignore[misc]


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_workspace_config_file_is_found_only_when_present(tmp_path):
    assert find_config_file(tmp_path, None) is None
    (tmp_path / "cdp.yaml").write_text("{}\n")
    assert find_config_file(tmp_path, None) == tmp_path / "cdp.yaml"
