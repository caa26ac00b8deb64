"""Per-structure descriptors of the select stage: what a linear model of the energy would see.

* :class:`RadialDescriptor` -- Gaussian radial basis functions per element pair, averaged over
  the atoms of each element, and the composition (two-body information only).
* :class:`PowerSpectrum` -- a SOAP-like power spectrum: per atom, the neighbour density of each
  element expanded in Gaussian radial functions times real spherical harmonics up to ``l_max``,
  and the rotation-invariant sums over ``m`` of products of two expansions (three-body
  information: angles between neighbours). Summed over the atoms of a structure (default) it is
  the design row of a linear model of the *total* energy; averaged, of the energy per atom.

Both are dependency-free (numpy and ASE's neighbour list). ``dscribe``'s SOAP computes the same
kind of power spectrum (with an orthonormalised radial basis), but it is a compiled extra for a
few hundred small structures, where this runs in about a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from pyiron_assyst.core.config import Config, require
from pyiron_assyst.numerics.distances import image_distances, pair_vectors

__all__ = ["DESCRIPTORS", "PowerSpectrum", "RadialDescriptor", "legendre"]

REDUCTIONS = ("sum", "mean")


def _number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class RadialDescriptor(Config):
    """Per-structure descriptor: radial basis functions per element pair, and the composition.

    For every atom ``i`` of element ``a`` and every neighbour ``j`` of element ``b`` within
    ``cutoff``, Gaussians of width ``cutoff / n_radial`` centred at ``n_radial`` distances
    evenly spaced in ``(0, cutoff]``, times a cosine cutoff, are summed; the sums are averaged
    over the atoms of ``a``. The composition (fraction of each element) is appended.

    Parameters
    ----------
    cutoff
        Neighbour cutoff in Å (> 0).
    n_radial
        Number of radial basis functions per element pair (>= 1).
    """

    cutoff: float = 5.0
    n_radial: int = 8

    def __post_init__(self) -> None:
        require(_number(self.cutoff) and self.cutoff > 0, "RadialDescriptor", "cutoff",
                "a finite number > 0 (Å)", self.cutoff)
        require(_positive_int(self.n_radial), "RadialDescriptor", "n_radial", "an int >= 1",
                self.n_radial)
        object.__setattr__(self, "cutoff", float(self.cutoff))

    def of(self, atoms: Atoms, species: Sequence[int]) -> np.ndarray:
        """The descriptor of ``atoms`` over the elements ``species`` (atomic numbers)."""
        index = {z: k for k, z in enumerate(species)}
        n_s, n_r = len(species), self.n_radial
        per_atom = np.zeros((len(atoms), n_s, n_r))
        if len(atoms):
            first, second, distance = _pairs(atoms, self.cutoff)
            basis = _radial(distance, self.cutoff, n_r)
            other = np.array([index[z] for z in atoms.numbers[second]], dtype=int)
            np.add.at(per_atom, (first, other), basis)
        blocks = np.zeros((n_s, n_s, n_r))
        counts = np.zeros(n_s)
        for z, k in index.items():
            mine = atoms.numbers == z
            counts[k] = mine.sum()
            if counts[k]:
                blocks[k] = per_atom[mine].mean(axis=0)
        return np.concatenate([blocks.ravel(), counts / max(len(atoms), 1)])


def _radial(distance: np.ndarray, cutoff: float, n_radial: int) -> np.ndarray:
    """Gaussians (width ``cutoff / n_radial``, centres evenly in ``(0, cutoff]``) times the
    cosine cutoff ``(cos(π r / cutoff) + 1) / 2``; shape ``(len(distance), n_radial)``."""
    centres = np.linspace(cutoff / n_radial, cutoff, n_radial)
    width = cutoff / n_radial
    damp = 0.5 * (np.cos(np.pi * distance / cutoff) + 1.0)
    return np.exp(-0.5 * ((distance[:, None] - centres) / width) ** 2) * damp[:, None]


_SMALL = 64
"""Up to this many atoms the pairs come from the distance engine's all-image table."""


