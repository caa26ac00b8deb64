"""An ASE file-based calculator for the external toy program ``toy_dft.py``.

This is the recipe for any DFT code run as its own (MPI) program by an ASE
:class:`~ase.calculators.calculator.FileIOCalculator`, shown on a program small enough to ship
with the tests:

1. The stage's :class:`~pyiron_assyst.execution.executors.Executor` reserves the cores of one
   calculation per task (``cores=N``); the Python task itself runs once per task.
2. The calculator's ``command`` starts the program on those cores through a launcher,
   :func:`pyiron_assyst.execution.launch.launcher` (``srun -n N`` in a SLURM job,
   ``mpirun -np N`` on one machine).
3. The calculator travels as a config, ``AseCalculator("tests.external.toycode:ToyCode",
   {"command": toy_command(launcher(executor))})``, and is built inside the task.

Every evaluation writes ``toy.in`` into the calculator's directory (default ``toycode-<pid>``
below the working directory, which on ``"slurm_cluster"`` is the job's own directory), runs the
command there and reads ``toy.out``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import FileIOCalculator

__all__ = ["PROGRAM", "ToyCode", "toy_command"]

PROGRAM = Path(__file__).resolve().with_name("toy_dft.py")
"""The external program (standard-library Python, started by the command like a binary)."""


def toy_command(launch: str = "") -> str:
    """Shell command of one evaluation: ``<launch> python toy_dft.py toy.in toy.out``."""
    parts = [launch, shlex.quote(sys.executable), shlex.quote(str(PROGRAM)), "toy.in", "toy.out"]
    return " ".join(part for part in parts if part)


class ToyCode(FileIOCalculator):
    """Lennard-Jones through the external program ``toy_dft.py`` (files in, files out).

    Parameters
    ----------
    command
        Shell command run in ``directory`` (default :func:`toy_command` without launcher).
    marker_dir
        If given, every evaluation writes ``<call>.task.json`` here (from this Python
        process) and the program's ranks write ``<call>.rank<r>.json``.
    directory
        Where ``toy.in`` and ``toy.out`` are written (default ``toycode-<pid>``).
    sigma, epsilon, rc
        Lennard-Jones zero crossing (Å), well depth (eV) and cutoff (Å, default 3 σ).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters: dict[str, Any] = {"sigma": 2.3, "epsilon": 0.4, "rc": None}
    discard_results_on_any_change = True

    def __init__(self, command: str | None = None, marker_dir: str | None = None,
                 directory: str | None = None, **kwargs: Any) -> None:
        self.marker_dir = marker_dir
        super().__init__(command=command or toy_command(),
                         directory=directory or f"toycode-{os.getpid()}", **kwargs)

    def write_input(self, atoms, properties=None, system_changes=None) -> None:
        super().write_input(atoms, properties, system_changes)
        sigma = float(self.parameters.sigma)
        call = uuid.uuid4().hex
        data = {"numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
                "cell": atoms.cell.array.tolist(), "pbc": [bool(p) for p in atoms.pbc],
                "sigma": sigma, "epsilon": float(self.parameters.epsilon),
                "rc": float(self.parameters.rc or 3 * sigma), "call": call,
                "marker_dir": self.marker_dir}
        Path(self.directory, "toy.in").write_text(json.dumps(data))
        if self.marker_dir:
            marker = {"pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID")}
            Path(self.marker_dir, f"{call}.task.json").write_text(json.dumps(marker))

    def read_results(self) -> None:
        path = Path(self.directory, "toy.out")
        data = json.loads(path.read_text())
        path.unlink()  # a failed next run must not read this one's output
        self.results = {"energy": data["energy"], "free_energy": data["free_energy"],
                        "forces": np.array(data["forces"])}
        if "stress" in data:
            self.results["stress"] = np.array(data["stress"])
