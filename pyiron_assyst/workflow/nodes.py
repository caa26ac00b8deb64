"""pyiron_workflow nodes of the ASSYST stages: thin ``@flowrep.atomic`` wrappers.

Every node calls the plain stage function of the same name and exposes its two results,
``structures`` and ``report`` (a :class:`~pyiron_assyst.core.report.StageReport`), as output ports.
Every config class is a node too (``pwf.node(SampleConfig, max_atoms=4)``, output port
``instance``, pyiron_workflow's port of a class node), so configs can be built inside a
graph from JSON-able constants and survive a recipe round trip; :func:`config_from_json` builds
nested configs (series of perturbations, filter algebra) from their JSON text.

The label hand-off (``label``, ``isolated_atoms``, ``energies_of``, ``curate``,
``reference_energies``, ``reference_calculator``) and the fit (``fit``, ``split``,
``transferability``, and ``explore`` for a round of active learning) are here too.
"""

from __future__ import annotations

from typing import Any

import flowrep as fr
from ase import Atoms

from pyiron_assyst import calculators
from pyiron_assyst.core.config import ConfigError
from pyiron_assyst.core.config import config_from_json as _config_from_json
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.execution import executors
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.export.nodes import training_container
from pyiron_assyst.fitting import mace as _fit
from pyiron_assyst.fitting import transferability as _transferability
from pyiron_assyst.stages import curate as curation
from pyiron_assyst.stages import explore as exploration
from pyiron_assyst.stages import filters, perturbations
from pyiron_assyst.stages import label as labels
from pyiron_assyst.stages import perturb as perturb_stage
from pyiron_assyst.stages import relax as relaxations
from pyiron_assyst.stages import sample as crystals
from pyiron_assyst.stages import select as selection
from pyiron_assyst.stages import short_range as short

__all__ = [
    "add_short_range",
    "apply_filter",
    "calculator_from_json",
    "concatenate",
    "config_from_json",
    "curate",
    "curation_config_from_json",
    "energies_of",
    "executor_from_json",
    "explore",
    "explore_config_from_json",
    "filter_from_json",
    "fit",
    "formulas_from_json",
    "isolated_atoms",
    "label",
    "perturb",
    "perturb_config_from_json",
    "reference_calculator",
    "reference_energies",
    "relax",
    "relaxation_from_json",
    "sample",
    "sample_config_from_json",
    "select",
    "select_config_from_json",
    "short_range",
    "short_range_config_from_json",
    "split",
    "training_container",
    "transferability",
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
    perturbed, report = perturb_stage.perturb_with(structures, config)
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


@fr.atomic("structures", "report")
def short_range(
    formulas: crystals.Formulas,
    relaxed: list[Atoms],
    config: short.ShortRangeConfig = short.ShortRangeConfig(),
) -> tuple[list[Atoms], StageReport]:
    """Isolated atoms, dimers, trimers and compressed crystals of the elements of ``formulas``
    (see :func:`pyiron_assyst.stages.short_range.short_range`)."""
    made, report = short.short_range(relaxed, config, sorted(formulas.elements))
    return made, report


@fr.atomic("structures")
def add_short_range(filtered: list[Atoms], short_range: list[Atoms]) -> list[Atoms]:
    """The filtered set followed by the short-range structures (what the label stage gets)."""
    return [*filtered, *short_range]


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
    """:class:`~pyiron_assyst.stages.sample.Formulas` from JSON text."""
    return _typed(text, crystals.Formulas)


@fr.atomic("config")
def sample_config_from_json(text: str) -> crystals.SampleConfig:
    """:class:`~pyiron_assyst.stages.sample.SampleConfig` from JSON text."""
    return _typed(text, crystals.SampleConfig)


@fr.atomic("config")
def filter_from_json(text: str) -> filters.Filter:
    """Any :class:`~pyiron_assyst.stages.filters.Filter` (also ``&``, ``|``, ``~``) from JSON
    text."""
    return _typed(text, filters.Filter)


@fr.atomic("config")
def relaxation_from_json(text: str) -> relaxations.Relaxation:
    """Any :class:`~pyiron_assyst.stages.relax.Relaxation` from JSON text."""
    return _typed(text, relaxations.Relaxation)


@fr.atomic("config")
def perturb_config_from_json(text: str) -> perturbations.PerturbConfig:
    """:class:`~pyiron_assyst.stages.perturbations.PerturbConfig` from JSON text."""
    return _typed(text, perturbations.PerturbConfig)


@fr.atomic("config")
def calculator_from_json(text: str) -> calculators.CalculatorConfig:
    """Any :class:`~pyiron_assyst.calculators.CalculatorConfig` from JSON text."""
    return _typed(text, calculators.CalculatorConfig)


@fr.atomic("config")
def curation_config_from_json(text: str) -> curation.CurationConfig:
    """:class:`~pyiron_assyst.stages.curate.CurationConfig` from JSON text."""
    return _typed(text, curation.CurationConfig)


@fr.atomic("config")
def short_range_config_from_json(text: str) -> short.ShortRangeConfig:
    """:class:`~pyiron_assyst.stages.short_range.ShortRangeConfig` from JSON text."""
    return _typed(text, short.ShortRangeConfig)


@fr.atomic("config")
def select_config_from_json(text: str) -> selection.SelectConfig:
    """:class:`~pyiron_assyst.stages.select.SelectConfig` from JSON text."""
    return _typed(text, selection.SelectConfig)


@fr.atomic("config")
def explore_config_from_json(text: str) -> exploration.ExploreConfig:
    """:class:`~pyiron_assyst.stages.explore.ExploreConfig` from JSON text."""
    return _typed(text, exploration.ExploreConfig)


@fr.atomic("config")
def executor_from_json(text: str) -> executors.Executor:
    """:class:`~pyiron_assyst.execution.executors.Executor` from JSON text."""
    return _typed(text, executors.Executor)


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


@fr.atomic("calculator")
def reference_calculator(
    calculator: calculators.CalculatorConfig,
    reference: calculators.CalculatorConfig | None = None,
) -> calculators.CalculatorConfig:
    """The calculator config of the labels: ``reference``, or the relaxation ``calculator``
    when it is ``None`` (then the relaxed structures keep their relaxation single points)."""
    return calculator if reference is None else reference


@fr.atomic("structures", "report")
def isolated_atoms(
    formulas: crystals.Formulas,
    calculator: calculators.CalculatorConfig = calculators.EMT(),
    executor: executors.Executor = executors.Executor(kind="serial"),
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], StageReport]:
    """One labelled isolated atom per element of ``formulas`` (see
    :func:`curation.label_isolated_atoms`); cached like the labels with ``cache_directory``."""
    cache = None if cache_directory is None else ResultCache(cache_directory)
    atoms, report = curation.label_isolated_atoms(sorted(formulas.elements), calculator,
                                                  executor, cache=cache,
                                                  retry_failed=retry_failed)
    return atoms, report


