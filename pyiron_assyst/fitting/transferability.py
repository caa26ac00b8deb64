"""Transferability report: a calculator against the reference on structures it was not fitted to.

:func:`transferability` compares any calculator config (typically a fitted
:class:`~pyiron_assyst.fitting.model.MaceModel`) with the reference calculator config, for every
element of the system (:mod:`~pyiron_assyst.fitting.bulk`):

- energy–volume curves of fcc, bcc, hcp (at the reference's relaxed c/a) and simple cubic,
  0.8–1.2 × the reference's equilibrium volume of each phase, each calculator with its own
  Birch–Murnaghan fit (equilibrium volume Å³/atom, lattice constant Å, bulk modulus GPa), the
  curve's error (RMSE and largest, meV/atom) and the phase energies relative to the ground
  state (meV/atom);
- the **ground state**: the reference's lowest phase (or the one configured); the elastic
  constants (GPa), the vacancy, the surfaces and the MD are built on it, at each calculator's
  own equilibrium volume of that phase;
- elastic constants C11, C12, C44 (hcp also C13, C33) from energy–strain curves;
- a vacancy formation energy, unrelaxed and with relaxed positions (eV), and unrelaxed surface
  energies of the phase's two facets of :data:`~pyiron_assyst.fitting.bulk.FACETS` (J/m²);
- snapshots of a seeded Langevin MD run with the reference: energy MAE (meV/atom) and force
  RMSE (eV/Å);
- the isolated atom's energy (eV) and the cohesive energy of the ground state (eV/atom);
- **the model driving itself** (:mod:`~pyiron_assyst.fitting.stability`): Langevin NVT MD
  driven by the model (``stability_runs``: a supercell with a vacancy and a slab with the
  phase's first facet, at temperatures up to above the reference's melting point), with the
  shortest distance and the model's and the reference's energies along the model's own
  trajectory; and dimer and trimer curves against the reference;

and for the whole system:

- held-out structures (a lineage-split part of the generated set the model never saw): energy
  MAE and RMSE (meV/atom) and force RMSE (eV/Å), over all and over those within
  ``energy_window`` eV/atom of the lowest reference energy per atom *of their composition*
  (so DFT total energies, eV per atom apart between elements, work), and per composition;
- for every pair of elements, formation energies (meV/atom) of the ordered compounds L1₂, B2,
  L1₀ and of a random fcc solid solution (:mod:`~pyiron_assyst.fitting.alloys`).

The MD, cluster and formation-energy comparisons are pass/fail checks
(:attr:`TransferabilityResult.checks`): a model that collapses fails, and the report says so at
its top, whatever its errors elsewhere. :func:`write_report`
(:mod:`~pyiron_assyst.fitting.report_files`) writes the table and the pictures.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.evaluation import has_labels
from pyiron_assyst.core.composition import composition
from pyiron_assyst.core.config import Config, require
from pyiron_assyst.fitting import alloys, bulk
from pyiron_assyst.fitting.bulk import FACETS, PHASES, Phase, phase_structure
from pyiron_assyst.fitting.report_files import write_report
from pyiron_assyst.fitting.results import Row, TransferabilityResult
from pyiron_assyst.fitting.stability import (
    Check,
    cluster_checks,
    cluster_curve,
    md_checks,
    md_trace,
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

J_PER_M2 = units.J / units.m**2
"""1 J/m² in eV/Å²."""
MD_CELLS = ("vacancy", "surface")
"""Structures the model's own MD can run: a supercell less one atom, a slab."""


def _positive(config: object, name: str, keys: Sequence[str], integer: bool = False) -> None:
    for key in keys:
        value = getattr(config, key)
        ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1 if integer
              else isinstance(value, (int, float)) and value > 0)
        require(ok, name, key, "an integer >= 1" if integer else "> 0", value)


