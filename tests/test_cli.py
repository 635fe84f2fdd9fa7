"""The `cdp` command line, end to end on tiny data."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cdp.cli import app
from features.contract import CONTRACTS
from features.erasure import ErasureError

runner = CliRunner()
COMMANDS = ["simulate", "ingest", "resolve", "identity explain", "evaluate identity", "evaluate models", "features build", "train", "score", "run", "serve", "report lift", "evaluate policy",
            "features apply", "features materialize", "push", "contract", "config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_contract_json_lists_every_table():
    result = runner.invoke(app, ["contract", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert set(payload) == set(CONTRACTS)
    assert payload["orders"]["columns"]["amount"]["required"] is True
    # the spellings a channel is read from are documented where the allowed values are
    assert payload["consents"]["columns"]["channel"]["spellings"]["textmessage"] == "sms"
    assert "mobile" in payload["customers"]["columns"]["phone"]["header_aliases"]


def test_config_shows_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_POLICY__CONSENT_MODE", "opt_out")
    result = runner.invoke(app, ["config", "--workspace", str(tmp_path)])
    assert result.exit_code == 0
    assert json.loads(result.output)["policy"]["consent_mode"] == "opt_out"


def test_bad_config_value_exits_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_POLICY__CONSENT_MODE", "maybe")
    result = runner.invoke(app, ["config", "--workspace", str(tmp_path)])
    assert result.exit_code == 2
    assert "consent_mode" in result.output


def test_ingest_exits_nonzero_when_a_table_fails(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,source\no1,web\n")
    result = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert "missing required column" in result.output


def test_simulated_data_passes_the_contract_end_to_end(tmp_path):
    # Given a tiny simulated retailer
    raw, workspace = tmp_path / "raw", tmp_path / "ws"
    result = runner.invoke(app, ["simulate", "--customers", "300", "--seed", "3", "--out", str(raw),
                                 "--start", "2025-01-01", "--end", "2025-06-30", "--format", "csv"])
    assert result.exit_code == 0, result.output
    # When it is ingested
    result = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    # Then every contract table loads and nothing the simulator wrote is quarantined
    report = json.loads((workspace / "data" / "reports" / "ingest.json").read_text())
    tables = {t["table"]: t for t in report["tables"]}
    assert set(tables) == set(CONTRACTS)
    for name, table in tables.items():
        assert table["status"] == "ok", (name, table["error"])
        assert table["read"] == table["loaded"] + table["quarantined"]
        assert table["quarantined"] == 0, (name, table["quarantined_by_reason"])
    orders = pd.read_parquet(workspace / "data" / "lake" / "orders.parquet")
    assert len(orders) == tables["orders"]["read"] > 0
    # And identity resolution, its explanation and its evaluation run on it
    result = runner.invoke(app, ["resolve", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    identity_map = pd.read_parquet(workspace / "data" / "outputs" / "identity_map.parquet")
    customer = identity_map["customer_id"].value_counts().index[0]
    result = runner.invoke(app, ["identity", "explain", customer, "--json", "--workspace", str(workspace)])
    assert result.exit_code == 0 and json.loads(result.output)["customer_id"] == customer
    result = runner.invoke(app, ["evaluate", "identity", "--truth", str(raw), "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    scores = json.loads((workspace / "data" / "reports" / "identity_evaluation.json").read_text())
    assert scores["all_records"]["pairwise"]["precision"] > 0.9
    # And the feature store is built, applied, materialized and takes a push
    for command in (["features", "build", "--as-of", "2025-04-01,2025-06-30"], ["features", "apply"],
                    ["features", "materialize", "--end", "2025-07-01"],
                    ["push", "--customer-id", customer, "--set", "latest_email_consent=0"]):
        result = runner.invoke(app, [*command, "--workspace", str(workspace)])
        assert result.exit_code == 0, (command, result.output)
    assert "Pushed latest_email_consent=0" in result.output


def test_explain_prints_record_ids_literally(tmp_path):
    # Given records whose ids look like console markup or emoji codes, all one person by e-mail
    raw, workspace = tmp_path / "raw", tmp_path / "ws"
    raw.mkdir()
    (raw / "customers.csv").write_text("source,source_id,first_name,last_name,email\n"
                                       "web,[/x],Ann,Lee,ann.lee@example.com\napp,[red]R1,Ann,Lee,ann.lee@example.com\n"
                                       "crm,:smile:,Ann,Lee,ann.lee@example.com\n")
    assert runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(workspace)]).exit_code == 0
    assert runner.invoke(app, ["resolve", "--workspace", str(workspace)]).exit_code == 0
    # When explained
    result = runner.invoke(app, ["identity", "explain", "crm::smile:", "--workspace", str(workspace)])
    # Then it works and every id is printed as it is, in the records and in the joins
    assert result.exit_code == 0, result.output
    joins = result.output.split("joined because")[1]
    assert "[red]R1" in joins and "[/x]" in joins and ":smile:" in joins
    # ...on stdout, so that `cdp identity explain ID > file` keeps it
    assert "joined because" in result.stdout and "joined because" not in result.stderr


def test_ingest_says_how_many_more_rows_it_quarantined_than_it_lists(tmp_path):
    # Given seven orders quarantined for seven different reasons
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text(
        "order_id,source,source_id,ordered_at,amount,channel,items,discount\n"
        "o1,web,w1,2025-01-01,ten,web,1,0\n" "o2,web,w1,yesterday,1,web,1,0\n" "o3,web,w1,2025-01-01,1,pigeon,1,0\n"
        "o4,web,w1,2025-01-01,1,web,many,0\n" "o5,web,w1,2025-01-01,1,web,1,lots\n" "o6,web,,2025-01-01,1,web,1,0\n"
        ",web,w1,2025-01-01,1,web,1,0\n")
    # When ingested
    result = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(tmp_path / "ws")])
    # Then five reasons are listed and the rest counted, pointing to the report
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # the console wraps at 80 columns off a terminal
    assert words.count("1 quarantined:") == 5
    assert "2 more quarantined for 2 other reason(s) (all in" in words


def test_ingesting_the_same_file_again_shows_its_rows_as_unchanged(tmp_path):
    # Given an orders file already ingested
    raw, workspace = tmp_path / "raw", str(tmp_path / "ws")
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,source,source_id,ordered_at,amount\n"
                                    "o1,web,w1,2025-01-01,10\no2,web,w1,2025-01-02,12\n")
    first = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", workspace])
    # When it is ingested again
    second = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", workspace])
    # Then the table says both rows were already in the lake as they are, and the first run said none were
    assert first.exit_code == second.exit_code == 0, second.output
    def read_loaded_unchanged(output: str) -> list[str]:
        row = next(line for line in output.splitlines() if line.lstrip("│ ").startswith("orders"))
        return [cell.strip() for cell in row.strip("│ ").split("│")][1:4]

    assert read_loaded_unchanged(first.output) == ["2", "2", "0"]
    assert read_loaded_unchanged(second.output) == ["2", "2", "2"]


def test_explain_an_unknown_customer_is_a_clear_error(tmp_path):
    # Given a workspace with a lake but no identity map yet
    (tmp_path / "data" / "lake").mkdir(parents=True)
    result = runner.invoke(app, ["identity", "explain", "C1", "--workspace", str(tmp_path)])
    assert result.exit_code == 1 and "run `cdp resolve` first" in result.output


def test_config_never_prints_the_api_token(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_SERVING__API_TOKEN", "s3cret-token")
    result = runner.invoke(app, ["config", "--workspace", str(tmp_path)])
    assert result.exit_code == 0 and "s3cret-token" not in result.output
    assert json.loads(result.output)["serving"]["api_token"] == "***"


@pytest.mark.parametrize(("connection", "shown"), [
    ("localhost:6379,password=pw123,ssl=true", "localhost:6379,password=***,ssl=true"),
    ("cache:6379,ssl_password=pw123", "cache:6379,ssl_password=***"),
    ("localhost:6379", "localhost:6379"),
])
def test_config_never_prints_the_redis_password(tmp_path, monkeypatch, connection, shown):
    monkeypatch.setenv("CDP_FEATURES__REDIS_CONNECTION_STRING", connection)
    result = runner.invoke(app, ["config", "--workspace", str(tmp_path)])
    assert result.exit_code == 0 and "pw123" not in result.output
    assert json.loads(result.output)["features"]["redis_connection_string"] == shown


@pytest.mark.parametrize("connection", [
    "redis://user:pw123@cache:6379/0", "redis://user:p@pw123@cache:6379/0", "redis://cache:6379/0?password=pw123",
    "cache", "cache:port,password=pw123", "pw123@cache:6379", "user:pw123@cache:6379",
])
def test_a_redis_url_or_a_connection_without_a_port_is_refused_without_echoing_it(tmp_path, monkeypatch, connection):
    # Given a connection string Feast cannot read (it failed much later, inside materialize, as int('//cache'))
    monkeypatch.setenv("CDP_FEATURES__REDIS_CONNECTION_STRING", connection)
    # Then the configuration is refused at once, naming the field and the format, never the password
    result = runner.invoke(app, ["config", "--workspace", str(tmp_path)])
    assert result.exit_code != 0 and "features.redis_connection_string" in result.output
    assert "host:port" in result.output and "pw123" not in result.output


@pytest.mark.slow
def test_run_on_orders_only_with_a_short_history_says_what_it_skipped(tmp_path, simulated_raw):
    # Given: only the orders table, and only its last five months
    raw = tmp_path / "raw"
    raw.mkdir()
    orders = pd.read_parquet(simulated_raw / "orders.parquet")
    orders[orders["ordered_at"] >= pd.Timestamp("2026-02-01", tz="UTC")].to_parquet(raw / "orders.parquet", index=False)
    # When
    result = runner.invoke(app, ["run", "--raw", str(raw), "--as-of", "2026-07-01", "--workspace", str(tmp_path / "w")])
    # Then: it fails (nothing is scored), and says why each model was skipped
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "churn: history too short" in output
    assert "propensity: no touches in the lake" in output
    assert "clv: history too short" in output
    assert "nothing is scored" in output
    assert "cdp run stopped at step 6/6 (score); there are no scores yet" in output
    # and `cdp train` alone, with nothing it can train, exits non-zero so a scheduled job notices
    alone = runner.invoke(app, ["train", "--as-of", "2026-07-01", "--workspace", str(tmp_path / "w")])
    assert alone.exit_code == 1 and "no model was trained" in " ".join(alone.output.split())
    # and scoring as of a time before any data is one clear error, not a traceback
    early = runner.invoke(app, ["score", "--as-of", "2020-01-01", "--workspace", str(tmp_path / "w")])
    assert early.exit_code == 1 and isinstance(early.exception, SystemExit), early.output


def test_status_of_an_empty_workspace_says_what_to_run(tmp_path):
    # Given a workspace that holds only its configuration, nothing ingested yet
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "cdp.yaml").write_text("policy:\n  consent_mode: opt_out\n")
    result = runner.invoke(app, ["status", "--workspace", str(tmp_path / "empty")])
    assert result.exit_code == 0, result.output
    assert "cdp resolve" in result.output and "cdp train" in result.output and "cdp score" in result.output


READING_COMMANDS = [
    ["resolve"], ["identity", "explain", "C000000001"], ["evaluate", "identity", "--truth", "raw"],
    ["evaluate", "models", "--truth", "raw"], ["evaluate", "policy", "--truth", "raw"],
    ["report", "lift", "--campaign", "spring"], ["report", "drift"], ["export", "--segment", "win_back_today"],
    ["features", "build", "--as-of", "2026-07-01"], ["features", "apply"], ["features", "materialize"],
    ["features", "ui"], ["push", "--customer-id", "C000000001", "--set", "latest_email_consent=0"],
    ["train", "--as-of", "2026-07-01"], ["score", "--as-of", "2026-07-01"], ["serve"],
    ["forget", "--customer-id", "C000000001"], ["forget", "--dry-run", "--email", "jo@example.org"],
    ["export-subject", "--customer-id", "C000000001"], ["status"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
def test_a_folder_that_is_not_a_workspace_is_refused_and_nothing_is_made_there(tmp_path, monkeypatch, command):
    import os

    # Given an existing folder that is not a workspace (no lake, no cdp.yaml), holding someone's file
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail("started a program"))
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("started a program"))
    # When a command that reads a workspace is pointed at it
    result = runner.invoke(app, [*command, "--workspace", str(folder)])
    # Then it refuses in one line, as for a mistyped path, and makes nothing there (no audit log, salt,
    # MLflow database)
    assert result.exit_code == 2, result.output
    assert f"{folder} is not a workspace" in " ".join(result.output.split())
    assert sorted(p.name for p in folder.rglob("*")) == ["notes.txt"]


def test_a_mistyped_workspace_is_an_error_and_nothing_is_made_there(tmp_path):
    # Given a workspace path that does not exist
    missing = tmp_path / "typo"
    for command in (["status"], ["score", "--as-of", "2026-07-01"], ["features", "materialize"]):
        # When a command that reads a workspace names it
        result = runner.invoke(app, [*command, "--workspace", str(missing)])
        # Then it says so, and creates nothing
        assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split()), result.output
        assert not missing.exists()


def test_status_of_a_trained_workspace_names_the_champions(trained):
    result = runner.invoke(app, ["status", "--workspace", str(trained.workspace.root)])
    assert result.exit_code == 0, result.output
    for model in ("churn", "clv", "propensity"):
        assert f"model {model}@champion: v" in result.output
    # a first version is both champion and challenger: only the champion line, no "not promoted"
    assert "@challenger" not in result.output and "not promoted" not in result.output


def test_errors_print_paths_as_written_not_as_markup_or_emoji(tmp_path):
    # Given a path that reads like an emoji code and rich markup
    missing = tmp_path / "a:x:b[red]c"
    # When it is named as the raw directory
    result = runner.invoke(app, ["ingest", "--raw", str(missing), "--workspace", str(tmp_path)])
    # Then the error shows it unchanged
    assert result.exit_code == 1 and f"{missing}: raw directory not found" in result.output.replace("\n", "")


def test_a_simulation_that_ends_before_it_starts_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["simulate", "--customers", "10", "--out", str(tmp_path / "raw"),
                                 "--start", "2026-01-01", "--end", "2025-01-01"])
    assert result.exit_code == 2 and "--end (2025-01-01) must be after --start (2026-01-01)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_push_refuses_an_unknown_customer_and_a_bad_value(trained):
    root = str(trained.workspace.root)
    unknown = runner.invoke(app, ["push", "--customer-id", "C999999999", "--set", "latest_email_consent=0",
                                  "--workspace", root])
    assert unknown.exit_code == 1 and "'C999999999': unknown customer" in unknown.output
    customer = pd.read_parquet(trained.workspace.outputs / "identity_map.parquet")["customer_id"].iloc[0]
    bad = runner.invoke(app, ["push", "--customer-id", customer, "--set", "latest_email_consent=7", "--workspace", root])
    assert bad.exit_code == 1 and "latest_email_consent must be 0 or 1, not 7" in " ".join(bad.output.split())


def test_push_for_an_id_retired_by_a_merge_goes_to_its_survivor(served, tmp_path):
    import shutil

    from cdp.config import load_settings
    from cdp.files import write_json
    from cdp.workspace import Workspace
    from feature_repo.definitions import REALTIME_VIEW
    from features.feature_store import open_feature_store
    from features.identity.store import identity_paths, read_identity_state

    # Given a workspace whose last resolution merged C999999990 into a known customer
    shutil.copytree(served.workspace.root, tmp_path / "ws")
    workspace = Workspace.at(tmp_path / "ws")
    survivor = pd.read_parquet(workspace.outputs / "identity_map.parquet")["customer_id"].iloc[1]
    write_json(identity_paths(workspace)["state"],
               {**read_identity_state(workspace), "merged_into": {"C999999990": survivor}})
    # When a consent is pushed for the retired id
    result = runner.invoke(app, ["push", "--customer-id", "C999999990", "--set", "latest_sms_consent=0",
                                 "--workspace", str(workspace.root)])
    # Then it is pushed for the survivor, as /events does, and says so
    words = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"merged into {survivor}" in words and f"for {survivor}" in words
    store = open_feature_store(workspace, load_settings().features)
    row = store.get_online_features(features=[f"{REALTIME_VIEW}:latest_sms_consent"],
                                    entity_rows=[{"customer_id": survivor}]).to_dict()
    assert row["latest_sms_consent"] == [0]
    # ...and the push log keeps the id it was sent under (a later split must not leave a grant with another)
    from features.feature_store import push_log_entries

    assert push_log_entries(workspace)[0][-1] == {**push_log_entries(workspace)[0][-1], "customer_id": survivor,
                                                  "sent_as": ["C999999990"]}


def test_lift_refuses_a_campaign_the_scores_were_not_drawn_for_or_without_treated_customers(tmp_path, trained):
    import shutil

    # Given a copy of the trained workspace, scored for a campaign whose touches all came before the
    # decision (the data ends the day before it)
    root = tmp_path / "ws"
    shutil.copytree(trained.workspace.root, root)
    touches = pd.read_parquet(trained.workspace.lake_table("touches"), columns=["campaign_id", "sent_at"])
    campaign = touches["campaign_id"].value_counts().index[0]
    assert touches.loc[touches["campaign_id"] == campaign, "sent_at"].max() < pd.Timestamp("2026-07-01", tz="UTC")
    scored = runner.invoke(app, ["score", "--as-of", "2026-07-01", "--campaign", campaign, "--reasons", "none",
                                 "--workspace", str(root)])
    assert scored.exit_code == 0, scored.output
    # When lift is asked for another campaign: refused, naming the one the holdout was drawn for
    other = runner.invoke(app, ["report", "lift", "--campaign", "autumn", "--workspace", str(root)])
    assert other.exit_code == 1 and f"'{campaign}', not 'autumn'" in " ".join(other.output.split())
    # When asked for that campaign: its touches before the decision make nobody treated, an error
    same = runner.invoke(app, ["report", "lift", "--campaign", campaign, "--workspace", str(root)])
    assert same.exit_code == 1 and "at least two customers" in " ".join(same.output.split())
    assert " 0 of them sent the campaign" in " ".join(same.output.split()), same.output
    assert not (root / f"data/reports/lift-{campaign}.json").exists()
    # ...and a campaign scored into a file of its own is measured from that file
    elsewhere = root / "autumn.parquet"
    assert runner.invoke(app, ["score", "--as-of", "2026-07-01", "--campaign", "autumn", "--reasons", "none",
                               "--out", str(elsewhere), "--workspace", str(root)]).exit_code == 0
    named = runner.invoke(app, ["report", "lift", "--campaign", "autumn", "--scores", str(elsewhere),
                                "--workspace", str(root)])
    assert "at least two customers" in " ".join(named.output.split()), named.output


def test_export_refuses_an_out_file_named_for_another_format(tmp_path):
    (tmp_path / "data" / "lake").mkdir(parents=True)  # a workspace
    result = runner.invoke(app, ["export", "--segment", "push_reachable", "--format", "parquet",
                                 "--out", str(tmp_path / "push.csv"), "--workspace", str(tmp_path)])
    assert result.exit_code == 2 and "ends in .csv but the format is parquet" in " ".join(result.output.split())
    assert not (tmp_path / "push.csv").exists()


def test_score_takes_its_format_from_the_out_name_and_refuses_a_contradiction(tmp_path):
    from cdp.cli import _output_format

    # Given --out x.csv without --format: csv; with --format parquet: refused before anything is scored
    assert _output_format(tmp_path / "x.csv", None, "parquet") == "csv"
    assert _output_format(tmp_path / "x.parquet", None, "csv") == "parquet"
    assert _output_format(None, None, "parquet") == "parquet"
    assert _output_format("s3a://bucket/scores", "csv", "parquet") == "csv"
    result = runner.invoke(app, ["score", "--as-of", "2026-07-01", "--format", "parquet",
                                 "--out", str(tmp_path / "x.csv"), "--workspace", str(tmp_path)])
    assert result.exit_code == 2 and "ends in .csv but the format is parquet" in " ".join(result.output.split())
    assert not (tmp_path / "x.csv").exists()


def test_scoring_long_after_the_last_data_warns(tmp_path, trained):
    import shutil

    root = tmp_path / "ws"
    shutil.copytree(trained.workspace.root, root)
    result = runner.invoke(app, ["score", "--as-of", "2026-12-01", "--reasons", "none", "--workspace", str(root)])
    assert "after the last data (2026-06-30)" in " ".join(result.output.split())


def test_explain_shows_both_names_agreeing_as_one_full_name_weight():
    from cdp.cli import _evidence_text

    # Given an edge whose names both agree exactly: the full-name weight split +9.1 / +0.0
    evidence = {"first_name": {"level": "exact", "weight": 9.1}, "last_name": {"level": "exact", "weight": 0.0},
                "date_of_birth": {"level": "exact", "weight": 12.0}}
    # Then it reads as one full-name figure, not a surname worth nothing
    assert _evidence_text(evidence) == "full name exact (+9.1), date_of_birth exact (+12.0)"
    assert _evidence_text({"last_name": {"level": "exact", "weight": 4.0}}) == "last_name exact (+4.0)"


def resolved_workspace(root):
    """A workspace as `cdp resolve` leaves it, by hand: a lake, and an identity map and profiles with two
    customers, C000000001 (records web:W010000001 and app:a1, e-mail jo@example.org) and C000000002."""
    from cdp.workspace import Workspace

    workspace = Workspace.at(root)
    workspace.lake.mkdir(parents=True)
    workspace.outputs.mkdir(parents=True)
    pd.DataFrame({"source": ["web", "app", "web"], "source_id": ["W010000001", "a1", "W010000002"],
                  "customer_id": ["C000000001", "C000000001", "C000000002"], "match_probability": [1.0, 1.0, 1.0],
                  "matched_by": ["exact_email", "exact_email", "unmatched"], "held_back": ["", "", ""]},
                 ).to_parquet(workspace.outputs / "identity_map.parquet", index=False)
    pd.DataFrame({"customer_id": ["C000000001", "C000000002"], "emails": [["jo@example.org"], []],
                  "phones": [[], []]}).to_parquet(workspace.outputs / "profiles.parquet", index=False)
    return workspace


@pytest.mark.parametrize(("stop", "outcome", "why"), [
    (ErasureError("online store (redis) could not be cleaned"), "failed",
     "a store could not be cleaned or is not the one loaded"),
    (RuntimeError("disk full"), "failed", "RuntimeError"),
    (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
    ("SIGTERM", "interrupted", "SIGTERM"),
], ids=["erasure-error", "other-error", "ctrl-c", "sigterm"])
def test_an_erasure_that_stops_partway_is_on_record_with_its_request_id_and_person(tmp_path, monkeypatch, request,
                                                                                   stop, outcome, why):
    from features import erasure

    # Given a resolved workspace, and a store that fails (or a Ctrl-C) once the erasure has started
    workspace = resolved_workspace(tmp_path / "ws")

    def unhandled(signal_number, frame):  # what SIGTERM would do if forget did not take it: not kill pytest
        raise RuntimeError("SIGTERM reached the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))

    def stopped(*args, **kwargs):
        if stop == "SIGTERM":  # `kill <pid>` while the erasure runs
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once
        raise stop

    monkeypatch.setattr(erasure, "erase_from_lake", stopped)
    # When a person is forgotten
    result = runner.invoke(app, ["forget", "--email", "jo@example.org", "--workspace", str(workspace.root)])
    # Then the command fails, and the audit log's line that ends the request names the same request and
    # the same (pseudonymous) person as the line that started it
    assert result.exit_code != 0
    log_text = (workspace.data / "audit" / "requests.log").read_text()
    first, last = [json.loads(line) for line in log_text.splitlines()]
    assert (first["outcome"], last["outcome"], last["why"]) == ("started", outcome, why)
    assert last["event"] == "erasure" and last["subject"] is not None
    assert (last["request_id"], last["subject"]) == (first["request_id"], first["subject"])
    # ...and nothing in it names them
    assert not any(raw in log_text for raw in ("C000000001", "W010000001", "jo@example.org", '"a1"'))


def test_scoring_a_workspace_never_resolved_says_to_resolve_first(tmp_path):
    # Given a workspace that was ingested but never resolved
    raw, workspace = tmp_path / "raw", tmp_path / "ws"
    simulated = runner.invoke(app, ["simulate", "--customers", "20", "--seed", "3", "--start", "2026-01-01",
                                    "--end", "2026-06-30", "--out", str(raw)])
    ingested = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(workspace)])
    assert simulated.exit_code == ingested.exit_code == 0, ingested.output
    # When it is scored
    result = runner.invoke(app, ["score", "--as-of", "2026-07-01", "--workspace", str(workspace)])
    # Then it names the first missing step, `cdp resolve` (then training), not only `cdp train`
    words = " ".join(result.output.split())
    assert result.exit_code == 1 and "run `cdp resolve` first, then `cdp train" in words, result.output
    assert not (workspace / "mlruns").exists()


def test_a_run_that_fails_says_which_steps_did_not_run_and_which_scores_stand(tmp_path):
    # Given a workspace scored before, and tonight's export folder empty
    outputs = tmp_path / "w" / "data" / "outputs"
    outputs.mkdir(parents=True)
    # (its summary written where the workspace was before being copied here)
    (outputs / "scores.json").write_text(json.dumps({"output": "/elsewhere/data/outputs/scores.parquet",
                                                     "as_of": "2026-06-30T00:00:00+00:00"}))
    (tmp_path / "raw").mkdir()
    # When the main job runs
    result = runner.invoke(app, ["run", "--raw", str(tmp_path / "raw"), "--as-of", "2026-07-01",
                                 "--workspace", str(tmp_path / "w")])
    # Then it fails at the ingest, and says what did not run and that yesterday's scores stand
    assert result.exit_code == 1, result.output
    assert ("cdp run stopped at step 1/6 (ingest); not run: resolve identities, features, online store, train, "
            f"score; the last scores ({outputs / 'scores.parquet'}, as of 2026-06-30T00:00:00+00:00) are unchanged"
            in " ".join(result.output.split()))


def test_a_run_that_trained_not_every_model_warns_and_with_strict_exits_3(tmp_path, monkeypatch):
    from cdp import cli
    from training.pipeline import ModelReport

    # Given the steps succeed but churn was skipped (its champion from before still scores)
    for name in ("ingest", "resolve", "features_build", "features_apply", "features_materialize", "_score"):
        monkeypatch.setattr(cli, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "_train", lambda *args, **kwargs: [
        ModelReport("churn", "skipped", "history too short"), ModelReport("clv", "trained")])
    arguments = ["run", "--raw", str(tmp_path), "--as-of", "2026-07-01", "--workspace", str(tmp_path / "w")]
    # When run plainly, then a warning and exit 0; with --strict, exit 3 for the scheduler
    plain = runner.invoke(app, arguments)
    assert plain.exit_code == 0, plain.output
    assert "cdp run finished, but churn was not trained" in " ".join(plain.output.split())
    strict = runner.invoke(app, [*arguments, "--strict"])
    assert strict.exit_code == 3 and "(--strict)" in strict.output


@pytest.mark.slow
def test_run_that_can_train_no_model_and_scores_nothing_fails(tmp_path):
    # Given customers and three months of their orders (too short a history for any model), no touches
    simulated, raw = tmp_path / "simulated", tmp_path / "raw"
    made = runner.invoke(app, ["simulate", "--customers", "20", "--seed", "3", "--start", "2026-04-01",
                               "--end", "2026-06-30", "--out", str(simulated)])
    assert made.exit_code == 0, made.output
    raw.mkdir()
    for table in ("customers", "orders"):
        (simulated / f"{table}.parquet").rename(raw / f"{table}.parquet")
    # When the main job runs
    result = runner.invoke(app, ["run", "--raw", str(raw), "--as-of", "2026-06-20", "--workspace", str(tmp_path / "w")])
    # Then it exits 1, as `cdp train` and `cdp score` would, saying why, and writes no scores
    assert result.exit_code == 1, result.output
    assert "no model could be trained, so nothing is scored" in " ".join(result.output.split())
    assert not list((tmp_path / "w" / "data" / "outputs").glob("scores.*"))


def _held_by_another(path) -> bool:
    """Whether another open file holds the lock on `path` now (asked without waiting)."""
    import fcntl

    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_an_erasure_rewrites_the_lake_holding_the_ingest_lock(tmp_path, monkeypatch):
    from features import erasure
    from features.ingest.pipeline import lake_lock_path

    # Given a resolved workspace, and a look at the lake's lock at the moment the erasure rewrites the lake
    workspace = resolved_workspace(tmp_path / "ws")
    rewrite = erasure.erase_from_lake
    held = []

    def watched(*args, **kwargs):
        held.append(_held_by_another(lake_lock_path(workspace)))
        return rewrite(*args, **kwargs)

    monkeypatch.setattr(erasure, "erase_from_lake", watched)
    # When a person is forgotten
    result = runner.invoke(app, ["forget", "--email", "jo@example.org", "--workspace", str(workspace.root)])
    # Then the lake was rewritten under the lock an ingest takes (an ingest meanwhile would write back the
    # lake it read, person included), and released after
    assert result.exit_code == 0, result.output
    assert held == [True] and not _held_by_another(lake_lock_path(workspace))


def test_an_erasure_waiting_for_an_ingest_does_not_call_features_of_the_older_lake_current(tmp_path, monkeypatch):
    import threading

    from cdp.config import load_settings
    from features import erasure
    from features.feature_tables import _fingerprint_path, _inputs_fingerprint, tables_match_inputs
    from features.ingest.pipeline import lake_lock

    # Given features recorded as built from the current lake, and an ingest holding the lake
    workspace = resolved_workspace(tmp_path / "ws")
    _fingerprint_path(workspace).parent.mkdir(parents=True)
    _fingerprint_path(workspace).write_text(json.dumps(_inputs_fingerprint(workspace)))
    holding, judged, done = threading.Event(), threading.Event(), threading.Event()
    judge = erasure._features_match_lake

    def judging(space):  # the erasure asks whether the features are current
        current = judge(space)
        judged.set()
        return current

    monkeypatch.setattr(erasure, "_features_match_lake", judging)

    def ingest():
        with lake_lock(workspace):
            holding.set()
            judged.wait(3)  # an erasure that asks before taking the lake asks now; one that waits, never
            pd.DataFrame({"order_id": ["o1"]}).to_parquet(workspace.lake_table("orders"), index=False)
        done.set()

    threading.Thread(target=ingest, daemon=True).start()
    holding.wait(5)
    # When a person is forgotten while the ingest runs
    erasure.forget(workspace, load_settings(), erasure.SubjectQuery(email="jo@example.org"))
    # Then the erasure waited for it, and the features are not recorded as built from the lake it left
    assert done.is_set()
    assert not tables_match_inputs(workspace)


def test_explain_of_a_customer_with_many_records_prints_the_first_and_counts_the_rest(tmp_path):
    # Given one shopper whose record came in 60 times under different ids (all one person by e-mail)
    raw, workspace = tmp_path / "raw", tmp_path / "ws"
    raw.mkdir()
    rows = "".join(f"store,S{n:03d},Ann,Lee,ann.lee@example.com\n" for n in range(60))
    (raw / "customers.csv").write_text("source,source_id,first_name,last_name,email\n" + rows)
    assert runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(workspace)]).exit_code == 0
    assert runner.invoke(app, ["resolve", "--workspace", str(workspace)]).exit_code == 0
    # When explained
    result = runner.invoke(app, ["identity", "explain", "store:S000", "--workspace", str(workspace)])
    records = runner.invoke(app, ["identity", "explain", "store:S000", "--json", "--workspace", str(workspace)])
    # Then 50 records are printed and the other 10 counted; --json holds all 60
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum(line.lstrip().startswith("store:S") and " ~ " not in line for line in lines) == 50
    assert sum(" ~ " in line for line in lines) <= 50  # and at most 50 joins
    assert "… and 10 more records (all of them with --json)" in " ".join(result.output.split())
    assert len(json.loads(records.stdout)["records"]) == 60


def test_score_to_a_path_that_cannot_be_written_is_one_error_line(tmp_path):
    # Given a workspace, and an output path under a directory that cannot exist
    workspace = resolved_workspace(tmp_path / "ws")
    # When scoring is pointed there
    result = runner.invoke(app, ["score", "--as-of", "2026-07-01", "--out", "/proc/nope/x.parquet",
                                 "--workspace", str(workspace.root)])
    # Then it is refused before any work, in one line naming the path (before, a 90-line traceback)
    assert result.exit_code == 2, result.output
    assert "cannot write /proc/nope/x.parquet" in result.output and "Traceback" not in result.output


def test_run_with_an_unreachable_redis_changes_nothing(tmp_path, monkeypatch):
    # Given a configuration naming a Redis online store that does not answer, and a raw export
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,source,source_id,ordered_at,amount\no1,web,w1,2026-01-01,10\n")
    monkeypatch.setenv("CDP_FEATURES__ONLINE_STORE", "redis")
    monkeypatch.setenv("CDP_FEATURES__REDIS_CONNECTION_STRING", "localhost:1,password=S3cretPassw0rd")
    # When the nightly job runs
    result = runner.invoke(app, ["run", "--raw", str(raw), "--as-of", "2026-02-01", "--workspace", str(tmp_path / "ws")])
    # Then it stops before ingesting, saying why, without the password (before, ingest, resolve and the
    # features rewrote the workspace and the job failed at step 4)
    assert result.exit_code == 1, result.output
    assert "does not answer" in " ".join(result.output.split()) and "S3cretPassw0rd" not in result.output
    assert not (tmp_path / "ws" / "data" / "lake").exists()


def test_ingest_warns_when_every_row_of_a_table_was_quarantined(tmp_path):
    # Given an orders export whose dates are all in a format the contract does not take
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,source,source_id,ordered_at,amount\nO1,web,W1,30/06/2026,5\n"
                                    "O2,web,W2,01/07/2026,6\n")
    # When ingested
    result = runner.invoke(app, ["ingest", "--raw", str(raw), "--workspace", str(tmp_path / "w")])
    # Then the rows are kept in quarantine and the summary says the whole table was, pointing to the contract
    assert result.exit_code == 0, result.output
    assert "orders: every one of its 2 row(s) was quarantined: check the export's format against `cdp contract orders`" \
        in " ".join(result.output.split())


def test_a_second_run_of_a_workspace_waits_for_the_first(tmp_path):
    import fcntl
    import subprocess
    import sys

    # Given a `cdp run` of the workspace in progress (its lock held), and an empty export folder
    lock = tmp_path / "w" / "data" / ".run.lock"
    lock.parent.mkdir(parents=True)
    (tmp_path / "raw").mkdir()
    command = [str(Path(sys.executable).with_name("cdp")), "run", "--raw", str(tmp_path / "raw"), "--as-of",
               "2026-07-01", "--workspace", str(tmp_path / "w")]
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        # When a second run starts
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        said = ""
        deadline = time.monotonic() + 60
        while "waiting for it to finish" not in said and time.monotonic() < deadline:
            said += second.stdout.readline()
        # Then it says it waits, and does nothing while the first holds the workspace
        assert "another `cdp run` of this workspace is running" in said, said
        assert second.poll() is None and not (tmp_path / "w" / "data" / "lake").exists()
    # ...and goes on once the first is done
    rest, _ = second.communicate(timeout=120)
    assert second.returncode == 1 and "cdp run stopped at step 1/6 (ingest)" in " ".join(rest.split())
