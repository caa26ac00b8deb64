"""A fitted model as a calculator config (:class:`MaceModel`), whose identity is its content."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import require
from pyiron_assyst.fitting.fit_config import DTYPES, FitError

__all__ = ["MaceModel", "file_sha256"]


@dataclass(frozen=True)
class MaceModel(CalculatorConfig):
    """A fitted MACE model file as a calculator config (:class:`mace.calculators.MACECalculator`).

    Its identity (``config_hash()``) is what the model is, not where its file lies: with
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
        require(self.default_dtype in DTYPES, "MaceModel", "default_dtype",
                f"one of {DTYPES}", self.default_dtype)

    def _identity(self) -> dict[str, Any]:
        """The model's content (``sha256``), device and dtype; the path where no ``sha256``
        is given."""
        data = super()._identity()
        if self.sha256:
            del data["model_path"]
        return data

    def get_calculator(self) -> BaseCalculator:
        if self.sha256 and file_sha256(Path(self.model_path)) != self.sha256:
            raise FitError(f"model file {self.model_path} changed since it was fitted "
                           f"(sha256 differs from {self.sha256})")
        return _mace_calculator(self.model_path, self.device, self.default_dtype)


def _mace_calculator(path: str, device: str, dtype: str) -> BaseCalculator:
    import warnings

    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MACECalculator(model_paths=path, device=device, default_dtype=dtype)


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of the file at ``path`` (read in blocks of 1 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