@dataclass(frozen=True)
class TransferabilityConfig(Config):
    """What :func:`transferability` computes.

    Parameters
    ----------
    elements
        Chemical symbols of the system (one for a unary, two or more for alloys).
    structure
        Phase the elastic constants, vacancy, surfaces and MD are built on: ``"auto"`` (the
        reference's ground state among :data:`PHASES`) or one of them.
    volume_range
        Smallest and largest volume of the E–V curves, relative to the reference's V0.
    n_volumes
        Points per E–V curve.
    elastic_strain
        Step of the energy–strain curves of the elastic constants (strains 0, ±δ, ±2δ).
    vacancy_sites
        Sites of the vacancy supercell (the conventional cell repeated n × n × n, the smallest
        n reaching this; fcc 108).
    relax_fmax
        Force tolerance of the vacancy relaxation in eV/Å.
    relax_steps
        Largest number of BFGS steps of the vacancy relaxation.
    slab_layers
        Repeats of the surface's stacking unit in a slab (``ase.build.surface`` layers).
    vacuum
        Vacuum between periodic slab images in Å.
    md_temperature, md_steps, md_timestep, md_snapshots
        Temperature (K), steps, time step (fs) and snapshots of the Langevin MD driven by the
        reference (a 32-site supercell of the ground state).
    seed
        Seed of the MD velocities, the Langevin noise and the random solid solution.
    energy_window
        Held-out structures within this many eV/atom of the lowest reference energy per atom
        of their composition form the "within" subset.
    stability_runs
        The MD driven by the model: ``(cell, temperature K, time ps)`` per run, ``cell`` one of
        :data:`MD_CELLS` (``"vacancy"``: a supercell of the structure less one atom;
        ``"surface"``: a slab with the structure's first facet). The default runs the vacancy
        cell 2 ps at 600 K, 10 ps at 1500 K and 2 ps at 2000 K (above EMT Cu's melting point)
        and the slab 2 ps at 1500 K; empty: no MD check.
    stability_every
        Steps between two observations (shortest distance, reference energy).
    stability_sites
        Sites of the model's MD cells: the vacancy supercell has at least this many sites less
        one; the slab at least this many atoms.
    min_distance
        The MD passes while its shortest distance stays at or above this fraction of the
        reference's nearest-neighbour distance (EMT Cu itself reaches 0.75-0.78 of it in
        2 ps at 1500-2500 K, so 0.8 would fail the reference).
    md_tolerance
        The MD passes while ``|E_model - E_ref|`` per atom stays within this (eV/atom) at
        every observation.
    cluster_fractions
        Distances of the dimer and trimer curves, as fractions of the reference's
        nearest-neighbour distance (for a pair, the mean of both elements'); empty: none.
    cluster_down_to, cluster_up_to
        The curves are checked from ``cluster_down_to`` to ``cluster_up_to`` × the
        nearest-neighbour distance: the compressed branch that MD relies on. The stretched part
        beyond is drawn and its largest error named in the check's detail, not checked.
    cluster_tolerance
        Largest ``|E_model - E_ref|`` per atom (eV/atom) of the checked part of the curves.
    formation_tolerance
        Largest ``|ΔH_model - ΔH_ref|`` (eV/atom) of the alloys' formation energies.
    """

    elements: tuple[str, ...] = ("Cu",)
    structure: str = "auto"
    volume_range: tuple[float, float] = (0.8, 1.2)
    n_volumes: int = 11
    elastic_strain: float = 0.005
    vacancy_sites: int = 108
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
    stability_runs: tuple[tuple[str, float, float], ...] = (
        ("vacancy", 600.0, 2.0), ("vacancy", 1500.0, 10.0), ("vacancy", 2000.0, 2.0),
        ("surface", 1500.0, 2.0))
    stability_every: int = 10
    stability_sites: int = 32
    min_distance: float = 0.65
    md_tolerance: float = 0.02
    cluster_fractions: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5)
    cluster_down_to: float = 0.7
    cluster_up_to: float = 1.0
    cluster_tolerance: float = 0.1
    formation_tolerance: float = 0.05

    def __post_init__(self) -> None:
        from ase.data import atomic_numbers

        name = "TransferabilityConfig"
        elements = tuple(self.elements)
        object.__setattr__(self, "elements", elements)
        require(len(elements) >= 1 and len(set(elements)) == len(elements)
                and all(e in atomic_numbers for e in elements), name, "elements",
                "distinct chemical symbols, at least one", elements)
        require(self.structure in ("auto", *PHASES), name, "structure",
                f"'auto' or one of {PHASES}", self.structure)
        object.__setattr__(self, "volume_range", tuple(float(v) for v in self.volume_range))
        low, high = ((*self.volume_range, 0.0, 0.0))[:2]
        require(len(self.volume_range) == 2 and 0 < low < 1 < high, name, "volume_range",
                "(low, high) with 0 < low < 1 < high", self.volume_range)
        require(self.n_volumes >= 5, name, "n_volumes", ">= 5 (an EOS fit)", self.n_volumes)
        _positive(self, name, ("vacancy_sites", "relax_steps", "md_steps", "md_snapshots",
                               "stability_every", "stability_sites"),
                  integer=True)
        require(self.slab_layers >= 3, name, "slab_layers", ">= 3", self.slab_layers)
        require(self.seed >= 0, name, "seed", "an integer >= 0", self.seed)
        require(self.md_snapshots <= self.md_steps, name, "md_snapshots", "<= md_steps",
                self.md_snapshots)
        _positive(self, name, ("relax_fmax", "vacuum", "md_temperature", "md_timestep",
                               "energy_window", "min_distance", "md_tolerance",
                               "cluster_down_to", "cluster_tolerance", "formation_tolerance"))
        require(self.cluster_up_to >= self.cluster_down_to, name, "cluster_up_to",
                f">= cluster_down_to ({self.cluster_down_to})", self.cluster_up_to)
        require(0 < self.elastic_strain <= 0.02, name, "elastic_strain", "in (0, 0.02]",
                self.elastic_strain)
        values = tuple(float(v) for v in self.cluster_fractions)
        object.__setattr__(self, "cluster_fractions", values)
        require(all(v > 0 for v in values), name, "cluster_fractions", "a tuple of numbers > 0",
                values)
        object.__setattr__(self, "stability_runs", _runs(self.stability_runs))

    def steps(self, time: float) -> int:
        """MD steps of ``time`` ps (at least one)."""
        return max(1, round(1000.0 * time / self.md_timestep))


