"""The canonical ASSYST pipeline as a pyiron_workflow macro, and an editable Workflow builder.

::

    formulas ─► sample ─► aspect filter ─► relax(volume) ─► relax(full) ─► perturb
                   └──────────────┴───────────────┴──────────────┴────────────┴─► union ─► filter
    filter ─► select (off by default) + short range (relaxed ─► isolated atoms, dimers,
      trimers, compressed crystals) ─► label ─► curate ─► training set;
    isolated atoms ─► reference energies ─┘

The shape (inputs, defaults, TOML tables, outputs, stored stages) is declared once in
:mod:`pyiron_assyst.workflow.pipeline`; this module wires the calls. Defaults follow the
published workflow as run in the reference's ``SimpleUnary`` notebook (``assyst`` 1.0.0):
sampled cells with an aspect ratio above 6 are dropped, relaxations stop at 1e-3 eV/Å or 100
steps, each minimum gets four ``Rattle(0.25 Å) + Stretch(5 %, 0.5 %)`` and four stretches that
are mostly hydrostatic (up to 80 %, 70 % of draws) or mostly shear (up to 20 %), kept when no
pair is closer than 2 × 1 Å, and the union of everything is filtered by the same distance and a
volume of at most 300 Å³/atom. The select stage can keep only the part of the filtered union a
fit learns most from (``select_config``; off by default:
:data:`~pyiron_assyst.workflow.pipeline.DEFAULT_SELECT` keeps everything); the short-range
structures are never subject to it. The result is then labelled with the reference
calculator (by default the relaxation calculator, whose single points the relaxed structures
keep) and curated (:data:`~pyiron_assyst.workflow.pipeline.DEFAULT_CURATION`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import flowrep as fr
import pyiron_workflow as pwf
from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import Config
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import CurationConfig
from pyiron_assyst.stages.filters import Filter
from pyiron_assyst.stages.perturbations import PerturbConfig
from pyiron_assyst.stages.relax import Relaxation
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.stages.select import SelectConfig
from pyiron_assyst.stages.short_range import ShortRangeConfig
from pyiron_assyst.workflow import forms, nodes
from pyiron_assyst.workflow import pipeline as _pipeline
from pyiron_assyst.workflow.nodes import (
    add_short_range,
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
    select,
    short_range,
)
from pyiron_assyst.workflow.pipeline import (
    DEFAULT_CURATION,
    DEFAULT_FINAL_FILTER,
    DEFAULT_PERTURB,
    DEFAULT_SAMPLE_FILTER,
    DEFAULT_SELECT,
    OUTPUTS,
)

__all__ = [
    "DEFAULT_CURATION",
    "DEFAULT_FINAL_FILTER",
    "DEFAULT_PERTURB",
    "DEFAULT_SAMPLE_FILTER",
    "DEFAULT_SELECT",
    "KNOBS",
    "LABEL_OUTPUTS",
    "OUTPUTS",
    "add_config",
    "assyst",
    "build_workflow",
    "label_and_curate",
    "set_config",
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
    select_config: SelectConfig = _D["select_config"],
    short_range_config: ShortRangeConfig = _D["short_range_config"],
    calculator: CalculatorConfig = _D["calculator"],
    reference: CalculatorConfig | None = _D["reference"],
    curation: CurationConfig = _D["curation"],
    executor: Executor = _D["executor"],
    cache_directory: str | None = None,
    retry_failed: bool = False,
) -> tuple[list[Atoms], list[Atoms], list[Atoms], list[Atoms], list[Atoms], list[Atoms],
           list[Atoms], list[Atoms], list[Atoms], list[Atoms], StageReport, StageReport,
           StageReport, StageReport, StageReport, StageReport, StageReport, StageReport,
           StageReport, StageReport, StageReport, dict[str, float]]:
    """The ASSYST pipeline: sample, relax twice, perturb, filter the union of all stages,
    select what is worth labelling (``select_config``; off by default), add the short-range
    structures (isolated atoms, dimers, trimers, compressed relaxed crystals;
    ``short_range_config``), label everything with the ``reference`` calculator (``None``: the
    relaxation ``calculator``) and curate it (which keeps the short-range structures).

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
    short, short_range_report = short_range(formulas, relaxed, short_range_config)
    labeller = reference_calculator(calculator, reference)
    selected, select_report = select(filtered, select_config, labeller)
    to_label = add_short_range(selected, short)
    (training_set, labelled, atoms, label_report, reference_report, curate_report,
     reference_energies) = label_and_curate(to_label, formulas, labeller, curation, executor,
                                            cache_directory, retry_failed)
    return (
        training_set, sampled, volume_relaxed, relaxed, perturbed, filtered, short, selected,
        labelled, atoms, sample_report, sample_filter_report, volume_report, relax_report,
        perturb_report, filter_report, short_range_report, select_report, label_report,
        reference_report, curate_report, reference_energies,
    )


