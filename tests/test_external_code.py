"""External codes: an MPI program started by its ASE file-based calculator, inside a SLURM job.

The program is ``tests/external/toy_dft.py`` (Lennard-Jones in plain Python, one output file
from rank 0, a marker file from every rank), driven by ``tests.external.toycode.ToyCode``
through the generic :class:`~pyiron_assyst.calculators.AseCalculator` config. On the cluster
each relaxation is one ``sbatch`` job that reserves two cores; its Python task runs once and
starts the program with ``srun -n 2`` for every force call. Inside an allocation, a
``slurm_job`` worker starts it with ``srun --overlap -n 2`` on its own node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ

from pyiron_assyst.calculators import AseCalculator
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.execution.launch import launcher
from pyiron_assyst.stages.relax import VolumeRelax, relax
from tests.external.toycode import ToyCode, toy_command
from tests.support.slurm import slurm  # noqa: F401  (session fixture)

RELAX = VolumeRelax(max_steps=8, force_tolerance=1e-3)


def structures() -> list[Atoms]:
    """Two strained cells (1 and 2 atoms) whose volume relaxation takes a few force calls."""
    fcc = bulk("Cu", "fcc", a=3.9)
    hcp = bulk("Cu", "hcp", a=2.7, c=4.3)
    hcp.positions[1] += (0.05, -0.03, 0.02)
    return [fcc, hcp]


def toy_config(launch: str, markers: Path) -> AseCalculator:
    return AseCalculator("tests.external.toycode:ToyCode",
                         {"command": toy_command(launch), "marker_dir": str(markers)})


def read_markers(directory: Path) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Markers by call: the Python side (``task``) and the program's ranks."""
    tasks, ranks = {}, defaultdict(list)
    for path in directory.glob("*.json"):
        call, kind = path.name.split(".")[:2]
        data = json.loads(path.read_text())
        if kind == "task":
            tasks[call] = data
        else:
            ranks[call].append(data)
    return tasks, dict(ranks)


# ----------------------------------------------------------------- no cluster needed


def test_toy_program_is_ase_lennard_jones(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.5, cubic=True)
    atoms.rattle(0.05, seed=3)
    reference = atoms.copy()
    reference.calc = AseLJ(sigma=2.3, epsilon=0.4)
    atoms.calc = ToyCode(directory=str(tmp_path / "run"), marker_dir=str(tmp_path))
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(),
                                                         abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), reference.get_stress(), rtol=0, atol=1e-12)
    tasks, ranks = read_markers(tmp_path)
    assert len(tasks) == 1
    assert [r["rank"] for r in ranks[next(iter(tasks))]] == [0]


def test_launcher_follows_the_reserved_cores():
    assert launcher(Executor(kind="slurm_cluster", cores=2)) == "srun -n 2"
    assert launcher(Executor(kind="slurm_cluster", cores=4, threads_per_core=2)) == (
        "srun -n 4 -c 2")
    assert launcher(Executor(kind="slurm_job", cores=2)).startswith("srun --overlap ")
    assert launcher(Executor(kind="process", cores=8)) == "mpirun -np 8"
    assert launcher(Executor(kind="serial")) == ""
    assert launcher(Executor(kind="slurm_cluster", cores=2), starter="mpiexec") == "mpiexec -n 2"
    assert launcher(Executor(kind="process", cores=1), starter="mpiexec") == ""
    with pytest.raises(ValueError, match="starter"):
        launcher(Executor(kind="process", cores=2), starter="aprun")  # type: ignore[arg-type]
    assert toy_command("srun -n 2").startswith("srun -n 2 ")


# ----------------------------------------------------------------- on the local cluster


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_external_program_runs_on_two_ranks_per_call_inside_a_slurm_job(tmp_path, monkeypatch):
    executor = Executor(kind="slurm_cluster", cores=2, cache_directory=str(tmp_path / "cache"))
    (tmp_path / "slurm").mkdir()
    (tmp_path / "local").mkdir()
    on_slurm, report = relax(structures(), RELAX,
                             toy_config(launcher(executor), tmp_path / "slurm"), executor)
    monkeypatch.chdir(tmp_path / "local")
    local, _ = relax(structures(), RELAX, toy_config("", tmp_path / "local"),
                     Executor(kind="serial"))

    assert report.n_out == 2
    assert not report.drops
    for a, b in zip(on_slurm, local):  # the same program on 2 ranks and on 1: same numbers
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(a.cell.array, b.cell.array, rtol=0, atol=1e-12)
        assert a.info["force_calls"] == b.info["force_calls"]
    assert on_slurm[0].get_volume() < 0.9 * structures()[0].get_volume()  # it did relax

    tasks, ranks = read_markers(tmp_path / "slurm")
    assert len(tasks) == sum(a.info["force_calls"] for a in on_slurm) == len(ranks)
    for call, task in tasks.items():  # every force call: one srun step of exactly 2 ranks
        assert sorted(r["rank"] for r in ranks[call]) == [0, 1]
        assert {r["size"] for r in ranks[call]} == {2}
        assert len({(r["job"], r["step"]) for r in ranks[call]}) == 1  # one step ...
        assert ranks[call][0]["job"] == task["job"] is not None  # ... of the task's job
        assert len({r["pid"] for r in ranks[call]} | {task["pid"]}) == 3
    pids_per_job = defaultdict(set)
    for task in tasks.values():
        pids_per_job[task["job"]].add(task["pid"])
    assert len(pids_per_job) == 2  # one job per relaxation, ...
    assert all(len(pids) == 1 for pids in pids_per_job.values())  # ... its Python ran once

    local_tasks, local_ranks = read_markers(tmp_path / "local")
    assert {r["size"] for calls in local_ranks.values() for r in calls} == {1}
    assert {t["job"] for t in local_tasks.values()} == {None}


def drive_in_allocation(markers: str) -> None:
    """Driver run under ``salloc -n 2``: relax with ``slurm_job`` workers, print energies."""
    executor = Executor(kind="slurm_job", cores=2)
    relaxed, report = relax(structures(), RELAX, toy_config(launcher(executor), Path(markers)),
                            executor)
    assert report.n_out == 2, report.summary()
    print(json.dumps([a.get_potential_energy() for a in relaxed]))


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_external_program_runs_on_two_ranks_from_a_slurm_job_worker(tmp_path, monkeypatch):
    code = ("from pyiron_assyst.core.config import register_import_prefix; "
            "register_import_prefix('tests'); "
            "from tests.test_external_code import drive_in_allocation; "
            f"drive_in_allocation({str(tmp_path)!r})")
    proc = subprocess.run(["salloc", "-n", "2", sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    energies = json.loads(proc.stdout.strip().splitlines()[-1])
    (tmp_path / "local").mkdir()
    monkeypatch.chdir(tmp_path / "local")
    local, _ = relax(structures(), RELAX, toy_config("", tmp_path / "local"),
                     Executor(kind="serial"))
    assert energies == pytest.approx([a.get_potential_energy() for a in local], abs=1e-12)
    tasks, ranks = read_markers(tmp_path)
    assert len(tasks) == len(ranks) > 0
    assert all(sorted(r["rank"] for r in ranks[call]) == [0, 1] for call in tasks)
    assert len({task["pid"] for task in tasks.values()}) == 1  # one persistent worker