def _runs(runs: object) -> tuple[tuple[str, float, float], ...]:
    allowed = f"a tuple of (cell, temperature K > 0, time ps > 0), cell one of {MD_CELLS}"
    try:
        out = tuple((str(c), float(t), float(p)) for c, t, p in runs)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        require(False, "TransferabilityConfig", "stability_runs", allowed, runs)
    require(all(c in MD_CELLS and t > 0 and p > 0 for c, t, p in out), "TransferabilityConfig",
            "stability_runs", allowed, runs)
    return out


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


_energy = bulk.energy
_SIDES = ("reference", "model")


@dataclass
class _Element:
    """What the report knows of one element: both calculators' phases, the reference's
    nearest-neighbour distance of the chosen structure and its name."""

    symbol: str
    label: str
    phases: dict[str, dict[str, Phase]]
    structure: str
    nearest: float

    def phase(self, side: str, name: str | None = None) -> Phase:
        return self.phases[side][name or self.structure]


# --------------------------------------------------------------------------- bulk phases


def _phases(config: TransferabilityConfig, symbol: str, label: str, ref: Callable,
            model: Callable, result: TransferabilityResult) -> _Element:
    """E–V curves, EOS rows and the ground state of ``symbol``."""
    low, high = config.volume_range
    found: dict[str, dict[str, Phase]] = {side: {} for side in _SIDES}
    for name in PHASES:
        reference = (bulk.relaxed_c_over_a(symbol, ref) if name == "hcp"
                     else bulk.equilibrium(symbol, name, ref))
        volumes = reference.volume * np.linspace(low, high, config.n_volumes)
        curves = {"volume": volumes}
        for side, source in zip(_SIDES, (ref, model)):
            curves[side] = bulk.curve(symbol, name, volumes, source, reference.c_over_a)
            found[side][name] = Phase(name, *bulk.eos(volumes, curves[side]),
                                      reference.c_over_a)
        result.curves[f"{symbol} {name}"] = curves
    ground = (bulk.ground_state(found["reference"]) if config.structure == "auto"
              else found["reference"][config.structure])
    for name in PHASES:
        _phase_rows(label, name, ground.name, found, result.curves[f"{symbol} {name}"], result)
    result.ground_states[symbol] = ground.name
    nearest = bulk.nearest_neighbour(symbol, ground) if math.isfinite(ground.volume) else math.nan
    return _Element(symbol, label, found, ground.name, nearest)


