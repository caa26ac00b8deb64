"""Fit stage: train a machine-learning potential on a labelled set; get a calculator config back.

:func:`fit` takes labelled structures (the canonical single point of
:mod:`pyiron_assyst.calculators.evaluation`; the target is ``free_energy`` in eV, with forces in
eV/Å and,
where present, stress in eV/Å³), splits them by lineage into a training and a validation side
(:func:`split_by_lineage`: a sampled crystal and everything derived from it stay on one side),
trains the backend in a fresh process dispatched through
:func:`~pyiron_assyst.execution.executors.run_tasks`
(so a GPU partition is requested through the :class:`~pyiron_assyst.execution.executors.Executor`
resources), and returns a :class:`MaceModel` calculator config pointing at the model file in
``directory`` plus a :class:`FitReport`.

The default (and for now only) backend is MACE (``mace-torch``, MIT licence). The returned model
is the one of the *last* epoch: MACE writes a checkpoint only at epochs where it validated and
reloads the best of them, so the fit validates every epoch, keeps all checkpoints and checks that
the model it saved comes from the final epoch. A seeded fit with the same ``threads`` on the same
machine is bit-reproducible (fixed torch threads, deterministic algorithms, seeded loaders).
Finished fits are cached by content (config and training data): fitting again returns the
stored model without training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.calculators.evaluation import has_labels
from pyiron_assyst.core.composition import composition
from pyiron_assyst.core.config import ADDED_FIELD, Config, require
from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.core.report import Drop
from pyiron_assyst.execution.executors import Executor, run_tasks
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.stages.explore import TEMPERATURE_KEY as EXPLORED_KEY

__all__ = [
    "BACKENDS",
    "FitConfig",
    "FitError",
    "FitReport",
    "MaceModel",
    "fit",
    "isolated_energies",
    "split_by_lineage",
    "training_targets",
]

logger = logging.getLogger(__name__)

BACKENDS = ("mace",)
"""Fitting backends behind :func:`fit`."""
_DEVICES = ("auto", "cpu", "cuda")
E0S = ("isolated", "average")
"""Sources of the fit's isolated-atom energies (see :class:`FitConfig`)."""
_DTYPES = ("float32", "float64")


class FitError(RuntimeError):
    """Training failed or did not produce the model of the final epoch."""


