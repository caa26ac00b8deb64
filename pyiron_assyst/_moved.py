"""Old module names of this package, kept importable with a warning (see docs/layout.md).

Until 0.2 the package was flat (``pyiron_assyst.crystals``, ``pyiron_assyst.relaxations``, ...).
Importing an old name now gives the module at its new place, the same object, with a
:class:`FutureWarning` naming the new import; so do pickles and pyiron_workflow recipes that
recorded an old path. Nothing inside the package imports an old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    "pyiron_assyst.config": "pyiron_assyst.core.config",
    "pyiron_assyst.lineage": "pyiron_assyst.core.lineage",
    "pyiron_assyst.info_keys": "pyiron_assyst.core.info_keys",
    "pyiron_assyst.report": "pyiron_assyst.core.report",
    "pyiron_assyst.distances": "pyiron_assyst.numerics.distances",
    "pyiron_assyst.optimizers": "pyiron_assyst.numerics.optimizers",
    "pyiron_assyst.cell_filters": "pyiron_assyst.numerics.cell",
    "pyiron_assyst.structure_settings": "pyiron_assyst.calculators.structure_settings",
    "pyiron_assyst.evaluation": "pyiron_assyst.calculators.evaluation",
    "pyiron_assyst.executors": "pyiron_assyst.execution.executors",
    "pyiron_assyst.process_pool": "pyiron_assyst.execution.process_pool",
    "pyiron_assyst.dispatch": "pyiron_assyst.execution.dispatch",
    "pyiron_assyst.cache": "pyiron_assyst.execution.cache",
    "pyiron_assyst.codec": "pyiron_assyst.execution.codec",
    "pyiron_assyst.crystals": "pyiron_assyst.stages.sample",
    "pyiron_assyst._pyxtal": "pyiron_assyst.stages._pyxtal",
    "pyiron_assyst.relaxations": "pyiron_assyst.stages.relax",
    "pyiron_assyst.perturbations": "pyiron_assyst.stages.perturbations",
    "pyiron_assyst.perturb_stage": "pyiron_assyst.stages.perturb",
    "pyiron_assyst.filters": "pyiron_assyst.stages.filters",
    "pyiron_assyst.labels": "pyiron_assyst.stages.label",
    "pyiron_assyst.curation": "pyiron_assyst.stages.curate",
    "pyiron_assyst.fit": "pyiron_assyst.fitting.mace",
    "pyiron_assyst.transferability": "pyiron_assyst.fitting.transferability",
    "pyiron_assyst._mace_train": "pyiron_assyst.fitting._mace_train",
    "pyiron_assyst.nodes": "pyiron_assyst.workflow.nodes",
    "pyiron_assyst.label_nodes": "pyiron_assyst.workflow.nodes",
    "pyiron_assyst.fit_nodes": "pyiron_assyst.workflow.nodes",
    "pyiron_assyst.workflows": "pyiron_assyst.workflow.macro",
    "pyiron_assyst.plan": "pyiron_assyst.workflow.plan",
    "pyiron_assyst.plot": "pyiron_assyst.figures.plots",
    "pyiron_assyst.plot_files": "pyiron_assyst.figures.files",
    "pyiron_assyst.settings": "pyiron_assyst.cli.settings",
    "pyiron_assyst.commands": "pyiron_assyst.cli",
    "pyiron_assyst.export.cli": "pyiron_assyst.cli.export",
}
"""Old dotted module name -> the module that holds its contents now."""


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self.spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the alias's spec; keep the real one


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        new = MOVED.get(fullname)
        if new is None and fullname.startswith("pyiron_assyst.commands."):
            new = "pyiron_assyst.cli." + fullname.rsplit(".", 1)[1]
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}; import it from there (the old name goes "
                      "away in a later release)", FutureWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(new))


def install() -> None:
    """Make the old module names importable (done once, by ``import pyiron_assyst``)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
