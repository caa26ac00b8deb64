"""Curation of a labelled training set: caps, distance check, duplicates, reference energies.

:func:`curate` is the stage. It removes, in this order and each counted by reason in the
:class:`~pyiron_assyst.core.report.StageReport`:

1. ``"unlabelled"`` — no single point with energy and forces; ``"non_finite"`` — NaN/inf labels;
2. ``"min_distance"`` — two atoms closer than a
   :class:`~pyiron_assyst.stages.filters.DistanceFilter` allows;
3. ``"force_cap"`` — largest atomic force ``max_i |F_i|`` above ``force_cap`` (eV/Å);
4. ``"energy_cap"`` — energy per atom above the cap (eV/atom). **Relative** (the default):
   above the lowest energy per atom of the same composition (reduced formula) among the
   structures that passed steps 1-3. **Absolute**: above ``energy_cap`` itself, after the
   isolated-atom reference energies were subtracted (if given);
5. ``"duplicate"`` — the same composition, cell and positions as an earlier structure up to
   rotation, translation, permutation of atoms, choice of cell and symmetry, within
   ``duplicate_tolerance`` (Å). The first structure of a set of duplicates survives unchanged
   (its lineage is kept); each removed one names it in its drop detail.

Structures of the short-range stage (``info['short_range']``, see
:mod:`~pyiron_assyst.stages.short_range`) are exempt from steps 2-4: they exist to be close and
hot. They are still dropped when unlabelled, non-finite or duplicates; the report's notes count
them.

Energies are the fitting target, ``free_energy`` (``energy`` where there is none).

Duplicates are found through a fingerprint (:func:`fingerprint`) that is invariant under those
operations and changes by at most ``δ`` when atoms move by ``δ``: the cube root of the volume
per atom, the lengths of the shortest lattice vectors (successive minima), and for each pair of
species the sorted, pooled distances from every atom of the first species to its ``neighbors``
nearest neighbours of the second. Structures of one composition are bucketed together and
searched with a k-d tree in the Chebyshev metric, so 10⁴ structures of one composition cost
10⁴ tree queries, not 10⁸ comparisons. (Structures with identical fingerprints but different
arrangements — homometric pairs — would be taken for duplicates; among small random crystals
they do not occur in practice.)

:func:`reference_energies` computes isolated-atom energies with the same calculator config as
the labels (through the label stage, so structure-dependent settings such as spin-polarised
isolated atoms apply).
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid as _uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Literal

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import Config, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import NAMESPACE, stamp_root, uuid_of
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.numerics.distances import image_distances
from pyiron_assyst.stages.filters import DistanceFilter

SHORT_RANGE_KEY = "short_range"
"""``Atoms.info`` key of the short-range stage's structures (exempt from distance and caps)."""

__all__ = [
    "CurationConfig",
    "curate",
    "energies_of",
    "find_duplicates",
    "fingerprint",
    "isolated_atom",
    "label_isolated_atoms",
    "reference_energies",
    "reference_sum",
]

CURATE_STEP = "curate"
ISOLATED_STEP = "isolated_atom"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


