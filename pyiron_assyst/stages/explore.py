"""Explore stage: snapshots of a fitted model's own hot MD, to be labelled and added to the set.

A potential fitted on small crystals and their rattles has never seen a liquid, yet MD at high
temperature melts the cell, and the model's energy then drifts away from the reference's (issue
19: 20-26 meV/atom along 10 ps at 1500 K on two of three seeds of the quick case). No weighting of
the set fixed that; the remedy of active learning is data from where the model goes: run MD
*driven by the model*, take snapshots along it, label them with the reference and fit again.

:func:`explore` does the first half. It starts from the set's own minima (no chosen phase, as
ASSYST asks): per composition the ``starts`` lowest-energy labelled periodic structures of
distinct lineages, each repeated to at least ``min_atoms`` atoms. From each it runs seeded
Langevin NVT MD at every temperature of :class:`ExploreConfig`, driven by the model (any
calculator config, e.g. a fitted :class:`~pyiron_assyst.fitting.model.MaceModel`), and keeps a
snapshot every ``every`` steps. With ``surfaces`` each start also runs as a slab: its repeated
cell with ``vacuum`` Å of vacuum along the normal of its first two cell vectors (a surface of
the set's own minimum, no chosen facet). A run whose shortest distance falls below
``min_distance`` × the start's shortest distance has collapsed: that snapshot and the ones it
did not reach are dropped (``"collapsed"``, ``"md_stopped"``); a model that raises ends its run
the same way (``"calculator_error"``). The runs fan out over an executor, one task per (start,
cell, temperature).

Identity: a snapshot is a child of its start (step ``"explore"``, uuid from the start's uuid,
the config's and the model's hashes, the temperature, the cell (bulk or slab) and the frame;
a model's hash is its content, not its file's path), so it belongs to the start's lineage:
exploring only the training side of a lineage split keeps the held-out lineages untouched.
Each snapshot carries ``info['explore_temperature']`` (K).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from ase import Atoms

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import ADDED_FIELD, Config, require
from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.lineage import child_uuid, make_child, rng_for, uuid_of
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.execution.executors import Executor, run_tasks
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.numerics.distances import shortest_distance_in
from pyiron_assyst.stages.curate import SHORT_RANGE_KEY

__all__ = ["STEP", "TEMPERATURE_KEY", "ExploreConfig", "explore", "explore_starts", "slab_of",
           "supercell_repeat"]

STEP = "explore"
TEMPERATURE_KEY = "explore_temperature"
"""``Atoms.info`` key of a snapshot: the thermostat temperature of its run (K)."""


def _number(value: object, name: str, field: str, allowed: str, ok) -> None:
    require(isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and ok(value), name, field, allowed, value)


def _integer(value: object, name: str, field: str, low: int) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
            field, f"an integer >= {low}", value)


@dataclass(frozen=True)
class ExploreConfig(Config):
    """What :func:`explore` runs.

    Parameters
    ----------
    temperatures
        Thermostat temperatures of the runs in K (each start runs at each).
    steps
        MD steps per run.
    every
        A snapshot every ``every`` steps (the start itself is not one).
    timestep
        MD time step in fs.
    starts
        Lowest-energy structures of distinct lineages per composition to start from.
    min_atoms
        Each start is repeated to at least this many atoms (8 by default: 24-atom cells
        gave each snapshot three times the force atoms and cost the held-out crystals and
        the trimers more; docs/fitting.md).
    min_distance
        A run has collapsed when its shortest distance falls below this fraction of the
        start's shortest distance.
    friction
        Langevin friction in 1/fs.
    threads
        torch intra-op threads per worker, where the model runs on torch (a MACE model).
    seed
        Seed of the velocities and the thermostat noise (per run, with the start's uuid).
    surfaces
        Also run each start as a slab at every temperature (twice the runs and snapshots): the
        repeated start with ``vacuum`` Å of vacuum along the normal of its first two cell
        vectors. The bulk runs and their snapshots stay those of ``surfaces=False``. Off by
        default; at ``False`` not part of the config's identity.
    vacuum
        Vacuum of the slabs in Å, in (0, 50] (at its default not part of the identity).
    """

    temperatures: tuple[float, ...] = (1000.0, 1800.0)
    steps: int = 500
    every: int = 50
    timestep: float = 2.0
    starts: int = 2
    min_atoms: int = 8
    min_distance: float = 0.6
    friction: float = 0.01
    threads: int = 1
    seed: int = 0
    surfaces: bool = field(default=False, metadata=ADDED_FIELD)
    vacuum: float = field(default=8.0, metadata=ADDED_FIELD)

    def __post_init__(self) -> None:
        name = "ExploreConfig"
        temperatures = tuple(self.temperatures)
        for t in temperatures:
            _number(t, name, "temperatures", "distinct temperatures > 0 K", lambda v: v > 0)
        require(len(temperatures) > 0 and len(set(temperatures)) == len(temperatures), name,
                "temperatures", "one or more distinct temperatures > 0 K", temperatures)
        object.__setattr__(self, "temperatures", tuple(float(t) for t in temperatures))
        for key, low in (("steps", 1), ("every", 1), ("starts", 1), ("min_atoms", 1),
                         ("threads", 1), ("seed", 0)):
            _integer(getattr(self, key), name, key, low)
        require(self.every <= self.steps, name, "every", f"<= steps ({self.steps})", self.every)
        _number(self.timestep, name, "timestep", "a time step in (0, 10] fs",
                lambda v: 0 < v <= 10)
        _number(self.min_distance, name, "min_distance", "a fraction in (0, 1)",
                lambda v: 0 < v < 1)
        _number(self.friction, name, "friction", "a friction > 0 per fs", lambda v: v > 0)
        require(isinstance(self.surfaces, bool), name, "surfaces", "True or False",
                self.surfaces)
        _number(self.vacuum, name, "vacuum", "a vacuum in (0, 50] Å", lambda v: 0 < v <= 50)
        for key in ("timestep", "min_distance", "friction", "vacuum"):
            object.__setattr__(self, key, float(getattr(self, key)))

    @property
    def frames(self) -> int:
        """Snapshots a run makes when it runs to the end."""
        return self.steps // self.every


def _energy_per_atom(atoms: Atoms) -> float:
    results = atoms.calc.results if atoms.calc is not None else {}
    energy = results.get("free_energy", results.get("energy"))
    return math.inf if energy is None else float(energy) / len(atoms)


def explore_starts(structures: Sequence[Atoms], starts: int) -> list[Atoms]:
    """Per composition (reduced formula) the ``starts`` lowest-energy structures of distinct
    lineages (``info['root']``) among the labelled 3-D periodic ones that are not short-range
    structures; compositions in order of first appearance, each by energy per atom."""
    by_formula: dict[str, list[Atoms]] = {}
    for atoms in structures:
        if (atoms.pbc.all() and SHORT_RANGE_KEY not in atoms.info
                and math.isfinite(_energy_per_atom(atoms))):
            by_formula.setdefault(atoms.get_chemical_formula("metal", empirical=True),
                                  []).append(atoms)
    chosen = []
    for group in by_formula.values():
        roots: set[str] = set()
        for atoms in sorted(group, key=_energy_per_atom):
            root = atoms.info.get("root", uuid_of(atoms))
            if root not in roots:
                roots.add(root)
                chosen.append(atoms)
            if len(roots) == starts:
                break
    return chosen


def supercell_repeat(cell: np.ndarray, n_atoms: int, min_atoms: int) -> tuple[int, int, int]:
    """Repetitions along the three cell vectors giving at least ``min_atoms`` atoms: each step
    lengthens the direction of the smallest repeated height (ties: the fewest repeats), so the
    repeated heights stay within one cell height of each other (a compact supercell)."""
    volume = abs(float(np.linalg.det(cell)))
    heights = [volume / float(np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])))
               for i in range(3)]
    repeat = [1, 1, 1]
    while n_atoms * math.prod(repeat) < min_atoms:
        axis = min(range(3), key=lambda i: (repeat[i] * heights[i], repeat[i], i))
        repeat[axis] += 1
    return repeat[0], repeat[1], repeat[2]


@dataclass(frozen=True)
class _Run:
    """One MD run of a worker: the start (repeated), the model, the temperature and settings."""

    start: Atoms
    model: CalculatorConfig
    temperature: float
    config: ExploreConfig
    seed: int


@dataclass(frozen=True)
class _Frames:
    """What a run returns: snapshot positions (Å) and cells, and why it stopped early."""

    positions: tuple[np.ndarray, ...]
    cells: tuple[np.ndarray, ...]
    stopped: str = ""
    reason: str = ""


def _run_md(run: _Run) -> _Frames:
    """Worker: Langevin NVT MD of ``run.start`` driven by ``run.model``; a snapshot every
    ``every`` steps until the end, a collapse or an error of the model."""
    from ase import units
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin

    config, rng = run.config, np.random.default_rng(run.seed)
    atoms = run.start.copy()
    limit = config.min_distance * shortest_distance_in(atoms)
    thermalize = getattr(velocitydistribution, "thermalize_momenta",  # ase >= 3.29
                         velocitydistribution.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=run.temperature, rng=rng)
    atoms.calc = run.model.calculator_for(atoms)
    _limit_torch_threads(config.threads)  # after the model is built: it imports torch
    dynamics = Langevin(atoms, config.timestep * units.fs, temperature_K=run.temperature,
                        friction=config.friction / units.fs, fixcm=False, rng=rng)
    positions, cells = [], []
    for frame in range(1, config.frames + 1):
        try:
            dynamics.run(config.every)
        except Exception as error:  # a model that blows up ends its run, not the stage
            return _Frames(tuple(positions), tuple(cells),
                           f"model raised at frame {frame}: {type(error).__name__}: {error}",
                           "calculator_error")
        shortest = shortest_distance_in(atoms)
        if not shortest >= limit:
            return _Frames(tuple(positions), tuple(cells),
                           f"collapsed at frame {frame}: shortest distance {shortest:.2f} Å "
                           f"< {limit:.2f} Å", "collapsed")
        positions.append(atoms.positions.copy())
        cells.append(atoms.cell.array.copy())
    return _Frames(tuple(positions), tuple(cells))


def _limit_torch_threads(threads: int) -> None:
    import sys

    if "torch" in sys.modules or "mace" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def _repeated(start: Atoms, min_atoms: int) -> Atoms:
    repeated = start.repeat(supercell_repeat(start.cell.array, len(start), min_atoms))
    return Atoms(repeated.numbers, repeated.positions, cell=repeated.cell, pbc=True)


def slab_of(atoms: Atoms, vacuum: float) -> Atoms:
    """A copy of the periodic ``atoms`` with ``vacuum`` Å of vacuum along the normal of its
    first two cell vectors (the third vector lengthened, the positions wrapped into the cell
    first): a slab whose two surfaces cut the bonds across the cell's third boundary."""
    from ase.build import add_vacuum

    slab = Atoms(atoms.numbers, atoms.get_positions(wrap=True), cell=atoms.cell, pbc=True)
    add_vacuum(slab, vacuum)
    return slab


def _cells(start: Atoms, config: ExploreConfig) -> list[tuple[Atoms, str]]:
    """The cells a start runs in, with the suffix of their run key: the bulk one, and the
    slab with ``surfaces``."""
    repeated = _repeated(start, config.min_atoms)
    if not config.surfaces:
        return [(repeated, "")]
    return [(repeated, ""), (slab_of(repeated, config.vacuum), "|surface")]


def _snapshot(start: Atoms, run: _Run, frames: _Frames, frame: int, key: str) -> Atoms:
    atoms = Atoms(run.start.numbers, frames.positions[frame], cell=frames.cells[frame],
                  pbc=True)
    make_child(atoms, start, STEP, child_uuid(uuid_of(start), STEP, key, frame + 1))
    set_info(atoms, TEMPERATURE_KEY, run.temperature)
    return atoms


def _collect(start: Atoms, run: _Run, frames: _Frames | TaskError, key: str,
             out: list[Atoms], drops: list[Drop]) -> None:
    """Snapshots of one run into ``out``; every planned frame it did not make into ``drops``."""
    if isinstance(frames, TaskError):
        frames = _Frames((), (), str(frames), frames.reason)
    made = len(frames.positions)
    out += [_snapshot(start, run, frames, i, key) for i in range(made)]
    missing = range(made + 1, run.config.frames + 1)
    for frame in missing:  # the first frame not made carries the cause, the rest follow it
        reason = frames.reason if frame == made + 1 else "md_stopped"
        detail = frames.stopped if frame == made + 1 else f"after: {frames.stopped}"
        drops.append(Drop(child_uuid(uuid_of(start), STEP, key, frame), reason,
                          f"{run.temperature:g} K: {detail}"))


def explore(structures: Sequence[Atoms], model: CalculatorConfig,
            config: ExploreConfig = ExploreConfig(), executor: Executor | None = None,
            ) -> tuple[list[Atoms], StageReport]:
    """Snapshots of MD driven by ``model`` from the set's lowest-energy structures.

    Parameters
    ----------
    structures
        A labelled set (energies in eV); the starts are chosen from it
        (:func:`explore_starts`), never modified. Pass the training side of a lineage split
        only, so that held-out lineages stay unseen.
    model
        Calculator config of the model that drives the MD (built inside the workers).
    config
        Temperatures, length, snapshot interval, starts, supercell size, collapse limit.
    executor
        Where the runs go, one task per (start, cell, temperature) (default: local
        processes).

    Returns
    -------
    snapshots, report
        Unlabelled snapshots (children of their starts, step ``"explore"``, positions in Å)
        by start, then temperature, then time; the report of stage ``"explore"``
        (``n_in``: the structures given; ``n_candidates``: planned snapshots; drops:
        ``"collapsed"``, ``"calculator_error"``, ``"timeout"`` and ``"md_stopped"`` for the
        frames after; notes: starts, runs and, with ``surfaces``, the slabs' runs).
    """
    begin = time.perf_counter()
    # the bulk runs' seeds and uuids: those of the config with its surface fields at default
    bulk = replace(config, surfaces=ExploreConfig.surfaces, vacuum=ExploreConfig.vacuum)
    key = f"{bulk.config_hash()}|{model.config_hash()}"
    runs: list[tuple[Atoms, str, _Run]] = []  # (start, the run's key, the run)
    for start in explore_starts(structures, config.starts):
        for cell, kind in _cells(start, config):
            for temperature in config.temperatures:
                run_key = f"{key}|{temperature!r}{kind}"
                run_id = child_uuid(uuid_of(start), STEP, run_key, 0)
                seed = int(rng_for(config.seed, run_id).integers(2**63))
                runs.append((start, run_key, _Run(cell, model, temperature, config, seed)))
    results = run_tasks(_run_md, [run for *_, run in runs], executor or Executor(),
                        desc=STEP)
    out: list[Atoms] = []
    drops: list[Drop] = []
    for (start, run_key, run), frames in zip(runs, results):
        _collect(start, run, frames, run_key, out, drops)
    return out, StageReport(
        stage=STEP, n_in=len(structures), n_candidates=len(runs) * config.frames,
        n_out=len(out), drops=tuple(drops), wall_time=time.perf_counter() - begin,
        notes=(("starts", len({uuid_of(s) for s, *_ in runs})), ("runs", len(runs)),
               *((("surface_runs", sum(k.endswith("|surface") for _, k, _ in runs)),)
                 if config.surfaces else ())))
