"""Relaxation stage: minimize each structure with a calculator config, fanned out over workers.

A relaxation is a frozen config (:class:`PositionRelax`, :class:`VolumeRelax`,
:class:`CellRelax`, :class:`SymmetryRelax`, :class:`FullRelax`) and :func:`relax` applies it to a
list of structures. The one extension point is :meth:`Relaxation.minimize`: a subclass that
overrides it (and sets ``kind``) plugs any engine into the stage, e.g. a DFT code's own
optimizer or a plain numpy minimizer::

    @dataclass(frozen=True)
    class ScaleRelax(Relaxation):
        kind: ClassVar[str] = "scale"

        def minimize(self, atoms, calculator):
            atoms.calc = calculator
            ...  # change atoms.cell / positions, evaluating atoms.get_potential_energy()
            return Minimization(atoms, converged=True, steps=n)

Everything else (building the calculator inside the worker, counting evaluations, labelling,
lineage, drops and flags) is done by :func:`relax` for every subclass.

Structures that are not 3-D periodic keep their vacuum directions unstrained
(:mod:`~pyiron_assyst.numerics.cell`); pressure acts on 3-D periodic cells only.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes
from ase.constraints import FixAtoms, FixSymmetry
from ase.filters import Filter

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.evaluation import (
    LABEL_CALCULATOR,
    Outcome,
    Tally,
    classify,
    ensure_labels,
    label_is_current,
    run_safely,
    single_point,
    stamp_repairs,
)
from pyiron_assyst.calculators.structure_settings import prepare_structure
from pyiron_assyst.core.config import ADDED_FIELD, Config, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import child_uuid, make_child, uuid_of
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.execution.cache import ResultCache, structure_key
from pyiron_assyst.execution.dispatch import run_cached
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.numerics.cell import CellMode, cell_filter, rotate, strain_frame
from pyiron_assyst.numerics.optimizers import SafeLBFGS

__all__ = [
    "OPTIMIZERS",
    "CellRelax",
    "FullRelax",
    "Minimization",
    "PositionRelax",
    "Relaxation",
    "SymmetryRelax",
    "VolumeRelax",
    "relax",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("SafeLBFGS", "BFGS", "BFGSLineSearch", "FIRE", "LBFGS", "LBFGSLineSearch", "MDMin")
"""Optimizers a relaxation may use: :class:`~pyiron_assyst.numerics.optimizers.SafeLBFGS` (the
default)
and the :mod:`ase.optimize` optimizers of these names."""

_PRE_RELAX_KEYS = ("pre_relax_steps", "pre_relax_converged", "pre_relax_failed")
_RELAX_KEYS = ("converged", "relax_steps", "force_calls", "repairs", "calculation_attempts",
               *_PRE_RELAX_KEYS)
_TASK_REVISION = "relax-task-2"
"""Part of every cache key of :func:`relax`: change it when a task's result would change."""


@dataclass
class Minimization:
    """What :meth:`Relaxation.minimize` returns for one structure.

    Parameters
    ----------
    atoms
        Final structure. If it carries a single point with energy and forces (a
        :class:`~ase.calculators.singlepoint.SinglePointCalculator`) that is used; otherwise the
        calculator is evaluated on it (free when it has just seen these atoms).
    converged
        Whether the force tolerance was reached.
    steps
        Optimizer steps taken.
    trajectory
        Intermediate structures to keep, as ``(step, atoms)`` pairs in increasing step order,
        neither the input (step 0) nor the final structure; labelled like ``atoms``.
    """

    atoms: Atoms
    converged: bool
    steps: int
    trajectory: tuple[tuple[int, Atoms], ...] = field(default_factory=tuple)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and (
        math.isfinite(value))


