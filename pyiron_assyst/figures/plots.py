"""Pictures of a training set and of what each stage did (matplotlib).

Every function draws into ``ax`` (a new figure from :mod:`matplotlib.pyplot` if ``None``) and
returns the :class:`~matplotlib.axes.Axes`; the figure is ``ax.figure``. Nothing here calls
``show()`` or selects a backend, so the module works headless (Agg). Empty inputs give an
annotated empty axes with its labels, never an error.

Functions that histogram a per-structure quantity accept either one list of structures or a
mapping ``{label: structures}`` (e.g. one entry per stage), drawn as one step curve per label on
shared bins. :func:`~pyiron_assyst.figures.files.write_all`
writes every picture as a PNG file; the command line calls it.

Units: energies in eV/atom, volumes in Å³/atom, distances and lattice lengths in Å, angles in °.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.core.report import FAILURE_REASONS, StageReport
from pyiron_assyst.numerics.distances import nearest_distances

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


__all__ = [
    "DENSITY_THRESHOLD",
    "MAX_BINS",
    "OUTLIER_FENCE",
    "Bins",
    "StructureSets",
    "composition_bars",
    "distance_histogram",
    "energy_histogram",
    "energy_volume",
    "lattice_angle_histogram",
    "lattice_length_histogram",
    "space_group_coverage",
    "stage_counts",
    "volume_histogram",
]

StructureSets = Sequence[Atoms] | Mapping[str, Sequence[Atoms]]
"""One list of structures, or several labelled ones (e.g. by stage)."""

Bins = int | str | Sequence[float]
"""Number of bins, a :func:`numpy.histogram_bin_edges` rule such as ``"auto"``, or edges."""

DENSITY_THRESHOLD = 2000
"""Above this many points :func:`energy_volume` draws a hexbin density instead of a scatter."""

MAX_BINS = 100
"""Upper bound on the number of bins chosen automatically (``bins="auto"``)."""

OUTLIER_FENCE = 10.0
"""Automatic ranges leave out values more than this many interquartile ranges beyond the
quartiles (exploded cells, isolated atoms), and say how many they left out."""

INPUT_UNITS = {"sample": "formulas"}
"""Stages whose inputs are not structures, and what they are: :func:`stage_counts` draws no
*in* bar for them (it would put formulas on a structure axis) and names the input below."""

_COUNT = "Structures (count)"
_VOLUME = "Volume per atom (Å³/atom)"
_ENERGY = "Energy per atom (eV/atom)"


def _energy_label(calculator: str) -> str:
    """The energy axis label, naming the calculator whose energies are drawn."""
    return f"Energy per atom (eV/atom, {calculator})" if calculator else _ENERGY


# ---------------------------------------------------------------------------------- helpers


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.4)) -> Axes:
    if ax is not None:
        return ax
    from matplotlib import pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def _labels(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _empty(ax: Axes, message: str) -> Axes:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="0.4")
    return ax


def _note(ax: Axes, *messages: str) -> None:
    """Small text above the right end of the axes: what was left out of the picture."""
    text = "; ".join(m for m in messages if m)
    if text:
        ax.set_title(text, loc="right", fontsize="small", color="0.3")


def _as_sets(structures: StructureSets) -> dict[str, list[Atoms]]:
    if isinstance(structures, Mapping):
        return {str(k): list(v) for k, v in structures.items()}
    return {"": list(structures)}


def _tiny(width: float, scale: float) -> bool:
    return width <= 1e-9 * max(1.0, abs(scale))


def _shown_range(values: np.ndarray) -> tuple[float, float]:
    """Range of the values within :data:`OUTLIER_FENCE` IQRs of the quartiles (all values if
    the IQR vanishes), widened to a finite width if they are all equal."""
    q1, q3 = np.percentile(values, [25, 75])
    spread = OUTLIER_FENCE * (q3 - q1)
    if not _tiny(spread, q3):
        values = values[(values >= q1 - spread) & (values <= q3 + spread)]
    low, high = float(values.min()), float(values.max())
    return (low - 0.5, high + 0.5) if _tiny(high - low, high) else (low, high)


def _edges(values: np.ndarray, bins: Bins,
           value_range: tuple[float, float] | None) -> np.ndarray:
    if np.ndim(bins) == 1:
        return np.asarray(bins, dtype=float)
    shown = value_range if value_range is not None else _shown_range(values)
    edges = np.histogram_bin_edges(values, bins=bins, range=shown)
    if isinstance(bins, str) and len(edges) > MAX_BINS + 1:
        edges = np.histogram_bin_edges(values, bins=MAX_BINS, range=shown)
    return edges


def _histogram(ax: Axes, series: dict[str, np.ndarray], bins: Bins,
               value_range: tuple[float, float] | None, empty: str, missing: str = "",
               notes: Sequence[str] = ()) -> Axes:
    """One step curve per non-empty series on shared bins; labels count what is drawn.

    NaN values are left out (counted as ``missing``), and so are values outside the bins
    (counted as outside the shown range); both counts go into the note above the axes.
    """
    notes = [*notes, _missing_note({k: ~np.isfinite(v) for k, v in series.items()}, missing)]
    series = {k: v[np.isfinite(v)] for k, v in series.items()}
    series = {k: v for k, v in series.items() if len(v)}
    if not series:
        _note(ax, *notes)
        return _empty(ax, empty)
    edges = _edges(np.concatenate(list(series.values())), bins, value_range)
    single, outside = len(series) == 1, {}
    for label, values in series.items():
        shown = values[(values >= edges[0]) & (values <= edges[-1])]
        outside[label] = len(values) - len(shown)
        counts, _ = np.histogram(shown, edges)
        ax.stairs(counts, edges, fill=single, alpha=0.7 if single else 1.0, linewidth=1.5,
                  label=f"{label} ({len(values)})" if label else None)
    if any(series):
        ax.legend(fontsize="small")
    _note(ax, *notes, _outside_note(outside))
    return ax


def _missing_note(missing: Mapping[str, np.ndarray], what: str) -> str:
    """``"sampled, perturbed: no energy; relaxed: 2 without …"``: per set, what is not drawn.

    ``missing`` maps each set's label to a boolean mask of its structures without a value. A
    set wholly without values is named (its stage does not compute them); an unlabelled set
    gives ``"N <what>"``.
    """
    if not what:
        return ""
    if set(missing) == {""}:
        n = int(np.count_nonzero(missing[""]))
        return f"{n} {what}" if n else ""
    empty = [k for k, m in missing.items() if len(m) and m.all()]
    partial = [f"{k}: {int(np.count_nonzero(m))} {what}" for k, m in missing.items()
               if m.any() and not m.all()]
    named = [f"{', '.join(empty)}: {what.replace('without', 'none with', 1)}"] if empty else []
    return "; ".join(named + partial)


def _outside_note(outside: Mapping[str, int]) -> str:
    """``"6 outside the shown range"`` (one set) or ``"training_set: 6 outside …"``."""
    counted = {k: n for k, n in outside.items() if n}
    if not counted:
        return ""
    if len(outside) == 1:
        return f"{sum(counted.values())} outside the shown range"
    return "; ".join(f"{k}: {n} outside the shown range" for k, n in counted.items())


def _volume(atoms: Atoms) -> float:
    """Volume per atom in Å³/atom; NaN for a cell that does not span 3-D space."""
    if len(atoms) == 0 or atoms.cell.rank < 3:
        return float("nan")
    return abs(atoms.cell.volume) / len(atoms)


def _energy(atoms: Atoms, key: str = "energy") -> float:
    """Stored energy per atom in eV/atom (never calls a live calculator); NaN if none."""
    results = getattr(atoms.calc, "results", None) or {}
    if len(atoms) == 0 or results.get(key) is None:
        return float("nan")
    return float(results[key]) / len(atoms)


def _nearest(atoms: Atoms, per: Literal["structure", "atom"], max_cutoff: float) -> np.ndarray:
    """Nearest-neighbour distances in Å (minimum image, periodic images included).

    ``per="structure"``: one value, the smallest interatomic distance; ``"atom"``: each atom's
    nearest-neighbour distance. No neighbour within ``max_cutoff`` (Å) gives NaN.
    """
    if len(atoms) == 0:
        return np.empty(0)
    nearest = nearest_distances(atoms.positions, atoms.cell.array, atoms.pbc, max_cutoff)
    nearest[nearest > max_cutoff] = np.nan
    if per == "structure":
        return np.array([np.nanmin(nearest) if np.isfinite(nearest).any() else np.nan])
    return nearest


def _found_group(atoms: Atoms, symprec: float | None) -> int:
    """Space group: ``info["found_group"]`` or, with ``symprec`` (Å), spglib's answer now."""
    if symprec is None:
        return int(atoms.info.get("found_group", 0))
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        return 0
    from pyiron_assyst.stages._pyxtal import found_group

    return found_group(atoms, symprec)


