"""Every picture of :mod:`pyiron_assyst.figures.plots` as PNG files: the driver behind ``assyst
plot``.

:func:`write_all` draws each picture on its own :class:`~matplotlib.figure.Figure` (no pyplot,
so it works headless) and saves it into one directory. It is importable from
:mod:`pyiron_assyst.figures.plots` too.

Units: as in :mod:`pyiron_assyst.figures.plots`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ase import Atoms

from pyiron_assyst.core.report import StageReport
from pyiron_assyst.figures.plots import (
    composition_bars,
    distance_histogram,
    energy_histogram,
    energy_volume_panels,
    lattice_angle_histogram,
    lattice_length_histogram,
    space_group_coverage,
    stage_counts,
    volume_histogram,
)
from pyiron_assyst.storage.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["write_all"]


def _final_set(sets: dict[str, list[Atoms]], final: str | None) -> tuple[str, list[Atoms]]:
    if final is None:
        final = "training_set" if "training_set" in sets else next(reversed(sets), "")
    if final and final not in sets:
        raise KeyError(f"final={final!r} is not one of the stages {sorted(sets)}")
    return final, sets.get(final, [])


def _named(sets: dict[str, list[Atoms]], calculators: Mapping[str, str], common: str
           ) -> dict[str, list[Atoms]]:
    """The sets, each label naming its calculator when the stages' calculators differ."""
    if common:
        return sets
    return {f"{k}, {calculators[k]}" if calculators.get(k) else k: v for k, v in sets.items()}


def write_all(structures_by_stage: Mapping[str, Sequence[Atoms]],
              reports: Sequence[StageReport], directory: str | Path,
              final: str | None = None, dpi: int = 120,
              calculators: Mapping[str, str] | None = None) -> list[Path]:
    """Write every picture as a PNG file into ``directory`` (created if missing).

    Histograms and the energy–volume map show one curve / colour per stage; space groups,
    composition and lattice use the ``final`` set only.

    Parameters
    ----------
    structures_by_stage
        ``{stage name: structures}`` in pipeline order.
    reports
        The stage reports, for ``stage_counts.png``.
    directory
        Output directory.
    final
        Key of the set shown in the single-set pictures; default ``"training_set"`` if
        present, else the last key.
    dpi
        Resolution of the PNG files in dots per inch.
    calculators
        ``{stage: name of the calculator whose energies it holds}``, named on the energy
        axes (one name for all stages if they agree).

    Returns
    -------
    list[pathlib.Path]
        The files written.
    """
    from matplotlib.figure import Figure

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sets = {str(k): list(v) for k, v in structures_by_stage.items()}
    name, chosen = _final_set(sets, final)
    calculators = dict(calculators or {})
    names = {calculators[k] for k in sets if calculators.get(k)}
    common = names.pop() if len(names) == 1 else ""
    title = f"{name}: {len(chosen)} structures" if name else ""

    n_panels = sum(any(a.calc is not None for a in v) for v in sets.values())

    def lattice(fig: Figure) -> None:
        left, right = fig.subplots(1, 2)
        lattice_length_histogram(chosen, left)
        lattice_angle_histogram(chosen, right)
        fig.suptitle(title)

    def single(draw: Callable[[Sequence[Atoms], Axes], Axes]) -> Callable[[Figure], object]:
        return lambda fig: (draw(chosen, fig.add_subplot()), fig.suptitle(title))

    pictures: tuple[tuple[str, tuple[float, float], Callable[[Figure], object]], ...] = (
        ("stage_counts", (10.0, 4.8), lambda fig: stage_counts(reports, fig.add_subplot())),
        ("volume_per_atom", (6.4, 4.4), lambda fig: volume_histogram(sets, fig.add_subplot())),
        ("energy_per_atom", (6.4, 4.4),
         lambda fig: energy_histogram(_named(sets, calculators, common), fig.add_subplot(),
                                      calculator=common)),
        ("nearest_distance", (6.4, 4.4),
         lambda fig: distance_histogram(sets, fig.add_subplot())),
        ("energy_volume", (4.0 + 3.2 * max(1, n_panels), 4.4),
         lambda fig: energy_volume_panels(sets, fig, calculators)),
        ("space_groups", (10.0, 4.4), single(space_group_coverage)),
        ("composition", (8.0, 4.4), single(composition_bars)),
        ("lattice", (10.0, 4.2), lattice),
    )
    paths = []
    for stem, figsize, draw in pictures:
        fig = Figure(figsize=figsize, layout="constrained")
        draw(fig)
        path = directory / f"{stem}.png"
        with atomic_path(path) as tmp:  # a reader never sees half a picture
            fig.savefig(tmp, dpi=dpi, format="png")
        paths.append(path)
    return paths
