"""The thin I/O layer: run the simulation and stream every table to disk, plus truth/.

Rows are buffered for ~30 simulated days and then appended to one Parquet (or CSV)
writer per table, so memory stays flat however many people are simulated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import CONTRACTS
from features.simulator import tables
from features.simulator.engine import DailySimulation
from features.simulator.identity import (
    build_customers_table,
    build_links_table,
    build_source_ids,
    customers_schema,
    format_person_ids,
)
from features.simulator.parameters import SimulationParameters
from features.simulator.population import (
    NEVER,
    RESPONSIVENESS_SEGMENTS,
    SYSTEMS,
    Population,
    build_population,
)

FLUSH_EVERY_DAYS = 30
TRUTH_DIRECTORY = "truth"
FORMAT_VERSION = 1


class TableSink:
    """Appends Arrow tables to one Parquet or CSV file."""

    def __init__(
        self, path: Path, schema: pa.Schema, file_format: Literal["parquet", "csv"]
    ) -> None:
        self.file_format = file_format
        self.rows = 0
        if file_format == "parquet":
            self.writer: pq.ParquetWriter | pacsv.CSVWriter = pq.ParquetWriter(
                path, schema, compression="snappy"
            )
        else:
            csv_schema = tables.to_csv_ready(schema.empty_table()).schema
            self.writer = pacsv.CSVWriter(path, csv_schema)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        self.writer.write_table(
            table if self.file_format == "parquet" else tables.to_csv_ready(table)
        )

    def close(self) -> None:
        self.writer.close()


def record_lookup(population: Population, source_ids: pa.Array) -> tables.RecordLookup:
    systems = pa.array(list(SYSTEMS), type=pa.string())
    return tables.RecordLookup(
        source=systems.take(pa.array(population.record_system.astype(np.int64))),
        source_id=source_ids,
    )


def write_buffered_rows(
    simulation: DailySimulation, sinks: dict[str, TableSink], lookup: tables.RecordLookup
) -> None:
    for table, columns in simulation.rows.take().items():
        if table == "touches":
            sinks[table].write(tables.touches_table(columns, lookup, simulation.campaign_ids))
        else:
            sinks[table].write(tables.TABLE_BUILDERS[table](columns, lookup))


def simulate_to_directory(
    parameters: SimulationParameters,
    out_dir: Path,
    file_format: Literal["parquet", "csv"] = "parquet",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Writes out_dir/<table>.<ext> for all 8 contract tables plus out_dir/truth/.

    Returns rows written per table. progress(done_days, total_days) is called as the
    simulation advances.
    """
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"file_format must be 'parquet' or 'csv', not {file_format!r}")
    out_dir = Path(out_dir)
    truth_dir = out_dir / TRUTH_DIRECTORY
    truth_dir.mkdir(parents=True, exist_ok=True)
    extension = "parquet" if file_format == "parquet" else "csv"

    population = build_population(parameters)
    source_ids = build_source_ids(population, parameters)
    lookup = record_lookup(population, source_ids)
    schemas = {name: tables.contract_schema(name) for name in CONTRACTS}
    schemas["customers"] = customers_schema()
    sinks = {
        name: TableSink(out_dir / f"{name}.{extension}", schemas[name], file_format)
        for name in CONTRACTS
    }
    try:
        sinks["customers"].write(build_customers_table(population, parameters, source_ids))
        sinks["links"].write(build_links_table(population, parameters, source_ids))
        simulation = DailySimulation(parameters, population, emit=True)
        total_days = parameters.day_count
        for day in range(total_days):
            simulation.simulate_day()
            if (day + 1) % FLUSH_EVERY_DAYS == 0 or day + 1 == total_days:
                write_buffered_rows(simulation, sinks, lookup)
            if progress is not None:
                progress(day + 1, total_days)
        if total_days == 0:  # pragma: no cover - parameters forbid it
            write_buffered_rows(simulation, sinks, lookup)
    finally:
        for sink in sinks.values():
            sink.close()
    counts = {name: sink.rows for name, sink in sinks.items()}
    write_truth(truth_dir, parameters, population, lookup, simulation, counts)
    return counts


def people_truth_table(
    parameters: SimulationParameters, population: Population, death_day: np.ndarray
) -> pa.Table:
    """Latent traits of every person, with the realised dropout date (null if still alive)."""
    start = np.datetime64(parameters.start, "D")
    n = population.person_count
    died = death_day != NEVER
    responsiveness = population.responsiveness
    return pa.table(
        {
            "person_id": format_person_ids(np.arange(n)),
            "household_id": format_person_ids(population.household, prefix="H"),
            "join_date": pa.array(start + population.join_day, type=pa.date32()),
            "alive_at_start": pa.array(
                np.where(population.join_day < 0, population.alive_at_start, True)
            ),
            "dropout_date": pa.array(
                start + np.where(died, death_day, 0), type=pa.date32(), mask=~died
            ),
            "purchase_rate": population.purchase_rate,
            "mean_order_value": np.exp(
                population.value_log_mean + 0.5 * parameters.order_value_within_sigma**2
            ),
            "value_log_mean": population.value_log_mean,
            "value_log_sigma": np.full(n, parameters.order_value_within_sigma),
            "return_propensity": population.return_propensity,
            "serial_returner": population.serial_returner,
            "discount_sensitivity": population.discount_sensitivity,
            "base_hazard": population.base_hazard,
            "responsiveness_email": responsiveness[:, 0],
            "responsiveness_push": responsiveness[:, 1],
            "responsiveness_sms": responsiveness[:, 2],
            "responsiveness_segment": pa.array(
                np.asarray(RESPONSIVENESS_SEGMENTS)[population.responsiveness_segment]
            ),
            "service_propensity": population.service_propensity,
            "engagement": population.engagement,
        }
    )


def record_person_table(population: Population, lookup: tables.RecordLookup) -> pa.Table:
    return pa.table(
        {
            "source": lookup.source,
            "source_id": lookup.source_id,
            "person_id": format_person_ids(population.record_person),
            "household_id": format_person_ids(
                population.household[population.record_person], prefix="H"
            ),
        }
    )


def write_truth(
    truth_dir: Path,
    parameters: SimulationParameters,
    population: Population,
    lookup: tables.RecordLookup,
    simulation: DailySimulation,
    counts: dict[str, int],
) -> None:
    pq.write_table(record_person_table(population, lookup), truth_dir / "record_person.parquet")
    pq.write_table(
        people_truth_table(parameters, population, simulation.death_day),
        truth_dir / "people.parquet",
    )
    document = {
        "format_version": FORMAT_VERSION,
        "generator": "features.simulator",
        "parameters": parameters.to_json_dict(),
        "rows": counts,
    }
    (truth_dir / "simulation.json").write_text(
        json.dumps(document, indent=2, sort_keys=True) + "\n"
    )