@dataclass(frozen=True)
class Relaxation(Config):
    """Base of all relaxations: optimizer settings and the :meth:`minimize` hook.

    Subclasses set the class attribute ``kind`` (the stage is named ``f"relax:{kind}"``) and
    either :meth:`degrees_of_freedom` (ASE engine) or :meth:`minimize` (any engine).

    Parameters
    ----------
    pressure
        External hydrostatic pressure in GPa (positive compresses); 3-D periodic cells only.
    optimizer
        One of :data:`OPTIMIZERS`: ``"SafeLBFGS"`` (ASE's LBFGS that skips curvature pairs
        without positive curvature; it converges more often in fewer force calls, see
        :mod:`pyiron_assyst.numerics.optimizers`) or the name of an :mod:`ase.optimize` optimizer.
    force_tolerance
        Convergence criterion in eV/Å: the largest force (including the cell's generalized
        forces for cell relaxations) must fall below it.
    max_steps
        Optimizer steps after which an unconverged relaxation stops.
    keep_unconverged
        Keep structures that did not converge (flagged ``"not_converged"`` in the report) or
        drop them (dropped ``"not_converged"``).
    trace
        If > 0, also keep every ``trace``-th optimizer snapshot as an extra labelled structure.
    calculator
        This relaxation's own calculator instead of the stage's (``None``: the stage's), e.g.
        a universal potential for the volume relaxation of a DFT run.
    pre_relax
        Relax first with this calculator (e.g. :class:`~pyiron_assyst.calculators.chgnet.CHGNet`)
        with the same optimizer and tolerance, for up to ``pre_relax_steps`` steps, then go on
        from there with the relaxation's calculator for up to ``max_steps``: a cheap potential
        does most of the way and the expensive calculator only the end. The stage's force
        calls and ``relax_steps`` count the expensive calculator only; ``pre_relax_steps`` and
        ``pre_relax_converged`` on the structure tell what the pre-relaxation did. A failed
        pre-relaxation is recorded (``pre_relax_failed``) and the relaxation starts from the
        input.
    pre_relax_steps
        Largest number of optimizer steps of the pre-relaxation.

    Notes
    -----
    ``calculator``, ``pre_relax`` and ``pre_relax_steps`` were added later: at their defaults
    they are not part of the config's identity (:data:`~pyiron_assyst.core.config.ADDED_FIELD`).
    """

    pressure: float = 0.0
    optimizer: str = "SafeLBFGS"
    force_tolerance: float = 1e-3
    max_steps: int = 100
    keep_unconverged: bool = True
    trace: int = 0
    calculator: CalculatorConfig | None = field(default=None, metadata=ADDED_FIELD)
    pre_relax: CalculatorConfig | None = field(default=None, metadata=ADDED_FIELD)
    pre_relax_steps: int = field(default=500, metadata=ADDED_FIELD)

    kind: ClassVar[str] = ""
    """Short name of the relaxation; the step is ``f"relax:{kind}"``."""
    uses_pressure: ClassVar[bool] = True
    """Whether ``pressure`` has an effect (fixed-volume relaxations require it to be 0)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        require(isinstance(self.kind, str) and bool(self.kind), name, "kind",
                "a non-empty class attribute (use a subclass of Relaxation)", self.kind)
        require(_is_real(self.pressure), name, "pressure", "a finite number in GPa",
                self.pressure)
        object.__setattr__(self, "pressure", float(self.pressure))
        require(self.uses_pressure or self.pressure == 0.0, name, "pressure",
                f"0 (a {self.kind} relaxation has no volume conjugate)", self.pressure)
        require(self.optimizer in OPTIMIZERS, name, "optimizer", f"one of {OPTIMIZERS}",
                self.optimizer)
        require(_is_real(self.force_tolerance) and self.force_tolerance > 0, name,
                "force_tolerance", "a finite number > 0 eV/Å", self.force_tolerance)
        object.__setattr__(self, "force_tolerance", float(self.force_tolerance))
        require(_is_int(self.max_steps) and self.max_steps >= 1, name, "max_steps",
                "an integer >= 1", self.max_steps)
        require(isinstance(self.keep_unconverged, bool), name, "keep_unconverged", "a bool",
                self.keep_unconverged)
        require(_is_int(self.trace) and self.trace >= 0, name, "trace",
                "an integer >= 0 (0: no snapshots)", self.trace)
        object.__setattr__(self, "max_steps", int(self.max_steps))
        object.__setattr__(self, "trace", int(self.trace))
        for key in ("calculator", "pre_relax"):
            value = getattr(self, key)
            require(value is None or isinstance(value, CalculatorConfig), name, key,
                    "None or a calculator config", value)
        require(_is_int(self.pre_relax_steps) and self.pre_relax_steps >= 1, name,
                "pre_relax_steps", "an integer >= 1", self.pre_relax_steps)
        object.__setattr__(self, "pre_relax_steps", int(self.pre_relax_steps))

    def calculator_or(self, stage: CalculatorConfig) -> CalculatorConfig:
        """The calculator this relaxation uses: its own, else the stage's ``stage``."""
        return self.calculator if self.calculator is not None else stage

    @property
    def step(self) -> str:
        """Step name recorded on the relaxed structures, ``f"relax:{kind}"``."""
        return f"relax:{self.kind}"

    @property
    def scalar_pressure(self) -> float:
        """``pressure`` in eV/Å³."""
        return self.pressure * units.GPa

    def degrees_of_freedom(self, atoms: Atoms) -> Atoms | Filter:
        """What the optimizer moves: ``atoms`` with constraints, or a cell filter on it.

        ``atoms`` is a private copy, already in its
        :func:`~pyiron_assyst.numerics.cell.strain_frame`
        and with the calculator attached; add constraints to it freely.
        """
        raise NotImplementedError(f"{type(self).__name__} must override degrees_of_freedom "
                                  "or minimize")

    def minimize(self, atoms: Atoms, calculator: BaseCalculator) -> Minimization:
        """Relax one structure: THE extension hook for other engines.

        Override this to relax with anything (a DFT code's optimizer, LAMMPS, a numpy
        minimizer). Evaluate energies through ``calculator`` (e.g. ``atoms.calc = calculator``)
        so that evaluations are counted and checked for NaN; return a :class:`Minimization`.
        The default runs the optimizer :attr:`optimizer` on :meth:`degrees_of_freedom`.

        Parameters
        ----------
        atoms
            A private copy of the input structure (modify it freely).
        calculator
            The live calculator built for this structure inside the worker.
        """
        work = atoms.copy()
        work.set_constraint()
        rotation, _ = strain_frame(work)
        if rotation is not None:
            rotate(work, rotation)
        work.calc = calculator
        optimizer = _optimizer(self.optimizer)(self.degrees_of_freedom(work), logfile=None)
        snapshots: list[tuple[int, Atoms]] = []
        if self.trace:
            def snapshot() -> None:
                if optimizer.nsteps > 0:
                    snapshots.append((optimizer.nsteps, single_point(work, calculator)))

            optimizer.attach(snapshot, interval=self.trace)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="logm result may be inaccurate",
                                    category=RuntimeWarning)
            converged = bool(optimizer.run(fmax=self.force_tolerance, steps=self.max_steps))
        steps = int(optimizer.nsteps)
        final = single_point(work, calculator)
        trajectory = [(i, s) for i, s in snapshots if i < steps]
        if rotation is not None:
            for labelled in (final, *(s for _, s in trajectory)):
                rotate(labelled, rotation.T)
        return Minimization(final, converged, steps, tuple(trajectory))