def _phase_rows(label: str, name: str, ground: str, found: dict[str, dict[str, Phase]],
                curves: dict[str, np.ndarray], result: TransferabilityResult) -> None:
    ref, mod = found["reference"][name], found["model"][name]
    error = 1000 * (curves["model"] - curves["reference"])
    result.rows += [Row(f"{label}{name} V0", "Å³/atom", ref.volume, mod.volume),
                    Row(f"{label}{name} a", "Å", ref.a, mod.a),
                    Row(f"{label}{name} B", "GPa", ref.bulk_modulus, mod.bulk_modulus),
                    Row(f"{label}{name} E–V RMSE", "meV/atom", 0.0,
                        float(np.sqrt(np.mean(error**2)))),
                    Row(f"{label}{name} E–V max error", "meV/atom", 0.0,
                        float(np.max(np.abs(error))))]
    if name == "hcp":
        result.rows[-3:-3] = [Row(f"{label}hcp c/a", "", ref.c_over_a, mod.c_over_a,
                                  "the reference's relaxed c/a, used for both")]
    if name != ground:
        result.rows.append(Row(f"{label}E({name}) - E({ground})", "meV/atom",
                               1000 * (ref.energy - found["reference"][ground].energy),
                               1000 * (mod.energy - found["model"][ground].energy)))


def _elastic(config: TransferabilityConfig, element: _Element, ref: Callable, model: Callable,
             result: TransferabilityResult) -> None:
    values = {}
    for side, source in zip(_SIDES, (ref, model)):
        phase = element.phase(side)
        values[side] = (bulk.elastic_constants(element.symbol, phase, source,
                                               config.elastic_strain)
                        if math.isfinite(phase.volume) else {})
    for key in values["reference"]:
        result.rows.append(Row(f"{element.label}{element.structure} {key}", "GPa",
                               values["reference"][key], values["model"].get(key, math.nan)))


# --------------------------------------------------------------------------- defects


_COLLAPSE = 0.75
"""A relaxed defect whose closest pair is below this fraction of the perfect crystal's nearest
neighbour distance has collapsed: its energy is no formation energy."""


