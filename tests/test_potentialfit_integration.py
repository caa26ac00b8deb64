"""Consumers' own code reads our exports, each in its own virtual environment (slow).

- pyiron_potentialfit, in the **shared environment**: pyiron_potentialfit 0.3.15 (with
  pyiron_atomistics 0.8.12) and pyiron_assyst installed together, pip resolving our
  ``pyproject.toml`` ranges (pyiron_base 0.15.18, executorlib 1.9.2, pysqa 0.3.5, numpy 2.4.3,
  pandas 2.3.3; recorded in ``installed.json``). In one process a tiny EMT run
  (sample → relax → perturb → label → curate) becomes a ``TrainingContainer`` job through
  :func:`~pyiron_assyst.export.to_training_container` and its node, is passed to
  ``PacemakerJob.add_training_data`` and ``write_input``, and every number is compared exactly,
  ``energy_uncorrected`` included; pyiron_atomistics' ``StructureStorage``,
  pyiron_potentialfit's ``TrainingStorage`` and ``pyiron_base.Project`` open the run's stage
  files. The file route is tested there too: the documented lines turn our
  ``TrainingContainer`` file into a job whose training DataFrame and ``df_training.pckl.gzip``
  hold our numbers exactly; pandas 2 loads our pacemaker pickle, and MLIP's own ``cfgs`` reader
  (mlippy, as vendored by pyiron_potentialfit) reads our MTP file.
- python-ace (pacemaker's data tools; its only wheel is 0.4.0rc1, academic licence):
  ``pyace.preparedata.ACEDataset`` loads our pacemaker DataFrame as ``pacemaker`` does.

The environments are created once under ``$PYIRON_ASSYST_VENV_CACHE`` (default
``~/.cache/pyiron_assyst``) and reused (the shared one is rebuilt when ``pyproject.toml``'s
dependencies change; scripts import this checkout's code through ``PYTHONPATH``); the install
time, size and versions are recorded in ``<venv>/installed.json``. Measured on a loaded 2-core
machine (pip 23.2, ``nice``): the shared environment in 739 s from a cold pip cache, 705 s warm
and 452 s warm with ``--no-compile`` (as done here; pip's resolution and the installation of
~340 packages dominate, not downloads), 1.3 GB; then the three tests that use it take ~50-150 s
(the shared one 31-74 s, its EMT run 15-20 s).
python-ace: 70 s cold, 23 s warm, 0.5 GB. A failed install for lack of network skips the test.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.export import (
    labels_of,
    write_mtp,
    write_pacemaker,
    write_training_container,
)
from pyiron_assyst.export.canonical import corrected_energy
from pyiron_assyst.stages.curate import energies_of
from pyiron_assyst.storage import Project
from tests.support.datasets import REFERENCES, training_set
from tests.support.mtp import TINY, tiny_numbers

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

CACHE = Path(os.environ.get("PYIRON_ASSYST_VENV_CACHE",
                            Path.home() / ".cache" / "pyiron_assyst"))
POTENTIALFIT = os.environ.get("PYIRON_ASSYST_POTENTIALFIT", "pyiron_potentialfit==0.3.15")
SHARED = os.environ.get("PYIRON_ASSYST_SHARED",
                        f"{POTENTIALFIT} pyiron_atomistics==0.8.12")
"""What the shared environment installs next to this package (pip resolves pyiron_assyst's
ranges with them; naming pyiron_atomistics spares pip's resolver a long backtrack)."""
ROOT = Path(__file__).resolve().parents[1]
PYACE = os.environ.get("PYIRON_ASSYST_PYACE", "python-ace==0.4.0rc1")
_OFFLINE = ("No matching distribution", "Could not find a version", "NewConnectionError",
            "Temporary failure in name resolution", "Network is unreachable",
            "ConnectionError", "ReadTimeoutError", "Max retries exceeded")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _versions(python: Path) -> dict[str, str]:
    """``pip freeze`` of the environment, as ``{name: version}`` (local paths left out)."""
    proc = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True,
                          text=True, check=True)
    pairs = (line.split("==", 1) for line in proc.stdout.splitlines() if "==" in line)
    return {name.lower().replace("_", "-"): version for name, version in pairs}


