"""Transferability report: a calculator against the reference on structures it was not fitted to.

:func:`transferability` compares any calculator config (typically a fitted
:class:`~pyiron_assyst.fitting.mace.MaceModel`) with the reference calculator config of a unary
system on

- energy–volume curves of fcc, bcc, hcp (ideal c/a) and simple cubic, 0.8–1.2 × the reference's
  equilibrium volume of each phase, with a Birch–Murnaghan fit (:class:`ase.eos.EquationOfState`)
  giving the equilibrium volume (Å³/atom), lattice constant a (Å), bulk modulus (GPa) and the
  phase energy differences to fcc (meV/atom); every calculator is fitted on its own curve;
- a vacancy in a 3×3×3 cubic fcc supercell at each calculator's own lattice constant: formation
  energy unrelaxed and with relaxed positions (eV);
- unrelaxed (111) and (100) surface energies at each calculator's own lattice constant (J/m²);
- snapshots of a seeded Langevin MD of a 32-atom fcc cell at high temperature, run with the
  reference calculator: energy MAE (meV/atom) and force RMSE (eV/Å);
- held-out structures (a lineage-split part of the generated set the model never saw): energy
  MAE and RMSE (meV/atom) and force RMSE (eV/Å), over all and over those within
  ``energy_window`` eV/atom of the lowest reference energy per atom;
- the isolated atom's energy (eV) and the cohesive energy of fcc (eV/atom);
- **the model driving itself** (:mod:`~pyiron_assyst.fitting.stability`): Langevin NVT MD of
  an fcc supercell with a vacancy driven by the model at each of ``stability_temperatures``
  (the highest should lie above the reference's melting point), with the shortest distance and
  the model's and the reference's energy along the model's own trajectory; and dimer and
  trimer curves against the reference. These are pass/fail checks
  (:attr:`TransferabilityResult.checks`): a model that collapses fails, and the report says so
  at its top, whatever its errors elsewhere.

:func:`write_report` writes ``transferability.csv``, ``transferability.md`` and the pictures
``ev_curves.png``, ``parity_energy.png`` and ``parity_forces.png`` into a directory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.evaluation import has_labels
from pyiron_assyst.core.config import Config, require
from pyiron_assyst.fitting.stability import (
    Check,
    MDTrace,
    cluster_checks,
    cluster_curves,
    md_checks,
    md_trace,
    vacancy_cell,
)

__all__ = [
    "PHASES",
    "Check",
    "Row",
    "TransferabilityConfig",
    "TransferabilityResult",
    "phase_structure",
    "transferability",
    "write_report",
]

logger = logging.getLogger(__name__)

PHASES = ("fcc", "bcc", "hcp", "sc")
"""Phases of the energy–volume curves."""
_ATOMS_PER_CELL_VOLUME = {"fcc": 4.0, "bcc": 2.0, "sc": 1.0}
_HCP_C_OVER_A = math.sqrt(8.0 / 3.0)
J_PER_M2 = units.J / units.m**2
"""1 J/m² in eV/Å²."""


@dataclass(frozen=True)
class TransferabilityConfig(Config):
    """What :func:`transferability` computes.

    Parameters
    ----------
    element
        Chemical symbol of the unary system.
    volume_range
        Smallest and largest volume of the E–V curves, relative to the reference's V0.
    n_volumes
        Points per E–V curve.
    vacancy_repeat
        Repetition of the cubic fcc cell in the vacancy supercell (3: 108 sites).
    relax_fmax
        Force tolerance of the vacancy relaxation in eV/Å.
    relax_steps
        Largest number of BFGS steps of the vacancy relaxation.
    slab_layers
        Atomic layers of the surface slabs.
    vacuum
        Vacuum between periodic slab images in Å.
    md_temperature
        Temperature of the Langevin MD in K.
    md_steps
        MD steps (snapshots are taken evenly over them).
    md_timestep
        MD time step in fs.
    md_snapshots
        Snapshots compared.
    seed
        Seed of the MD velocities and the Langevin noise.
    energy_window
        Held-out structures within this many eV/atom of the lowest reference energy per atom
        form the "near minimum" subset.
    stability_temperatures
        Temperatures (K) of the MD driven by the model; empty: no MD check.
    stability_steps
        MD steps per temperature (1000 × 2 fs = 2 ps).
    stability_every
        Steps between two observations (shortest distance, reference energy).
    stability_repeat
        The MD cell is a cube of ``stability_repeat`` × ``stability_repeat`` ×
        ``stability_repeat`` cubic fcc cells at the reference's lattice
        constant, less one atom.
    min_distance
        The MD passes while its shortest distance stays at or above this fraction of the
        reference's fcc nearest-neighbour distance (EMT Cu itself reaches 0.75-0.78 of it in
        2 ps at 1500-2500 K, so 0.8 would fail the reference).
    md_tolerance
        The MD passes while ``|E_model - E_ref|`` per atom stays within this (eV/atom) at
        every observation.
    cluster_fractions
        Distances of the dimer and trimer curves, as fractions of the reference's fcc
        nearest-neighbour distance; empty: no curves.
    cluster_down_to
        The curves are checked from this fraction of the nearest-neighbour distance up.
    cluster_tolerance
        Largest ``|E_model - E_ref|`` per atom (eV/atom) of the checked part of the curves.
    """

    element: str = "Cu"
    volume_range: tuple[float, float] = (0.8, 1.2)
    n_volumes: int = 11
    vacancy_repeat: int = 3
    relax_fmax: float = 0.01
    relax_steps: int = 300
    slab_layers: int = 6
    vacuum: float = 10.0
    md_temperature: float = 1200.0
    md_steps: int = 200
    md_timestep: float = 2.0
    md_snapshots: int = 10
    seed: int = 0
    energy_window: float = 1.0
    stability_temperatures: tuple[float, ...] = (600.0, 1500.0, 2000.0)
    stability_steps: int = 1000
    stability_every: int = 10
    stability_repeat: int = 2
    min_distance: float = 0.65
    md_tolerance: float = 0.02
    cluster_fractions: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5)
    cluster_down_to: float = 0.7
    cluster_tolerance: float = 0.1

    def __post_init__(self) -> None:
        from ase.data import atomic_numbers

        name = "TransferabilityConfig"
        object.__setattr__(self, "volume_range", tuple(float(v) for v in self.volume_range))
        require(self.element in atomic_numbers, name, "element", "a chemical symbol",
                self.element)
        low, high = ((*self.volume_range, 0.0, 0.0))[:2]
        require(len(self.volume_range) == 2 and 0 < low < 1 < high, name, "volume_range",
                "(low, high) with 0 < low < 1 < high", self.volume_range)
        require(self.n_volumes >= 5, name, "n_volumes", ">= 5 (an EOS fit)", self.n_volumes)
        for key in ("vacancy_repeat", "relax_steps", "md_steps", "md_snapshots"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 1, name, key, "an integer >= 1", value)
        require(self.slab_layers >= 3, name, "slab_layers", ">= 3", self.slab_layers)
        require(self.seed >= 0, name, "seed", "an integer >= 0", self.seed)
        require(self.md_snapshots <= self.md_steps, name, "md_snapshots", "<= md_steps",
                self.md_snapshots)
        for key in ("relax_fmax", "vacuum", "md_temperature", "md_timestep", "energy_window",
                    "min_distance", "md_tolerance", "cluster_down_to", "cluster_tolerance"):
            value = getattr(self, key)
            require(value > 0, name, key, "> 0", value)
        for key in ("stability_temperatures", "cluster_fractions"):
            values = tuple(float(v) for v in getattr(self, key))
            object.__setattr__(self, key, values)
            require(all(v > 0 for v in values), name, key, "a tuple of numbers > 0", values)
        for key in ("stability_steps", "stability_every", "stability_repeat"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 1, name, key, "an integer >= 1", value)


@dataclass(frozen=True)
class Row:
    """One quantity of the report: reference and model value, their difference, the unit, and a
    note where a value could not be computed (it is then NaN and the note says why)."""

    quantity: str
    unit: str
    reference: float
    model: float
    note: str = ""

    @property
    def difference(self) -> float:
        """``model - reference``."""
        return self.model - self.reference


@dataclass
class TransferabilityResult:
    """Numbers and curves of one report.

    ``rows`` hold the table; ``curves[phase]`` the volumes (Å³/atom) and energies per atom (eV)
    of reference and model; ``parity[name]`` reference and model values of the held-out and MD
    energies per atom (eV) and force components (eV/Å); ``checks`` the pass/fail criteria,
    ``md`` the traces of the MD driven by the model and ``clusters`` the dimer and trimer
    curves (distance in Å, energies per atom in eV).
    """

    rows: list[Row] = field(default_factory=list)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    parity: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    md: list[MDTrace] = field(default_factory=list)
    clusters: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every pass/fail check holds (``True`` when there are none)."""
        return all(check.passed for check in self.checks)

    def value(self, quantity: str) -> Row:
        """The row of ``quantity``."""
        for row in self.rows:
            if row.quantity == quantity:
                return row
        raise KeyError(f"no row {quantity!r}; rows: {[r.quantity for r in self.rows]}")

    def table(self):  # -> pandas.DataFrame
        """The rows as a DataFrame (quantity, unit, reference, model, difference, note)."""
        import pandas as pd

        return pd.DataFrame([{"quantity": r.quantity, "unit": r.unit, "reference": r.reference,
                              "model": r.model, "difference": r.difference, "note": r.note}
                             for r in self.rows])


