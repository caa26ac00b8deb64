"""The command prefix that starts an MPI program on the cores a task reserves.

An :class:`~pyiron_assyst.execution.executors.Executor` with ``cores=N`` reserves N cores (MPI
ranks) per task, but runs the task's Python once. A code that runs as its own MPI program (VASP,
Quantum ESPRESSO, GPAW under MPI, ...) is started from inside the task on those cores with
:func:`launcher`, the one helper every MPI code config uses::

    from pyiron_assyst.execution.executors import Executor
    from pyiron_assyst.execution.launch import launcher

    executor = Executor(kind="slurm_cluster", cores=16, wall_time="02:00:00")
    launcher(executor)                     # 'srun -n 16'
    launcher(executor, starter="mpiexec")  # 'mpiexec -n 16'

``starter="srun"`` (the default) uses SLURM's own launcher on the scheduler kinds, which needs a
SLURM built with the MPI plugin the code's MPI library expects (``srun --mpi=list``);
``starter="mpiexec"`` uses the MPI library's ``mpiexec``, which inside a SLURM job reads the
job's allocation itself and needs no plugin. Outside SLURM both give ``mpiexec -n N``
(``mpirun -np N`` with ``starter="srun"``, as before), and one core gives ``""`` (run in
place). Running MPI as root (containers) additionally needs ``OMPI_ALLOW_RUN_AS_ROOT=1`` and
``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`` in the environment for Open MPI.
"""

from __future__ import annotations

from typing import Literal

from pyiron_assyst.execution.executors import Executor

__all__ = ["STARTERS", "launcher"]

STARTERS = ("srun", "mpiexec")
"""Allowed values of :func:`launcher`'s ``starter``."""


def launcher(executor: Executor, starter: Literal["srun", "mpiexec"] = "srun") -> str:
    """Command prefix that starts an MPI program on the cores ``executor`` reserves per task.

    Parameters
    ----------
    executor
        The executor of the stage; its ``cores`` (MPI ranks per task) and ``threads_per_core``
        are used.
    starter
        ``"srun"``: on ``"slurm_cluster"`` ``srun -n <cores>`` (a job step on the job's own
        reservation), on ``"slurm_job"`` ``srun --overlap -N 1 -w $SLURMD_NODENAME -n <cores>``
        (the worker's step already holds the CPUs, so the program's step must share them), on
        local kinds ``mpirun -np <cores>``. ``"mpiexec"``: ``mpiexec -n <cores>`` everywhere.
        ``threads_per_core > 1`` adds ``-c <threads>`` to srun (``--cpus-per-task`` is not
        inherited by srun since SLURM 22.05).

    Returns
    -------
    str
        The prefix, or ``""`` when a task has one core (the program runs in place).

    Raises
    ------
    ValueError
        If ``starter`` is not one of :data:`STARTERS`.
    """
    if starter not in STARTERS:
        raise ValueError(f"launcher: starter must be one of {STARTERS}; got {starter!r}")
    cores, threads = executor.cores, executor.threads_per_core
    if cores <= 1 and threads <= 1:
        return ""
    if starter == "mpiexec":
        return f"mpiexec -n {cores}"
    cpus = f" -c {threads}" if threads > 1 else ""
    if executor.kind == "slurm_cluster":
        return f"srun -n {cores}{cpus}"
    if executor.kind == "slurm_job":
        return f"srun --overlap -N 1 -w $SLURMD_NODENAME -n {cores}{cpus}"
    return f"mpirun -np {cores}" if cores > 1 else ""
