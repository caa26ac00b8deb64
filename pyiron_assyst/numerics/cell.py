"""Cell degrees of freedom that strain only the periodic directions of a structure.

Layers, rods and clusters (``pbc`` partly or wholly ``False``) must not have their vacuum
directions strained: the cell vectors along non-periodic directions carry no physics, and
straining them would change nothing but the bookkeeping volume. :func:`strain_frame` finds a
frame in which a Cartesian strain mask keeps every non-periodic cell vector fixed (rotating the
structure only when its cell is not already aligned, as pyxtal's cells are), and
:class:`PeriodicCellFilter` is ASE's :class:`~ase.filters.FrechetCellFilter` with that mask and
with hydrostatic / constant-volume constraints restricted to the periodic subspace. For 3-D
periodic cells it gives ASE's degrees of freedom and forces (to rounding), several times faster;
a cluster has no cell degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

__all__ = [
    "MODES", "PeriodicCellFilter", "cell_filter", "logm3", "rotate", "serial_blas", "strain_frame",
]

CellMode = Literal["full", "hydrostatic", "shape"]
MODES = ("full", "hydrostatic", "shape")
"""``full``: any strain; ``hydrostatic``: uniform scaling; ``shape``: strain at constant volume
(area for layers, length for rods) of the periodic directions."""

_ALIGN_TOL = 1e-12

Axes = tuple[bool, bool, bool]


def _normalized(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-8 else None


def _fixed_axis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray | None:
    """Dim 2: direction to keep unstrained; dim 1: the only direction to strain."""
    periodic, vacuum = cell[pbc], cell[~pbc]
    if len(periodic) == 2:
        axis = _normalized(vacuum[0])
        return axis if axis is not None else _normalized(np.cross(*periodic))
    # rod: strain along the part of the periodic vector orthogonal to the vacuum vectors
    span = np.array([v for v in vacuum if _normalized(v) is not None]).reshape(-1, 3)
    vector = periodic[0]
    if len(span):
        basis = np.linalg.qr(span.T)[0][:, :len(span)]
        vector = vector - basis @ (basis.T @ vector)
    return _normalized(vector)


def _rotation_to_z(axis: np.ndarray) -> np.ndarray:
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    first = helper - (helper @ axis) * axis
    first /= np.linalg.norm(first)
    return np.array([first, np.cross(axis, first), axis])


def strain_frame(atoms: Atoms) -> tuple[np.ndarray | None, Axes]:
    """Rotation to apply before a masked cell relaxation, and the strainable Cartesian axes.

    Returns
    -------
    rotation
        Proper rotation ``R`` (apply as ``positions @ R.T``, see :func:`rotate`), or ``None`` if
        the cell is already aligned (always for 3-D periodic cells and clusters).
    axes
        For each Cartesian axis in the (rotated) frame whether it may be strained; the strain
        mask is ``outer(axes, axes)``. All ``False`` means no cell degrees of freedom.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    dim = int(pbc.sum())
    if dim in (0, 3):
        return None, (dim == 3,) * 3  # type: ignore[return-value]
    axis = _fixed_axis(atoms.cell.array, pbc)
    if axis is None:
        return None, (False, False, False)
    big = np.abs(axis) > _ALIGN_TOL
    index, rotation = (int(np.argmax(big)), None) if big.sum() == 1 else (2, _rotation_to_z(axis))
    strained = [(i != index) if dim == 2 else (i == index) for i in range(3)]
    return rotation, tuple(strained)  # type: ignore[return-value]


