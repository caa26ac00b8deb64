"""Label stage: reference single points (energy, free energy, forces, stress) per structure.

:func:`label` evaluates every structure with a calculator config, fanned out over an executor
like the relaxations, and returns labelled children in the canonical form: a
:class:`~ase.calculators.singlepoint.SinglePointCalculator` with ``energy`` and ``free_energy``
(eV), ``forces`` (eV/Å) and, for 3-D periodic cells, ``stress`` (eV/Å³, Voigt xx yy zz yz xz xy,
ASE sign). Faults are data: a structure whose calculator raises or returns NaN is dropped with
the kind of its failure (``"scf_not_converged"``, ``"crashed"``, ``"non_finite"``,
``"calculator_error"``, ...) and the others go on; a calculator config with a repair policy
(:mod:`pyiron_assyst.calculators.repair`) first retries it with changed settings.

Each label records which calculator config made it (info
:data:`~pyiron_assyst.calculators.evaluation.LABEL_CALCULATOR`, the config's
:meth:`~pyiron_assyst.core.config.Config.config_hash`). A structure that already carries a current
label from the same config is passed through unchanged; one labelled by another config (e.g. a
relaxation with a cheaper setting), or with no record of its config, is labelled again, and
``relabel=True`` labels everything again. Structure-dependent settings (k-points, magnetic
moments) come from the calculator config's hook (see
:mod:`pyiron_assyst.calculators.structure_settings`)
and are recorded on the labelled structure.

With a :class:`~pyiron_assyst.execution.cache.ResultCache`, every finished single point is kept on
disk
by content (the structure and the calculator config) the moment it finishes, so a labelling
that was killed and started again computes only what had not finished, and a changed input is
never answered from the cache (as for the relaxations).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.evaluation import (
    LABEL_CALCULATOR,
    Outcome,
    Tally,
    classify,
    evaluate,
    label_is_current,
    stamp_repairs,
)
from pyiron_assyst.calculators.structure_settings import prepare_structure, record_info
from pyiron_assyst.core.lineage import child_uuid, make_child, uuid_of
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.execution.cache import ResultCache, structure_key
from pyiron_assyst.execution.dispatch import run_cached
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.execution.tasks import TaskError

__all__ = ["LABEL_STEP", "label"]

logger = logging.getLogger(__name__)

LABEL_STEP = "label"
"""Step name of labelled structures."""
_TASK_REVISION = "label-task-1"
"""Part of every cache key of :func:`label`: change it when a task's result would change."""


def _label_task(item: tuple[Atoms, CalculatorConfig]) -> Outcome[Atoms]:
    """Worker: record the structure's derived settings, then evaluate it (faults as data)."""
    atoms, calculator = item
    try:
        prepared = prepare_structure(calculator, atoms)
    except Exception as error:  # a broken settings hook is one structure's failure
        reason, detail = classify(error)
        return Outcome(None, reason, detail)
    return evaluate(prepared, calculator)


# --------------------------------------------------------------------------- the stage


@dataclass
class _Tally(Tally):
    out: list[Atoms | None] = field(default_factory=list)


def _collect(tally: _Tally, index: int, parent: Atoms, outcome: Outcome[Atoms] | TaskError,
             calculator_hash: str) -> None:
    """Stamp a finished label into ``tally.out[index]`` or record its drop."""
    uuid = child_uuid(uuid_of(parent), LABEL_STEP, calculator_hash, 0)
    labelled = tally.finished(outcome, uuid)
    if labelled is None:
        return
    make_child(labelled, parent, LABEL_STEP, uuid)
    record_info(labelled, LABEL_CALCULATOR, calculator_hash)
    stamp_repairs(labelled, outcome)  # type: ignore[arg-type]  # not a TaskError here
    tally.out[index] = labelled


def label(structures: Sequence[Atoms], calculator: CalculatorConfig,
          executor: Executor | None = None, relabel: bool = False,
          cache: ResultCache | None = None, retry_failed: bool = False,
          desc: str = LABEL_STEP) -> tuple[list[Atoms], StageReport]:
    """Compute the reference single point of every structure with ``calculator``.

    Parameters
    ----------
    structures
        Structures to label; never modified.
    calculator
        Calculator config; its live calculator is built inside the worker with
        ``calculator.calculator_for(atoms)``, after ``calculator.prepare(atoms)`` (if it has
        one) recorded the structure-dependent settings.
    executor
        Where to run the per-structure tasks (default: a local process pool on all cores).
    relabel
        Label every structure again, also those already labelled by this config (the cache
        still answers for unchanged inputs).
    cache
        Keep every finished single point here, by content (the structure's arrays and info and
        the calculator's config hash; see :func:`~pyiron_assyst.execution.cache.structure_key`), in
        the
        namespace ``"label"``, and answer unchanged inputs from it. ``None``: no cache.
    retry_failed
        Label again structures whose cached result is a failure.
    desc
        Name of the batch in the progress bar and in the cache's batch manifest (what
        ``pyiron-assyst status`` shows).

    Returns
    -------
    structures
        In input order. A structure labelled here is a child of its input (step ``"label"``,
        uuid from the input's uuid, the step and ``calculator.config_hash()``, copy 0) with a
        single point (``energy``/``free_energy`` in eV, ``forces`` in eV/Å, ``stress`` in eV/Å³
        for 3-D periodic cells), no constraints, the input's info plus
        :data:`LABEL_CALCULATOR` and the recorded settings. A structure that already carried
        a current label of this config is the input object itself.
    report
        ``n_candidates == n_in``; failures are dropped as ``"calculator_error"``,
        ``"non_finite"``, ``"scf_not_converged"``, ``"crashed"`` or ``"timeout"`` (the failure's
        kind, see :mod:`pyiron_assyst.calculators.repair`) with the error text (uuid: the child
        that was not made); structures that needed a repair are flagged ``"repaired"`` with
        their history; ``force_calls`` and ``calculator_time`` (s) sum over all evaluations, failed
        and cached ones too.
    """
    start = time.perf_counter()
    calculator_hash = calculator.config_hash()
    tally = _Tally(out=[None] * len(structures))
    todo = [i for i, atoms in enumerate(structures)
            if relabel or not label_is_current(atoms, calculator_hash)]
    for i in set(range(len(structures))) - set(todo):
        tally.out[i] = structures[i]
    items = [(structures[i].copy(), calculator) for i in todo]
    keys = [structure_key(structures[i], _TASK_REVISION, calculator_hash) for i in todo]
    outcomes, _ = run_cached(_label_task, items, keys, executor or Executor(),
                             None if cache is None else cache.namespace(LABEL_STEP),
                             retry_failed, desc=desc)
    for i, outcome in zip(todo, outcomes):
        _collect(tally, i, structures[i], outcome, calculator_hash)
    out = [a for a in tally.out if a is not None]
    report = StageReport(
        stage=LABEL_STEP, n_in=len(structures), n_candidates=len(structures), n_out=len(out),
        drops=tuple(tally.drops), flagged=tuple(tally.repaired),
        wall_time=time.perf_counter() - start,
        calculator_time=tally.calculator_time, force_calls=tally.force_calls)
    if len(todo) < len(structures):
        logger.info("label: %d current labels reused", len(structures) - len(todo))
    if report.drops:
        logger.warning(report.summary())
    return out, report