@dataclass(frozen=True)
class CurationConfig(Config):
    """What :func:`curate` removes.

    Parameters
    ----------
    energy_cap
        Largest allowed energy per atom in eV/atom (``None``: no cap); see ``energy_mode``.
    energy_mode
        ``"relative"`` (default): cap on ``E/N - min(E/N)`` over the structures of the same
        composition. ``"absolute"``: cap on ``(E - Σ E_ref)/N`` with the reference energies
        passed to :func:`curate` (raw ``E/N`` if none are passed).
    force_cap
        Largest allowed atomic force norm in eV/Å (``None``: no cap).
    distance
        Minimum-distance check (``None``: none).
    deduplicate
        Remove duplicates.
    duplicate_tolerance
        Largest fingerprint difference (Chebyshev, Å) of two duplicates.
    neighbors
        Neighbours per atom and species in the fingerprint.
    """

    energy_cap: float | None = None
    energy_mode: Literal["relative", "absolute"] = "relative"
    force_cap: float | None = None
    distance: DistanceFilter | None = None
    deduplicate: bool = True
    duplicate_tolerance: float = 0.01
    neighbors: int = 8

    def __post_init__(self) -> None:
        name = "CurationConfig"
        require(self.energy_cap is None or _number(self.energy_cap), name, "energy_cap",
                "None or a finite number in eV/atom", self.energy_cap)
        require(self.energy_mode in ("relative", "absolute"), name, "energy_mode",
                "'relative' or 'absolute'", self.energy_mode)
        require(self.energy_mode == "absolute" or self.energy_cap is None or self.energy_cap >= 0,
                name, "energy_cap", ">= 0 eV/atom for energy_mode='relative'", self.energy_cap)
        require(self.force_cap is None or (_number(self.force_cap) and self.force_cap >= 0),
                name, "force_cap", "None or a number >= 0 eV/Å", self.force_cap)
        require(self.distance is None or isinstance(self.distance, DistanceFilter), name,
                "distance", "None or a DistanceFilter", self.distance)
        require(isinstance(self.deduplicate, bool), name, "deduplicate", "a bool",
                self.deduplicate)
        require(_number(self.duplicate_tolerance) and self.duplicate_tolerance >= 0, name,
                "duplicate_tolerance", "a number >= 0 Å", self.duplicate_tolerance)
        require(isinstance(self.neighbors, int) and not isinstance(self.neighbors, bool)
                and self.neighbors >= 1, name, "neighbors", "an integer >= 1", self.neighbors)


# --------------------------------------------------------------------------- reference energies


def isolated_atom(symbol: str, box: float = 12.0) -> Atoms:
    """One atom of ``symbol`` in a periodic orthorhombic box of ``box``, ``box + 0.5`` and
    ``box + 1`` Å (the unequal edges break the cubic symmetry that would force wrong orbital
    occupations in DFT), stamped as a root with a uuid derived from ``(symbol, box)``."""
    if symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"isolated_atom: {symbol!r} is not a chemical symbol")
    edges = (box, box + 0.5, box + 1.0)
    atoms = Atoms(symbol, positions=[[e / 2 for e in edges]], cell=edges, pbc=True)
    return stamp_root(atoms, str(_uuid.uuid5(NAMESPACE, f"isolated|{symbol}|{box!r}")),
                      step=ISOLATED_STEP)


def label_isolated_atoms(elements: Iterable[str], calculator: CalculatorConfig,
                         executor: Executor | None = None, box: float = 12.0,
                         cache: ResultCache | None = None, retry_failed: bool = False,
                         ) -> tuple[list[Atoms], StageReport]:
    """One :func:`isolated_atom` per element, labelled with ``calculator`` by the label stage.

    Faults are reported (an element whose calculation fails is missing from the result and
    dropped in the report) and structure-dependent settings (e.g. spin-polarised atoms) apply.
    With ``cache`` the single points are kept there by content like the labels (namespace
    ``"label"``), so a resumed run does not compute them again. The atoms carry
    ``info['short_range'] = "isolated"``: they are the very structures the short-range stage
    adds to the labels (same box), so with a cache one calculation per element serves both.

    Returns
    -------
    structures, report
        The labelled atoms (energies in eV) and the report of stage ``"isolated_atoms"``.
    """
    from pyiron_assyst.stages.label import label

    symbols = sorted(dict.fromkeys(elements), key=lambda s: atomic_numbers.get(s, 0))
    atoms = [isolated_atom(s, box) for s in symbols]
    for one in atoms:
        set_info(one, SHORT_RANGE_KEY, "isolated")
    labelled, report = label(atoms, calculator, executor, relabel=True, cache=cache,
                             retry_failed=retry_failed, desc=ISOLATED_STEP)
    return labelled, dataclasses.replace(report, stage="isolated_atoms")


