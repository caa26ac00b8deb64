"""Every ``Atoms.info`` key that pyiron_assyst writes, with its type, unit and writer.

This module is the single declaration; :func:`set_info` refuses undeclared keys, and the docs
render :data:`INFO_KEYS` as a table. Keys are never renamed silently: a rename is a new key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ase import Atoms

__all__ = ["INFO_KEYS", "InfoKey", "info_table", "set_info"]


@dataclass(frozen=True)
class InfoKey:
    """Declaration of one ``Atoms.info`` key.

    Parameters
    ----------
    name
        The key.
    type
        Python type of the value.
    unit
        Physical unit, ``""`` for dimensionless or non-numeric values.
    stage
        Stage(s) that write it.
    description
        What it means.
    """

    name: str
    type: type
    unit: str
    stage: str
    description: str


_KEYS = (
    InfoKey("uuid", str, "", "all", "identity of the structure, derived (uuid5), never drawn"),
    InfoKey("parent", str, "", "all",
            "uuid of the structure this one was made from; absent on roots"),
    InfoKey("root", str, "", "all", "uuid of the sampled crystal this structure descends from"),
    InfoKey("ancestry", str, "", "all",
            "uuids of all ancestors, root first, joined by ';' (absent on roots)"),
    InfoKey("step", str, "", "all", "the step that made this structure, e.g. 'relax:volume'"),
    InfoKey("formula", str, "", "sample", "requested formula, e.g. 'Cu2Ag1'"),
    InfoKey("dim", int, "", "sample", "periodic dimensions: 3 bulk, 2 layer, 1 rod, 0 cluster"),
    InfoKey("requested_group", int, "", "sample",
            "space (layer, rod, point) group number asked of pyxtal"),
    InfoKey("found_group", int, "", "sample",
            "space group spglib finds for the sampled crystal at 'symprec' (dim 3 only; else 0)"),
    InfoKey("symprec", float, "Å", "sample", "spglib tolerance used for 'found_group'"),
    InfoKey("repeat", int, "", "sample", "index of the draw for the same (formula, group)"),
    InfoKey("converged", bool, "", "relax", "whether the relaxation reached its force tolerance"),
    InfoKey("relax_steps", int, "", "relax", "optimizer steps taken"),
    InfoKey("force_calls", int, "", "relax", "calculator evaluations during the relaxation"),
    InfoKey("pre_relax_steps", int, "", "relax",
            "optimizer steps of the pre-relaxation with the relaxation's 'pre_relax' calculator"),
    InfoKey("pre_relax_converged", bool, "", "relax",
            "whether the pre-relaxation reached the force tolerance"),
    InfoKey("pre_relax_failed", str, "", "relax",
            "why the pre-relaxation failed (the relaxation then started from the input)"),
    InfoKey("trace_index", int, "", "relax",
            "optimizer step at which a trace snapshot was taken (snapshots only)"),
    InfoKey("label_calculator", str, "", "relax, label",
            "config_hash() of the calculator config that computed the single point"),
    InfoKey("kpoint_mesh", str, "", "label", "Monkhorst-Pack mesh used, e.g. '6 6 4'"),
    InfoKey("kpoint_density", float, "Å", "label",
            "k-points per Å⁻¹ of reciprocal length the mesh was derived from"),
    InfoKey("spin_polarized", bool, "", "label", "whether the calculation was spin-polarised"),
    InfoKey("repairs", str, "", "relax, label",
            "failed attempts before the calculation finished, '<kind> -> <rule>' joined by '; '"
            " (absent when the first attempt finished)"),
    InfoKey("calculation_attempts", int, "", "relax, label",
            "calculations made under the repair policy, the finished one included (absent when"
            " the first attempt finished)"),
    InfoKey("perturbation", str, "", "perturb", "readable name of the applied perturbation"),
    InfoKey("perturbation_applied", str, "", "perturb",
            "the branch a RandomChoice applied (innermost choice wins; absent without one)"),
    InfoKey("attempt", int, "", "perturb", "retry index at which the perturbation passed"),
    InfoKey("short_range", str, "", "short_range",
            "kind of short-range structure ('isolated', 'dimer', 'trimer', 'compressed'); such"
            " structures are exempt from curate's distance check and caps"),
    InfoKey("selection_score", float, "", "select",
            "regularised leverage of the structure's descriptor in the pool it was chosen from"),
    InfoKey("predicted_cost", float, "core-h", "select",
            "predicted core-hours of its reference single point (CostModel)"),
    InfoKey("explore_temperature", float, "K", "explore",
            "thermostat temperature of the model-driven MD the snapshot was taken from"),
    InfoKey("supercell", int, "", "perturb",
            "repetition per periodic direction applied to a one-atom cell before rattling"),
)

INFO_KEYS: dict[str, InfoKey] = {k.name: k for k in _KEYS}
"""All declared keys by name."""


def set_info(atoms: Atoms, key: str, value: Any) -> None:
    """Write a declared key into ``atoms.info``, checking its type.

    Raises
    ------
    KeyError
        If ``key`` is not declared in :data:`INFO_KEYS`.
    TypeError
        If ``value`` is not of the declared type.
    """
    if key not in INFO_KEYS:
        raise KeyError(f"Atoms.info key {key!r} is not declared in pyiron_assyst.core.info_keys")
    declared = INFO_KEYS[key].type
    if declared is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if declared is int and isinstance(value, bool):
        raise TypeError(f"Atoms.info[{key!r}] must be int, got bool")
    if not isinstance(value, declared):
        raise TypeError(f"Atoms.info[{key!r}] must be {declared.__name__}, got {value!r}")
    atoms.info[key] = value


def info_table() -> list[dict[str, str]]:
    """The declared keys as rows (name, type, unit, stage, description) for the docs."""
    return [
        {"name": k.name, "type": k.type.__name__, "unit": k.unit or "–", "stage": k.stage,
         "description": k.description}
        for k in _KEYS
    ]