# --------------------------------------------------------------------- per-structure pictures


_HISTOGRAM_PARAMETERS = """
    bins
        Number of bins, a :func:`numpy.histogram_bin_edges` rule (automatic choices capped at
        :data:`MAX_BINS`), or the bin edges themselves.
    value_range
        ``(low, high)`` range to bin; by default the data range without far outliers (see
        :data:`OUTLIER_FENCE`). Values outside are left out and counted in the note."""


def _documented(function: Callable) -> Callable:
    if function.__doc__:  # None under python -OO
        function.__doc__ = function.__doc__.replace("    {histogram}", _HISTOGRAM_PARAMETERS[1:])
    return function


@_documented
def volume_histogram(structures: StructureSets, ax: Axes | None = None, bins: Bins = "auto",
                     value_range: tuple[float, float] | None = None) -> Axes:
    """Histogram of the volume per atom (Å³/atom); cells that do not span 3-D are left out.

    Parameters
    ----------
    structures
        Structures, or ``{label: structures}`` for one curve per label.
    ax
        Axes to draw into; a new figure if ``None``.
    {histogram}
    """
    ax = _axes(ax)
    _labels(ax, _VOLUME, _COUNT)
    series = {k: np.array([_volume(a) for a in v]) for k, v in _as_sets(structures).items()}
    return _histogram(ax, series, bins, value_range, "no structures with a 3-D cell",
                      "without a 3-D cell")


