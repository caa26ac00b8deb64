"""Nodes of the label hand-off: thin ``@flowrep.atomic`` wrappers (to be merged into ``nodes``).

Every node calls the plain function of the same name and exposes its results as output ports;
the config classes of :mod:`pyiron_assyst.curation` and :mod:`pyiron_assyst.structure_settings`
become config nodes (output port ``config``) like the others in :mod:`pyiron_assyst.nodes`.
"""

from __future__ import annotations

import flowrep as fr
from ase import Atoms

from . import calculators, curation, executors, labels
from . import nodes as _nodes  # noqa: F401  (registers every config class as a node)
from .cache import ResultCache
from .report import StageReport

__all__ = ["curate", "label", "reference_energies"]


@fr.atomic("structures", "report")
def label(
    structures: list[Atoms],
    calculator: calculators.CalculatorConfig = calculators.EMT(),
    executor: executors.Executor = executors.Executor(),
    relabel: bool = False,
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], StageReport]:
    """Reference single points of each structure (see :func:`labels.label`).

    With ``cache_directory`` (e.g. ``<project>/cache``) finished single points are kept there by
    content and reused; ``retry_failed`` labels again those whose cached result is a failure.
    """
    cache = None if cache_directory is None else ResultCache(cache_directory)
    labelled, report = labels.label(structures, calculator, executor, relabel, cache,
                                    retry_failed)
    return labelled, report


@fr.atomic("structures", "report")
def curate(
    structures: list[Atoms],
    config: curation.CurationConfig = curation.CurationConfig(),
    reference_energies: dict[str, float] | None = None,
) -> tuple[list[Atoms], StageReport]:
    """Remove unlabelled, capped, too close and duplicate structures (:func:`curation.curate`)."""
    curated, report = curation.curate(structures, config, reference_energies)
    return curated, report


@fr.atomic("energies", "report")
def reference_energies(
    elements: list[str],
    calculator: calculators.CalculatorConfig = calculators.EMT(),
    executor: executors.Executor = executors.Executor(kind="serial"),
) -> tuple[dict[str, float], StageReport]:
    """Isolated-atom energies in eV per element (see :func:`curation.reference_energies`)."""
    energies, report = curation.reference_energies(elements, calculator, executor)
    return energies, report