def _optimizer(name: str) -> type:
    if name == "SafeLBFGS":
        return SafeLBFGS
    import ase.optimize

    return getattr(ase.optimize, name)


def _fix_all(atoms: Atoms) -> None:
    atoms.set_constraint(FixAtoms(mask=np.ones(len(atoms), dtype=bool)))


@dataclass(frozen=True)
class PositionRelax(Relaxation):
    """Relax atomic positions in a fixed cell."""

    kind: ClassVar[str] = "position"
    uses_pressure: ClassVar[bool] = False

    def degrees_of_freedom(self, atoms: Atoms) -> Atoms | Filter:
        return atoms


@dataclass(frozen=True)
class _CellRelaxation(Relaxation):
    """Relaxations that strain the cell: ``fix_atoms`` and the cell ``mode``."""

    fix_atoms: ClassVar[bool] = False
    mode: ClassVar[CellMode] = "full"

    def degrees_of_freedom(self, atoms: Atoms) -> Atoms | Filter:
        if self.fix_atoms:
            _fix_all(atoms)
        return cell_filter(atoms, self.mode, self.scalar_pressure)


@dataclass(frozen=True)
class VolumeRelax(_CellRelaxation):
    """Relax the volume only: cell shape and fractional positions are kept (hydrostatic strain)."""

    kind: ClassVar[str] = "volume"
    fix_atoms: ClassVar[bool] = True
    mode: ClassVar[CellMode] = "hydrostatic"