@dataclass(frozen=True)
class FitConfig(Config):
    """How :func:`fit` trains a potential.

    Parameters
    ----------
    backend
        Fitting code; ``"mace"`` (``mace-torch``, MIT).
    r_max
        Cutoff radius in Å.
    num_channels
        MACE feature channels (model width).
    max_L
        Highest symmetry order of the equivariant messages (0: invariant, fastest).
    correlation
        Body order of the product basis minus one.
    num_interactions
        Message-passing layers.
    radial_mlp
        Hidden layer widths of the radial MLP (MACE default ``(64, 64, 64)``; smaller is faster).
    epochs
        Training epochs; the model of the last one is returned.
    batch_size
        Structures per training batch.
    learning_rate
        Initial learning rate of the Adam optimizer.
    energy_weight, forces_weight, stress_weight
        Loss weights of energy per atom, forces and stress (``stress_weight = 0``: no stress).
    ema_decay
        Decay of the exponential moving average of the weights that MACE saves (``None``: the
        raw weights of the last step); smooths the last epochs' noise out of the final model
        (MACE's recommended 0.99; on the quick case of ``pyiron-assyst fit`` it lowers the
        held-out energy MAE from 17 to 10 meV/atom).
    valid_fraction
        Fraction of lineages (root crystals with all their descendants) in the validation side,
        which MACE uses for its learning-rate schedule and logs; at least one lineage when > 0.
    seed
        Seed of the split, the initial weights and the batch order.
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (``"cuda"`` if the executor reserves GPUs).
    threads
        torch threads of the training process; fixed so that a seeded fit is reproducible.
    default_dtype
        ``"float64"`` (MACE's default, accurate) or ``"float32"`` (faster on GPUs; on CPUs
        only ~1.2 times for a small model); both are reproducible. The returned model
        evaluates in the same type.
    e0s
        Isolated-atom energies of the model (its energy of an atom with no neighbour):
        ``"isolated"`` (default) takes them from the labelled isolated atoms in the set (one
        atom whose periodic images are all beyond ``r_max``, e.g. from the short-range stage),
        so the model's cohesive energy is the reference's; if an element has none, the fit
        falls back to ``"average"`` with a warning and the report says so. ``"average"``:
        MACE's least-squares estimate from the set's energies (an isolated atom then comes
        out eV off, and so does every extrapolation towards clusters and dimers).
    pair_repulsion
        Add MACE's ZBL pair repulsion (``--pair_repulsion``): a universal screened-nuclear
        repulsion that makes the model repulsive at distances the set never reaches.
    cluster_weight
        Weight of the short-range stage's isolated atoms, dimers and trimers in the loss
        (MACE's per-structure ``config_weight``; 1: like every other structure). They are a
        handful among hundreds of crystals, so with weight 1 the model may miss them by
        tenths of an eV per atom. With ``cluster_forces_weight`` set it weights their
        energies only (MACE's ``config_energy_weight``).
    cluster_forces_weight
        ``None`` (default): ``cluster_weight`` weights the clusters' energies and forces alike.
        A number: the weight of their forces (MACE's ``config_forces_weight``), apart from
        their energies. The forces of a compressed dimer are tens of eV/Å, so weighting them
        with the energies spends the clusters' share of the loss on the steep wall (which the
        ZBL baseline already gives) and leaves the absolute binding curve off by 0.1-0.2
        eV/atom; the quick case weights the energies 10 and the forces 1 (docs/fitting.md).
        At ``None`` it is not part of the config's identity.
    explored_weights
        Weights ``(energy, forces)`` of the explore stage's snapshots (structures with
        ``info['explore_temperature']``, :mod:`pyiron_assyst.stages.explore`) in the loss
        (MACE's ``config_energy_weight`` and ``config_forces_weight``). A snapshot of a
        24-atom liquid brings 24 atoms' forces against one or two of a small crystal, so with
        weight 1 a few dozen snapshots hold most of the force loss. At ``(1.0, 1.0)`` it is
        not part of the config's identity.
    """

    backend: str = "mace"
    r_max: float = 5.0
    num_channels: int = 16
    max_L: int = 0
    correlation: int = 3
    num_interactions: int = 2
    radial_mlp: tuple[int, ...] = (64, 64, 64)
    epochs: int = 50
    batch_size: int = 8
    learning_rate: float = 0.01
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 0.0
    ema_decay: float | None = 0.99
    valid_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    default_dtype: str = "float64"
    e0s: str = "isolated"
    pair_repulsion: bool = True
    cluster_weight: float = 1.0
    cluster_forces_weight: float | None = field(default=None, metadata=ADDED_FIELD)
    explored_weights: tuple[float, float] = field(default=(1.0, 1.0), metadata=ADDED_FIELD)

    def __post_init__(self) -> None:
        name = "FitConfig"
        require(self.backend in BACKENDS, name, "backend", f"one of {BACKENDS}", self.backend)
        require(self.r_max > 0, name, "r_max", "> 0 Å", self.r_max)
        for key in ("num_channels", "correlation", "num_interactions", "epochs",
                    "batch_size", "threads"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 1, name, key, "an integer >= 1", value)
        object.__setattr__(self, "radial_mlp", tuple(self.radial_mlp))
        require(len(self.radial_mlp) >= 1 and all(isinstance(w, int) and w >= 1
                                                  for w in self.radial_mlp),
                name, "radial_mlp", "a tuple of integers >= 1", self.radial_mlp)
        require(isinstance(self.max_L, int) and 0 <= self.max_L <= 3, name, "max_L",
                "an integer in 0..3", self.max_L)
        require(self.learning_rate > 0, name, "learning_rate", "> 0", self.learning_rate)
        for key in ("energy_weight", "forces_weight", "stress_weight"):
            value = getattr(self, key)
            require(value >= 0, name, key, ">= 0", value)
        require(self.ema_decay is None or 0 < self.ema_decay < 1, name, "ema_decay",
                "None or in (0, 1)", self.ema_decay)
        require(0 <= self.valid_fraction < 1, name, "valid_fraction", "in [0, 1)",
                self.valid_fraction)
        require(isinstance(self.seed, int) and self.seed >= 0, name, "seed", "an integer >= 0",
                self.seed)
        require(self.device in _DEVICES, name, "device", f"one of {_DEVICES}", self.device)
        require(self.default_dtype in _DTYPES, name, "default_dtype", f"one of {_DTYPES}",
                self.default_dtype)
        require(self.e0s in E0S, name, "e0s", f"one of {E0S}", self.e0s)
        require(isinstance(self.pair_repulsion, bool), name, "pair_repulsion", "a bool",
                self.pair_repulsion)
        require(isinstance(self.cluster_weight, (int, float)) and not isinstance(
            self.cluster_weight, bool) and self.cluster_weight > 0, name, "cluster_weight",
                "a number > 0", self.cluster_weight)
        object.__setattr__(self, "cluster_weight", float(self.cluster_weight))
        forces = self.cluster_forces_weight
        require(forces is None or (isinstance(forces, (int, float)) and not isinstance(
            forces, bool) and forces > 0), name, "cluster_forces_weight",
                "None or a number > 0", forces)
        if forces is not None:
            object.__setattr__(self, "cluster_forces_weight", float(forces))
        weights = tuple(self.explored_weights)
        require(len(weights) == 2 and all(isinstance(w, (int, float)) and not isinstance(
            w, bool) and w >= 0 for w in weights), name, "explored_weights",
                "two numbers >= 0 (energy, forces)", self.explored_weights)
        object.__setattr__(self, "explored_weights", tuple(float(w) for w in weights))

    def resolved_device(self, executor: Executor | None) -> str:
        """The device the fit runs on: ``"cuda"`` for ``"auto"`` when ``executor`` has GPUs."""
        if self.device != "auto":
            return self.device
        return "cuda" if executor is not None and executor.gpus_per_core > 0 else "cpu"


