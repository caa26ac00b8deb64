"""Perturbations: frozen configs that make a new, randomly displaced or strained structure.

A perturbation's :meth:`~Perturbation.apply` takes a structure and a
:class:`numpy.random.Generator` and returns a *new* structure (the input is never modified).
The stage :func:`perturb` supplies the generator from :func:`~pyiron_assyst.core.lineage.rng_for`,
seeded by the config ``seed``, the child's derived uuid and the retry index, so the output is
bit-identical for the same input and seed, whatever else is in the batch.

Perturbations chain with ``+`` (:class:`Series`), pick randomly with :class:`RandomChoice`,
and any callable becomes one through :class:`FunctionPerturbation`. Lengths are in Å, strains
dimensionless.

The stage functions :func:`perturb` and :func:`perturb_with` live in
:mod:`pyiron_assyst.stages.perturb` and are importable from here; their config
:class:`PerturbConfig` is defined here.
"""

from __future__ import annotations

import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from pyiron_assyst.core.config import Config, ConfigError, callable_name, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.stages.filters import Filter, as_filter

__all__ = [
    "ElementScaledRattle",
    "FunctionPerturbation",
    "PerturbConfig",
    "Perturbation",
    "PerturbationSkip",
    "RandomChoice",
    "Rattle",
    "Series",
    "Stretch",
    "as_perturbation",
]


