"""The VASP and Quantum ESPRESSO recipes of docs/hpc.md, run against a fake executable.

Neither code can run here, so ``tests/external/fake_dft.py`` stands in for ``vasp_std`` and
``pw.x``: it records the input files ASE wrote and its own command line on every MPI rank, then
prints the real code's error text and exits 1. The tests check the input (per-structure
k-points, magnetic moments, spin, the launcher on two ranks) and that the repair policy reads
the code's error text from its output file, changes the setting its rule names, and records
every attempt. A third test loads a user's config kind in a fresh process through the
``pyiron_assyst.configs`` entry point, without ``register_import_prefix``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from pyiron_assyst.calculators.structure_settings import kpoints_from_density
from pyiron_assyst.core.lineage import stamp_root
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.execution.launch import launcher
from pyiron_assyst.stages.label import label
from tests.external.dft_recipes import QuantumEspresso, quantum_espresso, vasp

FAKE = Path(__file__).resolve().parent / "external" / "fake_dft.py"
TWO_RANKS = launcher(Executor(kind="process", cores=2), starter="mpiexec")
REPO = Path(__file__).resolve().parents[1]


def iron():
    atoms = bulk("Fe", "bcc", a=2.83)
    stamp_root(atoms, "fe-bcc")
    return atoms


def calls(record: Path) -> list[dict[str, dict]]:
    """Recorded calls in order, each a dict rank -> {file name: text}."""
    groups: dict[str, dict[str, dict]] = {}
    for directory in sorted(record.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        call, rank = directory.name.split("-rank")
        groups.setdefault(call, {})[rank] = {p.name: p.read_text() for p in directory.iterdir()}
    return list(groups.values())


@pytest.fixture
def fake(tmp_path, monkeypatch):
    if not (os.environ.get("CI") or _has_mpiexec()):
        pytest.skip("mpiexec (Open MPI) not installed")
    monkeypatch.setenv("FAKE_DFT_RECORD", str(tmp_path / "record"))
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return tmp_path


def _has_mpiexec() -> bool:
    from shutil import which

    return which("mpiexec") is not None


def test_vasp_recipe_writes_per_structure_input_and_repairs_zbrent(fake, monkeypatch):
    potentials = fake / "pp" / "potpaw_PBE" / "Fe"
    potentials.mkdir(parents=True)
    (potentials / "POTCAR").write_text("PAW_PBE Fe 06Sep2000\n TITEL  = PAW_PBE Fe\n"
                                       " POMASS =   55.847; ZVAL   =    8.000\n")
    monkeypatch.setenv("VASP_PP_PATH", str(fake / "pp"))
    monkeypatch.setenv("FAKE_DFT_ERROR", " ZBRENT: fatal error in bracketing\n"
                                         "     please rerun with smaller EDIFF")
    config = vasp(TWO_RANKS, str(fake / "run"), command=str(FAKE))
    out, report = label([iron()], config, Executor(kind="serial"))
    assert not out
    (drop,) = report.drops
    assert drop.reason == "crashed"  # VASP exited non-zero; its text named the repair
    assert drop.detail.endswith("[attempts: crashed -> zbrent; crashed]")
    first, second = calls(fake / "record")
    assert sorted(first) == ["0", "1"]  # both attempts ran on two MPI ranks
    assert json.loads(first["0"]["argv.json"]) == [str(FAKE)]
    incar = first["0"]["INCAR"]
    for line in ("ENCUT = 520", "ISMEAR = 1", "ISPIN = 2", "MAGMOM = 1*2.5000"):
        assert line in incar
    assert "IBRION" not in incar
    assert "IBRION = 1" in second["0"]["INCAR"]
    mesh = kpoints_from_density(iron().cell.array, 5.0)
    assert first["0"]["KPOINTS"].splitlines()[3].split() == [str(k) for k in mesh]
    assert mesh == (16, 16, 16)


def test_quantum_espresso_recipe_writes_per_structure_input_and_repairs_scf(fake, monkeypatch):
    monkeypatch.setenv("FAKE_DFT_ERROR", "     convergence NOT achieved after 100 iterations: "
                                         "stopping")
    monkeypatch.chdir(fake)
    config = quantum_espresso(TWO_RANKS, str(fake / "pseudo"), pw=str(FAKE),
                              directory=str(fake / "qe"))
    out, report = label([iron()], config, Executor(kind="serial"))
    assert not out
    (drop,) = report.drops
    assert drop.reason == "crashed"
    assert drop.detail.endswith("[attempts: crashed -> qe_mixing; crashed]")
    first, second = calls(fake / "record")
    assert sorted(first) == ["0", "1"]
    assert json.loads(first["1"]["argv.json"]) == [str(FAKE), "-in", "espresso.pwi"]
    pwi = first["0"]["espresso.pwi"]
    # ASE writes the moment in μB, unscaled (QE >= 7.3; older ones: rescale_magmom_fac)
    assert "nspin            = 2" in pwi
    assert "starting_magnetization(1) = 2.5" in pwi
    assert "ecutwfc          = 60.0" in pwi
    assert "mixing_beta      = 0.7" in pwi
    mesh = kpoints_from_density(iron().cell.array, 5.0)
    k_points = pwi.split("K_POINTS automatic\n")[1].splitlines()[0].split()
    assert k_points[:3] == [str(k) for k in mesh]
    again = second["0"]["espresso.pwi"]
    assert "mixing_beta      = 0.3" in again
    assert "electron_maxstep = 300" in again
    np.testing.assert_equal(mesh, (16, 16, 16))


ENTRY_POINTS = """[pyiron_assyst.configs]
mylab.QuantumEspresso = mylab_qe:QuantumEspresso
"""
LOADER = """
import json, sys
from pyiron_assyst.core.config import ALLOWED_PREFIXES, config_from_json
config = config_from_json(sys.stdin.read())
print(json.dumps([type(config).__module__, config.ecutwfc, sorted(ALLOWED_PREFIXES)]))
"""


def test_a_user_config_kind_loads_in_a_fresh_process_through_its_entry_point(tmp_path):
    # a user's package: the recipe's class in its own module, declared as an entry point
    site = tmp_path / "site"
    (site / "mylab_qe-0.1.dist-info").mkdir(parents=True)
    (site / "mylab_qe-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mylab_qe\nVersion: 0.1\n")
    (site / "mylab_qe-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    source = (REPO / "tests" / "external" / "dft_recipes.py").read_text()
    (site / "mylab_qe.py").write_text(source)
    text = QuantumEspresso(ecutwfc=45.0).to_json()
    assert json.loads(text)["@config"] == "mylab.QuantumEspresso"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", LOADER], input=text, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    module, ecut, allowed = json.loads(proc.stdout)
    assert module == "mylab_qe"
    assert ecut == 45.0
    assert not any(p.startswith(("mylab", "tests")) for p in allowed)  # nothing registered
