"""Running the canonical pipeline into a project: shared by ``run``, ``retry-failed`` and
``label``.

The workflow that runs is :func:`~pyiron_assyst.workflow.macro.build_workflow`'s, and its
recipe is the one stored with the run. Which outputs become stages, in which order, comes from
:mod:`pyiron_assyst.workflow.pipeline`. A run is saved twice under the project's write lock:
when it starts (recipe and configs, no stages: the run is *incomplete*, and ``status`` follows
its progress in the cache) and when it ends (every stage's structures, the reports and the
timings), after its outputs were written (each atomically), so a run counts as complete
only when its outputs are. Running again into a finished run keeps that run (and its stages
readable) until the new one is complete: the start record is not written over a complete
run. The relaxations and single points are cached by content in ``<project>/cache``, so a
run that was killed and started again, a retry of its failures, or an extended run (more
formulas, more perturbations) computes only what is new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

from pyiron_assyst.cli import _outputs
from pyiron_assyst.cli._failures import wholly_failed
from pyiron_assyst.core.config import Config
from pyiron_assyst.storage import Project, StorageError

__all__ = ["CACHE_DIRECTORY", "content_name", "execute", "is_complete", "latest_run",
           "macro_configs", "run_here", "save_outputs"]

CACHE_DIRECTORY = "cache"
"""Sub-directory of a project holding the result cache."""
_NO_INPUTS = "has no input ports"


def formulas_from_flags(args: Any, formulas: Config | None,
                        configs: dict[str, Config]) -> Config:
    """The formulas of ``--elements``/``--min-atoms``/``--max-atoms`` (defaults Cu, 1, 3) if any
    is given or the settings have none, else ``formulas``; the sample config in ``configs`` is
    widened to the new formulas' largest cell (in place).

    Raises
    ------
    ConfigError
        If the flags leave no formula.
    """
    from pyiron_assyst.cli import settings
    from pyiron_assyst.core.config import ConfigError
    from pyiron_assyst.stages import sample as crystals

    flags = (args.elements, args.max_atoms, args.min_atoms)
    if formulas is not None and all(flag is None for flag in flags):
        return formulas
    for flag, value in (("--max-atoms", args.max_atoms), ("--min-atoms", args.min_atoms)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be an integer >= 1; got {value}")
    formulas = settings.formulas_from_table({
        "elements": args.elements or ["Cu"],
        "max_atoms": 3 if args.max_atoms is None else args.max_atoms,
        "min_atoms": 1 if args.min_atoms is None else args.min_atoms,
    })
    if not len(formulas):
        raise ConfigError("no formulas: --min-atoms/--max-atoms leave none")
    sample = configs.get("sample_config", crystals.SampleConfig())
    configs["sample_config"] = dataclasses.replace(
        sample, min_atoms=1, max_atoms=max(sum(f.values()) for f in formulas))
    return formulas


def macro_configs(configs: dict[str, Config]) -> dict[str, Config]:
    """Every config input of the pipeline: those given, the defaults for the rest; a
    ``reference`` of ``None`` is the ``calculator`` (so the stored configs name it)."""
    from pyiron_assyst.workflow.pipeline import CONFIGS

    unknown = set(configs) - {c.name for c in CONFIGS}
    if unknown:
        raise TypeError(f"unknown macro inputs {sorted(unknown)}")
    out = {c.name: configs.get(c.name, c.default) for c in CONFIGS}
    if out["reference"] is None:
        out["reference"] = out["calculator"]
    return out


def content_name(formulas: Config, configs: dict[str, Config]) -> str:
    """``run-<10 hex>`` from the formulas and every config except the executor: the same
    science gives the same name, wherever and however it runs.

    A ``select_config`` that keeps every structure (selection off, the default) is left out,
    so that a run without selection keeps the name it had before the select stage existed
    (and any off config, whatever its method or seed, names the same science).
    """
    texts = [formulas.to_json()] + [c.to_json() for k, c in sorted(configs.items())
                                    if _names_science(k, c)]
    return "run-" + hashlib.sha256("\n".join(texts).encode()).hexdigest()[:10]


def _names_science(key: str, config: Config) -> bool:
    """Whether config input ``key`` enters a run's content name."""
    if key == "executor":
        return False
    return not (key == "select_config" and getattr(config, "keeps_all", False))