@_documented
def energy_histogram(structures: StructureSets, ax: Axes | None = None, bins: Bins = "auto",
                     value_range: tuple[float, float] | None = None,
                     key: str = "energy", calculator: str = "") -> Axes:
    """Histogram of the energy per atom (eV/atom) of structures that carry one.

    Energies are read from the stored results of the attached calculator (normally a
    :class:`~ase.calculators.singlepoint.SinglePointCalculator`); a live calculator is never
    asked to compute. Structures without ``key`` are left out and counted in the note.

    Parameters
    ----------
    structures
        Structures, or ``{label: structures}`` for one curve per label.
    ax
        Axes to draw into; a new figure if ``None``.
    {histogram}
    key
        ``"energy"`` or ``"free_energy"`` (the force-consistent one).
    calculator
        Name of the calculator whose energies these are, shown on the axis.
    """
    ax = _axes(ax)
    _labels(ax, _energy_label(calculator), _COUNT)
    series = {k: np.array([_energy(a, key) for a in v]) for k, v in _as_sets(structures).items()}
    return _histogram(ax, series, bins, value_range, f"no structures with a stored {key!r}",
                      f"without a stored {key!r}")


@_documented
def distance_histogram(structures: StructureSets, ax: Axes | None = None, bins: Bins = "auto",
                       value_range: tuple[float, float] | None = None,
                       per: Literal["structure", "atom"] = "structure",
                       max_cutoff: float = 12.0) -> Axes:
    """Histogram of nearest-neighbour distances (Å), periodic images included.

    Exact distances over periodic images from
    :func:`~pyiron_assyst.numerics.distances.nearest_distances` (all pairs and images for small
    cells, a binned neighbour list for large ones), starting from a cutoff that always holds a
    periodic crystal's nearest pair (about 1.13 (V/N)^(1/3)), doubled up to ``max_cutoff``
    where needed. Distances beyond ``max_cutoff`` are left out and counted.

    Parameters
    ----------
    structures
        Structures, or ``{label: structures}`` for one curve per label.
    ax
        Axes to draw into; a new figure if ``None``.
    {histogram}
    per
        ``"structure"``: the smallest interatomic distance of each structure (what a distance
        filter sees); ``"atom"``: every atom's nearest-neighbour distance.
    max_cutoff
        Largest distance counted as a neighbour, in Å.
    """
    ax = _axes(ax)
    if per == "structure":
        _labels(ax, "Smallest interatomic distance (Å)", _COUNT)
    else:
        _labels(ax, "Nearest-neighbour distance (Å)", "Atoms (count)")
    sets = _as_sets(structures)
    total = sum(len(v) for v in sets.values())
    series = {}
    with tqdm(total=total, desc="nearest distances", disable=None, leave=False) as bar:
        for label, atoms_list in sets.items():
            values = [np.empty(0)]
            for atoms in atoms_list:
                values.append(_nearest(atoms, per, max_cutoff))
                bar.update()
            series[label] = np.concatenate(values)
    return _histogram(ax, series, bins, value_range, f"no neighbours within {max_cutoff:g} Å",
                      f"without a neighbour within {max_cutoff:g} Å")


