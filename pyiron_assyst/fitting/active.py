"""Active learning: fit, explore with the model's own MD, label what it found, fit again.

:func:`refine` runs ``rounds`` rounds on a fitted model: :func:`~pyiron_assyst.stages.explore.
explore` (snapshots of MD driven by the current model from the set's minima), the reference
labels them (:func:`~pyiron_assyst.stages.label.label`), they join the training structures and
:func:`~pyiron_assyst.fitting.mace.fit` trains on the whole: a fresh fit with the same settings
(a round changes the data only), or, with ``continue_epochs``, the current model trained that
many more epochs (a fraction of a fresh fit's time). Every fit is cached by its data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import require
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.fitting.fit_config import FitConfig
from pyiron_assyst.fitting.fit_report import FitReport
from pyiron_assyst.fitting.mace import fit
from pyiron_assyst.fitting.model import MaceModel
from pyiron_assyst.stages.explore import ExploreConfig, explore
from pyiron_assyst.stages.label import label

__all__ = ["Round", "refine"]


@dataclass(frozen=True)
class Round:
    """What one round did: the exploration, the labelling of its snapshots and the refit."""

    explore: StageReport
    label: StageReport
    fit: FitReport

    def summary(self) -> list[str]:
        """One line per part."""
        return [self.explore.summary(), f"{self.label.summary()} (explored snapshots)",
                self.fit.summary()]


def refine(model: MaceModel, training: Sequence[Atoms], reference: CalculatorConfig,
           fit_config: FitConfig, explore_config: ExploreConfig = ExploreConfig(),
           rounds: int = 1, executor: Executor | None = None,
           directory: str | os.PathLike[str] = "fit", continue_epochs: int | None = None,
           ) -> tuple[MaceModel, list[Atoms], list[Round]]:
    """``rounds`` rounds of explore → label → fit, starting from ``model``.

    Parameters
    ----------
    model
        The model fitted on ``training``.
    training
        Its labelled training structures (the fit's side of a lineage split; energies in eV).
    reference
        Calculator config that labels the snapshots.
    fit_config
        Settings of every refit (those of ``model``'s fit).
    explore_config
        What each round explores; round ``r`` uses seed ``explore_config.seed + r``.
    rounds
        Number of rounds (0: ``model`` and ``training`` are returned as they are).
    executor
        Where exploration and labels run (default: local processes); the fit runs here.
    directory
        Project directory of the fits.
    continue_epochs
        ``None``: every refit is a fresh fit with ``fit_config``. A number: every refit
        continues the round's model (its weights, optimizer and learning-rate state) for that
        many epochs (``fit_config`` with ``epochs = continue_epochs``; its learning rate is the
        model's last one).

    Returns
    -------
    model, training, rounds
        The last model, the training structures with every labelled snapshot appended, and
        what each round did.
    """
    require(continue_epochs is None or (isinstance(continue_epochs, int)
                                        and continue_epochs >= 1), "refine",
            "continue_epochs", "None or an integer >= 1", continue_epochs)
    if continue_epochs is not None:
        fit_config = replace(fit_config, epochs=continue_epochs)
    done: list[Round] = []
    training = list(training)
    for r in range(rounds):
        config = replace(explore_config, seed=explore_config.seed + r)
        snapshots, explore_report = explore(training, model, config, executor)
        labelled, label_report = label(snapshots, reference, executor, desc="label explored")
        training += labelled
        model, fit_report = fit(training, fit_config, Executor(kind="serial"), directory,
                                start=model if continue_epochs is not None else None)
        done.append(Round(explore_report, label_report, fit_report))
    return model, training, done