def energies_of(isolated: Sequence[Atoms]) -> dict[str, float]:
    """``{symbol: E}`` in eV (``free_energy``) of labelled one-atom structures (e.g. from
    :func:`label_isolated_atoms`).

    Raises
    ------
    ValueError
        For a structure with more than one atom, without a label, or a repeated element.
    """
    energies: dict[str, float] = {}
    for atoms in isolated:
        if len(atoms) != 1 or getattr(atoms.calc, "results", None) is None:
            raise ValueError(f"energies_of: {uuid_of(atoms)} is not a labelled single atom")
        symbol = atoms.get_chemical_symbols()[0]
        if symbol in energies:
            raise ValueError(f"energies_of: two isolated atoms of {symbol}")
        energies[symbol] = _target_energy(atoms)
    return energies


def reference_energies(elements: Iterable[str], calculator: CalculatorConfig,
                       executor: Executor | None = None, box: float = 12.0,
                       ) -> tuple[dict[str, float], StageReport]:
    """Isolated-atom energies in eV (``free_energy``) computed with ``calculator``.

    :func:`label_isolated_atoms` followed by :func:`energies_of`; an element whose
    calculation fails is missing from the result and dropped in the report.

    Returns
    -------
    energies, report
        ``{symbol: E_ref}`` in eV and the report of stage ``"reference_energies"``.
    """
    labelled, report = label_isolated_atoms(elements, calculator, executor, box)
    return energies_of(labelled), dataclasses.replace(report, stage="reference_energies")


def _target_energy(atoms: Atoms) -> float:
    results = atoms.calc.results
    return float(results.get("free_energy", results["energy"]))


def reference_sum(atoms: Atoms, energies: Mapping[str, float]) -> float:
    """``Σ_i E_ref(element_i)`` in eV over the atoms of ``atoms``.

    Raises
    ------
    KeyError
        If an element of ``atoms`` has no reference energy (named in the message).
    """
    missing = sorted(set(atoms.get_chemical_symbols()) - set(energies))
    if missing:
        raise KeyError(f"no reference energy for {missing} (given: {sorted(energies)})")
    return math.fsum(float(energies[s]) for s in atoms.get_chemical_symbols())


# --------------------------------------------------------------------------- fingerprints


def _periodic_cell(atoms: Atoms) -> np.ndarray:
    """Full-rank cell: Minkowski-reduced if 3-D periodic, vacuum directions completed."""
    from ase.cell import Cell
    from ase.geometry import minkowski_reduce

    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        return np.asarray(minkowski_reduce(atoms.cell.array)[0], dtype=float)
    return Cell(atoms.cell.array).complete().array


def _distances(atoms: Atoms, radius: float) -> np.ndarray:
    """``d[i, j, s]``: distance from atom ``i`` to image ``s`` of atom ``j`` (Å), ``inf`` for
    an atom itself; complete for every distance up to ``radius``."""
    return image_distances(atoms.positions, atoms.cell.array, atoms.pbc, radius)


def _lattice_part(atoms: Atoms) -> list[float]:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return []
    from ase.geometry import minkowski_reduce

    cell = atoms.cell.array
    if pbc.all():
        minima = np.sort(np.linalg.norm(minkowski_reduce(cell)[0], axis=1))
        return [(abs(np.linalg.det(cell)) / len(atoms)) ** (1 / 3), *minima.tolist()]
    reduced = np.asarray(minkowski_reduce(cell, pbc=pbc)[0])[pbc]
    return np.sort(np.linalg.norm(reduced, axis=1)).tolist()


