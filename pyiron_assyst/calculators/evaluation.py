"""Running a calculator on one structure safely: metered, checked, labelled.

Every expensive stage (relax, label) does its per-structure work through :func:`run_safely`,
inside the worker: it builds the live calculator from its config, counts and times the real
calculator evaluations (:class:`Meter`), turns non-finite results into :class:`NonFiniteError`
and any failure into a ``(reason, detail)`` pair, so that one broken structure never stops a
stage. :func:`single_point` attaches the canonical labelled form, a
:class:`~ase.calculators.singlepoint.SinglePointCalculator` with ``energy``, ``free_energy``,
``forces`` and (for 3-D periodic cells) ``stress``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.repair import error_text, failure_kind
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.report import Drop
from pyiron_assyst.execution.tasks import TaskError

__all__ = [
    "CHECKED_PROPERTIES",
    "LABEL_CALCULATOR",
    "Meter",
    "NonFiniteError",
    "Outcome",
    "Tally",
    "classify",
    "ensure_labels",
    "evaluate",
    "has_labels",
    "label_is_current",
    "metered",
    "run_safely",
    "single_point",
    "stamp_repairs",
]

T = TypeVar("T")

CHECKED_PROPERTIES = ("energy", "free_energy", "forces", "stress")
"""Calculator results that must be finite after every evaluation."""


class NonFiniteError(FloatingPointError):
    """A calculator returned NaN or infinite energy, forces or stress."""


LABEL_CALCULATOR = "label_calculator"
"""Info key (str): ``config_hash()`` of the calculator config that computed the single point."""
_GEOMETRY = {"positions", "numbers", "cell", "pbc"}


def check_finite(results: dict[str, Any], where: str = "calculator") -> None:
    """Raise :class:`NonFiniteError` if a :data:`CHECKED_PROPERTIES` entry is not finite."""
    for name in CHECKED_PROPERTIES:
        if name in results and not np.all(np.isfinite(results[name])):
            raise NonFiniteError(f"{where} returned non-finite {name}")


@dataclass
class Meter:
    """Real evaluations of one calculator: count and time spent inside ``calculate`` (s)."""

    calls: int = 0
    seconds: float = 0.0


@contextmanager
def metered(calc: BaseCalculator) -> Iterator[Meter]:
    """Count and time ``calc.calculate`` calls, checking each result for finiteness.

    Cached look-ups (a property asked again for unchanged atoms) are not evaluations and are not
    counted. The instance is restored on exit, so a calculator reused between structures is never
    wrapped twice.

    Raises
    ------
    NonFiniteError
        From the ``calculate`` call whose energy, forces or stress are NaN or infinite (the
        calculator's cache is cleared first).
    """
    meter = Meter()
    original = calc.calculate
    had_own = "calculate" in vars(calc)

    def calculate(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            out = original(*args, **kwargs)
        finally:
            meter.seconds += time.perf_counter() - start
            meter.calls += 1
        try:
            check_finite(calc.results, type(calc).__name__)
        except NonFiniteError:
            calc.results, calc.atoms = {}, None
            raise
        return out

    calc.calculate = calculate  # type: ignore[method-assign]
    try:
        yield meter
    finally:
        if had_own:
            calc.calculate = original  # type: ignore[method-assign]
        else:
            del calc.calculate


def _wants_stress(atoms: Atoms, calc: BaseCalculator) -> bool:
    return bool(atoms.pbc.all()) and "stress" in getattr(calc, "implemented_properties", ())


def single_point(atoms: Atoms, calc: BaseCalculator) -> Atoms:
    """A copy of ``atoms`` without constraints, carrying ``calc``'s results as a single point.

    Results come from the calculator's cache when it last saw these atoms, so labelling the
    structure an optimizer just evaluated costs no evaluation. ``free_energy`` is the
    calculator's own when it provides one, else ``energy``; ``stress`` (eV/Å³, Voigt order, ASE
    sign) is included only for 3-D periodic cells and calculators that implement it. Forces are
    the raw ones (constraints not applied).

    Raises
    ------
    NonFiniteError
        If a result is NaN or infinite.
    """
    energy = calc.get_property("energy", atoms)
    forces = calc.get_property("forces", atoms)
    free_energy = calc.results.get("free_energy", energy)
    results: dict[str, Any] = {"energy": float(energy), "free_energy": float(free_energy),
                               "forces": np.array(forces, dtype=float)}
    if _wants_stress(atoms, calc):
        with suppress(PropertyNotImplementedError):
            results["stress"] = np.array(calc.get_property("stress", atoms), dtype=float)
    check_finite(results, type(calc).__name__)
    labelled = atoms.copy()
    labelled.set_constraint()
    labelled.calc = SinglePointCalculator(labelled, **results)
    return labelled


def has_labels(atoms: Atoms) -> bool:
    """Whether ``atoms`` carries a single point with at least energy and forces."""
    results = getattr(atoms.calc, "results", {})
    return isinstance(atoms.calc, SinglePointCalculator) and {"energy", "forces"} <= set(results)


def ensure_labels(atoms: Atoms, calc: BaseCalculator) -> Atoms:
    """``atoms`` labelled: its own single point if it has one (checked), else :func:`single_point`.

    Lets an engine that computes energies itself (e.g. a DFT code relaxing with its own
    optimizer) hand back labelled structures without a second evaluation.

    Raises
    ------
    NonFiniteError
        If a result is NaN or infinite.
    """
    if not has_labels(atoms):
        return single_point(atoms, calc)
    results = dict(atoms.calc.results)
    results.setdefault("free_energy", results["energy"])
    check_finite(results, "single point")
    labelled = atoms.copy()
    labelled.set_constraint()
    labelled.calc = SinglePointCalculator(labelled, **results)
    return labelled


def classify(error: BaseException) -> tuple[str, str]:
    """Drop ``(reason, detail)`` of a failed evaluation; the reason is its
    :func:`~pyiron_assyst.calculators.repair.failure_kind` (``"scf_not_converged"``,
    ``"crashed"``, ``"timeout"``, ``"non_finite"`` or ``"calculator_error"``)."""
    return failure_kind(error), f"{type(error).__name__}: {error}"


@dataclass
class Outcome(Generic[T]):
    """Result of :func:`run_safely` for one structure.

    Parameters
    ----------
    value
        What the work returned; ``None`` if it failed.
    reason
        ``""`` on success, else the drop reason (``"calculator_error"``, ``"non_finite"``).
    detail
        Error text on failure.
    force_calls
        Real calculator evaluations, also those made before a failure (all attempts).
    calculator_time
        Time spent inside the calculator in s (all attempts).
    repairs
        One entry per failed attempt under a repair policy: ``"<kind> -> <rule>"`` when a rule
        changed the settings for the next attempt, ``"<kind>"`` when none did (the last one of
        a structure that stayed failed). Empty when the first attempt finished.
    """

    value: T | None
    reason: str = ""
    detail: str = ""
    force_calls: int = 0
    calculator_time: float = 0.0
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the work finished."""
        return not self.reason


