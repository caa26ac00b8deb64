"""Periodic pair distances (Å): the one engine behind sampling, filters, curation and figures.

:func:`image_distances` gives every distance from an atom to the periodic images of every atom
up to a cutoff, :func:`pair_vectors` the vectors of the pairs within it, and
:func:`nearest_distances` each atom's nearest neighbour.

:func:`has_pair_closer` compares every pair ``i, j`` (an atom and its own periodic images
included) with a per-pair limit (the sampler's check); :func:`has_close_pair` is the case of
radius sums (:class:`~pyiron_assyst.stages.filters.DistanceFilter`). Small structures are checked by
brute force over wrapped fractional differences and the lattice images within the cutoff, large
ones with ASE's binned neighbour list.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["has_close_pair", "has_pair_closer", "image_distances", "nearest_distances",
           "pair_vectors", "shortest_distance", "shortest_distance_in"]

_BRUTE_FORCE_ENTRIES = 500_000
"""Above this many (pair, image) entries the distance check uses ASE's binned neighbor list."""
_REDUCE_ABOVE_IMAGES = 343
"""Minkowski-reduce fully periodic cells that would need more lattice images than this."""


def has_close_pair(positions: np.ndarray, radii: np.ndarray, cell: np.ndarray,
                   pbc: np.ndarray) -> bool:
    """Whether any pair (periodic images included) is closer than the sum of its radii (Å).

    Parameters
    ----------
    positions
        Cartesian positions (n × 3, Å).
    radii
        Per-atom radii (n, Å).
    cell, pbc
        Cell vectors (3 × 3, Å; non-periodic ones may be zero) and periodic directions.
    """
    return has_pair_closer(positions, radii[:, None] + radii[None, :], cell, pbc, radii)


def has_pair_closer(positions: np.ndarray, limit: np.ndarray, cell: np.ndarray,
                    pbc: np.ndarray, radii: np.ndarray | None = None) -> bool:
    """Whether any pair ``i, j`` is closer than ``limit[i, j]`` (Å), periodic images included.

    An atom and its own periodic images count as a pair (``limit[i, i]``). Fractional
    differences are wrapped to [-1/2, 1/2] along periodic directions and checked against every
    lattice image within the cutoff ``limit.max()``. Large structures go to ASE's binned
    neighbour list instead (with per-atom cutoffs ``radii`` when the limits are radius sums).

    Parameters
    ----------
    positions
        Cartesian positions (n × 3, Å).
    limit
        Symmetric matrix (n × n) of the smallest allowed distances in Å; entries <= 0 allow
        any distance.
    cell, pbc
        Cell vectors (3 × 3, Å; non-periodic ones may be zero) and periodic directions.
    radii
        Per-atom radii (Å) with ``limit = radii[:, None] + radii[None, :]``, if so.
    """
    cutoff = float(limit.max()) if limit.size else 0.0
    if cutoff <= 0.0:
        return False
    full, inverse, images = _lattice(cell, pbc, cutoff)
    n = len(positions)
    if n * n * _n_images(images) > _BRUTE_FORCE_ENTRIES:
        if radii is not None:
            return _has_close_pair_binned(positions, radii, full, pbc)
        return _has_pair_closer_binned(positions, limit, cutoff, full, pbc)
    d2 = _squared_image_distances(positions, full, inverse, pbc, images)
    squared = np.where(limit > 0.0, limit * limit, -1.0)
    return bool((d2 < squared[:, :, None]).any())


def image_distances(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                    cutoff: float) -> np.ndarray:
    """Distances from every atom to every periodic image of every atom, complete up to ``cutoff``.

    Parameters
    ----------
    positions
        Cartesian positions (n × 3, Å).
    cell, pbc
        Cell vectors (3 × 3, Å; non-periodic ones may be zero) and periodic directions.
    cutoff
        Every distance up to this (Å) is present; longer ones may be too.

    Returns
    -------
    numpy.ndarray
        ``d[i, j, s]`` in Å: atom ``i`` to image ``s`` of atom ``j``; ``inf`` for an atom and its
        own zero image. O(n² × images) memory: meant for the small cells of ASSYST.
    """
    pbc = np.asarray(pbc, dtype=bool)
    if not pbc.any():
        diff = positions[None, :, :] - positions[:, None, :]
        d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))[:, :, None]
        d[np.arange(len(positions)), np.arange(len(positions)), 0] = np.inf
        return d
    full, inverse, images = _lattice(cell, pbc, cutoff)
    return np.sqrt(_squared_image_distances(positions, full, inverse, pbc, images))