def _check() -> None:
    problems = _pipeline.check_recipe(json.loads(assyst.flowrep_recipe.model_dump_json()))
    if problems:  # the macro and its declaration disagree: a programming error
        raise RuntimeError("assyst macro does not match pyiron_assyst.workflow.pipeline: "
                           + "; ".join(problems))


_check()


KNOBS = ("formulas", "seed", "calculator", "executor")
"""What :func:`build_workflow` can make inputs of the workflow itself (``wf.run(seed=3)``):
the formulas, the seed of sampling and perturbing, the calculator, the executor."""

_KNOB_TYPES = {"formulas": Formulas, "seed": int, "calculator": CalculatorConfig,
               "executor": Executor}
_SEEDED = ("sample_config", "perturb_config")  # the configs whose ``seed`` the knob sets


def build_workflow(formulas: Formulas | None = None, name: str = "assyst", *,
                   inputs: Iterable[str] | None = None, cache_directory: str | None = None,
                   retry_failed: bool = False, **configs: object) -> pwf.Workflow:
    """An editable :class:`pyiron_workflow.Workflow` holding the macro and its configs as nodes.

    Every config (and the formulas) is a node whose inputs are its fields (a form of
    :mod:`~pyiron_assyst.workflow.forms`, e.g. ``wf.cfg_sample_config`` with ``seed``,
    ``max_atoms``, ``spacegroups``, ...; a nested config, such as the filter of the
    perturbations, is a child node ``wf.cfg_perturb_config_filter``); only fields that
    differ from the form's defaults are constants. A config without a form (e.g. a DFT
    calculator) is a JSON builder node (e.g.
    :func:`~pyiron_assyst.workflow.nodes.calculator_from_json`).
    The recipe (``wf.recipe.model_dump_json()``) so carries all settings and rebuilds into a
    runnable copy with :meth:`pyiron_workflow.Workflow.from_recipe`. Configs not given take
    the macro's defaults; a ``reference`` of ``None`` (the default) is fed the ``calculator``,
    so the recipe names the calculator that made the labels. Change one config of the
    workflow with :func:`set_config`. The workflow's outputs are those of :func:`assyst` (see
    :data:`OUTPUTS`). The command line runs exactly this workflow and stores its recipe.

    Parameters
    ----------
    formulas
        The formulas to sample; ``None``: an input of the workflow (``wf.run(formulas=…)``).
    name
        Label of the workflow.
    inputs
        Knobs (:data:`KNOBS`) that become inputs of the workflow, which ``wf.run`` then needs:
        ``"formulas"`` (default when ``formulas`` is ``None``), ``"seed"`` (the ``seed`` of
        the sample and perturbation configs), ``"calculator"`` (also the reference unless one
        is given), ``"executor"``.
    cache_directory, retry_failed
        As for :func:`assyst` (constants of the macro node).
    **configs
        Any of the macro's config inputs by name (``sample_config``, ``calculator``, ...).
    """
    inputs = _knob_inputs(formulas, inputs, configs)
    values = {**_pipeline.defaults(), **configs}
    if values["reference"] is None and "calculator" not in inputs:
        values["reference"] = values["calculator"]
    wf = pwf.Workflow(name)
    wf.assyst = pwf.node(assyst, cache_directory=cache_directory, retry_failed=retry_failed)
    for knob in inputs:
        wf.create_input(knob, type_hint=_KNOB_TYPES[knob])
    targets = {"formulas": formulas, **values}
    for port, value in targets.items():
        if port in inputs:
            wf.connect(getattr(wf.inputs, port), getattr(wf.assyst.inputs, port))
        elif port == "reference" and value is None:
            wf.connect(wf.inputs.calculator, wf.assyst.inputs.reference)
        else:
            exclude = ("seed",) if "seed" in inputs and port in _SEEDED else ()
            source = add_config(wf, f"cfg_{port}", value, exclude)
            wf.connect(source, getattr(wf.assyst.inputs, port))
    if "seed" in inputs:
        for port in _SEEDED:
            wf.connect(wf.inputs.seed, getattr(wf, f"cfg_{port}").inputs.seed)
    for port in OUTPUTS:
        wf.create_output_from(getattr(wf.assyst.outputs, port), label=port)
    return wf


