"""Calculator settings that depend on the structure: k-points, magnetic moments, spin.

Production DFT needs per-structure parameters: a k-point mesh that follows the cell, initial
magnetic moments per element, and spin-polarised isolated atoms (for reference energies). The one
hook for this is :meth:`~pyiron_assyst.calculators.CalculatorConfig.calculator_for`;
:class:`StructureSettings` implements it for any calculator config by wrapping it::

    from pyiron_assyst.calculators import AseCalculator
    from pyiron_assyst.calculators.structure_settings import StructureSettings

    vasp = AseCalculator("ase.calculators.vasp:Vasp", {"xc": "PBE", "encut": 520, "ismear": 1})
    dft = StructureSettings(vasp, kpoint_density=5.0, magmoms={"Fe": 2.5},
                            spin_parameters={"ispin": 2})

Every structure then gets the Monkhorst-Pack mesh :func:`kpoints_from_density` derives from its
cell (passed as the calculator keyword ``kpoints_parameter``, ``"kpts"`` for the ASE DFT
calculators), initial magnetic moments from ``magmoms`` (on the atoms, as ASE's calculators read
them), and ``spin_parameters`` when it is spin-polarised. A single atom whose periodic images are
at least ``isolated_distance`` away is an *isolated atom*: it gets a Γ-only mesh and, with
``isolated_spin_polarized``, a spin-polarised calculation with ``isolated_magmoms`` (default:
ASE's ground-state moments of the free atoms, ``ase.data.ground_state_magnetic_moments``).

:meth:`StructureSettings.prepare` returns a copy of a structure with the derived values recorded:
the moments as the per-atom array ``initial_magmoms`` (μB) and the info keys in
:data:`SETTINGS_KEYS`. The label stage calls it (through :func:`prepare_structure`) on every
structure before it is evaluated, so a labelled structure says how it was computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.data import atomic_numbers, ground_state_magnetic_moments

from pyiron_assyst.calculators import AseCalculator, CalculatorConfig, _thaw
from pyiron_assyst.core.config import ConfigError, freeze, import_object, require
from pyiron_assyst.core.info_keys import INFO_KEYS, set_info

__all__ = [
    "KPOINT_DENSITY",
    "KPOINT_MESH",
    "SETTINGS_KEYS",
    "SPIN_POLARIZED",
    "Derived",
    "StructureSettings",
    "derive_settings",
    "is_isolated_atom",
    "kpoints_from_density",
    "moment_pairs",
    "prepare_structure",
    "record_info",
    "record_settings",
]

KPOINT_MESH = "kpoint_mesh"
"""Info key (str): the Monkhorst-Pack mesh used, e.g. ``"6 6 4"``."""
KPOINT_DENSITY = "kpoint_density"
"""Info key (float, Å): the k-point density the mesh was derived from."""
SPIN_POLARIZED = "spin_polarized"
"""Info key (bool): whether the calculation was spin-polarised."""
SETTINGS_KEYS = (KPOINT_MESH, KPOINT_DENSITY, SPIN_POLARIZED)
"""Info keys written by :meth:`StructureSettings.prepare` (to be declared in ``info_keys``)."""


def record_info(atoms: Atoms, key: str, value: Any) -> None:
    """Write ``atoms.info[key]``: checked through :func:`set_info` once ``key`` is declared.

    Keys this module and the label stage introduce are written directly until they are
    declared in :mod:`pyiron_assyst.core.info_keys`; afterwards every write is type-checked.
    """
    if key in INFO_KEYS:
        set_info(atoms, key, value)
    else:
        atoms.info[key] = value


def kpoints_from_density(cell: Any, density: float, pbc: Any = (True, True, True),
                         even: bool = False) -> tuple[int, int, int]:
    """Monkhorst-Pack mesh with at least ``density`` k-points per Å⁻¹ along each direction.

    Along a periodic direction ``i`` the mesh has ``ceil(2π |b_i| density)`` points, where
    ``b_i`` is the reciprocal vector without the factor 2π (``cell.reciprocal()``); a
    non-periodic direction has 1. This is ASE's ``kptdensity2monkhorstpack`` convention
    (``kpts={"density": ...}``); a VASP ``KSPACING`` of ``s`` Å⁻¹ corresponds to a density of
    ``1 / s`` Å.

    Parameters
    ----------
    cell
        3×3 cell in Å (rows are the cell vectors), or an ``ase.cell.Cell``.
    density
        k-points per Å⁻¹ of reciprocal length (unit: Å), > 0.
    pbc
        Periodic directions.
    even
        Round every periodic direction up to an even number.
    """
    if not (isinstance(density, (int, float)) and math.isfinite(density) and density > 0):
        raise ValueError(f"kpoints_from_density: density must be a number > 0 Å; got {density!r}")
    cell = np.asarray(cell, dtype=float)
    reciprocal = np.linalg.pinv(cell).T  # rows: b_i with a_i . b_j = δ_ij (ASE's reciprocal)
    mesh = []
    for direction in range(3):
        if not bool(np.asarray(pbc)[direction]):
            mesh.append(1)
            continue
        k = 2 * math.pi * float(np.sqrt((reciprocal[direction] ** 2).sum())) * density
        n = math.ceil(k)
        mesh.append(2 * math.ceil(k / 2) if even else max(1, n))
    return mesh[0], mesh[1], mesh[2]


def is_isolated_atom(atoms: Atoms, distance: float) -> bool:
    """Whether ``atoms`` is one atom whose periodic images are all at least ``distance`` Å away."""
    if len(atoms) != 1:
        return False
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return True
    cell = atoms.cell.array[pbc]
    if np.linalg.matrix_rank(cell) < len(cell):
        return False
    from ase.geometry import minkowski_reduce

    if pbc.all():
        cell = np.asarray(minkowski_reduce(cell)[0])
    return bool(np.linalg.norm(cell, axis=1).min() >= distance)


@dataclass(frozen=True)
class Derived:
    """What :class:`StructureSettings` derives for one structure.

    Parameters
    ----------
    kpts
        Monkhorst-Pack mesh, or ``None`` if no k-points are set.
    magmoms
        Initial magnetic moment per atom in μB, or ``None`` if none are set.
    spin_polarized
        Whether the calculation is spin-polarised.
    isolated
        Whether the structure is an isolated atom.
    """

    kpts: tuple[int, int, int] | None
    magmoms: tuple[float, ...] | None
    spin_polarized: bool
    isolated: bool


class SettingsFields(Protocol):
    """The fields :func:`derive_settings` reads (of :class:`StructureSettings` or a DFT config)."""

    kpoint_density: float | None
    even_kpoints: bool
    magmoms: tuple[tuple[str, float], ...]
    isolated_spin_polarized: bool
    isolated_magmoms: tuple[tuple[str, float], ...]
    isolated_distance: float


def derive_settings(settings: SettingsFields, atoms: Atoms) -> Derived:
    """Mesh, initial moments (μB), spin and isolation of ``atoms`` under ``settings``.

    See :class:`StructureSettings` for the rules; any config with the fields of
    :class:`SettingsFields` (such as :class:`~pyiron_assyst.calculators.gpaw.Gpaw`) uses them.
    """
    isolated = is_isolated_atom(atoms, settings.isolated_distance)
    kpts = None
    if settings.kpoint_density is not None:
        kpts = (1, 1, 1) if isolated else kpoints_from_density(
            atoms.cell.array, settings.kpoint_density, atoms.pbc, settings.even_kpoints)
    if isolated and settings.isolated_spin_polarized:
        table = dict(settings.isolated_magmoms)
        number = int(atoms.numbers[0])
        symbol = atoms.get_chemical_symbols()[0]
        moment = table.get(symbol, float(ground_state_magnetic_moments[number]))
        return Derived(kpts, (moment,), True, True)
    if not settings.magmoms:
        return Derived(kpts, None, False, isolated)
    table = dict(settings.magmoms)
    moments = tuple(table.get(s, 0.0) for s in atoms.get_chemical_symbols())
    return Derived(kpts, moments, any(m != 0.0 for m in moments), isolated)


def record_settings(atoms: Atoms, derived: Derived, density: float | None) -> Atoms:
    """A copy of ``atoms`` with ``derived`` recorded: ``initial_magmoms`` (μB) and the info
    keys :data:`KPOINT_MESH`, :data:`KPOINT_DENSITY` (``density``, Å) and :data:`SPIN_POLARIZED`.
    """
    out = atoms.copy()
    if derived.magmoms is not None:
        out.set_initial_magnetic_moments(list(derived.magmoms))
    if derived.kpts is not None:
        record_info(out, KPOINT_MESH, " ".join(str(k) for k in derived.kpts))
        record_info(out, KPOINT_DENSITY, float(density or 0.0))
    else:
        out.info.pop(KPOINT_MESH, None)
        out.info.pop(KPOINT_DENSITY, None)
    record_info(out, SPIN_POLARIZED, derived.spin_polarized)
    return out


def moment_pairs(owner: str, field: str, value: Any) -> tuple[tuple[str, float], ...]:
    """``value`` (a dict or pairs of element and moment in μB) as sorted, checked pairs."""
    pairs = freeze(dict(value) if isinstance(value, Mapping) else dict(value or ()))
    for symbol, moment in pairs:
        require(symbol in atomic_numbers and symbol != "X", owner, field,
                "keyed by chemical symbols", symbol)
        require(isinstance(moment, (int, float)) and not isinstance(moment, bool)
                and math.isfinite(moment), owner, field, f"finite moments in μB ({symbol})",
                moment)
    return tuple((s, float(m)) for s, m in pairs)


@dataclass(frozen=True)
class StructureSettings(CalculatorConfig):
    """A calculator config whose k-points, magnetic moments and spin follow the structure.

    Parameters
    ----------
    base
        The calculator config that is wrapped (any :class:`CalculatorConfig`).
    kpoint_density
        k-points per Å⁻¹ (unit Å, see :func:`kpoints_from_density`); ``None``: no k-points set.
    even_kpoints
        Round meshes up to even numbers.
    kpoints_parameter
        Calculator keyword that takes the mesh (``"kpts"`` for ASE's Vasp, Espresso, GPAW, ...).
    magmoms
        Initial magnetic moment per element in μB (a dict is accepted); elements not named get
        0. Empty: no moments are set (except on isolated atoms, see below).
    spin_parameters
        Calculator keywords applied to spin-polarised structures, e.g. ``{"ispin": 2}`` (VASP)
        or ``{"spinpol": True}`` (GPAW). A structure is spin-polarised when one of its atoms has
        a non-zero initial moment.
    isolated_spin_polarized
        Compute isolated atoms spin-polarised (Γ-only mesh in any case).
    isolated_magmoms
        Initial moment per element for isolated atoms in μB; elements not named get ASE's
        ground-state moment of the free atom.
    isolated_distance
        A single atom is isolated when all its periodic images are at least this far (Å).
    """

    base: CalculatorConfig
    kpoint_density: float | None = None
    even_kpoints: bool = False
    kpoints_parameter: str = "kpts"
    magmoms: tuple[tuple[str, float], ...] = ()
    spin_parameters: tuple[tuple[str, Any], ...] = ()
    isolated_spin_polarized: bool = True
    isolated_magmoms: tuple[tuple[str, float], ...] = ()
    isolated_distance: float = 8.0

    def __post_init__(self) -> None:
        name = "StructureSettings"
        require(isinstance(self.base, CalculatorConfig) and not isinstance(
            self.base, StructureSettings), name, "base",
            "a calculator config (not another StructureSettings)", self.base)
        require(self.kpoint_density is None or (
            isinstance(self.kpoint_density, (int, float)) and not isinstance(
                self.kpoint_density, bool) and math.isfinite(self.kpoint_density)
            and self.kpoint_density > 0), name, "kpoint_density", "None or a number > 0 Å",
            self.kpoint_density)
        require(isinstance(self.kpoints_parameter, str) and self.kpoints_parameter.isidentifier(),
                name, "kpoints_parameter", "a keyword name such as 'kpts'", self.kpoints_parameter)
        require(isinstance(self.isolated_distance, (int, float)) and self.isolated_distance > 0,
                name, "isolated_distance", "a number > 0 Å", self.isolated_distance)
        object.__setattr__(self, "magmoms", moment_pairs(name, "magmoms", self.magmoms))
        object.__setattr__(self, "isolated_magmoms",
                           moment_pairs(name, "isolated_magmoms", self.isolated_magmoms))
        spin = self.spin_parameters
        object.__setattr__(self, "spin_parameters",
                           freeze(dict(spin) if isinstance(spin, Mapping) else dict(spin or ())))
        for key, _ in self.spin_parameters:
            require(key.isidentifier(), name, "spin_parameters", "keyword names", key)
        if self.kpoint_density is not None:
            object.__setattr__(self, "kpoint_density", float(self.kpoint_density))

    def derive(self, atoms: Atoms) -> Derived:
        """The settings for ``atoms``: mesh, initial moments (μB), spin, isolated or not."""
        return derive_settings(self, atoms)

    def parameters_for(self, atoms: Atoms) -> dict[str, Any]:
        """Calculator keywords derived for ``atoms`` (mesh and, if spin-polarised, spin)."""
        derived = self.derive(atoms)
        params: dict[str, Any] = {}
        if derived.kpts is not None:
            params[self.kpoints_parameter] = derived.kpts
        if derived.spin_polarized:
            params.update(dict(self.spin_parameters))
        return params

    def prepare(self, atoms: Atoms) -> Atoms:
        """A copy of ``atoms`` (without calculator) with the derived values recorded.

        Sets the per-atom array ``initial_magmoms`` (μB) when moments are derived and the info
        keys :data:`KPOINT_MESH` (e.g. ``"6 6 4"``), :data:`KPOINT_DENSITY` (Å) and
        :data:`SPIN_POLARIZED`.
        """
        return record_settings(atoms, self.derive(atoms), self.kpoint_density)

    def supported_elements(self) -> frozenset[str] | None:
        """The wrapped calculator's elements."""
        return self.base.supported_elements()

    def get_calculator(self) -> BaseCalculator:
        return self.base.get_calculator()

    def with_parameters(self, changes: Mapping[str, Any]) -> StructureSettings:
        """A copy whose base calculator config has ``changes`` applied."""
        return replace(self, base=self.base.with_parameters(changes))

    def calculator_for(self, atoms: Atoms) -> BaseCalculator:
        """The base calculator for ``atoms`` with the derived keywords applied.

        An :class:`~pyiron_assyst.calculators.AseCalculator` base is built with its own keywords
        plus the derived ones; a base config whose fields include the derived keywords (e.g.
        ``kpts``, ``nspin``) gets them with :meth:`~CalculatorConfig.with_parameters`; any other
        base is built by its own ``calculator_for`` and the keywords are applied with
        ``calc.set(...)``.
        """
        params = self.parameters_for(atoms)
        if isinstance(self.base, AseCalculator) and not self.base.reuse:
            cls = import_object(self.base.import_path, check_allowed=False)
            kwargs = {k: _thaw(v) for k, v in self.base.kwargs}
            return cls(**{**kwargs, **params})
        if params and set(params) <= {f.name for f in fields(self.base)}:  # type: ignore[arg-type]
            return self.base.with_parameters(params).calculator_for(atoms)
        calc = self.base.calculator_for(atoms)
        if params:
            if not callable(getattr(calc, "set", None)):
                raise ConfigError(f"{type(calc).__name__} has no set(); cannot apply "
                                  f"structure-dependent settings {sorted(params)}")
            calc.set(**params)
        return calc


def prepare_structure(calculator: CalculatorConfig, atoms: Atoms) -> Atoms:
    """``calculator.prepare(atoms)`` if the config derives per-structure settings, else ``atoms``.

    The hook for recording derived settings on a structure before it is evaluated: any
    calculator config with a ``prepare(atoms) -> Atoms`` method (such as
    :class:`StructureSettings`) takes part.
    """
    prepare = getattr(calculator, "prepare", None)
    return prepare(atoms) if callable(prepare) else atoms
