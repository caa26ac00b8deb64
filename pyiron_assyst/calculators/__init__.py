"""Calculator configs: small frozen values that build a live ASE calculator where it is used.

Stages receive a config, never a live calculator, so nothing unpicklable travels to workers and
the config is part of every cache key and stored run. Any ASE calculator is reachable through
:class:`AseCalculator` by import path.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.core.config import (
    Config,
    ConfigError,
    NotPersistableError,
    freeze,
    import_object,
    require,
)

__all__ = ["EMT", "AseCalculator", "CalculatorConfig", "LennardJones", "Morse"]


class CalculatorConfig(Config):
    """Base of all calculator configs.

    Subclasses implement :meth:`get_calculator`. :meth:`calculator_for` is the hook for settings
    that depend on the structure (k-points, magnetic moments); by default it ignores it.
    """

    def get_calculator(self) -> BaseCalculator:
        """Build a new live ASE calculator."""
        raise NotImplementedError

    def calculator_for(self, atoms: Atoms) -> BaseCalculator:
        """The calculator to use for ``atoms`` (override for structure-dependent settings)."""
        return self.get_calculator()

    def supported_elements(self) -> frozenset[str] | None:
        """The elements this calculator can compute (``None``: any; override where limited)."""
        return None

    def check_elements(self, elements: Iterable[str]) -> None:
        """Raise :class:`ConfigError` before any work if an element cannot be computed.

        The cheap preflight of a run: a calculator that knows what it cannot do says so here,
        instead of failing once per structure deep inside a stage.
        """
        known = self.supported_elements()
        missing = sorted(set(elements) - known) if known is not None else []
        if missing:
            raise ConfigError(f"{type(self).__name__} cannot compute {', '.join(missing)}: it "
                              f"knows {', '.join(sorted(known))}; choose other elements or "
                              "another calculator")

    def repair_policy(self) -> Any:
        """The :class:`~pyiron_assyst.calculators.repair.RepairPolicy` of failed calculations,
        or ``None`` (no repair; the default)."""
        return None

    def with_parameters(self, changes: Mapping[str, Any]) -> CalculatorConfig:
        """A copy with the settings ``changes`` applied (how a repair rule changes a config).

        By default ``changes`` names fields of the config; :class:`AseCalculator` takes keyword
        arguments of its calculator instead.

        Raises
        ------
        ConfigError
            If a name is not a field of this config (or the new value is not allowed).
        """
        names = {f.name for f in fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no settings {unknown}; "
                              f"allowed: {sorted(names)}")
        return replace(self, **dict(changes))  # type: ignore[type-var]


@dataclass(frozen=True)
class EMT(CalculatorConfig):
    """ASE's effective medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O for testing)."""

    fixed_cutoff: bool = True

    def supported_elements(self) -> frozenset[str]:
        from ase.calculators.emt import parameters

        return frozenset(parameters)

    def get_calculator(self) -> BaseCalculator:
        from ase.calculators.emt import EMT as _EMT

        return _EMT(fixed_cutoff=self.fixed_cutoff)


@dataclass(frozen=True)
class Morse(CalculatorConfig):
    """Pair-wise Morse potential, as :class:`ase.calculators.morse.MorsePotential`.

    Parameters
    ----------
    epsilon
        Well depth in eV.
    r0
        Equilibrium distance in Å.
    rho0
        Stiffness, dimensionless (``rho0 = a * r0``).
    rcut1, rcut2
        Start and end of the smooth cutoff, in units of ``r0``.
    """

    epsilon: float = 1.0
    r0: float = 2.5
    rho0: float = 6.0
    rcut1: float = 1.9
    rcut2: float = 2.7

    def __post_init__(self) -> None:
        for name in ("epsilon", "r0", "rho0"):
            value = getattr(self, name)
            require(value > 0, "Morse", name, "> 0", value)
        require(0 < self.rcut1 < self.rcut2, "Morse", "rcut1", "in (0, rcut2)", self.rcut1)

    def get_calculator(self) -> BaseCalculator:
        from ase.calculators.morse import MorsePotential

        return MorsePotential(epsilon=self.epsilon, r0=self.r0, rho0=self.rho0,
                              rcut1=self.rcut1, rcut2=self.rcut2)


@dataclass(frozen=True)
class LennardJones(CalculatorConfig):
    """Lennard-Jones potential, as :class:`ase.calculators.lj.LennardJones`.

    Parameters
    ----------
    sigma
        Zero-crossing distance in Å.
    epsilon
        Well depth in eV.
    rc
        Cutoff in Å (default ``3 * sigma``).
    smooth
        Use ASE's smooth cutoff (``ro = 0.66 * rc``).
    """

    sigma: float = 2.3
    epsilon: float = 0.4
    rc: float | None = None
    smooth: bool = True

    def __post_init__(self) -> None:
        require(self.sigma > 0, "LennardJones", "sigma", "> 0 Å", self.sigma)
        require(self.epsilon > 0, "LennardJones", "epsilon", "> 0 eV", self.epsilon)
        require(self.rc is None or self.rc > self.sigma, "LennardJones", "rc",
                "None or > sigma", self.rc)

    def get_calculator(self) -> BaseCalculator:
        from ase.calculators.lj import LennardJones as _LJ

        return _LJ(sigma=self.sigma, epsilon=self.epsilon, rc=self.rc, smooth=self.smooth)


