"""Thin adapter around pyxtal: group tables, compatibility, generation, conversion to ASE.

Everything pyxtal-specific that :mod:`pyiron_assyst.stages.sample` needs lives here, so that the
sampling stage only sees plain values (species, counts, group numbers) and ``ase.Atoms``.

Three pyxtal behaviours are worked around:

- :meth:`pyxtal.pyxtal.to_ase` wraps fractional coordinates along the *non-periodic* directions
  of layer (dim 2) and rod (dim 1) crystals back into ``[0, 1)``, which tears the layer or rod
  apart and can put atoms a fraction of an Å apart. :func:`to_atoms` builds those structures
  from the unwrapped Wyckoff coordinates instead and adds its own vacuum.
- pyxtal now and then returns structures (mostly point-group clusters, dim 0) with atoms
  closer than the tolerance it was given; :func:`too_close` finds them, so the stage retries.
- pyxtal prints and warns freely while generating; :func:`quiet` silences both.

One fast path: ``pyxtal.operations.check_images``, called for every trial Wyckoff position,
builds a fresh default ``Tol_matrix(prototype="atomic")`` (about 5 ms, most of pyxtal's run
time for small cells) and, when given an explicit ``tol`` as it always is there, does not even
use it. :func:`_share_default_tolerance` makes ``pyxtal.operations`` build that read-only
default once per process; every other ``Tol_matrix`` call is passed through unchanged, so the
generated structures are bit-identical (tested), only 3-4 times faster.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import spglib
from ase import Atoms
from ase.neighborlist import neighbor_list

from pyiron_assyst.numerics.distances import has_pair_closer

__all__ = [
    "MAX_GROUP",
    "TOLERANCE_PROTOTYPES",
    "GeneratorTimeout",
    "found_group",
    "generate",
    "is_compatible",
    "quiet",
    "to_atoms",
    "too_close",
]

MAX_GROUP: dict[int, int] = {3: 230, 2: 80, 1: 75, 0: 56}
"""Largest group number per dimensionality: space, layer, rod and (crystallographic and
non-crystallographic) point groups as numbered by pyxtal. pyxtal knows 56 point groups."""

TOLERANCE_PROTOTYPES = ("metallic", "atomic", "molecular", "vdW")
"""Names of pyxtal's :class:`~pyxtal.tolerance.Tol_matrix` prototypes."""

_TIMEOUT_TEXT = "long time to generate"


class GeneratorTimeout(RuntimeError):
    """pyxtal gave up on a (formula, group) after its internal number of attempts."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence pyxtal's warnings and prints (it reports routine retries on stdout)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


SHARE_DEFAULT_TOLERANCE = True
"""Whether :func:`generate` installs the shared default ``Tol_matrix`` fast path."""


def _share_default_tolerance() -> None:
    """Let ``pyxtal.operations`` reuse one default ``Tol_matrix`` (see module docs)."""
    import pyxtal.operations as operations

    if not SHARE_DEFAULT_TOLERANCE or getattr(operations.Tol_matrix, "_shares_default", False):
        return
    original = operations.Tol_matrix

    @lru_cache(maxsize=1)
    def default() -> Any:
        return original(prototype="atomic")

    def tol_matrix(*tuples: Any, prototype: str = "atomic", factor: float = 1.0) -> Any:
        if not tuples and prototype == "atomic" and factor == 1.0:
            return default()
        return original(*tuples, prototype=prototype, factor=factor)

    tol_matrix._shares_default = True  # type: ignore[attr-defined]
    tol_matrix._original = original  # type: ignore[attr-defined]
    operations.Tol_matrix = tol_matrix


@lru_cache(maxsize=1024)
def _group(number: int, dim: int) -> Any:
    """pyxtal ``Group`` (cached per process; building one reads pyxtal's Wyckoff tables)."""
    from pyxtal.symmetry import Group

    with quiet():
        return Group(number, dim=dim)


def is_compatible(counts: Sequence[int], group: int, dim: int) -> bool:
    """Whether pyxtal can place ``counts`` atoms per species on Wyckoff sites of ``group``.

    This is the very check :func:`generate` runs before drawing anything (pyxtal raises
    ``Comp_CompatibilityError`` exactly when it fails), done without drawing a structure.
    """
    compatible, _ = _group(group, dim).check_compatible(np.array(counts))
    return bool(compatible)


@lru_cache(maxsize=64)
def _tol_matrix(tolerance: str | tuple[tuple[str, float], ...]) -> Any:
    """pyxtal ``Tol_matrix`` for a prototype name or frozen per-element radii (Å)."""
    from ase.data import atomic_numbers
    from pyxtal.tolerance import Tol_matrix

    if isinstance(tolerance, str):
        return Tol_matrix(prototype=tolerance)
    pairs = [
        (atomic_numbers[e1], atomic_numbers[e2], r1 + r2)
        for e1, r1 in tolerance
        for e2, r2 in tolerance
    ]
    return Tol_matrix(*pairs, prototype="metallic")


def generate(species: Sequence[str], counts: Sequence[int], group: int, dim: int,
             tolerance: str | tuple[tuple[str, float], ...], rng: np.random.Generator) -> Any:
    """Draw one random crystal with pyxtal; all randomness comes from ``rng``.

    Raises
    ------
    GeneratorTimeout
        If pyxtal gives up after its internal attempts ("long time to generate").
    pyxtal.msg.Comp_CompatibilityError
        If the composition does not fit the group (check :func:`is_compatible` first).
    """
    from pyxtal import pyxtal

    _share_default_tolerance()
    crystal = pyxtal()
    with quiet():
        try:
            crystal.from_random(dim=dim, group=_group(group, dim), species=list(species),
                                numIons=list(counts), tm=_tol_matrix(tolerance),
                                random_state=rng)
        except RuntimeError as error:
            if _TIMEOUT_TEXT in str(error):
                raise GeneratorTimeout(str(error)) from None
            raise
    return crystal


def to_atoms(crystal: Any, vacuum: float) -> Atoms:
    """ASE structure of a generated pyxtal crystal, sorted by atomic number.

    Bulk crystals (dim 3) come from ``to_ase()`` and are wrapped into the cell. For dim < 3
    the unwrapped Cartesian positions are kept; every non-periodic cell vector is replaced by
    a vector orthogonal to the periodic ones (and to each other) whose length is the extent
    of the atoms along it plus ``vacuum`` (Å), the atoms are centred along it, and ``pbc`` is
    False there. A cluster (dim 0) gets an orthorhombic box.
    """
    if crystal.dim == 3:
        atoms = crystal.to_ase()
        atoms.wrap()
        return atoms
    sites = crystal.atom_sites
    symbols = [site.specie for site in sites for _ in range(site.multiplicity)]
    pbc = np.array(crystal.PBC, dtype=bool)
    if crystal.dim == 0:
        positions = np.concatenate([site.coords for site in sites]) @ crystal.lattice.matrix
        lattice = np.eye(3)
    else:
        lattice = np.array(crystal.lattice.matrix, dtype=float)
        positions = np.concatenate([site.coords for site in sites]) @ lattice
    cell, positions = _vacuum_cell(lattice, positions, pbc, vacuum)
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=pbc)
    atoms = atoms[np.argsort(atoms.numbers, kind="stable")]
    atoms.wrap()  # wraps along the periodic directions only
    return atoms


