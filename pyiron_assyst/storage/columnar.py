"""Structure sets as columns: one array per quantity, concatenated over structures.

A list of :class:`ase.Atoms` becomes a ``dict`` of numpy arrays (the layout of pyiron_base's
``FlattenedStorage``: *per-element* arrays over all atoms, *per-chunk* arrays over structures)
and back, bit for bit.

Per atom (length ``N`` = total number of atoms):
    ``numbers`` (int64), ``positions`` (Å, float64, (N, 3)), ``forces`` (eV/Å, float64, (N, 3),
    NaN for structures without forces), ``array.<name>`` for extra per-atom arrays of
    ``Atoms.arrays`` (numeric or bool, e.g. ``initial_magmoms``).
Per structure (length ``n``):
    ``length`` and ``start_index`` (int32, the atom slice of each structure), ``cell`` (Å,
    (n, 3, 3)), ``pbc`` (bool, (n, 3)), ``energy`` and ``free_energy`` (eV), ``stress`` (eV/Å³,
    Voigt xx yy zz yz xz xy, ASE sign, (n, 6)), each label with a mask ``has_energy``,
    ``has_free_energy``, ``has_forces``, ``has_stress``; ``info.<key>`` for every scalar
    ``Atoms.info`` key (str, int, float or bool) with a mask ``has_info.<key>``;
    ``has_array.<name>`` for the extra per-atom arrays.
Per table:
    ``skipped_keys`` (str): what could not be stored (``info.<key>``, ``calc.<key>``,
    ``array.<name>``, ``constraints``); a :class:`StorageWarning` names each with its reason.

Labels are read from ``atoms.calc.results`` (any calculator); a structure with labels comes
back with a :class:`~ase.calculators.singlepoint.SinglePointCalculator` holding exactly the
stored numbers, a structure without labels comes back without a calculator. A stress given as a
3×3 matrix is stored in Voigt form.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Parameters
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

__all__ = [
    "LABELS",
    "StorageWarning",
    "column_kind",
    "columns_to_structures",
    "n_structures",
    "structures_to_columns",
]

LABELS = ("energy", "free_energy", "forces", "stress")
"""Calculator results that are stored (all others are skipped with a warning)."""

INFO = "info."
HAS_INFO = "has_info."
ARRAY = "array."
HAS_ARRAY = "has_array."
SKIPPED = "skipped_keys"
_ELEMENT = ("numbers", "positions", "forces")
_INT32_MAX = np.iinfo(np.int32).max


class StorageWarning(UserWarning):
    """Something in a structure set could not be stored and was skipped (named in the text)."""


def column_kind(name: str) -> str:
    """Whether column ``name`` is per ``"element"`` (atom), per ``"chunk"`` (structure) or
    per ``"table"``."""
    if name in _ELEMENT or name.startswith(ARRAY):
        return "element"
    return "table" if name == SKIPPED else "chunk"


def n_structures(columns: dict[str, np.ndarray]) -> int:
    """Number of structures in a column table."""
    return len(columns["length"])


def _kind_of_type(cls: type) -> str | None:
    if issubclass(cls, (bool, np.bool_)):
        return "bool"
    if issubclass(cls, (int, np.integer)):
        return "int"
    if issubclass(cls, (float, np.floating)):
        return "float"
    return "str" if issubclass(cls, str) else None


_DTYPES = {"bool": np.bool_, "int": np.int64, "float": np.float64, "str": np.str_}


def _bad_name(key: object) -> bool:
    return (not isinstance(key, str) or not key or "/" in key or "\x00" in key
            or key in (".", ".."))


class _Skips:
    """Collects what is skipped, with reasons; warns once at the end."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, reason: str, count: int = 1) -> None:
        self.reasons.setdefault(name, reason)
        self.counts[name] = self.counts.get(name, 0) + count

    def warn(self) -> np.ndarray:
        names = sorted(self.reasons)
        if names:
            text = "; ".join(f"{n} ({self.reasons[n]}, {self.counts[n]} structures)"
                             for n in names)
            warnings.warn(f"not stored: {text}", StorageWarning, stacklevel=3)
        return np.array(names, dtype=np.str_)


def _info_column(values: list[object], skips: _Skips, name: str) -> np.ndarray | None:
    kinds = {_kind_of_type(t) for t in set(map(type, values))}
    if None in kinds:
        bad = next(v for v in values if _kind_of_type(type(v)) is None)
        skips.add(name, f"not a str/int/float/bool scalar: {type(bad).__name__}", len(values))
        return None
    if len(kinds) > 1:
        skips.add(name, f"mixed types {sorted(kinds)}", len(values))  # type: ignore[type-var]
        return None
    kind = kinds.pop()
    if kind == "str":
        joined = "".join(values)  # type: ignore[arg-type]
        if "\x00" in joined:
            skips.add(name, "string contains a NUL character", len(values))
            return None
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            skips.add(name, "string is not encodable as UTF-8", len(values))
            return None
    try:
        return np.array(values, dtype=_DTYPES[kind])  # type: ignore[index]
    except OverflowError:
        skips.add(name, "integer outside the int64 range", len(values))
        return None


