"""The stages run through the reference implementation, ``assyst`` 1.0.0, as its notebooks do.

Each function returns the stage's output structures. The reference has no stage reports and no
labelling stage: force calls and time inside the calculator are counted by :data:`METER`,
which wraps the ``calculate`` method of every EMT calculator the reference builds (one per
structure, through an ``AseCalculatorConfig`` as its ``Relax.calculator``), and labelling is the
plain loop any user writes (set ``calc``, ask for energy, forces and stress, keep a single point).

pyiron_assyst patches one pyxtal function in the process that samples (a shared default
``Tol_matrix``, see ``pyiron_assyst.stages._pyxtal``); :func:`pristine_pyxtal` undoes that patch
while
the reference samples, so that the reference never runs faster than it would alone.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from assyst import crystals, filters, perturbations, relaxations
from assyst.calculators import AseCalculatorConfig
from bench_common import Case

NAME = "assyst 1.0.0"


@dataclass
class Meter:
    """Calculator evaluations and the time spent in them (s)."""

    calls: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.calls, self.seconds = 0, 0.0


METER = Meter()


def metered_emt() -> Calculator:
    """ASE EMT whose ``calculate`` calls are counted and timed in :data:`METER`."""
    calc = EMT()
    original = calc.calculate

    def calculate(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            METER.seconds += time.perf_counter() - start
            METER.calls += 1

    calc.calculate = calculate
    return calc


@dataclass(frozen=True, eq=True)
class MeteredEMT(AseCalculatorConfig):
    """The reference's calculator config: a new metered EMT per structure."""

    def get_calculator(self) -> Calculator:
        return metered_emt()


@contextlib.contextmanager
def pristine_pyxtal() -> Iterator[None]:
    """Undo pyiron_assyst's shared-``Tol_matrix`` patch of pyxtal for the duration."""
    import pyxtal.operations as operations

    patched = operations.Tol_matrix
    original = getattr(patched, "_original", None)
    if original is not None:
        operations.Tol_matrix = original
    try:
        yield
    finally:
        if original is not None:
            operations.Tol_matrix = patched


def sample(case: Case) -> tuple[list[Atoms], int]:
    """Sampled crystals after ``AspectFilter(6)``, and the number drawn before it."""
    formulas = crystals.Formulas(tuple(dict(f) for f in case.formulas))
    with pristine_pyxtal(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drawn = list(crystals.sample(formulas, spacegroups=list(case.spacegroups),
                                     max_atoms=case.max_atoms, rng=case.seed))
    return list(filter(filters.AspectFilter(6), drawn)), len(drawn)


def relax(structures: Sequence[Atoms], kind: str, max_steps: int = 100) -> list[Atoms]:
    """Volume (``kind="volume"``) or full relaxation, LBFGS to 1e-3 eV/Å in ``max_steps``."""
    cls = {"volume": relaxations.VolumeRelax, "full": relaxations.FullRelax}[kind]
    settings = cls(max_steps=max_steps, force_tolerance=1e-3, algorithm="LBFGS",
                   calculator=MeteredEMT())
    out = []
    PER_STRUCTURE_CALLS.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = METER.calls
        for relaxed in relaxations.relax(structures, settings):
            PER_STRUCTURE_CALLS.append(METER.calls - before)
            before = METER.calls
            out.append(relaxed)
    return out


PER_STRUCTURE_CALLS: list[int] = []
"""Force calls of every structure of the last :func:`relax`, in order."""


def converged(structures: Sequence[Atoms]) -> float:
    """Fraction of relaxed structures that reached the force tolerance."""
    return sum(bool(a.info.get("relax_converged")) for a in structures) / max(1, len(structures))


def published_perturbations(seed: int) -> list:
    """Four rattles and four stretches per structure, as in the SimpleUnary notebook.

    ``RandomChoice(a, b, chance)`` picks ``b`` with probability ``chance`` (its code and
    docstring); the notebook passes 0.7 while saying that hydrostatic changes should be drawn
    more often, so here ``b`` is the shear branch with chance 0.3 (70 % hydrostatic), the
    distribution pyiron_assyst's default draws.
    """
    rattle = perturbations.Rattle(0.25, rng=seed) + perturbations.Stretch(
        hydro=0.05, shear=0.005, rng=seed + 1)
    hydro = perturbations.Stretch(hydro=0.80, shear=0.05, rng=seed + 2)
    shear = perturbations.Stretch(hydro=0.05, shear=0.20, rng=seed + 3)
    stretch = perturbations.RandomChoice(hydro, shear, 0.3, rng=seed + 4)
    return 4 * [rattle] + 4 * [stretch]


def perturb(structures: Sequence[Atoms], seed: int) -> list[Atoms]:
    """Eight perturbed copies per structure, each kept when no pair is closer than 2 Å."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(perturbations.perturb(structures, published_perturbations(seed),
                                          filters=filters.DistanceFilter(1.0), retries=10))


def final_filter(structures: Sequence[Atoms]) -> list[Atoms]:
    """Structures with no pair closer than 2 Å and at most 300 Å³/atom."""
    check = filters.DistanceFilter(1.0) & filters.VolumeFilter(300.0)
    return list(filter(check, structures))


def label(structures: Sequence[Atoms]) -> list[Atoms]:
    """Energy, forces and stress of every structure with EMT, kept as a single point."""
    out = []
    for structure in structures:
        atoms = structure.copy()
        atoms.calc = metered_emt()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        out.append(atoms)
    return out
