"""Filters: frozen configs that are plain callables ``Atoms -> bool`` (``True`` keeps).

Any callable ``Atoms -> bool`` is a filter; the classes here add a readable :attr:`Filter.name`,
hashing, pickling and a JSON round trip. They combine with ``&`` (:class:`AllOf`), ``|``
(:class:`AnyOf`) and ``~`` (:class:`Not`), also with plain functions (``DistanceFilter(1.0) &
my_check``), and work with the builtin ``filter(DistanceFilter(1.0), structures)``.

:func:`apply_filter` is the filter stage: it keeps the structures that pass and reports every
other one as a :class:`~pyiron_assyst.core.report.Drop` naming the (sub)filter that rejected it.
The pair-distance search behind :class:`DistanceFilter` is :mod:`pyiron_assyst.numerics.distances`.

Units: distances in Å, volumes in Å³/atom, energies in eV/atom, forces in eV/Å.
"""

from __future__ import annotations

import math
import numbers
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from tqdm.auto import tqdm

from pyiron_assyst.core.config import Config, ConfigError, callable_name, require
from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.numerics.distances import has_close_pair

__all__ = [
    "AllOf",
    "And",
    "AnyOf",
    "AspectFilter",
    "DistanceFilter",
    "EnergyFilter",
    "Filter",
    "ForceFilter",
    "FunctionFilter",
    "MissingResultError",
    "Not",
    "Or",
    "VolumeFilter",
    "apply_filter",
    "as_filter",
]

class MissingResultError(ValueError):
    """A result filter met a structure without the result it needs (``missing="error"``)."""


def _fmt(value: float) -> str:
    return format(value, ".6g")


def _is_real(value: Any) -> bool:
    """A real number (numpy scalars included), not a bool and not NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(
        value)


def _floats(config: Config, *fields: str) -> None:
    """Store ``fields`` as Python floats, so that equal configs have equal JSON and hash."""
    for field in fields:
        object.__setattr__(config, field, float(getattr(config, field)))


class Filter(Config, ABC):
    """Base of filter configs: ``filter(atoms) -> bool``, ``True`` keeps the structure.

    Subclasses are frozen dataclasses implementing :meth:`__call__`; they may override
    :attr:`name` (used in drop details) and :meth:`rejected_by`.
    """

    @abstractmethod
    def __call__(self, atoms: Atoms) -> bool:
        """Whether ``atoms`` passes (``True``: keep)."""

    @property
    def name(self) -> str:
        """Short readable description, e.g. ``"volume[10, 30]"``."""
        return type(self).__name__

    def rejected_by(self, atoms: Atoms) -> str | None:
        """Name of the (sub)filter that rejects ``atoms``, or ``None`` if it passes."""
        return None if self(atoms) else self.name

    def __and__(self, other: Any) -> AllOf:
        if not callable(other):
            return NotImplemented
        return AllOf(_flatten(AllOf, (self, other)))

    def __rand__(self, other: Any) -> AllOf:
        if not callable(other):
            return NotImplemented
        return AllOf(_flatten(AllOf, (other, self)))

    def __or__(self, other: Any) -> AnyOf:
        if not callable(other):
            return NotImplemented
        return AnyOf(_flatten(AnyOf, (self, other)))

    def __ror__(self, other: Any) -> AnyOf:
        if not callable(other):
            return NotImplemented
        return AnyOf(_flatten(AnyOf, (other, self)))

    def __invert__(self) -> Filter:
        return Not(self)


def as_filter(value: Filter | Callable[[Atoms], bool]) -> Filter:
    """``value`` itself if it is a :class:`Filter`, else a :class:`FunctionFilter` wrapping it.

    Raises
    ------
    ConfigError
        If ``value`` is not callable.
    """
    if isinstance(value, Filter):
        return value
    require(callable(value), "as_filter", "value", "a Filter or a callable Atoms -> bool", value)
    return FunctionFilter(value)


def _flatten(cls: type, items: Sequence[Any]) -> tuple[Filter, ...]:
    out: list[Filter] = []
    for item in items:
        f = as_filter(item)
        out.extend(f.filters if type(f) is cls else (f,))  # type: ignore[attr-defined]
    return tuple(out)


def _filter_tuple(owner: str, filters: Any) -> tuple[Filter, ...]:
    require(isinstance(filters, (tuple, list)) and len(filters) > 0, owner, "filters",
            "a non-empty tuple of filters or callables", filters)
    for f in filters:
        require(isinstance(f, Filter) or callable(f), owner, "filters",
                "filters or callables Atoms -> bool", f)
    return tuple(as_filter(f) for f in filters)


@dataclass(frozen=True)
class _Combination(Filter):
    """Base of the n-ary combinators: a non-empty tuple of filters joined by ``_symbol``."""

    filters: tuple[Filter, ...]
    _symbol: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", _filter_tuple(type(self).__name__, self.filters))

    @property
    def name(self) -> str:
        return "(" + f" {self._symbol} ".join(f.name for f in self.filters) + ")"


@dataclass(frozen=True)
class AllOf(_Combination):
    """Keeps a structure if every filter keeps it (``a & b``); stops at the first rejection.

    Parameters
    ----------
    filters
        Filters (plain callables are wrapped in :class:`FunctionFilter`), checked in order.
    """

    _symbol: ClassVar[str] = "&"

    def __call__(self, atoms: Atoms) -> bool:
        return all(f(atoms) for f in self.filters)

    def rejected_by(self, atoms: Atoms) -> str | None:
        """The first sub-filter's rejection, else ``None``."""
        for f in self.filters:
            rejected = f.rejected_by(atoms)
            if rejected is not None:
                return rejected
        return None


