"""The notebooks in ``notebooks/`` run top to bottom in a real Jupyter kernel.

Each notebook is executed with nbclient in a fresh kernel of this interpreter (a kernel spec
written for the test, so a user's ``python3`` kernel elsewhere cannot be picked up instead),
with a temporary directory as working directory. Notebooks are stored without outputs.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "pyiron-assyst-test"
CELL_TIMEOUT = 600
"""Seconds one cell may take before the test fails."""

SLOW = {"configuration_tour.ipynb", "hpc.ipynb", "quickstart.ipynb"}
"""Notebooks over 30 s on two busy cores (marked slow). Measured, kernel start included, on 2
cores at load average 7-9: quickstart 37-46 s wall (15 s CPU), configuration_tour 36-47 s
(15 s CPU), hpc 48-56 s (20 s CPU; three executors, two spawning workers), handoff 15-21 s
(7 s CPU)."""

FIGURES = {"quickstart.ipynb": 4, "configuration_tour.ipynb": 9, "hpc.ipynb": 1,
           "handoff.ipynb": 2}
"""Number of matplotlib pictures (PNG outputs) each notebook shows."""
GRAPHS = {"quickstart.ipynb": 2}
"""Number of workflow drawings (SVG) a notebook shows where graphviz's ``dot`` is installed
(without it, the notebook prints the DOT source instead)."""


def _notebooks() -> list:
    params = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        marks = [pytest.mark.slow] if path.name in SLOW else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """Kernel managers for a kernel spec that runs this interpreter's ipykernel."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / KERNEL, overrides={"display_name": KERNEL,
                                                   "argv": [sys.executable, "-m",
                                                            "ipykernel_launcher", "-f",
                                                            "{connection_file}"]})
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)

    def make() -> KernelManager:
        return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)

    return make


def _outputs(notebook) -> list[dict]:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


@pytest.mark.parametrize("path", _notebooks())
def test_notebook_is_stored_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "a notebook without code"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), (
        "strip the outputs before committing (e.g. `jupyter nbconvert --clear-output`)")


@pytest.mark.parametrize("path", _notebooks())
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, kernel_manager_factory):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, km=kernel_manager_factory(), timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}}, allow_errors=False)
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    seconds = time.perf_counter() - start
    outputs = _outputs(notebook)
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors
    pictures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pictures == FIGURES.get(path.name, 0)
    graphs = sum("image/svg+xml" in o.get("data", {}) for o in outputs)
    assert graphs == (GRAPHS.get(path.name, 0) if shutil.which("dot") else 0)
    print(f"{path.name}: {seconds:.1f} s, {pictures} pictures, {graphs} graphs")