def run_safely(atoms: Atoms, calculator: CalculatorConfig,
               work: Callable[[Atoms, BaseCalculator], T]) -> Outcome[T]:
    """Build the calculator for ``atoms`` and run ``work(copy_of_atoms, calc)``, metered.

    Any exception (from building the calculator, the calculator, or ``work``) is returned as a
    failed :class:`Outcome` whose reason is the failure's kind; ``atoms`` itself is never
    modified. With a repair policy (``calculator.repair_policy()``), a failure that a rule
    matches is retried from the start with the rule's settings applied, up to the policy's
    ``max_attempts``; every attempt is recorded in :attr:`Outcome.repairs`.
    """
    policy = calculator.repair_policy()
    max_attempts = policy.max_attempts if policy is not None else 1
    history: list[str] = []
    used: tuple[str, ...] = ()
    calls, seconds = 0, 0.0
    current = calculator
    while True:
        meter, calc = Meter(), None
        try:
            calc = current.calculator_for(atoms)
            with metered(calc) as meter:
                value = work(atoms.copy(), calc)
        except Exception as error:  # one structure's failure is data, never fatal
            calls, seconds = calls + meter.calls, seconds + meter.seconds
            reason, detail = classify(error)
            rule = None
            if policy is not None and len(history) + 1 < max_attempts:
                rule = policy.next_rule(reason, error_text(error, calc, policy.log_files), used)
            history.append(reason if rule is None else f"{reason} -> {rule.name}")
            if rule is not None:
                try:
                    current, used = current.with_parameters(dict(rule.changes)), (*used, rule.name)
                    continue
                except Exception as bad:  # a rule the config cannot apply ends the repair
                    history[-1] = f"{reason} -> {rule.name} (not applicable: {bad})"
            if policy is not None:
                detail += f" [attempts: {'; '.join(history)}]"
            return Outcome(None, reason, detail, calls, seconds,
                           tuple(history) if policy is not None else ())
        calls, seconds = calls + meter.calls, seconds + meter.seconds
        return Outcome(value, "", "", calls, seconds, tuple(history))