def _vacancy(config: TransferabilityConfig, symbol: str, phase: Phase, source: Callable
             ) -> tuple[float, float, str]:
    """Vacancy formation energy (eV), unrelaxed and position-relaxed, in ``phase``.

    The relaxed value is NaN, with a note saying why, when the relaxation did not reach
    ``relax_fmax`` in ``relax_steps`` or the structure collapsed (closest pair below
    :data:`_COLLAPSE` times the nearest-neighbour distance): a potential that has never seen a
    vacancy may have no minimum near one.
    """
    from ase.optimize import BFGS

    if not math.isfinite(phase.volume):
        return math.nan, math.nan, "no equilibrium volume"
    perfect = bulk.supercell(symbol, phase, config.vacancy_sites)
    e_atom = _energy(perfect, source) / len(perfect)
    defect = perfect.copy()
    del defect[0]
    unrelaxed = _energy(defect, source) - len(defect) * e_atom
    defect.calc = source(defect)
    converged = BFGS(defect, logfile=None).run(fmax=config.relax_fmax, steps=config.relax_steps)
    relaxed = float(defect.get_potential_energy()) - len(defect) * e_atom
    nearest = bulk.nearest_neighbour(symbol, phase)
    closest = float(defect.get_all_distances(mic=True)[np.triu_indices(len(defect), 1)].min())
    if closest < _COLLAPSE * nearest:
        return unrelaxed, math.nan, (f"relaxation collapsed: closest pair {closest:.2f} Å "
                                     f"(perfect {nearest:.2f} Å), E_f {relaxed:.3g} eV")
    if not converged:
        return unrelaxed, math.nan, (f"relaxation not converged to {config.relax_fmax} eV/Å in "
                                     f"{config.relax_steps} steps (E_f {relaxed:.3g} eV)")
    return unrelaxed, relaxed, ""


def _surface(config: TransferabilityConfig, symbol: str, phase: Phase, facet: str,
             source: Callable) -> float:
    """Unrelaxed surface energy in J/m² of ``facet`` of ``phase``."""
    if not math.isfinite(phase.volume):
        return math.nan
    slab = bulk.slab(symbol, phase, facet, config.slab_layers, config.vacuum)
    perfect = phase_structure(symbol, phase.name, phase.volume, phase.c_over_a)
    e_atom = _energy(perfect, source) / len(perfect)
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    return (_energy(slab, source) - len(slab) * e_atom) / (2 * area) / J_PER_M2


def _defects(config: TransferabilityConfig, element: _Element, ref: Callable, model: Callable,
             result: TransferabilityResult) -> None:
    (ru, rr, rnote), (mu, mr, mnote) = (
        _vacancy(config, element.symbol, element.phase(side), source)
        for side, source in zip(_SIDES, (ref, model)))
    note = "; ".join(f"{side}: {text}" for side, text in zip(_SIDES, (rnote, mnote)) if text)
    label = element.label
    result.rows += [Row(f"{label}vacancy formation (unrelaxed)", "eV", ru, mu),
                    Row(f"{label}vacancy formation (relaxed)", "eV", rr, mr, note)]
    for facet in FACETS[element.structure]:
        result.rows.append(Row(
            f"{label}surface energy ({facet}, unrelaxed)", "J/m²",
            *(_surface(config, element.symbol, element.phase(side), facet, source)
              for side, source in zip(_SIDES, (ref, model)))))


def _cohesion(element: _Element, ref: Callable, model: Callable,
              result: TransferabilityResult) -> None:
    """Isolated-atom energy (eV) and cohesive energy of the structure (eV/atom)."""
    from pyiron_assyst.stages.curate import isolated_atom

    atom = isolated_atom(element.symbol)
    e_ref, e_mod = _energy(atom, ref), _energy(atom, model)
    result.rows += [Row(f"{element.label}isolated atom energy", "eV", e_ref, e_mod),
                    Row(f"{element.label}cohesive energy ({element.structure})", "eV/atom",
                        e_ref - element.phase("reference").energy,
                        e_mod - element.phase("model").energy)]


# --------------------------------------------------------------------------- MD and held-out


