"""pyiron_workflow nodes of the ASSYST stages: thin ``@flowrep.atomic`` wrappers.

Every node calls the plain stage function of the same name and exposes its two results,
``structures`` and ``report`` (a :class:`~pyiron_assyst.report.StageReport`), as output ports.
Importing this module also makes every config class usable as a node (``pwf.node(SampleConfig,
max_atoms=4)``, output port ``config``), so configs can be built inside a graph from JSON-able
constants and survive a recipe round trip; :func:`config_from_json` builds nested configs
(series of perturbations, filter algebra) from their JSON text.
"""

from __future__ import annotations

from typing import Any

import flowrep as fr
from ase import Atoms

from . import calculators, crystals, executors, filters, perturbations, relaxations
from .cache import ResultCache
from .config import ConfigError
from .config import config_from_json as _config_from_json
from .report import StageReport
from .settings import config_classes

__all__ = [
    "apply_filter",
    "calculator_from_json",
    "concatenate",
    "config_from_json",
    "executor_from_json",
    "filter_from_json",
    "formulas_from_json",
    "perturb_config_from_json",
    "relaxation_from_json",
    "sample_config_from_json",
    "perturb",
    "relax",
    "sample",
]


@fr.atomic("structures", "report")
def sample(
    formulas: crystals.Formulas,
    config: crystals.SampleConfig = crystals.SampleConfig(),
    executor: executors.Executor = executors.Executor(kind="serial"),
) -> tuple[list[Atoms], StageReport]:
    """Random symmetric crystals, one per (formula, group) grid point (:func:`crystals.sample`)."""
    structures, report = crystals.sample(formulas, config, executor)
    return structures, report


@fr.atomic("structures", "report")
def relax(
    structures: list[Atoms],
    config: relaxations.Relaxation = relaxations.FullRelax(),
    calculator: calculators.CalculatorConfig = calculators.EMT(),
    executor: executors.Executor = executors.Executor(),
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], StageReport]:
    """Relax each structure with a calculator config (see :func:`relaxations.relax`).

    With ``cache_directory`` (e.g. ``<project>/cache``) finished relaxations are kept there by
    content and reused; ``retry_failed`` relaxes again those whose cached result is a failure.
    """
    cache = None if cache_directory is None else ResultCache(cache_directory)
    relaxed, report = relaxations.relax(structures, config, calculator, executor, cache,
                                        retry_failed)
    return relaxed, report


@fr.atomic("structures", "report")
def perturb(
    structures: list[Atoms],
    config: perturbations.PerturbConfig = perturbations.PerturbConfig(),
) -> tuple[list[Atoms], StageReport]:
    """Perturbed copies of each structure, retried until they pass a filter."""
    perturbed, report = perturbations.perturb_with(structures, config)
    return perturbed, report


@fr.atomic("structures", "report")
def apply_filter(
    structures: list[Atoms],
    filter: filters.Filter | None = None,  # noqa: A002 - the stage's natural name
    stage: str = "filter",
) -> tuple[list[Atoms], StageReport]:
    """Keep the structures that pass ``filter`` (see :func:`filters.apply_filter`)."""
    kept, report = filters.apply_filter(structures, filter, stage)
    return kept, report


@fr.atomic("structures")
def concatenate(
    sampled: list[Atoms],
    volume_relaxed: list[Atoms],
    relaxed: list[Atoms],
    perturbed: list[Atoms],
) -> list[Atoms]:
    """The union of the stage outputs, in stage order (the ASSYST training set before filtering)."""
    return [*sampled, *volume_relaxed, *relaxed, *perturbed]


@fr.atomic("config")
def config_from_json(text: str) -> Any:
    """Build any config (also nested ones) from its JSON text (``config.to_json()``)."""
    return _config_from_json(text)


def _typed(text: str, kind: type) -> Any:
    config = _config_from_json(text)
    if not isinstance(config, kind):
        raise ConfigError(f"expected a {kind.__name__} config, got {type(config).__name__}")
    return config


# One builder per port type, so that edges into typed ports pass pyiron_workflow's (and
# PyironFlow's) type check, which rejects ``Any -> Formulas``.


@fr.atomic("config")
def formulas_from_json(text: str) -> crystals.Formulas:
    """:class:`~pyiron_assyst.crystals.Formulas` from JSON text."""
    return _typed(text, crystals.Formulas)


@fr.atomic("config")
def sample_config_from_json(text: str) -> crystals.SampleConfig:
    """:class:`~pyiron_assyst.crystals.SampleConfig` from JSON text."""
    return _typed(text, crystals.SampleConfig)


@fr.atomic("config")
def filter_from_json(text: str) -> filters.Filter:
    """Any :class:`~pyiron_assyst.filters.Filter` (also ``&``, ``|``, ``~``) from JSON text."""
    return _typed(text, filters.Filter)


@fr.atomic("config")
def relaxation_from_json(text: str) -> relaxations.Relaxation:
    """Any :class:`~pyiron_assyst.relaxations.Relaxation` from JSON text."""
    return _typed(text, relaxations.Relaxation)


@fr.atomic("config")
def perturb_config_from_json(text: str) -> perturbations.PerturbConfig:
    """:class:`~pyiron_assyst.perturbations.PerturbConfig` from JSON text."""
    return _typed(text, perturbations.PerturbConfig)


@fr.atomic("config")
def calculator_from_json(text: str) -> calculators.CalculatorConfig:
    """Any :class:`~pyiron_assyst.calculators.CalculatorConfig` from JSON text."""
    return _typed(text, calculators.CalculatorConfig)


@fr.atomic("config")
def executor_from_json(text: str) -> executors.Executor:
    """:class:`~pyiron_assyst.executors.Executor` from JSON text."""
    return _typed(text, executors.Executor)


for _cls in config_classes().values():
    if "flowrep_recipe" not in vars(_cls):
        fr.atomic("config")(_cls)