def stamp_repairs(atoms: Atoms, outcome: Outcome[Any]) -> None:
    """Record a repaired calculation on its structure: info ``repairs`` (the history joined by
    ``"; "``) and ``calculation_attempts``; nothing when the first attempt finished."""
    if outcome.repairs:
        set_info(atoms, "repairs", "; ".join(outcome.repairs))
        set_info(atoms, "calculation_attempts", len(outcome.repairs) + 1)
    else:
        atoms.info.pop("repairs", None)
        atoms.info.pop("calculation_attempts", None)


def evaluate(atoms: Atoms, calculator: CalculatorConfig) -> Outcome[Atoms]:
    """Single-point evaluation of one structure: :func:`single_point` under :func:`run_safely`."""
    return run_safely(atoms, calculator, _label)


def _label(atoms: Atoms, calc: BaseCalculator) -> Atoms:
    atoms.calc = None
    return single_point(atoms, calc)


@dataclass
class Tally:
    """What a stage's per-structure outcomes add up to: drops, force calls, calculator time (s)."""

    drops: list[Drop] = field(default_factory=list)
    force_calls: int = 0
    calculator_time: float = 0.0
    repaired: list[Drop] = field(default_factory=list)

    def finished(self, outcome: Outcome[T] | TaskError, uuid: str) -> T | None:
        """The value of ``outcome`` with its evaluations counted, or ``None`` after recording
        its failure (a failed task or a failed calculation) as a drop of ``uuid``. A value
        that needed repairs is recorded in :attr:`repaired` (reason ``"repaired"``, the
        history as detail)."""
        if isinstance(outcome, TaskError):
            self.drops.append(Drop(uuid, outcome.reason, str(outcome)))
            return None
        self.force_calls += outcome.force_calls
        self.calculator_time += outcome.calculator_time
        if outcome.value is None:
            self.drops.append(Drop(uuid, outcome.reason, outcome.detail))
        elif outcome.repairs:
            self.repaired.append(Drop(uuid, "repaired", "; ".join(outcome.repairs)))
        return outcome.value


def label_is_current(atoms: Atoms, calculator_hash: str) -> bool:
    """Whether ``atoms`` carries a single point for its present geometry made by the calculator
    config with hash ``calculator_hash`` (recorded in info :data:`LABEL_CALCULATOR`)."""
    if not has_labels(atoms) or atoms.info.get(LABEL_CALCULATOR) != calculator_hash:
        return False
    calc = atoms.calc
    if getattr(calc, "atoms", None) is None:
        return True
    # per-atom settings (initial moments) follow from the config, whose hash is checked above
    return not set(calc.check_state(atoms)) & _GEOMETRY
