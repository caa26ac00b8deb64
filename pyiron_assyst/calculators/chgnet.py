"""CHGNet, a universal potential whose pretrained weights ship inside its wheel (works offline).

Use it where DFT is too dear for the first steps: ``[volume_relax]`` and ``[full_relax]`` with
:class:`CHGNet`, then a short DFT relaxation and DFT labels (see docs/less-dft.md). Install with
``pip install "pyiron_assyst[uip]"`` after ``pip install torch==2.13.0`` (the CPU build).
Energies in eV, forces in eV/Å, stress in eV/Å³ (ASE's convention), as every calculator here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ase.calculators.calculator import BaseCalculator

from pyiron_assyst.calculators import CalculatorConfig
from pyiron_assyst.core.config import require

__all__ = ["MODELS", "CHGNet"]

MODELS = ("0.3.0", "0.2.0")
"""Pretrained CHGNet models in the chgnet wheel (0.3.0: MPtrj, the default)."""


@dataclass(frozen=True)
class CHGNet(CalculatorConfig):
    """The CHGNet universal potential as a calculator config.

    Parameters
    ----------
    model
        One of :data:`MODELS`.
    device
        ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
    """

    model: str = "0.3.0"
    device: str = "cpu"

    def __post_init__(self) -> None:
        require(self.model in MODELS, "CHGNet", "model", f"one of {MODELS}", self.model)
        require(isinstance(self.device, str) and (self.device == "cpu" or self.device == "cuda"
                                                  or self.device.startswith("cuda:")),
                "CHGNet", "device", "'cpu', 'cuda' or 'cuda:N'", self.device)

    def get_calculator(self) -> BaseCalculator:
        """CHGNet's ASE calculator; the model is loaded once per process and config."""
        return _calculator(self)


@lru_cache(maxsize=4)
def _calculator(config: CHGNet) -> BaseCalculator:
    try:
        from chgnet.model import CHGNet as Model
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError as error:
        raise ImportError("CHGNet needs the 'uip' extra: pip install torch==2.13.0 && "
                          "pip install 'pyiron_assyst[uip]'") from error
    model = Model.load(model_name=config.model, use_device=config.device, verbose=False)
    return CHGNetCalculator(model, use_device=config.device, on_isolated_atoms="ignore")
