"""Dispatch through a real one-node SLURM cluster on localhost (scripts/slurm/start.sh).

The cluster tests skip, with the reason start.sh gives, where SLURM cannot be installed or
started (not root, no apt-get, no network); with ``PYIRON_ASSYST_REQUIRE_SLURM=1`` (CI) they
fail instead. Jobs run in fresh interpreters that import this module by name, so the repository
root is put on ``PYTHONPATH``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.execution.executors import Executor, run_tasks
from pyiron_assyst.execution.tasks import TaskError
from tests.support.slurm import REPO, slurm  # noqa: F401  (session fixture)

LATTICE = [3.5 + 0.05 * i for i in range(4)]  # Å


def emt_energy(a: float) -> tuple[float, str | None]:
    """EMT energy (eV) of fcc Cu with lattice constant ``a`` (Å), and the SLURM job it ran in."""
    atoms = Atoms("Cu", cell=[(0, a / 2, a / 2), (a / 2, 0, a / 2), (a / 2, a / 2, 0)], pbc=True)
    atoms.calc = EMT()
    return atoms.get_potential_energy(), os.environ.get("SLURM_JOB_ID")


def fail_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("two is not allowed")
    return 10 * x


def where(x: int) -> tuple[int, str | None, str | None]:
    return x, os.environ.get("SLURM_STEP_ID"), os.environ.get("CUDA_VISIBLE_DEVICES")


def _cluster_has_gpus() -> bool:
    return "gpu" in subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True,
                                   text=True).stdout


def _job_scripts(cache: Path) -> list[str]:
    return [p.read_text() for p in sorted(cache.glob("*/run_queue.sh"))]


# ----------------------------------------------------------------- no cluster needed


def test_job_script_writes_only_what_was_asked():
    script = Executor(kind="slurm_cluster").submission_template()
    assert "--partition" not in script  # the cluster's default partition, never an empty one
    assert "--gpus" not in script
    assert "--time" not in script
    assert "#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n" in script
    script = Executor(kind="slurm_cluster", cores=4, threads_per_core=2, gpus_per_core=1,
                      partition="gpu,debug", run_time_max=5401,
                      scheduler_args=("--exclusive", "--constraint=a100")).submission_template()
    for line in ("--ntasks=4", "--cpus-per-task=2", "--gpus-per-task=1",
                 "--partition=gpu,debug", "--time=1:31:00", "--exclusive",
                 "--constraint=a100"):
        assert f"#SBATCH {line}\n" in script


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"partition": ""}, "partition"), ({"partition": "a b"}, "partition"),
    ({"scheduler_args": ("exclusive",)}, "scheduler_args"),
    ({"scheduler_args": ("--x\n#SBATCH --y",)}, "scheduler_args"),
    ({"scheduler_args": ("--comment={{command}}",)}, "scheduler_args"),
    ({"cache_directory": "/tmp/a b"}, "cache_directory"),
])
def test_scheduler_fields_are_checked_at_construction(kwargs, field):
    with pytest.raises(ConfigError, match=f"Executor.{field}"):
        Executor(kind="slurm_cluster", **kwargs)


def test_slurm_job_uses_the_cpus_of_the_allocation(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert Executor(kind="slurm_job", cores=2).workers == 8
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "4(x2),2")
    assert Executor(kind="slurm_job").workers == 10
    executor = Executor(kind="slurm_job", partition="debug", cache_directory="/tmp/c")
    assert config_from_json(executor.to_json()) == executor


# ----------------------------------------------------------------- on the local cluster
# (slow: ~20 s, plus ~10 s for apt-get the first time)


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_slurm_cluster_matches_serial_and_resumes_from_cache(tmp_path):
    executor = Executor(kind="slurm_cluster", cache_directory=str(tmp_path), partition="debug")
    results = run_tasks(emt_energy, LATTICE, executor)
    serial = run_tasks(emt_energy, LATTICE, Executor(kind="serial"))
    assert [energy for energy, _ in results] == [energy for energy, _ in serial]  # bit-identical
    jobs = [job for _, job in results]
    assert None not in jobs
    assert len(set(jobs)) == len(LATTICE)
    assert all("#SBATCH --partition=debug\n" in s for s in _job_scripts(tmp_path))
    # a second driver finds every result in the cache: nothing is submitted again
    assert run_tasks(emt_energy, LATTICE, executor) == results


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_a_raising_task_is_returned_as_data_and_retried_next_time(tmp_path):
    executor = Executor(kind="slurm_cluster", cache_directory=str(tmp_path))
    results = run_tasks(fail_on_two, range(4), executor)
    assert [r for i, r in enumerate(results) if i != 2] == [0, 10, 30]
    assert isinstance(results[2], TaskError)
    assert str(results[2]) == "ValueError: two is not allowed"
    assert "fail_on_two" in results[2].traceback
    assert len(list(tmp_path.glob("*_o.h5"))) == 3  # the failure is not cached


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_gpu_request_and_partition_reach_the_job_script(tmp_path):
    executor = Executor(kind="slurm_cluster", cache_directory=str(tmp_path), partition="debug",
                        gpus_per_core=1, run_time_max=600, scheduler_args=("--comment=assyst",))
    [result] = run_tasks(where, [7], executor)
    [script] = _job_scripts(tmp_path)
    for line in ("--partition=debug", "--gpus-per-task=1", "--time=0:10:00",
                 "--comment=assyst", "--ntasks=1"):
        assert f"#SBATCH {line}\n" in script
    if _cluster_has_gpus():  # start.sh's pretend GPUs: the job really got one
        assert result[0] == 7
        assert result[2] == "0"
    else:  # no GPUs: sbatch refuses, and says why
        assert isinstance(result, TaskError)
        assert "gres" in str(result).lower()


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_slurm_job_runs_srun_workers_inside_an_allocation():
    driver = ("import json; from pyiron_assyst.execution.executors import Executor, run_tasks; "
              "from tests.test_slurm import LATTICE, emt_energy, where; "
              "print(json.dumps([run_tasks(emt_energy, LATTICE, Executor(kind='slurm_job')), "
              "run_tasks(where, range(4), Executor(kind='slurm_job'))]))")
    proc = subprocess.run(["salloc", "-n", "2", sys.executable, "-c", driver], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    energies, steps = json.loads(proc.stdout.strip().splitlines()[-1])
    serial = run_tasks(emt_energy, LATTICE, Executor(kind="serial"))
    assert [e for e, _ in energies] == [e for e, _ in serial]
    assert len({job for _, job in energies}) == 1  # all inside the one allocation
    assert [x for x, _, _ in steps] == [0, 1, 2, 3]
    assert all(step is not None for _, step, _ in steps)  # ran in srun steps