def md_snapshots(config: TransferabilityConfig, symbol: str, phase: Phase, source: Callable,
                 ) -> list[Atoms]:
    """Snapshots of a seeded Langevin MD (``source`` drives) of a 32-site supercell of
    ``phase``."""
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(config.seed)
    atoms = bulk.supercell(symbol, phase, 32)
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
    """Energy MAE/RMSE (meV/atom) and force RMSE (eV/Å) rows of ``structures``; with a
    ``window``, also of those within it of their composition's lowest energy per atom, and,
    for several compositions, per composition."""
    e_ref, e_mod, f_ref, f_mod = [], [], [], []
    for atoms in structures:
        (er, fr), (em, fm) = _reference_values(atoms, ref), _energy_forces(atoms, model)
        e_ref.append(er / len(atoms))
        e_mod.append(em / len(atoms))
        f_ref.append(fr.ravel())
        f_mod.append(fm.ravel())
    er, em = np.array(e_ref), np.array(e_mod)
    owner = np.concatenate([np.full(3 * len(s), i) for i, s in enumerate(structures)])
    fr, fm = np.concatenate(f_ref), np.concatenate(f_mod)
    result.parity[name] = (er, em)
    result.parity[f"{name} forces"] = (fr, fm)
    _error_rows(name, er, em, fr, fm, result)
    if window is None:
        return
    kinds = np.array([composition(s) for s in structures])
    lowest = {k: er[kinds == k].min() for k in set(kinds)}
    near = er <= np.array([lowest[k] for k in kinds]) + window
    inside = near[owner]
    _error_rows(f"{name} within {window:g} eV/atom", er[near], em[near], fr[inside],
                fm[inside], result)
    if len(lowest) > 1:
        for kind in sorted(lowest):
            mask = near & (kinds == kind)
            _error_rows(f"{name} {kind} within {window:g} eV/atom", er[mask], em[mask],
                        fr[mask[owner]], fm[mask[owner]], result)


def _error_rows(name: str, er: np.ndarray, em: np.ndarray, fr: np.ndarray, fm: np.ndarray,
                result: TransferabilityResult) -> None:
    de, df = em - er, fm - fr
    result.rows += [
        Row(f"{name}: structures", "", float(len(er)), float(len(er))),
        Row(f"{name}: energy MAE", "meV/atom", 0.0, 1000 * float(np.mean(np.abs(de)))),
        Row(f"{name}: energy RMSE", "meV/atom", 0.0, 1000 * float(np.sqrt(np.mean(de**2)))),
        Row(f"{name}: force RMSE", "eV/Å", 0.0, float(np.sqrt(np.mean(df**2)))),
    ]


# --------------------------------------------------------------------------- the model's MD


def md_cell(config: TransferabilityConfig, symbol: str, phase: Phase, kind: str,
            ) -> tuple[str, Atoms]:
    """Name and structure of the model's MD cell ``kind`` (:data:`MD_CELLS`) of ``phase``."""
    if kind == "vacancy":
        cell = bulk.supercell(symbol, phase, config.stability_sites)
        del cell[0]
        return "vacancy", cell
    facet = FACETS[phase.name][0]
    one = bulk.slab(symbol, phase, facet, config.slab_layers, config.vacuum)
    lateral = max(1, math.ceil(math.sqrt(config.stability_sites / len(one)) - 1e-9))
    return f"surface ({facet})", bulk.slab(symbol, phase, facet, config.slab_layers,
                                           config.vacuum, lateral)


def _stability(config: TransferabilityConfig, element: _Element, ref: Callable,
               model: Callable, result: TransferabilityResult) -> None:
    """MD driven by the model of every cell at every temperature, and their checks."""
    if not math.isfinite(element.nearest):
        result.checks.append(Check(f"{element.label}stability", False, math.nan, math.nan, "",
                                   "no reference equilibrium of the structure"))
        return
    limit = config.min_distance * element.nearest
    for kind, temperature, time in config.stability_runs:
        name, start = md_cell(config, element.symbol, element.phase("reference"), kind)
        trace = md_trace(start, model, ref, temperature, config.steps(time),
                         config.stability_every, config.md_timestep, config.seed,
                         collapse=limit, cell=f"{element.label}{name}")
        result.md.append(trace)
        result.checks += md_checks(trace, limit, config.md_tolerance)