@dataclass(frozen=True)
class MaceModel(CalculatorConfig):
    """A fitted MACE model file as a calculator config (:class:`mace.calculators.MACECalculator`).

    Its identity (:meth:`config_hash`) is what the model is, not where its file lies: with
    ``sha256`` given, the path is left out, so the same model copied or moved (another output
    directory, a project on another machine) drives the same random streams, snapshots and
    cache keys.

    Parameters
    ----------
    model_path
        Absolute path of the ``.model`` file.
    sha256
        Content hash of the model file: the model's identity (part of the config hash, in
        place of the path), so caches keyed on the calculator config never answer for another
        model; checked when the calculator is built. Empty: the path is the identity.
    device
        Device of the calculator (``"cpu"`` or ``"cuda"``).
    default_dtype
        Floating-point type of the evaluation (``"float64"`` or ``"float32"``).
    """

    model_path: str
    sha256: str = ""
    device: str = "cpu"
    default_dtype: str = "float64"

    def __post_init__(self) -> None:
        require(isinstance(self.model_path, str) and bool(self.model_path), "MaceModel",
                "model_path", "the path of a MACE .model file", self.model_path)
        require(self.device in ("cpu", "cuda"), "MaceModel", "device", "'cpu' or 'cuda'",
                self.device)
        require(self.default_dtype in _DTYPES, "MaceModel", "default_dtype",
                f"one of {_DTYPES}", self.default_dtype)

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the model's content (``sha256``), device and dtype; of
        the path instead where no ``sha256`` is given."""
        if not self.sha256:
            return super().config_hash()
        data = self.to_dict(strict=False)
        del data["model_path"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def get_calculator(self) -> BaseCalculator:
        if self.sha256 and _sha256(Path(self.model_path)) != self.sha256:
            raise FitError(f"model file {self.model_path} changed since it was fitted "
                           f"(sha256 differs from {self.sha256})")
        return _mace_calculator(self.model_path, self.device, self.default_dtype)


def _mace_calculator(path: str, device: str, dtype: str) -> BaseCalculator:
    import warnings

    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MACECalculator(model_paths=path, device=device, default_dtype=dtype)


@dataclass(frozen=True)
class FitReport(Config):
    """What one fit did.

    Parameters
    ----------
    backend
        Fitting code.
    n_in
        Structures given.
    n_train, n_valid
        Structures on the training and the validation side.
    train_roots, valid_roots
        Lineages (root uuids) on each side, sorted.
    drops
        Structures not used, with reason (``"unlabelled"``).
    final_epoch
        Epoch (0-based, MACE's count) of the returned model; always the last: ``epochs - 1``,
        or for a continued fit the start's final epoch ``+ epochs - 1`` (MACE retrains from the
        start's last epoch on).
    device
        Device the training ran on.
    threads
        torch threads of the training process.
    wall_time
        Wall-clock time of the stage in s (0-ish when answered from the cache).
    cached
        Whether the model came from an earlier identical fit.
    model_path
        The model file.
    e0s
        Isolated-atom energies the model uses, ``(symbol, eV)`` (empty for ``"average"``:
        MACE estimates them and logs them).
    e0s_source
        ``"isolated"``, or ``"average"`` with the reason when ``"isolated"`` was asked for.
    continued
        The model file the fit continued (``start`` of :func:`fit`; empty: a fresh fit).
    epochs
        Epochs this fit trained (``config.epochs``; for a continued fit the epochs added to
        its start's; 0: not recorded, a report stored before this field).
    """

    backend: str
    n_in: int
    n_train: int
    n_valid: int
    train_roots: tuple[str, ...] = ()
    valid_roots: tuple[str, ...] = ()
    drops: tuple[Drop, ...] = ()
    final_epoch: int = -1
    device: str = "cpu"
    threads: int = 1
    wall_time: float = 0.0
    cached: bool = False
    model_path: str = ""
    e0s: tuple[tuple[str, float], ...] = ()
    e0s_source: str = ""
    continued: str = field(default="", metadata=ADDED_FIELD)
    epochs: int = field(default=0, metadata=ADDED_FIELD)

    def summary(self) -> str:
        """One line: sizes of both sides, drops, final epoch, time."""
        text = (f"fit ({self.backend}, {self.device}): {self.n_in} in, {self.n_train} train / "
                f"{self.n_valid} valid ({len(self.train_roots)} / {len(self.valid_roots)} "
                f"lineages)")
        if self.drops:
            text += f"; dropped {len(self.drops)}"
        e0s = ", ".join(f"{s} {e:.4g} eV" for s, e in self.e0s)
        text += f"; E0s {self.e0s_source}" + (f" ({e0s})" if e0s else "")
        if self.continued:
            text += f"; continued {Path(self.continued).parent.name}" + (
                f" for {self.epochs} more epochs" if self.epochs else "")
        return text + f"; final epoch {self.final_epoch}; {self.wall_time:.1f} s" + (
            " (cached)" if self.cached else "")


# --------------------------------------------------------------------------- split


def root_of(atoms: Atoms) -> str:
    """The lineage of ``atoms``: its root uuid (its own uuid for structures from outside)."""
    return str(atoms.info.get("root", uuid_of(atoms)))


def _root_key(seed: int, root: str) -> bytes:
    return hashlib.sha256(f"split|{seed}|{root}".encode()).digest()


def split_by_lineage(structures: Sequence[Atoms], fraction: float, seed: int = 0,
                     ) -> tuple[list[Atoms], list[Atoms]]:
    """Split into ``(kept, held_out)`` with whole lineages on one side.

    Isolated atoms, dimers and trimers of the short-range stage (``info['short_range']`` of
    kind ``"isolated"``, ``"dimer"``, ``"trimer"``) are no lineage of the method: they are
    always kept (the fit's isolated-atom energies come from them); compressed crystals follow
    their lineage.

    Each composition (reduced formula of a lineage's structures) is split on its own: its
    held-out side holds ``round(fraction * n)`` of its ``n`` lineages (at least one when
    ``fraction > 0`` and it has two or more, never all of them), chosen by a hash of
    ``(seed, root)``. So every composition with two or more lineages is tested (an alloy's few
    lineages are not left all on the training side by chance, as a split over all lineages
    at once left the quick binary case's 1:1 cells), and the split of a lineage does not depend
    on the order or on the structures of other compositions. With one composition this is
    the split over all lineages. Order within each side is the input order.

    Parameters
    ----------
    structures
        Structures with ``Atoms.info['root']`` (structures without are their own lineage).
    fraction
        Fraction of lineages held out, in [0, 1).
    seed
        Seed of the choice.
    """
    require(0 <= fraction < 1, "split_by_lineage", "fraction", "in [0, 1)", fraction)
    kinds: dict[str, str] = {}  # root -> composition (the least, should a lineage mix them)
    for s in structures:
        if not _anchor(s):
            root, kind = root_of(s), composition(s)
            kinds[root] = min(kinds.get(root, kind), kind)
    lineages: dict[str, list[str]] = {}
    for root, kind in kinds.items():
        lineages.setdefault(kind, []).append(root)
    held: set[str] = set()
    for roots in lineages.values():
        roots.sort(key=lambda r: _root_key(seed, r))
        n_held = max(round(fraction * len(roots)), 1 if fraction > 0 else 0)
        held.update(roots[:min(n_held, len(roots) - 1)])
    kept = [s for s in structures if _anchor(s) or root_of(s) not in held]
    return kept, [s for s in structures if not _anchor(s) and root_of(s) in held]


def _anchor(atoms: Atoms) -> bool:
    """An isolated atom, dimer or trimer of the short-range stage (never held out)."""
    return atoms.info.get("short_range") in ("isolated", "dimer", "trimer")


def isolated_energies(structures: Sequence[Atoms], r_max: float) -> dict[str, float]:
    """``{symbol: E}`` in eV (``free_energy``) of the labelled single atoms whose periodic
    images are all at least ``r_max`` Å away (what a model of cutoff ``r_max`` sees as an
    isolated atom); the first one of an element wins."""
    from pyiron_assyst.calculators.structure_settings import is_isolated_atom

    found: dict[str, float] = {}
    for atoms in structures:
        if len(atoms) == 1 and has_labels(atoms) and is_isolated_atom(atoms, r_max):
            results = atoms.calc.results
            found.setdefault(atoms.get_chemical_symbols()[0],
                             float(results.get("free_energy", results["energy"])))
    return found


# --------------------------------------------------------------------------- data


def training_targets(atoms: Atoms, cluster_weight: float = 1.0,
                     cluster_forces_weight: float | None = None,
                     explored_weights: tuple[float, float] = (1.0, 1.0)) -> Atoms:
    """A copy of a labelled structure with MACE's reference keys and no calculator.

    ``info['REF_energy']`` is the label's ``free_energy`` (eV; ``energy`` if absent),
    ``arrays['REF_forces']`` its forces (eV/Å) and ``info['REF_stress']`` its stress (eV/Å³,
    Voigt, ASE sign) when it has one. Lineage keys are kept. An isolated atom, dimer or
    trimer of the short-range stage gets ``info['config_weight'] = cluster_weight`` (MACE's
    per-structure loss weight) unless that is 1; with ``cluster_forces_weight`` it gets
    ``config_energy_weight = cluster_weight`` and ``config_forces_weight =
    cluster_forces_weight`` instead (energy and forces weighted apart). A snapshot of the
    explore stage (``info['explore_temperature']``) gets ``config_energy_weight`` and
    ``config_forces_weight`` from ``explored_weights`` unless both are 1.
    """
    results = atoms.calc.results
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.info = {k: v for k, v in atoms.info.items() if k in ("uuid", "root")}
    out.info["REF_energy"] = float(results.get("free_energy", results["energy"]))
    out.arrays["REF_forces"] = np.array(results["forces"], dtype=float)
    if "stress" in results and atoms.pbc.all():
        out.info["REF_stress"] = np.array(results["stress"], dtype=float)
    if _anchor(atoms) and cluster_forces_weight is not None:
        out.info["config_energy_weight"] = float(cluster_weight)
        out.info["config_forces_weight"] = float(cluster_forces_weight)
    elif _anchor(atoms) and cluster_weight != 1.0:
        out.info["config_weight"] = float(cluster_weight)
    if EXPLORED_KEY in atoms.info and tuple(explored_weights) != (1.0, 1.0):
        out.info["config_energy_weight"] = float(explored_weights[0])
        out.info["config_forces_weight"] = float(explored_weights[1])
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_xyz(path: Path, structures: Sequence[Atoms]) -> None:
    from ase.io import write

    write(path, list(structures), format="extxyz")


# --------------------------------------------------------------------------- training task


@dataclass(frozen=True)
class _Task:
    """One training run: command-line arguments for :mod:`pyiron_assyst.fitting._mace_train`."""

    work_dir: str
    arguments: tuple[str, ...]
    threads: int


def _mace_arguments(config: FitConfig, device: str, has_valid: bool,
                    e0s: dict[str, float] | None = None, start: _Start | None = None,
                    ) -> list[str]:
    total = _last_epoch(config, start) + 1  # MACE counts on from the start's epoch
    hidden = " + ".join(f"{config.num_channels}x{ell}{'e' if ell % 2 == 0 else 'o'}"
                        for ell in range(config.max_L + 1))
    args = [
        "--name", "model", "--seed", str(config.seed), "--model", "MACE",
        "--train_file", "train.xyz", "--energy_key", "REF_energy", "--forces_key", "REF_forces",
        "--stress_key", "REF_stress", "--E0s", "e0s.json" if e0s else "average",
        "--r_max", repr(config.r_max), "--hidden_irreps", hidden,
        "--correlation", str(config.correlation),
        "--num_interactions", str(config.num_interactions),
        "--radial_MLP", "[" + ", ".join(str(w) for w in config.radial_mlp) + "]",
        "--max_num_epochs", str(total), "--batch_size", str(config.batch_size),
        "--valid_batch_size", str(max(config.batch_size, 16)),
        "--lr", repr(config.learning_rate), "--energy_weight", repr(config.energy_weight),
        "--forces_weight", repr(config.forces_weight), "--device", device,
        "--default_dtype", config.default_dtype,
        # validate every epoch and keep every checkpoint: the last one is the final model
        "--eval_interval", "1", "--save_all_checkpoints", "--patience", str(total + 1),
        "--num_workers", "0", "--save_cpu", "--log_level", "INFO",
    ]
    if config.stress_weight > 0:
        args += ["--loss", "stress", "--stress_weight", repr(config.stress_weight),
                 "--compute_stress", "True"]
    else:
        args += ["--loss", "weighted"]
    if config.ema_decay is not None:
        args += ["--ema", "--ema_decay", repr(config.ema_decay)]
    if config.pair_repulsion:
        args.append("--pair_repulsion")
    if start is not None:  # its checkpoint is in checkpoints/; the same message normalisation
        args += ["--restart_latest", "--compute_avg_num_neighbors", "False",
                 "--avg_num_neighbors", repr(start.avg_num_neighbors)]
    # MACE refuses a validation fraction of 0: without a validation side it validates on the
    # training data (only its logs and the learning-rate schedule see it)
    args += ["--valid_file", "valid.xyz" if has_valid else "train.xyz"]
    return args


def _e0s(config: FitConfig, structures: Sequence[Atoms]) -> tuple[dict[str, float], str]:
    """The isolated-atom energies to give MACE (empty: ``average``) and their source."""
    if config.e0s == "average":
        return {}, "average"
    found = isolated_energies(structures, config.r_max)
    elements = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    missing = [s for s in elements if s not in found]
    if missing:
        logger.warning("fit: no labelled isolated atom of %s in the set; MACE's E0s fall back "
                       "to 'average' (add the short-range stage's isolated atoms)", missing)
        return {}, f"average (no isolated atom of {', '.join(missing)})"
    return {s: found[s] for s in elements}, "isolated"


def _write_e0s(path: Path, e0s: dict[str, float]) -> None:
    from ase.data import atomic_numbers

    path.write_text(json.dumps({str(atomic_numbers[s]): e for s, e in e0s.items()}))


def _train(task: _Task) -> str:
    """Worker: run the training process in ``task.work_dir``; return the log text."""
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS=str(task.threads))
    command = [sys.executable, "-m", "pyiron_assyst.fitting._mace_train", "--threads",
               str(task.threads), *task.arguments]
    with open(Path(task.work_dir) / "train.log", "w") as log:
        process = subprocess.run(command, cwd=task.work_dir, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, check=False)
    text = (Path(task.work_dir) / "train.log").read_text()
    if process.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise FitError(f"MACE training exited with status {process.returncode}:\n{tail}")
    return text


_LOADED = re.compile(r"Loaded Stage one model from epoch (\d+)")


def _final_epoch(log: str, epochs: int) -> int:
    found = [int(m) for m in _LOADED.findall(log)]
    if not found or found[-1] != epochs - 1:
        raise FitError(f"MACE saved the model of epoch {found[-1] if found else '?'}, not of "
                       f"the final epoch {epochs - 1}; refusing to return it")
    return found[-1]


# --------------------------------------------------------------------------- continuing a fit

_ARCHITECTURE = ("backend", "r_max", "num_channels", "max_L", "correlation", "num_interactions",
                 "radial_mlp", "default_dtype", "pair_repulsion")
"""The fields of :class:`FitConfig` that a continued fit must share with its start."""
_NEIGHBOURS = re.compile(r"Average number of neighbors: ([-+0-9.eE]+)")


@dataclass(frozen=True)
class _Start:
    """The fit that a continued fit starts from.

    ``checkpoint``: its final checkpoint (weights, optimizer and learning-rate state), of
    MACE epoch ``epoch``; ``avg_num_neighbors``: its message normalisation, which MACE would
    otherwise compute anew from the new data and so change the start's function;
    ``sha256``: its model file's hash (part of the continued fit's cache key).
    """

    checkpoint: Path
    epoch: int
    avg_num_neighbors: float
    sha256: str


def _start_of(model: MaceModel, config: FitConfig) -> _Start:
    """The start of a fit that continues ``model`` (a model of :func:`fit`) with ``config``."""
    work = Path(model.model_path).parent
    try:
        record = json.loads((work / "fit.json").read_text())
        sha256 = _sha256(Path(model.model_path))
    except (OSError, ValueError) as error:
        raise FitError(f"cannot continue {model.model_path}: not a finished fit of this "
                       f"package ({error})") from None
    if model.sha256 and sha256 != model.sha256:
        raise FitError(f"cannot continue {model.model_path}: the file changed since it was "
                       "fitted")
    ours = json.loads(config.to_json())
    differ = [k for k in _ARCHITECTURE if record["config"].get(k) != ours[k]]
    if differ:
        raise FitError(f"cannot continue {model.model_path}: its {', '.join(differ)} differ "
                       "from the config's (a continued fit keeps the model's architecture)")
    epoch = int(record["final_epoch"])
    checkpoint = work / "checkpoints" / f"model_run-{record['config']['seed']}_epoch-{epoch}.pt"
    neighbours = record.get("avg_num_neighbors") or _logged_neighbours(work / "train.log")
    if not checkpoint.is_file() or neighbours is None:
        raise FitError(f"cannot continue {model.model_path}: its final checkpoint or its "
                       f"average number of neighbours is missing in {work}")
    return _Start(checkpoint, epoch, float(neighbours), sha256)


def _logged_neighbours(log: Path) -> float | None:
    """The average number of neighbours a MACE training log reports (``None``: none)."""
    found = _NEIGHBOURS.findall(log.read_text()) if log.is_file() else []
    return float(found[-1]) if found else None


def _last_epoch(config: FitConfig, start: _Start | None) -> int:
    """MACE's number of the final epoch: a continued fit retrains from its start's last one."""
    return (start.epoch if start is not None else 0) + config.epochs - 1


def _check_continued(log: str, start: _Start) -> None:
    """Raise unless MACE loaded ``start``'s checkpoint before training (it falls back to a
    fresh model silently when the checkpoint does not load)."""
    begin = log.find("Started training")
    if begin < 0 or not re.search(rf"Loading checkpoint: \S*_epoch-{start.epoch}\.pt",
                                  log[:begin]):
        raise FitError(f"MACE did not load the checkpoint of epoch {start.epoch} before "
                       "training: the fit would not continue its start; refusing it")


# --------------------------------------------------------------------------- the stage


def _usable(structures: Sequence[Atoms]) -> tuple[list[Atoms], list[Drop]]:
    kept, drops = [], []
    for atoms in structures:
        if has_labels(atoms):
            kept.append(atoms)
        else:
            drops.append(Drop(uuid_of(atoms), "unlabelled", "no single point with energy and "
                              "forces (label the set first)"))
    return kept, drops


def _fit_key(config: FitConfig, device: str, train: Path, valid: Path | None,
             start: _Start | None = None) -> str:
    digest = hashlib.sha256(config.to_json().encode() + device.encode())
    if start is not None:
        digest.update(start.sha256.encode())
    for path in (train, valid):
        if path is not None:
            digest.update(_sha256(path).encode())
    return digest.hexdigest()[:16]


def fit(structures: Sequence[Atoms], config: FitConfig = FitConfig(),
        executor: Executor | None = None, directory: str | os.PathLike[str] = "fit",
        start: MaceModel | None = None) -> tuple[MaceModel, FitReport]:
    """Train a potential on labelled ``structures``; return its calculator config and a report.

    Parameters
    ----------
    structures
        Labelled structures (single point with ``free_energy``/``energy`` in eV, forces in
        eV/Å, optionally stress in eV/Å³); unlabelled ones are dropped with reason
        ``"unlabelled"``. Never modified.
    config
        Model, training and split settings.
    executor
        Where the training process runs (one task; default: in this process's machine). Its
        ``gpus_per_core`` chooses ``"cuda"`` for ``device="auto"``; on ``"slurm_cluster"`` its
        partition and GPUs are requested for the training job.
    directory
        Project directory; the fit writes ``fit_<key>/`` there (data, log, checkpoints and
        ``model.model``), ``key`` being a hash of the config, the device, the data and
        ``start``.
    start
        A model of an earlier :func:`fit` (same architecture: ``r_max``, channels, ``max_L``,
        correlation, interactions, radial MLP, dtype, ZBL) to continue instead of starting
        from random weights: its final checkpoint (weights, optimizer and learning-rate state)
        is trained ``config.epochs`` more epochs on ``structures`` (active learning's refit on
        the old data and the new, :func:`pyiron_assyst.fitting.active.refine`). The learning
        rate goes on from the start's last one; ``config.learning_rate`` does not apply.

    Raises
    ------
    FitError
        If no labelled structure is left, training fails, the model is not the final one, or
        ``start`` cannot be continued (another architecture, a changed or incomplete fit).
    """
    begin = time.perf_counter()
    origin = _start_of(start, config) if start is not None else None
    usable, drops = _usable(structures)
    if not usable:
        raise FitError("fit: no labelled structures (label the set first)")
    train, valid = split_by_lineage(usable, config.valid_fraction, config.seed)
    device = config.resolved_device(executor)
    staging = Path(directory).resolve() / f"fit_staging_{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    weights = (config.cluster_weight, config.cluster_forces_weight, config.explored_weights)
    _write_xyz(staging / "train.xyz", [training_targets(s, *weights) for s in train])
    e0s, e0s_source = _e0s(config, train)
    if e0s:
        _write_e0s(staging / "e0s.json", e0s)
    if valid:
        _write_xyz(staging / "valid.xyz", [training_targets(s, *weights) for s in valid])
    key = _fit_key(config, device, staging / "train.xyz", staging / "valid.xyz" if valid else None,
                   origin)
    work = Path(directory).resolve() / f"fit_{key}"
    model_file = work / "model.model"
    cached = (work / "fit.json").is_file() and model_file.is_file()
    if cached:
        final_epoch = json.loads((work / "fit.json").read_text())["final_epoch"]
        shutil.rmtree(staging)
    else:
        final_epoch = _run_training(config, device, staging, work, valid, executor, e0s,
                                    origin)
    report = FitReport(
        backend=config.backend, n_in=len(structures), n_train=len(train), n_valid=len(valid),
        train_roots=tuple(sorted({root_of(s) for s in train})),
        valid_roots=tuple(sorted({root_of(s) for s in valid})), drops=tuple(drops),
        final_epoch=final_epoch, device=device, threads=config.threads,
        wall_time=time.perf_counter() - begin, cached=cached, model_path=str(model_file),
        e0s=tuple(e0s.items()), e0s_source=e0s_source,
        continued=start.model_path if start is not None else "", epochs=config.epochs)
    model = MaceModel(str(model_file), _sha256(model_file), "cpu", config.default_dtype)
    return model, report


def _run_training(config: FitConfig, device: str, staging: Path, work: Path,
                  valid: Sequence[Atoms], executor: Executor | None,
                  e0s: dict[str, float], start: _Start | None = None) -> int:
    if work.exists():  # an interrupted run: start clean, stale checkpoints would be reloaded
        shutil.rmtree(work)
    staging.rename(work)
    if start is not None:  # where MACE's --restart_latest finds it, under this fit's tag
        (work / "checkpoints").mkdir()
        shutil.copyfile(start.checkpoint, work / "checkpoints" /
                        f"model_run-{config.seed}_epoch-{start.epoch}.pt")
    task = _Task(str(work), tuple(_mace_arguments(config, device, bool(valid), e0s, start)),
                 config.threads)
    executor = executor or Executor(kind="serial")
    (result,) = run_tasks(_train, [task], executor, desc="fit")
    if isinstance(result, TaskError):
        raise FitError(f"fit failed: {result}")
    if start is not None:
        _check_continued(result, start)
    final_epoch = _final_epoch(result, _last_epoch(config, start) + 1)
    if not (work / "model.model").is_file():
        raise FitError(f"MACE wrote no model file in {work}")
    _prune_checkpoints(work)
    neighbours = start.avg_num_neighbors if start is not None else _logged_neighbours(
        work / "train.log")
    (work / "fit.json").write_text(json.dumps({
        "final_epoch": final_epoch, "config": config.to_dict(),
        "avg_num_neighbors": neighbours,
        "start": str(start.checkpoint) if start is not None else None}, indent=1))
    return final_epoch


def _prune_checkpoints(work: Path) -> None:
    """Keep only the final checkpoint (MACE keeps one per validated epoch)."""
    checkpoints = sorted((work / "checkpoints").glob("*_epoch-*.pt"),
                         key=lambda p: int(re.search(r"_epoch-(\d+)", p.name)[1]))
    for path in checkpoints[:-1]:
        path.unlink()