# --------------------------------------------------------------------------- calculators


def _calculator_source(config: CalculatorConfig) -> Callable[[Atoms], BaseCalculator]:
    """Calculators for structures: one live calculator reused, unless the config depends on
    the structure (overrides ``calculator_for``)."""
    if type(config).calculator_for is CalculatorConfig.calculator_for:
        calc = config.get_calculator()
        return lambda atoms: _fresh(calc)
    return config.calculator_for


def _fresh(calc: BaseCalculator) -> BaseCalculator:
    """``calc`` with its state forgotten: it treats the next structure as new (e.g. EMT builds
    a new neighbour list), so results do not depend on what it evaluated before."""
    reset = getattr(calc, "reset", None)
    if callable(reset):
        reset()
    return calc


def _energy_forces(atoms: Atoms, source: Callable[[Atoms], BaseCalculator],
                   ) -> tuple[float, np.ndarray]:
    """Free energy (eV; ``energy`` where the calculator has none) and forces (eV/Å)."""
    work = atoms.copy()
    work.calc = source(work)
    forces = np.array(work.get_forces(), dtype=float)
    energy = float(work.calc.results.get("free_energy", work.get_potential_energy()))
    return energy, forces


def _energy(atoms: Atoms, source: Callable[[Atoms], BaseCalculator]) -> float:
    work = atoms.copy()
    work.calc = source(work)
    energy = work.get_potential_energy()
    return float(work.calc.results.get("free_energy", energy))


