"""The select stage: choose what to label before paying for it.

A fit learns most from the structures that are least like the rest. :func:`select` describes
every structure of the pool by a descriptor (:mod:`~pyiron_assyst.stages.descriptors`: by
default a SOAP-like power spectrum summed over the atoms, :class:`PowerSpectrum`; or radial
basis functions averaged per element, :class:`RadialDescriptor`), ranks the pool by the
regularised *leverage* of each structure in that design matrix -- how much a linear model of the
descriptor depends on it -- and keeps a fraction or a count:

* ``"leverage"``: sampled without replacement with probability proportional to the leverage
  (Efraimidis-Spirakis keys from the seeded stream);
* ``"leverage_top"``: the highest leverages, deterministic;
* ``"farthest"``: greedy farthest-point sampling in the standardised descriptor space, starting
  from the highest leverage;
* ``"random"``: uniform, the baseline.

With ``cost_aware=True`` every weight is divided by the structure's predicted DFT cost
(:mod:`~pyiron_assyst.calculators.cost`: atoms and k-points), so that information per
core-hour is what is maximised. With ``keep_compositions=True`` (default) the best structure of
every composition is kept first, so no composition vanishes. The choice depends on the pool and
the seed only, not on the order of the input. Every structure not kept is a drop with reason
``"not_selected"``; the report's notes give the predicted core-hours of the pool and of the kept
set and the compositions and lineage roots before and after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.cost import CostModel, predicted_costs
from pyiron_assyst.core.composition import composition
from pyiron_assyst.core.config import Config, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.stages.descriptors import DESCRIPTORS, PowerSpectrum, RadialDescriptor

__all__ = ["METHODS", "Descriptor", "PowerSpectrum", "RadialDescriptor", "SelectConfig",
           "descriptors", "leverage_scores", "select"]

METHODS = ("leverage", "leverage_top", "farthest", "random")
Method = Literal["leverage", "leverage_top", "farthest", "random"]
Descriptor = RadialDescriptor | PowerSpectrum


def _number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass(frozen=True)
class SelectConfig(Config):
    """How the select stage chooses what to label.

    Parameters
    ----------
    method
        One of :data:`METHODS` (see the module docstring).
    fraction
        Fraction of the pool to keep, in (0, 1]; used when ``count`` is ``None``.
    count
        Number of structures to keep (>= 1), or ``None`` to use ``fraction``.
    seed
        Seed of the random choices (``"leverage"``, ``"random"``).
    regularization
        Ridge term of the leverage, relative to the mean eigenvalue of the design's Gram matrix
        (> 0): larger values spread the leverage more evenly.
    cost_aware
        Divide each structure's weight by its predicted cost (information per core-hour).
    cost_model
        The cost of one single point (:class:`~pyiron_assyst.calculators.cost.CostModel`).
    keep_compositions
        Keep the best structure of every composition first, so that none vanishes.
    descriptor
        The per-structure descriptor: :class:`~pyiron_assyst.stages.descriptors.PowerSpectrum`
        (angular, summed over the atoms; the default) or
        :class:`~pyiron_assyst.stages.descriptors.RadialDescriptor` (radial, averaged).
    """

    method: Method = "leverage"
    fraction: float = 0.4
    count: int | None = None
    seed: int = 0
    regularization: float = 1e-3
    cost_aware: bool = False
    cost_model: CostModel = CostModel()
    keep_compositions: bool = True
    descriptor: Descriptor = PowerSpectrum()

    def __post_init__(self) -> None:
        owner = "SelectConfig"
        require(self.method in METHODS, owner, "method", f"one of {METHODS}", self.method)
        require(_number(self.fraction) and 0 < self.fraction <= 1, owner, "fraction",
                "a number in (0, 1]", self.fraction)
        require(self.count is None or (isinstance(self.count, int)
                                       and not isinstance(self.count, bool) and self.count >= 1),
                owner, "count", "None or an int >= 1", self.count)
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool)
                and self.seed >= 0, owner, "seed", "an int >= 0 (numpy's default_rng)",
                self.seed)
        require(_number(self.regularization) and self.regularization > 0, owner,
                "regularization", "a finite number > 0", self.regularization)
        for field in ("cost_aware", "keep_compositions"):
            require(isinstance(getattr(self, field), bool), owner, field, "True or False",
                    getattr(self, field))
        require(isinstance(self.cost_model, CostModel), owner, "cost_model", "a CostModel",
                self.cost_model)
        require(isinstance(self.descriptor, DESCRIPTORS), owner, "descriptor",
                "one of " + ", ".join(d.__name__ for d in DESCRIPTORS), self.descriptor)
        object.__setattr__(self, "fraction", float(self.fraction))
        object.__setattr__(self, "regularization", float(self.regularization))

    @property
    def keeps_all(self) -> bool:
        """Whether this config keeps every structure of any pool (``fraction`` 1, no
        ``count``): selection is off, :func:`select` passes the pool through unchanged. The
        pipeline's default (:data:`~pyiron_assyst.workflow.pipeline.DEFAULT_SELECT`)."""
        return self.count is None and self.fraction == 1.0

    def target(self, n: int) -> int:
        """How many of ``n`` structures to keep."""
        if n == 0:
            return 0
        wanted = self.count if self.count is not None else round(self.fraction * n)
        return min(n, max(1, wanted))


