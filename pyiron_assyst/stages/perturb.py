"""The perturb stage: every perturbation of a
:class:`~pyiron_assyst.stages.perturbations.PerturbConfig`
applied to every structure, with lineage, retries until the filter passes, and a report.

:func:`perturb` and :func:`perturb_with` are importable from
:mod:`pyiron_assyst.stages.perturbations`
too. Each attempt ``r`` at a child draws from ``rng_for(seed, child uuid, r)``, so the output is
bit-identical for the same input and seed, whatever else is in the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ase import Atoms
from tqdm.auto import tqdm

from pyiron_assyst.core.info_keys import INFO_KEYS, set_info
from pyiron_assyst.core.lineage import child_uuid, make_child, rng_for, uuid_of
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.stages.filters import Filter
from pyiron_assyst.stages.perturbations import Perturbation, PerturbationSkip, PerturbConfig

__all__ = ["perturb", "perturb_with"]

_STALE_KEYS = tuple(k for k, v in INFO_KEYS.items()
                    if {"relax", "perturb", "label"} & set(v.stage.replace(" ", "").split(",")))
"""Info keys that describe how the parent was made or labelled, not the perturbed child."""


def _clean_copy(atoms: Atoms) -> Atoms:
    """A copy without calculator, constraints and the parent's relax/perturb/label info keys."""
    clean = atoms.copy()
    clean.calc = None
    clean.set_constraint()
    for key in _STALE_KEYS:
        clean.info.pop(key, None)
    return clean


def _finish(child: Atoms, parent: Atoms, step: str, uuid: str, name: str, retry: int) -> Atoms:
    child.calc = None  # a perturbed structure has no label
    child.set_constraint()
    make_child(child, parent, step, uuid)
    set_info(child, "perturbation", name)
    set_info(child, "attempt", retry)
    return child


_Candidate = tuple[Perturbation, str, str, int]


def _candidates(perturbations: tuple[Perturbation, ...]) -> list[_Candidate]:
    """``(perturbation, step, config hash, copy index)`` for each perturbation of the tuple.

    The copy index counts earlier entries with the same step and hash (equal perturbations), so
    ``(Rattle(0.1),) * 4`` makes four different structures.
    """
    out: list[_Candidate] = []
    seen: dict[tuple[str, str], int] = {}
    for p in perturbations:
        step, digest = f"perturb:{p.name}", p.config_hash()
        copy = seen.get((step, digest), 0)
        seen[(step, digest)] = copy + 1
        out.append((p, step, digest, copy))
    return out


def _attempt(parent: Atoms, clean: Atoms, p: Perturbation, step: str, uuid: str,
             check: Filter | None, seed: int, retries: int) -> Atoms | Drop:
    """Apply ``p`` until ``check`` passes; the child, or the drop that explains why not."""
    rejected = ""
    for retry in range(retries):
        try:
            child = p.apply(clean, rng_for(seed, uuid, retry))
        except PerturbationSkip as skip:
            return Drop(uuid, skip.reason, skip.detail or p.name)
        except Exception as error:
            return Drop(uuid, "perturbation_error", f"{p.name}: {type(error).__name__}: {error}")
        if check is not None:
            try:
                rejected = check.rejected_by(child) or ""
            except Exception as error:
                return Drop(uuid, "filter_error",
                            f"{check.name}: {type(error).__name__}: {error}")
            if rejected:
                continue
        return _finish(child, parent, step, uuid, p.name, retry)
    return Drop(uuid, "filter_retries_exhausted", f"{rejected} rejected all {retries} attempts")



def perturb(structures: list[Atoms],
            perturbations: Perturbation | Callable[..., Atoms] | Sequence[Perturbation],
            filter: Filter | Callable[[Atoms], bool] | None = None, retries: int = 10,
            seed: int = 0) -> tuple[list[Atoms], StageReport]:
    """Apply each perturbation to each structure, retrying until ``filter`` passes.

    Parameters
    ----------
    structures
        Parents (not modified).
    perturbations
        One perturbation or a tuple of them; each makes one child per parent. Equal entries
        make distinct copies (``(Rattle(0.1),) * 4`` gives four children per parent).
    filter
        A :class:`~pyiron_assyst.stages.filters.Filter`, a callable ``Atoms -> bool`` or ``None``.
    retries
        Attempts per child, >= 1; attempt ``r`` draws from ``rng_for(seed, uuid, r)``.
    seed
        Config seed of the random streams.

    Returns
    -------
    children, report
        Children in structure-major, perturbation-minor order, with lineage (step
        ``"perturb:<name>"``), info ``"perturbation"`` (name) and ``"attempt"`` (passing retry
        index), no calculator and no constraints. Drop reasons: ``"one_atom_cell"`` (and other
        :class:`PerturbationSkip` reasons), ``"perturbation_error"``, ``"filter_error"``,
        ``"filter_retries_exhausted"``.
    """
    config = PerturbConfig(perturbations, filter, retries, seed)
    return perturb_with(structures, config)


def perturb_with(structures: list[Atoms], config: PerturbConfig) -> tuple[list[Atoms],
                                                                          StageReport]:
    """:func:`perturb` with its settings in one :class:`PerturbConfig`."""
    start = time.perf_counter()
    candidates = _candidates(config.perturbations)
    children: list[Atoms] = []
    drops: list[Drop] = []
    for parent in tqdm(structures, desc="perturb", disable=None, leave=False):
        clean, parent_uuid = _clean_copy(parent), uuid_of(parent)
        for p, step, digest, copy in candidates:
            uuid = child_uuid(parent_uuid, step, digest, copy)
            result = _attempt(parent, clean, p, step, uuid, config.filter, config.seed,
                              config.retries)
            (drops if isinstance(result, Drop) else children).append(result)
    report = StageReport(stage="perturb", n_in=len(structures),
                         n_candidates=len(structures) * len(candidates), n_out=len(children),
                         drops=tuple(drops), wall_time=time.perf_counter() - start)
    return children, report