# --------------------------------------------------------------------------- bulk phases


def phase_structure(element: str, phase: str, volume: float) -> Atoms:
    """Primitive cell of ``phase`` with ``volume`` Å³/atom (hcp with ideal c/a)."""
    from ase.build import bulk

    require(phase in PHASES, "phase_structure", "phase", f"one of {PHASES}", phase)
    return bulk(element, phase, **_lattice(phase, volume))


def _lattice(phase: str, volume: float) -> dict[str, float]:
    if phase == "hcp":
        a = (2.0 * volume / (math.sqrt(3.0) / 2.0 * _HCP_C_OVER_A)) ** (1.0 / 3.0)
        return {"a": a, "c": a * _HCP_C_OVER_A}
    return {"a": (_ATOMS_PER_CELL_VOLUME[phase] * volume) ** (1.0 / 3.0)}


def _curve(element: str, phase: str, volumes: np.ndarray,
           source: Callable[[Atoms], BaseCalculator]) -> np.ndarray:
    energies = []
    for volume in volumes:
        atoms = phase_structure(element, phase, float(volume))
        energies.append(_energy(atoms, source) / len(atoms))
    return np.array(energies)


def _reference_volume(element: str, phase: str, source: Callable[[Atoms], BaseCalculator],
                      ) -> float:
    """Equilibrium volume (Å³/atom) of the reference: coarse scan, then an EOS fit near it."""
    from ase.data import atomic_numbers, covalent_radii

    guess = 4.0 / 3.0 * math.pi * covalent_radii[atomic_numbers[element]] ** 3 * 1.4
    scan = guess * np.linspace(0.5, 2.0, 31)
    energies = _curve(element, phase, scan, source)
    best = float(scan[int(np.argmin(energies))])
    fine = best * np.linspace(0.94, 1.06, 9)
    return _eos(fine, _curve(element, phase, fine, source))[0]


