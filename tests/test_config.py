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


def test_a_phone_region_without_a_numbering_plan_is_refused_and_case_does_not_matter(monkeypatch):
    monkeypatch.setenv("CDP_IDENTITY__DEFAULT_PHONE_REGION", "XX")
    with pytest.raises(ConfigError, match="identity.default_phone_region: unknown region 'XX'"):
        load_settings()
    monkeypatch.setenv("CDP_IDENTITY__DEFAULT_PHONE_REGION", "us")
    assert load_settings().identity.default_phone_region == "US"


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


def test_each_bad_setting_is_named_on_one_line_without_pydantic_internals(monkeypatch):
    # Given two bad values and an empty timestamp interval in the environment
    monkeypatch.setenv("CDP_POLICY__CONSENT_MODE", "maybe")
    monkeypatch.setenv("CDP_INGEST__EARLIEST_TIMESTAMP", "2030-01-01")
    monkeypatch.setenv("CDP_INGEST__LATEST_TIMESTAMP", "2000-01-01")
    # When the settings are loaded
    with pytest.raises(ConfigError) as raised:
        load_settings()
    # Then every problem is named by its setting, and nothing else of pydantic's shows
    message = str(raised.value)
    assert "policy.consent_mode:" in message and "latest_timestamp (2000-01-01) must be after" in message
    assert "\n" not in message and "errors.pydantic.dev" not in message and "input_value" not in message


def test_a_list_in_the_environment_not_written_as_json_names_its_variable(monkeypatch):
    # Given a list setting written as plain text in the environment
    monkeypatch.setenv("CDP_IDENTITY__EMAIL_DOTLESS_DOMAINS", "gmail.com")
    # When the settings are read, then the error names the variable and says how to write it
    with pytest.raises(ConfigError, match=r"CDP_IDENTITY__EMAIL_DOTLESS_DOMAINS: a list or mapping is written as JSON"):
        load_settings()
    # ...and written as JSON it is read
    monkeypatch.setenv("CDP_IDENTITY__EMAIL_DOTLESS_DOMAINS", '["gmail.com", "example.com"]')
    assert load_settings().identity.email_dotless_domains == ("gmail.com", "example.com")


def test_an_environment_variable_of_an_unknown_section_is_refused_like_yaml(monkeypatch):
    monkeypatch.setenv("CDP_POLICYY__CONSENT_MODE", "opt_out")
    with pytest.raises(ConfigError, match="CDP_POLICYY__CONSENT_MODE: no such configuration section"):
        load_settings()