def _lattice_histogram(structures: Sequence[Atoms], ax: Axes | None, bins: Bins,
                       value_range: tuple[float, float] | None,
                       what: Literal["lengths", "angles"]) -> Axes:
    ax = _axes(ax)
    names, xlabel = (("a", "b", "c"), "Lattice length (Å)") if what == "lengths" else (
        ("α", "β", "γ"), "Lattice angle (°)")
    _labels(ax, xlabel, _COUNT)
    cells = [a.cell for a in structures if a.cell.rank == 3]
    skipped = len(structures) - len(cells)
    values = np.array([c.lengths() if what == "lengths" else c.angles() for c in cells])
    series = {name: values[:, i] for i, name in enumerate(names)} if cells else {}
    if what == "angles" and value_range is None and cells:
        value_range = (float(values.min()), float(values.max()))  # bounded: no outliers
    return _histogram(ax, series, bins, value_range, "no structures with a 3-D cell",
                      notes=[f"{skipped} without a 3-D cell" if skipped else ""])


@_documented
def lattice_length_histogram(structures: Sequence[Atoms], ax: Axes | None = None,
                             bins: Bins = "auto",
                             value_range: tuple[float, float] | None = None) -> Axes:
    """Histograms of the lattice lengths a, b, c (Å) of the cells as stored (not reduced).

    Parameters
    ----------
    structures
        Structures; those without a 3-D cell are left out and counted in the note.
    ax
        Axes to draw into; a new figure if ``None``.
    {histogram}
    """
    return _lattice_histogram(list(structures), ax, bins, value_range, "lengths")


@_documented
def lattice_angle_histogram(structures: Sequence[Atoms], ax: Axes | None = None,
                            bins: Bins = "auto",
                            value_range: tuple[float, float] | None = None) -> Axes:
    """Histograms of the lattice angles α, β, γ (°) of the cells as stored (not reduced).

    Angles are bounded, so the default range is the full data range (no outliers left out).

    Parameters
    ----------
    structures
        Structures; those without a 3-D cell are left out and counted in the note.
    ax
        Axes to draw into; a new figure if ``None``.
    {histogram}
    """
    return _lattice_histogram(list(structures), ax, bins, value_range, "angles")


