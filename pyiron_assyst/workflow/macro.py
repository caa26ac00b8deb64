"""The canonical ASSYST pipeline as a pyiron_workflow macro, and an editable Workflow builder.

::

    formulas ─► sample ─► aspect filter ─► relax(volume) ─► relax(full) ─► perturb
                   └──────────────┴───────────────┴──────────────┴────────────┴─► union ─► filter
    filter ─► label ─► curate ─► training set;   isolated atoms ─► reference energies ─┘

The shape (inputs, defaults, TOML tables, outputs, stored stages) is declared once in
:mod:`pyiron_assyst.workflow.pipeline`; this module wires the calls. Defaults follow the
published workflow as run in the reference's ``SimpleUnary`` notebook (``assyst`` 1.0.0):
sampled cells with an aspect ratio above 6 are dropped, relaxations stop at 1e-3 eV/Å or 100
steps, each minimum gets four ``Rattle(0.25 Å) + Stretch(5 %, 0.5 %)`` and four stretches that
are mostly hydrostatic (up to 80 %, 70 % of draws) or mostly shear (up to 20 %), kept when no
pair is closer than 2 × 1 Å, and the union of everything is filtered by the same distance and a
volume of at most 300 Å³/atom. The filtered union is then labelled with the reference
calculator (by default the relaxation calculator, whose single points the relaxed structures
keep) and curated (:data:`~pyiron_assyst.workflow.pipeline.DEFAULT_CURATION`).
"""

from __future__ import annotations

import json

import flowrep as fr
import pyiron_workflow as pwf
from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import CurationConfig
from pyiron_assyst.stages.filters import Filter
from pyiron_assyst.stages.perturbations import PerturbConfig
from pyiron_assyst.stages.relax import Relaxation
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.workflow import nodes
from pyiron_assyst.workflow import pipeline as _pipeline
from pyiron_assyst.workflow.nodes import (
    apply_filter,
    concatenate,
    curate,
    energies_of,
    isolated_atoms,
    label,
    perturb,
    reference_calculator,
    relax,
    sample,
)
from pyiron_assyst.workflow.pipeline import (
    DEFAULT_CURATION,
    DEFAULT_FINAL_FILTER,
    DEFAULT_PERTURB,
    DEFAULT_SAMPLE_FILTER,
    OUTPUTS,
)

__all__ = [
    "DEFAULT_CURATION",
    "DEFAULT_FINAL_FILTER",
    "DEFAULT_PERTURB",
    "DEFAULT_SAMPLE_FILTER",
    "LABEL_OUTPUTS",
    "OUTPUTS",
    "assyst",
    "build_workflow",
    "label_and_curate",
]

_D = _pipeline.defaults()


LABEL_OUTPUTS = ("training_set", "labelled", "isolated_atoms", "label_report",
                 "reference_report", "curate_report", "reference_energies")
"""Output ports of :func:`label_and_curate`."""


@fr.workflow(*LABEL_OUTPUTS)
def label_and_curate(
    structures: list[Atoms],
    formulas: Formulas,
    reference: CalculatorConfig = _D["calculator"],
    curation: CurationConfig = _D["curation"],
    executor: Executor = _D["executor"],
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], list[Atoms], list[Atoms], StageReport, StageReport, StageReport,
           dict[str, float]]:
    """The end of the pipeline: label ``structures`` with ``reference``, compute the
    isolated-atom energies of the elements of ``formulas`` with it, and curate.

    The last steps of :func:`assyst`, and what ``pyiron-assyst label`` runs on a stored
    training set. Structures already labelled by ``reference`` keep their labels.
    """
    labelled, label_report = label(structures, reference, executor, False, cache_directory,
                                   retry_failed)
    atoms, reference_report = isolated_atoms(formulas, reference, executor, cache_directory,
                                             retry_failed)
    reference_energies = energies_of(atoms)
    training_set, curate_report = curate(labelled, curation, reference_energies)
    return (training_set, labelled, atoms, label_report, reference_report, curate_report,
            reference_energies)