@dataclass(frozen=True)
class AnyOf(_Combination):
    """Keeps a structure if at least one filter keeps it (``a | b``); stops at the first pass.

    Parameters
    ----------
    filters
        Filters (plain callables are wrapped in :class:`FunctionFilter`), checked in order.
    """

    _symbol: ClassVar[str] = "|"

    def __call__(self, atoms: Atoms) -> bool:
        return any(f(atoms) for f in self.filters)


@dataclass(frozen=True)
class Not(Filter):
    """Keeps exactly the structures that ``filter`` rejects (``~filter``; ``~~f`` is ``f``)."""

    filter: Filter

    def __post_init__(self) -> None:
        require(isinstance(self.filter, Filter) or callable(self.filter), "Not", "filter",
                "a filter or a callable Atoms -> bool", self.filter)
        object.__setattr__(self, "filter", as_filter(self.filter))

    def __call__(self, atoms: Atoms) -> bool:
        return not self.filter(atoms)

    def __invert__(self) -> Filter:
        return self.filter

    @property
    def name(self) -> str:
        return "~" + self.filter.name


And = AllOf
"""Alias of :class:`AllOf`."""
Or = AnyOf
"""Alias of :class:`AnyOf`."""


@dataclass(frozen=True)
class FunctionFilter(Filter):
    """Any callable ``Atoms -> bool`` as a filter.

    Works live with any callable; :attr:`persistable` (JSON) only for module-level functions
    outside ``__main__`` whose module is on the import allow-list when loading.
    """

    func: Callable[[Atoms], bool]

    def __post_init__(self) -> None:
        require(callable(self.func) and not isinstance(self.func, Filter), "FunctionFilter",
                "func", "a callable Atoms -> bool that is not already a Filter", self.func)

    def __call__(self, atoms: Atoms) -> bool:
        return bool(self.func(atoms))

    @property
    def name(self) -> str:
        return callable_name(self.func)


# --------------------------------------------------------------------------- distances


