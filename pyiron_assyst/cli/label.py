"""``pyiron-assyst label``: label a stored run's training set with another reference calculator.

::

    pyiron-assyst label PROJECT --reference morse
    pyiron-assyst label PROJECT --settings dft.toml --run run-0123456789 --name dft

The production pattern is "relax with something cheap, label with accurate DFT": ``run`` with
a cheap calculator, then ``label`` with the DFT calculator config (a ``[label]`` table of a
settings file, or ``--reference`` for the built-in ones). The source run's stage (default its
``training_set``, already curated, so no DFT is spent on structures the cheap labels removed)
goes through :func:`~pyiron_assyst.workflow.macro.label_and_curate` — the same end of the
pipeline that ``run`` executes: single points with the project's content cache (a killed
``label`` started again computes only what had not finished), the executors of the settings
(SLURM included) and the fault handling of the label stage; isolated-atom energies with the
new reference; curation with the source run's (or the settings') curation config.

The result is a new run of the same project (default name ``<source>.label-<hash>``) with
stages ``isolated_atoms`` and ``training_set`` and the config ``source`` (a
:class:`LabelSource`: ``retry-failed`` of the new run labels that stage again); each structure
is a child of the structure it relabels, so ``show --lineage`` walks back through the source
run to its sampled crystal. ``status`` follows its progress while it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyiron_assyst.cli import _outputs
from pyiron_assyst.cli._pipeline import CACHE_DIRECTORY, is_complete, latest_run, save_outputs
from pyiron_assyst.cli._text import description
from pyiron_assyst.cli.run import add_executor_flags, apply_executor_flags, calculator_by_flag
from pyiron_assyst.cli.trust import add_trust_flag, require_trust
from pyiron_assyst.core.config import Config, ConfigError, require
from pyiron_assyst.storage import Project, StorageError

__all__ = ["LABEL_TABLES", "LabelSource", "add_label_command", "label_command", "relabel"]


@dataclass(frozen=True)
class LabelSource(Config):
    """Where a relabelled run's structures come from (stored as its config ``source``).

    Parameters
    ----------
    run
        The source run of the same project.
    stage
        Its stage that was labelled.
    """

    run: str
    stage: str = "training_set"

    def __post_init__(self) -> None:
        for name in ("run", "stage"):
            value = getattr(self, name)
            require(isinstance(value, str) and bool(value), "LabelSource", name,
                    "a non-empty string", value)

LABEL_TABLES = ("reference", "curation", "executor")
"""Config inputs a settings file may give to ``label`` (tables ``label``, ``curation``,
``executor``)."""


def add_label_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``label`` to the sub-commands."""
    label = subparsers.add_parser(
        "label", help="label a stored run with another reference into a new run",
        description=description(__doc__.splitlines()[0]))
    label.add_argument("project", nargs="?", default="assyst-output",
                       help="project directory (default assyst-output)")
    label.add_argument("--run", help="the source run (default: the latest complete one)")
    label.add_argument("--stage", default="training_set",
                       help="the source run's stage to label (default training_set)")
    label.add_argument("--reference", choices=("emt", "morse", "lj"),
                       help="reference calculator (else the settings' [label] table)")
    label.add_argument("--settings", help="TOML file with [label], [curation], [executor]")
    label.add_argument("--name", help="name of the new run (default <source>.label-<hash>)")
    label.add_argument("--overwrite", action="store_true",
                       help="replace a finished run of the same --name")
    label.add_argument("--retry-failed", action="store_true",
                       help="compute again structures whose cached result is a failure")
    add_executor_flags(label)
    add_trust_flag(label)
    label.set_defaults(handler=label_command)
    return label


def _configs(args: argparse.Namespace, source: dict[str, Config]) -> dict[str, Config]:
    """Reference, curation and executor: flags over settings over the source run's."""
    from pyiron_assyst.cli import settings
    from pyiron_assyst.workflow.pipeline import defaults

    given: dict[str, Config] = {}
    if args.settings:
        _, given, _ = settings.load_settings(args.settings)
        other = sorted(set(given) - set(LABEL_TABLES))
        if other:
            raise ConfigError(f"label: settings file {args.settings!r} has table(s) {other}; "
                              "label takes only [label], [curation] and [executor]")
    if args.reference:
        given["reference"] = calculator_by_flag(args.reference)
    if "reference" not in given:
        raise ConfigError("label: give the reference calculator with --reference or a "
                          "[label] table in --settings")
    fallback = defaults()
    configs = {name: given.get(name, source.get(name, fallback[name]))
               for name in ("curation", "executor")}
    configs["executor"] = apply_executor_flags(configs["executor"], args)
    return {"reference": given["reference"], **configs}


