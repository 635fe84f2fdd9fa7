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


def test_a_yaml_file_that_is_a_list_is_refused_as_not_a_mapping_of_sections(tmp_path):
    # Given a config file whose top level is a list, and one that is a bare text
    listed, text = tmp_path / "bad.yaml", tmp_path / "text.yaml"
    listed.write_text("- a\n")
    text.write_text("just some text\n")
    # When either is loaded, then the error names the file and says what it must hold, not Python's
    # `dictionary update sequence element #0`
    for config, found in ((listed, "not a list"), (text, "not a single value")):
        with pytest.raises(ConfigError) as raised:
            load_settings(config)
        message = str(raised.value)
        assert f"(file {config})" in message and "must be a mapping of sections" in message and found in message
        assert "dictionary update sequence" not in message
    # ...while an empty file is no configuration at all, as before
    (tmp_path / "empty.yaml").write_text("")
    assert load_settings(tmp_path / "empty.yaml") == load_settings()


def test_a_setting_spelt_with_one_underscore_is_refused_with_its_right_spelling(monkeypatch):
    # Given CDP_INGEST_BATCH_ROWS (one underscore between section and key), silently ignored before
    monkeypatch.setenv("CDP_INGEST_BATCH_ROWS", "5000")
    # When the settings are loaded, then it is refused as a misspelt section is, naming the right spelling
    with pytest.raises(ConfigError, match=r"CDP_INGEST_BATCH_ROWS: a setting is spelt CDP_<SECTION>__<KEY>, with two "
                                          r"underscores: CDP_INGEST__BATCH_ROWS"):
        load_settings()


def test_what_only_resembles_a_setting_is_warned_about_and_other_cdp_variables_are_left_alone(monkeypatch, caplog):
    # Given the CDP_ variables the service and notebooks read, a whole section as JSON, another program's
    # CDP_ variables, a bare key and a section with a key it does not have
    for name, value in {"CDP_WORKSPACE": "/tmp/ws", "CDP_CONFIG_FILE": "/tmp/cdp.yaml", "CDP_TRUTH": "data/raw",
                        "CDP_SIMULATION": '{"seed": 3}', "CDP_REGION": "eu-1", "CDP_PROFILE": "default",
                        "CDP_API_TOKEN": "secret", "CDP_INGEST_BATCHROWS": "5000"}.items():
        monkeypatch.setenv(name, value)
    # When the settings are loaded
    with caplog.at_level("WARNING", logger="cdp.config"):
        settings = load_settings()
    # Then they load, and only the two look-alikes are named, each with how a setting is spelt
    assert settings.simulation.seed == 3
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 2, warned
    assert "CDP_API_TOKEN is not read" in warned[0] and "CDP_SERVING__API_TOKEN" in warned[0]
    assert "CDP_INGEST_BATCHROWS is not read" in warned[1] and "CDP_INGEST__<KEY> (keys: batch_rows" in warned[1]
    assert "secret" not in caplog.text


def test_a_negative_random_seed_is_refused_by_name(monkeypatch):
    # numpy refuses negative seeds deep inside the simulator and LightGBM's split; the setting says it first
    for variable, name in (("CDP_SIMULATION__SEED", "simulation.seed"), ("CDP_TRAINING__SEED", "training.seed")):
        monkeypatch.setenv(variable, "-3")
        with pytest.raises(ConfigError, match=f"{name}: Input should be greater than or equal to 0"):
            load_settings()
        monkeypatch.delenv(variable)
