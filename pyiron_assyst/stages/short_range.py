"""Short-range stage: what a potential needs below the final filter's distance.

The final distance filter removes every structure with a pair closer than 2 Å, so a potential
fitted to the filtered set has never seen a compressed pair and nothing tells it what happens
there: a fitted model without a repulsive prior may let atoms fall onto each other in MD. This
stage adds, per element and element pair of the system,

- ``"isolated"``: one isolated atom per element (:func:`~pyiron_assyst.stages.curate.isolated_atom`
  geometry) — the fit's isolated-atom energies (E0s) and the cohesive energy come from them;
- ``"dimer"``: a dimer per element pair at each of ``dimer_fractions`` × the pair's bond length
  (the sum of the covalent radii, :data:`ase.data.covalent_radii`), alone in a box;
- ``"trimer"``: an equilateral triangle per element triple (with repetition) at each of
  ``trimer_fractions`` × the mean of its three bond lengths, alone in a box;
- ``"compressed"``: each relaxed crystal scaled uniformly so that every distance shrinks by each
  of ``compressions`` (a linear factor; 0.8 shrinks the volume to 0.512).

Every structure it makes carries ``info['short_range']`` (its kind). It runs *after* the final
filter (its output joins the filtered set at the label stage), and the curate stage exempts
structures with that key from its distance check and its energy and force caps: they exist to be
close and hot. Identity: isolated atoms, dimers and trimers are roots whose uuid derives from
(kind, elements, distance, box); a compressed crystal is a child of its relaxed parent (step
``"short_range:compressed"``, copy key the factor), so its lineage leads to its sampled root.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid as _uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from pyiron_assyst.core.config import Config, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import NAMESPACE, child_uuid, make_child, stamp_root, uuid_of
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.stages.curate import SHORT_RANGE_KEY, isolated_atom

__all__ = ["KINDS", "SHORT_RANGE_KEY", "ShortRangeConfig", "bond_length", "dimer",
           "is_short_range", "short_range", "trimer"]

KINDS = ("isolated", "dimer", "trimer", "compressed")
"""Kinds of short-range structures, in the order the stage returns them."""
STEP = "short_range"


def _fractions(values: object, name: str, field: str, low: float, high: float) -> tuple:
    values = tuple(float(v) for v in values)  # type: ignore[union-attr]
    require(all(low < v <= high for v in values) and len(set(values)) == len(values), name,
            field, f"distinct numbers in ({low:g}, {high:g}]", values)
    return tuple(sorted(values))


@dataclass(frozen=True)
class ShortRangeConfig(Config):
    """What :func:`short_range` adds.

    Parameters
    ----------
    enabled
        ``False``: the stage adds nothing (the set ends at the final filter's distance).
    isolated
        Add one isolated atom per element.
    dimer_fractions
        Dimer distances as fractions of the pair's bond length (sum of covalent radii).
    trimer_fractions
        Side lengths of the equilateral trimers as fractions of the mean bond length.
    compressions
        Linear scale factors (< 1) applied to every relaxed crystal.
    box
        Edge of the box around isolated atoms, dimers and trimers in Å (edges ``box``,
        ``box + 0.5``, ``box + 1``, as for the reference energies).
    """

    enabled: bool = True
    isolated: bool = True
    dimer_fractions: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5)
    trimer_fractions: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 1.0)
    compressions: tuple[float, ...] = (0.8,)
    box: float = 12.0

    def __post_init__(self) -> None:
        name = "ShortRangeConfig"
        for key in ("enabled", "isolated"):
            require(isinstance(getattr(self, key), bool), name, key, "a bool", getattr(self, key))
        object.__setattr__(self, "dimer_fractions",
                           _fractions(self.dimer_fractions, name, "dimer_fractions", 0.2, 3.0))
        object.__setattr__(self, "trimer_fractions",
                           _fractions(self.trimer_fractions, name, "trimer_fractions", 0.2, 3.0))
        object.__setattr__(self, "compressions",
                           _fractions(self.compressions, name, "compressions", 0.3, 0.999))
        require(isinstance(self.box, (int, float)) and not isinstance(self.box, bool)
                and math.isfinite(self.box) and self.box >= 8.0, name, "box",
                "a number >= 8 Å", self.box)
        object.__setattr__(self, "box", float(self.box))


def bond_length(a: str, b: str) -> float:
    """Bond length of the pair ``(a, b)`` in Å: the sum of ASE's covalent radii."""
    return float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


def _boxed(symbols: Sequence[str], positions: np.ndarray, box: float, kind: str,
           key: str) -> Atoms:
    edges = np.array([box, box + 0.5, box + 1.0])
    centre = positions - positions.mean(axis=0) + edges / 2
    atoms = Atoms(list(symbols), positions=centre, cell=np.diag(edges), pbc=True)
    stamp_root(atoms, str(_uuid.uuid5(NAMESPACE, f"short_range|{kind}|{key}|{box!r}")),
               step=f"{STEP}:{kind}")
    set_info(atoms, SHORT_RANGE_KEY, kind)
    return atoms


def dimer(a: str, b: str, distance: float, box: float = 12.0) -> Atoms:
    """A dimer of ``a`` and ``b`` at ``distance`` Å along x in a box (a root, kind
    ``"dimer"``)."""
    positions = np.array([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]])
    return _boxed((a, b), positions, box, "dimer", f"{a}|{b}|{distance!r}")


