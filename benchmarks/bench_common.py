"""Shared pieces of the side-by-side benchmarks: cases, settings, measuring, statistics.

A *case* is one configuration that both implementations run: the formulas, the space groups,
and the published workflow's settings (as in the reference's ``SimpleUnary`` notebook and the
``assyst`` macro of pyiron_assyst): ``AspectFilter(6)`` after sampling, a volume and then a full
relaxation with LBFGS to 1e-3 eV/Å in at most 100 steps, four ``Rattle(0.25 Å) + Stretch(5 %,
0.5 %)`` and four ``RandomChoice`` stretches (70 % mostly hydrostatic up to 80 %, 30 % mostly
shear up to 20 %) per minimum kept when no pair is closer than 2 Å (10 tries), the union of all
stages filtered by the same distance and at most 300 Å³/atom, and every kept structure labelled
with ASE's EMT.

Measuring: :func:`measure` times a callable ``repeats`` times and keeps the fastest run (the
machine is shared, noise only ever adds time), while a thread samples the resident memory of
this process and its worker processes every few ms (peak growth over the run, MB).
:func:`one_core` limits BLAS/OpenMP to one thread for in-process (serial) runs.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

HERE = os.path.dirname(os.path.abspath(__file__))

ALL_GROUPS = tuple(range(1, 231))
QUICK_GROUPS = (1, 2, 47, 123, 166, 191, 221, 225, 229)
"""Space groups of the quick case: low and high symmetry of most crystal families."""


@dataclass(frozen=True)
class Case:
    """One benchmark configuration.

    Parameters
    ----------
    name
        Short name (table rows, file names).
    formulas
        Compositions as ``(element, count)`` pairs, in the order given to both codes.
    spacegroups
        Space groups sampled for every formula.
    seed
        Seed of both codes' random numbers (sampling, perturbations).
    max_steps
        Optimizer steps after which a relaxation stops unconverged (published: 100).
    """

    name: str
    formulas: tuple[tuple[tuple[str, int], ...], ...]
    spacegroups: tuple[int, ...] = ALL_GROUPS
    seed: int = 1
    max_steps: int = 100

    @property
    def max_atoms(self) -> int:
        return max(sum(n for _, n in f) for f in self.formulas)

    @property
    def grid_points(self) -> int:
        return len(self.formulas) * len(self.spacegroups)

    def describe(self) -> str:
        names = ", ".join("".join(f"{e}{n}" for e, n in f) for f in self.formulas)
        groups = ("all 230 space groups" if self.spacegroups == ALL_GROUPS
                  else f"{len(self.spacegroups)} space groups")
        steps = "" if self.max_steps == 100 else f"; relaxations stop after {self.max_steps} steps"
        return f"{names}; {groups}; EMT{steps}"


def _unary(element: str, max_atoms: int) -> tuple[tuple[tuple[str, int], ...], ...]:
    return tuple(((element, n),) for n in range(1, max_atoms + 1))


def _binary(a: str, b: str, max_atoms: int) -> tuple[tuple[tuple[str, int], ...], ...]:
    return tuple(((a, i), (b, j)) for i in range(1, max_atoms) for j in range(1, max_atoms)
                 if i + j <= max_atoms)


CASES: dict[str, Case] = {
    "unary": Case("unary", _unary("Cu", 4)),
    "binary": Case("binary", _binary("Cu", "Ag", 4)),
    "quick": Case("quick", _unary("Cu", 2), QUICK_GROUPS, max_steps=30),
}
"""``unary``: Cu1-Cu4; ``binary``: the mixed Cu-Ag compositions up to 4 atoms (the elemental
end points are the unary case); ``quick``: Cu1-Cu2 in 9 groups, relaxations stopped after 30
steps (the smoke test)."""

STAGES = ("sample", "volume relax", "full relax", "perturb", "filter", "label")


# --------------------------------------------------------------------------- measuring


@dataclass
class StageRun:
    """What one stage of one implementation did (the fastest of the repeats)."""

    case: str
    stage: str
    impl: str
    cores: int
    wall: float
    walls: list[float]
    cpu: float
    n_in: int
    n_out: int
    force_calls: int | None = None
    calc_time: float | None = None
    converged: float | None = None
    peak_mb: float = 0.0
    idle_estimate: float | None = None
    worker_cpu: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class _MemorySampler(threading.Thread):
    """Samples the RSS of this process and its children; ``peak`` growth in bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.stop_event = threading.Event()
        self.children: list[Any] = []
        self.refreshed = 0.0
        self.base = self._rss()
        self.peak = 0

    def refresh(self) -> None:
        """Look for child processes again (worker pools start and stop)."""
        with contextlib.suppress(Exception):
            self.children = self.process.children(recursive=True)
        self.refreshed = time.monotonic()

    def _rss(self) -> int:
        if time.monotonic() - getattr(self, "refreshed", 0.0) > 0.5:
            self.refresh()
        total = self.process.memory_info().rss
        for child in self.children:
            with contextlib.suppress(Exception):
                total += child.memory_info().rss
        return total

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.peak = max(self.peak, self._rss() - self.base)

    def cpu(self) -> tuple[float, dict[int, float]]:
        """CPU time (user + system, s) of this process, and of each current child by pid."""
        children = {}
        for child in self.children:
            with contextlib.suppress(Exception):
                times = child.cpu_times()
                children[child.pid] = times.user + times.system
        return time.process_time(), children

    def stop(self) -> float:
        self.stop_event.set()
        self.join()
        self.peak = max(self.peak, self._rss() - self.base)
        return self.peak / 1e6