def consumer_python(name: str, requirement: str, key: str | None = None,
                    local: Path | None = None) -> Path:
    """Python of a cached virtual environment with ``requirement`` (one or more requirements
    separated by spaces) and the project at ``local`` installed; rebuilt when ``key`` (default:
    the requirement) changes."""
    key = key or requirement
    venv = CACHE / name
    python = venv / "bin" / "python"
    marker = venv / "installed.json"
    if python.exists() and marker.is_file() and json.loads(marker.read_text()).get(
            "requirement") == key:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    start = time.perf_counter()
    # --no-compile: byte-compiling ~340 packages took a third of the install; the few modules
    # the tests import are compiled when first imported
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-compile",
                           *requirement.split(),
                           *([str(local)] if local else [])],
                          capture_output=True, text=True, timeout=1800, cwd=venv)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        if any(pattern in proc.stderr for pattern in _OFFLINE):
            pytest.skip(f"cannot install {requirement} (no network?): {tail[0]}")
        pytest.fail(f"pip install {requirement} failed: {proc.stderr[-2000:]}")
    info = {"requirement": key, "seconds": round(seconds, 1),
            "gigabytes": round(_size(venv) / 1e9, 2), "versions": _versions(python)}
    marker.write_text(json.dumps(info, indent=1))  # install time, size, versions on record
    logger.info("installed %s into %s in %.0f s (%.2f GB)", requirement, venv, seconds,
                info["gigabytes"])
    return python