def trimer(symbols: Sequence[str], side: float, box: float = 12.0) -> Atoms:
    """An equilateral triangle of ``symbols`` with side ``side`` Å in the xy plane, in a box
    (a root, kind ``"trimer"``)."""
    positions = side * np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                                 [0.5, math.sqrt(3.0) / 2.0, 0.0]])
    return _boxed(tuple(symbols), positions, box, "trimer", f"{'|'.join(symbols)}|{side!r}")


def _compressed(parent: Atoms, factor: float) -> Atoms:
    atoms = Atoms(parent.numbers, parent.positions * factor, cell=parent.cell.array * factor,
                  pbc=parent.pbc)
    step = f"{STEP}:compressed"
    make_child(atoms, parent, step, child_uuid(uuid_of(parent), step, repr(factor)))
    set_info(atoms, SHORT_RANGE_KEY, "compressed")
    return atoms


def _elements(elements: Iterable[str], relaxed: Sequence[Atoms]) -> list[str]:
    found = set(elements) | {s for atoms in relaxed for s in atoms.get_chemical_symbols()}
    unknown = sorted(s for s in found if s not in atomic_numbers or s == "X")
    require(not unknown, "short_range", "elements", "chemical symbols", unknown)
    return sorted(found, key=lambda s: atomic_numbers[s])


def _clusters(elements: list[str], config: ShortRangeConfig) -> dict[str, list[Atoms]]:
    made: dict[str, list[Atoms]] = {kind: [] for kind in KINDS}
    if config.isolated:
        for symbol in elements:
            atoms = isolated_atom(symbol, config.box)
            set_info(atoms, SHORT_RANGE_KEY, "isolated")
            made["isolated"].append(atoms)
    for a, b in itertools.combinations_with_replacement(elements, 2):
        made["dimer"] += [dimer(a, b, f * bond_length(a, b), config.box)
                          for f in config.dimer_fractions]
    for triple in itertools.combinations_with_replacement(elements, 3):
        bond = float(np.mean([bond_length(x, y) for x, y in itertools.combinations(triple, 2)]))
        made["trimer"] += [trimer(triple, f * bond, config.box) for f in config.trimer_fractions]
    return made


def short_range(relaxed: Sequence[Atoms], config: ShortRangeConfig = ShortRangeConfig(),
                elements: Iterable[str] = ()) -> tuple[list[Atoms], StageReport]:
    """Isolated atoms, dimers, trimers and compressed crystals (see the module docstring).

    Parameters
    ----------
    relaxed
        Relaxed crystals to compress (never modified); their elements join ``elements``.
    config
        What to add.
    elements
        Chemical symbols of the system (e.g. ``Formulas.elements``).

    Returns
    -------
    structures, report
        Unlabelled structures, kinds in the order of :data:`KINDS`; the report of stage
        ``"short_range"`` (``n_in``: relaxed crystals; notes: the count of each kind).
    """
    start = time.perf_counter()
    made: dict[str, list[Atoms]] = {kind: [] for kind in KINDS}
    if config.enabled:
        made = _clusters(_elements(elements, relaxed), config)
        made["compressed"] = [_compressed(atoms, f) for atoms in relaxed
                              for f in config.compressions]
    out = [atoms for kind in KINDS for atoms in made[kind]]
    return out, StageReport(
        stage=STEP, n_in=len(relaxed), n_candidates=len(out), n_out=len(out),
        wall_time=time.perf_counter() - start,
        notes=tuple((kind, len(made[kind])) for kind in KINDS))


def is_short_range(atoms: Atoms) -> bool:
    """Whether ``atoms`` was made by :func:`short_range` (carries ``info['short_range']``)."""
    return SHORT_RANGE_KEY in atoms.info
