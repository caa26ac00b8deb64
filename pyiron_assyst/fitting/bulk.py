"""Bulk phases of one element for the transferability report: structures, E–V curves, the
ground state, elastic constants, defect cells and slabs.

Plain functions on a calculator *source* (a callable giving a calculator with fresh state for
a structure, see :func:`energy`). Volumes are in Å³/atom, energies in eV (``free_energy``
where the calculator gives one), lattice constants in Å, elastic constants in GPa.

- :func:`phase_structure`: the primitive cell of fcc, bcc, hcp (any c/a) or sc at a volume.
- :func:`equilibrium`: the equilibrium volume, energy and bulk modulus of a phase (a coarse
  scan, then a Birch–Murnaghan fit near the minimum); :func:`relaxed_c_over_a` for hcp.
- :func:`ground_state`: the lowest of the phases for a calculator (the reference's ground
  state is what the vacancy, the surfaces and the MD of the report are built on).
- :func:`elastic_constants`: C11, C12, C44 (and C13, C33 for hcp) from energy–strain curves.
- :func:`conventional_cell`, :func:`supercell`, :func:`slab`: cells built on a phase.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.core.config import require

__all__ = ["FACETS", "PHASES", "Phase", "conventional_cell", "elastic_constants", "energy",
           "eos", "equilibrium", "ground_state", "nearest_neighbour", "phase_structure",
           "relaxed_c_over_a", "slab", "supercell"]

logger = logging.getLogger(__name__)

Source = Callable[[Atoms], BaseCalculator]
"""A calculator for a structure (fresh state)."""

PHASES = ("fcc", "bcc", "hcp", "sc")
"""Phases of the energy–volume curves and candidates for the ground state."""
IDEAL_C_OVER_A = math.sqrt(8.0 / 3.0)
FACETS = {"fcc": ("111", "100"), "bcc": ("110", "100"), "hcp": ("0001", "10-10"),
          "sc": ("100", "110")}
"""Surfaces of the report per phase (Miller indices; hcp in four-index notation)."""
_MILLER = {"111": (1, 1, 1), "100": (1, 0, 0), "110": (1, 1, 0), "0001": (0, 0, 1),
           "10-10": (1, 0, 0)}
_ATOMS_PER_CUBE = {"fcc": 4.0, "bcc": 2.0, "sc": 1.0}


@dataclass(frozen=True)
class Phase:
    """A phase at its equilibrium: name, volume (Å³/atom), energy (eV/atom), bulk modulus (GPa)
    and c/a (hcp; the ideal value otherwise)."""

    name: str
    volume: float
    energy: float
    bulk_modulus: float
    c_over_a: float = IDEAL_C_OVER_A

    @property
    def a(self) -> float:
        """Lattice constant in Å (the conventional cube's edge for cubic phases)."""
        return _lattice(self.name, self.volume, self.c_over_a)["a"] if math.isfinite(
            self.volume) else math.nan


def energy(atoms: Atoms, source: Source) -> float:
    """Energy of ``atoms`` in eV (``free_energy`` where the calculator has one)."""
    work = atoms.copy()
    work.calc = source(work)
    value = work.get_potential_energy()
    return float(work.calc.results.get("free_energy", value))


def _lattice(phase: str, volume: float, c_over_a: float = IDEAL_C_OVER_A) -> dict[str, float]:
    if phase == "hcp":
        a = (2.0 * volume / (math.sqrt(3.0) / 2.0 * c_over_a)) ** (1.0 / 3.0)
        return {"a": a, "c": a * c_over_a}
    return {"a": (_ATOMS_PER_CUBE[phase] * volume) ** (1.0 / 3.0)}


def phase_structure(element: str, phase: str, volume: float,
                    c_over_a: float = IDEAL_C_OVER_A) -> Atoms:
    """Primitive cell of ``phase`` with ``volume`` Å³/atom (hcp with ``c_over_a``)."""
    from ase.build import bulk

    require(phase in PHASES, "phase_structure", "phase", f"one of {PHASES}", phase)
    return bulk(element, phase, **_lattice(phase, volume, c_over_a))


def conventional_cell(element: str, phase: Phase) -> Atoms:
    """The conventional cell of ``phase`` (cubic for fcc, bcc, sc; orthorhombic for hcp)."""
    from ase.build import bulk

    lattice = _lattice(phase.name, phase.volume, phase.c_over_a)
    if phase.name == "hcp":
        return bulk(element, "hcp", orthorhombic=True, **lattice)
    return bulk(element, phase.name, cubic=True, **lattice)


def nearest_neighbour(element: str, phase: Phase) -> float:
    """Nearest-neighbour distance of ``phase`` in Å."""
    from pyiron_assyst.numerics.distances import shortest_distance_in

    return shortest_distance_in(phase_structure(element, phase.name, phase.volume,
                                                phase.c_over_a))


def supercell(element: str, phase: Phase, sites: int) -> Atoms:
    """The conventional cell repeated n × n × n with the smallest n giving ``sites`` sites."""
    cell = conventional_cell(element, phase)
    n = max(1, math.ceil((sites / len(cell)) ** (1.0 / 3.0) - 1e-9))
    return cell.repeat((n, n, n))


def slab(element: str, phase: Phase, facet: str, layers: int, vacuum: float,
         lateral: int = 1) -> Atoms:
    """An unrelaxed slab of ``phase`` with the ``facet`` surface (both sides), ``layers``
    layers, ``vacuum`` Å between images and ``lateral`` × ``lateral`` surface cells."""
    from ase.build import surface

    require(facet in FACETS[phase.name], "slab", "facet", f"one of {FACETS[phase.name]}",
            facet)
    primitive = phase_structure(element, phase.name, phase.volume, phase.c_over_a)
    base = primitive if phase.name == "hcp" else conventional_cell(element, phase)
    built = surface(base, _MILLER[facet], layers, vacuum=vacuum / 2, periodic=True)
    return built.repeat((lateral, lateral, 1))


# --------------------------------------------------------------------------- E–V and EOS


def curve(element: str, phase: str, volumes: np.ndarray, source: Source,
          c_over_a: float = IDEAL_C_OVER_A) -> np.ndarray:
    """Energies per atom (eV/atom) of ``phase`` at ``volumes`` (Å³/atom)."""
    values = []
    for volume in volumes:
        atoms = phase_structure(element, phase, float(volume), c_over_a)
        values.append(energy(atoms, source) / len(atoms))
    return np.array(values)


def eos(volumes: np.ndarray, energies: np.ndarray) -> tuple[float, float, float]:
    """Birch–Murnaghan ``(V0 Å³/atom, E0 eV/atom, B GPa)``; NaN where the fit fails or its V0
    is not within 0.5 × the smallest to 2 × the largest sampled volume."""
    from ase.eos import EquationOfState

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    except Exception as error:  # no minimum inside the range, singular fit
        logger.warning("EOS fit failed: %s", error)
        return math.nan, math.nan, math.nan
    if not (np.isfinite(v0) and 0.5 * volumes.min() <= v0 <= 2.0 * volumes.max()):
        # a curve without a minimum near the sampled volumes (e.g. an untrained model) can fit
        # to a negative or far-off volume: no equilibrium, not a structure to build
        logger.warning("EOS fit gives no equilibrium near the sampled volumes (V0 %s)", v0)
        return math.nan, math.nan, math.nan
    if not volumes.min() <= v0 <= volumes.max():
        logger.warning("EOS minimum %.3f outside the sampled volumes", v0)
    return float(v0), float(e0), float(b / units.GPa)


def _volume_guess(element: str) -> float:
    from ase.data import atomic_numbers, covalent_radii

    return 4.0 / 3.0 * math.pi * covalent_radii[atomic_numbers[element]] ** 3 * 1.4


def equilibrium(element: str, phase: str, source: Source,
                c_over_a: float = IDEAL_C_OVER_A) -> Phase:
    """Equilibrium of ``phase`` for ``source``: a scan over 0.5–2 × a volume guessed from the
    covalent radius, then a Birch–Murnaghan fit over ±6 % around the scan's minimum."""
    scan = _volume_guess(element) * np.linspace(0.5, 2.0, 31)
    best = float(scan[int(np.argmin(curve(element, phase, scan, source, c_over_a)))])
    fine = best * np.linspace(0.94, 1.06, 9)
    v0, e0, b = eos(fine, curve(element, phase, fine, source, c_over_a))
    return Phase(phase, v0, e0, b, c_over_a)


def relaxed_c_over_a(element: str, source: Source, points: int = 9) -> Phase:
    """hcp at its lowest c/a: equilibria over c/a in 0.85–1.15 × ideal, then a parabola
    through the three best; the hcp :class:`Phase` at that c/a."""
    ratios = IDEAL_C_OVER_A * np.linspace(0.85, 1.15, points)
    energies = np.array([equilibrium(element, "hcp", source, float(r)).energy for r in ratios])
    if not np.all(np.isfinite(energies)):
        return equilibrium(element, "hcp", source)
    i = int(np.clip(np.argmin(energies), 1, points - 2))
    c2, c1, _ = np.polyfit(ratios[i - 1:i + 2], energies[i - 1:i + 2], 2)
    best = float(-c1 / (2 * c2)) if c2 > 0 else float(ratios[int(np.argmin(energies))])
    best = float(np.clip(best, ratios[0], ratios[-1]))
    return equilibrium(element, "hcp", source, best)


def ground_state(phases: dict[str, Phase]) -> Phase:
    """The phase of lowest equilibrium energy (phases whose fit failed are skipped)."""
    finite = [p for p in phases.values() if math.isfinite(p.energy)]
    if not finite:
        raise ValueError("no phase has an equilibrium energy: the EOS fits all failed")
    return min(finite, key=lambda p: p.energy)


# --------------------------------------------------------------------------- elastic constants


_STRAINS = {"xx": ((0, 0),), "xx+yy": ((0, 0), (1, 1)), "zz": ((2, 2),),
            "xx+zz": ((0, 0), (2, 2)), "yz": ((1, 2), (2, 1))}


def _strained(atoms: Atoms, kind: str, e: float) -> Atoms:
    strain = np.zeros((3, 3))
    for i, j in _STRAINS[kind]:
        strain[i, j] = e / 2 if kind == "yz" else e  # engineering shear strain e
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return out


def _strain_energy(atoms: Atoms, source: Source, relax: bool) -> float:
    work = atoms.copy()
    work.calc = source(work)
    if relax:
        from ase.optimize import BFGS

        BFGS(work, logfile=None).run(fmax=1e-4, steps=200)
    value = work.get_potential_energy()
    return float(work.calc.results.get("free_energy", value))


def _curvature(atoms: Atoms, source: Source, kind: str, delta: float) -> float:
    """d²(E/V)/de² in GPa of the strain ``kind`` (a quadratic through e = −2δ … 2δ)."""
    strains = delta * np.arange(-2, 3)
    relax = len(atoms) > 1
    values = [_strain_energy(_strained(atoms, kind, float(e)), source, relax)
              for e in strains]
    c2 = np.polyfit(strains, np.array(values) / atoms.get_volume(), 2)[0]
    return float(2 * c2 / units.GPa)


def elastic_constants(element: str, phase: Phase, source: Source,
                      delta: float = 0.005) -> dict[str, float]:
    """Elastic constants in GPa of ``phase`` at its equilibrium, from energy–strain curves.

    Strains of 0, ±δ, ±2δ: uniaxial ``xx`` gives C11, biaxial ``xx+yy`` gives 2 C11 + 2 C12,
    the engineering shear ``yz`` gives C44; for hcp (c along z) also ``zz`` (C33) and
    ``xx+zz`` (C11 + C33 + 2 C13). Positions relax at every strain in cells of more than one
    atom (hcp). Cubic phases return C11, C12, C44; hcp also C13, C33.
    """
    atoms = phase_structure(element, phase.name, phase.volume, phase.c_over_a)
    k = {kind: _curvature(atoms, source, kind, delta)
         for kind in (("xx", "xx+yy", "yz", "zz", "xx+zz") if phase.name == "hcp"
                      else ("xx", "xx+yy", "yz"))}
    out = {"C11": k["xx"], "C12": k["xx+yy"] / 2 - k["xx"], "C44": k["yz"]}
    if phase.name == "hcp":
        out["C33"] = k["zz"]
        out["C13"] = (k["xx+zz"] - k["xx"] - k["zz"]) / 2
    return out