def _pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom ``i``, neighbour ``j`` and distance (Å) of every pair within ``cutoff``."""
    if len(atoms) > _SMALL:
        return neighbor_list("ijd", atoms, cutoff)
    d = image_distances(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    first, second, _ = np.nonzero(d <= cutoff)
    return first, second, d[d <= cutoff]


def legendre(x: np.ndarray, l_max: int) -> np.ndarray:
    """Legendre polynomials ``P_0`` to ``P_l_max`` at ``x`` (Bonnet's recursion); shape
    ``(l_max + 1, *x.shape)``."""
    out = [np.ones_like(x), x]
    for ell in range(1, l_max):
        out.append(((2 * ell + 1) * x * out[ell] - ell * out[ell - 1]) / (ell + 1))
    return np.array(out[: l_max + 1])


@dataclass(frozen=True)
class PowerSpectrum(Config):
    """SOAP-like power spectrum per element pair, summed or averaged over the atoms.

    The neighbour density of element ``b`` around atom ``i`` is expanded as
    ``c[b, n, l, m] = Σ_j∈b g_n(r_ij) Y_lm(r̂_ij)`` with the Gaussians times cosine cutoff of
    :class:`RadialDescriptor` as ``g_n`` and orthonormal real spherical harmonics ``Y_lm``. The
    power spectrum ``p[b, b', n, n', l] = Σ_m c[b, n, l, m] c[b', n', l, m]`` is invariant under
    rotations; by the addition theorem it equals
    ``(2l + 1) / (4π) Σ_j∈b Σ_k∈b' g_n(r_ij) g_n'(r_ik) P_l(cos θ_jik)``, which is how it is
    computed (``j = k`` included). Kept are the pairs ``b <= b'`` (for ``b = b'`` only
    ``n <= n'``), for every centre element; the composition (atom counts for ``"sum"``,
    fractions for ``"mean"``) is appended.

    Parameters
    ----------
    cutoff
        Neighbour cutoff in Å (> 0).
    n_radial
        Radial functions per element (>= 1).
    l_max
        Highest angular momentum (0..8); ``0`` keeps only products of radial sums.
    reduce
        ``"sum"`` over the atoms of each element (the design row of a linear model of the
        total energy) or ``"mean"`` (of the energy per atom).
    """

    cutoff: float = 5.0
    n_radial: int = 6
    l_max: int = 4
    reduce: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        owner = "PowerSpectrum"
        require(_number(self.cutoff) and self.cutoff > 0, owner, "cutoff",
                "a finite number > 0 (Å)", self.cutoff)
        require(_positive_int(self.n_radial), owner, "n_radial", "an int >= 1", self.n_radial)
        require(isinstance(self.l_max, int) and not isinstance(self.l_max, bool)
                and 0 <= self.l_max <= 8, owner, "l_max", "an int in 0..8", self.l_max)
        require(self.reduce in REDUCTIONS, owner, "reduce", f"one of {REDUCTIONS}", self.reduce)
        object.__setattr__(self, "cutoff", float(self.cutoff))

    def per_atom(self, atoms: Atoms, species: Sequence[int]) -> np.ndarray:
        """Power spectrum of every atom, shape ``(len(atoms), n_s, n_s, n_radial, n_radial,
        l_max + 1)`` over the elements ``species`` (all pairs, both orders)."""
        index = {z: k for k, z in enumerate(species)}
        n_s, n_r, n_l = len(species), self.n_radial, self.l_max + 1
        out = np.zeros((len(atoms), n_s, n_s, n_r, n_r, n_l))
        if not len(atoms):
            return out
        first, second, vectors = pair_vectors(atoms.positions, atoms.cell.array, atoms.pbc,
                                              self.cutoff)
        distance = np.linalg.norm(vectors, axis=1)
        basis = _radial(distance, self.cutoff, n_r)
        unit = vectors / distance[:, None]
        other = np.array([index[z] for z in atoms.numbers[second]], dtype=int)
        weight = (2 * np.arange(n_l) + 1) / (4 * np.pi)
        for i in range(len(atoms)):
            mine = first == i
            g, u, e = basis[mine], unit[mine], other[mine]
            angular = legendre(np.clip(u @ u.T, -1.0, 1.0), self.l_max) * weight[:, None, None]
            gb = (np.eye(n_s)[e][:, :, None] * g[:, None, :]).reshape(len(g), n_s * n_r)
            blocks = gb.T @ (angular @ gb)  # (l, n_s * n_r, n_s * n_r)
            out[i] = blocks.reshape(n_l, n_s, n_r, n_s, n_r).transpose(1, 3, 2, 4, 0)
        return out

    def of(self, atoms: Atoms, species: Sequence[int]) -> np.ndarray:
        """The descriptor of ``atoms`` over the elements ``species`` (atomic numbers)."""
        n_s, n_r = len(species), self.n_radial
        per_atom = self.per_atom(atoms, species)
        upper = [(b, c) for b in range(n_s) for c in range(b, n_s)]
        same = np.triu_indices(n_r)
        rows = []
        counts = np.array([(atoms.numbers == z).sum() for z in species], dtype=float)
        for z in species:
            mine = per_atom[atoms.numbers == z]
            total = mine.sum(axis=0) if self.reduce == "sum" or not len(mine) else \
                mine.mean(axis=0)
            for b, c in upper:
                block = total[b, c]
                rows.append(block[same].ravel() if b == c else block.ravel())
        composition = counts if self.reduce == "sum" else counts / max(len(atoms), 1)
        return np.concatenate([*rows, composition])


DESCRIPTORS = (RadialDescriptor, PowerSpectrum)
"""The descriptor configs the select stage takes."""