@dataclass(frozen=True)
class CellRelax(_CellRelaxation):
    """Relax the cell shape at constant volume; fractional positions are kept."""

    kind: ClassVar[str] = "cell"
    uses_pressure: ClassVar[bool] = False
    fix_atoms: ClassVar[bool] = True
    mode: ClassVar[CellMode] = "shape"


@dataclass(frozen=True)
class FullRelax(_CellRelaxation):
    """Relax positions and cell without constraints."""

    kind: ClassVar[str] = "full"


@dataclass(frozen=True)
class SymmetryRelax(_CellRelaxation):
    """Relax positions and cell keeping every symmetry operation of the input (ASE FixSymmetry).

    Parameters
    ----------
    symprec
        spglib tolerance in Å with which the input's symmetry is found (and refined).

    Needs a full-rank cell (a cluster without a cell is dropped as ``calculator_error``).
    """

    symprec: float = 0.01

    kind: ClassVar[str] = "symmetry"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(_is_real(self.symprec) and self.symprec > 0, "SymmetryRelax", "symprec",
                "a finite number > 0 Å", self.symprec)
        object.__setattr__(self, "symprec", float(self.symprec))

    def degrees_of_freedom(self, atoms: Atoms) -> Atoms | Filter:
        if atoms.cell.rank < 3:
            raise ValueError("SymmetryRelax needs a full-rank cell to find symmetry operations")
        atoms.set_constraint(FixSymmetry(atoms, symprec=self.symprec))
        return super().degrees_of_freedom(atoms)


def _prime(calc: BaseCalculator, atoms: Atoms, results: dict[str, Any] | None) -> None:
    """Seed ``calc``'s cache with ``results``, computed by the same calculator config for these
    very ``atoms`` (e.g. by the volume relaxation the full one starts from): the optimizer's
    first evaluation is then a look-up, not a force call.

    ASE calculators compare the atoms they are asked about with the cached ones, so a changed
    structure is still evaluated; its first real evaluation is told that everything changed, as
    a new calculator's would be (EMT, for one, builds its neighbour list only then).
    """
    if not results or not isinstance(calc, Calculator):
        return
    calc.atoms = atoms.copy()
    calc.results = {key: np.array(value, copy=True) if isinstance(value, np.ndarray)
                    else value for key, value in results.items()}
    own_check = type(calc).check_state

    def check_state(other: Atoms, tol: float = 1e-15) -> list[str]:
        changes = own_check(calc, other, tol)
        if not changes:
            return changes
        del calc.check_state  # one full start, then the calculator's own bookkeeping
        return list(all_changes)

    calc.check_state = check_state  # type: ignore[method-assign]


def _minimize_and_label(config: Relaxation, results: dict[str, Any] | None, atoms: Atoms,
                        calc: BaseCalculator) -> Minimization:
    _prime(calc, atoms, results)
    result = config.minimize(atoms, calc)
    if not isinstance(result, Minimization):
        raise TypeError(f"{type(config).__name__}.minimize must return a Minimization; "
                        f"got {type(result).__name__}")
    trajectory = tuple((int(i), ensure_labels(s, calc)) for i, s in result.trajectory)
    return Minimization(ensure_labels(result.atoms, calc), bool(result.converged),
                        int(result.steps), trajectory)


_RelaxItem = tuple[Atoms, Relaxation, CalculatorConfig, "dict[str, Any] | None"]


def _minimize(config: Relaxation, atoms: Atoms, calc: BaseCalculator) -> Minimization:
    return config.minimize(atoms, calc)


