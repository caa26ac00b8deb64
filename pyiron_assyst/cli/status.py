"""``pyiron-assyst status``: progress and failures of every run of a project.

Each run is named with its formulas, calculator and date. A finished run shows each stage's
counts and drops per reason from its reports, and its failures by cause with one example
message each. A run that is
still going, or was killed, has no stages yet: its progress comes from the result cache (the
batches its relaxations and labels started after the run did, with finished and failed counts).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from pyiron_assyst.cli._failures import failure_lines
from pyiron_assyst.cli._pipeline import CACHE_DIRECTORY, is_complete
from pyiron_assyst.cli._runs import describe_run
from pyiron_assyst.cli._text import description
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.storage import Project

__all__ = ["add_status_command", "run_status", "status_command"]


def add_status_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``status`` to the sub-commands."""
    status = subparsers.add_parser("status", help="progress and failures of a project's runs",
                                   description=description(__doc__))
    status.add_argument("project", nargs="?", default="assyst-output",
                        help="project directory (default assyst-output)")
    status.add_argument("--run", help="only this run")
    status.set_defaults(handler=status_command)
    return status


def _complete_lines(project: Project, run: str) -> list[str]:
    lines = []
    failed = 0
    for report in project.load_reports(run).values():
        lines.append("  " + report.summary())
        lines.extend("  " + line for line in failure_lines(report))
        failed += len(report.failures)
    if failed:
        lines.append(f"  {failed} failed structures (pyiron-assyst retry-failed "
                     f"{project.path} --run {run} computes them again)")
    return lines


def _progress_steps(configs: dict) -> list[tuple[str, str]]:
    """``(cache namespace, batch name)`` of every cached step of the pipeline, in order."""
    from pyiron_assyst.workflow.pipeline import STEPS

    out = []
    for step in STEPS:
        if not step.progress or not all(c in configs for c in step.configs):
            continue  # not cached, or not a step of this run (e.g. relaxations of a relabel)
        relaxation = next((configs[c] for c in step.configs if c.endswith("_relax")
                           and c in configs), None)
        if step.progress.startswith("relax") and relaxation is not None:
            out.append((relaxation.step, relaxation.step))  # a custom relaxation's own step
        else:
            out.append((step.progress, step.progress))
    return out


def _incomplete_lines(project: Project, run: str) -> list[str]:
    created = project.run_info(run)["created"]
    configs = project.load_configs(run)
    cache = ResultCache(project.path / CACHE_DIRECTORY)
    lines = []
    for name, desc in _progress_steps(configs):
        namespace = cache.namespace(name)
        batches = [m for m in namespace.manifests() if m.created >= created and m.desc == desc]
        if not batches:
            lines.append(f"  {name}: not started")
            continue
        batch = batches[-1]
        reasons = Counter(e.reason for e in namespace.failures(batch.keys).values())
        detail = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
        text = f"  {name}: {batch.done + batch.failed} of {batch.total} finished"
        text += f", {batch.failed} failed ({detail})" if batch.failed else ""
        lines.append(text)
    return lines


def run_status(project: Project, run: str) -> list[str]:
    """Lines describing one run (complete: from its reports; else: from the cache)."""
    about = describe_run(project, run)
    if is_complete(project, run):
        return [f"run {run}: complete; {about}", *_complete_lines(project, run)]
    return [f"run {run}: incomplete (running or killed); {about}; progress from the cache:",
            *_incomplete_lines(project, run)]


def status_command(args: argparse.Namespace) -> int:
    """Handler of ``status``."""
    project = Project(Path(args.project), create=False)
    runs = [args.run] if args.run else sorted(
        project.runs(), key=lambda r: project.run_info(r)["created"])
    lines = [f"project {project.path}: {len(project.runs())} runs"]
    for run in runs:
        lines += run_status(project, run)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