@dataclass(frozen=True)
class DistanceFilter(Filter):
    """Rejects structures with two atoms closer than the sum of their radii.

    A pair (including an atom and its own periodic image, and minimum-image pairs across the
    boundary) is rejected when ``d < r_i + r_j``; ``d == r_i + r_j`` passes. Elements without
    a radius take part in no pair check (any bond involving them is allowed, as a NaN radius
    does in the reference implementation). The neighbour search uses a cutoff equal to the
    largest radius sum among the elements present.

    Parameters
    ----------
    radii
        One radius in Å for every element, or a mapping element symbol -> radius in Å (frozen
        into sorted ``(symbol, radius)`` pairs).
    """

    radii: float | tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if isinstance(self.radii, (Mapping, tuple, list)):
            object.__setattr__(self, "radii", _radius_pairs(self.radii))
        else:
            require(_is_real(self.radii) and math.isfinite(self.radii) and self.radii >= 0,
                    "DistanceFilter", "radii", "a radius >= 0 Å or a mapping element -> radius",
                    self.radii)
            object.__setattr__(self, "radii", float(self.radii))

    @cached_property
    def _table(self) -> np.ndarray:
        table = np.full(len(atomic_numbers) + 1, np.nan)
        if isinstance(self.radii, float):
            table[:] = self.radii
        else:
            for symbol, radius in self.radii:
                table[atomic_numbers[symbol]] = radius
        return table

    def radius(self, symbol: str) -> float | None:
        """Radius of element ``symbol`` in Å, ``None`` if it has none."""
        value = self._table[atomic_numbers[symbol]]
        return None if math.isnan(value) else float(value)

    def __call__(self, atoms: Atoms) -> bool:
        radii = self._table[atoms.numbers]
        checked = ~np.isnan(radii)
        if not checked.any():
            return True
        return not has_close_pair(atoms.positions[checked], radii[checked],
                                  atoms.cell.array, np.asarray(atoms.pbc, dtype=bool))

    @property
    def name(self) -> str:
        if isinstance(self.radii, float):
            return f"distance({_fmt(self.radii)})"
        return "distance(" + ",".join(f"{s}={_fmt(r)}" for s, r in self.radii) + ")"

    def to_tol_matrix(self, prototype: str = "metallic"):  # -> pyxtal.tolerance.Tol_matrix
        """pyxtal tolerance matrix with the pair sums ``r_i + r_j`` in Å (for sampling).

        Elements without a radius get pyxtal's ``prototype`` defaults.
        """
        from pyxtal.tolerance import Tol_matrix

        if isinstance(self.radii, float):
            return Tol_matrix.from_single_value(2.0 * self.radii)
        pairs = [(atomic_numbers[a], atomic_numbers[b], ra + rb)
                 for i, (a, ra) in enumerate(self.radii) for b, rb in self.radii[i:]]
        return Tol_matrix(*pairs, prototype=prototype)


def _radius_pairs(radii: Any) -> tuple[tuple[str, float], ...]:
    try:
        mapping = dict(radii)
    except (TypeError, ValueError):
        raise ConfigError(f"DistanceFilter.radii must be a radius >= 0 Å or a mapping element "
                          f"-> radius; got {radii!r}") from None
    require(len(mapping) > 0, "DistanceFilter", "radii", "a non-empty mapping", radii)
    for symbol, radius in mapping.items():
        require(symbol in atomic_numbers and symbol != "X", "DistanceFilter", "radii",
                "keyed by chemical symbols", symbol)
        require(_is_real(radius) and math.isfinite(radius) and radius >= 0, "DistanceFilter",
                "radii", f"finite radii >= 0 Å (element {symbol})", radius)
    return tuple(sorted((str(s), float(r)) for s, r in mapping.items()))


# --------------------------------------------------------------------------- cell filters


@dataclass(frozen=True)
class AspectFilter(Filter):
    """Rejects cells whose longest periodic cell vector exceeds ``maximum_aspect_ratio`` times
    the shortest.

    Only the cell vectors along periodic directions count (vacuum vectors of slabs and rods
    are ignored); structures with fewer than two periodic directions pass. The ratio uses the
    cell vectors as given, not a reduced cell; ``ratio == maximum_aspect_ratio`` passes and a
    zero-length periodic vector fails.

    Parameters
    ----------
    maximum_aspect_ratio
        Largest allowed ratio of cell vector lengths, >= 1.
    """

    maximum_aspect_ratio: float = 6.0

    def __post_init__(self) -> None:
        require(_is_real(self.maximum_aspect_ratio) and self.maximum_aspect_ratio >= 1,
                "AspectFilter", "maximum_aspect_ratio", "a number >= 1",
                self.maximum_aspect_ratio)
        _floats(self, "maximum_aspect_ratio")

    def __call__(self, atoms: Atoms) -> bool:
        lengths = atoms.cell.lengths()[np.asarray(atoms.pbc, dtype=bool)]
        if len(lengths) < 2:
            return True
        shortest = lengths.min()
        return bool(shortest > 0 and lengths.max() / shortest <= self.maximum_aspect_ratio)

    @property
    def name(self) -> str:
        return f"aspect(<={_fmt(self.maximum_aspect_ratio)})"