def shared_python() -> Path:
    """Python of the shared environment: :data:`SHARED` and pyiron_assyst from this checkout,
    its dependencies resolved by pip from ``pyproject.toml``'s ranges (rebuilt when those
    change). Scripts run with ``pythonpath=ROOT`` import this checkout's code."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    digest = hashlib.sha256(json.dumps(dependencies).encode()).hexdigest()[:16]
    return consumer_python("shared-venv", SHARED, local=ROOT,
                           key=f"{SHARED} pyiron_assyst(dependencies {digest})")


def run_script(python: Path, script: str, *args: str, cwd: Path,
               pythonpath: Path | None = None) -> dict:
    path = cwd / "consumer_script.py"
    path.write_text(script)
    env = {**os.environ, "HOME": str(cwd / "home"), "PYTHONNOUSERSITE": "1",
           "MPLCONFIGDIR": str(cwd / "mpl")}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.pop("PYIRONDISABLE", None)  # the consumer's job database must work
    (cwd / "home").mkdir(exist_ok=True)
    proc = subprocess.run([str(python), str(path), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((cwd / "result.json").read_text())


POTENTIALFIT_SCRIPT = r'''
import json, os, sys
import numpy as np
import pandas as pd

h5, pckl, cfg = sys.argv[1:4]

# --- the documented lines (docs/units.md, pyiron_assyst.export.potentialfit) ---
from pyiron_atomistics import Project
from pyiron_base import FileHDFio
from pyiron_potentialfit.atomistics.job.trainingcontainer import TrainingStorage

storage = TrainingStorage()
storage.from_hdf(FileHDFio(h5), "structures")
pr = Project("fit")
container = pr.create.job.TrainingContainer("assyst")
container.include_dataset(storage.to_pandas())
container.input.save_neighbors = False  # its neighbour statistics fail on small clusters
container.run()
job = pr.create.job.PacemakerJob("ace")
job.add_training_data(container)
# --- what the fitting job sees ---
frame = job.create_training_dataframe()
os.makedirs(job.working_directory, exist_ok=True)
job.write_input()
written = pd.read_pickle(os.path.join(job.working_directory, "df_training.pckl.gzip"),
                         compression="gzip")
ours = pd.read_pickle(pckl, compression="gzip")   # our pacemaker file under pandas 2
from pyiron_potentialfit.mlip.cfgs import loadcfgs  # MLIP's own reader (mlippy)
cfgs = loadcfgs(cfg)

def tolist(a):
    return np.asarray(a, dtype=float).tolist()

result = {
    "pandas": pd.__version__,
    "container_id": container.id,
    "training_ids": list(job._train_job_id_list),
    "raw": [{"positions": tolist(storage.get_array("positions", i)),
             "energy_uncorrected": float(storage.get_array("energy_uncorrected", i))}
            for i in range(len(storage))],
    "frame": [{"name": r.name, "energy": float(r.energy), "forces": tolist(r.forces),
               "stress": tolist(r.stress), "symbols": list(r.atoms.get_chemical_symbols()),
               "cell": tolist(r.atoms.cell), "scaled": tolist(r.atoms.get_scaled_positions()),
               "pbc": [bool(p) for p in r.atoms.pbc], "n": int(r.number_of_atoms)}
              for r in frame.itertuples(index=False)],
    "written": {"columns": list(written.columns),
                "energy_corrected": [float(e) for e in written.energy_corrected],
                "n": [int(n) for n in written.NUMBER_OF_ATOMS]},
    "ours": {"columns": list(ours.columns), "energy_corrected": ours.energy_corrected.tolist(),
             "forces": [tolist(f) for f in ours.forces], "names": list(ours.name)},
    "cfgs": [{"types": [int(t) for t in c.types], "positions": tolist(c.pos),
              "forces": tolist(c.forces), "energy": c.energy,
              "stress": None if c.stresses is None else tolist(c.stresses),
              "lat": tolist(c.lat)} for c in cfgs],
}
with open("result.json", "w") as f:
    json.dump(result, f)
'''


def test_pyiron_potentialfit_reads_our_training_container(tmp_path):
    python = shared_python()
    structures = training_set()
    h5 = write_training_container(structures, tmp_path / "training_container.h5", REFERENCES)
    pckl = write_pacemaker(structures, tmp_path / "train.pckl.gzip", REFERENCES)
    order = write_mtp(structures, tmp_path / "train.cfg")
    result = run_script(python, POTENTIALFIT_SCRIPT, str(h5), str(pckl),
                        str(tmp_path / "train.cfg"), cwd=tmp_path)
    assert result["pandas"].startswith("2.")
    assert result["training_ids"] == [result["container_id"]]
    assert result["container_id"]
    assert result["written"]["columns"][:4] == ["name", "energy_corrected", "forces",
                                                "NUMBER_OF_ATOMS"]
    for i, atoms in enumerate(structures):
        labels = labels_of(atoms)
        corrected = labels.free_energy - sum(REFERENCES[s] for s in atoms.get_chemical_symbols())
        row, raw = result["frame"][i], result["raw"][i]
        assert row["name"] == uuid_of(atoms)
        assert row["n"] == len(atoms)
        assert row["energy"] == corrected
        assert raw["energy_uncorrected"] == labels.free_energy
        assert result["written"]["energy_corrected"][i] == corrected
        assert result["written"]["n"][i] == len(atoms)
        np.testing.assert_array_equal(row["forces"], labels.forces)
        if labels.stress is None:
            assert np.isnan(row["stress"]).all()
        else:
            np.testing.assert_array_equal(row["stress"], -labels.stress)
        assert row["symbols"] == atoms.get_chemical_symbols()
        np.testing.assert_array_equal(raw["positions"], atoms.positions)
        np.testing.assert_array_equal(row["cell"], atoms.cell.array)
        assert row["pbc"] == [atoms.pbc.any()] * 3  # slabs are handed over 3-D periodic
        if atoms.pbc.any():  # pyiron wraps positions into the cell
            delta = np.array(row["scaled"]) - atoms.get_scaled_positions(wrap=False)
            np.testing.assert_allclose(delta, np.round(delta), atol=1e-12)
        ours = result["ours"]
        assert ours["names"][i] == uuid_of(atoms)
        assert ours["energy_corrected"][i] == corrected
        np.testing.assert_array_equal(ours["forces"][i], labels.forces)
        cfg = result["cfgs"][i]
        assert cfg["types"] == [order.index(s) for s in atoms.get_chemical_symbols()]
        np.testing.assert_array_equal(cfg["positions"], atoms.positions)
        np.testing.assert_array_equal(cfg["forces"], labels.forces)
        assert cfg["energy"] == labels.free_energy
        if labels.stress is not None:
            np.testing.assert_array_equal(cfg["stress"], -labels.stress * atoms.get_volume())
            np.testing.assert_array_equal(cfg["lat"], atoms.cell.array)


MLIP_SCRIPT = r'''
import json, sys
from pyiron_potentialfit.mlip.cfgs import loadcfgs  # MLIP's own reader (mlippy)

cfgs = loadcfgs(sys.argv[1])
with open("result.json", "w") as f:
    json.dump([{"energy": c.energy, "lat": c.lat.tolist(), "pos": c.pos.tolist(),
                "forces": c.forces.tolist(), "stress": c.stresses.tolist()} for c in cfgs], f)
'''


def test_mlip_reader_reads_fields_with_three_digit_exponents(tmp_path):
    """``-2.2368152024805090e-101`` fills the 24 characters of a field; MLIP's reader splits
    on white space and rejected such a file before the fields were separated."""
    python = shared_python()
    atoms = tiny_numbers()
    write_mtp([atoms, *training_set()[:2]], tmp_path / "tiny.cfg")
    result = run_script(python, MLIP_SCRIPT, str(tmp_path / "tiny.cfg"), cwd=tmp_path)
    assert len(result) == 3
    tiny, labels = result[0], labels_of(atoms)
    assert tiny["energy"] == labels.free_energy == TINY
    np.testing.assert_array_equal(tiny["lat"], atoms.cell.array)
    np.testing.assert_array_equal(tiny["pos"], atoms.positions)
    np.testing.assert_array_equal(tiny["forces"], labels.forces)
    np.testing.assert_array_equal(tiny["stress"], -labels.stress * atoms.get_volume())


PYACE_SCRIPT = r'''
import json, sys
from pyace.preparedata import ACEDataset

data = ACEDataset({"filename": sys.argv[1]}, cutoff=5.0, elements=["Ag", "Cu"],
                  evaluator_name="pyace")
frame = data.fitting_data
result = {
    "names": list(frame["name"]),
    "energy_corrected": [float(e) for e in frame["energy_corrected"]],
    "NUMBER_OF_ATOMS": [int(n) for n in frame["NUMBER_OF_ATOMS"]],
    "forces": [f.tolist() for f in frame["forces"]],
    "sp_energy": [float(a.get_potential_energy()) for a in frame["ase_atoms"]],
    "positions": [a.positions.tolist() for a in frame["ase_atoms"]],
}
with open("result.json", "w") as f:
    json.dump(result, f)
'''


def test_pacemaker_reader_loads_our_dataframe(tmp_path):
    python = consumer_python("pyace-venv", PYACE)
    structures = training_set()
    pckl = write_pacemaker(structures, tmp_path / "train.pckl.gzip", REFERENCES)
    result = run_script(python, PYACE_SCRIPT, str(pckl), cwd=tmp_path)
    for i, atoms in enumerate(structures):
        labels = labels_of(atoms)
        corrected = labels.free_energy - sum(REFERENCES[s] for s in atoms.get_chemical_symbols())
        assert result["names"][i] == uuid_of(atoms)
        assert result["energy_corrected"][i] == result["sp_energy"][i] == corrected
        assert result["NUMBER_OF_ATOMS"][i] == len(atoms)
        np.testing.assert_array_equal(result["forces"][i], labels.forces)
        np.testing.assert_array_equal(result["positions"][i], atoms.positions)


# ------------------------------------------------- the shared environment (issue 16)

TINY_RUN = """
[formulas]
elements = ["Cu"]
max_atoms = 1

