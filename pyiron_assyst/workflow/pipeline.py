"""The one definition of the canonical pipeline's shape: its config inputs and its steps.

Everything that needs to know what the pipeline looks like reads this module: the macro
:func:`~pyiron_assyst.workflow.macro.assyst` (its parameters, their defaults and its output
ports), :func:`~pyiron_assyst.workflow.macro.build_workflow` (one node per config, its inputs
the config's fields),
the TOML settings (one table per config), the command line (which outputs are stored as stages
of a run, which stages report progress in the cache), :func:`~pyiron_assyst.workflow.plan.plan`
(the defaults), the summary and the figures (stage order).

::

    formulas ─► sample ─► sample_filter ─► volume_relax ─► full_relax ─► perturb
                   sampled ──┴─ volume_relaxed ─┴── relaxed ──┴── perturbed ─┴─► final_filter
    relaxed ─► short_range ─┐  (isolated atoms, dimers, trimers, compressed crystals)
    final_filter ─► select ─► label ─► curate ─► training_set   (select: off by default)
    formulas ─► isolated_atoms ─────────┘ (reference energies)

The macro's body is the one place where these steps are wired as calls (pyiron_workflow reads
the body as source, so it cannot be generated from a table); :func:`check_recipe` compares its
recipe with :data:`STEPS` and :data:`CONFIGS` edge by edge, and
:mod:`~pyiron_assyst.workflow.macro` runs that check when it is imported, so the two cannot
drift apart. The last three steps form the sub-macro
:func:`~pyiron_assyst.workflow.macro.label_and_curate`, which ``pyiron-assyst label`` runs on
its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyiron_assyst import calculators
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import CurationConfig
from pyiron_assyst.stages.filters import AspectFilter, DistanceFilter, Filter, VolumeFilter
from pyiron_assyst.stages.perturbations import PerturbConfig
from pyiron_assyst.stages.relax import FullRelax, Relaxation, VolumeRelax
from pyiron_assyst.stages.sample import SampleConfig
from pyiron_assyst.stages.select import SelectConfig
from pyiron_assyst.stages.short_range import ShortRangeConfig

__all__ = [
    "CONFIGS",
    "DEFAULT_CURATION",
    "DEFAULT_FINAL_FILTER",
    "DEFAULT_PERTURB",
    "DEFAULT_SAMPLE_FILTER",
    "DEFAULT_SELECT",
    "OUTPUTS",
    "RUN_INPUTS",
    "STEPS",
    "ConfigInput",
    "Step",
    "check_recipe",
    "config_input",
    "defaults",
    "figure_stages",
    "stored_stages",
]

DEFAULT_PERTURB = PerturbConfig(filter=DistanceFilter(1.0), retries=10, seed=0)
"""The published four rattles and four stretches per minimum (see
:class:`~pyiron_assyst.stages.perturbations.PerturbConfig`), kept when no pair is closer than 2
Å."""
DEFAULT_SAMPLE_FILTER = AspectFilter(6.0)
"""Drop sampled cells whose longest lattice vector exceeds six times the shortest."""
DEFAULT_FINAL_FILTER = DistanceFilter(1.0) & VolumeFilter(maximum=300.0)
"""Drop structures with a pair closer than 2 Å or more than 300 Å³/atom."""
DEFAULT_CURATION = CurationConfig(energy_cap=10.0, force_cap=50.0, distance=None,
                                  deduplicate=True, duplicate_tolerance=0.01)
"""Curation of the labelled set (reasons in ``docs/defaults.md``): drop structures more than
10 eV/atom above the lowest of their composition or with an atomic force above 50 eV/Å, and
duplicates within 0.01 Å; no second distance check (the final filter made it)."""
DEFAULT_SELECT = SelectConfig(fraction=1.0)
"""Selection off: the whole filtered set is labelled (``fraction=1`` keeps every structure,
:attr:`~pyiron_assyst.stages.select.SelectConfig.keeps_all`). A value of the same type, so
that it has a form whose fields are edited to switch selection on (e.g. ``fraction=0.4``)."""


@dataclass(frozen=True)
class ConfigInput:
    """One config input of the pipeline.

    Parameters
    ----------
    name
        Parameter of the macro (and key of the run's stored configs).
    table
        Table of the TOML settings file that holds it.
    kind
        The config class (or base class) a value must be.
    default
        The macro's default (``None``: ``reference`` means "the relaxation calculator").
    builder
        Name of the typed JSON builder node in :mod:`pyiron_assyst.workflow.nodes`, which
        :func:`~pyiron_assyst.workflow.macro.build_workflow` uses for a value without a form
        (:mod:`~pyiron_assyst.workflow.forms`).
    """

    name: str
    table: str
    kind: type
    default: Any
    builder: str


CONFIGS: tuple[ConfigInput, ...] = (
    ConfigInput("sample_config", "sample_config", SampleConfig, SampleConfig(),
                "sample_config_from_json"),
    ConfigInput("sample_filter", "sample_filter", Filter, DEFAULT_SAMPLE_FILTER,
                "filter_from_json"),
    ConfigInput("volume_relax", "volume_relax", Relaxation, VolumeRelax(),
                "relaxation_from_json"),
    ConfigInput("full_relax", "full_relax", Relaxation, FullRelax(), "relaxation_from_json"),
    ConfigInput("perturb_config", "perturb_config", PerturbConfig, DEFAULT_PERTURB,
                "perturb_config_from_json"),
    ConfigInput("final_filter", "final_filter", Filter, DEFAULT_FINAL_FILTER,
                "filter_from_json"),
    ConfigInput("select_config", "select", SelectConfig, DEFAULT_SELECT,
                "select_config_from_json"),
    ConfigInput("short_range_config", "short_range", ShortRangeConfig, ShortRangeConfig(),
                "short_range_config_from_json"),
    ConfigInput("calculator", "calculator", calculators.CalculatorConfig, calculators.EMT(),
                "calculator_from_json"),
    ConfigInput("reference", "label", calculators.CalculatorConfig, None,
                "calculator_from_json"),
    ConfigInput("curation", "curation", CurationConfig, DEFAULT_CURATION,
                "curation_config_from_json"),
    ConfigInput("executor", "executor", Executor, Executor(), "executor_from_json"),
)
"""The config inputs of the pipeline, in the macro's parameter order (after ``formulas``)."""

RUN_INPUTS = ("formulas", "cache_directory", "retry_failed")
"""Inputs of the macro that are not configs: what to sample, where to cache, whether to retry
cached failures."""


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: a node call and the ports it reads and writes.

    Parameters
    ----------
    name
        Name of the step.
    node
        The node function of :mod:`pyiron_assyst.workflow.nodes` it calls.
    structures
        Output port of its structures (``""``: not a macro output).
    report
        Output port of its :class:`~pyiron_assyst.core.report.StageReport`.
    reads
        Structure ports (or ``formulas``) it reads; several: their union, in this order.
    configs
        Config inputs (names in :data:`CONFIGS`) it reads; ``reference`` resolved to the
        relaxation ``calculator`` when ``None``.
    stored
        Whether a run saves its structures as a stage (:func:`stored_stages`, in step order
        with the training set last). Its report is saved either way.
    progress
        Cache namespace whose batches show the step's progress while a run goes on (``""``:
        not cached).
    figure
        Whether its stored structures are a curve of the per-stage figures.
    """

    name: str
    node: str
    structures: str
    report: str
    reads: tuple[str, ...]
    configs: tuple[str, ...]
    stored: bool = False
    progress: str = ""
    figure: bool = True


STEPS: tuple[Step, ...] = (
    Step("sample", "sample", "", "sample_report", ("formulas",), ("sample_config", "executor")),
    Step("sample_filter", "apply_filter", "sampled", "sample_filter_report", ("",),
         ("sample_filter",), stored=True),
    Step("volume_relax", "relax", "volume_relaxed", "volume_report", ("sampled",),
         ("volume_relax", "calculator", "executor"), stored=True, progress="relax:volume"),
    Step("full_relax", "relax", "relaxed", "relax_report", ("volume_relaxed",),
         ("full_relax", "calculator", "executor"), stored=True, progress="relax:full"),
    Step("perturb", "perturb", "perturbed", "perturb_report", ("relaxed",),
         ("perturb_config",), stored=True),
    Step("final_filter", "apply_filter", "filtered", "filter_report",
         ("sampled", "volume_relaxed", "relaxed", "perturbed"), ("final_filter",)),
    Step("short_range", "short_range", "short_range", "short_range_report", ("relaxed",),
         ("short_range_config",), stored=True, figure=False),
    Step("select", "select", "selected", "select_report", ("filtered",),
         ("select_config", "reference"), figure=False),
    Step("label", "label", "labelled", "label_report", ("selected", "short_range"),
         ("reference", "executor"), progress="label"),
    Step("isolated_atoms", "isolated_atoms", "isolated_atoms", "reference_report",
         ("formulas",), ("reference", "executor"), stored=True, figure=False),
    Step("curate", "curate", "training_set", "curate_report", ("labelled", "isolated_atoms"),
         ("curation",), stored=True),
)
"""The steps in pipeline order. The sample step's structures feed the sample filter only
(reads ``""``). The selected set is not stored (the labelled set is, within the training set;
the numbering of stored stage files stays that of runs from before the select step); its
``not_selected`` drops are in its report."""

OUTPUTS: tuple[str, ...] = (
    "training_set",
    *(s.structures for s in STEPS if s.structures and s.structures != "training_set"),
    *(s.report for s in STEPS),
    "reference_energies",
)
"""Output ports of the macro, in order: the training set, every step's structures, every
step's report, the isolated-atom energies (eV per element)."""