def _eos(volumes: np.ndarray, energies: np.ndarray) -> tuple[float, float, float]:
    """Birch–Murnaghan ``(V0 Å³/atom, E0 eV/atom, B GPa)``; NaN where the fit fails."""
    import warnings

    from ase.eos import EquationOfState

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    except Exception as error:  # no minimum inside the range, singular fit
        logger.warning("EOS fit failed: %s", error)
        return math.nan, math.nan, math.nan
    if not volumes.min() <= v0 <= volumes.max():
        logger.warning("EOS minimum %.3f outside the sampled volumes", v0)
    return float(v0), float(e0), float(b / units.GPa)


def _phases(config: TransferabilityConfig, ref: Callable, model: Callable,
            result: TransferabilityResult) -> dict[str, dict[str, float]]:
    """E–V curves and EOS rows; returns the fcc lattice constant and energy per calculator."""
    low, high = config.volume_range
    fits: dict[str, dict[str, tuple[float, float, float]]] = {"reference": {}, "model": {}}
    for phase in PHASES:
        v0 = _reference_volume(config.element, phase, ref)
        volumes = v0 * np.linspace(low, high, config.n_volumes)
        curves = {"volume": volumes, "reference": _curve(config.element, phase, volumes, ref),
                  "model": _curve(config.element, phase, volumes, model)}
        result.curves[phase] = curves
        for side in ("reference", "model"):
            fits[side][phase] = _eos(volumes, curves[side])
    for phase in PHASES:
        (rv, re, rb), (mv, me, mb) = fits["reference"][phase], fits["model"][phase]
        a_ref, a_mod = (_lattice(phase, v)["a"] if math.isfinite(v) else math.nan
                        for v in (rv, mv))
        result.rows += [Row(f"{phase} V0", "Å³/atom", rv, mv), Row(f"{phase} a", "Å", a_ref,
                        a_mod), Row(f"{phase} B", "GPa", rb, mb)]
        if phase != "fcc":
            result.rows.append(Row(f"E({phase}) - E(fcc)", "meV/atom",
                                   1000 * (re - fits["reference"]["fcc"][1]),
                                   1000 * (me - fits["model"]["fcc"][1])))
    return {side: {"a": _lattice("fcc", fits[side]["fcc"][0])["a"], "e": fits[side]["fcc"][1]}
            for side in fits}


# --------------------------------------------------------------------------- defects


def _bulk_energy(element: str, a: float, source: Callable) -> float:
    from ase.build import bulk

    atoms = bulk(element, "fcc", a=a)
    return _energy(atoms, source) / len(atoms)


_COLLAPSE = 0.75
"""A relaxed defect whose closest pair is below this fraction of the perfect crystal's nearest
neighbour distance has collapsed: its energy is no formation energy."""


def _vacancy(config: TransferabilityConfig, a: float, source: Callable
             ) -> tuple[float, float, str]:
    """Vacancy formation energy (eV), unrelaxed and position-relaxed, at lattice constant a.

    The relaxed value is NaN, with a note saying why, when the relaxation did not reach
    ``relax_fmax`` in ``relax_steps`` or the structure collapsed (closest pair below
    :data:`_COLLAPSE` times the nearest-neighbour distance): a potential that has never seen a
    vacancy may have no minimum near one.
    """
    from ase.build import bulk
    from ase.optimize import BFGS

    if not math.isfinite(a):
        return math.nan, math.nan, "no lattice constant"
    n = config.vacancy_repeat
    perfect = bulk(config.element, "fcc", a=a, cubic=True).repeat((n, n, n))
    e_atom = _bulk_energy(config.element, a, source)
    defect = perfect.copy()
    del defect[0]
    unrelaxed = _energy(defect, source) - len(defect) * e_atom
    defect.calc = source(defect)
    converged = BFGS(defect, logfile=None).run(fmax=config.relax_fmax, steps=config.relax_steps)
    relaxed = float(defect.get_potential_energy()) - len(defect) * e_atom
    closest = float(defect.get_all_distances(mic=True)[np.triu_indices(len(defect), 1)].min())
    if closest < _COLLAPSE * a / math.sqrt(2):
        return unrelaxed, math.nan, (f"relaxation collapsed: closest pair {closest:.2f} Å "
                                     f"(perfect {a / math.sqrt(2):.2f} Å), E_f {relaxed:.3g} eV")
    if not converged:
        return unrelaxed, math.nan, (f"relaxation not converged to {config.relax_fmax} eV/Å in "
                                     f"{config.relax_steps} steps (E_f {relaxed:.3g} eV)")
    return unrelaxed, relaxed, ""