def _pre_relaxed(config: Relaxation, atoms: Atoms) -> Atoms:
    """``atoms`` moved by the pre-relaxation with ``config.pre_relax`` (no calculator), with
    what it did in info; ``atoms`` with the failure in info if it failed."""
    import dataclasses

    assert config.pre_relax is not None
    pre = dataclasses.replace(config, calculator=None, pre_relax=None, trace=0,
                              max_steps=config.pre_relax_steps)
    try:
        prepared = prepare_structure(config.pre_relax, atoms)
    except Exception as error:  # a broken settings hook: no pre-relaxation
        outcome: Outcome[Minimization] = Outcome(None, *classify(error))
    else:
        outcome = run_safely(prepared, config.pre_relax, partial(_minimize, pre))
    if outcome.value is None:
        moved = atoms.copy()
        set_info(moved, "pre_relax_failed", f"{outcome.reason}: {outcome.detail}"[:500])
        return moved
    result = outcome.value
    moved = atoms.copy()
    moved.set_cell(result.atoms.cell)
    moved.positions = result.atoms.positions
    set_info(moved, "pre_relax_steps", int(result.steps))
    set_info(moved, "pre_relax_converged", bool(result.converged))
    return moved


def _relax_task(item: _RelaxItem) -> Outcome[Minimization]:
    """Worker: the pre-relaxation (if any), derived settings (k-points, moments) recorded,
    then the minimization, metered (the pre-relaxation's evaluations are not counted)."""
    atoms, config, calculator, stored = item
    for key in _PRE_RELAX_KEYS:
        atoms.info.pop(key, None)
    if config.pre_relax is not None:
        atoms, stored = _pre_relaxed(config, atoms), None
    try:
        prepared = prepare_structure(calculator, atoms)
    except Exception as error:  # a broken settings hook is one structure's failure
        return Outcome(None, *classify(error))
    return run_safely(prepared, calculator, partial(_minimize_and_label, config, stored))


@dataclass
class _Tally(Tally):
    """Accumulates the outputs and the report of one relax call."""

    out: list[Atoms] = field(default_factory=list)
    flagged: list[Drop] = field(default_factory=list)
    snapshots: int = 0


def _stamp_final(final: Atoms, parent: Atoms, step: str, uuid: str, result: Minimization,
                 force_calls: int, calculator_hash: str) -> None:
    make_child(final, parent, step, uuid)
    final.info.pop("trace_index", None)
    set_info(final, LABEL_CALCULATOR, calculator_hash)
    set_info(final, "converged", result.converged)
    set_info(final, "relax_steps", result.steps)
    set_info(final, "force_calls", force_calls)


def _stamp_snapshot(snapshot: Atoms, parent: Atoms, step: str, tag: str, index: int,
                    calculator_hash: str) -> None:
    trace_step = f"{step}:trace"
    make_child(snapshot, parent, trace_step, child_uuid(uuid_of(parent), trace_step, tag, index))
    for key in _RELAX_KEYS:
        snapshot.info.pop(key, None)
    set_info(snapshot, LABEL_CALCULATOR, calculator_hash)
    set_info(snapshot, "trace_index", index)


def _collect(tally: _Tally, parent: Atoms, outcome: Outcome[Minimization] | TaskError,
             config: Relaxation, tag: str, calculator_hash: str) -> None:
    uuid = child_uuid(uuid_of(parent), config.step, tag, 0)
    result = tally.finished(outcome, uuid)
    if result is None:
        return
    _stamp_final(result.atoms, parent, config.step, uuid, result, outcome.force_calls,
                 calculator_hash)
    stamp_repairs(result.atoms, outcome)  # type: ignore[arg-type]  # not a TaskError here
    if result.converged:
        tally.out.append(result.atoms)
    else:
        flag = Drop(uuid, "not_converged", f"force tolerance {config.force_tolerance} eV/Å "
                    f"not reached in {result.steps} steps (max_steps={config.max_steps})")
        (tally.flagged if config.keep_unconverged else tally.drops).append(flag)
        if config.keep_unconverged:
            tally.out.append(result.atoms)
    for index, snapshot in result.trajectory:
        _stamp_snapshot(snapshot, parent, config.step, tag, index, calculator_hash)
        tally.out.append(snapshot)
        tally.snapshots += 1


