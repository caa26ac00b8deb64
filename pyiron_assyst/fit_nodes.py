"""pyiron_workflow nodes of the fit and transferability stages: thin ``@flowrep.atomic`` wrappers.

``fit`` exposes the fitted model (a calculator config, usable wherever one is) and its
:class:`~pyiron_assyst.fit.FitReport`; ``split`` holds whole lineages out; ``transferability``
compares a calculator config with the reference and writes the table and pictures when given a
directory. Importing this module makes :class:`~pyiron_assyst.fit.FitConfig` and
:class:`~pyiron_assyst.transferability.TransferabilityConfig` usable as config nodes.
"""

from __future__ import annotations

import flowrep as fr
from ase import Atoms

from . import fit as _fit
from . import transferability as _transferability
from .calculators import EMT, CalculatorConfig
from .executors import Executor

__all__ = ["fit", "split", "transferability"]


@fr.atomic("model", "report")
def fit(
    structures: list[Atoms],
    config: _fit.FitConfig = _fit.FitConfig(),
    executor: Executor = Executor(kind="serial"),
    directory: str = "fit",
) -> tuple[_fit.MaceModel, _fit.FitReport]:
    """Fit a potential on labelled structures (see :func:`pyiron_assyst.fit.fit`)."""
    model, report = _fit.fit(structures, config, executor, directory)
    return model, report


@fr.atomic("kept", "held_out")
def split(
    structures: list[Atoms], fraction: float = 0.2, seed: int = 0,
) -> tuple[list[Atoms], list[Atoms]]:
    """Hold whole lineages out (see :func:`pyiron_assyst.fit.split_by_lineage`)."""
    kept, held_out = _fit.split_by_lineage(structures, fraction, seed)
    return kept, held_out


@fr.atomic("result")
def transferability(
    model: CalculatorConfig,
    reference: CalculatorConfig = EMT(),
    held_out: list[Atoms] | None = None,
    config: _transferability.TransferabilityConfig = _transferability.TransferabilityConfig(),
    directory: str | None = None,
) -> _transferability.TransferabilityResult:
    """Compare ``model`` with ``reference`` (see
    :func:`pyiron_assyst.transferability.transferability`); write the table and pictures into
    ``directory`` if given."""
    result = _transferability.transferability(model, reference, held_out or (), config)
    if directory is not None:
        _transferability.write_report(result, directory)
    return result


for _cls in (_fit.FitConfig, _transferability.TransferabilityConfig):
    if "flowrep_recipe" not in vars(_cls):
        fr.atomic("config")(_cls)