def _clusters(config: TransferabilityConfig, elements: dict[str, _Element], ref: Callable,
              model: Callable, result: TransferabilityResult) -> None:
    """Dimer curves of every pair and trimer curves of every element, and their checks."""
    if not config.cluster_fractions:
        return
    groups = [("dimer", pair) for pair in itertools.combinations_with_replacement(
        elements, 2)] + [("trimer", (s, s, s)) for s in elements]
    down_to, up_to = {}, {}
    for kind, symbols in groups:
        nearest = float(np.mean([elements[s].nearest for s in symbols]))
        if not math.isfinite(nearest):
            continue
        key = f"{kind} {'-'.join(symbols)}"
        result.clusters[key] = cluster_curve(
            symbols, [f * nearest for f in config.cluster_fractions], model, ref)
        down_to[key] = config.cluster_down_to * nearest
        up_to[key] = config.cluster_up_to * nearest
    result.checks += cluster_checks(result.clusters, down_to, config.cluster_tolerance, up_to)


def _alloys(config: TransferabilityConfig, elements: dict[str, _Element], ref: Callable,
            model: Callable, result: TransferabilityResult) -> None:
    """Formation energies of the compounds of every pair of elements, and their checks."""
    for a, b in itertools.combinations(elements, 2):
        for name, atoms in alloys.compounds(a, b, config.seed).items():
            values = []
            for side, source in zip(_SIDES, (ref, model)):
                ground = {s: elements[s].phase(side) for s in (a, b)}
                values.append(alloys.formation_energy(atoms, ground, source)[0])
            result.formation[name] = (values[0], values[1])
            result.rows.append(Row(f"formation energy {name}", "meV/atom", 1000 * values[0],
                                   1000 * values[1]))
            error = abs(values[1] - values[0])
            result.checks.append(Check(
                f"formation {name}: |ΔH_model - ΔH_ref|",
                bool(np.isfinite(error) and error <= config.formation_tolerance),
                1000 * error, 1000 * config.formation_tolerance, "meV/atom",
                f"reference {1000 * values[0]:.3g}, model {1000 * values[1]:.3g} meV/atom"))


# --------------------------------------------------------------------------- the report


def transferability(model: CalculatorConfig, reference: CalculatorConfig,
                    held_out: Sequence[Atoms] = (),
                    config: TransferabilityConfig = TransferabilityConfig(),
                    ) -> TransferabilityResult:
    """Compare ``model`` with ``reference`` on phases, defects, MD and ``held_out``.

    Parameters
    ----------
    model
        Calculator config under test (e.g. a fitted
        :class:`~pyiron_assyst.fitting.model.MaceModel`).
    reference
        Reference calculator config (the one that labelled the training set).
    held_out
        Structures not in the training set (e.g. the held-out side of
        :func:`~pyiron_assyst.fitting.split.split_by_lineage`); their own labels are the reference
        values where they carry a single point, else the reference is evaluated.
    config
        Elements and settings of the comparison.

    Returns
    -------
    TransferabilityResult
        Table rows, curves, parity data and checks. Error rows have reference 0 and the error
        as the model value. With one element the rows carry no element prefix (``"fcc a"``);
        with several they do (``"Cu fcc a"``).
    """
    ref, mod = _calculator_source(reference), _calculator_source(model)
    result = TransferabilityResult()
    elements: dict[str, _Element] = {}
    for symbol in config.elements:
        label = "" if len(config.elements) == 1 else f"{symbol} "
        element = _phases(config, symbol, label, ref, mod, result)
        elements[symbol] = element
        _elastic(config, element, ref, mod, result)
        _defects(config, element, ref, mod, result)
        snapshots = md_snapshots(config, symbol, element.phase("reference"), ref)
        _errors(f"{label}MD snapshots", snapshots, ref, mod, result)
        _cohesion(element, ref, mod, result)
    if held_out:
        _errors("held-out", list(held_out), ref, mod, result, window=config.energy_window)
    _alloys(config, elements, ref, mod, result)
    for element in elements.values():
        _stability(config, element, ref, mod, result)
    _clusters(config, elements, ref, mod, result)
    return result