def _info_columns(structures: Sequence[Atoms], skips: _Skips) -> dict[str, np.ndarray]:
    n = len(structures)
    found: dict[object, tuple[list[int], list[object]]] = {}
    for i, atoms in enumerate(structures):
        for key, value in atoms.info.items():
            entry = found.get(key)
            if entry is None:
                entry = found[key] = ([], [])
            entry[0].append(i)
            entry[1].append(value)
    out: dict[str, np.ndarray] = {}
    for key, (rows, values) in found.items():
        if _bad_name(key):
            skips.add(repr(f"info.{key}"), "key is not a valid column name", len(rows))
            continue
        stored = _info_column(values, skips, f"info.{key}")
        if stored is not None:
            column = np.zeros(n, dtype=stored.dtype)
            column[rows] = stored
            present = np.zeros(n, dtype=bool)
            present[rows] = True
            out[INFO + str(key)] = column
            out[HAS_INFO + str(key)] = present
    return out


def _array_columns(structures: Sequence[Atoms], lengths: np.ndarray,
                   starts: np.ndarray, skips: _Skips) -> dict[str, np.ndarray]:
    found: dict[str, list[tuple[int, np.ndarray]]] = {}
    for i, atoms in enumerate(structures):
        for key, value in atoms.arrays.items():
            if key not in ("numbers", "positions"):
                found.setdefault(key, []).append((i, value))
    out: dict[str, np.ndarray] = {}
    for key, items in found.items():
        name = ARRAY + key
        shapes = {a.shape[1:] for _, a in items}
        dtypes = {a.dtype for _, a in items}
        if _bad_name(key):
            skips.add(repr(name), "key is not a valid column name", len(items))
        elif len(shapes) > 1 or len(dtypes) > 1 or dtypes.pop().kind not in "biuf":
            skips.add(name, "inconsistent shape/dtype or not numeric", len(items))
        else:
            first = items[0][1]
            column = np.zeros((int(lengths.sum()), *first.shape[1:]), dtype=first.dtype)
            present = np.zeros(len(structures), dtype=bool)
            for i, value in items:
                column[starts[i]:starts[i] + lengths[i]] = value
                present[i] = True
            out[name] = column
            out[HAS_ARRAY + key] = present
    return out


def _label_columns(structures: Sequence[Atoms], starts: np.ndarray, n_atoms: int,
                   skips: _Skips) -> dict[str, np.ndarray]:
    n = len(structures)
    energy = np.full((2, n), np.nan)
    forces = np.full((n_atoms, 3), np.nan)
    stress = np.full((n, 6), np.nan)
    has = np.zeros((4, n), dtype=bool)
    for i, atoms in enumerate(structures):
        results = getattr(atoms.calc, "results", None) or {}
        for key, value in results.items():
            if key in ("energy", "free_energy"):
                row = 0 if key == "energy" else 1
                energy[row, i] = value
                has[row, i] = True
            elif key == "forces":
                forces[starts[i]:starts[i] + len(atoms)] = np.reshape(value, (len(atoms), 3))
                has[2, i] = True
            elif key == "stress":
                value = np.asarray(value, dtype=float)
                stress[i] = full_3x3_to_voigt_6_stress(value) if value.shape == (3, 3) else value
                has[3, i] = True
            elif value is not None:
                skips.add(f"calc.{key}", "only energy, free_energy, forces, stress are stored")
    return {"energy": energy[0], "free_energy": energy[1], "forces": forces, "stress": stress,
            "has_energy": has[0], "has_free_energy": has[1], "has_forces": has[2],
            "has_stress": has[3]}


