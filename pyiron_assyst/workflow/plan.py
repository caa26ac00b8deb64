"""Plan before spending: structures per stage, calculations and core-hours, before anything runs.

:func:`plan` walks the canonical pipeline (sample, sample filter, volume relaxation, full
relaxation, perturbation, final filter of the union, labelling) on paper:

- **Sampling is exact.** The formula × group grid is built exactly as
  :func:`~pyiron_assyst.stages.sample.sample` builds it (formulas trimmed to the atom range,
  repeated compositions sampled once) and every grid point is put through pyxtal's own
  compatibility check, the check that decides ``incompatible_group`` drops, without drawing a
  structure. The planned number is the number of pyxtal draws; only pyxtal giving up on a
  compatible point (``generator_timeout``, ``generator_error``, rare) makes the real run
  produce fewer.
- **Everything after it is expected**, under stated :class:`PlanAssumptions`: a filter keeps
  a fraction of its input; a relaxation gives one structure per input (less an expected failure
  fraction) plus its trace snapshots; perturbation gives, per structure, one child for each
  perturbation that applies to it times the expected pass fraction. Whether a perturbation
  applies by design (e.g. a rattle skips one-atom cells, a stretch skips clusters) is decided
  exactly, by applying it once to a stand-in structure of the same composition and
  dimensionality. The training set is the filtered union of sampled, relaxed and perturbed
  structures, as in :func:`~pyiron_assyst.workflow.macro.assyst`.
- **Selection** (a ``select_config`` that does not keep everything) keeps its target of the
  expected filtered set (a fraction, or a count; with ``keep_compositions`` at least one
  structure per composition); the labelling and its cost shrink by the same factor, as if the
  selection kept every kind of structure in proportion (a cost-aware selection keeps cheaper
  ones, so then the cost is an upper estimate).
- **Short-range structures** (``short_range_config``): the isolated atoms, dimers and trimers
  are counted exactly from the elements of the formulas, the compressed crystals as the
  expected relaxed structures times the compression factors; they join the labels (one single
  point each), and a cost model prices the clusters in their own vacuum boxes.
- **Calculations** are force calls: every relaxation costs the assumed number of calls per
  relaxation (at most ``max_steps + 1`` for optimizers with one call per step), every labelled
  structure one single point. Core-hours = calculations × the given cost per calculation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.cost import CostModel, kpoint_count
from pyiron_assyst.core.config import Config, require
from pyiron_assyst.stages import _pyxtal
from pyiron_assyst.stages.perturbations import Perturbation, PerturbationSkip, PerturbConfig
from pyiron_assyst.stages.relax import FullRelax, Relaxation, VolumeRelax
from pyiron_assyst.stages.sample import Formulas, SampleConfig, grid_points
from pyiron_assyst.stages.select import SelectConfig
from pyiron_assyst.stages.short_range import KINDS, ShortRangeConfig, short_range
from pyiron_assyst.workflow.pipeline import DEFAULT_PERTURB

__all__ = ["Plan", "PlanAssumptions", "StagePlan", "plan"]

Population = dict[tuple[tuple[tuple[str, int], ...], int], float]
"""Expected structures per (formula as ``(element, count)`` pairs, dim)."""

_FRACTIONS = ("sample_filter_pass", "relax_failure", "perturb_pass", "final_filter_pass")


@dataclass(frozen=True)
class PlanAssumptions(Config):
    """What :func:`plan` assumes where it cannot count exactly.

    Parameters
    ----------
    sample_filter_pass
        Fraction of sampled structures the sample filter keeps (1: upper bound).
    relax_failure
        Fraction of relaxations that fail (calculator error, NaN) and are dropped; applied to
        each relaxation stage.
    volume_relax_calls, full_relax_calls
        Expected force calls per volume / full relaxation (a DFT relaxation of a small cell
        takes some tens of ionic steps; calibrate on a cheap run).
    perturb_pass
        Fraction of perturbed children that pass the perturbation filter within its retries.
    final_filter_pass
        Fraction of the union of all stages that the final filter keeps.
    relabel_relaxed
        Whether relaxed structures get a new single point in the labelling (``True`` when the
        reference calculator differs from the relaxation's, as usual in production); ``False``
        re-uses their relaxation labels.
    """

    sample_filter_pass: float = 1.0
    relax_failure: float = 0.0
    volume_relax_calls: float = 10.0
    full_relax_calls: float = 30.0
    perturb_pass: float = 1.0
    final_filter_pass: float = 1.0
    relabel_relaxed: bool = True

    def __post_init__(self) -> None:
        for name in _FRACTIONS:
            value = getattr(self, name)
            require(isinstance(value, int | float) and not isinstance(value, bool)
                    and 0.0 <= value <= 1.0, "PlanAssumptions", name, "a fraction in [0, 1]",
                    value)
            object.__setattr__(self, name, float(value))
        for name in ("volume_relax_calls", "full_relax_calls"):
            value = getattr(self, name)
            require(isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 1, "PlanAssumptions", name,
                    "a number of force calls >= 1", value)
            object.__setattr__(self, name, float(value))
        require(isinstance(self.relabel_relaxed, bool), "PlanAssumptions", "relabel_relaxed",
                "a bool", self.relabel_relaxed)


@dataclass(frozen=True)
class StagePlan:
    """Planned numbers of one stage.

    Parameters
    ----------
    stage
        Stage name, as in the stage reports (``"sample"``, ``"relax:volume"``, ...).
    n_in, n_out
        Structures in and out (for sampling: formulas in; expected values may be fractional).
    exact
        Whether ``n_out`` is exact (sampling) or expected under the assumptions.
    calculations
        Expected force calls (single points) of the stage.
    max_calculations
        Upper bound of the force calls for the expected number of structures (relaxations
        taking ``max_steps``; ``None``: no bound is known).
    note
        How the numbers were obtained.
    core_hours
        Expected core-hours of the stage under a :class:`~pyiron_assyst.calculators.cost.CostModel`
        (atoms and k-points of each structure; ``None`` without one: calculations times the
        plan's flat cost).
    """

    stage: str
    n_in: float
    n_out: float
    exact: bool
    calculations: float = 0.0
    max_calculations: float | None = 0.0
    note: str = ""
    core_hours: float | None = None


@dataclass(frozen=True)
class Plan:
    """What a run will produce and cost; see :func:`plan`.

    Parameters
    ----------
    stages
        One :class:`StagePlan` per stage, in pipeline order.
    grid_points, incompatible
        Sampling grid points and those pyxtal cannot fill (exact).
    cost_per_calculation_core_hours
        Cost of one calculation in core-hours.
    cores_per_calculation
        Cores one calculation runs on.
    assumptions
        The assumptions behind the expected numbers.
    """

    stages: tuple[StagePlan, ...]
    grid_points: int
    incompatible: int
    cost_per_calculation_core_hours: float
    cores_per_calculation: int
    assumptions: PlanAssumptions = field(default_factory=PlanAssumptions)

    def stage(self, name: str) -> StagePlan:
        """The plan of the stage called ``name``."""
        for stage in self.stages:
            if stage.stage == name:
                return stage
        raise KeyError(f"no stage {name!r} in the plan; stages: {[s.stage for s in self.stages]}")

    @property
    def training_set(self) -> float:
        """Expected size of the training set: the filtered (and, if planned, selected)
        structures and the short-range ones."""
        names = [s.stage for s in self.stages]
        kept = self.stage("select" if "select" in names else "final_filter").n_out
        return kept + (self.stage("short_range").n_out if "short_range" in names else 0.0)

    @property
    def calculations(self) -> float:
        """Expected force calls of all stages."""
        return sum(s.calculations for s in self.stages)

    @property
    def max_calculations(self) -> float | None:
        """Upper bound of the force calls (``None`` if a stage has no bound)."""
        bounds = [s.max_calculations for s in self.stages]
        return None if any(b is None for b in bounds) else sum(bounds)

    @property
    def scaled(self) -> bool:
        """Whether the cost comes from a cost model per structure (else a flat cost)."""
        return all(s.core_hours is not None for s in self.stages)

    @property
    def core_hours(self) -> float:
        """Expected cost in core-hours."""
        if self.scaled:
            return float(sum(s.core_hours or 0.0 for s in self.stages))
        return self.calculations * self.cost_per_calculation_core_hours

    @property
    def hours_per_calculation(self) -> float:
        """Wall-clock hours of one calculation on :attr:`cores_per_calculation` cores."""
        return self.cost_per_calculation_core_hours / self.cores_per_calculation

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (stages, totals, assumptions)."""
        return {
            "stages": [dict(vars(s)) for s in self.stages],
            "grid_points": self.grid_points, "incompatible": self.incompatible,
            "training_set": self.training_set, "calculations": self.calculations,
            "max_calculations": self.max_calculations, "core_hours": self.core_hours,
            "cost_per_calculation_core_hours": self.cost_per_calculation_core_hours,
            "cores_per_calculation": self.cores_per_calculation,
            "hours_per_calculation": self.hours_per_calculation,
            "assumptions": self.assumptions.to_dict(),
        }

    def summary(self) -> str:
        """A table of the stages and the bill, for people."""
        lines = [f"{'stage':<14}{'in':>10}{'out':>10}  {'':<9}{'calculations':>14}"
                 f"{'at most':>12}" + (f"{'core-hours':>14}" if self.scaled else "")]
        for s in self.stages:
            bound = "-" if s.max_calculations is None else _count(s.max_calculations)
            lines.append(f"{s.stage:<14}{_count(s.n_in):>10}{_count(s.n_out):>10}  "
                         f"{'exact' if s.exact else 'expected':<9}{_count(s.calculations):>14}"
                         f"{bound:>12}" + (f"{_human(s.core_hours or 0.0):>14}"
                                           if self.scaled else ""))
        most = self.max_calculations
        cores = self.cores_per_calculation
        lines += [
            f"sampling grid: {self.grid_points} points, {self.incompatible} incompatible",
            f"training set: {_count(self.training_set)} structures (expected)",
            f"calculations: {_count(self.calculations)} expected"
            + ("" if most is None else f", at most {_count(most)}"),
        ]
        if self.scaled:
            lines.append(f"cost: {_human(self.core_hours)} core-hours expected (cost model: "
                         "atoms and k-points of each structure)")
        else:
            lines.append(
                f"cost: {_human(self.core_hours)} core-hours expected"
                + ("" if most is None else
                   f", at most {_human(most * self.cost_per_calculation_core_hours)}")
                + f" ({_human(self.cost_per_calculation_core_hours)} core-hours per "
                f"calculation, {_human(self.hours_per_calculation)} h each on {cores} "
                f"core{'s' if cores != 1 else ''})")
        return "\n".join(lines)


def _human(value: float) -> str:
    """A number for people: thousands separated, three significant digits below 100."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


# ------------------------------------------------------------------------------- sampling


def _sampled(formulas: Formulas, config: SampleConfig) -> tuple[Population, int, int]:
    """Exact structures per (formula, dim) of the sampling grid; grid points; incompatible."""
    grid = grid_points(formulas, config)
    compatible: dict[tuple[tuple[int, ...], int], bool] = {}
    population: Population = {}
    drawn = incompatible = 0
    limit = config.max_structures
    for point in grid:
        if limit is not None and drawn == limit:
            break
        key = (tuple(sorted(n for _, n in point.formula)), point.group)
        if key not in compatible:
            compatible[key] = _pyxtal.is_compatible(key[0], point.group, config.dim)
        if not compatible[key]:
            incompatible += 1
            continue
        drawn += 1
        population[(point.formula, config.dim)] = population.get((point.formula, config.dim),
                                                                 0.0) + 1.0
    return population, len(grid), incompatible


# ------------------------------------------------------------------------------- later stages


def _scaled(population: Population, factor: float) -> Population:
    return {key: count * factor for key, count in population.items()}


def _total(population: Population) -> float:
    return float(sum(population.values()))


def _stand_in(formula: tuple[tuple[str, int], ...], dim: int) -> Atoms:
    """A structure of the composition and dimensionality (atoms on a 2.5-Å cubic grid)."""
    symbols = [e for e, n in formula for _ in range(n)]
    side = math.ceil(len(symbols) ** (1 / 3))
    positions = [(2.5 * (i % side), 2.5 * (i // side % side), 2.5 * (i // side ** 2))
                 for i in range(len(symbols))]
    pbc = {3: (True, True, True), 2: (True, True, False), 1: (False, False, True)}
    return Atoms(symbols, positions=positions, cell=np.eye(3) * 2.5 * side,
                 pbc=pbc.get(dim, (False, False, False)))


def _applies(perturbation: Perturbation, formula: tuple[tuple[str, int], ...], dim: int) -> bool:
    """Whether ``perturbation`` makes a child of such structures by design (one trial)."""
    try:
        perturbation.apply(_stand_in(formula, dim), np.random.default_rng(0))
    except PerturbationSkip:
        return False
    except Exception:  # a failure is a drop like a rejection: left to perturb_pass
        return True
    return True


def _perturbed(population: Population, config: PerturbConfig, passing: float) -> Population:
    out: Population = {}
    for (formula, dim), count in population.items():
        children = sum(_applies(p, formula, dim) for p in config.perturbations)
        out[(formula, dim)] = count * children * passing
    return out


def _relax_stage(population: Population, config: Relaxation, calls: float,
                 assumptions: PlanAssumptions, pricing: _Pricing | None = None,
                 ) -> tuple[Population, StagePlan]:
    n_in = _total(population)
    steps = max(0, round(calls) - 1)
    snapshots = max(0, (steps - 1) // config.trace) if config.trace else 0
    factor = (1.0 - assumptions.relax_failure) * (1 + snapshots)
    out = _scaled(population, factor)
    note = (f"{calls:g} force calls per relaxation (assumed), at most max_steps + 1 = "
            f"{config.max_steps + 1}; {assumptions.relax_failure:g} fail"
            + (f"; {snapshots} trace snapshots each" if snapshots else ""))
    hours = None if pricing is None else calls * pricing.cost(population, relax=True)
    if config.pre_relax is not None:
        note += (f"; after a pre-relaxation with {type(config.pre_relax).__name__} (not "
                 f"counted; assume fewer calls for what is left)")
    if config.calculator is not None:  # not the calculator the plan prices: no calculations
        note = (f"with its own calculator {type(config.calculator).__name__}: "
                f"{_human(n_in * calls)} force calls of it, not counted; " + note)
        return out, StagePlan(config.step, n_in, _total(out), False, 0.0, 0.0, note,
                              None if pricing is None else 0.0)
    return out, StagePlan(config.step, n_in, _total(out), False, n_in * calls,
                          n_in * (config.max_steps + 1), note, hours)


def _filter_stage(name: str, n_in: float, passing: float, priced: bool = False) -> StagePlan:
    return StagePlan(name, n_in, n_in * passing, False, note=f"keeps {passing:g} (assumed)",
                     core_hours=0.0 if priced else None)


@dataclass(frozen=True)
class _Pricing:
    """Core-hours of populations under a cost model, with a calculator config's k-points."""

    model: CostModel
    calculator: CalculatorConfig | None
    reference: CalculatorConfig | None

    def cost(self, population: Population, relax: bool = False) -> float:
        """Core-hours of one calculation on every structure of ``population``."""
        total = 0.0
        for (formula, dim), count in population.items():
            atoms = _stand_in(formula, dim)
            n = len(atoms)
            if relax:
                total += count * self.model.relax_step_core_hours(
                    n, kpoint_count(atoms, self.calculator))
            else:
                total += count * self.model.core_hours(n, kpoint_count(atoms, self.reference))
        return total

    def single_points(self, structures: Iterable[Atoms]) -> float:
        """Core-hours of one single point with the reference on each of ``structures``."""
        return float(sum(self.model.core_hours(len(atoms), kpoint_count(atoms, self.reference))
                         for atoms in structures))


# ------------------------------------------------------------------------------- the plan


def plan(formulas: Formulas | Iterable[Mapping[str, int]],
         sample_config: SampleConfig = SampleConfig(),
         perturb_config: PerturbConfig | None = DEFAULT_PERTURB,
         volume_relax: Relaxation | None = VolumeRelax(),
         full_relax: Relaxation | None = FullRelax(),
         assumptions: PlanAssumptions = PlanAssumptions(),
         cost_per_calculation_core_hours: float = 1.0,
         cores_per_calculation: int = 1,
         label: bool = True,
         cost_model: CostModel | None = None,
         calculator: CalculatorConfig | None = None,
         reference: CalculatorConfig | None = None,
         select_config: SelectConfig | None = None,
         short_range_config: ShortRangeConfig | None = ShortRangeConfig()) -> Plan:
    """How many structures each stage will produce and what the calculations will cost.

    Nothing expensive runs: sampling is counted exactly with pyxtal's compatibility check
    (no structure is drawn), the later stages under ``assumptions`` (see module docs).

    Parameters
    ----------
    formulas
        Compositions to sample, as for :func:`~pyiron_assyst.stages.sample.sample`.
    sample_config
        The sampling grid.
    perturb_config
        The perturbations (``None``: no perturbation stage); default: the pipeline's.
    volume_relax, full_relax
        The relaxations (``None``: the stage is skipped); ``max_steps`` bounds the calls and
        ``trace`` adds snapshots.
    assumptions
        Pass fractions, failure fraction and force calls per relaxation.
    cost_per_calculation_core_hours
        Cost of one calculation (a relaxation step or a single point) in core-hours.
    cores_per_calculation
        Cores each calculation runs on (the executor's ``cores``), for the wall time of one.
    label
        Whether the training set is labelled with single points (one calculation each).
    cost_model
        Price every calculation by its structure (atoms, k-points; a relaxation step as a
        fraction of a single point) instead of the flat ``cost_per_calculation_core_hours``.
        Structures are priced as stand-ins of their composition and dimensionality with
        2.5-Å spacing.
    calculator, reference
        The relaxation and the label calculator configs, whose k-point meshes the cost model
        uses (``None``: one k-point).
    select_config
        The selection before labelling (``None``, or one that keeps everything: no select
        stage); the labelled count and cost are scaled by its expected target.
    short_range_config
        The short-range structures added before labelling (default: the pipeline's; ``None``
        or ``enabled=False``: none).
    """
    require(math.isfinite(cost_per_calculation_core_hours)
            and cost_per_calculation_core_hours >= 0, "plan", "cost_per_calculation_core_hours",
            "a finite number >= 0 (core-hours)", cost_per_calculation_core_hours)
    require(isinstance(cores_per_calculation, int) and cores_per_calculation >= 1, "plan",
            "cores_per_calculation", "an integer >= 1", cores_per_calculation)
    formulas = formulas if isinstance(formulas, Formulas) else Formulas(tuple(formulas))
    pricing = None if cost_model is None else _Pricing(cost_model, calculator, reference)
    priced = pricing is not None
    population, points, incompatible = _sampled(formulas, sample_config)
    stages = [StagePlan("sample", len(formulas), _total(population), True, note=(
        f"{points} grid points, {incompatible} incompatible; pyxtal may still give up on some"),
        core_hours=0.0 if priced else None)]
    sampled = _scaled(population, assumptions.sample_filter_pass)
    stages.append(_filter_stage("sample_filter", _total(population),
                                assumptions.sample_filter_pass, priced))
    union = [sampled]
    relaxed: list[Population] = []
    current = sampled
    for config, calls in ((volume_relax, assumptions.volume_relax_calls),
                          (full_relax, assumptions.full_relax_calls)):
        if config is not None:
            current, stage = _relax_stage(current, config, calls, assumptions, pricing)
            stages.append(stage)
            relaxed.append(current)
    union += relaxed
    if perturb_config is not None:
        perturbed = _perturbed(current, perturb_config, assumptions.perturb_pass)
        stages.append(StagePlan("perturb", _total(current), _total(perturbed), False, note=(
            f"{len(perturb_config.perturbations)} perturbations per structure where they "
            f"apply, {assumptions.perturb_pass:g} pass (assumed)"),
            core_hours=0.0 if priced else None))
        union.append(perturbed)
    stages.append(_filter_stage("final_filter", sum(_total(p) for p in union),
                                assumptions.final_filter_pass, priced))
    kept = 1.0
    if select_config is not None and not select_config.keeps_all:
        compositions = len({_empirical(formula) for p in union for formula, _ in p})
        stage = _select_stage(stages[-1].n_out, select_config, compositions, priced)
        kept = stage.n_out / stage.n_in if stage.n_in else 1.0
        stages.append(stage)
    pool = stages[-1].n_out
    short, clusters = _short_range_stage(formulas, current, short_range_config, priced)
    if short is not None:
        stages.append(short)
        pool += short.n_out
    if label:
        stage = _label_stage(pool, kept * sum(_total(p) for p in relaxed), assumptions)
        if pricing is not None:
            labelled = union if assumptions.relabel_relaxed else [union[0], *union[1 + len(
                relaxed):]]
            hours = kept * assumptions.final_filter_pass * sum(pricing.cost(p) for p in labelled)
            if short is not None:  # compressed crystals priced as their relaxed parents
                factors = len(short_range_config.compressions)  # type: ignore[union-attr]
                hours += pricing.single_points(clusters) + factors * pricing.cost(current)
            stage = dataclasses.replace(stage, core_hours=hours)
        stages.append(stage)
    return Plan(tuple(stages), points, incompatible, float(cost_per_calculation_core_hours),
                cores_per_calculation, assumptions)


def _empirical(formula: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """The composition of ``formula`` with its counts divided by their common divisor (as
    the select stage tells compositions apart)."""
    divisor = math.gcd(*(n for _, n in formula))
    return tuple(sorted((e, n // divisor) for e, n in formula))


def _select_stage(n_in: float, config: SelectConfig, compositions: int,
                  priced: bool) -> StagePlan:
    """The select stage: its target of the expected pool (at least one per composition)."""
    n = math.floor(n_in)
    if config.count is not None:
        wanted = float(min(config.count, n))
        note = f"keeps {config.count} (count)"
    else:
        wanted = float(max(1, round(config.fraction * n))) if n else 0.0
        note = f"keeps {config.fraction:g} of the pool (fraction)"
    if config.keep_compositions:
        wanted = max(wanted, float(min(compositions, n)))
        note += ", at least one per composition"
    return StagePlan("select", n_in, min(wanted, n_in), False, note=note + "; the labels "
                     "shrink by the same factor", core_hours=0.0 if priced else None)


def _short_range_stage(formulas: Formulas, relaxed: Population,
                       config: ShortRangeConfig | None, priced: bool,
                       ) -> tuple[StagePlan | None, list[Atoms]]:
    """The short-range stage: its clusters made for real (cheap: no calculator), its
    compressed crystals one per relaxed structure and factor."""
    if config is None or not config.enabled:
        return None, []
    clusters, report = short_range([], config, sorted(formulas.elements))
    kinds = dict(report.notes)
    compressed = _total(relaxed) * len(config.compressions)
    note = ", ".join(f"{kinds[k]} {k}" for k in KINDS[:-1]) + (
        f", {compressed:g} compressed (relaxed x {len(config.compressions)} factors)")
    stage = StagePlan("short_range", _total(relaxed), len(clusters) + compressed, False,
                      note=note + "; labelled with the rest",
                      core_hours=0.0 if priced else None)
    return stage, clusters


def _label_stage(training_set: float, relaxed: float, assumptions: PlanAssumptions) -> StagePlan:
    reused = 0.0 if assumptions.relabel_relaxed else relaxed * assumptions.final_filter_pass
    calls = training_set - reused
    note = "one single point per structure" + (
        "" if assumptions.relabel_relaxed else "; relaxed structures keep their labels")
    return StagePlan("label", training_set, training_set, False, calls, calls, note)
