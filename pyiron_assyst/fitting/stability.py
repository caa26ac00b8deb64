"""Does a potential survive its own molecular dynamics? Checks for the transferability report.

A fitted model can match the reference on every structure the reference drove and still fall
apart when it drives the atoms itself: without repulsion below the training set's shortest
distance, atoms fall onto each other within a few hundred steps. These plain functions run the
model itself and compare with the reference along the model's own trajectory:

- :func:`md_trace`: Langevin NVT MD driven by the model (:class:`ase.md.langevin.Langevin`);
  every ``every`` steps the shortest interatomic distance (Å) and the energy per atom of the
  model and of the reference on the same snapshot (eV/atom). It stops early when the shortest
  distance falls below the collapse limit, when an energy is not finite or when the model
  raises: the trace says why.
- :func:`md_checks`: pass/fail of one trace: the shortest distance stays above a limit and the
  model's energy per atom stays within a tolerance of the reference's (the largest error along
  the trajectory, not a mean, so a collapse at the end is not averaged away).
- :func:`cluster_curve`: energies per atom of a dimer or an equilateral trimer of given
  elements at distances below and around the bond length, model and reference, and
  :func:`cluster_checks`.

Energies are ``free_energy`` where the calculator gives one, in eV; distances in Å;
temperatures in K; time steps in fs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.numerics.distances import shortest_distance_in

__all__ = ["Check", "MDTrace", "cluster_checks", "cluster_curve", "md_checks", "md_trace",
           "vacancy_cell"]

Source = Callable[[Atoms], BaseCalculator]
"""A calculator for a structure (a live calculator, fresh state)."""


@dataclass(frozen=True)
class Check:
    """One pass/fail criterion of the report.

    Parameters
    ----------
    name
        What was checked, e.g. ``"MD 1500 K: shortest distance"``.
    passed
        Whether the criterion holds.
    value
        The measured value (worst case over the run).
    limit
        The limit it is compared with.
    unit
        Unit of ``value`` and ``limit``.
    detail
        Why it failed (or what was measured), in words.
    """

    name: str
    passed: bool
    value: float
    limit: float
    unit: str
    detail: str = ""


@dataclass
class MDTrace:
    """Observables of one MD run every ``every`` steps: ``step``, ``time`` (fs), ``shortest``
    (Å), ``model`` and ``reference`` energies per atom (eV/atom); ``stopped`` says why the run
    ended before ``steps`` (empty when it ran to the end); ``cell`` names the structure (e.g.
    ``"Cu vacancy"``)."""

    temperature: float
    steps: int
    cell: str = ""
    step: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    shortest: list[float] = field(default_factory=list)
    model: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    stopped: str = ""

    def error(self) -> np.ndarray:
        """Model minus reference energy per atom along the trajectory (eV/atom)."""
        return np.asarray(self.model) - np.asarray(self.reference)


def vacancy_cell(element: str, a: float, repeat: int = 2) -> Atoms:
    """A cubic fcc supercell of ``repeat`` × ``repeat`` × ``repeat`` conventional cells at
    lattice constant ``a`` Å with the first atom removed (31 atoms for ``repeat=2``)."""
    from ase.build import bulk

    atoms = bulk(element, "fcc", a=a, cubic=True).repeat((repeat,) * 3)
    del atoms[0]
    return atoms


def _energy_per_atom(atoms: Atoms, source: Source) -> float:
    work = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    work.calc = source(work)
    energy = work.get_potential_energy()
    return float(work.calc.results.get("free_energy", energy)) / len(work)


def md_trace(start: Atoms, model: Source, reference: Source, temperature: float,
             steps: int, every: int = 10, timestep: float = 2.0, seed: int = 0,
             collapse: float = 0.0, friction: float = 0.01, cell: str = "") -> MDTrace:
    """Langevin NVT MD of ``start`` driven by ``model``, observed every ``every`` steps.

    Parameters
    ----------
    start
        Initial structure (not modified); velocities are drawn at ``temperature``.
    model, reference
        Calculator sources; ``model`` drives, ``reference`` only evaluates snapshots.
    temperature
        Thermostat temperature in K.
    steps
        Largest number of MD steps.
    every
        Observation interval in steps.
    timestep
        Time step in fs.
    seed
        Seed of the velocities and the thermostat noise.
    collapse
        Stop when the shortest distance falls below this (Å): the run has failed.
    friction
        Langevin friction in 1/fs (0.01: the thermostat's relaxation time is 100 fs).
    cell
        Name of the structure, for the trace and its checks.
    """
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(seed)
    atoms = Atoms(start.numbers, start.positions, cell=start.cell, pbc=start.pbc)
    thermalize = getattr(velocitydistribution, "thermalize_momenta",  # ase >= 3.29
                         velocitydistribution.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=temperature, rng=rng)
    atoms.calc = model(atoms)
    dynamics = Langevin(atoms, timestep * units.fs, temperature_K=temperature,
                        friction=friction / units.fs, fixcm=False, rng=rng)
    trace = MDTrace(temperature, steps, cell)
    done, first = 0, True
    while first or done < steps:
        try:
            if not first:
                dynamics.run(min(every, steps - done))
            first = False
            energy = float(atoms.calc.results.get("free_energy", atoms.get_potential_energy()))
        except Exception as error:  # a model that blows up is a failed run, not a crash
            trace.stopped = f"model raised at step {done}: {type(error).__name__}: {error}"
            break
        done = dynamics.nsteps
        trace.step.append(done)
        trace.time.append(done * timestep)
        trace.shortest.append(shortest_distance_in(atoms))
        trace.model.append(energy / len(atoms))
        trace.reference.append(_energy_per_atom(atoms, reference))
        if not (math.isfinite(trace.model[-1]) and math.isfinite(trace.reference[-1])):
            trace.stopped = f"non-finite energy at step {done}"
            break
        if trace.shortest[-1] < collapse:
            trace.stopped = (f"collapsed at step {done}: shortest distance "
                             f"{trace.shortest[-1]:.2f} Å")
            break
    return trace


def md_checks(trace: MDTrace, min_distance: float, tolerance: float) -> list[Check]:
    """Pass/fail of one trace: shortest distance ``>= min_distance`` Å over the whole run and
    largest ``|E_model - E_ref|`` per atom ``<= tolerance`` eV/atom; a run that stopped early
    fails both. The energy check's detail gives the step of the largest error: at step 0 it
    is the starting cell's static error, which the model's MD did not make."""
    name = f"MD {trace.cell + ' ' if trace.cell else ''}{trace.temperature:g} K"
    ran = f"{trace.step[-1] if trace.step else 0}/{trace.steps} steps"
    shortest = min(trace.shortest, default=math.nan)
    errors = np.abs(trace.error())
    finite = bool(errors.size) and bool(np.all(np.isfinite(errors)))
    worst = float(errors.max()) if finite else math.inf
    drift = float(trace.error()[-1] - trace.error()[0]) if errors.size > 1 else math.nan
    stopped = f"; stopped: {trace.stopped}" if trace.stopped else ""
    where = ""
    if finite and trace.step:
        at = trace.step[int(np.argmax(errors))]
        where = f"; largest at step {at}" + (" (the starting cell's static error)"
                                             if at == trace.step[0] else "")
    return [
        Check(f"{name}: shortest distance", not trace.stopped and shortest >= min_distance,
              shortest, min_distance, "Å", f"{ran}{stopped}"),
        Check(f"{name}: |E_model - E_ref|", not trace.stopped and worst <= tolerance,
              1000 * worst, 1000 * tolerance, "meV/atom",
              f"{ran}{where}; drift of the error {1000 * drift:.3g} meV/atom{stopped}"),
    ]


def cluster(symbols: Sequence[str], distance: float, box: float = 12.0) -> Atoms:
    """A dimer (two symbols) or an equilateral trimer (three) with side ``distance`` Å."""
    from pyiron_assyst.stages.short_range import dimer, trimer

    if len(symbols) == 2:
        return dimer(symbols[0], symbols[1], distance, box)
    return trimer(tuple(symbols), distance, box)


def cluster_curve(symbols: Sequence[str], distances: Sequence[float], model: Source,
                  reference: Source) -> dict[str, np.ndarray]:
    """Energies per atom (eV/atom) of the cluster of ``symbols`` (a dimer or an equilateral
    trimer) at ``distances`` (Å): ``{"distance", "reference", "model"}``."""
    structures = [cluster(symbols, d) for d in distances]
    return {"distance": np.asarray(distances, dtype=float),
            "reference": np.array([_energy_per_atom(s, reference) for s in structures]),
            "model": np.array([_energy_per_atom(s, model) for s in structures])}


def cluster_checks(curves: dict[str, dict[str, np.ndarray]], down_to: float | dict[str, float],
                   tolerance: float, up_to: float | dict[str, float] = math.inf) -> list[Check]:
    """Largest ``|E_model - E_ref|`` per atom of each cluster curve at distances from
    ``down_to`` to ``up_to`` Å (one value, or one per curve name), against ``tolerance``
    eV/atom; the largest error beyond ``up_to`` is given in the detail, not checked."""
    checks = []
    for kind, curve in curves.items():
        low = down_to[kind] if isinstance(down_to, dict) else down_to
        high = up_to[kind] if isinstance(up_to, dict) else up_to
        errors = np.abs(curve["model"] - curve["reference"])
        inside = (curve["distance"] >= low - 1e-9) & (curve["distance"] <= high + 1e-9)
        worst, at = _worst(errors, curve["distance"], inside)
        span = f"from {low:.2f} Å" if math.isinf(high) else f"{low:.2f}-{high:.2f} Å"
        detail = f"worst at {at:.2f} Å"
        beyond = curve["distance"] > high + 1e-9
        if beyond.any():
            far, far_at = _worst(errors, curve["distance"], beyond)
            detail += f"; beyond {high:.2f} Å (not checked): {1000 * far:.3g} meV/atom at " \
                      f"{far_at:.2f} Å"
        checks.append(Check(f"{kind} curve: |E_model - E_ref| {span}", worst <= tolerance,
                            1000 * worst, 1000 * tolerance, "meV/atom", detail))
    return checks


def _worst(errors: np.ndarray, distances: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Largest error within ``mask`` (``inf`` if any is not finite) and its distance."""
    chosen = errors[mask]
    if not chosen.size:
        return math.inf, math.nan
    if not np.all(np.isfinite(chosen)):
        return math.inf, float(distances[mask][int(np.argmax(~np.isfinite(chosen)))])
    return float(chosen.max()), float(distances[mask][int(np.argmax(chosen))])