def rotate(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """Rotate positions, cell and single-point forces/stress by ``rotation`` (in place)."""
    results: dict[str, Any] = dict(getattr(atoms.calc, "results", {}))
    atoms.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    atoms.positions = atoms.positions @ rotation.T
    if not results:
        return atoms
    if "forces" in results:
        results["forces"] = np.asarray(results["forces"]) @ rotation.T
    if "stress" in results:
        stress = rotation @ voigt_6_to_full_3x3_stress(results["stress"]) @ rotation.T
        results["stress"] = full_3x3_to_voigt_6_stress(stress)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@lru_cache(maxsize=1)
def _blas_libraries() -> tuple[Any, ...]:
    """threadpoolctl controllers of the BLAS libraries loaded now (numpy's and scipy's)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: only a speed-up
        return ()
    import scipy.linalg  # noqa: F401 - load scipy's own BLAS before looking for libraries

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextmanager
def serial_blas() -> Iterator[None]:
    """Run 3×3 linear algebra (matrix log/exp of the cell) on one BLAS thread.

    OpenBLAS spreads even a 3×3 solve over all its threads; on a busy machine that makes the
    cell filter a hundred times slower than the calculator (EMT). The calculator itself is
    never called under this limit. Libraries already on one thread are left alone, so the
    limit costs a few µs (it is entered several times per optimizer step).
    """
    changed = []
    for library in _blas_libraries():
        threads = library.num_threads
        if threads != 1:
            library.set_num_threads(1)
            changed.append((library, threads))
    try:
        yield
    finally:
        for library, threads in changed:
            library.set_num_threads(threads)


def logm3(matrix: np.ndarray) -> np.ndarray:
    """Real matrix logarithm of a 3×3 deformation gradient, by eigendecomposition.

    Falls back to :func:`scipy.linalg.logm` when the matrix is (nearly) defective or its
    logarithm is not real; otherwise agrees with it to rounding, in a fraction of the time.
    """
    values, vectors = np.linalg.eig(matrix)
    try:
        inverse = np.linalg.inv(vectors)
    except np.linalg.LinAlgError:
        inverse = None
    if inverse is not None:
        rebuilt = (vectors * values) @ inverse
        log = (vectors * np.log(values.astype(complex))) @ inverse
        scale = max(1.0, float(np.abs(matrix).max()))
        if np.abs(rebuilt - matrix).max() < 1e-12 * scale and np.abs(log.imag).max() < 1e-12:
            return log.real
    from scipy.linalg import logm

    return np.real(logm(matrix))


class PeriodicCellFilter(FrechetCellFilter):
    """:class:`~ase.filters.FrechetCellFilter` straining only the ``axes`` directions.

    Same degrees of freedom and generalized forces as ASE's filter (the matrix logarithm of the
    deformation gradient), with two differences: hydrostatic and constant-volume constraints
    act on the strainable block only, and the cell gradient takes one Fréchet derivative of the
    matrix exponential (its adjoint) instead of nine, with a fast 3×3 logarithm and serial BLAS,
    so that the filter costs less than a cheap calculator.

    Parameters
    ----------
    atoms
        Structure in a frame from :func:`strain_frame` (its ``axes``).
    axes
        Strainable Cartesian axes; the strain mask is ``outer(axes, axes)``.
    mode
        One of :data:`MODES`.
    scalar_pressure
        External pressure in eV/Å³ (enthalpy ``E + pV``).
    """

    def __init__(self, atoms: Atoms, axes: Axes, mode: CellMode = "full",
                 scalar_pressure: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"cell mode must be one of {MODES}; got {mode!r}")
        self._axes = np.asarray(axes, dtype=bool)
        self._mode = mode
        mask = None if self._axes.all() else np.outer(self._axes, self._axes)
        super().__init__(atoms, mask=mask, scalar_pressure=scalar_pressure)
        self._utility.logm = logm3
        self._last: tuple[tuple[Any, ...], np.ndarray, np.ndarray] | None = None

    def get_positions(self) -> np.ndarray:
        with serial_blas():
            return super().get_positions()

    def set_positions(self, new: np.ndarray, **kwargs: Any) -> None:
        with serial_blas():
            super().set_positions(new, **kwargs)

    def get_forces(self, **kwargs: Any) -> np.ndarray:
        """Generalized forces (atoms and cell), computed once per structure state.

        ASE's optimizers ask for the gradient three times per step (step, log, convergence
        check); each request would cost two calculator state checks and the cell gradient.
        The result for the current positions, cell, constraints and calculator is kept and a
        copy returned (bit-identical to computing it again).
        """
        state = self._state(kwargs)
        if self._last is not None and _same_state(self._last[0], state):
            _, forces, stress = self._last
            self.stress = stress.copy()
            return forces.copy()
        stress = self.atoms.get_stress(**kwargs)
        atoms_forces = self.atoms.get_forces(**kwargs)
        with serial_blas():
            forces = self._forces(atoms_forces, stress)
        self._last = (state, forces.copy(), self.stress.copy())
        return forces

    def _state(self, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Positions and cell (bytes), keyword arguments, calculator and constraint objects."""
        atoms = self.atoms
        return (atoms.positions.tobytes(), atoms.cell.array.tobytes(),
                tuple(sorted(kwargs.items())), atoms.calc, tuple(atoms.constraints))

    def _forces(self, atoms_forces: np.ndarray, stress: np.ndarray) -> np.ndarray:
        from scipy.linalg import expm_frechet

        volume = self.atoms.cell.volume
        virial = -volume * (voigt_6_to_full_3x3_stress(stress) + self.scalar_pressure * np.eye(3))
        strained = np.flatnonzero(self._axes)
        if self._mode == "hydrostatic":
            virial = np.diag(np.where(self._axes, virial[strained, strained].mean(), 0.0))
        virial = virial * np.outer(self._axes, self._axes)
        deform = self.deform_grad()
        # d E / d log(F): adjoint of the Frechet derivative of expm, applied once
        gradient = expm_frechet(logm3(deform).T, virial @ np.linalg.inv(deform.T),
                                compute_expm=False)
        residual_stress = -virial / volume
        if self._mode == "shape":
            gradient[strained, strained] -= gradient[strained, strained].mean()
            residual_stress[strained, strained] -= residual_stress[strained, strained].mean()
        forces = np.zeros((len(self.atoms) + 3, 3))
        forces[:len(self.atoms)] = atoms_forces @ deform
        forces[len(self.atoms):] = gradient / self.exp_cell_factor
        self.stress = full_3x3_to_voigt_6_stress(residual_stress)
        return forces


def _same_state(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal arrays and arguments, and the very same calculator and constraint objects."""
    return (a[:3] == b[:3] and a[3] is b[3] and len(a[4]) == len(b[4])
            and all(x is y for x, y in zip(a[4], b[4])))


def cell_filter(atoms: Atoms, mode: CellMode = "full",
                scalar_pressure: float = 0.0) -> Atoms | PeriodicCellFilter:
    """Cell and position degrees of freedom of ``atoms``, straining periodic directions only.

    ``atoms`` must be in its :func:`strain_frame`. Returns ``atoms`` itself when it has no cell
    degrees of freedom (clusters). ``scalar_pressure`` (eV/Å³) acts on 3-D periodic cells only:
    the volume of a layer or rod includes vacuum and has no pressure conjugate.

    Raises
    ------
    ValueError
        If ``mode`` is unknown, or ``atoms`` must be rotated by :func:`strain_frame` first.
    """
    if mode not in MODES:
        raise ValueError(f"cell mode must be one of {MODES}; got {mode!r}")
    rotation, axes = strain_frame(atoms)
    if rotation is not None:
        raise ValueError("rotate the structure into its strain_frame() before cell_filter()")
    if not any(axes):
        return atoms
    pressure = scalar_pressure if all(axes) else 0.0
    return PeriodicCellFilter(atoms, axes, mode, pressure)
