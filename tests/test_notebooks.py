"""The notebooks run end to end on the small simulated retailer (so they never rot), and the committed
copies carry no outputs and no logic of their own."""

from __future__ import annotations

import ast
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from cdp.workspace import REPOSITORY_ROOT, Workspace
from tests.conftest import AS_OF

NOTEBOOKS = sorted((REPOSITORY_ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ("01-explore-profiles.ipynb", "02-evaluate-models.ipynb", "03-recommendations.ipynb")
CELL_TIMEOUT_SECONDS = 600
KERNEL = "python3"


def execute(notebook: nbformat.NotebookNode, environment: dict[str, str], cwd: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel with `environment` added to this process's; raises on the
    first failing cell (nbclient's CellExecutionError names the cell and the error). The kernel
    spec's `python` is replaced by this interpreter (jupyter_client), see the test below."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(cwd)}})
    return client.execute(env={**os.environ, **environment})


@pytest.fixture(scope="module")
def scored_workspace(served, tmp_path_factory) -> Workspace:
    """A copy of the served workspace (the session's is shared) with batch scores in it."""
    from serving.batch import score_customer_base

    workspace = Workspace.at(tmp_path_factory.mktemp("notebooks") / "ws")
    shutil.copytree(served.workspace.root, workspace.root)
    if not (workspace.outputs / "scores.parquet").exists():
        score_customer_base(workspace, served.settings, AS_OF)
    return workspace


def test_the_three_notebooks_are_there():
    assert tuple(path.name for path in NOTEBOOKS) == EXPECTED


def test_the_kernel_is_this_interpreter(tmp_path):
    # given a one-cell notebook printing the kernel's interpreter
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    # when it runs the way the notebooks run
    executed = execute(notebook, {"MPLBACKEND": "Agg"}, tmp_path)
    # then the kernel is this venv's python, which has the package and its dependencies
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_on_the_simulated_retailer(path, scored_workspace, served, tmp_path):
    # given a trained, served and scored workspace and the simulator's truth
    environment = {"CDP_WORKSPACE": str(scored_workspace.root), "CDP_TRUTH": str(served.raw),
                   "MPLBACKEND": "Agg"}
    # when the notebook runs top to bottom
    executed = execute(nbformat.read(path, as_version=4), environment, tmp_path)
    # then every code cell ran, without an error, and the tables it shows are not empty
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    errors = [output for cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors, errors
    tables = [output for cell in code for output in cell.outputs
              if output.output_type == "execute_result" and "text/html" in output.get("data", {})]
    assert tables, f"{path.name} shows no table"


@pytest.mark.slow
def test_no_personal_data_is_shown_by_the_profiles_notebook(scored_workspace, tmp_path):
    import pandas as pd

    # given the raw e-mails and phones behind the golden profiles
    profiles = pd.read_parquet(scored_workspace.outputs / "profiles.parquet")
    personal = {str(v) for column in ("emails", "phones") for values in profiles[column] for v in values}
    personal |= {str(v) for v in profiles["address_line"].dropna()}
    assert len(personal) > 100, "no personal data to look for: the check proves nothing"
    # when the profiles notebook runs
    executed = execute(nbformat.read(REPOSITORY_ROOT / "notebooks" / EXPECTED[0], as_version=4),
                       {"CDP_WORKSPACE": str(scored_workspace.root), "MPLBACKEND": "Agg"}, tmp_path)
    # then none of it appears in what the notebook shows
    shown = "\n".join(str(output.get("data", output.get("text", ""))) for cell in executed.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    leaked = sorted(value for value in personal if value in shown and len(value) > 4)
    assert not leaked, f"{len(leaked)} personal values shown, e.g. {leaked[:1][0][:2]}***"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebook_has_no_outputs_and_no_logic(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name}: outputs not stripped in {cell.source[:40]!r}"
        assert cell.execution_count is None, f"{path.name}: execution count left in {cell.source[:40]!r}"
        tree = ast.parse(cell.source)
        defined = [node for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)]
        assert not defined, f"{path.name}: logic belongs in the package, not in {cell.source[:40]!r}"
        loops = [node for node in ast.walk(tree) if isinstance(node, ast.For | ast.While)]
        assert not loops, f"{path.name}: a loop in {cell.source[:40]!r}; put it in a package function"