def _knob_inputs(formulas: Formulas | None, inputs: Iterable[str] | None,
                 configs: dict[str, object]) -> tuple[str, ...]:
    """The knobs that become workflow inputs, checked against what was given."""
    allowed = [c.name for c in _pipeline.CONFIGS]
    unknown = set(configs) - set(allowed)
    if unknown:
        raise TypeError(f"build_workflow: unknown config(s) {sorted(unknown)}; "
                        f"allowed: {allowed}")
    chosen = tuple(inputs) if inputs is not None else (
        ("formulas",) if formulas is None else ())
    bad = [k for k in chosen if k not in KNOBS]
    if bad:
        raise TypeError(f"build_workflow: inputs {bad} are not knobs; allowed: {list(KNOBS)}")
    if (formulas is None) == ("formulas" not in chosen):
        raise TypeError("build_workflow: give the formulas, or make them an input "
                        "(inputs=[\"formulas\", ...]), not both")
    given = [k for k in chosen if k in configs]
    if given:
        raise TypeError(f"build_workflow: {given} given as config and as input; choose one")
    if "seed" in chosen:
        for name in _SEEDED:
            value = configs.get(name, _pipeline.config_input(name).default)
            if forms.form_of(value) is None:
                raise TypeError(f"build_workflow: the seed input needs a {name} with a form")
    return chosen


def add_config(wf: pwf.Workflow, label: str, config: Config,
               exclude: tuple[str, ...] = ()) -> Any:
    """Add ``config`` to ``wf`` as a node called ``label`` whose inputs are its fields (its
    form, :func:`~pyiron_assyst.workflow.forms.form_of`; nested configs as child nodes
    ``<label>_<field>``), or as a JSON builder node when it has no form; return the output
    port that carries it.

    Parameters
    ----------
    wf
        The workflow to add to.
    label
        Label of the config's node; children are ``<label>_<field>``.
    config
        The config.
    exclude
        Fields left unset on the node (fed by an input of the workflow).
    """
    form = forms.form_of(config)
    if form is None:
        setattr(wf, label, pwf.node(_json_builder(config), text=config.to_json()))
        return getattr(wf, label).outputs.config
    constants, children = {}, {}
    for field, value in forms.fields_of(config).items():
        if field in exclude:
            continue
        if isinstance(value, Config):
            children[field] = value
        else:
            constants[field] = value
    setattr(wf, label, pwf.node(form, **constants))
    node = getattr(wf, label)
    for field, value in children.items():
        wf.connect(add_config(wf, f"{label}_{field}", value), getattr(node.inputs, field))
    return node.outputs.config


def set_config(wf: pwf.Workflow, name: str, config: Config) -> None:
    """Replace config ``name`` (``"formulas"`` or a name of
    :data:`~pyiron_assyst.workflow.pipeline.CONFIGS`) of a workflow of :func:`build_workflow`
    by ``config``: its nodes (``cfg_<name>`` and children) go, new ones are connected in
    their place; a ``seed`` input of the workflow stays connected to the new node. Raises
    ``KeyError`` for a name that is not a config, or that is an input of the workflow.

    Parameters
    ----------
    wf
        A workflow of :func:`build_workflow`.
    name
        Which config.
    config
        Its new value.

    >>> set_config(wf, "full_relax", FullRelax(max_steps=5))  # doctest: +SKIP
    """
    if name != "formulas":
        _pipeline.config_input(name)  # KeyError naming the allowed ones
    if name in wf.inputs:
        raise KeyError(f"{name!r} is an input of {wf.label!r}, not a config node; "
                       f"give it to run()")
    label = f"cfg_{name}"
    old = [n for n in wf.nodes if n == label or n.startswith(label + "_")]
    seed_fed = [e for e in wf.edges if getattr(e.target, "node", None) == label
                and e.target.port == "seed" and not e.source.node]
    if old:
        wf.remove_node(*old)
    else:  # the reference, fed by the calculator input
        wf.remove_edge(*[e for e in wf.edges if getattr(e.target, "node", None) == "assyst"
                         and e.target.port == name])
    source = add_config(wf, label, config, ("seed",) if seed_fed else ())
    wf.connect(source, getattr(wf.assyst.inputs, name))
    if seed_fed:
        wf.connect(wf.inputs.seed, getattr(wf, label).inputs.seed)


def _json_builder(config: Config) -> object:
    """The typed JSON builder node for a config without a form."""
    if isinstance(config, Formulas):
        return nodes.formulas_from_json
    for entry in _pipeline.CONFIGS:
        if isinstance(config, entry.kind):
            return getattr(nodes, entry.builder)
    for kind, builder in ((Filter, nodes.filter_from_json),
                          (CalculatorConfig, nodes.calculator_from_json)):
        if isinstance(config, kind):
            return builder
    return nodes.config_from_json
