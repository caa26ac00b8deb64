"""The canonical ASSYST pipeline as a pyiron_workflow macro, and an editable Workflow builder.

::

    formulas ─► sample ─► aspect filter ─► relax(volume) ─► relax(full) ─► perturb
                   └──────────────┴───────────────┴──────────────┴────────────┴─► union ─► filter

Defaults follow the published workflow as run in the reference's ``SimpleUnary`` notebook
(``assyst`` 1.0.0): sampled cells with an aspect ratio above 6 are dropped, relaxations stop at
1e-3 eV/Å or 100 steps, each minimum gets four ``Rattle(0.25 Å) + Stretch(5 %, 0.5 %)`` and four
stretches that are mostly hydrostatic (up to 80 %, 70 % of draws) or mostly shear (up to 20 %),
kept when no pair is closer than 2 × 1 Å, and the union of everything is filtered by the same
distance and a volume of at most 300 Å³/atom.
"""

from __future__ import annotations

import flowrep as fr
import pyiron_workflow as pwf
from ase import Atoms

from pyiron_assyst.calculators import EMT, CalculatorConfig
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.filters import AspectFilter, DistanceFilter, Filter, VolumeFilter
from pyiron_assyst.stages.perturbations import PerturbConfig
from pyiron_assyst.stages.relax import FullRelax, Relaxation, VolumeRelax
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.workflow import nodes
from pyiron_assyst.workflow.nodes import apply_filter, concatenate, perturb, relax, sample

__all__ = [
    "DEFAULT_FINAL_FILTER",
    "DEFAULT_PERTURB",
    "DEFAULT_SAMPLE_FILTER",
    "OUTPUTS",
    "assyst",
    "build_workflow",
]

DEFAULT_PERTURB = PerturbConfig(filter=DistanceFilter(1.0), retries=10, seed=0)
"""The published four rattles and four stretches per minimum (see
:class:`~pyiron_assyst.stages.perturbations.PerturbConfig`), kept when no pair is closer than 2
Å."""
DEFAULT_SAMPLE_FILTER = AspectFilter(6.0)
"""Drop sampled cells whose longest lattice vector exceeds six times the shortest."""
DEFAULT_FINAL_FILTER = DistanceFilter(1.0) & VolumeFilter(maximum=300.0)
"""Drop structures with a pair closer than 2 Å or more than 300 Å³/atom."""

OUTPUTS = (
    "training_set", "sampled", "volume_relaxed", "relaxed", "perturbed",
    "sample_report", "sample_filter_report", "volume_report", "relax_report",
    "perturb_report", "filter_report",
)
"""Output ports of :func:`assyst`, in order."""


@fr.workflow(*OUTPUTS)
def assyst(
    formulas: Formulas,
    sample_config: SampleConfig = SampleConfig(),
    sample_filter: Filter = DEFAULT_SAMPLE_FILTER,
    volume_relax: Relaxation = VolumeRelax(),
    full_relax: Relaxation = FullRelax(),
    perturb_config: PerturbConfig = DEFAULT_PERTURB,
    final_filter: Filter = DEFAULT_FINAL_FILTER,
    calculator: CalculatorConfig = EMT(),
    executor: Executor = Executor(),
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], list[Atoms], list[Atoms], list[Atoms], list[Atoms], StageReport,
           StageReport, StageReport, StageReport, StageReport, StageReport]:
    """The ASSYST pipeline: sample, relax twice, perturb, and filter the union of all stages.

    With ``cache_directory`` the relaxations are cached there by content (a killed run started
    again recomputes only what had not finished); ``retry_failed`` retries cached failures.
    """
    generated, sample_report = sample(formulas, sample_config, executor)
    sampled, sample_filter_report = apply_filter(generated, sample_filter, "sample_filter")
    volume_relaxed, volume_report = relax(sampled, volume_relax, calculator, executor,
                                          cache_directory, retry_failed)
    relaxed, relax_report = relax(volume_relaxed, full_relax, calculator, executor,
                                  cache_directory, retry_failed)
    perturbed, perturb_report = perturb(relaxed, perturb_config)
    union = concatenate(sampled, volume_relaxed, relaxed, perturbed)
    training_set, filter_report = apply_filter(union, final_filter, "final_filter")
    return (
        training_set, sampled, volume_relaxed, relaxed, perturbed,
        sample_report, sample_filter_report, volume_report, relax_report,
        perturb_report, filter_report,
    )


_CONFIG_INPUTS = (
    "sample_config", "sample_filter", "volume_relax", "full_relax", "perturb_config",
    "final_filter", "calculator", "executor",
)


_BUILDERS = {
    "formulas": nodes.formulas_from_json,
    "sample_config": nodes.sample_config_from_json,
    "sample_filter": nodes.filter_from_json,
    "volume_relax": nodes.relaxation_from_json,
    "full_relax": nodes.relaxation_from_json,
    "perturb_config": nodes.perturb_config_from_json,
    "final_filter": nodes.filter_from_json,
    "calculator": nodes.calculator_from_json,
    "executor": nodes.executor_from_json,
}
"""The typed JSON builder node of each config input of :func:`assyst`."""


def build_workflow(formulas: Formulas, name: str = "assyst", **configs) -> pwf.Workflow:
    """An editable :class:`pyiron_workflow.Workflow` holding the macro and its configs as nodes.

    Every config (and the formulas) is a typed JSON builder node (e.g.
    :func:`~pyiron_assyst.workflow.nodes.sample_config_from_json`) whose only input is the config's
    JSON
    text, so the workflow's recipe
    (``wf.recipe.model_dump_json()``) carries all settings and rebuilds into a runnable copy
    with :meth:`pyiron_workflow.Workflow.from_recipe`. Configs not given take the macro's
    defaults. The workflow's outputs are those of :func:`assyst` (see :data:`OUTPUTS`).

    Parameters
    ----------
    formulas
        The formulas to sample.
    name
        Label of the workflow.
    **configs
        Any of the macro's config inputs by name (``sample_config``, ``calculator``, ...).
    """
    unknown = set(configs) - set(_CONFIG_INPUTS)
    if unknown:
        raise TypeError(f"build_workflow: unknown config(s) {sorted(unknown)}; "
                        f"allowed: {list(_CONFIG_INPUTS)}")
    defaults = {k: v.default for k, v in _signature_defaults().items()}
    wf = pwf.Workflow(name)
    wf.assyst = pwf.node(assyst)
    values = {"formulas": formulas, **{k: configs.get(k, defaults[k]) for k in _CONFIG_INPUTS}}
    for key, value in values.items():
        label = f"cfg_{key}"
        setattr(wf, label, pwf.node(_BUILDERS[key], text=value.to_json()))
        wf.connect(getattr(wf, label).outputs.config, getattr(wf.assyst.inputs, key))
    for port in OUTPUTS:
        wf.create_output_from(getattr(wf.assyst.outputs, port), label=port)
    return wf


def _signature_defaults():
    import inspect

    return {k: p for k, p in inspect.signature(assyst).parameters.items()
            if p.default is not inspect.Parameter.empty}