def _surface(config: TransferabilityConfig, facet: str, a: float, source: Callable) -> float:
    """Unrelaxed surface energy in J/m² at lattice constant a."""
    from ase.build import fcc100, fcc111

    if not math.isfinite(a):
        return math.nan
    build = {"111": fcc111, "100": fcc100}[facet]
    slab = build(config.element, size=(1, 1, config.slab_layers), a=a,
                 vacuum=config.vacuum / 2, periodic=True)
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    gamma = (_energy(slab, source) - len(slab) * _bulk_energy(config.element, a, source)) / (
        2 * area)
    return gamma / J_PER_M2


def _defects(config: TransferabilityConfig, fcc: dict[str, dict[str, float]], ref: Callable,
             model: Callable, result: TransferabilityResult) -> None:
    (ru, rr, rnote), (mu, mr, mnote) = (_vacancy(config, fcc[s]["a"], src)
                                        for s, src in (("reference", ref), ("model", model)))
    note = "; ".join(f"{side}: {text}" for side, text in (("reference", rnote),
                                                           ("model", mnote)) if text)
    result.rows += [Row("vacancy formation (unrelaxed)", "eV", ru, mu),
                    Row("vacancy formation (relaxed)", "eV", rr, mr, note)]
    for facet in ("111", "100"):
        result.rows.append(Row(f"surface energy ({facet}, unrelaxed)", "J/m²",
                               _surface(config, facet, fcc["reference"]["a"], ref),
                               _surface(config, facet, fcc["model"]["a"], model)))


# --------------------------------------------------------------------------- MD and held-out


def md_snapshots(config: TransferabilityConfig, a: float, source: Callable) -> list[Atoms]:
    """Snapshots of a seeded Langevin MD (reference calculator) of a 2×2×2 cubic fcc cell."""
    from ase.build import bulk
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(config.seed)
    atoms = bulk(config.element, "fcc", a=a, cubic=True).repeat((2, 2, 2))
    thermalize = getattr(velocitydistribution, "thermalize_momenta",  # ase >= 3.29
                         velocitydistribution.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=2 * config.md_temperature, rng=rng)
    atoms.calc = source(atoms)
    dynamics = Langevin(atoms, config.md_timestep * units.fs,
                        temperature_K=config.md_temperature, friction=0.02, fixcm=False,
                        rng=rng)
    every = config.md_steps // config.md_snapshots
    snapshots: list[Atoms] = []
    for _ in range(config.md_snapshots):
        dynamics.run(every)
        snapshots.append(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True))
    return snapshots


def _reference_values(atoms: Atoms, ref: Callable) -> tuple[float, np.ndarray]:
    if has_labels(atoms):
        results = atoms.calc.results
        return float(results.get("free_energy", results["energy"])), np.array(results["forces"])
    return _energy_forces(atoms, ref)


def _errors(name: str, structures: Sequence[Atoms], ref: Callable, model: Callable,
            result: TransferabilityResult, window: float | None = None) -> None:
    """Energy MAE/RMSE (meV/atom) and force RMSE (eV/Å) rows of ``structures``."""
    e_ref, e_mod, f_ref, f_mod = [], [], [], []
    for atoms in structures:
        (er, fr), (em, fm) = _reference_values(atoms, ref), _energy_forces(atoms, model)
        e_ref.append(er / len(atoms))
        e_mod.append(em / len(atoms))
        f_ref.append(fr.ravel())
        f_mod.append(fm.ravel())
    er, em = np.array(e_ref), np.array(e_mod)
    fr, fm = np.concatenate(f_ref), np.concatenate(f_mod)
    result.parity[name] = (er, em)
    result.parity[f"{name} forces"] = (fr, fm)
    _error_rows(name, er, em, fr, fm, result)
    if window is not None:
        near = er <= er.min() + window
        forces = np.concatenate([np.full(3 * len(s), n) for s, n in zip(structures, near)])
        _error_rows(f"{name} within {window:g} eV/atom", er[near], em[near], fr[forces],
                    fm[forces], result)


