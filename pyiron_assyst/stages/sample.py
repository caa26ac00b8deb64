"""Random symmetric crystals over the formula × group grid: :class:`Formulas` and :func:`sample`.

The grid
--------
:func:`sample` draws one structure per grid point ``(formula, group, repeat)``, walked with
formulas outermost, then groups (in the order of :attr:`SampleConfig.spacegroups`), then the
``repeat`` draws of the same pair. Before the grid is built, the formulas are trimmed to
``min_atoms <= atoms <= max_atoms``, zero counts are removed (``{"Cu": 0, "Ag": 2}`` is
``Ag2``), and a composition that appears twice (same :func:`formula_string`) is sampled once —
use ``repeat`` for more draws. Formulas removed this way are not grid points; the report's
``n_in`` still counts every formula given.

Identity and random numbers
---------------------------
A grid point's uuid is ``lineage.root_uuid(seed, formula_string, dim, group, repeat)`` and
pyxtal draws from ``lineage.rng_for(seed, uuid, retry)``. The structure at a grid point is
therefore the same whatever else is in the grid, whatever its position in it, and whatever
executor computes it (serial and parallel runs are bit-identical).

Drop reasons
------------
``incompatible_group``
    pyxtal cannot place the composition on the Wyckoff sites of the group. This is checked
    with pyxtal's own compatibility test in the calling process, without drawing anything, so
    incompatible points never reach a worker.
``generator_timeout``
    pyxtal gave up on the point ("long time to generate") on the first call and on each of
    ``max_retries`` retries (retry ``k`` draws from ``rng_for(seed, uuid, k)``).
``generator_error``
    pyxtal returned atoms closer than the tolerance on every call (it does so now and then,
    mostly for point groups), or raised any other error, or the worker failed; the detail
    holds the error text. Too-close results are retried like timeouts; other errors are not.

None of these is fatal. With ``max_structures = N`` the result is the first ``N`` structures
in grid order; the candidates are the grid points up to and including the one that produced
the ``N``-th structure, and later points are neither computed (beyond one batch of lookahead
for parallel workers, which is discarded) nor reported as drops.

Structures
----------
Bulk crystals (dim 3) are wrapped into their cell. Layers (dim 2), rods (dim 1) and clusters
(dim 0) have ``pbc`` False along their non-periodic directions, whose cell vectors are made
orthogonal to the periodic ones with length = extent of the atoms + ``vacuum`` (Å), the atoms
centred between. ``found_group`` is spglib's space group at ``symprec`` for dim 3 and 0 for
dim < 3 (spglib knows no layer, rod or point groups).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar, NamedTuple, overload

from ase import Atoms
from ase.data import chemical_symbols

from pyiron_assyst.core.config import Config, ConfigError, freeze, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import rng_for, root_uuid, stamp_root
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.execution.executors import Executor, run_tasks
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.stages import _pyxtal

__all__ = ["Formulas", "GridPoint", "SampleConfig", "formula_string", "grid_points", "sample"]

logger = logging.getLogger(__name__)

Formula = tuple[tuple[str, int], ...]
"""One frozen formula: ``(element, count)`` pairs in the order given."""

_ELEMENTS = frozenset(chemical_symbols[1:])


def formula_string(formula: Mapping[str, int] | Iterable[tuple[str, int]]) -> str:
    """Name of a composition in the given element order, zero counts left out.

    >>> formula_string({"Cu": 2, "Ag": 1, "Au": 0})
    'Cu2Ag1'
    """
    pairs = formula.items() if isinstance(formula, Mapping) else formula
    return "".join(f"{element}{count}" for element, count in pairs if count > 0)


def _freeze_formula(formula: Any) -> Formula:
    """Validate one formula (mapping or ``(element, count)`` pairs) and freeze it."""
    items = formula.items() if isinstance(formula, Mapping) else formula
    require(isinstance(items, Iterable) and not isinstance(items, str), "Formulas", "formulas",
            "mappings of element symbol to atom count", formula)
    pairs: list[tuple[str, int]] = []
    for item in items:
        require(isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2,
                "Formulas", "formulas", "mappings of element symbol to atom count", formula)
        element, count = item[0], freeze(item[1])
        require(element in _ELEMENTS, "Formulas", "formulas", "keyed by element symbols",
                element)
        require(isinstance(count, Integral) and not isinstance(count, bool) and count >= 0,
                "Formulas", "formulas", "non-negative integer atom counts", item[1])
        pairs.append((element, int(count)))
    elements = [e for e, _ in pairs]
    require(len(set(elements)) == len(elements), "Formulas", "formulas",
            "formulas naming each element once", formula)
    return tuple(pairs)


@dataclass(frozen=True, repr=False)
class Formulas(Config, Sequence):
    """An ordered collection of chemical formulas, with arithmetic to build it.

    Each formula maps element symbols to atom counts; it is stored frozen as ``(element,
    count)`` pairs in the order given (the order names the formula, ``"Cu2Ag1"``, and is the
    species order pyxtal receives). Iterating yields plain dicts, zero counts included.

    >>> Formulas.range("Cu", 1, 3)
    Formulas(({'Cu': 1}, {'Cu': 2}))
    >>> len(Formulas.range("Cu", 1, 3) * Formulas.range("Ag", 1, 4))
    6

    ``+`` concatenates, ``|`` pairs formulas up (zip, stopping at the shorter), ``*`` is the
    outer product (left operand outermost); ``|`` and ``*`` need disjoint element sets.

    Parameters
    ----------
    formulas
        Mappings element -> count (or ``(element, count)`` pairs); a single mapping is one
        formula.
    """

    formulas: tuple[Formula, ...] = ()

    def __post_init__(self) -> None:
        value = self.formulas
        if isinstance(value, Mapping):
            value = (value,)
        require(isinstance(value, Iterable) and not isinstance(value, str), "Formulas",
                "formulas", "an iterable of mappings of element symbol to atom count", value)
        object.__setattr__(self, "formulas", tuple(_freeze_formula(f) for f in value))

    @classmethod
    def range(cls, elements: str | Iterable[str], *range_args: int) -> Formulas:
        """Formulas with atom counts ``range(*range_args)``; several elements: outer product.

        A count of 0 keeps the element in the formula with no atoms (:func:`sample` ignores
        it); remove such formulas with :meth:`trim`.
        """
        counts = range(*range_args)
        if isinstance(elements, str):
            require(elements in _ELEMENTS, "Formulas", "range", "element symbols", elements)
            return cls(tuple(((elements, n),) for n in counts))
        factors = [cls.range(element, *range_args) for element in elements]
        require(len(factors) > 0, "Formulas", "range", "at least one element", elements)
        total = factors[0]
        for factor in factors[1:]:
            total = total * factor
        return total

    @property
    def elements(self) -> frozenset[str]:
        """All elements named in any formula (zero counts included)."""
        return frozenset(e for formula in self.formulas for e, _ in formula)

    def _check_disjoint(self, other: Formulas, operation: str) -> None:
        shared = self.elements & other.elements
        if shared:
            raise ConfigError(f"Formulas {operation} needs disjoint elements; both name "
                              f"{sorted(shared)}")

    def __add__(self, other: object) -> Formulas:
        if not isinstance(other, Formulas):
            return NotImplemented
        return Formulas(self.formulas + other.formulas)

    def __or__(self, other: object) -> Formulas:
        if not isinstance(other, Formulas):
            return NotImplemented
        self._check_disjoint(other, "'|'")
        return Formulas(tuple(a + b for a, b in zip(self.formulas, other.formulas)))

    def __mul__(self, other: object) -> Formulas:
        if not isinstance(other, Formulas):
            return NotImplemented
        self._check_disjoint(other, "'*'")
        return Formulas(tuple(a + b for a, b in itertools.product(self.formulas,
                                                                   other.formulas)))

    def trim(self, min_atoms: int = 1, max_atoms: int | None = None) -> Formulas:
        """The formulas with ``min_atoms <= total atoms <= max_atoms`` (no upper limit if None)."""
        upper = math.inf if max_atoms is None else max_atoms
        return Formulas(tuple(f for f in self.formulas
                              if min_atoms <= sum(n for _, n in f) <= upper))

    def __len__(self) -> int:
        return len(self.formulas)

    @overload
    def __getitem__(self, index: int) -> dict[str, int]: ...
    @overload
    def __getitem__(self, index: slice) -> Formulas: ...
    def __getitem__(self, index: int | slice) -> dict[str, int] | Formulas:
        if isinstance(index, slice):
            return Formulas(self.formulas[index])
        return dict(self.formulas[index])

    def __iter__(self) -> Iterator[dict[str, int]]:
        return (dict(f) for f in self.formulas)

    def __repr__(self) -> str:
        return f"Formulas({tuple(self)!r})"


def _check_int(owner: str, field: str, value: Any, minimum: int, allowed: str) -> int:
    value = freeze(value)
    require(isinstance(value, Integral) and not isinstance(value, bool) and value >= minimum,
            owner, field, allowed, value)
    return int(value)


def _check_float(owner: str, field: str, value: Any, allowed: str) -> float:
    value = freeze(value)
    require(isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0, owner, field, allowed, value)
    return float(value)


def _freeze_groups(value: Any, dim: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,)
    allowed = f"None or distinct group numbers in 1..{_pyxtal.MAX_GROUP[dim]} for dim={dim}"
    require(isinstance(value, Iterable) and not isinstance(value, str), "SampleConfig",
            "spacegroups", allowed, value)
    groups = tuple(freeze(g) for g in value)
    require(len(groups) > 0 and len(set(groups)) == len(groups), "SampleConfig", "spacegroups",
            allowed, value)
    for g in groups:
        require(isinstance(g, Integral) and not isinstance(g, bool)
                and 1 <= g <= _pyxtal.MAX_GROUP[dim], "SampleConfig", "spacegroups", allowed, g)
    return tuple(int(g) for g in groups)


def _freeze_tolerance(value: Any) -> str | tuple[tuple[str, float], ...]:
    allowed = (f"one of {_pyxtal.TOLERANCE_PROTOTYPES} or a non-empty mapping of element "
               "symbol to radius (Å, > 0)")
    if isinstance(value, str):
        require(value in _pyxtal.TOLERANCE_PROTOTYPES, "SampleConfig", "tolerance", allowed,
                value)
        return value
    if isinstance(value, Mapping):
        value = value.items()
    require(isinstance(value, Iterable), "SampleConfig", "tolerance", allowed, value)
    radii: dict[str, float] = {}
    for item in value:
        require(isinstance(item, Sequence) and len(item) == 2 and item[0] in _ELEMENTS
                and item[0] not in radii, "SampleConfig", "tolerance", allowed, item)
        radii[item[0]] = _check_float("SampleConfig", "tolerance", item[1], allowed)
    require(len(radii) > 0, "SampleConfig", "tolerance", allowed, value)
    return tuple(sorted(radii.items()))


@dataclass(frozen=True)
class SampleConfig(Config):
    """How :func:`sample` walks the formula × group grid.

    Parameters
    ----------
    spacegroups
        Group numbers to sample, in grid order (``None``: all groups of ``dim``). Space groups
        1-230 (dim 3), layer groups 1-80 (dim 2), rod groups 1-75 (dim 1), point groups 1-56
        (dim 0, pyxtal's numbering). A ``range`` or list is frozen to a tuple.
    dim
        Periodic dimensions: 3 bulk, 2 layer, 1 rod, 0 cluster.
    tolerance
        Minimum interatomic distances for pyxtal: a ``Tol_matrix`` prototype name
        (``"metallic"``, ``"atomic"``, ``"molecular"``, ``"vdW"``) or per-element radii in Å
        (mapping accepted, frozen to sorted pairs): atoms ``i`` and ``j`` may be no closer
        than ``r_i + r_j``; pairs involving unlisted elements use the metallic prototype.
    min_atoms, max_atoms
        Atoms per formula unit kept in the grid (inclusive).
    max_structures
        Stop after this many structures, the first ones in grid order (``None``: no limit).
    repeat
        Draws per (formula, group).
    seed
        Config seed of the identities and random streams.
    symprec
        spglib tolerance for ``found_group`` in Å.
    vacuum
        Vacuum in Å added along the non-periodic directions (dim < 3).
    max_retries
        Extra pyxtal calls at a grid point, each with its own stream, after pyxtal gave up
        ("long time to generate") or returned atoms closer than the tolerance.
    """

    single_value_fields: ClassVar[frozenset[str]] = frozenset({"spacegroups"})
    """Fields that also take one value (``spacegroups=225``)."""

    spacegroups: tuple[int, ...] | None = None
    dim: int = 3
    tolerance: str | tuple[tuple[str, float], ...] = "metallic"
    min_atoms: int = 1
    max_atoms: int = 10
    max_structures: int | None = None
    repeat: int = 1
    seed: int = 0
    symprec: float = 1e-3
    vacuum: float = 10.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        name = "SampleConfig"
        dim = freeze(self.dim)
        require(isinstance(dim, Integral) and not isinstance(dim, bool) and dim in (0, 1, 2, 3),
                name, "dim", "one of 0, 1, 2, 3", self.dim)
        values: dict[str, Any] = {
            "dim": int(dim),
            "spacegroups": _freeze_groups(self.spacegroups, int(dim)),
            "tolerance": _freeze_tolerance(self.tolerance),
            "min_atoms": _check_int(name, "min_atoms", self.min_atoms, 1, "an integer >= 1"),
            "repeat": _check_int(name, "repeat", self.repeat, 1, "an integer >= 1"),
            "seed": _check_int(name, "seed", self.seed, 0, "an integer >= 0"),
            "max_retries": _check_int(name, "max_retries", self.max_retries, 0,
                                      "an integer >= 0"),
            "symprec": _check_float(name, "symprec", self.symprec, "a finite number > 0 (Å)"),
            "vacuum": _check_float(name, "vacuum", self.vacuum, "a finite number > 0 (Å)"),
        }
        values["max_atoms"] = _check_int(name, "max_atoms", self.max_atoms, values["min_atoms"],
                                         f"an integer >= min_atoms = {values['min_atoms']}")
        if self.max_structures is not None:
            values["max_structures"] = _check_int(name, "max_structures", self.max_structures,
                                                  1, "None or an integer >= 1")
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def groups(self) -> tuple[int, ...]:
        """The group numbers sampled, in grid order (``spacegroups`` resolved)."""
        if self.spacegroups is None:
            return tuple(range(1, _pyxtal.MAX_GROUP[self.dim] + 1))
        return self.spacegroups


class GridPoint(NamedTuple):
    """One grid point: what a worker needs to draw its structure."""

    formula: Formula
    name: str
    group: int
    repeat: int
    uuid: str


def grid_points(formulas: Formulas, config: SampleConfig) -> list[GridPoint]:
    """Grid points in grid order (formulas, then groups, then repeats); see module docs.

    Compatibility with the group is not checked here (see :func:`sample`); the planner uses
    this to count exactly what sampling will attempt.
    """
    names: set[str] = set()
    points: list[GridPoint] = []
    duplicates = 0
    kept = formulas.trim(config.min_atoms, config.max_atoms)
    if len(kept) < len(formulas):
        logger.warning("sample: %d of %d formulas have fewer than min_atoms=%d or more than "
                       "max_atoms=%d atoms and are not sampled", len(formulas) - len(kept),
                       len(formulas), config.min_atoms, config.max_atoms)
    for formula in kept.formulas:
        pairs = tuple((e, n) for e, n in formula if n > 0)
        name = formula_string(pairs)
        if name in names:
            duplicates += 1
            continue
        names.add(name)
        for group in config.groups:
            for repeat in range(config.repeat):
                uuid = root_uuid(config.seed, name, config.dim, group, repeat)
                points.append(GridPoint(pairs, name, group, repeat, uuid))
    if duplicates:
        logger.warning("sample: %d repeated formulas sampled once each (use repeat for more "
                       "draws)", duplicates)
    return points


def _describe(point: GridPoint, config: SampleConfig) -> str:
    return f"{point.name} in group {point.group} (dim {config.dim}), repeat {point.repeat}"


def _sample_point(task: tuple[SampleConfig, GridPoint, bool]) -> Atoms | Drop | None:
    """Worker: draw the structure of one grid point, or say why there is none (``None``: the
    point is incompatible, checked here if the task's flag asks for it)."""
    config, point, check = task
    species = [e for e, _ in point.formula]
    counts = [n for _, n in point.formula]
    if check and not _pyxtal.is_compatible(counts, point.group, config.dim):
        return None
    reason, last = "generator_error", ""
    for retry in range(config.max_retries + 1):
        try:
            with _pyxtal.quiet():
                crystal = _pyxtal.generate(species, counts, point.group, config.dim,
                                           config.tolerance,
                                           rng_for(config.seed, point.uuid, retry))
                atoms = _pyxtal.to_atoms(crystal, config.vacuum)
                close = _pyxtal.too_close(atoms, config.tolerance)
        except _pyxtal.GeneratorTimeout as error:
            reason, last = "generator_timeout", f"pyxtal gave up: {error}"
            continue
        except Exception as error:  # pyxtal fails in many ways; never fatal for the stage
            return Drop(point.uuid, "generator_error",
                        f"{_describe(point, config)}: {type(error).__name__}: {error}")
        if close:
            reason, last = "generator_error", f"pyxtal returned atoms too close: {close}"
            continue
        return _annotate(atoms, point, config)
    return Drop(point.uuid, reason, f"{_describe(point, config)}, "
                f"{config.max_retries + 1} call(s), last: {last}")


def _annotate(atoms: Atoms, point: GridPoint, config: SampleConfig) -> Atoms:
    """Write the sample info keys and the root identity."""
    found = _pyxtal.found_group(atoms, config.symprec) if config.dim == 3 else 0
    set_info(atoms, "formula", point.name)
    set_info(atoms, "dim", config.dim)
    set_info(atoms, "requested_group", point.group)
    set_info(atoms, "found_group", found)
    set_info(atoms, "symprec", config.symprec)
    set_info(atoms, "repeat", point.repeat)
    return stamp_root(atoms, point.uuid)


class _Walker:
    """Computes grid outcomes batch by batch, in grid order."""

    def __init__(self, grid: list[GridPoint], config: SampleConfig, executor: Executor) -> None:
        self.grid, self.config, self.executor = grid, config, executor
        self._compatible: dict[tuple[tuple[int, ...], int], bool] = {}

    def compatible(self, point: GridPoint) -> bool:
        key = (tuple(n for _, n in point.formula), point.group)
        if key not in self._compatible:
            self._compatible[key] = _pyxtal.is_compatible(key[0], point.group, self.config.dim)
        return self._compatible[key]

    def outcomes(self, start: int, wanted: int | None) -> list[Atoms | Drop]:
        """Outcomes of ``grid[start:stop]``, ``stop`` chosen to hold enough drawable points."""
        if wanted is None:
            return self._all(start)
        lookahead = None if wanted is None else max(wanted, self.executor.workers)
        stop, todo = start, []
        while stop < len(self.grid) and (lookahead is None or len(todo) < lookahead):
            if self.compatible(self.grid[stop]):
                todo.append(stop)
            stop += 1
        tasks = [(self.config, self.grid[i], False) for i in todo]
        results = dict(zip(todo, run_tasks(_sample_point, tasks, self.executor, desc="sample")))
        return [self._outcome(i, results.get(i)) for i in range(start, stop)]

    def _all(self, start: int) -> list[Atoms | Drop]:
        """Outcomes of ``grid[start:]``, the compatibility checks done by the workers.

        Building pyxtal's ``Group`` of a space group (5 ms) is most of a check; the workers
        build it anyway to draw, so checking there saves the driver's serial pass. Points go
        out ordered by group, so that a chunk of tasks needs few groups.
        """
        todo = sorted(range(start, len(self.grid)), key=lambda i: (self.grid[i].group, i))
        tasks = [(self.config, self.grid[i], True) for i in todo]
        results = dict(zip(todo, run_tasks(_sample_point, tasks, self.executor, desc="sample")))
        return [self._outcome(i, results[i]) for i in range(start, len(self.grid))]

    def _outcome(self, index: int, result: Atoms | Drop | TaskError | None) -> Atoms | Drop:
        point = self.grid[index]
        if result is None:
            return Drop(point.uuid, "incompatible_group",
                        f"{_describe(point, self.config)}: no Wyckoff-site combination holds "
                        f"{point.name}")
        if isinstance(result, TaskError):
            reason = "generator_timeout" if result.reason == "timeout" else "generator_error"
            return Drop(point.uuid, reason,
                        f"{_describe(point, self.config)}: worker failed: {result}")
        return result


def sample(formulas: Formulas | Iterable[Mapping[str, int]], config: SampleConfig,
           executor: Executor | None = None) -> tuple[list[Atoms], StageReport]:
    """Draw random symmetric crystals over the formula × group grid (see module docs).

    Parameters
    ----------
    formulas
        Compositions to sample (a :class:`Formulas` or an iterable of mappings).
    config
        Grid, tolerance, limits and seed.
    executor
        Where the pyxtal calls run (default: serially in this process).

    Returns
    -------
    structures, report
        The structures in grid order, and the stage report (``n_in``: formulas given,
        ``n_candidates``: grid points attempted, drops with reasons).
    """
    start_time = time.perf_counter()
    formulas = formulas if isinstance(formulas, Formulas) else Formulas(tuple(formulas))
    walker = _Walker(grid_points(formulas, config), config, executor or Executor(kind="serial"))
    limit = config.max_structures
    structures: list[Atoms] = []
    drops: list[Drop] = []
    position = 0
    while position < len(walker.grid) and (limit is None or len(structures) < limit):
        for outcome in walker.outcomes(position, None if limit is None
                                       else limit - len(structures)):
            position += 1
            if isinstance(outcome, Drop):
                drops.append(outcome)
            else:
                structures.append(outcome)
                if limit is not None and len(structures) == limit:
                    break
    report = StageReport(stage="sample", n_in=len(formulas), n_candidates=position,
                         n_out=len(structures), drops=tuple(drops),
                         wall_time=time.perf_counter() - start_time)
    return structures, report