[sample_config]
type = "SampleConfig"
spacegroups = [221, 225, 229]
seed = 2

[perturb_config]
type = "PerturbConfig"
retries = 3
filter = { type = "DistanceFilter", radii = 1.0 }

[[perturb_config.perturbations]]
type = "Rattle"
sigma = 0.1
supercell = true
copies = 2

[executor]
type = "Executor"
kind = "serial"
"""

SHARED_SCRIPT = r'''
import json, os, sys, time
from importlib import metadata
import numpy as np
import pandas as pd

settings, project_dir = sys.argv[1:3]
out = {"versions": {p: metadata.version(p) for p in (
    "pyiron_assyst", "pyiron_potentialfit", "pyiron_atomistics", "pyiron_base", "executorlib",
    "pysqa", "pyiron_workflow", "flowrep", "ase", "numpy", "pandas", "h5py", "pymatgen")}}
import pyiron_assyst
out["pyiron_assyst_file"] = pyiron_assyst.__file__

# --- a real run (sample -> relax -> perturb -> label -> curate, EMT) in this process
from pyiron_assyst.cli.main import main
start = time.perf_counter()
assert main(["run", settings, "-o", project_dir, "--no-figures", "--name", "tiny"]) == 0
out["run_seconds"] = time.perf_counter() - start

# --- the hand-off without a file
from pyiron_assyst.export import to_training_container
from pyiron_assyst.stages.curate import energies_of
from pyiron_assyst.storage import Project as AssystProject
from pyiron_atomistics import Project

ours = AssystProject(project_dir, create=False)
training = ours.load_stage("tiny", "training_set")
references = energies_of(ours.load_stage("tiny", "isolated_atoms"))
start = time.perf_counter()
pr = Project("fit")
container = to_training_container(training, pr, "assyst", references)
job = pr.create.job.PacemakerJob("ace")
job.add_training_data(container)
frame = job.create_training_dataframe()
os.makedirs(job.working_directory, exist_ok=True)
job.write_input()
out["handoff_seconds"] = time.perf_counter() - start
from pyiron_assyst.export.nodes import training_container  # the workflow node, called directly
via_node = training_container(training, os.path.abspath("fit"), "via_node", references)
out["via_node"] = [float(e) for _, e in via_node.iter("energy_uncorrected")]
written = pd.read_pickle(os.path.join(job.working_directory, "df_training.pckl.gzip"),
                         compression="gzip")

def tolist(a):
    return np.asarray(a, dtype=float).tolist()

def strings(a):  # pyiron's HDF5 reader returns its UTF-8 strings as bytes
    return [x.decode() if isinstance(x, bytes) else str(x) for x in a]

saved = pr.load("assyst")  # the job as pyiron stored it (its HDF5 file and database row)
hdf = saved.project_hdf5
out["container"] = {
    "status": str(saved.status), "id": saved.id, "training_ids": list(job._train_job_id_list),
    "identifier": strings(hdf["structures/chunk_arrays/identifier"]),
    "energy": tolist(hdf["structures/chunk_arrays/energy"]),
    "energy_uncorrected": tolist(hdf["structures/chunk_arrays/energy_uncorrected"]),
    "stress": tolist(hdf["structures/chunk_arrays/stress"]),
    "length": [int(n) for n in hdf["structures/chunk_arrays/length"]],
    "forces": tolist(hdf["structures/element_arrays/forces"]),
    "positions": tolist(hdf["structures/element_arrays/positions"]),
    "symbols": strings(hdf["structures/element_arrays/symbols"]),
    "cell": tolist(hdf["structures/chunk_arrays/cell"]),
}
out["frame"] = [{"name": r.name, "energy": float(r.energy), "forces": tolist(r.forces),
                 "stress": tolist(r.stress)} for r in frame.itertuples(index=False)]
out["written"] = {"name": list(written.name),
                  "energy_corrected": [float(e) for e in written.energy_corrected],
                  "forces": [tolist(f) for f in written.forces],
                  "n": [int(n) for n in written.NUMBER_OF_ATOMS]}

# --- stage files opened by pyiron's own containers
from pyiron_base import FileHDFio
from pyiron_atomistics.atomistics.structure.structurestorage import StructureStorage
from pyiron_potentialfit.atomistics.job.trainingcontainer import TrainingStorage

stage_files = {s["name"]: os.path.join(project_dir, "runs", "tiny", s["file"])
               for s in ours.run_info("tiny")["stages"]}
out["structure_storage"] = {}
for stage, path in stage_files.items():
    storage = StructureStorage()
    storage.from_hdf(FileHDFio(path), "structures")
    out["structure_storage"][stage] = [
        {"identifier": str(storage.get_array("identifier", i)),
         "symbols": [str(s) for s in storage.get_structure(i).get_chemical_symbols()],
         "positions": tolist(storage.get_array("positions", i)),
         "cell": tolist(storage.get_array("cell", i)),
         "pbc": [bool(p) for p in storage.get_array("pbc", i)]} for i in range(len(storage))]
training_storage = TrainingStorage()
training_storage.from_hdf(FileHDFio(stage_files["training_set"]), "structures")
table = training_storage.to_pandas()
out["training_storage"] = {
    "name": list(table.name), "energy": [float(e) for e in table.energy],
    "forces": [tolist(f) for f in table.forces], "stress": [tolist(s) for s in table.stress],
    "n": [int(n) for n in table.number_of_atoms]}

# --- the project directory through pyiron_base.Project, as docs/storage.md shows
from pyiron_base import Project as BaseProject

base = BaseProject(project_dir)
files = sorted(base["runs/tiny/stages"].list_files("h5"))
stage = base["runs/tiny/stages/" + files[-1]]
flat = stage["structures"].to_object()
out["base_project"] = {
    "runs": base["runs"].list_dirs(), "files": files,
    "meta_stages": json.loads(base["runs/tiny/run"]["run/meta"])["stages"],
    "calculator": base["runs/tiny/run"]["configs/calculator"],
    "type": type(flat).__name__, "identifier": [str(x) for x in flat.get_array("identifier")],
    "free_energy": tolist(flat.get_array("free_energy")),
    "jobs": base.job_table()["job"].tolist()}
with open("result.json", "w") as f:
    json.dump(out, f)
'''


def test_shared_environment_hands_a_run_to_pacemaker_in_one_process(tmp_path):
    """pyiron_potentialfit 0.3.15 and pyiron_assyst installed together (pip resolving our
    ranges); in one process a tiny EMT run becomes a ``TrainingContainer`` job, a
    ``PacemakerJob`` writes its input, and pyiron's own containers open the stage files."""
    python = shared_python()
    versions = json.loads((python.parents[1] / "installed.json").read_text())["versions"]
    logger.info("shared environment: %s", {k: versions.get(k) for k in (
        "pyiron-assyst", "pyiron-potentialfit", "pyiron-atomistics", "pyiron-base",
        "executorlib", "pysqa", "numpy", "pandas", "ase", "h5py")})
    settings = tmp_path / "tiny.toml"
    settings.write_text(TINY_RUN)
    project_dir = tmp_path / "project"
    result = run_script(python, SHARED_SCRIPT, str(settings), str(project_dir), cwd=tmp_path,
                        pythonpath=ROOT)
    assert Path(result["pyiron_assyst_file"]).is_relative_to(ROOT)  # this checkout's code
    assert result["versions"]["pyiron_potentialfit"] == POTENTIALFIT.split("==")[1]
    assert result["run_seconds"] < 120
    ours = Project(project_dir, create=False)
    training = ours.load_stage("tiny", "training_set")
    references = energies_of(ours.load_stage("tiny", "isolated_atoms"))
    assert len(training) >= 4
    assert {len(a) for a in training} != {1}
    _check_container(result, training, references)
    _check_stage_readers(result, ours, training)