def _error_rows(name: str, er: np.ndarray, em: np.ndarray, fr: np.ndarray, fm: np.ndarray,
                result: TransferabilityResult) -> None:
    de, df = em - er, fm - fr
    result.rows += [
        Row(f"{name}: structures", "", float(len(er)), float(len(er))),
        Row(f"{name}: energy MAE", "meV/atom", 0.0, 1000 * float(np.mean(np.abs(de)))),
        Row(f"{name}: energy RMSE", "meV/atom", 0.0, 1000 * float(np.sqrt(np.mean(de**2)))),
        Row(f"{name}: force RMSE", "eV/Å", 0.0, float(np.sqrt(np.mean(df**2)))),
    ]


# --------------------------------------------------------------------------- the report


def transferability(model: CalculatorConfig, reference: CalculatorConfig,
                    held_out: Sequence[Atoms] = (),
                    config: TransferabilityConfig = TransferabilityConfig(),
                    ) -> TransferabilityResult:
    """Compare ``model`` with ``reference`` on phases, defects, MD snapshots and ``held_out``.

    Parameters
    ----------
    model
        Calculator config under test (e.g. a fitted :class:`~pyiron_assyst.fitting.mace.MaceModel`).
    reference
        Reference calculator config (the one that labelled the training set).
    held_out
        Structures not in the training set (e.g. the held-out side of
        :func:`~pyiron_assyst.fitting.mace.split_by_lineage`); their own labels are the reference
        values where they carry a single point, else the reference is evaluated.
    config
        Element and settings of the comparison.

    Returns
    -------
    TransferabilityResult
        Table rows, E–V curves and parity data. Error rows have reference 0 and the error as
        the model value.
    """
    ref, mod = _calculator_source(reference), _calculator_source(model)
    result = TransferabilityResult()
    fcc = _phases(config, ref, mod, result)
    _defects(config, fcc, ref, mod, result)
    snapshots = md_snapshots(config, fcc["reference"]["a"], ref)
    _errors("MD snapshots", snapshots, ref, mod, result)
    if held_out:
        _errors("held-out", list(held_out), ref, mod, result, window=config.energy_window)
    _cohesion(config, fcc, ref, mod, result)
    _stability(config, fcc["reference"]["a"], ref, mod, result)
    return result


def _cohesion(config: TransferabilityConfig, fcc: dict[str, dict[str, float]], ref: Callable,
              model: Callable, result: TransferabilityResult) -> None:
    """Isolated-atom energy (eV) and cohesive energy of fcc (eV/atom) of both calculators."""
    from pyiron_assyst.stages.curate import isolated_atom

    atom = isolated_atom(config.element)
    e_ref, e_mod = _energy(atom, ref), _energy(atom, model)
    result.rows += [Row("isolated atom energy", "eV", e_ref, e_mod),
                    Row("cohesive energy (fcc)", "eV/atom", e_ref - fcc["reference"]["e"],
                        e_mod - fcc["model"]["e"])]


def _stability(config: TransferabilityConfig, a: float, ref: Callable, model: Callable,
               result: TransferabilityResult) -> None:
    """MD driven by the model at every temperature, and the cluster curves; their checks."""
    if not math.isfinite(a):
        result.checks.append(Check("stability", False, math.nan, math.nan, "",
                                   "no reference lattice constant"))
        return
    nearest = a / math.sqrt(2.0)
    start = vacancy_cell(config.element, a, config.stability_repeat)
    limit = config.min_distance * nearest
    for temperature in config.stability_temperatures:
        trace = md_trace(start, model, ref, temperature, config.stability_steps,
                         config.stability_every, config.md_timestep, config.seed,
                         collapse=limit)
        result.md.append(trace)
        result.checks += md_checks(trace, limit, config.md_tolerance)
    if config.cluster_fractions:
        distances = [f * nearest for f in config.cluster_fractions]
        result.clusters = cluster_curves(config.element, distances, model, ref)
        result.checks += cluster_checks(result.clusters, config.cluster_down_to * nearest,
                                        config.cluster_tolerance)