def structures_to_columns(structures: Sequence[Atoms]) -> dict[str, np.ndarray]:
    """Columns of a structure set (layout in the module docstring); inputs are not changed.

    Parameters
    ----------
    structures
        The structures; any sizes, periodic or not, labelled or not.

    Returns
    -------
    dict[str, numpy.ndarray]
        Columns by name; ``columns["skipped_keys"]`` names what could not be stored, and a
        :class:`StorageWarning` says why.
    """
    skips = _Skips()
    lengths = np.fromiter((len(a) for a in structures), dtype=np.int64, count=len(structures))
    if lengths.sum() > _INT32_MAX:
        raise ValueError(f"too many atoms for one table: {lengths.sum()} > {_INT32_MAX}")
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)[:len(lengths)]
    n_atoms = int(lengths.sum())
    columns: dict[str, np.ndarray] = {
        "length": lengths.astype(np.int32),
        "start_index": starts.astype(np.int32),
        "numbers": np.concatenate([a.numbers for a in structures] or [np.zeros(0, np.int64)]),
        "positions": np.concatenate([a.positions for a in structures] or [np.zeros((0, 3))]),
        "cell": np.array([a.cell.array for a in structures], dtype=float).reshape(-1, 3, 3),
        "pbc": np.array([a.pbc for a in structures], dtype=bool).reshape(-1, 3),
    }
    columns.update(_label_columns(structures, starts, n_atoms, skips))
    columns.update(_info_columns(structures, skips))
    columns.update(_array_columns(structures, lengths, starts, skips))
    n_constrained = sum(1 for a in structures if a.constraints)
    if n_constrained:
        skips.add("constraints", "constraints are not stored", n_constrained)
    n_displaced = sum(1 for a in structures if a.get_celldisp().any())
    if n_displaced:
        skips.add("celldisp", "cell displacements are not stored", n_displaced)
    columns[SKIPPED] = skips.warn()
    return columns


def _info_of(columns: dict[str, np.ndarray], n: int) -> list[dict[str, object]]:
    infos: list[dict[str, object]] = [{} for _ in range(n)]
    for name, column in columns.items():
        if not name.startswith(INFO):
            continue
        key = name[len(INFO):]
        present = np.flatnonzero(columns[HAS_INFO + key])
        for i, value in zip(present.tolist(), column[present].tolist()):
            infos[i][key] = value
    return infos


_CALC_TEMPLATE = SinglePointCalculator(Atoms(), energy=0.0)


def _single_point(atoms: Atoms, results: dict[str, object]) -> SinglePointCalculator:
    """Equal to ``SinglePointCalculator(atoms, **results)`` at a fifth of the cost.

    The constructor copies ``atoms`` (deep-copying ``info``) and builds a calculator directory
    path per call; here a template is copied and gets its own results, parameters and a fresh
    copy of the structure (``results`` must already hold private float / array values).
    """
    calc = copy.copy(_CALC_TEMPLATE)
    for key, value in vars(_CALC_TEMPLATE).items():
        if getattr(value, "__self__", None) is _CALC_TEMPLATE:  # methods bound in __init__
            setattr(calc, key, getattr(calc, value.__func__.__name__))
    calc.results = results
    calc.parameters = Parameters()
    calc.atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                       pbc=atoms.pbc, info=dict(atoms.info))
    return calc


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that are all kept
    (its repeated full passes over them halve the speed of a large load)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def columns_to_structures(columns: dict[str, np.ndarray]) -> list[Atoms]:
    """Structures from :func:`structures_to_columns` columns, bit-identical to the originals.

    Labelled structures carry a :class:`~ase.calculators.singlepoint.SinglePointCalculator`
    with the stored ``energy`` / ``free_energy`` (eV), ``forces`` (eV/Å) and ``stress``
    (eV/Å³, Voigt) — only those that were present; unlabelled ones carry no calculator.
    """
    with _gc_paused():
        return _build(columns)


def _build(columns: dict[str, np.ndarray]) -> list[Atoms]:
    n = n_structures(columns)
    infos = _info_of(columns, n)
    extra = [name[len(ARRAY):] for name in columns if name.startswith(ARRAY)]
    has = np.stack([columns[f"has_{k}"] for k in LABELS], axis=1).tolist() if n else []
    energies = columns["energy"].tolist()
    free_energies = columns["free_energy"].tolist()
    out = []
    for i, (start, length) in enumerate(zip(columns["start_index"].tolist(),
                                            columns["length"].tolist())):
        atoms_slice = slice(start, start + length)
        atoms = Atoms(numbers=columns["numbers"][atoms_slice],
                      positions=columns["positions"][atoms_slice],
                      cell=columns["cell"][i], pbc=columns["pbc"][i], info=infos[i])
        for key in extra:
            if columns[HAS_ARRAY + key][i]:
                atoms.arrays[key] = columns[ARRAY + key][atoms_slice].copy()
        has_energy, has_free_energy, has_forces, has_stress = has[i]
        results: dict[str, object] = {}
        if has_energy:
            results["energy"] = energies[i]
        if has_free_energy:
            results["free_energy"] = free_energies[i]
        if has_forces:
            results["forces"] = columns["forces"][atoms_slice].copy()
        if has_stress:
            results["stress"] = columns["stress"][i].copy()
        if results:
            atoms.calc = _single_point(atoms, results)
        out.append(atoms)
    return out