def is_complete(project: Project, run: str) -> bool:
    """Whether ``run`` holds its stages (an incomplete run is running or was killed)."""
    return bool(project.run_info(run)["stages"])


def latest_run(project: Project, run: str | None = None) -> str:
    """``run`` if given (checked), else the most recently created run of the project."""
    runs = project.runs()
    if run is not None:
        if run not in runs:
            raise StorageError(f"no run {run!r} in this project (runs: {runs})", project.path)
        return run
    if not runs:
        raise StorageError("the project holds no runs yet", project.path)
    return max(runs, key=lambda r: project.run_info(r)["created"])


def _project_executor(project: Project, configs: dict[str, Config]) -> dict[str, Config]:
    executor = configs["executor"]
    if executor.kind == "slurm_cluster" and executor.cache_directory is None:
        folder = str(project.path / "executorlib_cache")
        configs = {**configs, "executor": dataclasses.replace(executor, cache_directory=folder)}
    return configs


def run_here(node: Any, **inputs: Any) -> Any:
    """``node.run(**inputs)`` with every node evaluated in this (the main) thread.

    pyiron_workflow runs the nodes of a graph in a thread pool by default. Ctrl-C then
    interrupts only the main thread, whose wait for the pool lets the running stage finish all
    its work (minutes to hours with DFT) before the command can stop. In the main thread the
    stage that dispatches the work is interrupted at once and shuts its workers down. The
    pipeline's parallelism is in the stages' own worker pools, so nothing is lost.
    """
    import pyiron_workflow as pwf

    return node.run(pwf.RunConfig(dag_multithreaded=False), **inputs)


def execute(project: Project, name: str, formulas: Config, configs: dict[str, Config],
            retry_failed: bool = False, figures: bool = True) -> tuple[dict[str, Any], str]:
    """Run the pipeline's workflow with the project's cache, save the run with the workflow's
    recipe, write the outputs (``figures``: with the figures).

    Returns the macro outputs and the summary text. Raises the macro's exception, if any,
    after the incomplete run was saved.
    """
    import warnings

    from pyiron_assyst.workflow.macro import build_workflow

    configs = _project_executor(project, macro_configs(configs))
    workflow = build_workflow(formulas, cache_directory=str(project.path / CACHE_DIRECTORY),
                              retry_failed=retry_failed, **configs)
    recipe = workflow.recipe.model_dump_json()
    stored = {"formulas": formulas, **configs}
    if not (name in project.runs() and is_complete(project, name)):  # keep a finished run
        project.save_run(name, recipe_json=recipe, configs=stored, overwrite=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{_NO_INPUTS}")  # its inputs are nodes
        result = run_here(workflow)
    if result.exception is not None:
        raise result.exception
    outputs = dict(result.outputs)
    text = _outputs.publish(project, name, outputs, figures)  # complete only after them
    save_outputs(project, name, outputs, recipe, stored, time.perf_counter() - start)
    failed = wholly_failed(_reports(outputs))
    if failed:
        raise StageFailed(f"{failed}; the run {name!r} is saved: fix the cause, then "
                          "'pyiron-assyst retry-failed' computes the failed structures again")
    return outputs, text


class StageFailed(RuntimeError):
    """Every structure of a stage failed: the run is saved, and the command exits non-zero."""


def _reports(outputs: dict[str, Any]) -> list[Any]:
    from pyiron_assyst.workflow.pipeline import STEPS

    return [outputs[s.report] for s in STEPS if s.report in outputs]


def save_outputs(project: Project, name: str, outputs: dict[str, Any], recipe: str | None,
                 configs: dict[str, Config], seconds: float) -> None:
    """Save a finished run: the stored stages of :mod:`~pyiron_assyst.workflow.pipeline` that
    ``outputs`` holds, in pipeline order, and every report."""
    from pyiron_assyst.workflow.pipeline import stored_stages

    reports = {port: outputs[port] for port in outputs if port.endswith("_report")}
    project.save_run(name, recipe_json=recipe, configs=configs, overwrite=True,
                     stages={s: outputs[s] for s in stored_stages() if s in outputs},
                     reports=reports, timings={"pipeline": seconds})