@dataclass(frozen=True)
class VolumeFilter(Filter):
    """Keeps structures with ``minimum <= V / N <= maximum`` (cell volume per atom, Å³/atom).

    Only structures periodic in all three directions (and with atoms) are tested; the volume of
    slabs, rods and clusters is not defined, so they pass.

    Parameters
    ----------
    minimum, maximum
        Bounds in Å³/atom, ``0 <= minimum <= maximum``.
    """

    minimum: float = 0.0
    maximum: float = math.inf

    def __post_init__(self) -> None:
        require(_is_real(self.minimum) and 0 <= self.minimum < math.inf, "VolumeFilter",
                "minimum", "a finite number >= 0 Å³/atom", self.minimum)
        require(_is_real(self.maximum) and self.maximum >= self.minimum, "VolumeFilter",
                "maximum", f">= minimum ({self.minimum}) Å³/atom", self.maximum)
        _floats(self, "minimum", "maximum")

    def __call__(self, atoms: Atoms) -> bool:
        if len(atoms) == 0 or not all(atoms.pbc):
            return True
        volume = abs(_triple_product(atoms.cell.array))  # exact for axis-aligned cells
        return bool(self.minimum <= volume / len(atoms) <= self.maximum)

    @property
    def name(self) -> str:
        return f"volume[{_fmt(self.minimum)}, {_fmt(self.maximum)}]"


def _triple_product(cell: np.ndarray) -> float:
    """``a . (b x c)`` of the cell vectors in Å³: ``np.dot(a, np.cross(b, c))`` bit for bit,
    without the cost of ``np.cross`` (the cross product is formed from Python floats, which
    round exactly like numpy's)."""
    a, (b0, b1, b2), (c0, c1, c2) = cell[0], cell[1].tolist(), cell[2].tolist()
    cross = np.array((b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0))
    return float(np.dot(a, cross))


# --------------------------------------------------------------------------- result filters

Missing = Literal["keep", "drop", "error"]


def _result(atoms: Atoms, key: str) -> Any:
    """A stored calculator result for ``atoms`` (never triggers a calculation), else ``None``.

    Results computed for a different geometry (stale) count as missing.
    """
    calc = atoms.calc
    if calc is None or key not in getattr(calc, "results", {}):
        return None
    if getattr(calc, "atoms", None) is not None and calc.check_state(atoms):
        return None
    return calc.results[key]


def _missing(owner: Filter, missing: str, key: str, atoms: Atoms) -> bool:
    if missing == "keep":
        return True
    if missing == "drop":
        return False
    raise MissingResultError(f"{owner.name}: structure {uuid_of(atoms)} has no {key!r} result; "
                             "label it first or set missing='keep' or 'drop'")


def _check_missing(owner: str, missing: str) -> None:
    require(missing in ("keep", "drop", "error"), owner, "missing", "'keep', 'drop' or 'error'",
            missing)