def relax(structures: Sequence[Atoms], config: Relaxation, calculator: CalculatorConfig,
          executor: Executor | None = None, cache: ResultCache | None = None,
          retry_failed: bool = False) -> tuple[list[Atoms], StageReport]:
    """Relax every structure with ``config`` and a calculator built from ``calculator``.

    The per-structure work runs on ``executor`` (default: a local process pool on all cores);
    the live calculator is built inside the worker, after the config's structure settings
    (k-points, magnetic moments;
    :func:`~pyiron_assyst.calculators.structure_settings.prepare_structure`)
    are applied. Inputs are never modified. An input that carries a current single point of the
    same calculator config (as the output of an earlier relaxation does) starts with it: the
    first optimizer step costs no force call.

    Parameters
    ----------
    structures
        Structures to relax.
    config
        The relaxation (any :class:`Relaxation` subclass).
    calculator
        Calculator config; ``calculator.calculator_for(atoms)`` is called for every structure
        (``config.calculator``, where set, is used instead; ``config.pre_relax`` relaxes with
        another calculator first).
    executor
        Where to run the per-structure tasks.
    cache
        Keep every finished relaxation here, by content (the structure's arrays and info, and
        the hashes of ``config`` and ``calculator``; see
        :func:`~pyiron_assyst.execution.cache.structure_key`), in the namespace ``config.step``, and
        answer unchanged inputs from it: a relaxation killed and started again computes only
        what had not finished, with a bit-identical result. ``None``: no cache.
    retry_failed
        Relax again structures whose cached result is a failure (by default a stored failure
        is reported again, not retried).

    Returns
    -------
    structures
        In input order, each relaxed structure followed by its trace snapshots (increasing
        optimizer step). A relaxed structure is a child of its input (step ``config.step``, uuid
        from the parent, the step and the hashes of ``config`` and ``calculator``, copy 0) with a
        single point (``energy``/``free_energy`` in eV, ``forces`` in eV/Å, ``stress`` in eV/Å³
        for 3-D periodic cells), no constraints, and info ``converged``, ``relax_steps``,
        ``force_calls`` and ``label_calculator`` (the calculator's config hash, so that
        :func:`~pyiron_assyst.stages.label.label` with the same config reuses the single point). A
        snapshot is a child of the same input (step ``config.step + ":trace"``,
        copy index and info ``trace_index`` = optimizer step) with its own single point.
    report
        ``n_candidates`` = inputs + snapshots, so that ``n_out + len(drops) == n_candidates``.
        Failed structures are dropped with their failure's kind (``"calculator_error"``,
        ``"non_finite"``, ``"scf_not_converged"``, ``"crashed"``) and the error text, those
        that overran ``executor.task_timeout`` as ``"timeout"``; unconverged ones are flagged
        (or dropped) as ``"not_converged"``; those that needed a repair (see
        :mod:`pyiron_assyst.calculators.repair`) are flagged ``"repaired"``.
        ``calculator_time`` (s) and ``force_calls`` sum over all structures, failed ones and
        cached ones too.
    """
    start = time.perf_counter()
    calculator = config.calculator_or(calculator)
    tag = f"{config.config_hash()}+{calculator.config_hash()}"
    current = calculator.config_hash()
    items = [(s.copy(), config, calculator,
              dict(s.calc.results) if label_is_current(s, current) else None)
             for s in structures]
    keys = [structure_key(s, _TASK_REVISION, config.config_hash(), calculator.config_hash())
            for s in structures]
    outcomes, _ = run_cached(_relax_task, items, keys, executor or Executor(),
                             None if cache is None else cache.namespace(config.step),
                             retry_failed, desc=config.step)
    tally = _Tally()
    for parent, outcome in zip(structures, outcomes):
        _collect(tally, parent, outcome, config, tag, calculator.config_hash())
    report = StageReport(
        stage=config.step, n_in=len(structures), n_candidates=len(structures) + tally.snapshots,
        n_out=len(tally.out), drops=tuple(tally.drops),
        flagged=tuple(tally.flagged) + tuple(tally.repaired),
        wall_time=time.perf_counter() - start, calculator_time=tally.calculator_time,
        force_calls=tally.force_calls)
    if report.drops or report.flagged:
        logger.warning(report.summary())
    return tally.out, report