def _check_container(result: dict, training: list, references: dict[str, float]) -> None:
    container, frame, written = result["container"], result["frame"], result["written"]
    assert container["status"] == "finished"
    assert container["training_ids"] == [container["id"]]
    assert container["identifier"] == [uuid_of(a) for a in training]
    assert result["via_node"] == container["energy_uncorrected"]
    starts = np.cumsum([0] + container["length"])
    for i, atoms in enumerate(training):
        labels = labels_of(atoms)
        corrected = corrected_energy(atoms, labels.free_energy, references)  # the package's target
        own = slice(starts[i], starts[i + 1])
        assert container["energy"][i] == frame[i]["energy"] == corrected
        assert written["energy_corrected"][i] == corrected
        assert container["energy_uncorrected"][i] == labels.free_energy
        for forces in (container["forces"][own], frame[i]["forces"], written["forces"][i]):
            np.testing.assert_array_equal(forces, labels.forces)
        assert container["positions"][own] == atoms.positions.tolist()
        assert container["symbols"][own] == atoms.get_chemical_symbols()
        assert container["cell"][i] == atoms.cell.array.tolist()
        assert frame[i]["name"] == written["name"][i] == uuid_of(atoms)
        assert written["n"][i] == len(atoms)
        if labels.stress is None:
            assert np.isnan(container["stress"][i]).all()
        else:
            assert container["stress"][i] == frame[i]["stress"] == (-labels.stress).tolist()


