"""The VASP and Quantum ESPRESSO recipes of docs/hpc.md, as code the tests run.

``docs/hpc.md`` includes this file; ``tests/test_dft_recipes.py`` runs both recipes against fake
executables (``fake_dft.py``) that record the files ASE wrote and their own command line and
then fail with the code's own error text, so that the repair policies are exercised too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import AseCalculator, CalculatorConfig
from pyiron_assyst.calculators.repair import Repair, Repairing, RepairPolicy
from pyiron_assyst.calculators.structure_settings import StructureSettings
from pyiron_assyst.core.config import freeze

# ----------------------------------------------------------------------------- VASP
VASP_POLICY = RepairPolicy(
    rules=(
        # VASP's own error texts, found in its standard output (ASE writes it to vasp.out)
        Repair("zbrent", {"ibrion": 1}, match=r"ZBRENT: fatal error"),
        Repair("eddav", {"algo": "Normal"}, match=r"Error EDDDAV|EDDDAV: Call to ZHEGV"),
        Repair("too_few_bands", {"nbands": 64}, match=r"TOO FEW BANDS"),
        # no error text, but the electronic loop hit NELM: give it more steps
        Repair("more_nelm", {"nelm": 200}, kind="scf_not_converged"),
    ),
    max_attempts=3,
    log_files=("vasp.out", "OUTCAR"),
)


def vasp(launch: str, directory: str, command: str = "vasp_std") -> Repairing:
    """VASP through ASE's ``Vasp``: k-points from a density, Fe moments, spin, repairs.

    ``launch`` comes from :func:`pyiron_assyst.execution.launch.launcher`; ``directory`` must be
    private to one calculation at a time (on ``"slurm_cluster"``, the job's own directory).
    """
    base = AseCalculator("ase.calculators.vasp:Vasp", {
        "command": f"{launch} {command}".strip(), "directory": directory,
        "xc": "PBE", "encut": 520, "ismear": 1, "sigma": 0.1, "lwave": False,
        "lcharg": False})
    per_structure = StructureSettings(base, kpoint_density=5.0, magmoms={"Fe": 2.5},
                                      spin_parameters={"ispin": 2})
    return Repairing(per_structure, VASP_POLICY)


# ----------------------------------------------------------------------------- Quantum ESPRESSO
@dataclass(frozen=True)
class QuantumEspresso(CalculatorConfig, kind="mylab.QuantumEspresso"):
    """pw.x through ASE's ``Espresso``; its profile (an object) is built inside the task.

    A stable ``kind`` names the class in JSON and hashes; declare it as an entry point
    (group ``pyiron_assyst.configs``) so that a fresh process can load stored configs.
    """

    launch: str = ""                       # e.g. "srun -n 64", from launcher(executor)
    pw: str = "pw.x"
    pseudo_dir: str = "/shared/pseudo"
    pseudopotentials: tuple[tuple[str, str], ...] = (("Fe", "Fe.pbe-spn-kjpaw_psl.0.2.1.UPF"),)
    ecutwfc: float = 60.0                  # Ry
    smearing: float = 0.01                 # Ry, Marzari-Vanderbilt
    mixing_beta: float = 0.7
    electron_maxstep: int = 100
    kpts: tuple[int, int, int] | None = None   # set per structure by StructureSettings
    nspin: int = 1                              # 2 when spin-polarised, by StructureSettings
    directory: str = ""                    # "": a fresh one below the working directory

    def __post_init__(self) -> None:
        object.__setattr__(self, "pseudopotentials", freeze(dict(self.pseudopotentials)))
        if self.kpts is not None:
            object.__setattr__(self, "kpts", tuple(self.kpts))

    def get_calculator(self) -> BaseCalculator:
        from ase.calculators.espresso import Espresso, EspressoProfile

        profile = EspressoProfile(command=f"{self.launch} {self.pw}".strip(),
                                  pseudo_dir=self.pseudo_dir)
        system = {"ecutwfc": self.ecutwfc, "occupations": "smearing", "smearing": "mv",
                  "degauss": self.smearing, "nspin": self.nspin}
        return Espresso(
            profile=profile, kpts=self.kpts,
            directory=self.directory or tempfile.mkdtemp(prefix="qe-", dir="."),
            pseudopotentials=dict(self.pseudopotentials),
            input_data={"control": {"tprnfor": True, "tstress": True},
                        "system": system,
                        "electrons": {"mixing_beta": self.mixing_beta,
                                      "electron_maxstep": self.electron_maxstep}})

    def calculator_for(self, atoms: Atoms) -> BaseCalculator:
        return self.get_calculator()


QE_POLICY = RepairPolicy(
    rules=(
        Repair("qe_mixing", {"mixing_beta": 0.3, "electron_maxstep": 300},
               match=r"convergence NOT achieved"),
        Repair("qe_cholesky", {"mixing_beta": 0.2}, match=r"S matrix not positive definite"),
    ),
    max_attempts=3,
    log_files=("espresso.pwo",),
)


def quantum_espresso(launch: str, pseudo_dir: str, pw: str = "pw.x",
                     directory: str = "") -> Repairing:
    """Quantum ESPRESSO with k-points from a density, Fe moments, spin and repairs."""
    base = QuantumEspresso(launch=launch, pw=pw, pseudo_dir=pseudo_dir, directory=directory)
    per_structure = StructureSettings(base, kpoint_density=5.0, magmoms={"Fe": 2.5},
                                      spin_parameters={"nspin": 2})
    return Repairing(per_structure, QE_POLICY)
