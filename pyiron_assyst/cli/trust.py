"""What a project directory may run: nothing chosen by its author without ``--trust-project``.

A project can come from someone else (a colleague's tarball, a download). Reading it (``show``,
``status``, ``export``) never builds a calculator or starts a job. Commands that *compute* with
a run's stored configs (``retry-failed``, ``export --reference-energies compute``, a relabel)
first look for stored configs that would run a program or code the project's author chose:

- a calculator other than the package's own parameter-only ones (:data:`INERT_CALCULATORS`),
  e.g. an :class:`~pyiron_assyst.calculators.AseCalculator` whose keyword arguments name a
  command or an executable;
- an executor that submits jobs (``slurm_cluster`` / ``slurm_job``) or passes scheduler options;
- a callable stored by import path from outside this package and ``ase.optimize`` (a filter,
  a perturbation).

If there is any, the command stops with a message naming them unless the user passed
``--trust-project`` (after reading them with ``pyiron-assyst show --configs``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from pyiron_assyst.core.config import Config, ConfigError, config_kind

__all__ = ["INERT_CALCULATORS", "add_trust_flag", "require_trust", "untrusted"]

INERT_CALCULATORS = frozenset({"EMT", "Morse", "LennardJones"})
"""Calculator kinds that only take numbers: running them runs nothing the project chose."""
_INERT_MODULES = ("pyiron_assyst", "ase.optimize")
"""Modules whose stored callables (functions, optimizer classes) start no program."""


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust-project`` to a sub-command that computes with stored configs."""
    parser.add_argument("--trust-project", action="store_true",
                        help="run the calculator, executor and callables stored in the project "
                             "even if they can start programs (read them first with "
                             "'pyiron-assyst show --configs')")


def _values(value: Any) -> Iterator[Any]:
    """``value`` and everything nested in it (config fields, tuples)."""
    yield value
    if isinstance(value, Config) and dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _values(getattr(value, field.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _values(item)


def _risk(value: Any) -> str | None:
    from pyiron_assyst.calculators import CalculatorConfig
    from pyiron_assyst.execution.executors import SCHEDULER_KINDS, Executor

    if isinstance(value, CalculatorConfig):
        kind = config_kind(type(value))
        if kind in INERT_CALCULATORS:
            return None
        path = getattr(value, "import_path", None)
        return f"calculator {kind}" + (f" {path!r}" if path else "")
    if isinstance(value, Executor) and (value.kind in SCHEDULER_KINDS or value.scheduler_args):
        return f"executor {value.kind!r} (submits jobs)"
    if callable(value) and not isinstance(value, Config):
        module = getattr(value, "__module__", "") or ""
        if not any(module == m or module.startswith(m + ".") for m in _INERT_MODULES):
            return f"callable {module}:{getattr(value, '__qualname__', value)!r}"
    return None


def untrusted(configs: Mapping[str, Any]) -> list[str]:
    """``"<config name>: <what>"`` for each stored config that could run what its author chose."""
    found = []
    for name, config in configs.items():
        risks = dict.fromkeys(r for v in _values(config) if (r := _risk(v)) is not None)
        found += [f"{name}: {risk}" for risk in risks]
    return found


def require_trust(configs: Mapping[str, Any], trusted: bool, what: str) -> None:
    """Raise :class:`ConfigError` if ``configs`` (read from a project) could run programs the
    project's author chose and the user did not pass ``--trust-project``.

    Parameters
    ----------
    configs
        The stored configs the command would compute with.
    trusted
        Whether the user passed ``--trust-project``.
    what
        The command and run, for the message (e.g. ``"retry-failed of run 'r'"``).
    """
    risks = untrusted(configs)
    if risks and not trusted:
        raise ConfigError(f"{what} would run what the project stores: {'; '.join(risks)}. "
                          "A project may come from someone else: read these configs with "
                          "'pyiron-assyst show --configs' and pass --trust-project to run them")