def _check_stage_readers(result: dict, ours, training: list) -> None:
    for stage, rows in result["structure_storage"].items():
        structures = ours.load_stage("tiny", stage)
        assert [r["identifier"] for r in rows] == [uuid_of(a) for a in structures], stage
        for row, atoms in zip(rows, structures):
            assert row["symbols"] == atoms.get_chemical_symbols()
            assert row["positions"] == atoms.positions.tolist()
            assert row["cell"] == atoms.cell.array.tolist()
            assert row["pbc"] == atoms.pbc.tolist()
    table = result["training_storage"]
    assert table["name"] == [uuid_of(a) for a in training]
    for i, atoms in enumerate(training):
        results = atoms.calc.results
        assert table["energy"][i] == results["energy"]  # the stage's (ASE) energy
        assert table["n"][i] == len(atoms)
        np.testing.assert_array_equal(table["forces"][i], results["forces"])
        stress = results.get("stress")
        expected = np.full(6, np.nan) if stress is None else -stress  # pyiron's sign
        np.testing.assert_array_equal(table["stress"][i], expected)
    base = result["base_project"]
    stages = ours.run_info("tiny")["stages"]
    assert base["runs"] == ["tiny"]
    assert [f"stages/{f}.h5" for f in base["files"]] == [s["file"] for s in stages]
    assert base["meta_stages"] == stages
    assert base["calculator"] == ours.load_configs("tiny")["calculator"].to_json()
    assert base["type"] == "FlattenedStorage"
    assert stages[-1]["name"] == "training_set"
    assert base["identifier"] == [uuid_of(a) for a in training]
    assert base["free_energy"] == [a.calc.results["free_energy"] for a in training]
    assert base["jobs"] == []  # runs are not pyiron jobs (docs/storage.md says why)