def fingerprint(atoms: Atoms, neighbors: int = 8) -> np.ndarray:
    """Permutation-, rotation-, translation- and cell-choice-invariant fingerprint in Å.

    The cube root of the volume per atom and the successive minima of the lattice (3-D; the
    reduced periodic vector lengths for slabs and rods), then for each ordered pair of species
    ``(a, b)`` (by atomic number) the sorted distances from every atom of ``a`` to its
    ``neighbors`` nearest atoms of ``b`` (periodic images included; fewer for clusters). Moving
    atoms by at most ``δ`` changes every component by at most ``2δ``.
    """
    numbers = atoms.numbers
    species = np.unique(numbers)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    parts = [np.array(_lattice_part(atoms))]
    if pbc.any():
        volume = abs(np.linalg.det(_periodic_cell(atoms)))
        rarest = min(int((numbers == z).sum()) for z in species)
        radius = 1.2 * (3 * neighbors * volume / (4 * math.pi * rarest)) ** (1 / 3)
    else:
        radius = math.inf
    while True:
        d = _distances(atoms, radius)
        pooled, complete = [], True
        for a in species:
            rows = d[numbers == a]
            for b in species:
                block = rows[:, numbers == b].reshape(len(rows), -1)
                k = neighbors if pbc.any() else min(neighbors, block.shape[1] - int(a == b))
                if k <= 0:
                    continue
                if block.shape[1] < k:
                    complete = False
                    break
                nearest = np.sort(np.partition(block, k - 1, axis=1)[:, :k], axis=1)
                complete &= bool(nearest[:, -1].max() <= radius)
                pooled.append(np.sort(nearest.ravel()))
        if complete:
            return np.concatenate(parts + pooled)
        radius *= 1.5


def _composition_key(atoms: Atoms) -> tuple:
    numbers, counts = np.unique(atoms.numbers, return_counts=True)
    return tuple(bool(p) for p in atoms.pbc), tuple(zip(numbers.tolist(), counts.tolist()))


def find_duplicates(structures: Sequence[Atoms], tolerance: float = 0.01,
                    neighbors: int = 8) -> list[int]:
    """Index of the structure each one duplicates (its own index for survivors).

    Structures are duplicates when they have the same periodicity and numbers of atoms per
    element and their :func:`fingerprint` agree within ``tolerance`` Å in every component.
    The earliest structure of a group survives; later ones within ``tolerance`` of it are its
    duplicates. Fingerprints are searched per composition with a k-d tree (Chebyshev metric).
    """
    from scipy.spatial import cKDTree

    survivor = list(range(len(structures)))
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, atoms in enumerate(structures):
        groups[_composition_key(atoms)].append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        prints = np.array([fingerprint(structures[i], neighbors) for i in members])
        tree = cKDTree(prints)
        assigned = np.zeros(len(members), dtype=bool)
        for local, index in enumerate(members):
            if assigned[local]:
                continue
            assigned[local] = True
            for other in tree.query_ball_point(prints[local], r=tolerance, p=np.inf):
                if not assigned[other]:
                    assigned[other] = True
                    survivor[members[other]] = index
    return survivor


# --------------------------------------------------------------------------- the stage


def _check_labels(atoms: Atoms) -> tuple[str, str] | None:
    results = getattr(atoms.calc, "results", None) or {}
    if "forces" not in results or not ({"energy", "free_energy"} & set(results)):
        return "unlabelled", "no single point with energy and forces"
    for key in ("energy", "free_energy", "forces", "stress"):
        if key in results and not np.all(np.isfinite(results[key])):
            return "non_finite", f"non-finite {key}"
    return None


def _reduced_formula(atoms: Atoms) -> str:
    numbers, counts = np.unique(atoms.numbers, return_counts=True)
    divisor = reduce(math.gcd, counts.tolist())
    return "".join(f"{chemical_symbols[z]}{c // divisor}" for z, c in zip(numbers, counts))


