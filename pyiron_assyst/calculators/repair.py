"""Failed calculations as data: what kind of failure it was, and how to repair it.

A DFT calculation fails in a few typical ways: the self-consistent field does not converge, the
code crashes or is killed, it runs out of time, it returns NaN, or it stops with an error text of
its own (VASP's ``ZBRENT: fatal error in bracketing``, ``Error EDDDAV``, ``too few bands``).
:func:`failure_kind` classifies an exception into one of :data:`FAILURE_KINDS`; the kind is the
drop reason of a structure that stays failed.

A :class:`RepairPolicy` is an ordered tuple of :class:`Repair` rules. When a calculation fails,
the first rule that matches the failure (its kind and, optionally, a regular expression searched
in the error text and in the tails of the code's log files) and has not been used on this
structure yet changes the calculator's settings (:meth:`CalculatorConfig.with_parameters
<pyiron_assyst.calculators.CalculatorConfig.with_parameters>`), and the whole calculation (single
point or relaxation) runs again; changes accumulate over attempts. At most ``max_attempts``
calculations are made per structure. A failure no rule matches is recorded and not retried.

The policy is part of the calculator config (the ``repair`` field of
:class:`~pyiron_assyst.calculators.gpaw.Gpaw`, or :class:`Repairing` around any calculator
config), so it takes part in every cache key: a changed policy is never answered from a failure
stored under the old one. Every attempt is recorded on the structure (info ``repairs``,
``calculation_attempts``) and in the stage report (a flag ``"repaired"`` per repaired
structure; the history in the detail of a drop).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import Config, check_members, freeze, require

__all__ = [
    "FAILURE_KINDS",
    "Repair",
    "RepairPolicy",
    "Repairing",
    "error_text",
    "failure_kind",
]

FAILURE_KINDS: dict[str, str] = {
    "scf_not_converged": "the self-consistent field did not converge",
    "crashed": "the code's process failed or was killed (non-zero exit, signal)",
    "timeout": "the calculation ran out of time",
    "non_finite": "a NaN or infinite energy, force or stress",
    "calculator_error": "any other error (the code's own error text tells which)",
}
"""Failure kinds, as :func:`failure_kind` assigns them; also the drop reasons of failures."""

_ANY = "any"
_LOG_TAIL = 4000
"""Characters read from the end of each log file named by a policy."""


def _class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def failure_kind(error: BaseException) -> str:
    """The kind (a key of :data:`FAILURE_KINDS`) of the failure ``error`` reports.

    ``scf_not_converged``: ASE's ``SCFError`` or any ``*ConvergenceError`` (GPAW's
    ``KohnShamConvergenceError``); ``crashed``: ASE's ``CalculationFailed`` (a file-based code
    exited non-zero), ``subprocess.CalledProcessError``; ``timeout``: ``TimeoutError``,
    ``subprocess.TimeoutExpired``; ``non_finite``:
    :class:`~pyiron_assyst.calculators.evaluation.NonFiniteError`; anything else
    ``calculator_error``.
    """
    names = _class_names(error)
    if "NonFiniteError" in names:  # pyiron_assyst.calculators.evaluation
        return "non_finite"
    if "SCFError" in names or any(n.endswith("ConvergenceError") for n in names):
        return "scf_not_converged"
    if isinstance(error, (TimeoutError, subprocess.TimeoutExpired)):
        return "timeout"
    if "CalculationFailed" in names or isinstance(error, subprocess.CalledProcessError):
        return "crashed"
    return "calculator_error"


def error_text(error: BaseException, calc: BaseCalculator | None,
               log_files: tuple[str, ...] = ()) -> str:
    """``"Type: message"`` of ``error``, followed by the tail of every existing log file.

    Log files are looked up in the calculator's ``directory`` (file-based ASE calculators run
    the code there), so a rule can match the code's own error text even when the exception
    only says that the program exited non-zero.
    """
    text = f"{type(error).__name__}: {error}"
    directory = Path(str(getattr(calc, "directory", "."))) if calc is not None else Path(".")
    for name in log_files:
        path = directory / name
        if path.is_file():
            tail = path.read_text(errors="replace")[-_LOG_TAIL:]
            text += f"\n--- {name} ---\n{tail}"
    return text


@dataclass(frozen=True)
class Repair(Config):
    """One repair rule: when a failure matches, change these calculator settings.

    Parameters
    ----------
    name
        Short name recorded in the history, e.g. ``"more_scf_iterations"``.
    changes
        Calculator settings to apply (a dict is accepted): field names of the calculator config
        for :class:`~pyiron_assyst.calculators.gpaw.Gpaw`, keyword arguments of the ASE
        calculator for :class:`~pyiron_assyst.calculators.AseCalculator`.
    kind
        The failure kind it answers (a key of :data:`FAILURE_KINDS`), or ``"any"``.
    match
        Regular expression searched in the error text and log tails (``""``: any text), e.g.
        ``"ZBRENT"``.
    """

    name: str
    changes: tuple[tuple[str, Any], ...]
    kind: str = _ANY
    match: str = ""

    def __post_init__(self) -> None:
        changes = self.changes
        object.__setattr__(self, "changes", freeze(
            dict(changes) if isinstance(changes, Mapping) else dict(changes or ())))
        require(isinstance(self.name, str) and bool(self.name.strip()), "Repair", "name",
                "a non-empty string", self.name)
        require(bool(self.changes), "Repair", "changes", "at least one setting to change",
                self.changes)
        for key, _ in self.changes:
            require(key.isidentifier(), "Repair", "changes", "keyed by setting names", key)
        require(self.kind == _ANY or self.kind in FAILURE_KINDS, "Repair", "kind",
                f"'any' or one of {sorted(FAILURE_KINDS)}", self.kind)
        try:
            re.compile(self.match)
        except (re.error, TypeError) as error:
            require(False, "Repair", "match", f"a regular expression ({error})", self.match)

    def matches(self, kind: str, text: str) -> bool:
        """Whether this rule answers a failure of ``kind`` with error text ``text``."""
        return (self.kind in (_ANY, kind)) and (not self.match
                                                 or re.search(self.match, text) is not None)


@dataclass(frozen=True)
class RepairPolicy(Config):
    """An ordered tuple of :class:`Repair` rules, at most ``max_attempts`` calculations each.

    Parameters
    ----------
    rules
        Tried in order; each rule is used at most once per structure.
    max_attempts
        Calculations per structure, the first one included (>= 1; 1 means no repair).
    log_files
        Files in the calculator's directory whose tails are appended to the error text that
        ``match`` expressions search (e.g. ``("OUTCAR", "vasp.out")``).
    """

    rules: tuple[Repair, ...] = ()
    max_attempts: int = 3
    log_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "log_files", tuple(self.log_files))
        check_members("RepairPolicy", "rules", self.rules, Repair, "Repair rules")
        require(isinstance(self.max_attempts, int) and not isinstance(self.max_attempts, bool)
                and self.max_attempts >= 1, "RepairPolicy", "max_attempts", "an int >= 1",
                self.max_attempts)
        names = [rule.name for rule in self.rules]
        require(len(set(names)) == len(names), "RepairPolicy", "rules", "rules with distinct "
                "names", names)
        for name in self.log_files:
            require(isinstance(name, str) and bool(name) and Path(name).name == name,
                    "RepairPolicy", "log_files", "plain file names", name)

    def next_rule(self, kind: str, text: str, used: tuple[str, ...]) -> Repair | None:
        """The first rule that matches and is not in ``used`` (names), or ``None``."""
        for rule in self.rules:
            if rule.name not in used and rule.matches(kind, text):
                return rule
        return None


@dataclass(frozen=True)
class Repairing(CalculatorConfig):
    """Any calculator config with a :class:`RepairPolicy` (for configs without a ``repair`` field).

    Parameters
    ----------
    base
        The calculator config (e.g. a
        :class:`~pyiron_assyst.calculators.structure_settings.StructureSettings` around
        ASE's ``Vasp``).
    policy
        The repair policy.
    """

    base: CalculatorConfig
    policy: RepairPolicy

    def __post_init__(self) -> None:
        require(isinstance(self.base, CalculatorConfig) and not isinstance(self.base, Repairing),
                "Repairing", "base", "a calculator config (not another Repairing)", self.base)
        require(isinstance(self.policy, RepairPolicy), "Repairing", "policy", "a RepairPolicy",
                self.policy)

    def get_calculator(self) -> BaseCalculator:
        return self.base.get_calculator()

    def calculator_for(self, atoms: Atoms) -> BaseCalculator:
        return self.base.calculator_for(atoms)

    def prepare(self, atoms: Atoms) -> Atoms:
        """The base's recorded settings (see ``prepare_structure``), if it has any."""
        prepare = getattr(self.base, "prepare", None)
        return prepare(atoms) if callable(prepare) else atoms

    def repair_policy(self) -> RepairPolicy | None:
        return self.policy

    def with_parameters(self, changes: Mapping[str, Any]) -> Repairing:
        return Repairing(self.base.with_parameters(changes), self.policy)
