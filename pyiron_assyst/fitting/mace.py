"""Fit stage: train a machine-learning potential on a labelled set; get a calculator config back.

:func:`fit` takes labelled structures (the canonical single point of
:mod:`pyiron_assyst.calculators.evaluation`; the target is ``free_energy`` in eV, with forces in
eV/Å and, where present, stress in eV/Å³), splits them by lineage into a training and a
validation side (:func:`~pyiron_assyst.fitting.split.split_by_lineage`: a sampled crystal and
everything derived from it stay on one side), trains the backend in a fresh process dispatched
through :func:`~pyiron_assyst.execution.executors.run_tasks` (so a GPU partition is requested
through the :class:`~pyiron_assyst.execution.executors.Executor` resources), and returns a
:class:`~pyiron_assyst.fitting.model.MaceModel` calculator config pointing at the model file in
``directory`` plus a :class:`~pyiron_assyst.fitting.fit_report.FitReport`.

The default (and for now only) backend is MACE (``mace-torch``, MIT licence). The returned model
is the one of the *last* epoch: MACE writes a checkpoint only at epochs where it validated and
reloads the best of them, so the fit validates every epoch, keeps all checkpoints and checks that
the model it saved comes from the final epoch. A seeded fit with the same ``threads`` on the same
machine is bit-reproducible (fixed torch threads, deterministic algorithms, seeded loaders).
Finished fits are cached by content (config and training data): fitting again returns the
stored model without training.

The fit's parts live in modules of their own: its settings
(:mod:`~pyiron_assyst.fitting.fit_config`), the model (:mod:`~pyiron_assyst.fitting.model`),
the report (:mod:`~pyiron_assyst.fitting.fit_report`), the split
(:mod:`~pyiron_assyst.fitting.split`), the training data (:mod:`~pyiron_assyst.fitting.targets`)
and continuing a fit (:mod:`~pyiron_assyst.fitting.continuation`). Their public names stay
importable from here.
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
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from pyiron_assyst.calculators.evaluation import has_labels
from pyiron_assyst.core.lineage import uuid_of
from pyiron_assyst.core.report import Drop
from pyiron_assyst.execution.executors import Executor, run_tasks
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.fitting.continuation import (
    Start,
    check_continued,
    last_epoch,
    logged_neighbours,
    start_of,
)

# the fit's types, kept importable from here (their home before the split of this module;
# stored pyiron_workflow recipes and pickles name them here)
from pyiron_assyst.fitting.fit_config import BACKENDS as BACKENDS
from pyiron_assyst.fitting.fit_config import E0S as E0S
from pyiron_assyst.fitting.fit_config import FitConfig as FitConfig
from pyiron_assyst.fitting.fit_config import FitError as FitError
from pyiron_assyst.fitting.fit_report import FitReport as FitReport
from pyiron_assyst.fitting.model import MaceModel as MaceModel
from pyiron_assyst.fitting.model import file_sha256
from pyiron_assyst.fitting.split import root_of as root_of
from pyiron_assyst.fitting.split import split_by_lineage as split_by_lineage
from pyiron_assyst.fitting.targets import isolated_energies as isolated_energies
from pyiron_assyst.fitting.targets import training_targets, write_xyz

__all__ = ["fit"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- training task


@dataclass(frozen=True)
class _Task:
    """One training run: command-line arguments for :mod:`pyiron_assyst.fitting._mace_train`."""

    work_dir: str
    arguments: tuple[str, ...]
    threads: int


def _mace_arguments(config: FitConfig, device: str, has_valid: bool,
                    e0s: dict[str, float] | None = None, start: Start | None = None,
                    ) -> list[str]:
    total = last_epoch(config, start) + 1  # MACE counts on from the start's epoch
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
             start: Start | None = None) -> str:
    digest = hashlib.sha256(config.to_json().encode() + device.encode())
    if start is not None:
        digest.update(start.sha256.encode())
    for path in (train, valid):
        if path is not None:
            digest.update(file_sha256(path).encode())
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
    origin = start_of(start, config) if start is not None else None
    usable, drops = _usable(structures)
    if not usable:
        raise FitError("fit: no labelled structures (label the set first)")
    train, valid = split_by_lineage(usable, config.valid_fraction, config.seed)
    device = config.resolved_device(executor)
    staging = Path(directory).resolve() / f"fit_staging_{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    weights = (config.cluster_weight, config.cluster_forces_weight, config.explored_weights)
    write_xyz(staging / "train.xyz", [training_targets(s, *weights) for s in train])
    e0s, e0s_source = _e0s(config, train)
    if e0s:
        _write_e0s(staging / "e0s.json", e0s)
    if valid:
        write_xyz(staging / "valid.xyz", [training_targets(s, *weights) for s in valid])
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
    model = MaceModel(str(model_file), file_sha256(model_file), "cpu", config.default_dtype)
    return model, report


def _run_training(config: FitConfig, device: str, staging: Path, work: Path,
                  valid: Sequence[Atoms], executor: Executor | None,
                  e0s: dict[str, float], start: Start | None = None) -> int:
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
        check_continued(result, start)
    final_epoch = _final_epoch(result, last_epoch(config, start) + 1)
    if not (work / "model.model").is_file():
        raise FitError(f"MACE wrote no model file in {work}")
    _prune_checkpoints(work)
    neighbours = start.avg_num_neighbors if start is not None else logged_neighbours(
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
