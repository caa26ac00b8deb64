"""GPAW, the real DFT code of the tests and examples: plane waves, per-structure k-points, MPI.

:class:`Gpaw` is a calculator config with the settings that matter for training data: the
plane-wave cutoff, the exchange-correlation functional, the smearing, a k-point *density* (the
mesh follows each cell, :func:`~pyiron_assyst.calculators.structure_settings.kpoints_from_density`),
initial magnetic moments, spin-polarised isolated atoms (for reference energies), the SCF
iteration limit, the density mixer and symmetry, and a :class:`~pyiron_assyst.calculators.repair.
RepairPolicy` for failed calculations. What it derived for a structure is recorded on it
(``kpoint_mesh``, ``kpoint_density``, ``spin_polarized``; see
:meth:`Gpaw.prepare`).

**Where it runs.** With ``launch=""`` (default) GPAW runs inside the task's own process: the
right choice for one core per calculation. With a launcher prefix (from
:func:`~pyiron_assyst.execution.launch.launcher`, e.g. ``"mpiexec -n 2"``) every evaluation runs
as its own MPI program, ``<launch> python -m pyiron_assyst.calculators._gpaw_worker <dir>``, on
the cores the executor reserved for the task, with ``GPAW_MPI_BACKEND=cgpaw`` set; the
program gets the same GPAW keywords the serial path would use and evaluates them the same way
(:func:`evaluate_gpaw`). GPAW needs an MPI-enabled build for that (``gpaw info`` says
``MPI enabled yes``).

Install with ``pip install "pyiron_assyst[dft]"`` (GPAW builds from source: it needs a C++
compiler, ``CC=g++``, and libxc, BLAS, LAPACK and optionally Open MPI; see the installation
page).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import (
    BaseCalculator,
    CalculationFailed,
    Calculator,
    SCFError,
    all_changes,
)

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.repair import RepairPolicy
from pyiron_assyst.calculators.structure_settings import (
    Derived,
    derive_settings,
    moment_pairs,
    record_settings,
)
from pyiron_assyst.core.config import require

__all__ = ["OCCUPATIONS", "Gpaw", "GpawCalculator", "GpawConvergenceError", "GpawProcess",
           "GpawProcessError", "evaluate_gpaw", "worker_main"]

OCCUPATIONS = ("fermi-dirac", "marzari-vanderbilt", "methfessel-paxton")
"""Smearing methods GPAW accepts by name."""

WORKER_MODULE = "pyiron_assyst.calculators._gpaw_worker"
"""Module run as ``python -m`` under the launcher for one evaluation."""


def _positive(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


@dataclass(frozen=True)
class Gpaw(CalculatorConfig):
    """GPAW in plane-wave mode, with k-points, moments and spin following each structure.

    Parameters
    ----------
    ecut
        Plane-wave cutoff in eV.
    xc
        Exchange-correlation functional as GPAW names it (``"PBE"``, ``"LDA"``, ``"PBEsol"``).
    smearing
        Width of the occupation smearing in eV (``0`` is not allowed: metals need it).
    occupations
        Smearing method, one of :data:`OCCUPATIONS`.
    kpoint_density
        k-points per Å⁻¹ of reciprocal length (unit Å; ASE's ``kpts={"density": ...}``).
    even_kpoints
        Round meshes up to even numbers.
    maxiter
        SCF iteration limit; GPAW raises ``KohnShamConvergenceError`` beyond it.
    mixer_beta
        Density-mixing fraction (GPAW's Pulay mixer with ``nmaxold=5``, ``weight=50``);
        ``None``: GPAW's default mixer.
    symmetry
        Use the crystal's point-group symmetry to reduce k-points.
    magmoms
        Initial magnetic moment per element in μB (a dict is accepted); a structure with a
        non-zero moment is computed spin-polarised.
    isolated_spin_polarized
        Compute isolated atoms spin-polarised, with ``isolated_magmoms`` (Γ-only mesh anyway).
    isolated_magmoms
        Initial moment per element for isolated atoms in μB; default: ASE's ground-state moment
        of the free atom.
    isolated_distance
        A single atom is isolated when all its periodic images are at least this far (Å).
    launch
        MPI launcher prefix (see :func:`~pyiron_assyst.execution.launch.launcher`); ``""``:
        run GPAW in the task's own process.
    repair
        What to do when a calculation fails (``None``: record the failure, do not retry).
    """

    ecut: float = 400.0
    xc: str = "PBE"
    smearing: float = 0.1
    occupations: str = "fermi-dirac"
    kpoint_density: float = 4.0
    even_kpoints: bool = False
    maxiter: int = 333
    mixer_beta: float | None = None
    symmetry: bool = True
    magmoms: tuple[tuple[str, float], ...] = ()
    isolated_spin_polarized: bool = True
    isolated_magmoms: tuple[tuple[str, float], ...] = ()
    isolated_distance: float = 8.0
    launch: str = ""
    repair: RepairPolicy | None = None

    def __post_init__(self) -> None:
        name = "Gpaw"
        require(_positive(self.ecut), name, "ecut", "a cutoff > 0 eV", self.ecut)
        require(isinstance(self.xc, str) and bool(self.xc), name, "xc",
                "a functional name such as 'PBE'", self.xc)
        require(_positive(self.smearing), name, "smearing", "a width > 0 eV", self.smearing)
        require(self.occupations in OCCUPATIONS, name, "occupations", f"one of {OCCUPATIONS}",
                self.occupations)
        require(_positive(self.kpoint_density), name, "kpoint_density", "a number > 0 Å",
                self.kpoint_density)
        require(isinstance(self.maxiter, int) and not isinstance(self.maxiter, bool)
                and self.maxiter >= 1, name, "maxiter", "an int >= 1", self.maxiter)
        require(self.mixer_beta is None or (_positive(self.mixer_beta) and self.mixer_beta <= 1),
                name, "mixer_beta", "None or a fraction in (0, 1]", self.mixer_beta)
        require(_positive(self.isolated_distance), name, "isolated_distance", "a number > 0 Å",
                self.isolated_distance)
        require(isinstance(self.launch, str), name, "launch", "a command prefix (str)",
                self.launch)
        require(self.repair is None or isinstance(self.repair, RepairPolicy), name, "repair",
                "None or a RepairPolicy", self.repair)
        object.__setattr__(self, "magmoms", moment_pairs(name, "magmoms", self.magmoms))
        object.__setattr__(self, "isolated_magmoms",
                           moment_pairs(name, "isolated_magmoms", self.isolated_magmoms))
        for key in ("ecut", "smearing", "kpoint_density", "isolated_distance"):
            object.__setattr__(self, key, float(getattr(self, key)))
        if self.repair is not None:  # a rule the config cannot apply fails here, not in a run
            names = {f.name for f in fields(self)} - {"repair", "launch"}
            for rule in self.repair.rules:
                unknown = sorted({key for key, _ in rule.changes} - names)
                require(not unknown, name, "repair", f"rules that change settings of Gpaw "
                        f"({sorted(names)}); rule {rule.name!r} changes {unknown}", rule)
                replace(self, repair=None, **dict(rule.changes))  # values are checked too

    # ------------------------------------------------------------------ per structure

    def derive(self, atoms: Atoms) -> Derived:
        """Mesh, initial moments (μB), spin and isolation of ``atoms``."""
        return derive_settings(self, atoms)

    def prepare(self, atoms: Atoms) -> Atoms:
        """A copy of ``atoms`` with its initial moments (μB) and the info keys ``kpoint_mesh``,
        ``kpoint_density`` (Å) and ``spin_polarized`` recorded."""
        return record_settings(atoms, self.derive(atoms), self.kpoint_density)

    def gpaw_parameters(self, atoms: Atoms) -> dict[str, Any]:
        """Keyword arguments of ``gpaw.GPAW`` for ``atoms`` (JSON-able, mode as a dict)."""
        derived = self.derive(atoms)
        params: dict[str, Any] = {
            "mode": {"name": "pw", "ecut": self.ecut},
            "xc": self.xc,
            "kpts": list(derived.kpts or (1, 1, 1)),
            "occupations": {"name": self.occupations, "width": self.smearing},
            "maxiter": self.maxiter,
            "spinpol": derived.spin_polarized,
            "txt": None,
        }
        if self.mixer_beta is not None:
            params["mixer"] = {"beta": self.mixer_beta, "nmaxold": 5, "weight": 50.0}
        if not self.symmetry:
            params["symmetry"] = "off"
        return params

    def calculator_for(self, atoms: Atoms) -> BaseCalculator:
        """GPAW for ``atoms``: in this process, or a :class:`GpawProcess` under ``launch``.

        ``atoms`` should carry the initial moments :meth:`prepare` sets (the stages do that).
        """
        if self.launch:
            return GpawProcess(self.gpaw_parameters(atoms), self.launch)
        return GpawCalculator(self.gpaw_parameters(atoms))

    def get_calculator(self) -> BaseCalculator:
        """GPAW with the settings of a bulk cell (use :meth:`calculator_for` for k-points)."""
        return self.calculator_for(Atoms("H", cell=np.eye(3) * 3.0, pbc=True))

    def supported_elements(self) -> frozenset[str] | None:
        """Elements with a PAW setup for :attr:`xc` on this machine (``None``: unknown).

        Looks, without importing GPAW, where GPAW looks: ``$GPAW_SETUP_PATH`` and the
        ``gpaw-data`` package. ``None`` when no setup for this functional is found at all
        (GPAW may generate it, or it lives on the machine that runs ``launch``).
        """
        return setup_elements(self.xc)

    def repair_policy(self) -> RepairPolicy | None:
        return self.repair

    def with_parameters(self, changes: Mapping[str, Any]) -> Gpaw:
        """A copy with fields changed (e.g. ``{"maxiter": 500, "mixer_beta": 0.02}``)."""
        return super().with_parameters(changes)  # type: ignore[return-value]


def setup_directories() -> list[Path]:
    """Directories GPAW reads PAW setups from: ``$GPAW_SETUP_PATH`` (``:``-separated), then
    the ``gpaw-data`` package's ``setups`` (found without importing GPAW)."""
    from importlib.util import find_spec

    paths = [Path(p) for p in os.environ.get("GPAW_SETUP_PATH", "").split(os.pathsep) if p]
    spec = find_spec("gpaw_data")
    if spec is not None and spec.origin:
        paths.append(Path(spec.origin).parent / "setups")
    return [p for p in paths if p.is_dir()]


def setup_elements(xc: str) -> frozenset[str] | None:
    """Element symbols with a setup file ``<El>.<xc>`` or ``<El>.<xc>.gz`` (the standard
    setups; ``<El>.<n>.<xc>`` are semicore variants of the same element), ``None`` if there
    is none for ``xc`` at all."""
    from ase.data import chemical_symbols

    known = set(chemical_symbols[1:])
    found = set()
    for directory in setup_directories():
        for path in directory.iterdir():
            parts = path.name.removesuffix(".gz").split(".")
            if len(parts) in (2, 3) and parts[-1] == xc and parts[0] in known:
                found.add(parts[0])
    return frozenset(found) or None


class GpawCalculator(Calculator):
    """GPAW in this process behind ASE's ``Calculator`` protocol.

    GPAW's own ASE interface (``gpaw.new.ase_interface.ASECalculator``) is not an ASE
    ``Calculator``: it has no ``calculate`` to meter or check for NaN. This wrapper computes
    energy, free energy (eV), forces (eV/Å) and, for 3-D periodic cells, stress (eV/Å³) in one
    ``calculate`` and keeps the live GPAW object between evaluations of the same structure
    (a relaxation reuses its wave functions); a new structure (other atoms, pbc or moments)
    starts a new one.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, gpaw_parameters: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpaw_parameters = dict(gpaw_parameters)
        self.gpaw: Any = None

    def calculate(self, atoms: Atoms | None = None, properties: Any = ("energy",),
                  system_changes: Any = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        if self.gpaw is None or {"numbers", "pbc", "initial_magmoms"} & set(system_changes):
            from gpaw import GPAW

            self.gpaw = GPAW(**self.gpaw_parameters)
        self.results = evaluate_gpaw(self.gpaw, self.atoms.copy())


def evaluate_gpaw(gpaw: Any, atoms: Atoms) -> dict[str, Any]:
    """Energy and free energy (eV), forces (eV/Å) and, for 3-D periodic cells, stress (eV/Å³)
    of ``atoms`` from the live GPAW calculator ``gpaw`` (collective: call on every MPI rank)."""
    atoms.calc = gpaw
    results: dict[str, Any] = {"energy": float(atoms.get_potential_energy()),
                               "forces": np.array(atoms.get_forces())}
    results["free_energy"] = float(gpaw.get_property("free_energy", atoms))
    if atoms.pbc.all():
        results["stress"] = np.array(atoms.get_stress())
    return results


class GpawProcessError(CalculationFailed):
    """The GPAW program under the launcher failed with an error other than SCF convergence."""


class GpawConvergenceError(SCFError):
    """The GPAW program under the launcher reported that the SCF did not converge."""


class GpawProcess(Calculator):
    """One MPI run of ``pyiron_assyst.calculators._gpaw_worker`` per evaluation.

    The GPAW keywords are fixed when the calculator is built for a structure (as for
    :class:`GpawCalculator`: a relaxation keeps the k-point mesh of its start). Every evaluation
    writes ``input.json`` (the keywords and the structure) into a fresh temporary directory
    below the working directory (on a cluster, the job's directory on the shared file system,
    which the ranks on other nodes read too),
    runs ``<launch> <python> -m ..._gpaw_worker <dir>`` there and reads ``output.json`` (energy
    and free energy in eV, forces in eV/Å, stress in eV/Å³).
    A convergence failure in the program is raised as an ASE ``SCFError``
    (:class:`GpawConvergenceError`), any other as ``CalculationFailed``.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, gpaw_parameters: Mapping[str, Any], launch: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpaw_parameters = dict(gpaw_parameters)
        self.launch = launch
        self.ranks = 0
        """MPI ranks of the last evaluation (as the program's ``world.size`` reported)."""

    def command(self, directory: Path) -> str:
        """The shell command of one evaluation in ``directory``."""
        parts = [self.launch, shlex.quote(sys.executable), "-m", WORKER_MODULE,
                 shlex.quote(str(directory))]
        return " ".join(part for part in parts if part)

    def calculate(self, atoms: Atoms | None = None, properties: Any = ("energy",),
                  system_changes: Any = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        with tempfile.TemporaryDirectory(prefix="gpaw-", dir=os.getcwd()) as tmp:
            directory = Path(tmp)
            from ase.io.jsonio import encode

            (directory / "input.json").write_text(json.dumps(
                {"parameters": self.gpaw_parameters, "atoms": encode(self.atoms)}))
            env = {**os.environ, "GPAW_MPI_BACKEND": "cgpaw"}
            proc = subprocess.run(self.command(directory), shell=True, cwd=directory, env=env,
                                  capture_output=True, text=True)
            output = directory / "output.json"
            data = json.loads(output.read_text()) if output.is_file() else None
        if data is None or "error" in data:
            raise _process_failure(self.launch, proc, data)
        self.ranks = int(data["ranks"])
        self.results = {key: np.array(value) if isinstance(value, list) else float(value)
                        for key, value in data["results"].items()}


def _process_failure(launch: str, proc: subprocess.CompletedProcess[str],
                     data: dict[str, Any] | None) -> CalculationFailed:
    """The error of a failed GPAW program: the worker's own error (an SCF failure as
    :class:`GpawConvergenceError`), or, without ``output.json``, a :class:`GpawProcessError`
    with the exit status (a signal when it was killed) and the tail of its output."""
    status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
              else f"exit {proc.returncode}")
    if data is None:
        tail = (proc.stderr or proc.stdout)[-2000:].strip()
        return GpawProcessError(f"GPAW under {launch!r} ({status}) wrote no output.json"
                                + (f": {tail}" if tail else ""))
    kind = str(data["error"])
    error = GpawConvergenceError if kind.endswith("ConvergenceError") else GpawProcessError
    return error(f"GPAW under {launch!r} ({status}): {kind}: {data['message']}")


def worker_main(directory: str) -> int:
    """Evaluate ``directory/input.json`` with GPAW (on every MPI rank); rank 0 writes
    ``output.json``. Returns the exit code (0 on success, 1 after writing an error)."""
    from ase.io.jsonio import decode
    from gpaw.mpi import world

    path = Path(directory)
    data = json.loads((path / "input.json").read_text())
    atoms = decode(data["atoms"])
    try:
        from gpaw import GPAW

        results = evaluate_gpaw(GPAW(**data["parameters"]), atoms)
        out: dict[str, Any] = {"ranks": world.size, "results": {
            key: value.tolist() if isinstance(value, np.ndarray) else value
            for key, value in results.items()}}
        code = 0
    except Exception as error:  # reported to the calling task, which classifies it
        out = {"error": type(error).__name__, "message": str(error)}
        code = 1
    if world.rank == 0:
        (path / "output.json").write_text(json.dumps(out))
    return code