def write_report(result: TransferabilityResult, directory: str | Path) -> list[Path]:
    """Write ``transferability.csv``, ``transferability.md`` and the pictures; return paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = result.table()
    paths = [directory / "transferability.csv", directory / "transferability.md"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(_markdown(result))
    paths += _pictures(result, directory)
    return paths


def _verdict(result: TransferabilityResult) -> list[str]:
    """The pass/fail checks, failures in red, above the table."""
    if not result.checks:
        return []
    failed = [c for c in result.checks if not c.passed]
    head = ('<span style="color:red">**FAIL**</span>: ' + ", ".join(c.name for c in failed)
            if failed else "**PASS**: every check holds")
    lines = [f"Verdict: {head}", "", "| check | result | value | limit | unit | detail |",
             "|---|---|---|---|---|---|"]
    for c in result.checks:
        mark = "pass" if c.passed else '<span style="color:red">**FAIL**</span>'
        lines.append(f"| {c.name} | {mark} | {c.value:.4g} | {c.limit:.4g} | {c.unit} | "
                     f"{c.detail} |")
    return [*lines, ""]


def _markdown(result: TransferabilityResult) -> str:
    lines = [*_verdict(result), "| quantity | unit | reference | model | difference | note |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.quantity} | {r.unit} | {r.reference:.4g} | {r.model:.4g} | "
              f"{r.difference:.3g} | {r.note} |" for r in result.rows]
    return "\n".join(lines) + "\n"


def _pictures(result: TransferabilityResult, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for phase, curve in result.curves.items():
        line = ax.plot(curve["volume"], curve["reference"], "o", label=f"{phase} reference")
        ax.plot(curve["volume"], curve["model"], "-", color=line[0].get_color(),
                label=f"{phase} model")
    ax.set(xlabel="volume (Å³/atom)", ylabel="energy (eV/atom)")
    ax.legend(fontsize=7)
    paths.append(_save(fig, directory / "ev_curves.png"))
    for kind, unit in (("energy", "eV/atom"), ("forces", "eV/Å")):
        fig, ax = plt.subplots(figsize=(4, 4))
        for name, (x, y) in result.parity.items():
            if name.endswith(" forces") == (kind == "forces"):
                ax.plot(x, y, ".", ms=3, label=name.removesuffix(" forces"))
        lims = ax.get_xlim()
        ax.plot(lims, lims, "k-", lw=0.5)
        ax.set(xlabel=f"reference ({unit})", ylabel=f"model ({unit})")
        ax.legend(fontsize=7)
        paths.append(_save(fig, directory / f"parity_{kind}.png"))
    if result.md:
        paths.append(_md_picture(result, directory / "md_traces.png"))
    if result.clusters:
        paths.append(_cluster_picture(result, directory / "clusters.png"))
    return paths


def _md_picture(result: TransferabilityResult, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5), sharex=True)
    for trace in result.md:
        line = top.plot(np.asarray(trace.time) / 1000, trace.shortest, "-",
                        label=f"{trace.temperature:g} K" + (" (stopped)" if trace.stopped
                                                            else ""))
        bottom.plot(np.asarray(trace.time) / 1000, 1000 * trace.error(), "-",
                    color=line[0].get_color())
    top.set(ylabel="shortest distance (Å)")
    top.legend(fontsize=7)
    bottom.set(xlabel="time (ps)", ylabel="E_model - E_ref (meV/atom)")
    return _save(fig, path)


def _cluster_picture(result: TransferabilityResult, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for kind, curve in result.clusters.items():
        line = ax.plot(curve["distance"], curve["reference"], "o", label=f"{kind} reference")
        ax.plot(curve["distance"], curve["model"], "-", color=line[0].get_color(),
                label=f"{kind} model")
    ax.set(xlabel="distance (Å)", ylabel="energy (eV/atom)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
