"""LBFGS that keeps only curvature pairs of positive curvature (the relaxations' default).

ASE's :class:`~ase.optimize.LBFGS` (without line search) stores every pair of position change
``s`` and gradient change ``y``. Where the energy is not convex along a step (``s·y <= 0``),
as it often is for the random, far-from-equilibrium crystals ASSYST relaxes, that pair makes
the inverse-Hessian estimate indefinite: later steps may point uphill, and the relaxation
wanders until its step budget runs out. :class:`SafeLBFGS` skips such pairs, the textbook
safeguard of quasi-Newton updates (Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006,
§6.1 and §7.2). Everything else is ASE's LBFGS with its defaults: initial inverse Hessian
``1/alpha``, a step scaled down so that no row (atom or cell vector of a filter) moves more than
``maxstep``, ``memory`` pairs, and the convergence test ``max_i |F_i| < fmax``. Until a pair is
skipped it takes ASE's steps bit for bit.

It drives anything with ``get_positions``, ``set_positions`` and ``get_forces`` (an
:class:`~ase.Atoms` or an ASE filter), and offers the part of ASE's optimizer interface that
:meth:`pyiron_assyst.stages.relax.Relaxation.minimize` uses (``attach``, ``run``, ``nsteps``), so
it does not depend on the internals of any ASE version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

__all__ = ["Movable", "SafeLBFGS"]


class Movable(Protocol):
    """What an optimizer moves: an :class:`~ase.Atoms` or an ASE filter."""

    def get_positions(self) -> np.ndarray: ...

    def set_positions(self, new: np.ndarray) -> None: ...

    def get_forces(self) -> np.ndarray: ...


class SafeLBFGS:
    """Limited-memory BFGS that skips curvature pairs with ``s·y <= 0``.

    Parameters
    ----------
    dof
        Degrees of freedom to move (positions in Å, filter coordinates as the filter defines).
    logfile
        Accepted for the signature of ASE's optimizers; nothing is logged.
    maxstep
        Largest displacement of any row in one step, Å (ASE's default 0.2).
    memory
        Number of curvature pairs kept (ASE's default 100).
    alpha
        Initial Hessian guess, eV/Å² (ASE's default 70).

    Attributes
    ----------
    nsteps
        Steps taken so far.
    skipped
        Curvature pairs skipped so far.
    """

    def __init__(self, dof: Movable, logfile: Any = None, *, maxstep: float = 0.2,
                 memory: int = 100, alpha: float = 70.0) -> None:
        if not 0 < maxstep <= 1.0:
            raise ValueError(f"maxstep must be in (0, 1] Å; got {maxstep}")
        if memory < 1 or alpha <= 0:
            raise ValueError(f"memory must be >= 1 and alpha > 0; got {memory}, {alpha}")
        self.dof, self.maxstep, self.memory = dof, maxstep, memory
        self._inverse_h0 = 1.0 / alpha
        self.nsteps = self.skipped = 0
        self._pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._observers: list[tuple[Callable[[], None], int]] = []

    def attach(self, function: Callable[[], None], interval: int = 1) -> None:
        """Call ``function()`` after every ``interval``-th step (and before the first)."""
        self._observers.append((function, interval))

    def run(self, fmax: float = 0.05, steps: int = 100_000_000) -> bool:
        """Relax until the largest row force is below ``fmax`` (eV/Å) or ``steps`` steps.

        Returns whether it converged; :attr:`nsteps` counts the steps taken.
        """
        self._notify()
        last = self.nsteps + steps
        forces = self.dof.get_forces()
        converged = self._converged(forces, fmax)
        while not converged and self.nsteps < last:
            self.step(forces)
            self.nsteps += 1
            self._notify()
            forces = self.dof.get_forces()
            converged = self._converged(forces, fmax)
        return converged

    def step(self, forces: np.ndarray) -> None:
        """One step from the current positions, given their ``forces`` (eV/Å)."""
        x = self.dof.get_positions().ravel()
        gradient = -forces.ravel()
        if self._previous is not None:
            self._remember(x - self._previous[0], gradient - self._previous[1])
        direction = -self._inverse_hessian_times(gradient)
        longest = float(np.linalg.norm(direction.reshape(-1, 3), axis=1).max())
        if longest >= self.maxstep:
            direction *= self.maxstep / longest
        self.dof.set_positions((x + direction).reshape(-1, 3))
        self._previous = (x, gradient)

    def _remember(self, s: np.ndarray, y: np.ndarray) -> None:
        curvature = float(np.dot(y, s))
        if curvature <= 0.0:
            self.skipped += 1
            return
        self._pairs.append((s, y, 1.0 / curvature))
        if len(self._pairs) > self.memory:
            self._pairs.pop(0)

    def _inverse_hessian_times(self, gradient: np.ndarray) -> np.ndarray:
        """The two-loop recursion: the inverse-Hessian estimate applied to ``gradient``."""
        q = gradient.copy()
        a = np.empty(len(self._pairs))
        for i in range(len(self._pairs) - 1, -1, -1):
            s, y, rho = self._pairs[i]
            a[i] = rho * np.dot(s, q)
            q -= a[i] * y
        z = self._inverse_h0 * q
        for i, (s, y, rho) in enumerate(self._pairs):
            b = rho * np.dot(y, z)
            z += s * (a[i] - b)
        return z

    @staticmethod
    def _converged(forces: np.ndarray, fmax: float) -> bool:
        return bool(np.linalg.norm(forces.reshape(-1, 3), axis=1).max() < fmax)

    def _notify(self) -> None:
        for function, interval in self._observers:
            if self.nsteps % interval == 0:
                function()