def _geometry_drop(atoms: Atoms, config: CurationConfig) -> tuple[str, str] | None:
    problem = _check_labels(atoms)
    if problem is not None:
        return problem
    if config.distance is not None and not config.distance(atoms):
        return "min_distance", config.distance.name
    if config.force_cap is not None and len(atoms):
        largest = float(np.linalg.norm(atoms.calc.results["forces"], axis=1).max())
        if largest > config.force_cap:
            return "force_cap", f"max |F| = {largest:.6g} eV/Å > {config.force_cap:g} eV/Å"
    return None


def _energy_drops(kept: list[Atoms], config: CurationConfig,
                  energies: Mapping[str, float] | None) -> dict[int, str]:
    """Index in ``kept`` -> drop detail for the energy cap."""
    if config.energy_cap is None:
        return {}
    per_atom = [_target_energy(a) / len(a) for a in kept]
    drops = {}
    if config.energy_mode == "absolute":
        for i, atoms in enumerate(kept):
            value = per_atom[i] - (reference_sum(atoms, energies) / len(atoms) if energies
                                   else 0.0)
            if value > config.energy_cap:
                drops[i] = f"E/N = {value:.6g} eV/atom > {config.energy_cap:g} eV/atom"
        return drops
    formulas = [_reduced_formula(a) for a in kept]
    lowest: dict[str, float] = {}
    for formula, value in zip(formulas, per_atom):
        lowest[formula] = min(value, lowest.get(formula, math.inf))
    for i, (formula, value) in enumerate(zip(formulas, per_atom)):
        above = value - lowest[formula]
        if above > config.energy_cap:
            drops[i] = (f"{above:.6g} eV/atom above the lowest {formula} "
                        f"> {config.energy_cap:g} eV/atom")
    return drops


def curate(structures: Sequence[Atoms], config: CurationConfig | None = None,
           reference_energies: Mapping[str, float] | None = None,
           ) -> tuple[list[Atoms], StageReport]:
    """Remove unlabelled, too close, too hot, too strained and duplicate structures.

    Parameters
    ----------
    structures
        Labelled structures; neither copied nor modified.
    config
        What to remove (default :class:`CurationConfig`: only unlabelled / non-finite ones and
        duplicates).
    reference_energies
        Isolated-atom energies in eV per element, used by the absolute energy cap.

    Returns
    -------
    kept, report
        The surviving structures (the same objects, in input order) and the report of stage
        ``"curate"`` with one drop per removed structure (reasons in the module docstring).
    """
    start = time.perf_counter()
    config = config or CurationConfig()
    drops: dict[int, Drop] = {}
    exempt = {i for i, atoms in enumerate(structures) if SHORT_RANGE_KEY in atoms.info}
    for i, atoms in enumerate(structures):
        problem = _check_labels(atoms) if i in exempt else _geometry_drop(atoms, config)
        if problem is not None:
            drops[i] = Drop(uuid_of(atoms), *problem)
    alive = [i for i in range(len(structures)) if i not in drops and i not in exempt]
    energy = _energy_drops([structures[i] for i in alive], config, reference_energies)
    for local, detail in energy.items():
        drops[alive[local]] = Drop(uuid_of(structures[alive[local]]), "energy_cap", detail)
    alive = [i for i in range(len(structures)) if i not in drops]
    if config.deduplicate:
        survivor = find_duplicates([structures[i] for i in alive], config.duplicate_tolerance,
                                   config.neighbors)
        for local, first in enumerate(survivor):
            if first != local:
                drops[alive[local]] = Drop(
                    uuid_of(structures[alive[local]]), "duplicate",
                    f"duplicate of {uuid_of(structures[alive[first]])} "
                    f"(fingerprints within {config.duplicate_tolerance:g} Å)")
    kept = [a for i, a in enumerate(structures) if i not in drops]
    return kept, StageReport(
        stage=CURATE_STEP, n_in=len(structures), n_candidates=len(structures), n_out=len(kept),
        drops=tuple(drops[i] for i in sorted(drops)), wall_time=time.perf_counter() - start,
        notes=(("short-range structures exempt from distance and caps", len(exempt)),)
        if exempt else ())
