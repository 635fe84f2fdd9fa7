"""Where a workspace keeps its state: every command reads and writes only below its root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: Path | str | None = None) -> Workspace:
        return cls(Path(root).expanduser().resolve() if root is not None else REPOSITORY_ROOT)

    @property
    def started(self) -> bool:
        """Whether the folder is a workspace: something of ours is in it — the lake the first `cdp ingest`
        (or `cdp run`) made, identity outputs, feature tables, the Feast folder (a Spark driver may hold
        only that and `mlruns/`), or its own `cdp.yaml`. Any other folder (an empty one, /tmp, a home
        directory, where MLflow may have made an `mlruns/` of its own) is not one: the commands that read
        a workspace refuse it rather than write their files into it."""
        from cdp.config import CONFIG_FILE_NAME

        ours = (self.lake, self.outputs, self.data / "features", self.feast)
        return any(path.is_dir() for path in ours) or (self.root / CONFIG_FILE_NAME).is_file()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def lake(self) -> Path:
        """Validated, typed Parquet tables, one file per contract table."""
        return self.data / "lake"

    @property
    def quarantine(self) -> Path:
        """Rows that failed the contract, with file, row, column and reason."""
        return self.data / "quarantine"

    @property
    def reports(self) -> Path:
        return self.data / "reports"

    @property
    def outputs(self) -> Path:
        return self.data / "outputs"

    @property
    def feast(self) -> Path:
        """Feast registry and the embedded online store."""
        return self.data / "feast"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def latest_scores(self) -> Path:
        """The scores file the last `cdp score` without --out wrote: data/outputs/scores.csv when the
        summary both share (scores.json) names it, else scores.parquet. Segments, drift and lift read
        this one, so they never pair one run's file with another run's summary."""
        import json

        try:
            named = Path(str(json.loads((self.outputs / "scores.json").read_text()).get("output", ""))).name
        except (OSError, ValueError, AttributeError):
            named = ""
        return self.outputs / ("scores.csv" if named == "scores.csv" else "scores.parquet")

    def lake_table(self, table: str) -> Path:
        return self.lake / f"{table}.parquet"