_CALCULATOR_CLASSES_ONLY = ("ase", "pyiron_assyst")
"""Packages whose allow-listed import paths must name an ASE calculator class: the allow-list
prefix alone would also admit their other functions (``ase.calculators.genericfileio:
read_stdout`` runs any command)."""


@dataclass(frozen=True)
class AseCalculator(CalculatorConfig):
    """Any ASE calculator, named by import path, with keyword arguments.

    Parameters
    ----------
    import_path
        ``"module:Class"`` or ``"module.Class"``; the module must be on the allow-list
        (``ase.calculators``, this package, and prefixes added with
        :func:`~pyiron_assyst.core.config.register_import_prefix`). In ``ase`` and this
        package it must name an ASE calculator class; in a registered package it may also
        name a factory function (e.g. ``"mace.calculators:mace_mp"``).
    kwargs
        Keyword arguments; a dict is accepted and frozen into sorted ``(name, value)`` pairs.
    reuse
        Build the calculator once per worker process and reuse it (for expensive models).
    """

    import_path: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    reuse: bool = False

    def __post_init__(self) -> None:
        require(isinstance(self.kwargs, (Mapping, tuple, list)), "AseCalculator", "kwargs",
                "a mapping of keyword argument names to values", self.kwargs)
        object.__setattr__(self, "kwargs", freeze(self.kwargs))
        for pair in self.kwargs:
            require(isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and pair[0].isidentifier(), "AseCalculator", "kwargs",
                    "a mapping of keyword argument names (identifiers) to values", pair)
        require(len({k for k, _ in self.kwargs}) == len(self.kwargs), "AseCalculator",
                "kwargs", "each keyword argument once", self.kwargs)
        require(isinstance(self.import_path, str) and bool(self.import_path), "AseCalculator",
                "import_path", "'module:Class' of an ASE calculator", self.import_path)
        try:
            cls = import_object(self.import_path)
        except ConfigError as error:
            raise ConfigError(f"AseCalculator.import_path: {error}") from None
        require(callable(cls), "AseCalculator", "import_path", "a callable class", cls)
        module = self.import_path.partition(":")[0] if ":" in self.import_path else (
            self.import_path.rpartition(".")[0])
        if any(module == p or module.startswith(p + ".") for p in _CALCULATOR_CLASSES_ONLY):
            require(isinstance(cls, type) and issubclass(cls, BaseCalculator), "AseCalculator",
                    "import_path", "an ASE calculator class (a path into ase or pyiron_assyst "
                    "names a Calculator subclass, not a function such as genericfileio's "
                    "read_stdout; a factory function needs its package registered with "
                    "register_import_prefix)", self.import_path)
        try:
            hash(self.kwargs)
            json.dumps(self.to_dict(strict=False))
        except (TypeError, ValueError, NotPersistableError) as error:
            raise ConfigError(f"AseCalculator.kwargs must hold numbers, strings, booleans, None "
                              f"and tuples/mappings of them; got {self.kwargs!r} "
                              f"({error})") from None

    def get_calculator(self) -> BaseCalculator:
        if self.reuse:
            return _cached_calculator(self)
        return self._build()

    def with_parameters(self, changes: Mapping[str, Any]) -> AseCalculator:
        """A copy whose calculator gets the keyword arguments ``changes`` (added or replaced).

        The import path is not checked against the allow-list again: it was checked when this
        config was built, and a worker process (where repairs run) does not know prefixes
        registered at run time.
        """
        kwargs = freeze({**dict(self.kwargs), **dict(changes)})
        try:
            hash(kwargs)
        except TypeError:
            raise ConfigError(
                f"AseCalculator.kwargs must hold hashable values; got {kwargs!r}") from None
        new = copy.copy(self)
        object.__setattr__(new, "kwargs", kwargs)
        return new

    def _build(self) -> BaseCalculator:
        # checked against the allow-list at construction; a spawned worker does not know
        # prefixes registered at run time, so it must not check again
        cls = import_object(self.import_path, check_allowed=False)
        return cls(**{k: _thaw(v) for k, v in self.kwargs})


def _thaw(value: Any) -> Any:
    """Tuples of pairs back into dicts are ambiguous; only nested tuples become lists."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@lru_cache(maxsize=8)
def _cached_calculator(config: AseCalculator) -> BaseCalculator:
    return config._build()
