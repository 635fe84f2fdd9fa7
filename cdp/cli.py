"""The `cdp` command line: parses options, loads the config, calls one stage, prints a summary.

Stages are imported inside their commands so `cdp --help` stays fast and importing this module
does nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cdp.config import (
    TEXT_BLANKS,
    ConfigError,
    Settings,
    campaign_id_problem,
    find_config_file,
    load_settings,
)
from cdp.console import answer_console, configure_logging, console, step_progress
from cdp.workspace import Workspace

app = typer.Typer(
    name="cdp",
    help="Customer intelligence service: simulate, ingest, resolve, learn and recommend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
log = logging.getLogger("cdp.cli")

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace", "-w",
        help="Directory that holds all state (data/, mlruns/, the Feast store). Default: the repository root.",
        file_okay=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c",
        help="YAML config file. Default: <workspace>/cdp.yaml when it exists. "
        "Any value can be overridden with CDP_<SECTION>__<KEY>.",
        dir_okay=False,
    ),
]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    configure_logging(verbose)
    for variable in TELEMETRY_OFF:  # unless the user set them: `cdp serve`'s BentoML inherits them too
        os.environ.setdefault(variable, "true")


TELEMETRY_OFF = ("BENTOML_DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
"""BentoML and MLflow send usage statistics unless told not to (docs/privacy.md); no data of ours leaves."""


def _context(workspace: Path | None, config: Path | None, creates: bool = False) -> tuple[Workspace, Settings]:
    """The workspace and its settings. Only the commands that start a workspace (`creates`: ingest, run;
    simulate and config, which write nothing in it) may name a folder that is not one yet: elsewhere a
    mistyped path, or an existing folder that is not a workspace (nothing of ours, no cdp.yaml: an empty
    directory, /tmp), is an error, not an empty workspace with advice that does not apply and files
    (the audit log, the salt, MLflow's database) made in the wrong place. The default workspace, the
    repository, is taken as it is."""
    space = Workspace.at(workspace)
    if not creates and workspace is not None:
        if not space.root.is_dir():
            raise _fail(f"workspace {space.root} does not exist; `cdp ingest --raw DIR --workspace {space.root}` "
                        "starts one", 2)
        if not space.started:
            raise _fail(f"{space.root} is not a workspace (no data/lake, data/outputs, data/features or data/feast, no "
                        "cdp.yaml): name the folder `cdp ingest` "
                        f"or `cdp run` made, or start one with `cdp ingest --raw DIR --workspace {space.root}`", 2)
    try:
        settings = load_settings(find_config_file(space.root, config))
    except ConfigError as error:
        raise _fail(str(error), 2) from error
    return space, settings


def _print_row_counts(title: str, label: str, counts: dict[str, int]) -> None:
    view = Table(title=title)
    view.add_column(label)
    view.add_column("rows", justify="right")
    for name, count in counts.items():
        view.add_row(name, f"{count:,}")
    console.print(view)


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line; the message is printed as written (ids such as `web:X:1` and paths with
    brackets are not rich markup or emoji codes)."""
    console.print(f"[red]error:[/red] {escape(message)}", emoji=False, soft_wrap=True)  # one line in a log
    return typer.Exit(code)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the raw tables and truth/ into.", file_okay=False)],
    customers: Annotated[int | None, typer.Option(help="Number of people. Default: simulation.customers (20,000).", min=1)] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random seed (0 or more); the same seed gives the same files. Default: simulation.seed (42).")] = None,
    start: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First simulated day.")] = None,
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last simulated day (inclusive).")] = None,
    file_format: Annotated[str | None, typer.Option("--format", help="parquet or csv.")] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Simulate a retailer's customer data (every contract table) with ground truth in OUT/truth/."""
    from features.simulator import SimulationParameters, simulate_to_directory

    _, settings = _context(workspace, config, creates=True)
    defaults = settings.simulation
    chosen_format = file_format or defaults.format
    if chosen_format not in ("parquet", "csv"):
        raise _fail(f"--format must be parquet or csv, not {chosen_format!r}", 2)
    first_day, last_day = start.date() if start else defaults.start, end.date() if end else defaults.end
    if last_day <= first_day:
        raise _fail(f"--end ({last_day}) must be after --start ({first_day})", 2)
    parameters = SimulationParameters(
        customers=customers or defaults.customers,
        seed=defaults.seed if seed is None else seed,
        start=first_day,
        end=last_day,
    )
    with step_progress("simulate (days)") as progress:
        rows = simulate_to_directory(
            parameters, out, chosen_format, lambda done, total: progress.update(done, total)
        )
    _print_row_counts(f"Simulated {parameters.customers:,} people, {parameters.start} .. {parameters.end}", "table", rows)
    console.print(f"Raw tables in {out}; ground truth in {out / 'truth'}")


@app.command()
def ingest(
    raw: Annotated[Path, typer.Option("--raw", "-r", help="Directory with <table>.csv or <table>.parquet files.", file_okay=False)],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Rows replace the lake's rows of their key even where the lake's updated_at is later (a correction, e.g. after changing ingest.naive_timezone); otherwise an older customers export is quarantined.")] = False,
) -> None:
    """Validate raw tables against the data contract and load them into the workspace's lake.

    Rows that fail go to data/quarantine/<table>.parquet with file, row, column and reason;
    invalid optional PII values are nulled (originals kept in <table>.nulled.parquet).
    Re-ingesting a file replaces rows with the same primary key. Exit code 1 if a table failed.
    """
    from features.ingest import TableFileError, ingest_directory

    space, settings = _context(workspace, config, creates=True)
    with step_progress("ingest") as progress:
        try:
            report = ingest_directory(
                raw, space, settings.ingest,
                lambda table, done, total: progress.update(done, total, label=f"ingest {table}"),
                privacy=settings.privacy, replace=replace,
            )
        except TableFileError as error:
            raise _fail(str(error)) from error
    summary = Table(title=f"Ingested {raw} into {space.lake}")
    # `unchanged`: loaded rows the lake already held as they are (a file ingested again changes nothing)
    for column in ("table", "read", "loaded", "unchanged", "quarantined", "PII nulled", "lake rows", "status"):
        summary.add_column(column, justify="left" if column in ("table", "status") else "right")
    for t in report.tables:
        status = "ok" if t.status == "ok" else f"[red]failed[/red]: {t.error}"
        summary.add_row(t.table, f"{t.read:,}", f"{t.loaded:,}", f"{t.unchanged:,}", f"{t.quarantined:,}",
                        f"{sum(t.nulled_values.values()):,}", f"{t.lake_rows:,}", status)
    console.print(summary)
    for t in report.tables:
        reasons = list(t.quarantined_by_reason.items())
        for reason, count in reasons[:5]:
            console.print(f"  {t.table}: {count:,} quarantined: {escape(reason)}", emoji=False)
        if len(reasons) > 5:
            rest = sum(count for _, count in reasons[5:])
            console.print(f"  {t.table}: {rest:,} more quarantined for {len(reasons) - 5:,} other reason(s) "
                          f"(all in {space.reports / 'ingest.json'})")
    for t in report.tables:
        if t.suppressed:
            console.print(f"  {t.table}: {t.suppressed:,} suppressed: rows of erased people (docs/privacy.md)")
    for t in report.tables:
        if t.status == "ok" and t.quarantined and t.quarantined == t.read:  # a format problem, rarely bad data
            console.print(f"[yellow]warning:[/yellow] {t.table}: every one of its {t.read:,} row(s) was quarantined: "
                          "check the export's format against `cdp contract " + t.table + "`", soft_wrap=True)
    console.print(f"Report: {space.reports / 'ingest.json'}; quarantine: {space.quarantine}")
    if report.failed:
        raise typer.Exit(1)


identity_app = typer.Typer(help="Inspect identity resolution.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Measure results against known truth (e.g. the simulator's).", no_args_is_help=True)
app.add_typer(identity_app, name="identity")
app.add_typer(evaluate_app, name="evaluate")


@app.command()
def resolve(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """Resolve ingested records into customers: identity map, golden profiles, evidence.

    Writes data/outputs/identity_map.parquet (source, source_id, customer_id, match_probability,
    matched_by), profiles.parquet (one golden record per customer), identity_edges.parquet (why
    records joined, or were kept apart) and data/reports/identity.json. Re-running keeps the
    customer_id of every cluster that persists.
    """
    from features.identity.store import IdentityInputError, run_identity_resolution

    space, settings = _context(workspace, config)
    with step_progress("resolve identities (steps)") as progress:
        try:
            resolution = run_identity_resolution(
                space, settings.identity, lambda done, total: progress.update(done, total)
            )
        except (IdentityInputError, ValueError) as error:
            raise _fail(str(error)) from error
    report = resolution.report
    summary = Table(title=f"Resolved {report['records']:,} records into {report['customers']:,} customers")
    summary.add_column("what")
    summary.add_column("count", justify="right")
    for rule, count in report["deterministic_edges"].items():
        summary.add_row(f"deterministic edges: {rule}", f"{count:,}")
    summary.add_row("candidate pairs compared", f"{report['candidate_pairs']:,}")
    summary.add_row(f"probabilistic matches (p >= {report['match_threshold']})",
                    f"{report['probabilistic_edges_above_threshold']:,}")
    for reason, count in report["refused_joins"].items():
        summary.add_row(f"joins refused: {reason}", f"{count:,}")
    summary.add_row("records without PII (own customer)", f"{report['records_without_pii']:,}")
    summary.add_row("customer ids kept / new", f"{report['ids']['kept_ids']:,} / {report['ids']['new_ids']:,}")
    large = report.get("large_cluster_count", len(report["large_clusters"]))
    listed = f" (the largest {len(report['large_clusters']):,} in the report)" if large > len(report["large_clusters"]) else ""
    summary.add_row("clusters above the size limit", f"{large:,}{listed}")
    console.print(summary)
    console.print(f"Outputs in {space.outputs}; report {space.reports / 'identity.json'}")


@identity_app.command("explain")
def identity_explain(
    query: Annotated[str, typer.Argument(help="A customer_id, or source:source_id of one of its records.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Show which records make up a customer and why: rules, comparison levels and weights."""
    import pandas as pd

    from features.identity.explain import explain_customer
    from features.identity.store import identity_paths, read_identity_state

    space, _ = _context(workspace, config)
    paths = identity_paths(space)
    if not paths["identity_map"].exists():
        raise _fail(f"{paths['identity_map']} not found; run `cdp resolve` first")
    try:
        state = read_identity_state(space)
        explanation = explain_customer(
            query, pd.read_parquet(paths["identity_map"]), pd.read_parquet(paths["edges"]),
            state["merged_into"], state["merged_then_split"],
        )
    except KeyError as error:
        raise _fail(str(error.args[0])) from error
    if as_json:
        typer.echo(json.dumps(explanation, indent=2, default=str))
        return
    if "merged_from" in explanation:
        answer_console.print(f"{escape(explanation['merged_from'])} was merged into {explanation['customer_id']} by a later "
                      "run (its records were found to be one person with that customer's); that customer:", emoji=False)
    answer_console.print(f"[bold]{explanation['customer_id']}[/bold]: {len(explanation['records'])} record(s)")
    for record in explanation["records"][:EXPLAIN_LINES]:
        how = ("no match: a record of its own" if record["matched_by"] == "unmatched"
               else f"matched by {record['matched_by']}")
        answer_console.print(f"  {escape(record['source'])}:{escape(str(record['source_id']))}  {how}"
                      f" (p={record['match_probability']:.4f})", emoji=False)
        for held in record["contact_points_held_back"]:
            answer_console.print(f"    {escape(held)}", emoji=False)
    _print_more(len(explanation["records"]), "records")
    for title, edges in (("joined because", explanation["joined_by"]), ("kept apart", explanation["refused"])):
        if not edges:
            continue
        answer_console.print(f"[bold]{title}[/bold]")
        for edge in edges[:EXPLAIN_LINES]:
            evidence = _evidence_text(edge["evidence"])
            extra = f" — refused: {edge['refused_because']}" if "refused_because" in edge else ""
            compared = (f" (the comparison alone: {edge['model_probability']:.4f})"
                        if edge["kind"] == "deterministic" and edge["model_probability"] < 0.99995 else "")
            answer_console.print(f"  {escape(str(edge['records'][0]))} ~ {escape(str(edge['records'][1]))}: "
                          f"{escape(str(edge['rule']))}, p={edge['match_probability']:.4f}{compared}, "
                          f"weight {edge['match_weight']:+.1f}{escape(extra)}", emoji=False)
            if evidence:
                answer_console.print(f"    {escape(evidence)}", emoji=False)
        _print_more(len(edges), "joins")


EXPLAIN_LINES = 50
"""Records, and joins of each kind, `cdp identity explain` prints (a customer of 300 copies of one record
printed 300 of each); `--json` holds them all."""


def _print_more(count: int, what: str) -> None:
    if count > EXPLAIN_LINES:
        answer_console.print(f"  … and {count - EXPLAIN_LINES:,} more {what} (all of them with --json)")


def _evidence_text(evidence: dict[str, dict]) -> str:
    """Per field: level (weight). Both names exact are weighed as one full name (how rare the pair is);
    shown as one figure, since its split between the two (a surname part of +0.0 when the first name
    alone is as rare) read as "no evidence"."""
    parts, fields = [], dict(evidence)
    first, last = fields.get("first_name"), fields.get("last_name")
    if first and last and first["level"] == "exact" and last["level"] == "exact":
        del fields["first_name"], fields["last_name"]
        parts.append(f"full name exact ({first['weight'] + last['weight']:+.1f})")
    return ", ".join(parts + [f"{name} {e['level']} ({e['weight']:+.1f})" for name, e in fields.items()])


@evaluate_app.command("identity")
def evaluate_identity(
    truth: Annotated[Path, typer.Option("--truth", help="The simulator's output directory (or its truth/ folder).", file_okay=False)],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Pairwise precision, recall and F1 of the identity map against the simulator's truth."""
    import pandas as pd

    from features.identity.evaluation import evaluate_identity_map
    from features.identity.store import identity_paths

    space, _ = _context(workspace, config)
    truth_file = truth / "record_person.parquet"
    if not truth_file.exists():
        truth_file = truth / "truth" / "record_person.parquet"
    paths = identity_paths(space)
    for needed in (truth_file, paths["identity_map"]):
        if not needed.exists():
            raise _fail(f"{needed} not found")
    try:
        result = evaluate_identity_map(pd.read_parquet(paths["identity_map"]), pd.read_parquet(truth_file))
    except ValueError as error:  # a truth of another simulation, or an identity map with no records
        raise _fail(f"{truth_file}: {error}") from error
    space.reports.mkdir(parents=True, exist_ok=True)
    (space.reports / "identity_evaluation.json").write_text(json.dumps(result, indent=2))
    view = Table(title="Identity resolution against truth")
    for column in ("records", "precision", "recall", "F1", "over-merged customers", "split people", "household merges"):
        view.add_column(column, justify="right")
    for scope, scores in result.items():
        pairwise = scores["pairwise"]
        households = scores.get("household_merges", {}).get("customers_joining_household_members", "")
        view.add_row(f"{scope}: {scores['records']:,}", f"{pairwise['precision']:.4f}", f"{pairwise['recall']:.4f}",
                     f"{pairwise['f1']:.4f}", f"{scores['over_merged_customers']:,}",
                     f"{scores['under_merged_people']:,}", str(households))
    console.print(view)
    untold = result["all_records"]["records_without_truth"]
    if untold:
        console.print(f"{untold:,} record(s) of the identity map have no truth ({truth_file.name} does not list them) "
                      "and are not scored")
    worst = result["all_records"]["worst_over_merges"][:5]
    if worst:
        console.print("Worst over-merges (explain with `cdp identity explain ID`): "
                      + ", ".join(f"{w['customer_id']} ({w['people']} people)" for w in worst))
    console.print(f"Written to {space.reports / 'identity_evaluation.json'}")


@evaluate_app.command("models")
def evaluate_models(
    truth: Annotated[Path, typer.Option("--truth", help="The simulator's output directory (or its truth/ folder).", file_okay=False)],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Each model's last test rows scored next to the simulator's oracle (true probabilities and value)."""
    import pandas as pd

    from training.evaluation import TruthMismatchError, evaluate_against_oracle
    from training.pipeline import champion_validation_files

    space, settings = _context(workspace, config)
    truth_dir = truth if (truth / "simulation.json").exists() else truth / "truth"
    identity_map = space.outputs / "identity_map.parquet"
    for needed, hint in ((truth_dir / "simulation.json", "--truth names the simulator's --out directory"),
                         (identity_map, "run `cdp resolve` first")):
        if not needed.exists():
            raise _fail(f"{needed} not found; {hint}")
    chosen = champion_validation_files(space)
    files = {task: path for task, (path, _) in chosen.items()}
    if not any(path.exists() for path in files.values()):
        raise _fail(f"no test predictions in {space.outputs / 'validation'}; run `cdp train` first")
    options = settings.training
    horizons = {"churn": options.churn_horizon_days, "clv": options.clv_horizon_days,
                "propensity": options.conversion_window_days}
    # What each file says of itself: the horizon its model was trained for (the config's may differ), its version
    said = {task: _first_values(path, ("horizon_days", "model_version")) for task, path in files.items() if path.exists()}
    horizons.update({task: int(values["horizon_days"]) for task, values in said.items() if "horizon_days" in values})
    with step_progress("evaluate against the oracle") as progress:
        progress.update(0, 1)
        try:
            result = evaluate_against_oracle(files, pd.read_parquet(identity_map), truth_dir, horizons)
        except TruthMismatchError as error:
            raise _fail(str(error)) from error
        progress.update(1, 1)
    for task, scores in result.items():  # whose predictions these are
        version = chosen[task][1] or said[task].get("model_version")
        scores.update({"model_version": version, "champion": chosen[task][1] is not None,
                       "horizon_days": horizons[task]})
    space.reports.mkdir(parents=True, exist_ok=True)
    (space.reports / "model_evaluation.json").write_text(json.dumps(result, indent=2, default=float))
    view = Table(title="Models next to the oracle (same out-of-time test rows)")
    for column in ("model", "version", "rows", "metric", "model", "oracle", "ratio"):
        view.add_column(column, justify="left" if column in ("model", "version", "metric") else "right")
    for task, scores in result.items():
        metric = "spearman" if task == "clv" else "roc_auc"
        whose = (f"v{scores['model_version']} champion" if scores["champion"]
                 else f"{'v' + scores['model_version'] if scores['model_version'] else 'latest'} (latest run)")
        view.add_row(task, whose, f"{scores['rows']:,}", metric, f"{scores[f'model_{metric}']:.4f}",
                     f"{scores[f'oracle_{metric}']:.4f}", f"{scores['ratio_to_oracle']:.3f}")
    console.print(view)
    if "churn" in result:
        console.print(f"churn calibration: ECE {result['churn']['model_ece']:.4f} (oracle {result['churn']['oracle_ece']:.4f})")
    if "propensity" in result:
        p = result["propensity"]
        console.print(f"propensity uplift: Spearman with the true uplift {p['uplift_spearman_with_true']:.3f}; true uplift "
                      f"of the model's top decile {p['true_uplift_of_model_top_decile']:.4f} vs best possible "
                      f"{p['true_uplift_of_best_top_decile']:.4f} (mean {p['true_uplift_mean']:.4f})")
    console.print(f"Written to {space.reports / 'model_evaluation.json'}")


def _first_values(path: Path, columns: Sequence[str]) -> dict:
    """The first row's value of each of `columns` the Parquet file has (constant per file)."""
    import pyarrow.parquet as pq

    present = [c for c in columns if c in pq.read_schema(path).names]
    first = pq.read_table(path, columns=present).slice(0, 1).to_pylist() if present else []
    return first[0] if first else {}


@evaluate_app.command("policy")
def evaluate_policy_command(
    truth: Annotated[Path, typer.Option("--truth", help="The simulator's output directory (or its truth/ folder).", file_okay=False)],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """The recommendation policy's true incremental conversions and profit per 1,000 customers (from
    the last `cdp score`), next to random, always-e-mail, most-engaged and the oracle's best policy."""
    from serving.recommendation_summary import evaluate_workspace_policy

    space, settings = _context(workspace, config)
    with step_progress("evaluate the policy against the oracle") as progress:
        progress.update(0, 1)
        try:
            result = evaluate_workspace_policy(space, settings, truth)
        except FileNotFoundError as error:
            raise _fail(str(error)) from error
        progress.update(1, 1)
    space.reports.mkdir(parents=True, exist_ok=True)
    (space.reports / "policy_evaluation.json").write_text(json.dumps(result, indent=2, default=float))
    view = Table(title=f"Policies on {result['customers']:,} customers, true value per 1,000 (oracle, {result['as_of_day']})")
    for column in ("policy", "incremental profit", "incremental conversions", "contacted"):
        view.add_column(column, justify="left" if column == "policy" else "right")
    for name, values in result["policies"].items():
        view.add_row(name, f"{values['incremental_profit_per_1000']:.2f}", f"{values['incremental_conversions_per_1000']:.2f}",
                     f"{values['contacted_share']:.1%}")
    console.print(view)
    share, ratio = result["share_of_oracle_profit"], result["ratio_to_always_email"]
    random_ratio = result["ratio_to_random_eligible_channel"]
    console.print(f"our policy: {share:.1%} of the oracle's profit (bar 80%); "
                  + (f"{ratio:.2f}x always-e-mail (bar 1.5x)" if ratio is not None else "always-e-mail makes no profit")
                  + (f"; {random_ratio:.3f}x a random eligible channel for every eligible customer"
                     if random_ratio is not None else ""))
    console.print(f"Written to {space.reports / 'policy_evaluation.json'}")


report_app = typer.Typer(help="Reports on what the recommendations did.", no_args_is_help=True)
app.add_typer(report_app, name="report")


def _campaign_option(campaign: str) -> str:
    """`--campaign` as the service reads a campaign_id: trimmed of the same characters (the same holdout),
    not empty, not an e-mail address."""
    trimmed = campaign.strip(TEXT_BLANKS)
    if not trimmed:
        raise _fail("--campaign must not be empty: it salts the holdout, and the service refuses an empty "
                    "campaign_id (leave the option out for policy.default_campaign_id)", code=2)
    problem = campaign_id_problem(trimmed)
    if problem:
        raise _fail(f"--campaign: {problem}", code=2)
    return trimmed


@report_app.command("lift")
def report_lift(
    campaign: Annotated[str, typer.Option("--campaign", help="The campaign id: the holdout salt and the touches' campaign_id.")],
    window_days: Annotated[int | None, typer.Option(min=1, help="Days after the decision to count orders (default: the conversion window).")] = None,
    scores_file: Annotated[Path | None, typer.Option("--scores", help="The scores of the campaign's decision (default: the latest `cdp score` in data/outputs/; a `cdp score --out` file works, its .json summary beside it).", dir_okay=False)] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Incremental conversion and revenue of treated customers against the campaign's holdout, with
    95% intervals, from the `cdp score` run with this campaign and later touches and orders."""
    import pandas as pd

    from serving.lift import campaign_groups, lift_report_path, measure_lift
    from training.datasets import read_activity

    campaign = _campaign_option(campaign)
    space, settings = _context(workspace, config)
    scores_path = scores_file or space.latest_scores
    if not scores_path.exists():
        raise _fail(f"{scores_path} not found; run `cdp score --campaign {campaign}` first (or name the file with --scores)")
    summary_file = scores_path.with_suffix(".json")
    scored_for = json.loads(summary_file.read_text()).get("campaign_id") if summary_file.exists() else None
    if scored_for != campaign:
        raise _fail(f"{scores_path} holds the holdout drawn for campaign {scored_for!r}, not {campaign!r}: "
                    f"run `cdp score --campaign {campaign}` when the campaign is decided (or pass its file with "
                    "--scores), then measure it")
    scores = (pd.read_csv(scores_path) if scores_path.suffix.lower() == ".csv" else pd.read_parquet(scores_path))
    activity = read_activity(space)
    start = pd.Timestamp(scores["as_of"].iloc[0])
    from features.identity.store import read_identity_state

    groups = campaign_groups(scores, activity["touches"], campaign, start, read_identity_state(space)["merged_into"])
    result = measure_lift(groups, activity["orders"], start, window_days or settings.training.conversion_window_days)
    if "error" in result:
        raise _fail(f"campaign {campaign!r}: {result['error']}")
    space.reports.mkdir(parents=True, exist_ok=True)
    lift_report_path(space.reports, campaign).write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
    if "warning" in result:
        console.print(f"[yellow]warning:[/yellow] {escape(result['warning'])}")


@app.command("export")
def export_command(
    segment: Annotated[str, typer.Option("--segment", "-s", help="Built-in (win_back_today, high_clv_at_risk, push_reachable, do_not_contact) or defined under `segments.definitions`.")],
    output_format: Annotated[str | None, typer.Option("--format", help="csv or parquet (default: segments.default_format).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: data/outputs/segments/<segment>.<format>); a summary goes beside it as .json.", dir_okay=False)] = None,
    scores: Annotated[Path | None, typer.Option("--scores", help="Scores to select from (Parquet, a `cdp score --out` file; default: the latest `cdp score`, data/outputs/scores.parquet).")] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Write a segment of the latest `cdp score` (or --scores) for campaign tools: one row per source
    record of each customer (source, source_id, primary e-mail, customer_id) with the recommended action,
    reasons, eligible channels and the scores' campaign. Contact segments never hold holdout customers
    nor customers with no eligible channel (no consent, unreachable, capped or quiet on every channel),
    and give the e-mail only where e-mail is eligible; do_not_contact lists them (holdout = true).
    See docs/segments-and-drift.md."""
    from serving.segments import SegmentError, export_segment

    space, settings = _context(workspace, config)
    chosen_format = _output_format(out, output_format, settings.segments.default_format)
    try:
        summary = export_segment(space, settings, segment, chosen_format, out, scores)
    except SegmentError as error:
        raise _fail(str(error)) from error
    if summary.customers_without_features:
        console.print(f"[yellow]{summary.customers_without_features:,} scored customer(s) have no features as of the "
                      "scores' as_of and were not selected (the lake or identity map changed since: run `cdp score` "
                      "again)[/yellow]")
    if summary.withdrawn_since_scores:
        console.print(f"[yellow]{summary.withdrawn_since_scores:,} customer(s) withdrew the consent of their recommended "
                      "channel since the scores: exported without a contact on it; run `cdp score` again[/yellow]")
    if summary.campaign_id is None:
        console.print(f"[yellow]no `cdp score` summary of {summary.scores} beside it: the campaign whose holdout was "
                      "left out is unknown[/yellow]")
    campaign = summary.campaign_id if summary.campaign_id is not None else "unknown"
    console.print(f"Segment {summary.segment} (scores {summary.scores}, as of {summary.as_of}, campaign {campaign}): "
                  f"{summary.customers:,} customers, {summary.rows:,} rows")
    if summary.holdout_excluded:
        console.print(f"  left out: {summary.holdout_excluded:,} holdout customer(s) (no contact)")
    if summary.no_channel_excluded:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in summary.no_channel_reasons.items())
        console.print(f"  left out: {summary.no_channel_excluded:,} customer(s) with no eligible channel ({reasons})")
    if summary.email_not_eligible:
        console.print(f"  e-mail left empty for {summary.email_not_eligible:,} customer(s) e-mail is not eligible for")
    if summary.phone_not_eligible:
        console.print(f"  phone left empty for {summary.phone_not_eligible:,} customer(s) SMS is not eligible for")
    written = Path(summary.path).absolute()  # a relative --out is the current directory's, not the workspace's
    console.print(f"Written to {written} (summary: {written.with_suffix('.json')})")


@report_app.command("drift")
def report_drift(
    as_of: Annotated[list[str] | None, typer.Option("--as-of", metavar="DATE", help="Compare the features as of this date (default: the as_of of the latest `cdp score` in data/outputs/).")] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Population stability index of every scoring feature and of the predictions against each
    champion's training rows; flags past drift.psi_warning / drift.psi_alert. Writes
    data/reports/drift.html and drift.json and logs them to MLflow (experiment drift.experiment)."""
    from features.feature_tables import FeatureInputError
    from training.drift import DriftError, build_drift_report, log_drift_report, write_drift_report

    space, settings = _context(workspace, config)
    moment = _one_time(as_of) if as_of else None
    if moment is not None:
        _warn_when_after_the_data(space, moment)
    with step_progress("drift report") as progress:
        progress.update(0, 1)
        try:
            report = build_drift_report(space, settings, moment)
        except (DriftError, FeatureInputError) as error:
            raise _fail(str(error)) from error
        files = write_drift_report(space, report)
        run_id = log_drift_report(space, settings, report, files)
        progress.update(1, 1)
    view = Table(title=f"Drift as of {report['as_of']} (warning from PSI {settings.drift.psi_warning}, alert from {settings.drift.psi_alert})")
    for column in ("model", "version", "prediction PSI", "features alert", "features warning", "largest feature PSI"):
        view.add_column(column, justify="left" if column in ("model", "largest feature PSI") else "right")
    for task, entry in report["models"].items():
        top = entry["features"][0] if entry["features"] else None
        statuses = [row["status"] for row in entry["features"]]
        view.add_row(task, str(entry["version"]), f"{entry['prediction']['psi']:.3f} ({entry['prediction']['status']})",
                     str(statuses.count("alert")), str(statuses.count("warning")),
                     f"{top['feature']} {top['psi']:.3f}" if top else "")
    console.print(view)
    console.print(f"Overall: {report['summary']['status']}. Written to {files[0]} and {files[1]}; MLflow run {run_id} "
                  f"(experiment {settings.drift.experiment})")


features_app = typer.Typer(help="Customer features and the Feast feature store.", no_args_is_help=True)
app.add_typer(features_app, name="features")


def _parse_times(values: list[str]) -> list[dt.datetime]:
    """`2026-06-30` or `2026-06-30T12:00:00[Z|+01:00]`, comma-separated or repeated; naive = UTC."""
    times = []
    for value in ",".join(values).split(","):
        if not value.strip():
            continue
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as error:
            raise _fail(f"--as-of {value!r} is not an ISO-8601 date or timestamp", 2) from error
        times.append(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))
    if not times:
        raise _fail("--as-of needs at least one date", 2)
    return sorted(set(times))


@features_app.command("build")
def features_build(
    as_of: Annotated[list[str], typer.Option("--as-of", metavar="DATES", help="Snapshot time(s): 2026-06-30 or a timestamp; comma-separated or repeated.")],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Compute every feature family as of each time, from data strictly before it.

    Writes data/features/<family>.parquet keyed by customer_id and event_timestamp (= the as-of
    time); building the same as-of time again replaces its rows.
    """
    from features.feature_tables import FeatureInputError, build_feature_tables

    space, _ = _context(workspace, config)
    times = _parse_times(as_of)
    _warn_when_after_the_data(space, max(times))
    with step_progress("build features") as progress:
        progress.update(0, 1)
        try:
            counts = build_feature_tables(space, times)
        except FeatureInputError as error:
            raise _fail(str(error)) from error
        progress.update(1, 1)
    _print_row_counts(f"Features as of {', '.join(t.isoformat() for t in times)}", "family", counts)
    console.print(f"Feature tables in {space.data / 'features'}")


def _warn_when_after_the_data(space: Workspace, moment: dt.datetime) -> None:
    """Features or scores as of long after the last data describe every customer as lapsed."""
    from cdp.moments import utc_timestamp
    from features.feature_tables import DATA_END_TOLERANCE_DAYS, days_after_the_data, last_data_day

    if utc_timestamp(moment) > utc_timestamp(dt.datetime.now(dt.UTC)):
        console.print(f"[yellow]warning:[/yellow] --as-of {_utc_text(moment)} is in the future: it describes "
                      "customers with the data up to now, and later commands take it for the latest snapshot")
    last = last_data_day(space)
    gap = days_after_the_data(moment, last)
    if gap > DATA_END_TOLERANCE_DAYS:
        console.print(f"[yellow]warning:[/yellow] --as-of {_utc_text(moment)} is {gap} days after the last data "
                      f"({last}): every customer will look inactive for that long")


def _utc_text(moment: dt.datetime) -> str:
    """A moment as stored and compared (UTC): the date alone at midnight, else date and time. A time
    given as 2026-06-01T00:00+01:00 is 2026-05-31 23:00 UTC, not 2026-06-01."""
    from cdp.moments import utc_timestamp

    utc = utc_timestamp(moment)
    return f"{utc:%Y-%m-%d}" if utc.time() == dt.time(0) else f"{utc:%Y-%m-%d %H:%M} UTC"


def _warn_when_in_sample(space: Workspace, moment: dt.datetime) -> None:
    """Scores as of a time a champion trained past are in-sample: backtests, lift and policy evaluation
    built on them come out optimistic."""
    from training.scoring import champions_trained_past

    for name, version, trained_as_of in champions_trained_past(space, moment):
        console.print(f"[yellow]warning:[/yellow] --as-of {_utc_text(moment)} is before {name} v{version} was trained "
                      f"as of {trained_as_of}: it learned from outcomes after that date, so its scores here see the "
                      "future (in-sample, optimistic for backtests, lift and policy evaluation)")


def _output_format(out: Path | str | None, given: str | None, default: str) -> str:
    """csv or parquet: as given, else as --out's name says (x.csv), else the default; a name that
    says the other one is refused, not written in the wrong format under it."""
    suffix = Path(str(out)).suffix.lower() if out is not None and "://" not in str(out) else ""
    named = suffix.removeprefix(".") if suffix in (".csv", ".parquet") else None
    chosen = given or named or default
    if chosen not in ("csv", "parquet"):
        raise _fail(f"--format must be csv or parquet, not {chosen!r}", 2)
    if named is not None and named != chosen:
        raise _fail(f"--out {out} ends in {suffix} but the format is {chosen}: "
                    f"name the file .{chosen} or pass --format {named}", 2)
    return chosen


def _feature_store_call(function, *args):
    from features.feature_store import FeatureStoreError

    try:
        return function(*args)
    except FeatureStoreError as error:
        raise _fail(str(error)) from error
    except Exception as error:
        from features.online_store import is_redis_error

        if is_redis_error(error):  # down, unreachable, refused: no traceback
            raise _fail(f"the Redis online store cannot be reached ({type(error).__name__}: {error}); start it or "
                        "fix features.redis_connection_string (env CDP_FEATURES__REDIS_CONNECTION_STRING)") from error
        raise


@features_app.command("apply")
def features_apply(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """Register the entity, one feature view per table and one FeatureService per model in Feast."""
    from features.feature_store import apply_feature_definitions

    space, settings = _context(workspace, config)
    names = _feature_store_call(apply_feature_definitions, space, settings.features)
    console.print(f"Applied to the Feast registry in {space.feast} ({settings.features.online_store} online store): "
                  + ", ".join(names))


@features_app.command("materialize")
def features_materialize(
    end: Annotated[dt.datetime | None, typer.Option(help="Load snapshots up to this time (default: now).")] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Load the latest feature snapshot of every customer into the online store."""
    from features.feature_store import materialize_online

    space, settings = _context(workspace, config)
    end_time = end.replace(tzinfo=end.tzinfo or dt.UTC) if end else None
    with step_progress("materialize") as progress:
        progress.update(0, 1)
        loaded = _feature_store_call(materialize_online, space, settings.features, end_time)
        progress.update(1, 1)
    window = f"{loaded.start.date()} .. {loaded.end.date()}"
    if loaded.customers == 0:
        console.print(f"[yellow]warning:[/yellow] no feature snapshot between {window}: the online store "
                      f"({settings.features.online_store}) is unchanged; `cdp features build --as-of DATE` makes one")
    else:
        count = "" if loaded.customers is None else f"{loaded.customers:,} customers' "
        described = f"; the features describe customers as of {loaded.features_as_of:%Y-%m-%d %H:%M} UTC" \
            if loaded.features_as_of else ""
        console.print(f"Online store ({settings.features.online_store}) loaded {count}latest snapshots in {window}"
                      f"{described}")


@features_app.command("ui")
def features_ui(
    port: Annotated[int, typer.Option(help="Port of the Feast UI.")] = 8888,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Open Feast's own web UI on this workspace's registry (entities, views, FeatureServices)."""
    import os
    import sys

    from features.feature_store import write_feast_repository

    space, settings = _context(workspace, config)
    if not (space.feast / "registry.db").exists():
        raise _fail(f"no Feast registry in {space.feast}; run `cdp features apply` first")
    directory = write_feast_repository(space, settings.features)
    console.print(f"Feast UI on http://{host}:{port} (registry {space.feast / 'registry.db'})")
    feast = Path(sys.executable).with_name("feast")
    os.execv(str(feast), [str(feast), "-c", str(directory), "ui", "--host", host, "--port", str(port)])


@app.command()
def push(
    customer_id: Annotated[str, typer.Option("--customer-id", help="The customer the signal is about.")],
    signal: Annotated[list[str], typer.Option("--set", help="FIELD=VALUE, e.g. latest_email_consent=0 or last_order_epoch_seconds=1782000000; repeatable.")],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Push a fresh signal (consent change, order, visit, app open) straight to the online store."""
    import pandas as pd

    from features.feature_store import SENT_AS, open_feature_store, push_realtime_signals
    from serving.audit import record_consent_changes

    space, settings = _context(workspace, config)
    customer_id = customer_id.strip()  # as /events trims it
    values: dict[str, object] = {"customer_id": [customer_id]}
    for item in signal:
        field, separator, value = item.partition("=")
        if not separator or not field:
            raise _fail(f"--set {item!r}: expected FIELD=VALUE", 2)
        try:
            values[field] = [int(value)]
        except ValueError as error:
            raise _fail(f"--set {item!r}: realtime signals are whole numbers", 2) from error
    if (space.outputs / "identity_map.parquet").exists():
        from serving.engine import IdentityLookup

        identity = IdentityLookup.load(space, settings)
        survivor = identity.survivor(customer_id)  # as /events: a retired id's signals go to its survivor
        if survivor not in identity.customers:
            raise _fail(f"{customer_id!r}: {identity.why_unknown(customer_id)}; nothing was pushed")
        if survivor != customer_id:
            console.print(f"{customer_id} was merged into {survivor} by identity resolution: pushing for {survivor}")
            values[SENT_AS] = [[customer_id]]  # the push log keeps the id it was sent under
            customer_id = values["customer_id"][0] = survivor
    store = open_feature_store(space, settings.features)
    seconds = _feature_store_call(push_realtime_signals, store, pd.DataFrame(values)).seconds
    record_consent_changes(space, settings.privacy, [{k: v[0] for k, v in values.items() if k != SENT_AS}], "cdp push")
    console.print(f"Pushed {', '.join(signal)} for {customer_id} in {seconds * 1000:.0f} ms")


HorizonOption = Annotated[int | None, typer.Option(min=1, help="Default: training section of the config.")]


def _training_settings(settings: Settings, churn_horizon_days: int | None, clv_horizon_days: int | None,
                       conversion_window_days: int | None) -> Settings:
    """The config with the command line's label windows applied."""
    chosen = {k: v for k, v in {"churn_horizon_days": churn_horizon_days, "clv_horizon_days": clv_horizon_days,
                                "conversion_window_days": conversion_window_days}.items() if v is not None}
    if not chosen:
        return settings
    return settings.model_copy(update={"training": settings.training.model_copy(update=chosen)})


def _one_time(values: list[str]) -> dt.datetime:
    times = _parse_times(values)
    if len(times) > 1:
        raise _fail("--as-of takes one date here", 2)
    return times[0]


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="churn, propensity, clv or all.")] = "all",
    as_of: Annotated[list[str], typer.Option("--as-of", metavar="DATE", help="Train on what was known before this date; every label window ends by it.")] = ...,  # noqa: B008
    churn_horizon_days: HorizonOption = None,
    clv_horizon_days: HorizonOption = None,
    conversion_window_days: HorizonOption = None,
    force: Annotated[bool, typer.Option("--force", help="Make the new versions champion even if they do not beat the current ones.")] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Train LightGBM models with baselines; log them to MLflow and register them.

    Snapshots come from the data (the latest label window is the out-of-time validation set);
    features come through each model's FeatureService. A new version becomes `challenger`, and
    `champion` only if it beats the champion on the same test rows (or with --force). A model
    the data cannot support is skipped with the reason; the others still train.
    """
    space, settings = _context(workspace, config)
    settings = _training_settings(settings, churn_horizon_days, clv_horizon_days, conversion_window_days)
    reports = _train(space, settings, model, _one_time(as_of), force)
    if not any(report.status == "trained" for report in reports):
        raise _fail("no model was trained (see the reasons above)")


def _train(space: Workspace, settings: Settings, model: str, as_of: dt.datetime, force: bool) -> list:
    from training.pipeline import TASKS, train_models

    if model not in (*TASKS, "all"):
        raise _fail(f"unknown model {model!r}; choose churn, propensity, clv or all", 2)
    from features.feature_tables import FeatureInputError

    tasks = TASKS if model == "all" else (model,)
    with step_progress("train") as progress:
        steps = iter(range(1, 100))
        try:
            reports = train_models(space, settings, as_of, tasks, force,
                                   lambda message: (progress.update(next(steps), len(tasks) + 3, label="train"),
                                                    log.info("%s", message)))
        except FeatureInputError as error:  # a missing step before training (`cdp resolve`, ingest)
            raise _fail(str(error)) from error
    trained_any = any(report.status == "trained" for report in reports)
    view = Table(title=f"Models trained on data before {as_of.date()} (metrics on out-of-time test rows)"
                 if trained_any else f"No model trained on data before {as_of.date()}")
    for column in ("model", "status", "key metrics", "baselines", "registry"):
        view.add_column(column)
    for report in reports:
        if report.status != "trained":
            view.add_row(report.task, "[yellow]skipped[/yellow]", "", "", report.message)
            continue
        shown = ("roc_auc", "pr_auc", "brier", "ece") if report.task != "clv" else ("spearman", "normalized_gini", "top_decile_capture", "aggregate_error")
        key = ", ".join(f"{k} {report.metrics[k]:.3f}" for k in shown if k in report.metrics)
        primary = "spearman" if report.task == "clv" else "roc_auc"
        baselines = ", ".join(f"{name} {values[primary]:.3f}" for name, values in report.baselines.items())
        view.add_row(report.task, "trained", key, f"{primary}: {baselines}", report.message)
    console.print(view)
    for report in reports:
        if report.status == "skipped":
            console.print(f"[yellow]skipped[/yellow] {report.message}")
    console.print(f"MLflow: {space.mlruns} (open with `mlflow ui --backend-store-uri sqlite:///{space.mlruns / 'mlflow.db'}`)")
    return reports


def _win_back_counts(today: int, later: int) -> str:
    """`win-back today: 1,571`, with `(and 1,612 once a quiet period ends)` when some must wait."""
    return f"win-back today: {today:,}" + (f" (and {later:,} once a quiet period ends)" if later else "")


@app.command()
def score(
    as_of: Annotated[list[str], typer.Option("--as-of", metavar="DATE", help="Score with what is known before this date.")] = ...,  # noqa: B008
    campaign: Annotated[str | None, typer.Option("--campaign", help="Campaign id: salts the holdout (default: policy.default_campaign_id).")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output file (default: data/outputs/scores.<format>); the summary goes beside it as .json. With --engine spark: a directory of part files, or any URI the cluster writes to (s3a://...).")] = None,
    output_format: Annotated[str | None, typer.Option("--format", help="parquet or csv (default: as --out's name says, else parquet).")] = None,
    reasons: Annotated[str, typer.Option("--reasons", help="Reason phrases for: all customers, segments (those the policy acts on: a contact or a win-back), none. Exact contributions cost ~0.3-1.7 ms a customer.")] = "segments",
    engine: Annotated[str, typer.Option("--engine", help="local (chunked, this machine) or spark (config section `spark`).")] = "local",
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Score every customer with the champion models and decide with the recommendation policy:
    churn probability, CLV, conversion probability per eligible action, next best action, win-back,
    holdout, reasons. Streams in chunks to data/outputs/scores.parquet (or --out) and writes a
    summary beside it (scores.json)."""
    from features.identity.store import identity_paths

    # the options first: a mistake in them is named whatever the workspace holds
    output_format = _output_format(out, output_format, "parquet")
    if reasons not in ("all", "segments", "none"):
        raise _fail(f"--reasons must be all, segments or none, not {reasons!r}", code=2)
    if engine not in ("local", "spark"):
        raise _fail(f"--engine must be local or spark, not {engine!r}", code=2)
    campaign = None if campaign is None else _campaign_option(campaign)
    moment = _one_time(as_of)
    if engine == "spark" and out is not None and "://" not in out and Path(out).exists():
        raise _fail(f"{out} already exists: Spark writes a directory of part files there and would delete what it "
                    "holds; remove it or pick another --out", code=2)
    space, settings = _context(workspace, config)
    identity_map = identity_paths(space)["identity_map"]
    tables_elsewhere = engine == "spark" and settings.spark.feature_tables_uri  # a Spark driver may hold no lake
    if not identity_map.exists() and not tables_elsewhere:  # the first missing step, not the last (no MLflow store made)
        raise _fail(f"{identity_map} not found: no identities resolved yet; run `cdp resolve` first, then "
                    "`cdp train --as-of DATE` (it builds the features it needs), then score")
    _warn_when_after_the_data(space, moment)
    _warn_when_in_sample(space, moment)
    _score(space, settings, moment, campaign, out=out, output_format=output_format, reasons=reasons,
           engine=engine)


def _score(space: Workspace, settings: Settings, as_of: dt.datetime, campaign: str | None = None, *,
           out: str | None = None, output_format: str = "parquet", reasons: str = "segments",
           engine: str = "local") -> None:
    from features.feature_store import FeatureStoreError
    from features.feature_tables import FeatureInputError
    from serving.batch import ScoringError, score_to_file

    if out is not None and "://" not in out:  # before any work: `--out /proc/nope/x` printed a 90-line traceback
        parent = Path(out).expanduser().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _fail(f"cannot write {out}: {error.strerror or error}", code=2) from error
        if not os.access(parent, os.W_OK):
            raise _fail(f"cannot write {out}: {parent} is not writable", code=2)
    with step_progress("score") as progress, _sigterm_interrupts():  # a kill removes the partial file, as Ctrl-C does
        try:
            if engine == "spark":
                from serving.spark_scoring import score_on_spark

                summary = score_on_spark(space, settings, as_of, campaign_id=campaign, out=out,
                                         output_format=output_format, reasons=reasons)
            else:
                summary = score_to_file(space, settings, as_of, campaign, out=None if out is None else Path(out),
                                        output_format=output_format,
                                        reasons=reasons, on_progress=progress.update)
        except (ScoringError, FeatureStoreError, FeatureInputError) as error:
            raise _fail(str(error)) from error
    _print_score_summary(summary)


def _print_score_summary(summary) -> None:
    console.print(f"Scored {summary.customers:,} customers as of {summary.as_of} with "
                  + ", ".join(f"{name} v{version}" for name, version in summary.models.items())
                  + (f" in {summary.seconds:.1f} s" if getattr(summary, "seconds", 0) else ""))
    for task, reason in summary.skipped.items():
        console.print(f"[yellow]not scored[/yellow] {task}: {reason}")
    if summary.mean_churn_probability is not None:
        console.print(f"  mean churn probability {summary.mean_churn_probability:.3f} (customers with one)")
    if summary.customers_without_churn_score:
        console.print(f"  {summary.customers_without_churn_score:,} customers without a churn probability: no order "
                      "in the churn model's window (docs/models.md)")
    if summary.total_clv is not None:
        console.print(f"  total expected net revenue (CLV) {summary.total_clv:,.0f}")
    console.print("  next best action: " + ", ".join(f"{k} {v:,}" for k, v in summary.next_best_actions.items()))
    channels = getattr(summary, "next_best_channels", None)
    if channels:
        console.print("  customers per next-best channel: " + ", ".join(f"{k} {v:,}" for k, v in channels.items()))
    console.print(f"  {_win_back_counts(summary.win_back_customers, summary.win_back_later_customers)}; "
                  f"holdout: {summary.holdout_customers:,}; "
                  f"total expected incremental value {summary.total_expected_value:,.0f}")
    output = Path(summary.output) if "://" in summary.output else Path(summary.output).absolute()
    console.print(f"Written to {output} (summary: {output.with_suffix('.json')})")


@app.command()
def run(
    raw: Annotated[Path, typer.Option("--raw", "-r", help="Directory with <table>.csv or <table>.parquet files (orders alone is enough).", file_okay=False)],
    as_of: Annotated[list[str], typer.Option("--as-of", metavar="DATE", help="Train and score with what is known before this date.")] = ...,  # noqa: B008
    churn_horizon_days: HorizonOption = None,
    clv_horizon_days: HorizonOption = None,
    conversion_window_days: HorizonOption = None,
    force: Annotated[bool, typer.Option("--force", help="Promote the new models even if they do not beat the champions.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when a model was not trained (the scores then use the champions trained before), for schedulers that must tell such a run from a good one.")] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """The main job: ingest, resolve, features (build, apply, materialize), train, score. Fails (exit 1)
    when a step fails, saying which steps did not run, and when nothing is scored, e.g. no model could be
    trained and none was before; with --strict, exit 3 when a model was not trained."""
    space, settings = _context(workspace, config, creates=True)
    moment = _one_time(as_of)
    settings = _training_settings(settings, churn_horizon_days, clv_horizon_days, conversion_window_days)
    if settings.features.online_store == "redis":  # before anything changes: a running service would
        from features.online_store import redis_unreachable

        # follow the new identity map over the old online store, were materialize to fail at step 4
        problem = redis_unreachable(settings.features.redis_connection_string)
        if problem:
            raise _fail(f"the online store (redis) does not answer ({problem}); nothing was changed: bring it back, "
                        "then run again")
    with _one_run_at_a_time(space):
        _run_steps(space, settings, raw, moment, force, strict, config)


def _one_run_at_a_time(space):
    """Two overlapping `cdp run`s of one workspace (a slow night and the next cron start) would train
    and register the same models twice and each rebuild what the other reads: the second waits."""
    from cdp.locks import exclusive_lock

    return exclusive_lock(space.data / ".run.lock", when_waiting=lambda: console.print(
        "[yellow]another `cdp run` of this workspace is running: waiting for it to finish[/yellow]"))


def _run_steps(space, settings, raw, moment, force: bool, strict: bool, config) -> None:
    steps = ["ingest", "resolve identities", "features", "online store", "train", "score"]
    current = [0]  # the step running

    def step(name: str) -> None:
        current[0] = steps.index(name)
        console.rule(f"{current[0] + 1}/{len(steps)} {name}")

    reports: list = []
    try:
        step("ingest")
        ingest(raw=raw, workspace=space.root, config=config)
        step("resolve identities")
        resolve(workspace=space.root, config=config)
        step("features")
        features_build(as_of=[moment.isoformat()], workspace=space.root, config=config)
        features_apply(workspace=space.root, config=config)
        step("online store")
        features_materialize(end=moment, workspace=space.root, config=config)
        step("train")
        reports = _train(space, settings, "all", moment, force)
        step("score")
        if not any(r.status == "trained" for r in reports) and not (space.mlruns / "mlflow.db").exists():
            # a failure, as for `cdp train` and `cdp score`: a scheduled run must not pass with no scores
            raise _fail("no model could be trained, so nothing is scored (the reasons are above)")
        _score(space, settings, moment)
    except (typer.Exit, Exception, KeyboardInterrupt) as error:
        if not isinstance(error, typer.Exit) or error.exit_code:
            _say_where_the_run_stopped(space, steps, current[0])
        raise
    skipped = [r.task for r in reports if r.status != "trained"]
    if skipped:
        message = (f"cdp run finished, but {', '.join(skipped)} {'was' if len(skipped) == 1 else 'were'} not trained "
                   "(the reasons are above): the scores use the champion(s) trained before")
        if strict:
            raise _fail(f"{message} (--strict)", 3)
        console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def _say_where_the_run_stopped(space, steps: list[str], failed_step: int) -> None:
    """One line for a scheduler's log: the step that failed, those that did not run, and the scores
    still in place (whose as-of they hold)."""
    import json as json_module

    failed, not_run = steps[failed_step], steps[failed_step + 1:]
    summary = space.outputs / "scores.json"
    try:
        scored = json_module.loads(summary.read_text()) if summary.exists() else None
    except (OSError, ValueError):
        scored = None
    # this workspace's file, not the path the summary was written with (a copied workspace names the original)
    kept = (f"the last scores ({space.latest_scores}, as of {scored.get('as_of')}) are unchanged" if scored
            else "there are no scores yet")
    console.print(f"[red]cdp run stopped at step {failed_step + 1}/{len(steps)} ({failed})[/red]"
                  + (f"; not run: {', '.join(not_run)}" if not_run else "") + f"; {escape(kept)}",
                  emoji=False, soft_wrap=True)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 for every interface.")] = "127.0.0.1",
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Start the BentoML recommendation service on the workspace's champion models and online store.

    POST /recommend, POST /events, POST /admin/reload (bearer token from serving.api_token);
    GET /healthz, /readyz, /docs.
    """
    import os
    import sys

    space, settings = _context(workspace, config)
    if not settings.serving.api_token:
        console.print("[yellow]warning:[/yellow] serving.api_token is not set (CDP_SERVING__API_TOKEN): "
                      "every protected endpoint will answer 401")
    environment = {**os.environ, "CDP_WORKSPACE": str(space.root)}
    if config is not None:
        environment["CDP_CONFIG_FILE"] = str(config.resolve())
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:RecommendationService",
               "--port", str(port), "--host", host]
    console.print(f"Serving {space.root} on http://{host}:{port} (docs at /docs)")
    os.execve(sys.executable, command, environment)


SubjectEmail = Annotated[str | None, typer.Option("--email", help="The person's e-mail (any spelling; standardized).")]
SubjectCustomer = Annotated[str | None, typer.Option("--customer-id", help="Our customer id, e.g. C000000042.")]
SubjectSource = Annotated[str | None, typer.Option("--source", help="A source system (with --source-id).")]
SubjectSourceId = Annotated[str | None, typer.Option("--source-id", help="The person's id in that system.")]


def _subject_query(email: str | None, customer_id: str | None, source: str | None, source_id: str | None):
    from features.erasure import SubjectQuery

    try:
        return SubjectQuery(email=email, customer_id=customer_id, source=source, source_id=source_id)
    except ValueError as error:
        raise _fail(str(error), 2) from error


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler's timeout), raised like Ctrl-C so that a command can put its stop on record."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises `Terminated` inside the block: by default it ends the process on the spot, leaving an
    erasure's audit trail at "started"."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return

    def interrupt(signal_number, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def forget(
    email: SubjectEmail = None,
    customer_id: SubjectCustomer = None,
    source: SubjectSource = None,
    source_id: SubjectSourceId = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show whom and what would be erased (each record and how it was joined); change nothing.")] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Erase a person from every store (lake, quarantine, identity, features, online store, scores,
    exports, reports) and suppress their identifiers so re-ingesting old files does not bring them back.

    The person is found through the identity map: an e-mail reaches all of their records. Exit code 1
    and nothing changed when nobody matches. See docs/privacy.md."""
    from features.erasure import ErasureError, SubjectNotFoundError, audit_pseudonym
    from features.erasure import forget as forget_subject
    from serving.audit import audit_log_for, now_iso, record_request
    from serving.batch import recount_score_summary

    query = _subject_query(email, customer_id, source, source_id)
    space, settings = _context(workspace, config)
    if dry_run:
        _preview_erasure(space, settings, query)
        return

    started: dict = {}  # the "started" line's person and request id, for the line that ends it

    def record(subject, details: dict) -> None:
        """An erasure line, naming a customer by the pseudonym of their id, a person held outside the
        identity map by that of their record or e-mail (`audit_pseudonym`), and nobody when none was found."""
        if subject is not None and subject.customer_id is None:
            audit_log_for(space, settings.privacy, requests=True).append([{
                "time": now_iso(), "event": "erasure", "subject": audit_pseudonym(space, settings, subject),
                "unresolved": True, **details}])
        else:
            record_request(space, settings.privacy, "erasure", subject.customer_id if subject else None, details)

    def record_start(subject, request_id: str) -> None:  # on record before anything changes
        record(subject, {"request_id": request_id, "outcome": "started", "records": len(subject.records)})
        started.update(subject=subject, request_id=request_id)

    def record_end(outcome: str, why: str) -> None:
        """A failed or interrupted erasure, tied to its "started" line (same request id and pseudonym; none
        when it stopped before starting). A log that cannot be written does not hide why it stopped."""
        try:
            record(started.get("subject"), {**({"request_id": started["request_id"]} if started else {}),
                                            "outcome": outcome, "why": why})
        except OSError as error:
            log.error("audit log %s could not be written: %s", settings.privacy.requests_log, error)

    try:
        with _sigterm_interrupts():
            subject, report = forget_subject(space, settings, query, on_start=record_start)
    except SubjectNotFoundError as error:
        record_request(space, settings.privacy, "erasure", None, {"outcome": "refused", "why": error.outcome})
        raise _fail(f"{error}; nothing was changed") from error
    except ErasureError as error:
        record_end("failed", "a store could not be cleaned or is not the one loaded")
        raise _fail(str(error)) from error
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM: on record as such, then stop as asked
        record_end("interrupted", "SIGTERM" if isinstance(error, Terminated) else "KeyboardInterrupt")
        if started:
            console.print("[yellow]interrupted:[/yellow] the erasure is not finished; run the same command again "
                          "to finish it")
        raise
    except Exception as error:  # on record too, then as it came (the traceback says where)
        record_end("failed", type(error).__name__)
        raise
    record(subject, {"request_id": report.request_id, "outcome": "done", "records": report.records,
                     "rows_removed": sum(report.rows_removed.values()),
                     "values_blanked": sum(report.values_blanked.values()),
                     "suppression_entries_added": report.suppression_entries_added,
                     "abandoned_files_removed": report.abandoned_files_removed})
    for name, count in report.rows_removed.items():  # the scoring summaries count what the files hold
        try:
            if count:
                recount_score_summary(space.root / name)
        except Exception as error:  # the erasure is done and audited: a stale count is only reported
            log.warning("%s: its summary's counts could not be updated (%s); `cdp score` writes them again",
                        name, type(error).__name__)
    _print_row_counts(f"Erased {subject.described} ({report.records} record"
                      f"{'' if report.records == 1 else 's'})", "store",
                      {name: count for name, count in report.rows_removed.items() if count})
    if any(report.values_blanked.values()):  # their e-mail or phone in another customer's custom column
        _print_row_counts("Values naming them blanked in other customers' rows (the rows kept)", "store",
                          {name: count for name, count in report.values_blanked.items() if count})
    abandoned = (f"; temporary files of interrupted runs deleted: {report.abandoned_files_removed}"
                 if report.abandoned_files_removed else "")
    console.print(f"Suppression entries added: {report.suppression_entries_added}; identifiers shared with "
                  f"other customers kept for them: {report.shared_identifiers_kept}; reports scrubbed: "
                  f"{len(report.files_scrubbed)}{abandoned}. A running service answers the person as unknown "
                  "from its next request.")


def _preview_erasure(space, settings, query) -> None:
    """`cdp forget --dry-run`: who would be erased, record by record and how each was joined, so that a
    customer that merged two people can be seen before anyone is erased. Changes nothing."""
    import pandas as pd

    from features.erasure import SubjectNotFoundError, find_subject
    from features.identity.store import identity_paths

    try:
        subject = find_subject(space, settings, query)
    except SubjectNotFoundError as error:
        raise _fail(str(error)) from error
    if subject.customer_id is None:  # held only in quarantine (and activity under their records)
        from features.erasure import preview_held_erasure

        answer_console.print(f"Would erase a person who is not a customer (held outside the identity map): "
                             f"{len(subject.records)} record(s), {len(subject.order_ids):,} order(s); would suppress "
                             f"{len(subject.emails)} e-mail(s) and {len(subject.phones)} phone(s) (shared with "
                             f"others, kept: {subject.shared_identifiers}). Rows that would be removed:")
        for name, count in preview_held_erasure(space, settings, subject).items():
            answer_console.print(f"  {escape(name)}: {count:,}", emoji=False)
        answer_console.print("Nothing was changed (--dry-run).")
        return
    paths = identity_paths(space)
    identity_map = pd.read_parquet(paths["identity_map"])
    records = identity_map[identity_map["customer_id"] == subject.customer_id]
    weakest = pd.Series(dtype=float)
    if paths["profiles"].exists():
        profile = pd.read_parquet(paths["profiles"], columns=["customer_id", "min_match_probability"])
        weakest = profile.loc[profile["customer_id"] == subject.customer_id, "min_match_probability"]
    answer_console.print(f"Would erase customer {subject.customer_id}: {len(records)} record(s), "
                         f"{len(subject.order_ids):,} order(s); would suppress {len(subject.emails)} e-mail(s) and "
                         f"{len(subject.phones)} phone(s) (shared with other customers, kept: "
                         f"{subject.shared_identifiers}); former ids: {', '.join(subject.former_ids) or 'none'}")
    for record in records.itertuples():
        answer_console.print(f"  {escape(record.source)}:{escape(str(record.source_id))}  {escape(record.matched_by)} "
                             f"(p={record.match_probability:.4f})", emoji=False)
    mapped = set(zip(records["source"].astype(str), records["source_id"].astype(str), strict=True))
    for source, source_id in sorted(set(subject.records) - mapped):
        answer_console.print(f"  {escape(source)}:{escape(source_id)}  quarantined record naming their e-mail or a "
                             "record of theirs", emoji=False)
    if subject.linked_ids:
        answer_console.print(f"With customer(s) {', '.join(subject.linked_ids)}, known only from those quarantined "
                             "records (their activity): erased with them.")
    if len(weakest) and weakest.iloc[0] < 1.0:
        answer_console.print(f"Records joined by a probabilistic match (weakest link p={weakest.iloc[0]:.4f}): check "
                             f"they are one person (`cdp identity explain {subject.customer_id}`) before erasing; "
                             "a record that is someone else's is erased and suppressed with them.")
    answer_console.print("Nothing was changed (--dry-run).")


@app.command("export-subject")
def export_subject_command(
    email: SubjectEmail = None,
    customer_id: SubjectCustomer = None,
    source: SubjectSource = None,
    source_id: SubjectSourceId = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON file to write (default: standard output).", dir_okay=False)] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Everything held about a person as JSON (access request): profile, source records, identity
    links with match reasons, latest features, scores and the recommendations served."""
    from features.erasure import SubjectNotFoundError, export_subject, write_json
    from serving.audit import (
        audit_log_for,
        now_iso,
        read_entries,
        record_request,
        subject_pseudonym,
    )

    query = _subject_query(email, customer_id, source, source_id)
    space, settings = _context(workspace, config)

    def served(customer: str) -> list[dict]:
        pseudonym = subject_pseudonym(space, settings.privacy, customer)
        return list(read_entries(space, settings.privacy, pseudonym)) if pseudonym else []

    try:
        document = export_subject(space, settings, query, served,
                                  lambda pseudonym: list(read_entries(space, settings.privacy, pseudonym)))
    except SubjectNotFoundError as error:
        record_request(space, settings.privacy, "access", None, {"outcome": "refused", "why": error.outcome})
        raise _fail(str(error)) from error
    if document["customer_id"] is None:  # held outside the identity map: named by their record's pseudonym
        audit_log_for(space, settings.privacy, requests=True).append([{
            "time": now_iso(), "event": "access", "subject": document["audit_subject"], "unresolved": True,
            "outcome": "done", "records": sum(len(rows) for rows in document["quarantined_records"].values())}])
    else:
        record_request(space, settings.privacy, "access", document["customer_id"],
                       {"outcome": "done", "records": len(document["identity"].get("records", []))})
    if out is None:
        print(json.dumps(document, indent=2, default=str, ensure_ascii=False))
    else:
        write_json(out, document, mode=0o600)  # a whole profile: readable by its owner only
        console.print(f"Wrote everything held about {document['customer_id'] or 'the person'} to {out}")


@app.command()
def status(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """What the workspace holds now: customers, champion models and their test metrics, the online
    store's age, the last scoring run, and where to look next."""
    import json as json_module

    import pyarrow.parquet as pq

    from features.feature_store import online_freshness, probe_online_store, read_materialization
    from training.model_report import (
        challenger_note,
        champion_and_challenger,
        read_model_versions,
        read_runs,
    )

    space, settings = _context(workspace, config)
    console.rule(f"workspace {space.root}")
    profiles = space.outputs / "profiles.parquet"
    if profiles.exists():
        console.print(f"customers (golden profiles): {pq.ParquetFile(profiles).metadata.num_rows:,}")
    else:
        console.print("[yellow]no identities resolved yet[/yellow]: run `cdp ingest` and `cdp resolve`")
    if (space.mlruns / "mlflow.db").exists():
        models = champion_and_challenger(read_model_versions(space), read_runs(space))
        is_champion = models["alias"] == "champion"
        champion_of = dict(zip(models.loc[is_champion, "model"], models.loc[is_champion, "version"], strict=True))
        # a first version holds both aliases: it is the champion, nothing to add
        models = models[is_champion | (models["version"] != models["model"].map(champion_of))]
        for row in models.itertuples():
            value = f"{row.test_value:.4f}" if row.test_value is not None and row.test_value == row.test_value else "n/a"
            why = (escape(challenger_note(row.promotion, row.promoted, champion_of.get(row.model)))
                   if row.alias == "challenger" else "")
            console.print(f"model {row.model}@{row.alias}: v{row.version}, test {row.primary_metric} {value}{why}",
                          emoji=False)
        if (models["alias"] == "challenger").any():
            console.print("  (each version's test figure is on its own run's test rows; the promotion compared "
                          "challenger and champion on the same rows)")
    else:
        console.print("[yellow]no models yet[/yellow]: run `cdp train all --as-of DATE`")
    probe = "not loaded"
    if profiles.exists() and (space.feast / "registry.db").exists():
        sample = pq.read_table(profiles, columns=["customer_id"]).column(0).to_pylist()[:20]
        probe = probe_online_store(space, settings.features, sample)
    freshness = online_freshness(space, settings.features, warn=False)
    loaded_into = read_materialization(space).get("online_store")
    if loaded_into and loaded_into != settings.features.online_store:
        console.print(f"[yellow]this configuration names the {settings.features.online_store} online store, but the "
                      f"workspace was last materialized into {loaded_into}[/yellow] (data/feast/materialized.json): "
                      f"the lines below describe {settings.features.online_store} with that record's dates; set "
                      f"CDP_FEATURES__ONLINE_STORE={loaded_into} to look at the store the service uses")
    if probe.startswith(("unreadable", "holds 0 ")):  # what it answers now matters more than when it was loaded
        console.print(f"online store ({settings.features.online_store}): [yellow]not serving[/yellow]: {escape(probe)}; "
                      "run `cdp features materialize` (or bring Redis back) — its record says: "
                      f"{escape(freshness.message)}")
    else:
        console.print(f"online store ({settings.features.online_store}): {escape(freshness.message)}; {probe}")
    summary = space.outputs / "scores.json"
    if summary.exists():
        scored = json_module.loads(summary.read_text())
        win_back = _win_back_counts(scored["win_back_customers"], scored.get("win_back_later_customers", 0))
        console.print(f"last scoring: {scored['customers']:,} customers as of {scored['as_of']}; {win_back}; "
                      f"holdout {scored['holdout_customers']:,}; "
                      f"total expected incremental value {scored['total_expected_value']:,.0f}")
        console.print("  next best action: " + ", ".join(f"{k} {v:,}" for k, v in scored["next_best_actions"].items()))
    else:
        console.print("[yellow]not scored yet[/yellow]: run `cdp score --as-of DATE`")


@app.command()
def contract(
    table: Annotated[str | None, typer.Argument(help="One table; default: all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the data contract: tables, columns, types, required columns and primary keys."""
    from features.contract import CONTRACTS

    if table is not None and table not in CONTRACTS:
        raise _fail(f"unknown table {table!r}; tables: {', '.join(CONTRACTS)}", 2)
    chosen = [CONTRACTS[table]] if table else list(CONTRACTS.values())
    if as_json:
        payload = {
            c.name: {
                "primary_key": list(c.primary_key),
                "columns": {
                    col.name: {"type": col.kind, "required": col.required, "pii": col.pii,
                               **({"allowed": sorted(col.allowed)} if col.allowed else {}),
                               **({"spellings": dict(col.spellings)} if col.spellings else {}),
                               **({"header_aliases": list(col.aliases)} if col.aliases else {})}
                    for col in c.columns
                },
                "custom_columns": c.allows_custom_columns,
            }
            for c in chosen
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    for c in chosen:
        view = Table(title=f"{c.name} (key: {', '.join(c.primary_key)}) — {c.description}", title_justify="left")
        for column in ("column", "type", "required", "PII", "rule"):
            view.add_column(column)
        for col in c.columns:
            rule = []
            if col.allowed:
                rule.append("one of " + ", ".join(sorted(col.allowed)))
            if col.spellings:
                rule.append(f"{len(col.spellings)} spellings read as a value, ignoring case, spaces, _ - . "
                            "(e.g. E-Mail as email; `--json` lists them)")
            if col.aliases:
                rule.append("header also read from: " + ", ".join(col.aliases))
            if col.minimum is not None:
                rule.append(f">= {col.minimum:g}")
            if col.maximum is not None:
                rule.append(f"<= {col.maximum:g}")
            view.add_row(col.name, col.kind, "yes" if col.required else "", "yes" if col.pii else "",
                         "; ".join(rule) or col.description)
        console.print(view)


@app.command("config")
def show_config(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults, YAML file and CDP_* overrides applied)."""
    from cdp.config import settings_for_display

    space, settings = _context(workspace, config, creates=True)
    if workspace is not None and not space.root.is_dir():  # a mistyped path must not read as "no overrides"
        console.print(f"[yellow]warning:[/yellow] workspace {escape(str(space.root))} does not exist: the defaults "
                      "and CDP_* overrides only", soft_wrap=True)
    typer.echo(json.dumps(settings_for_display(settings), indent=2))


if __name__ == "__main__":
    app()