class PerturbationSkip(Exception):
    """Raised by :meth:`Perturbation.apply` for a structure it does not apply to by design.

    :func:`perturb` drops the candidate with ``reason`` (e.g. ``"one_atom_cell"``) and does
    not retry it.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _fmt(value: float) -> str:
    return format(value, ".6g")


def _is_real(value: Any) -> bool:
    """A finite real number (numpy scalars included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(
        value)


def _floats(config: Config, *fields: str) -> None:
    """Store ``fields`` as Python floats, so that equal configs have equal JSON and hash."""
    for field in fields:
        object.__setattr__(config, field, float(getattr(config, field)))


class Perturbation(Config, ABC):
    """Base of perturbation configs.

    Subclasses are frozen dataclasses implementing :meth:`apply`; ``a + b`` is
    :class:`Series` ``(a, b)``. Calling a perturbation, ``p(atoms, rng)``, is :meth:`apply` with
    ``rng`` passed through :func:`numpy.random.default_rng` (a seed, a generator or ``None``).
    """

    @abstractmethod
    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        """A new perturbed structure made from ``atoms`` (which is not modified).

        Raises
        ------
        PerturbationSkip
            If the perturbation does not apply to ``atoms`` by design.
        """

    def _apply_owned(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        """:meth:`apply` to a private copy that this call may modify and return.

        :class:`Series` hands every member after the first the previous member's new structure
        this way, so that the built-in perturbations copy it only once. The default copies
        anyway (through :meth:`apply`); the result is the same.
        """
        return self.apply(atoms, rng)

    @property
    def name(self) -> str:
        """Short readable description, e.g. ``"rattle(0.1)"``."""
        return type(self).__name__

    def __call__(self, atoms: Atoms, rng: np.random.Generator | int | None = None) -> Atoms:
        return self.apply(atoms, np.random.default_rng(rng))

    def __add__(self, other: Any) -> Series:
        if not callable(other):
            return NotImplemented
        return Series(_flatten((self, other)))

    def __radd__(self, other: Any) -> Series:
        if not callable(other):
            return NotImplemented
        return Series(_flatten((other, self)))


def as_perturbation(value: Perturbation | Callable[..., Atoms]) -> Perturbation:
    """``value`` itself if it is a :class:`Perturbation`, else a :class:`FunctionPerturbation`.

    Raises
    ------
    ConfigError
        If ``value`` is not callable.
    """
    if isinstance(value, Perturbation):
        return value
    require(callable(value), "as_perturbation", "value",
            "a Perturbation or a callable (Atoms[, rng]) -> Atoms", value)
    return FunctionPerturbation(value)


def _flatten(items: Sequence[Any]) -> tuple[Perturbation, ...]:
    out: list[Perturbation] = []
    for item in items:
        p = as_perturbation(item)
        out.extend(p.perturbations if isinstance(p, Series) else (p,))
    return tuple(out)


def _prepare(atoms: Atoms, supercell: bool, owned: bool = False) -> Atoms:
    """A copy of ``atoms`` (``atoms`` itself if ``owned``); one-atom cells are repeated 2x per
    periodic direction or skipped."""
    new = atoms if owned else atoms.copy()
    if len(new) != 1:
        return new
    if not supercell:
        raise PerturbationSkip("one_atom_cell",
                               "rattling one atom only translates it; use supercell=True")
    if not new.pbc.any():
        raise PerturbationSkip("one_atom_cell", "a lone atom without periodic directions")
    new = new.repeat([2 if periodic else 1 for periodic in new.pbc])
    set_info(new, "supercell", 2)
    return new


def _check_sigma(owner: str, sigma: Any, unit: str) -> None:
    require(_is_real(sigma) and sigma > 0, owner, "sigma", f"a finite number > 0{unit}", sigma)


@dataclass(frozen=True)
class Rattle(Perturbation):
    """Displace every atom by Gaussian noise, standard deviation ``sigma`` (Å) per Cartesian
    component.

    Parameters
    ----------
    sigma
        Standard deviation in Å, > 0.
    supercell
        One-atom cells (where a rattle is only a translation): if ``True``, repeat them 2x
        along each periodic direction first (info ``"supercell" = 2``); if ``False``, they
        are skipped (:func:`perturb` drops them with reason ``"one_atom_cell"``).
    """

    sigma: float
    supercell: bool = False

    def __post_init__(self) -> None:
        _check_sigma("Rattle", self.sigma, " Å")
        _floats(self, "sigma")
        require(isinstance(self.supercell, bool), "Rattle", "supercell", "a bool",
                self.supercell)

    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._rattle(_prepare(atoms, self.supercell), rng)

    def _apply_owned(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._rattle(_prepare(atoms, self.supercell, owned=True), rng)

    def _rattle(self, new: Atoms, rng: np.random.Generator) -> Atoms:
        displacement = rng.normal(0.0, self.sigma, size=(len(new), 3))
        new.set_positions(new.positions + displacement, apply_constraint=False)
        return new

    @property
    def name(self) -> str:
        return f"rattle({_fmt(self.sigma)}{', supercell' if self.supercell else ''})"


@dataclass(frozen=True)
class ElementScaledRattle(Perturbation):
    """Gaussian displacements with standard deviation ``sigma * reference[element]`` (Å).

    Parameters
    ----------
    sigma
        Relative standard deviation (dimensionless), > 0.
    reference
        Reference length in Å per element symbol (e.g. the nearest-neighbour distance); a
        mapping is accepted and frozen into sorted ``(symbol, length)`` pairs. A structure with
        an element missing here fails (:func:`perturb` drops it with reason
        ``"perturbation_error"``).
    supercell
        Handling of one-atom cells, as in :class:`Rattle`.
    """

    sigma: float
    reference: tuple[tuple[str, float], ...]
    supercell: bool = False

    def __post_init__(self) -> None:
        _check_sigma("ElementScaledRattle", self.sigma, "")
        _floats(self, "sigma")
        object.__setattr__(self, "reference", _reference_pairs(self.reference))
        require(isinstance(self.supercell, bool), "ElementScaledRattle", "supercell", "a bool",
                self.supercell)

    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._rattle(atoms, rng, owned=False)

    def _apply_owned(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._rattle(atoms, rng, owned=True)

    def _rattle(self, atoms: Atoms, rng: np.random.Generator, owned: bool) -> Atoms:
        lengths = dict(self.reference)
        missing = sorted(set(atoms.get_chemical_symbols()) - set(lengths))
        if missing:
            raise ValueError(f"ElementScaledRattle.reference has no length for {missing}")
        new = _prepare(atoms, self.supercell, owned)
        sigma = self.sigma * np.array([lengths[s] for s in new.get_chemical_symbols()])
        displacement = rng.normal(0.0, 1.0, size=(len(new), 3)) * sigma[:, None]
        new.set_positions(new.positions + displacement, apply_constraint=False)
        return new

    @property
    def name(self) -> str:
        return f"scaled_rattle({_fmt(self.sigma)}{', supercell' if self.supercell else ''})"


def _reference_pairs(reference: Any) -> tuple[tuple[str, float], ...]:
    owner = "ElementScaledRattle"
    try:
        mapping = dict(reference) if isinstance(reference, (Mapping, tuple, list)) else None
    except (TypeError, ValueError):
        mapping = None
    if mapping is None:
        raise ConfigError(f"{owner}.reference must be a mapping element -> length in Å; "
                          f"got {reference!r}")
    require(len(mapping) > 0, owner, "reference", "a non-empty mapping", reference)
    for symbol, length in mapping.items():
        require(symbol in atomic_numbers and symbol != "X", owner, "reference",
                "keyed by chemical symbols", symbol)
        require(_is_real(length) and length > 0, owner, "reference",
                f"finite lengths > 0 Å (element {symbol})", length)
    return tuple(sorted((str(s), float(v)) for s, v in mapping.items()))


@dataclass(frozen=True)
class Stretch(Perturbation):
    """Random symmetric strain of the periodic directions; atoms move with the cell.

    The deformation is ``F = 1 + e`` with ``e`` symmetric: each diagonal ``e_ii`` has a
    magnitude uniform in ``[minimum_strain, hydro]``, each off-diagonal ``e_ij = e_ji`` one
    uniform in ``[minimum_strain, shear]``, each with a random sign. A maximum of 0 leaves
    those components at 0. Cell and positions become ``cell @ F`` and ``positions @ F``.

    Only periodic directions are strained: for slabs and rods the strain acts in the span of
    the periodic cell vectors and is the identity perpendicular to it; structures without a
    periodic direction are skipped (reason ``"no_periodic_direction"``). Draws whose ``F`` is
    not positive definite (which would flatten or invert the cell) are redrawn.

    Parameters
    ----------
    hydro
        Largest diagonal strain magnitude, in [0, 1).
    shear
        Largest off-diagonal strain magnitude, in [0, 1); ``hydro`` and ``shear`` are not
        both 0.
    minimum_strain
        Smallest strain magnitude of every drawn component, in [0, hydro] and [0, shear]
        (where those are > 0), so that no component is negligibly small.
    """

    hydro: float
    shear: float
    minimum_strain: float = 1e-3

    def __post_init__(self) -> None:
        for field in ("hydro", "shear"):
            value = getattr(self, field)
            require(_is_real(value) and 0 <= value < 1, "Stretch", field, "a number in [0, 1)",
                    value)
        require(self.hydro > 0 or self.shear > 0, "Stretch", "hydro",
                "> 0 when shear is 0 (a stretch needs some strain)", self.hydro)
        require(_is_real(self.minimum_strain) and self.minimum_strain >= 0, "Stretch",
                "minimum_strain", "a number >= 0", self.minimum_strain)
        for field in ("hydro", "shear"):
            value = getattr(self, field)
            require(value == 0 or self.minimum_strain <= value, "Stretch", "minimum_strain",
                    f"<= {field} ({value}) when {field} > 0", self.minimum_strain)
        _floats(self, "hydro", "shear", "minimum_strain")

    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._stretch(atoms, rng, owned=False)

    def _apply_owned(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._stretch(atoms, rng, owned=True)

    def _stretch(self, atoms: Atoms, rng: np.random.Generator, owned: bool) -> Atoms:
        periodic = np.asarray(atoms.pbc, dtype=bool)
        if not periodic.any():
            raise PerturbationSkip("no_periodic_direction", "nothing to strain in a cluster")
        new = atoms if owned else atoms.copy()
        deformation = self._deformation(new.cell.array[periodic], rng)
        new.set_cell(new.cell.array @ deformation, scale_atoms=False)
        new.set_positions(new.positions @ deformation, apply_constraint=False)
        return new

    def _deformation(self, periodic_vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``F`` (3x3) in Cartesian coordinates, straining only the span of the vectors."""
        k = len(periodic_vectors)
        basis = None if k == 3 else np.linalg.qr(periodic_vectors.T, mode="complete")[0]
        for _ in range(100):
            strain = self._strain(k, rng)
            if np.linalg.eigvalsh(strain).min() > 0:
                if basis is None:  # bulk: the Cartesian frame is the strain frame
                    return strain
                local = np.eye(3)
                local[:k, :k] = strain
                return basis @ local @ basis.T
        raise ValueError(f"{self.name}: no positive definite deformation in 100 draws")

    def _strain(self, k: int, rng: np.random.Generator) -> np.ndarray:
        upper, diagonal = _strain_indices(k)
        deformation = np.zeros((k, k))
        deformation[upper] = self._components(self.shear, len(upper[0]), rng)
        deformation += deformation.T
        deformation[diagonal] = 1.0 + self._components(self.hydro, k, rng)
        return deformation

    def _components(self, maximum: float, size: int, rng: np.random.Generator) -> np.ndarray:
        if maximum == 0 or size == 0:
            return np.zeros(size)
        magnitude = rng.uniform(self.minimum_strain, maximum, size=size)
        # the very draws of rng.choice((-1.0, 1.0), size=size), without its overhead
        return magnitude * _SIGNS[rng.integers(0, 2, size=size)]

    @property
    def name(self) -> str:
        return f"stretch(hydro={_fmt(self.hydro)}, shear={_fmt(self.shear)})"


_SIGNS = np.array((-1.0, 1.0))
_SIGNS.setflags(write=False)


@lru_cache(maxsize=4)
def _strain_indices(k: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Upper-triangle and diagonal indices of a ``k`` x ``k`` strain (read-only, cached)."""
    indices = (np.triu_indices(k, 1), np.diag_indices(k))
    for part in indices:
        for array in part:
            array.setflags(write=False)
    return indices


def _member(owner: str, field: str, value: Any) -> Perturbation:
    require(isinstance(value, Perturbation) or callable(value), owner, field,
            "a Perturbation or a callable (Atoms[, rng]) -> Atoms", value)
    return as_perturbation(value)


@dataclass(frozen=True)
class Series(Perturbation):
    """Apply ``perturbations`` in order, sharing one random stream (``a + b + c``).

    Parameters
    ----------
    perturbations
        Non-empty tuple of perturbations (callables are wrapped).
    """

    perturbations: tuple[Perturbation, ...]

    def __post_init__(self) -> None:
        require(isinstance(self.perturbations, (tuple, list)) and len(self.perturbations) > 0,
                "Series", "perturbations", "a non-empty tuple of perturbations",
                self.perturbations)
        object.__setattr__(self, "perturbations", tuple(
            _member("Series", "perturbations", p) for p in self.perturbations))

    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        first, *rest = self.perturbations
        atoms = first.apply(atoms, rng)
        for p in rest:  # each member after the first works on its predecessor's new structure
            atoms = p._apply_owned(atoms, rng)
        return atoms

    def _apply_owned(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        for p in self.perturbations:
            atoms = p._apply_owned(atoms, rng)
        return atoms

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.perturbations)


@dataclass(frozen=True)
class RandomChoice(Perturbation):
    """Apply ``b`` with probability ``chance`` and ``a`` otherwise.

    One uniform draw ``u`` in [0, 1) from the structure's stream decides: ``b`` if
    ``u < chance``, else ``a`` (so ``chance=0`` always applies ``a``, ``chance=1`` always
    ``b``); the chosen perturbation then continues on the same stream.

    Parameters
    ----------
    a, b
        The alternatives (callables are wrapped).
    chance
        Probability of ``b``, in [0, 1].
    """

    a: Perturbation
    b: Perturbation
    chance: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _member("RandomChoice", "a", self.a))
        object.__setattr__(self, "b", _member("RandomChoice", "b", self.b))
        require(_is_real(self.chance) and 0 <= self.chance <= 1, "RandomChoice", "chance",
                "a probability in [0, 1]", self.chance)
        _floats(self, "chance")

    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._choose(atoms, rng, owned=False)

    def _apply_owned(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        return self._choose(atoms, rng, owned=True)

    def _choose(self, atoms: Atoms, rng: np.random.Generator, owned: bool) -> Atoms:
        chosen = self.b if rng.random() < self.chance else self.a
        child = chosen._apply_owned(atoms, rng) if owned else chosen.apply(atoms, rng)
        set_info(child, "perturbation_applied", chosen.name)
        return child

    @property
    def name(self) -> str:
        return f"choice({self.a.name}, {self.b.name}, chance={_fmt(self.chance)})"


@dataclass(frozen=True)
class FunctionPerturbation(Perturbation):
    """Any callable ``(atoms, rng) -> Atoms`` or ``atoms -> Atoms`` as a perturbation.

    The callable receives a *copy* of the structure (it may modify and return it) and must
    return an :class:`~ase.Atoms`; anything else is an error. It should draw random numbers
    only from ``rng`` so that results are reproducible.

    Works live with any callable; :attr:`persistable` (JSON) only for module-level functions
    outside ``__main__``.

    Parameters
    ----------
    func
        The callable.
    takes_rng
        Whether ``func`` takes the generator as second positional argument. ``None``
        (default) decides from its signature: ``True`` if it has a second positional
        parameter without a default or one named ``rng``.
    """

    func: Callable[..., Atoms]
    takes_rng: bool | None = None

    def __post_init__(self) -> None:
        require(callable(self.func) and not isinstance(self.func, Perturbation),
                "FunctionPerturbation", "func",
                "a callable (Atoms[, rng]) -> Atoms that is not already a Perturbation",
                self.func)
        if self.takes_rng is None:
            object.__setattr__(self, "takes_rng", _takes_rng(self.func))
        require(isinstance(self.takes_rng, bool), "FunctionPerturbation", "takes_rng",
                "True, False or None", self.takes_rng)

    def apply(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        copy = atoms.copy()
        result = self.func(copy, rng) if self.takes_rng else self.func(copy)
        if not isinstance(result, Atoms):
            raise TypeError(f"{self.name} returned {type(result).__name__}, not ase.Atoms")
        return result

    @property
    def name(self) -> str:
        return callable_name(self.func)


def _takes_rng(func: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        raise ConfigError(f"FunctionPerturbation.takes_rng must be given for {func!r}: its "
                          "signature cannot be inspected") from None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 and (positional[1].default is inspect.Parameter.empty
                                     or positional[1].name == "rng")


# --------------------------------------------------------------------------- the stage config

_PUBLISHED = (
    (Rattle(0.25) + Stretch(hydro=0.05, shear=0.005),) * 4
    + (RandomChoice(Stretch(hydro=0.80, shear=0.05), Stretch(hydro=0.05, shear=0.20),
                    chance=0.3),) * 4
)


@dataclass(frozen=True)
class PerturbConfig(Config):
    """Everything :func:`perturb` needs, as one frozen config (the node input).

    Parameters
    ----------
    perturbations
        One perturbation or a tuple of them (callables are wrapped); each makes one child per
        parent, equal entries make distinct copies. Default: the published set, four
        ``Rattle(0.25 Å) + Stretch(5 %, 0.5 %)`` and four stretches that are mostly
        hydrostatic (up to 80 %, 70 % of draws) or mostly shear (up to 20 %).
    filter
        A :class:`~pyiron_assyst.stages.filters.Filter` (callables are wrapped) each child must
        pass,
        or ``None``.
    retries
        Attempts per child, >= 1.
    seed
        Config seed of the random streams.
    """

    single_value_fields: ClassVar[frozenset[str]] = frozenset({"perturbations"})
    """Fields that also take one value (``perturbations=Rattle(0.1)``)."""

    perturbations: tuple[Perturbation, ...] = _PUBLISHED
    filter: Filter | None = None
    retries: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        perturbations = self.perturbations
        if isinstance(perturbations, Perturbation) or not isinstance(perturbations,
                                                                     (tuple, list)):
            perturbations = (perturbations,)
        require(len(perturbations) > 0, "PerturbConfig", "perturbations",
                "a non-empty tuple of perturbations", self.perturbations)
        object.__setattr__(self, "perturbations", tuple(
            _member("PerturbConfig", "perturbations", p) for p in perturbations))
        if self.filter is not None:
            require(callable(self.filter), "PerturbConfig", "filter",
                    "None, a Filter or a callable Atoms -> bool", self.filter)
            object.__setattr__(self, "filter", as_filter(self.filter))
        for field in ("retries", "seed"):
            value = getattr(self, field)
            require(isinstance(value, numbers.Integral) and not isinstance(value, bool),
                    "PerturbConfig", field, "an int", value)
            object.__setattr__(self, field, int(value))
        require(self.retries >= 1, "PerturbConfig", "retries", "an int >= 1", self.retries)
