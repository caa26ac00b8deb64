"""Formation energies of alloys a binary training set never contained, for the transferability
report.

For a pair of elements (A, B) :func:`compounds` builds the ordered compounds L1₂ A₃B and AB₃,
B2 AB and L1₀ AB (ideal positions, c/a = 1) and a random fcc solid solution A₅₀B₅₀ (a seeded
random occupation of 2 × 2 × 2 cubic fcc cells; ideal sites). :func:`formation_energy` scales
a compound isotropically to its equilibrium volume for a calculator (a scan of 0.85–1.15 ×
Vegard's volume from the elements' ground states, then a Birch–Murnaghan fit) and subtracts
the elements' ground-state energies per atom (eV/atom):

    ΔH = E(compound)/N − Σ_i x_i E_i(ground state)

Every calculator is evaluated at its own equilibrium volume against its own elemental ground
states, so a model is compared with the reference on equal terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.fitting.bulk import Phase, energy, eos

__all__ = ["COMPOUNDS", "compounds", "formation_energy", "vegard_volume"]

Source = Callable[[Atoms], BaseCalculator]

COMPOUNDS = ("L12 A3B", "L12 AB3", "B2 AB", "L10 AB", "random fcc A50B50")
"""The structures :func:`compounds` builds, by their kind (A, B: the pair's elements)."""


def _fcc_based(symbols: list[str]) -> Atoms:
    """Cubic fcc cell of edge 1 Å with ``symbols`` at (0,0,0), (0,½,½), (½,0,½), (½,½,0)."""
    positions = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    return Atoms(symbols, scaled_positions=positions, cell=np.eye(3), pbc=True)


def _random_solution(a: str, b: str, seed: int) -> Atoms:
    cell = _fcc_based([a] * 4).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    symbols = np.array([a] * len(cell))
    symbols[rng.permutation(len(cell))[: len(cell) // 2]] = b
    cell.set_chemical_symbols(list(symbols))
    return cell


def compounds(a: str, b: str, seed: int = 0) -> dict[str, Atoms]:
    """The structures of :data:`COMPOUNDS` for the pair ``(a, b)``, named with the elements
    (e.g. ``"L12 Cu3Ag"``), each with a volume of 1 Å³ per atom (scale before use)."""
    b2 = Atoms([a, b], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3),
               pbc=True)
    built = {f"L12 {a}3{b}": _fcc_based([b, a, a, a]),
             f"L12 {a}{b}3": _fcc_based([a, b, b, b]),
             f"B2 {a}{b}": b2,
             f"L10 {a}{b}": _fcc_based([a, b, b, a]),
             f"random fcc {a}50{b}50": _random_solution(a, b, seed)}
    for atoms in built.values():
        atoms.set_cell(atoms.cell * (len(atoms) / atoms.get_volume()) ** (1 / 3),
                       scale_atoms=True)
    return built


def _fractions(atoms: Atoms) -> dict[str, float]:
    symbols = atoms.get_chemical_symbols()
    return {s: symbols.count(s) / len(symbols) for s in set(symbols)}


def vegard_volume(atoms: Atoms, ground: dict[str, Phase]) -> float:
    """Volume per atom (Å³) of ``atoms`` by Vegard's rule from the elements' ground states."""
    return sum(x * ground[s].volume for s, x in _fractions(atoms).items())


def _scaled(atoms: Atoms, volume: float) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell * (volume * len(atoms) / atoms.get_volume()) ** (1 / 3),
                 scale_atoms=True)
    return out


def formation_energy(atoms: Atoms, ground: dict[str, Phase], source: Source,
                     points: int = 7) -> tuple[float, float]:
    """``(ΔH eV/atom, V0 Å³/atom)`` of ``atoms`` for ``source``, at its equilibrium volume
    against ``ground`` (the same calculator's elemental ground states). ΔH falls back to the
    scan's lowest energy when the EOS fit fails (V0 is then NaN); both are NaN when an
    element's ground state has no equilibrium."""
    if not all(math.isfinite(ground[s].volume) and math.isfinite(ground[s].energy)
               for s in _fractions(atoms)):
        return math.nan, math.nan  # an element without an equilibrium: no formation energy
    scan = vegard_volume(atoms, ground) * np.linspace(0.85, 1.15, points)
    energies = np.array([energy(_scaled(atoms, v), source) / len(atoms) for v in scan])
    v0, e0, _ = eos(scan, energies)
    if not math.isfinite(e0):
        e0 = float(energies.min())
    reference = sum(x * ground[s].energy for s, x in _fractions(atoms).items())
    return e0 - reference, v0