def _formulas(source: dict[str, Config], structures: list[Any]) -> Config:
    from pyiron_assyst.stages.sample import Formulas

    if "formulas" in source:
        return source["formulas"]
    elements = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    return Formulas(tuple({e: 1} for e in elements))


def _name(source: str, stage: str, configs: dict[str, Config]) -> str:
    text = "\n".join([source, stage, configs["reference"].to_json(),
                      configs["curation"].to_json()])
    return f"{source}.label-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def relabel(project: Project, source: str, stage: str, name: str, configs: dict[str, Config],
            retry_failed: bool = False, figures: bool = True) -> tuple[dict[str, Any], str]:
    """Label ``stage`` of run ``source`` with ``configs["reference"]`` into run ``name``.

    Runs :func:`~pyiron_assyst.workflow.macro.label_and_curate` with the project's cache and
    saves the run twice (incomplete when it starts, for ``status``; complete with stages
    ``isolated_atoms`` and ``training_set`` and the reports when it ends). Returns the
    outputs and the summary text; raises the workflow's exception after the incomplete run
    was saved.
    """
    import pyiron_workflow as pwf

    from pyiron_assyst.cli._pipeline import _project_executor, run_here
    from pyiron_assyst.workflow.macro import label_and_curate

    structures = project.load_stage(source, stage)
    formulas = _formulas(project.load_configs(source), structures)
    configs = _project_executor(project, configs)
    stored = {"formulas": formulas, **configs, "source": LabelSource(source, stage)}
    recipe = label_and_curate.flowrep_recipe.model_dump_json()
    if not (name in project.runs() and is_complete(project, name)):  # keep a finished run
        project.save_run(name, recipe_json=recipe, configs=stored, overwrite=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        result = run_here(
            pwf.node(label_and_curate), structures=structures, formulas=formulas, **configs,
            cache_directory=str(project.path / CACHE_DIRECTORY), retry_failed=retry_failed)
    if result.exception is not None:
        raise result.exception
    outputs = dict(result.outputs)
    text = _outputs.publish(project, name, outputs, figures)  # complete only after them
    save_outputs(project, name, outputs, recipe, stored, time.perf_counter() - start)
    return outputs, f"labelled {len(structures)} structures of {source}/{stage}\n" + text


def _source(project: Project, run: str | None) -> str:
    """``run`` if given, else the newest complete run (an incomplete one is this command's
    own killed run, or still running)."""
    if run is not None:
        return latest_run(project, run)
    complete = [r for r in project.runs() if is_complete(project, r)]
    if not complete:
        raise StorageError("the project holds no complete run to label", project.path)
    return max(complete, key=lambda r: project.run_info(r)["created"])


def _preflight(reference: Config, project: Project, source: str, stage: str,
               stored: dict[str, Config]) -> None:
    """Refuse, before any work, a reference that cannot compute the source run's elements
    (those of its formulas, else of the stage's structures)."""
    structures = [] if "formulas" in stored else project.load_stage(source, stage)
    try:
        reference.check_elements(_formulas(stored, structures).elements)
    except ConfigError as error:
        raise ConfigError(f"[label] {error}") from None


def label_command(args: argparse.Namespace) -> int:
    """Handler of ``label``."""
    project = Project(Path(args.project), create=False)
    source = _source(project, args.run)
    if args.stage not in project.stages(source):
        raise StorageError(f"run {source!r} has no stage {args.stage!r} (stages: "
                           f"{project.stages(source)})", project.path)
    stored = project.load_configs(source)
    configs = _configs(args, stored)
    _preflight(configs["reference"], project, source, args.stage, stored)
    taken = {k: configs[k] for k in ("curation", "executor") if configs[k] == stored.get(k)}
    require_trust(taken, args.trust_project, f"label of run {source!r}")  # the project's own
    name = args.name or _name(source, args.stage, configs)
    if name == source:
        raise StorageError(f"the new run needs another name than its source {source!r}",
                           project.path)
    if name in project.runs() and is_complete(project, name) and not args.overwrite:
        raise StorageError(f"run {name!r} exists (pass --overwrite to replace it)", project.path)
    _, text = relabel(project, source, args.stage, name, configs, args.retry_failed,
                      not args.no_figures)
    sys.stdout.write(text + f"saved as run {name!r} in {project.path}/\n")
    return 0