def energy_volume(structures: StructureSets, ax: Axes | None = None, key: str = "energy",
                  density_threshold: int = DENSITY_THRESHOLD,
                  volume_range: tuple[float, float] | None = None,
                  energy_range: tuple[float, float] | None = None, calculator: str = "") -> Axes:
    """Energy per atom (eV/atom) against volume per atom (Å³/atom).

    Up to ``density_threshold`` points (default :data:`DENSITY_THRESHOLD`) are drawn as a
    scatter, one colour per label; more as a logarithmic hexbin density of the distinct
    structures of all labels together (a structure in several sets, by
    :func:`~pyiron_assyst.core.lineage.uuid_of`, counts once), with a colour bar of counts.
    Structures without a stored ``key`` or a 3-D cell, and points outside the shown ranges,
    are left out and counted in the note.

    Parameters
    ----------
    structures
        Structures, or ``{label: structures}`` for one colour per label.
    ax
        Axes to draw into; a new figure if ``None``.
    key
        ``"energy"`` or ``"free_energy"``.
    density_threshold
        Largest number of points drawn as a scatter.
    volume_range, energy_range
        ``(low, high)`` in Å³/atom and eV/atom; by default the data ranges without far outliers
        (see :data:`OUTLIER_FENCE`).
    calculator
        Name of the calculator whose energies these are, shown on the axis.
    """
    ax = _axes(ax)
    _labels(ax, _VOLUME, _energy_label(calculator))
    sets = _as_sets(structures)
    points = _energy_volume_points(sets, key)
    missing = _missing_note({k: ~np.isfinite(xy).all(axis=1) for k, xy in points.items()},
                            f"without a stored {key!r} or a 3-D cell")
    points = {k: xy[np.isfinite(xy).all(axis=1)] for k, xy in points.items()}
    every = np.concatenate([np.empty((0, 2)), *points.values()])
    if not len(every):
        _note(ax, missing)
        return _empty(ax, f"no structures with a stored {key!r} and a 3-D cell")
    (v_low, v_high), (e_low, e_high) = (
        given if given is not None else _shown_range(column)
        for given, column in ((volume_range, every[:, 0]), (energy_range, every[:, 1])))
    counts = {k: len(xy) for k, xy in points.items() if len(xy)}
    points = {k: xy[(xy[:, 0] >= v_low) & (xy[:, 0] <= v_high) & (xy[:, 1] >= e_low)
                    & (xy[:, 1] <= e_high)] for k, xy in points.items() if len(xy)}
    shown = np.concatenate(list(points.values()))
    _note(ax, missing, _outside_note({k: counts[k] - len(xy) for k, xy in points.items()}))
    if len(shown) > density_threshold:
        distinct = {uuid_of(a): (_volume(a), _energy(a, key)) for v in sets.values() for a in v}
        xy = np.array(list(distinct.values()))
        xy = xy[(xy[:, 0] >= v_low) & (xy[:, 0] <= v_high) & (xy[:, 1] >= e_low)
                & (xy[:, 1] <= e_high)]  # NaN compares False: left out
        density = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=60, bins="log", mincnt=1)
        ax.figure.colorbar(density, ax=ax, label=_COUNT)
        return ax
    for label, xy in points.items():
        ax.scatter(xy[:, 0], xy[:, 1], s=14, alpha=0.8,
                   label=f"{label} ({counts[label]})" if label else None)
    if any(points):
        ax.legend(fontsize="small")
    return ax


def _energy_volume_points(sets: Mapping[str, Sequence[Atoms]], key: str
                          ) -> dict[str, np.ndarray]:
    """``{label: (n, 2) array of (Å³/atom, eV/atom)}``; NaN where a value is missing."""
    return {k: np.array([(_volume(a), _energy(a, key)) for a in v]).reshape(-1, 2)
            for k, v in sets.items()}


def energy_volume_panels(structures: Mapping[str, Sequence[Atoms]], fig: Figure,
                         calculators: Mapping[str, str] | None = None, key: str = "energy",
                         density_threshold: int = DENSITY_THRESHOLD) -> list[Axes]:
    """:func:`energy_volume` of each set with energies on its own panel, on shared ranges.

    Side by side the stages stay visible (drawn into one axes, the largest set covers the
    others). Sets without any energy (stages that compute none) get no panel; the figure's
    title names them.

    Parameters
    ----------
    structures
        ``{stage: structures}`` in pipeline order.
    fig
        Figure to draw the panels into.
    calculators
        ``{stage: name of the calculator whose energies it holds}``, shown on each panel.
    key, density_threshold
        As in :func:`energy_volume`.

    Returns
    -------
    list[matplotlib.axes.Axes]
        One axes per set with energies (one annotated axes if there is none).
    """
    calculators = calculators or {}
    points = _energy_volume_points(structures, key)
    drawn = [k for k, xy in points.items() if np.isfinite(xy).all(axis=1).any()]
    bare = [k for k in structures if k not in drawn and len(structures[k])]
    if bare:
        fig.suptitle(f"not drawn, no stored {key!r}: {', '.join(bare)}", fontsize="small",
                     color="0.3")
    if not drawn:
        return [energy_volume({}, fig.add_subplot())]
    every = np.concatenate([points[k][np.isfinite(points[k]).all(axis=1)] for k in drawn])
    ranges = _shown_range(every[:, 0]), _shown_range(every[:, 1])
    axes = fig.subplots(1, len(drawn), sharex=True, sharey=True, squeeze=False)[0]
    for ax, label in zip(axes, drawn):
        energy_volume({label: structures[label]}, ax, key, density_threshold, *ranges,
                      calculator=calculators.get(label, ""))
        ax.set_title(label, loc="left", fontsize="medium")
    for ax in axes[1:]:
        ax.set_ylabel("")
    return list(axes)