def config_input(name: str) -> ConfigInput:
    """The config input called ``name`` (``KeyError`` naming the allowed ones)."""
    for entry in CONFIGS:
        if entry.name == name:
            return entry
    raise KeyError(f"no config input {name!r}; allowed: {[c.name for c in CONFIGS]}")


def defaults() -> dict[str, Any]:
    """The default of every config input by name."""
    return {c.name: c.default for c in CONFIGS}


def stored_stages() -> tuple[str, ...]:
    """Structure outputs a run saves as stages, in pipeline order; the training set last."""
    names = [s.structures for s in STEPS if s.stored]
    names.remove("training_set")
    return (*names, "training_set")


def figure_stages() -> tuple[str, ...]:
    """Stored stages drawn as curves of the per-stage figures, in pipeline order."""
    drawn = {s.structures for s in STEPS if s.figure}
    return tuple(s for s in stored_stages() if s in drawn)


def _producers(recipe: dict[str, Any]) -> dict[str, str]:
    """Output port -> ``node.port`` that produces it."""
    return dict(recipe["output_edges"])


def _flatten(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe with every nested workflow node replaced by its own nodes (renamed
    ``<inner>__in_<outer>``) and the edges through it joined up."""
    nodes = dict(recipe["nodes"])
    input_edges = dict(recipe["input_edges"])
    edges = dict(recipe["edges"])
    output_edges = dict(recipe["output_edges"])
    for outer, sub in recipe["nodes"].items():
        if sub.get("type") != "workflow":
            continue
        sub = _flatten(sub)
        del nodes[outer]

        def renamed(port: str, outer: str = outer) -> str:
            node, _, name = port.partition(".")
            return f"{node}__in_{outer}.{name}"

        for name, node in sub["nodes"].items():
            nodes[f"{name}__in_{outer}"] = node
        for target, source in sub["input_edges"].items():
            key = f"{outer}.{source}"
            if key in input_edges:
                input_edges[renamed(target)] = input_edges[key]
            elif key in edges:
                edges[renamed(target)] = edges[key]
        for target, source in sub["edges"].items():
            edges[renamed(target)] = renamed(source)
        produced = {f"{outer}.{port}": renamed(source)
                    for port, source in sub["output_edges"].items()}
        edges = {k: produced.get(v, v) for k, v in edges.items()
                 if not k.startswith(outer + ".")}
        input_edges = {k: v for k, v in input_edges.items() if not k.startswith(outer + ".")}
        output_edges = {k: produced.get(v, v) for k, v in output_edges.items()}
    return {**recipe, "nodes": nodes, "input_edges": input_edges, "edges": edges,
            "output_edges": output_edges}


def check_recipe(recipe: dict[str, Any]) -> list[str]:
    """Differences between a macro recipe (``json.loads(recipe.model_dump_json())``) and
    :data:`STEPS` / :data:`CONFIGS`; an empty list when they agree.

    Checked: the macro's inputs and outputs; for every step, that the node producing its
    report is a call of ``node``, that each of its ``configs`` (``reference`` through the
    node that resolves it) and nothing else among the config inputs reaches that node, and
    that the structures it reads come from the declared ports (a union through one
    concatenation node). Nested workflows (the label-and-curate macro) are looked into.
    """
    problems = []
    recipe = _flatten(recipe)
    inputs = ["formulas", *(c.name for c in CONFIGS), *RUN_INPUTS[1:]]
    if recipe["inputs"] != inputs:
        problems.append(f"macro inputs {recipe['inputs']} != {inputs}")
    if tuple(recipe["outputs"]) != OUTPUTS:
        problems.append(f"macro outputs {recipe['outputs']} != {list(OUTPUTS)}")
    produced = _producers(recipe)
    port_of = {v: k for k, v in produced.items()}  # node.port -> macro output
    edges = dict(recipe["edges"])
    config_edges: dict[str, set[str]] = {}
    for target, source in recipe["input_edges"].items():
        config_edges.setdefault(target.split(".")[0], set()).add(source)
    for step in STEPS:
        node = produced.get(step.report, ".").split(".")[0]
        if not node.startswith(step.node + "_"):
            problems.append(f"{step.name}: report {step.report!r} comes from {node!r}, "
                            f"not a {step.node!r} node")
            continue
        reached = set(config_edges.get(node, set())) & {c.name for c in CONFIGS}
        via = {edges[k].split(".")[0] for k in edges if k.startswith(node + ".")}
        for helper in via:
            if helper.startswith("reference_calculator_"):
                reached |= config_edges.get(helper, set()) & {"reference"}
        if reached != set(step.configs):
            problems.append(f"{step.name}: configs {sorted(reached)} != {sorted(step.configs)}")
        problems += _check_reads(step, node, edges, config_edges, port_of)
    return problems


def _check_reads(step: Step, node: str, edges: dict[str, str],
                 config_edges: dict[str, set[str]], port_of: dict[str, str]) -> list[str]:
    """Compare the structure ports feeding ``node`` (through a concatenation or the
    ``energies_of`` conversion) with ``step.reads``."""
    if step.reads == ("",):
        return []
    if step.reads == ("formulas",):
        ok = "formulas" in config_edges.get(node, set())
        return [] if ok else [f"{step.name}: does not read the formulas"]
    found: list[str] = []
    for key, source in edges.items():
        if not key.startswith(node + ".") or source.startswith(
                ("constant_", "reference_calculator_")):
            continue
        through = source.split(".")[0]
        if through.startswith(("concatenate_", "energies_of_", "add_short_range_")):
            found += [port_of.get(v, v) for k, v in edges.items()
                      if k.startswith(through + ".")]
        else:
            found.append(port_of.get(source, source))
    if found != list(step.reads):
        return [f"{step.name}: reads {found} != {list(step.reads)}"]
    return []