@dataclass
class Timing:
    """Fastest of the repeats: wall s, all walls, CPU s of that run, peak memory MB, result."""

    wall: float
    walls: list[float]
    cpu: float
    peak_mb: float
    result: Any
    main_cpu: float = 0.0
    worker_cpu: list[float] = field(default_factory=list)

    @property
    def idle_estimate(self) -> float:
        """Wall time (s) this run would take on idle cores: the busiest worker's CPU time plus
        the driver's (an upper bound when they overlap); the wall time itself for serial runs.
        """
        if not self.worker_cpu:
            return self.wall
        return min(self.wall, max(self.worker_cpu) + self.main_cpu)


def measure(func: Callable[[], Any], repeats: int,
            setup: Callable[[], None] | None = None) -> Timing:
    """Run ``func`` ``repeats`` times and keep the fastest run (see :class:`Timing`).

    ``setup`` runs before each repeat, untimed. CPU time counts this process and the worker
    processes that exist when the run starts (a persistent pool).
    """
    best: Timing | None = None
    walls: list[float] = []
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        gc.collect()
        sampler = _MemorySampler()
        sampler.start()
        main_start, children_start = sampler.cpu()
        start = time.perf_counter()
        try:
            result = func()
        finally:
            wall = time.perf_counter() - start
            sampler.refresh()  # workers started inside the clock
            main_end, children_end = sampler.cpu()
            peak = sampler.stop()
        workers = [t - children_start.get(pid, 0.0) for pid, t in children_end.items()]
        workers = [t for t in workers if t > 0.05]  # idle helpers (resource tracker) aside
        main_cpu = main_end - main_start
        walls.append(wall)
        if best is None or wall < best.wall:
            best = Timing(wall, walls, main_cpu + sum(workers), peak, result, main_cpu,
                          workers)
    assert best is not None
    best.peak_mb = max(best.peak_mb, 0.0)
    return best


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Limit BLAS / OpenMP in this process to one thread (serial runs "on one core")."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------- structures


def volume_per_atom(atoms: Atoms) -> float:
    """Cell volume per atom in Å³/atom."""
    return float(abs(atoms.cell.volume) / len(atoms))


def nearest_distance(atoms: Atoms) -> float:
    """Shortest interatomic distance in Å, periodic images included."""
    from ase.neighborlist import neighbor_list

    cutoff = 4.0
    while cutoff < 64.0:
        distances = neighbor_list("d", atoms, cutoff, self_interaction=False)
        if len(distances):
            return float(distances.min())
        cutoff *= 2
    return math.inf


def energy_per_atom(atoms: Atoms) -> float | None:
    """Stored energy per atom in eV/atom, ``None`` without a single point."""
    calc = atoms.calc
    if calc is None or "energy" not in getattr(calc, "results", {}):
        return None
    return float(calc.results["energy"]) / len(atoms)


def descriptors(structures: Sequence[Atoms]) -> dict[str, list[float]]:
    """Volume per atom, nearest distance and (where labelled) energy per atom of a set."""
    energies = [energy_per_atom(a) for a in structures]
    return {
        "volume": [volume_per_atom(a) for a in structures],
        "distance": [nearest_distance(a) for a in structures],
        "energy": [e for e in energies if e is not None],
    }


def ks(reference: Sequence[float], ours: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (NaN if a sample is empty)."""
    from scipy.stats import ks_2samp

    a = np.asarray([x for x in reference if math.isfinite(x)])
    b = np.asarray([x for x in ours if math.isfinite(x)])
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def strip(structures: Sequence[Atoms]) -> list[Atoms]:
    """Copies without calculator and constraints (inputs handed to the other code)."""
    out = []
    for atoms in structures:
        copy = atoms.copy()
        copy.calc = None
        copy.set_constraint()
        out.append(copy)
    return out


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


PACKAGES = ("pyiron_assyst", "assyst", "ase", "pyxtal", "spglib", "numpy", "scipy",
            "matscipy", "pyiron_workflow", "flowrep", "executorlib")


def machine() -> dict[str, Any]:
    """CPU model, cores, load, python and package versions, date."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def publish(text: str, markdown: Any = None, data: Any = None, json_path: Any = None) -> None:
    """Write ``data`` as JSON to ``json_path`` and the table ``text`` to ``markdown`` (paths,
    each if given) and to stdout."""
    import json

    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1))
    if markdown is not None:
        markdown.write_text(text)
    sys.stdout.write(text)
