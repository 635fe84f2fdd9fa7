"""Reading identity inputs from the lake and writing the identity outputs: the I/O edge."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from cdp.config import IdentitySettings
from cdp.files import temporary_beside, write_json
from cdp.workspace import Workspace
from features.contract import CONTRACTS, CUSTOMERS
from features.identity.resolution import Progress, Resolution, resolve_identities

REFERENCING_TABLES = ("orders", "events", "touches", "consents", "tickets")
LINEAGE_PREFIX = "_"


class IdentityInputError(ValueError):
    """Nothing to resolve, or an input the resolver cannot use; the message says which."""


def identity_paths(workspace: Workspace) -> dict[str, Path]:
    outputs = workspace.outputs
    return {
        "identity_map": outputs / "identity_map.parquet",
        "profiles": outputs / "profiles.parquet",
        "edges": outputs / "identity_edges.parquet",
        "model": outputs / "identity_model.json",
        "state": outputs / "identity_state.json",
        "report": workspace.reports / "identity.json",
    }


def load_identity_records(workspace: Workspace) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Customers rows plus every (source, source_id) referenced elsewhere without one."""
    frames = []
    custom: tuple[str, ...] = ()
    customers_file = workspace.lake_table("customers")
    if customers_file.exists():
        customers = pd.read_parquet(customers_file)
        customers = customers[[c for c in customers.columns if not c.startswith(LINEAGE_PREFIX)]]
        custom = tuple(c for c in customers.columns if c not in CUSTOMERS.column_names)
        frames.append(customers)
    referenced = [workspace.lake_table(t) for t in REFERENCING_TABLES if workspace.lake_table(t).exists()]
    if referenced:
        union = " UNION ".join(
            f"SELECT DISTINCT source, source_id FROM read_parquet('{path}')" for path in referenced
        )
        references = duckdb.sql(union).df()
        if frames:
            known = frames[0][["source", "source_id"]]
            references = references.merge(known, on=["source", "source_id"], how="left", indicator=True)
            references = references[references["_merge"] == "left_only"].drop(columns="_merge")
        frames.append(references)
    if not frames:
        raise IdentityInputError(
            f"{workspace.lake}: no customers or customer references to resolve; run `cdp ingest` first"
        )
    records = pd.concat(frames, ignore_index=True)
    for column in CONTRACTS["customers"].column_names:
        if column not in records:
            records[column] = None
    return records, custom


def load_links(workspace: Workspace) -> pd.DataFrame | None:
    path = workspace.lake_table("links")
    return pd.read_parquet(path, columns=["source_a", "id_a", "source_b", "id_b"]) if path.exists() else None


def load_labelled_pairs(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise IdentityInputError(f"{path}: labelled pairs file not found (config identity.labelled_pairs)")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    missing = {"source_a", "id_a", "source_b", "id_b", "is_match"} - set(frame.columns)
    if missing:
        raise IdentityInputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    frame["is_match"] = frame["is_match"].astype(str).str.lower().isin(["1", "true", "yes"])
    return frame


def read_identity_state(workspace: Workspace) -> dict:
    """What one resolution hands the next: the next id number, and each id retired by a merge with
    the customer it went to (`merged_into`), and those whose customer split since
    (`merged_then_split`); a workspace never resolved has none."""
    path = identity_paths(workspace)["state"]
    state = json.loads(path.read_text()) if path.exists() else {}
    return {"next_sequence": 1, "merged_into": {}, "merged_then_split": {}, **state}


def run_identity_resolution(
    workspace: Workspace, settings: IdentitySettings, progress: Progress | None = None
) -> Resolution:
    records, custom = load_identity_records(workspace)
    paths = identity_paths(workspace)
    previous = pd.read_parquet(paths["identity_map"]) if paths["identity_map"].exists() else None
    state = read_identity_state(workspace)
    labelled = load_labelled_pairs(settings.labelled_pairs) if settings.labelled_pairs else None
    resolution = resolve_identities(
        records, load_links(workspace), settings, previous, state["next_sequence"], labelled, custom, progress,
        merged_before=state["merged_into"], merged_then_split_before=state["merged_then_split"],
    )
    write_resolution(workspace, resolution)
    return resolution


def write_resolution(workspace: Workspace, resolution: Resolution) -> None:
    paths = identity_paths(workspace)
    workspace.outputs.mkdir(parents=True, exist_ok=True)
    workspace.reports.mkdir(parents=True, exist_ok=True)
    for name in ("identity_map", "profiles", "edges"):
        frame = getattr(resolution, name)
        temporary = temporary_beside(paths[name])
        frame.to_parquet(temporary, index=False)
        temporary.replace(paths[name])
    paths["model"].write_text(json.dumps(resolution.model.as_dict(), indent=2))
    # readers (the service, explain) never see half a state file
    write_json(paths["state"], {"next_sequence": resolution.next_sequence, "merged_into": resolution.merged_into,
                                "merged_then_split": resolution.merged_then_split})
    paths["report"].write_text(json.dumps(resolution.report, indent=2, default=str))