def space_group_coverage(structures: Sequence[Atoms], ax: Axes | None = None,
                         symprec: float | None = None) -> Axes:
    """Structures per space-group number: requested of the generator vs found by spglib.

    Reads ``info["requested_group"]`` and ``info["found_group"]`` (0 = not determined, left
    out of the found bars). With ``symprec`` (Å) the found group is recomputed with spglib,
    e.g. to see which symmetry relaxed structures have now. Structures without
    ``requested_group`` are left out and counted in a note.

    Parameters
    ----------
    structures
        Structures stamped by :func:`pyiron_assyst.stages.sample.sample` (or their descendants).
    ax
        Axes to draw into; a new figure if ``None``.
    symprec
        spglib tolerance in Å; ``None`` to use the stored ``found_group``.
    """
    ax = _axes(ax, (10.0, 4.4))
    _labels(ax, "Space group (international number)", _COUNT)
    tagged = [a for a in structures if "requested_group" in a.info]
    if not tagged:
        return _empty(ax, "no structures with a requested space group")
    requested = [int(a.info["requested_group"]) for a in tagged]
    found = [_found_group(a, symprec) for a in tagged]
    n_req, n_found = Counter(requested), Counter(g for g in found if g > 0)
    groups = sorted(n_req)
    ax.bar(groups, [n_req[g] for g in groups], 0.9, color="0.75", label="requested")
    groups = sorted(n_found)
    ax.bar(groups, [n_found[g] for g in groups], 0.5, color="tab:blue",
           label="found" + (f" (symprec {symprec:g} Å)" if symprec is not None else ""))
    bulk = any(int(a.info.get("dim", 3)) == 3 for a in tagged)
    ax.set_xlim(0.5, max(230 if bulk else 0, *requested, *found) + 0.5)
    same = sum(r == f for r, f in zip(requested, found))
    skipped = len(structures) - len(tagged)
    ax.legend(fontsize="small", loc="upper left")
    _note(ax, f"{len(n_req)} groups requested, {len(n_found)} found; found = requested for "
              f"{same} of {len(tagged)}" + (f"; {skipped} untagged" if skipped else ""))
    return ax