def shortest_distance(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                      cutoff: float = 6.0) -> float:
    """Shortest distance between two atoms, periodic images included (Å); ``inf`` when no
    pair is within ``cutoff`` Å (e.g. one atom without close images)."""
    return float(np.min(image_distances(positions, cell, pbc, cutoff)))


def shortest_distance_in(atoms: Atoms) -> float:
    """:func:`shortest_distance` of an ASE ``Atoms``, in Å; ``inf`` for one atom without close
    images."""
    return shortest_distance(atoms.positions, atoms.cell.array, atoms.pbc)


def pair_vectors(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair within ``cutoff`` (Å): atom ``i``, atom ``j`` and the vector (Å) from ``i`` to
    that image of ``j`` (an atom's own nonzero images included), as ASE's ``neighbor_list("ijD")``.

    Small structures go through the same wrapped all-image table as :func:`image_distances`,
    large ones through ASE's binned neighbour list; the order of the pairs is unspecified.
    """
    pbc = np.asarray(pbc, dtype=bool)
    n = len(positions)
    diff = positions[None, :, :] - positions[:, None, :]
    if not pbc.any():
        first, second = np.nonzero(np.ones((n, n), dtype=bool) & ~np.eye(n, dtype=bool))
        vectors = diff[first, second]
        keep = np.einsum("pk,pk->p", vectors, vectors) <= cutoff * cutoff
        return first[keep], second[keep], vectors[keep]
    full, inverse, images = _lattice(cell, pbc, cutoff)
    if n * n * _n_images(images) > _BRUTE_FORCE_ENTRIES:
        from ase.neighborlist import primitive_neighbor_list

        return primitive_neighbor_list("ijD", pbc, full, positions, cutoff)
    wrap = np.round(diff @ inverse)
    wrap[..., ~pbc] = 0.0
    shifts, zero = _shifts(images)
    d = (diff - wrap @ full)[:, :, None, :] + (shifts @ full)[None, None, :, :]
    d2 = np.einsum("ijsk,ijsk->ijs", d, d)
    index = np.arange(n)
    d2[index, index, zero] = np.inf
    first, second, image = np.nonzero(d2 <= cutoff * cutoff)
    return first, second, d[first, second, image]


def nearest_distances(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                      max_cutoff: float) -> np.ndarray:
    """Each atom's nearest-neighbour distance in Å (periodic images included).

    The search radius starts at a bound that holds in any periodic crystal (1.13 × the cube
    root of the volume per atom, from the densest sphere packing) and doubles up to
    ``max_cutoff`` (Å); an atom with no neighbour within ``max_cutoff`` gets ``inf``.
    """
    n = len(positions)
    pbc = np.asarray(pbc, dtype=bool)
    periodic = pbc & np.asarray(cell, dtype=float).any(1)
    if n == 0:
        return np.empty(0)
    if periodic.all():
        volume = abs(float(np.linalg.det(cell)))
        cutoff = min(_KEPLER * (volume / n) ** (1 / 3), max_cutoff)
    else:
        cutoff = max_cutoff
    while True:
        full, _, images = _lattice(cell, periodic, cutoff) if periodic.any() else (cell, None,
                                                                                   (0, 0, 0))
        if n * n * _n_images(images) > _BRUTE_FORCE_ENTRIES:
            nearest = _nearest_binned(positions, full, periodic, cutoff)
        else:
            nearest = image_distances(positions, cell, periodic, cutoff).min(axis=(1, 2))
        nearest[nearest > cutoff] = np.inf
        if np.isfinite(nearest).all() or cutoff >= max_cutoff:
            return nearest
        cutoff = min(2 * cutoff, max_cutoff)


_KEPLER = 1.13
"""Nearest distance <= 2**(1/6) (V/N)**(1/3) ~ 1.1225 (V/N)**(1/3) in any periodic crystal."""


def _lattice(cell: np.ndarray, pbc: np.ndarray, cutoff: float
             ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Completed (and, when many images are needed, Minkowski-reduced) cell, its inverse and
    the image counts needed for ``cutoff`` (Å)."""
    full = _complete_cell(cell, pbc)
    inverse = np.linalg.inv(full)
    images = _image_counts(inverse, pbc, cutoff)
    if pbc.all() and _n_images(images) > _REDUCE_ABOVE_IMAGES:
        from ase.geometry import minkowski_reduce

        full = np.asarray(minkowski_reduce(full)[0], dtype=float)
        inverse = np.linalg.inv(full)
        images = _image_counts(inverse, pbc, cutoff)
    return full, inverse, images


def _squared_image_distances(positions: np.ndarray, full: np.ndarray, inverse: np.ndarray,
                             pbc: np.ndarray, images: tuple[int, ...]) -> np.ndarray:
    """``d2[i, j, s]`` (Å²) over wrapped differences and the given images; self image ``inf``."""
    n = len(positions)
    diff = positions[None, :, :] - positions[:, None, :]
    wrap = np.round(diff @ inverse)
    if not pbc.all():
        wrap[..., ~pbc] = 0.0
    shifts, zero = _shifts(images)
    d = (diff - wrap @ full)[:, :, None, :] + (shifts @ full)[None, None, :, :]
    d2 = np.einsum("ijsk,ijsk->ijs", d, d)
    index = np.arange(n)
    d2[index, index, zero] = np.inf  # an atom is not its own neighbour
    return d2


def _nearest_binned(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                    cutoff: float) -> np.ndarray:
    from ase.neighborlist import primitive_neighbor_list

    first, distance = primitive_neighbor_list("id", pbc, cell, positions, cutoff)
    nearest = np.full(len(positions), np.inf)
    np.minimum.at(nearest, first, distance)
    return nearest


def _complete_cell(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The cell with vectors of non-periodic directions completed (ASE), checked to be regular."""
    from ase.cell import Cell

    cell = np.asarray(cell, dtype=float)
    periodic_all = bool(pbc.all())
    periodic = cell if periodic_all else cell[pbc]
    if len(periodic):
        scale = float(np.prod(np.einsum("ij,ij->i", periodic, periodic)))
        if scale == 0.0 or np.linalg.det(periodic @ periodic.T) <= 1e-20 * scale:
            raise ValueError("the cell is degenerate along its periodic directions")
    return cell if periodic_all else Cell(cell).complete().array


def _image_counts(inverse: np.ndarray, pbc: np.ndarray, cutoff: float) -> tuple[int, ...]:
    """Largest image index ``m`` per direction, for fractional differences in [-1/2, 1/2].

    An image ``n`` is at least ``(|n| - 1/2) * h`` away (``h``: spacing of lattice planes), so
    only ``|n| < cutoff / h + 1/2`` can be within the cutoff.
    """
    inverse_spacing = np.linalg.norm(inverse, axis=0)  # 1 / h per direction
    counts = np.floor(cutoff * inverse_spacing + 0.5 + 1e-9).astype(int)
    return tuple(int(m) if periodic else 0 for m, periodic in zip(counts, pbc))


def _n_images(images: tuple[int, ...]) -> int:
    return math.prod(2 * m + 1 for m in images)


@lru_cache(maxsize=512)
def _shifts(images: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Integer lattice shifts ``|n_k| <= images[k]`` and the index of the zero shift."""
    grid = np.meshgrid(*(np.arange(-m, m + 1) for m in images), indexing="ij")
    shifts = np.stack(grid, axis=-1).reshape(-1, 3).astype(float)
    shifts.setflags(write=False)
    return shifts, len(shifts) // 2


def _has_close_pair_binned(positions: np.ndarray, radii: np.ndarray, cell: np.ndarray,
                           pbc: np.ndarray) -> bool:
    from ase.neighborlist import primitive_neighbor_list

    first = primitive_neighbor_list("i", pbc, cell, positions, radii)
    return len(first) > 0


def _has_pair_closer_binned(positions: np.ndarray, limit: np.ndarray, cutoff: float,
                            cell: np.ndarray, pbc: np.ndarray) -> bool:
    from ase.neighborlist import primitive_neighbor_list

    first, second, distance = primitive_neighbor_list("ijd", pbc, cell, positions, cutoff)
    return bool((distance < limit[first, second]).any())