def _vacuum_cell(lattice: np.ndarray, positions: np.ndarray, pbc: np.ndarray,
                 vacuum: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell with orthogonal vacuum vectors along the non-periodic directions (see to_atoms)."""
    cell = np.array(lattice, dtype=float)
    positions = np.array(positions, dtype=float)
    basis: list[np.ndarray] = []
    for i in np.flatnonzero(pbc):
        basis.append(_orthonormal(cell[i], basis))
    for i in np.flatnonzero(~pbc):
        direction = _orthonormal(lattice[i], basis)
        basis.append(direction)
        projection = positions @ direction
        positions += np.outer(vacuum / 2 - projection.min(), direction)
        cell[i] = direction * (np.ptp(projection) + vacuum)
    return cell, positions


def _orthonormal(vector: np.ndarray, basis: list[np.ndarray]) -> np.ndarray:
    """Unit ``vector`` orthogonalised against the orthonormal ``basis`` (Gram-Schmidt).

    Falls back to the Cartesian axes if ``vector`` lies in the span of ``basis``.
    """
    for candidate in (np.asarray(vector, dtype=float), *np.eye(3)):
        v = candidate.copy()
        for b in basis:
            v -= (v @ b) * b
        norm = np.linalg.norm(v)
        if norm > 1e-6 * max(1.0, np.linalg.norm(candidate)):
            return v / norm
    raise ValueError("cannot complete the cell basis")  # unreachable for a 3D basis


def too_close(atoms: Atoms, tolerance: str | tuple[tuple[str, float], ...],
              slack: float = 1e-3) -> str:
    """Describe the closest pair nearer than the tolerance (minus ``slack``, Å); ``""`` if none.

    pyxtal occasionally returns such structures (mostly point groups, dim 0).
    """
    tm = _tol_matrix(tolerance)
    symbols = sorted(set(atoms.get_chemical_symbols()))
    limits = {(a, b): tm.get_tol(a, b) or 0.0 for a in symbols for b in symbols}
    cutoff = max(limits.values())
    if cutoff <= slack:
        return ""
    if not _any_too_close(atoms, limits, slack):  # fast exact check; describe only on failure
        return ""
    first, second, distances = neighbor_list("ijd", atoms, cutoff)
    worst, text = 0.0, ""
    for i, j, d in zip(first, second, distances):
        pair = (atoms[i].symbol, atoms[j].symbol)
        shortfall = limits[pair] - slack - d
        if shortfall > worst:
            worst = shortfall
            text = f"{pair[0]}-{pair[1]} {d:.3f} Å < tolerance {limits[pair]:.3f} Å"
    return text


def _any_too_close(atoms: Atoms, limits: dict[tuple[str, str], float], slack: float) -> bool:
    """Whether any pair is closer than its tolerance minus ``slack`` (Å), images included."""
    symbols = atoms.get_chemical_symbols()
    table = np.array([[limits[a, b] - slack for b in symbols] for a in symbols])
    table = table.reshape(len(symbols), len(symbols))
    return has_pair_closer(atoms.positions, table, atoms.cell.array,
                           np.asarray(atoms.pbc, dtype=bool))


def found_group(atoms: Atoms, symprec: float) -> int:
    """Space group number spglib finds for a bulk crystal at ``symprec`` (Å); 0 if none."""
    cell = (atoms.cell.array, atoms.get_scaled_positions(wrap=True), atoms.numbers)
    try:
        with warnings.catch_warnings():  # spglib 2.5+ warns about its error-handling switch
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # spglib signals failure by raising or by returning None
        return 0
    return int(dataset.number) if dataset is not None else 0
