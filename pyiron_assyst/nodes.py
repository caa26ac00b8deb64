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
from .config import Config
from .config import config_from_json as _config_from_json
from .report import StageReport

__all__ = [
    "apply_filter",
    "concatenate",
    "config_from_json",
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
) -> tuple[list[Atoms], StageReport]:
    """Relax each structure with a calculator config (see :func:`relaxations.relax`)."""
    relaxed, report = relaxations.relax(structures, config, calculator, executor)
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


_NOT_NODES = (relaxations.Relaxation,)


def _config_classes() -> list[type]:
    modules = (calculators, crystals, executors, filters, perturbations, relaxations)
    found = []
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (isinstance(obj, type) and issubclass(obj, Config) and obj not in _NOT_NODES
                    and "__dataclass_fields__" in vars(obj)
                    and not getattr(obj, "__abstractmethods__", None)):
                found.append(obj)
    return found


for _cls in _config_classes():
    if "flowrep_recipe" not in vars(_cls):
        fr.atomic("config")(_cls)