@dataclass(frozen=True)
class EnergyFilter(Filter):
    """Keeps labelled structures with ``minimum <= E / N <= maximum`` (eV/atom).

    Reads the stored result only (never calls a calculator). A NaN energy fails.

    Parameters
    ----------
    minimum, maximum
        Bounds in eV/atom.
    quantity
        ``"energy"`` or ``"free_energy"`` (the force-consistent one used for fitting).
    missing
        Structures without a stored (current) result: ``"error"`` (default; the filter raises
        :class:`MissingResultError`, which :func:`apply_filter` reports as a
        ``"filter_error"`` drop), ``"keep"`` or ``"drop"``.
    """

    minimum: float = -math.inf
    maximum: float = math.inf
    quantity: Literal["energy", "free_energy"] = "energy"
    missing: Missing = "error"

    def __post_init__(self) -> None:
        require(_is_real(self.minimum), "EnergyFilter", "minimum", "a number in eV/atom",
                self.minimum)
        require(_is_real(self.maximum) and self.maximum >= self.minimum, "EnergyFilter",
                "maximum", f">= minimum ({self.minimum}) eV/atom", self.maximum)
        require(self.quantity in ("energy", "free_energy"), "EnergyFilter", "quantity",
                "'energy' or 'free_energy'", self.quantity)
        _check_missing("EnergyFilter", self.missing)
        _floats(self, "minimum", "maximum")

    def __call__(self, atoms: Atoms) -> bool:
        energy = _result(atoms, self.quantity)
        if energy is None:
            return _missing(self, self.missing, self.quantity, atoms)
        return bool(self.minimum <= float(energy) / len(atoms) <= self.maximum)

    @property
    def name(self) -> str:
        label = "energy" if self.quantity == "energy" else "free_energy"
        return f"{label}[{_fmt(self.minimum)}, {_fmt(self.maximum)}]"


@dataclass(frozen=True)
class ForceFilter(Filter):
    """Keeps labelled structures whose largest atomic force ``max_i |F_i| <= maximum`` (eV/Å).

    Reads the stored result only (never calls a calculator). NaN forces fail.

    Parameters
    ----------
    maximum
        Largest allowed force norm in eV/Å, >= 0.
    missing
        Structures without stored (current) forces: ``"error"`` (default), ``"keep"`` or
        ``"drop"``; see :class:`EnergyFilter`.
    """

    maximum: float
    missing: Missing = "error"

    def __post_init__(self) -> None:
        require(_is_real(self.maximum) and self.maximum >= 0, "ForceFilter", "maximum",
                "a number >= 0 eV/Å", self.maximum)
        _check_missing("ForceFilter", self.missing)
        _floats(self, "maximum")

    def __call__(self, atoms: Atoms) -> bool:
        forces = _result(atoms, "forces")
        if forces is None:
            return _missing(self, self.missing, "forces", atoms)
        if len(atoms) == 0:
            return True
        return bool(np.linalg.norm(np.asarray(forces), axis=1).max() <= self.maximum)

    @property
    def name(self) -> str:
        return f"force(<={_fmt(self.maximum)})"


# --------------------------------------------------------------------------- the stage


def apply_filter(structures: list[Atoms], filter: Filter | Callable[[Atoms], bool] | None,
                 stage: str = "filter") -> tuple[list[Atoms], StageReport]:
    """Keep the structures that pass ``filter``; report every other one as a drop.

    Parameters
    ----------
    structures
        Structures to filter; they are neither copied nor modified.
    filter
        A :class:`Filter`, any callable ``Atoms -> bool``, or ``None`` (keep all).
    stage
        Name of the stage in the report.

    Returns
    -------
    kept, report
        The passing structures (the same objects, in input order) and a report whose drops
        have reason ``"filter"`` (detail: the rejecting (sub)filter's name) or
        ``"filter_error"`` (the filter raised; detail: the error).
    """
    start = time.perf_counter()
    check = None if filter is None else as_filter(filter)
    kept: list[Atoms] = []
    drops: list[Drop] = []
    for atoms in tqdm(structures, desc=stage, disable=None, leave=False):
        if check is None:
            kept.append(atoms)
            continue
        try:
            rejected = check.rejected_by(atoms)
        except Exception as error:
            drops.append(Drop(uuid_of(atoms), "filter_error",
                              f"{check.name}: {type(error).__name__}: {error}"))
            continue
        if rejected is None:
            kept.append(atoms)
        else:
            drops.append(Drop(uuid_of(atoms), "filter", rejected))
    return kept, StageReport(stage=stage, n_in=len(structures), n_candidates=len(structures),
                             n_out=len(kept), drops=tuple(drops),
                             wall_time=time.perf_counter() - start)