@fr.workflow(*OUTPUTS)
def assyst(
    formulas: Formulas,
    sample_config: SampleConfig = _D["sample_config"],
    sample_filter: Filter = _D["sample_filter"],
    volume_relax: Relaxation = _D["volume_relax"],
    full_relax: Relaxation = _D["full_relax"],
    perturb_config: PerturbConfig = _D["perturb_config"],
    final_filter: Filter = _D["final_filter"],
    calculator: CalculatorConfig = _D["calculator"],
    reference: CalculatorConfig | None = _D["reference"],
    curation: CurationConfig = _D["curation"],
    executor: Executor = _D["executor"],
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], list[Atoms], list[Atoms], list[Atoms], list[Atoms], list[Atoms],
           list[Atoms], list[Atoms], StageReport, StageReport, StageReport, StageReport,
           StageReport, StageReport, StageReport, StageReport, StageReport, dict[str, float]]:
    """The ASSYST pipeline: sample, relax twice, perturb, filter the union of all stages, label
    it with the ``reference`` calculator (``None``: the relaxation ``calculator``) and curate it.

    With ``cache_directory`` the relaxations and single points are cached there by content (a
    killed run started again recomputes only what had not finished); ``retry_failed`` retries
    cached failures.
    """
    generated, sample_report = sample(formulas, sample_config, executor)
    sampled, sample_filter_report = apply_filter(generated, sample_filter, "sample_filter")
    volume_relaxed, volume_report = relax(sampled, volume_relax, calculator, executor,
                                          cache_directory, retry_failed)
    relaxed, relax_report = relax(volume_relaxed, full_relax, calculator, executor,
                                  cache_directory, retry_failed)
    perturbed, perturb_report = perturb(relaxed, perturb_config)
    union = concatenate(sampled, volume_relaxed, relaxed, perturbed)
    filtered, filter_report = apply_filter(union, final_filter, "final_filter")
    labeller = reference_calculator(calculator, reference)
    (training_set, labelled, atoms, label_report, reference_report, curate_report,
     reference_energies) = label_and_curate(filtered, formulas, labeller, curation, executor,
                                            cache_directory, retry_failed)
    return (
        training_set, sampled, volume_relaxed, relaxed, perturbed, filtered, labelled, atoms,
        sample_report, sample_filter_report, volume_report, relax_report, perturb_report,
        filter_report, label_report, reference_report, curate_report, reference_energies,
    )


def _check() -> None:
    problems = _pipeline.check_recipe(json.loads(assyst.flowrep_recipe.model_dump_json()))
    if problems:  # the macro and its declaration disagree: a programming error
        raise RuntimeError("assyst macro does not match pyiron_assyst.workflow.pipeline: "
                           + "; ".join(problems))


_check()


def build_workflow(formulas: Formulas, name: str = "assyst", *,
                   cache_directory: str | None = None, retry_failed: bool = False,
                   **configs: object) -> pwf.Workflow:
    """An editable :class:`pyiron_workflow.Workflow` holding the macro and its configs as nodes.

    Every config (and the formulas) is a typed JSON builder node (e.g.
    :func:`~pyiron_assyst.workflow.nodes.sample_config_from_json`) whose only input is the
    config's JSON text, so the workflow's recipe (``wf.recipe.model_dump_json()``) carries all
    settings and rebuilds into a runnable copy with
    :meth:`pyiron_workflow.Workflow.from_recipe`. Configs not given take the macro's defaults;
    a ``reference`` of ``None`` (the default) becomes the ``calculator``, so the recipe names
    the calculator that made the labels. ``wf.run()`` needs no inputs. The workflow's outputs
    are those of :func:`assyst` (see :data:`OUTPUTS`). The command line runs exactly this
    workflow and stores its recipe with the run.

    Parameters
    ----------
    formulas
        The formulas to sample.
    name
        Label of the workflow.
    cache_directory, retry_failed
        As for :func:`assyst` (constants of the macro node).
    **configs
        Any of the macro's config inputs by name (``sample_config``, ``calculator``, ...).
    """
    allowed = [c.name for c in _pipeline.CONFIGS]
    unknown = set(configs) - set(allowed)
    if unknown:
        raise TypeError(f"build_workflow: unknown config(s) {sorted(unknown)}; "
                        f"allowed: {allowed}")
    values = {**_pipeline.defaults(), **configs}
    if values["reference"] is None:
        values["reference"] = values["calculator"]
    wf = pwf.Workflow(name)
    wf.assyst = pwf.node(assyst, cache_directory=cache_directory, retry_failed=retry_failed)
    wf.cfg_formulas = pwf.node(nodes.formulas_from_json, text=formulas.to_json())
    wf.connect(wf.cfg_formulas.outputs.config, wf.assyst.inputs.formulas)
    for entry in _pipeline.CONFIGS:
        builder = pwf.node(getattr(nodes, entry.builder), text=values[entry.name].to_json())
        setattr(wf, f"cfg_{entry.name}", builder)
        wf.connect(builder.outputs.config, getattr(wf.assyst.inputs, entry.name))
    for port in OUTPUTS:
        wf.create_output_from(getattr(wf.assyst.outputs, port), label=port)
    return wf
