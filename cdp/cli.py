"""The `cdp` command line: parses options, loads the config, calls one stage, prints a summary.

Stages are imported inside their commands so `cdp --help` stays fast and importing this module
does nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdp.config import ConfigError, Settings, find_config_file, load_settings
from cdp.console import configure_logging, console, step_progress
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


def _context(workspace: Path | None, config: Path | None) -> tuple[Workspace, Settings]:
    space = Workspace.at(workspace)
    try:
        settings = load_settings(find_config_file(space.root, config))
    except ConfigError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    return space, settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the raw tables and truth/ into.", file_okay=False)],
    customers: Annotated[int | None, typer.Option(help="Number of people. Default: simulation.customers (20,000).", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed gives the same files.")] = None,
    start: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First simulated day.")] = None,
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last simulated day (inclusive).")] = None,
    file_format: Annotated[str | None, typer.Option("--format", help="parquet or csv.")] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Simulate a retailer's customer data (every contract table) with ground truth in OUT/truth/."""
    from features.simulator import SimulationParameters, simulate_to_directory

    _, settings = _context(workspace, config)
    defaults = settings.simulation
    chosen_format = file_format or defaults.format
    if chosen_format not in ("parquet", "csv"):
        raise _fail(f"--format must be parquet or csv, not {chosen_format!r}", 2)
    parameters = SimulationParameters(
        customers=customers or defaults.customers,
        seed=defaults.seed if seed is None else seed,
        start=start.date() if start else defaults.start,
        end=end.date() if end else defaults.end,
    )
    if parameters.end <= parameters.start:
        raise _fail(f"--end ({parameters.end}) must be after --start ({parameters.start})", 2)
    with step_progress("simulate (days)") as progress:
        rows = simulate_to_directory(
            parameters, out, chosen_format, lambda done, total: progress.update(done, total)
        )
    table = Table(title=f"Simulated {parameters.customers:,} people, {parameters.start} .. {parameters.end}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"Raw tables in {out}; ground truth in {out / 'truth'}")


@app.command()
def ingest(
    raw: Annotated[Path, typer.Option("--raw", "-r", help="Directory with <table>.csv or <table>.parquet files.", file_okay=False)],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate raw tables against the data contract and load them into the workspace's lake.

    Rows that fail go to data/quarantine/<table>.parquet with file, row, column and reason;
    invalid optional PII values are nulled (originals kept in <table>.nulled.parquet).
    Re-ingesting a file replaces rows with the same primary key. Exit code 1 if a table failed.
    """
    from features.ingest import TableFileError, ingest_directory

    space, settings = _context(workspace, config)
    with step_progress("ingest") as progress:
        try:
            report = ingest_directory(
                raw, space, settings.ingest,
                lambda table, done, total: progress.update(done, total, label=f"ingest {table}"),
            )
        except TableFileError as error:
            raise _fail(str(error)) from error
    summary = Table(title=f"Ingested {raw} into {space.lake}")
    for column in ("table", "read", "loaded", "quarantined", "PII nulled", "lake rows", "status"):
        summary.add_column(column, justify="left" if column in ("table", "status") else "right")
    for t in report.tables:
        status = "ok" if t.status == "ok" else f"[red]failed[/red]: {t.error}"
        summary.add_row(t.table, f"{t.read:,}", f"{t.loaded:,}", f"{t.quarantined:,}",
                        f"{sum(t.nulled_values.values()):,}", f"{t.lake_rows:,}", status)
    console.print(summary)
    for t in report.tables:
        for reason, count in list(t.quarantined_by_reason.items())[:5]:
            console.print(f"  {t.table}: {count:,} quarantined: {reason}")
    console.print(f"Report: {space.reports / 'ingest.json'}; quarantine: {space.quarantine}")
    if report.failed:
        raise typer.Exit(1)


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
                               **({"allowed": sorted(col.allowed)} if col.allowed else {})}
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
    _, settings = _context(workspace, config)
    shown = settings.model_dump(mode="json")
    if shown["serving"]["api_token"]:
        shown["serving"]["api_token"] = "***"  # a secret: say it is set, never print it
    typer.echo(json.dumps(shown, indent=2))


if __name__ == "__main__":
    app()
