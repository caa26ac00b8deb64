"""The settings of a fit (:class:`FitConfig`) and its error (:class:`FitError`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyiron_assyst.core.config import ADDED_FIELD, Config, require

if TYPE_CHECKING:
    from pyiron_assyst.execution.executors import Executor

__all__ = ["BACKENDS", "E0S", "FitConfig", "FitError"]

BACKENDS = ("mace",)
"""Fitting backends behind :func:`~pyiron_assyst.fitting.mace.fit`."""
DEVICES = ("auto", "cpu", "cuda")
E0S = ("isolated", "average")
"""Sources of the fit's isolated-atom energies (see :class:`FitConfig`)."""
DTYPES = ("float32", "float64")


class FitError(RuntimeError):
    """Training failed or did not produce the model of the final epoch."""


@dataclass(frozen=True)
class FitConfig(Config):
    """How :func:`~pyiron_assyst.fitting.mace.fit` trains a potential.

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
        require(self.device in DEVICES, name, "device", f"one of {DEVICES}", self.device)
        require(self.default_dtype in DTYPES, name, "default_dtype", f"one of {DTYPES}",
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