def composition_bars(structures: Sequence[Atoms], ax: Axes | None = None,
                     by: Literal["auto", "formula", "concentration"] = "auto",
                     max_formulas: int = 50) -> Axes:
    """Structures per cell formula, or per concentration for binaries.

    Parameters
    ----------
    structures
        Structures to count.
    ax
        Axes to draw into; a new figure if ``None``.
    by
        ``"formula"``: one bar per cell formula (not reduced: Cu2 and Cu4 differ), ordered
        by size; ``"concentration"``: one bar per atomic fraction of the alphabetically second
        element (needs exactly two elements); ``"auto"``: concentration for binaries.
    max_formulas
        Most bars in formula mode; the rarest formulas beyond it are pooled into "other".
    """
    ax = _axes(ax, (8.0, 4.4))
    structures = [a for a in structures if len(a)]
    elements = sorted({s for a in structures for s in a.get_chemical_symbols()})
    if by == "auto":
        by = "concentration" if len(elements) == 2 else "formula"
    if by == "concentration":
        if structures and len(elements) != 2:
            raise ValueError(f"concentration needs exactly two elements, got {elements}")
        element = elements[1] if structures else "B"
        _labels(ax, f"Concentration of {element} (atomic fraction)", _COUNT)
        if not structures:
            return _empty(ax, "no structures")
        fractions = Counter(round(a.get_chemical_symbols().count(element) / len(a), 6)
                            for a in structures)
        xs = np.array(sorted(fractions))
        width = 0.8 * np.diff(xs).min() if len(xs) > 1 else 0.05
        ax.bar(xs, [fractions[x] for x in xs], width, color="tab:blue")
        ax.set_xlim(-0.05, 1.05)
        return ax
    _labels(ax, "Cell formula (atoms per cell)", _COUNT)
    if not structures:
        return _empty(ax, "no structures")
    counts = Counter(a.get_chemical_formula(mode="metal") for a in structures)
    kept = dict(counts.most_common(max_formulas))
    natoms = {a.get_chemical_formula(mode="metal"): len(a) for a in structures}
    names = sorted(kept, key=lambda f: (natoms[f], f))
    heights = [kept[f] for f in names]
    if len(counts) > len(kept):
        names.append(f"other ({len(counts) - len(kept)})")
        heights.append(sum(counts.values()) - sum(kept.values()))
    ax.bar(range(len(names)), heights, 0.8, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize="small")
    return ax


# ----------------------------------------------------------------------------- stage reports


def _reason_colors(reasons: Sequence[str]) -> dict[str, tuple[float, ...]]:
    from matplotlib import colormaps

    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i not in (2, 7)]
    return {r: palette[i % len(palette)] for i, r in enumerate(reasons)}


def stage_counts(reports: Sequence[StageReport], ax: Axes | None = None) -> Axes:
    """Per stage: structures in, structures out, and the drops stacked by reason.

    Three bars per stage: ``n_in`` (grey), ``n_out`` (green) and the dropped candidates stacked
    by reason (failed computations, see :data:`pyiron_assyst.core.report.FAILURE_REASONS`, hatched).
    ``n_out`` plus the drop stack is the number of candidates the stage attempted. A stage
    whose inputs are not structures (:data:`INPUT_UNITS`) has no *in* bar; its tick label
    says what it started from. The legend names the reasons; the counts are on the bars.

    Parameters
    ----------
    reports
        Stage reports in pipeline order.
    ax
        Axes to draw into; a new figure if ``None``.
    """
    ax = _axes(ax, (10.0, 4.8))
    _labels(ax, "Stage (pipeline order)", _COUNT)
    reports = list(reports)
    if not reports:
        return _empty(ax, "no stage reports")
    x, width = np.arange(len(reports)), 0.27
    n_in = [0 if r.stage in INPUT_UNITS else r.n_in for r in reports]  # not structures
    for offset, values, label, color in ((-width, n_in, "in", "0.6"),
                                         (0.0, [r.n_out for r in reports], "out", "tab:green")):
        bars = ax.bar(x + offset, values, width, label=label, color=color)
        ax.bar_label(bars, [f"{n:g}" if n else "" for n in values], fontsize="x-small")
    reasons = sorted({d.reason for r in reports for d in r.drops})
    colors, bottom = _reason_colors(reasons), np.zeros(len(reports))
    for reason in reasons:
        heights = np.array([r.drop_counts().get(reason, 0) for r in reports])
        stack = ax.bar(x + width, heights, width, bottom=bottom, color=colors[reason],
                       hatch="//" if reason in FAILURE_REASONS else None,
                       label=f"dropped: {reason}")
        bottom += heights
    if reasons:
        ax.bar_label(stack, [f"{n:g}" if n else "" for n in bottom], fontsize="x-small")
    ax.set_xticks(x, [f"{r.stage}\n(from {r.n_in} {INPUT_UNITS[r.stage]})"
                      if r.stage in INPUT_UNITS else r.stage for r in reports],
                  rotation=30, ha="right", rotation_mode="anchor")  # ends at its tick
    ax.legend(fontsize="small")
    return ax
