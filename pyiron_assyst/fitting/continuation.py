"""Continuing a fit: what a fit that trains an earlier model further needs of it
(:class:`Start`, :func:`start_of`), and the check that MACE did continue it
(:func:`check_continued`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pyiron_assyst.fitting.fit_config import FitConfig, FitError
from pyiron_assyst.fitting.model import MaceModel, file_sha256

__all__ = ["ARCHITECTURE", "Start", "check_continued", "last_epoch", "logged_neighbours",
           "start_of"]

ARCHITECTURE = ("backend", "r_max", "num_channels", "max_L", "correlation", "num_interactions",
                "radial_mlp", "default_dtype", "pair_repulsion")
"""The fields of :class:`~pyiron_assyst.fitting.fit_config.FitConfig` that a continued fit must
share with its start."""
_NEIGHBOURS = re.compile(r"Average number of neighbors: ([-+0-9.eE]+)")


@dataclass(frozen=True)
class Start:
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


def start_of(model: MaceModel, config: FitConfig) -> Start:
    """The start of a fit that continues ``model`` (a model of
    :func:`~pyiron_assyst.fitting.mace.fit`) with ``config``; raises
    :class:`~pyiron_assyst.fitting.fit_config.FitError` where it cannot be continued."""
    work = Path(model.model_path).parent
    try:
        record = json.loads((work / "fit.json").read_text())
        sha256 = file_sha256(Path(model.model_path))
    except (OSError, ValueError) as error:
        raise FitError(f"cannot continue {model.model_path}: not a finished fit of this "
                       f"package ({error})") from None
    if model.sha256 and sha256 != model.sha256:
        raise FitError(f"cannot continue {model.model_path}: the file changed since it was "
                       "fitted")
    ours = json.loads(config.to_json())
    differ = [k for k in ARCHITECTURE if record["config"].get(k) != ours[k]]
    if differ:
        raise FitError(f"cannot continue {model.model_path}: its {', '.join(differ)} differ "
                       "from the config's (a continued fit keeps the model's architecture)")
    epoch = int(record["final_epoch"])
    checkpoint = work / "checkpoints" / f"model_run-{record['config']['seed']}_epoch-{epoch}.pt"
    neighbours = record.get("avg_num_neighbors") or logged_neighbours(work / "train.log")
    if not checkpoint.is_file() or neighbours is None:
        raise FitError(f"cannot continue {model.model_path}: its final checkpoint or its "
                       f"average number of neighbours is missing in {work}")
    return Start(checkpoint, epoch, float(neighbours), sha256)


def logged_neighbours(log: Path) -> float | None:
    """The average number of neighbours a MACE training log reports (``None``: none)."""
    found = _NEIGHBOURS.findall(log.read_text()) if log.is_file() else []
    return float(found[-1]) if found else None


def last_epoch(config: FitConfig, start: Start | None) -> int:
    """MACE's number of the final epoch: a continued fit retrains from its start's last one."""
    return (start.epoch if start is not None else 0) + config.epochs - 1


def check_continued(log: str, start: Start) -> None:
    """Raise unless MACE loaded ``start``'s checkpoint before training (it falls back to a
    fresh model silently when the checkpoint does not load)."""
    begin = log.find("Started training")
    if begin < 0 or not re.search(rf"Loading checkpoint: \S*_epoch-{start.epoch}\.pt",
                                  log[:begin]):
        raise FitError(f"MACE did not load the checkpoint of epoch {start.epoch} before "
                       "training: the fit would not continue its start; refusing it")