def descriptors(structures: Sequence[Atoms], descriptor: Descriptor = PowerSpectrum()
                ) -> np.ndarray:
    """Design matrix (structures × features) of ``descriptor`` over the pool's elements."""
    species = sorted({int(z) for atoms in structures for z in atoms.numbers})
    return np.array([descriptor.of(atoms, species) for atoms in structures]).reshape(
        len(structures), -1)


def leverage_scores(design: np.ndarray, regularization: float = 1e-3) -> np.ndarray:
    """Ridge leverage ``h_i = x_i (XᵀX + λI)⁻¹ x_iᵀ`` of each row of ``design``.

    Columns are centred and scaled to unit variance first (constant columns dropped);
    ``λ = regularization × trace(XᵀX) / rank``. Each score is in [0, 1); they sum to the
    effective number of parameters.
    """
    x = np.asarray(design, dtype=float)
    if x.size == 0:
        return np.zeros(len(x))
    spread = x.std(axis=0)
    x = (x[:, spread > 0] - x[:, spread > 0].mean(axis=0)) / spread[spread > 0]
    if x.shape[1] == 0:
        return np.zeros(len(x))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    s2 = s**2
    rank = max(int((s2 > s2.max() * 1e-12).sum()), 1)
    ridge = regularization * s2.sum() / rank
    return (u**2 * (s2 / (s2 + ridge))).sum(axis=1)


def _coverage(weights: np.ndarray, compositions: list[str]) -> list[int]:
    """The best-weighted structure of each composition."""
    best: dict[str, int] = {}
    for i, comp in enumerate(compositions):
        if comp not in best or weights[i] > weights[best[comp]]:
            best[comp] = i
    return sorted(best.values())


def _farthest(points: np.ndarray, weights: np.ndarray, costs: np.ndarray, chosen: list[int],
              k: int) -> list[int]:
    """Greedy farthest-point sampling (distances divided by ``costs``) from ``chosen``."""
    chosen = list(chosen) or [int(np.argmax(weights))]
    nearest = np.min(np.linalg.norm(points[:, None, :] - points[chosen][None], axis=-1), axis=1)
    while len(chosen) < k:
        score = nearest / costs
        score[chosen] = -np.inf
        pick = int(np.argmax(score))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
    return chosen