@fr.atomic("energies")
def energies_of(isolated: list[Atoms]) -> dict[str, float]:
    """Isolated-atom energies in eV by element (see :func:`curation.energies_of`)."""
    return curation.energies_of(isolated)


@fr.atomic("energies", "report")
def reference_energies(
    elements: list[str],
    calculator: calculators.CalculatorConfig = calculators.EMT(),
    executor: executors.Executor = executors.Executor(kind="serial"),
) -> tuple[dict[str, float], StageReport]:
    """Isolated-atom energies in eV per element (see :func:`curation.reference_energies`)."""
    energies, report = curation.reference_energies(elements, calculator, executor)
    return energies, report


@fr.atomic("model", "report")
def fit(
    structures: list[Atoms],
    config: _fit.FitConfig = _fit.FitConfig(),
    executor: executors.Executor = executors.Executor(kind="serial"),
    directory: str = "fit",
) -> tuple[_fit.MaceModel, _fit.FitReport]:
    """Fit a potential on labelled structures (see :func:`pyiron_assyst.fitting.mace.fit`)."""
    model, report = _fit.fit(structures, config, executor, directory)
    return model, report


@fr.atomic("kept", "held_out")
def split(
    structures: list[Atoms], fraction: float = 0.2, seed: int = 0,
) -> tuple[list[Atoms], list[Atoms]]:
    """Hold whole lineages out (see :func:`pyiron_assyst.fitting.split.split_by_lineage`)."""
    kept, held_out = _fit.split_by_lineage(structures, fraction, seed)
    return kept, held_out


@fr.atomic("result")
def transferability(
    model: calculators.CalculatorConfig,
    reference: calculators.CalculatorConfig = calculators.EMT(),
    held_out: list[Atoms] | None = None,
    config: _transferability.TransferabilityConfig = _transferability.TransferabilityConfig(),
    directory: str | None = None,
) -> _transferability.TransferabilityResult:
    """Compare ``model`` with ``reference`` (see
    :func:`pyiron_assyst.fitting.transferability.transferability`); write the table and pictures
    into
    ``directory`` if given."""
    result = _transferability.transferability(model, reference, held_out or (), config)
    if directory is not None:
        _transferability.write_report(result, directory)
    return result


@fr.atomic("structures", "report")
def select(
    structures: list[Atoms],
    config: selection.SelectConfig = selection.SelectConfig(),
    calculator: calculators.CalculatorConfig | None = None,
) -> tuple[list[Atoms], StageReport]:
    """Keep the structures most worth labelling (see :func:`pyiron_assyst.stages.select.select`;
    this node's default keeps 40 %, the pipeline's default
    :data:`~pyiron_assyst.workflow.pipeline.DEFAULT_SELECT` keeps everything)."""
    kept, report = selection.select(structures, config, calculator)
    return kept, report


@fr.atomic("structures", "report")
def explore(
    structures: list[Atoms],
    model: calculators.CalculatorConfig,
    config: exploration.ExploreConfig = exploration.ExploreConfig(),
    executor: executors.Executor = executors.Executor(),
) -> tuple[list[Atoms], StageReport]:
    """Snapshots of MD driven by ``model`` from the set's minima, to be labelled and added to
    the training side (see :func:`pyiron_assyst.stages.explore.explore`)."""
    snapshots, report = exploration.explore(structures, model, config, executor)
    return snapshots, report