def _choose(method: str, weights: np.ndarray, points: np.ndarray, costs: np.ndarray,
            chosen: list[int], k: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``k`` structures: ``chosen`` plus what ``method`` adds."""
    rest = np.setdiff1d(np.arange(len(weights)), chosen)
    need = k - len(chosen)
    if need <= 0:
        return chosen
    if method == "farthest":
        return _farthest(points, weights, costs, chosen, k)
    if method == "random":
        extra = rng.choice(rest, size=need, replace=False)
    elif method == "leverage_top":
        extra = rest[np.argsort(-weights[rest], kind="stable")[:need]]
    else:  # weighted sampling without replacement: the largest log(u) / w
        keys = np.log(rng.random(len(rest))) / np.maximum(weights[rest], 1e-300)
        extra = rest[np.argsort(-keys, kind="stable")[:need]]
    return chosen + [int(i) for i in extra]


def select(structures: Sequence[Atoms], config: SelectConfig = SelectConfig(),
           calculator: CalculatorConfig | None = None) -> tuple[list[Atoms], StageReport]:
    """Keep the structures most worth labelling (see the module docstring).

    Parameters
    ----------
    structures
        The pool (unlabelled or labelled); not modified.
    config
        Method, size, seed and cost weighting.
    calculator
        The reference calculator config, for the k-points of the cost model (``None``: one
        k-point per structure).

    Returns
    -------
    kept, report
        Copies of the kept structures in input order, with info ``selection_score`` and
        ``predicted_cost`` (core-hours); the report drops the rest with reason
        ``"not_selected"`` and notes the predicted cost and coverage. When the target is the
        whole pool (e.g. ``fraction=1``, selection off) the input structures themselves are
        returned unchanged, no descriptor is computed and the report notes
        ``selection_off``.
    """
    start = time.perf_counter()
    if config.keeps_all or (structures and config.target(len(structures)) >= len(structures)):
        return _whole_pool(structures, start)
    order = sorted(range(len(structures)), key=lambda i: uuid_of(structures[i]))
    pool = [structures[i] for i in order]  # the choice must not depend on the input order
    points = descriptors(pool, config.descriptor)
    scores = leverage_scores(points, config.regularization)
    costs = predicted_costs(pool, calculator, config.cost_model)
    weights = scores / costs if config.cost_aware else scores
    compositions = [composition(a) for a in pool]
    chosen = _coverage(weights, compositions) if config.keep_compositions else []
    k = max(config.target(len(pool)), len(chosen))
    spread = points.std(axis=0)
    standard = (points - points.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    rng = np.random.default_rng(config.seed)
    picked = set(_choose(config.method, weights, standard,
                         costs if config.cost_aware else np.ones(len(pool)), chosen, k, rng))
    kept_sorted = sorted(picked, key=lambda j: order[j])
    kept = []
    for j in kept_sorted:
        atoms = pool[j].copy()
        atoms.calc = pool[j].calc
        set_info(atoms, "selection_score", float(scores[j]))
        set_info(atoms, "predicted_cost", float(costs[j]))
        kept.append(atoms)
    drops = tuple(Drop(uuid_of(pool[j]), "not_selected",
                       f"leverage {scores[j]:.3g}, predicted {costs[j]:.3g} core-h")
                  for j in sorted(set(range(len(pool))) - picked, key=lambda j: order[j]))
    notes = _notes(pool, costs, sorted(picked), compositions)
    report = StageReport(stage="select", n_in=len(pool), n_candidates=len(pool),
                         n_out=len(kept), drops=drops, notes=notes,
                         wall_time=time.perf_counter() - start)
    return kept, report


def _whole_pool(structures: Sequence[Atoms], start: float) -> tuple[list[Atoms], StageReport]:
    """Selection off: every structure passes, unchanged (no copies, no info keys)."""
    n = len(structures)
    report = StageReport(stage="select", n_in=n, n_candidates=n, n_out=n,
                         notes=(("selection_off", 1.0),),
                         wall_time=time.perf_counter() - start)
    return list(structures), report


def _notes(pool: list[Atoms], costs: np.ndarray, kept: list[int],
           compositions: list[str]) -> tuple[tuple[str, float], ...]:
    roots = [a.info.get("root", uuid_of(a)) for a in pool]
    return (
        ("predicted_core_hours_pool", float(costs.sum())),
        ("predicted_core_hours_kept", float(costs[kept].sum())),
        ("predicted_core_hours_saved", float(costs.sum() - costs[kept].sum())),
        ("compositions_pool", float(len(set(compositions)))),
        ("compositions_kept", float(len({compositions[j] for j in kept}))),
        ("roots_pool", float(len(set(roots)))),
        ("roots_kept", float(len({roots[j] for j in kept}))),
    )
