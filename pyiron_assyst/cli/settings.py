"""Run settings from TOML: a schema that mirrors the configs one to one.

Each top-level table is named after a config input of the pipeline
(:data:`~pyiron_assyst.workflow.pipeline.CONFIGS`: ``sample_config``, ``sample_filter``,
``volume_relax``, ``full_relax``, ``perturb_config``, ``final_filter``, ``select`` (macro
input ``select_config``; off unless given), ``short_range`` (``short_range_config``),
``calculator``,
``label`` (the reference calculator of the labels, macro input ``reference``; default: the
``calculator``), ``curation``, ``executor``) and holds ``type = "ClassName"`` plus that
class's fields. Nested configs are nested tables (or inline tables) with their own ``type``;
arrays become tuples, and an array entry with ``copies = n`` stands for ``n`` equal entries
(e.g. four copies of one rattle). ``[formulas]`` takes ``elements``, ``min_atoms`` and
``max_atoms`` (every composition of the elements with ``min_atoms`` to ``max_atoms`` atoms)
or an explicit ``list = [{Cu = 1}, {Cu = 2, Ag = 1}]``. An omitted table keeps the macro
default. See ``examples/cu_emt.toml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from pathlib import Path
from typing import Any

from pyiron_assyst import calculators
from pyiron_assyst.calculators import chgnet, cost, gpaw, repair, structure_settings
from pyiron_assyst.core.config import Config, ConfigError
from pyiron_assyst.execution import executors
from pyiron_assyst.stages import curate as curation
from pyiron_assyst.stages import filters, perturbations, short_range
from pyiron_assyst.stages import relax as relaxations
from pyiron_assyst.stages import sample as crystals
from pyiron_assyst.stages import select as selection
from pyiron_assyst.workflow.pipeline import CONFIGS

__all__ = [
    "CONFIG_MODULES",
    "CONFIG_TABLES",
    "config_classes",
    "config_from_table",
    "formulas_from_table",
    "load_settings",
]

CONFIG_TABLES = tuple(c.table for c in CONFIGS)
"""TOML table of each config input of the pipeline, in order."""

CONFIG_MODULES = (calculators, chgnet, cost, crystals, curation, executors, filters, gpaw,
                  perturbations, relaxations, repair, selection, short_range,
                  structure_settings)
"""Modules whose public config classes TOML tables (and graph nodes) can name."""


OUTPUT_KEYS = ("directory",)
"""Keys of the ``[output]`` table."""


def config_classes() -> dict[str, type]:
    """Every concrete public config class by name (what a table's ``type`` may be)."""
    found: dict[str, type] = {}
    for module in CONFIG_MODULES:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (isinstance(obj, type) and issubclass(obj, Config)
                    and "__dataclass_fields__" in vars(obj)
                    and not getattr(obj, "__abstractmethods__", None)):
                found[name] = obj
    found.pop("Relaxation", None)  # the base class: a relaxation needs a kind
    return found


def _value(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return config_from_table(value, where) if "type" in value else {
            k: _value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        items = []
        for i, v in enumerate(value):
            copies = v.pop("copies", 1) if isinstance(v, dict) else 1
            if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
                raise ConfigError(f"{where}[{i}].copies must be an integer >= 1; got {copies!r}")
            items.extend([_value(v, f"{where}[{i}]")] * copies)
        return tuple(items)
    return value


def config_from_table(table: dict[str, Any], where: str = "", base: type = Config) -> Config:
    """Build the config named by ``table["type"]`` from the other keys (recursively).

    Parameters
    ----------
    table
        The TOML table.
    where
        Its place in the file, for messages (e.g. ``"calculator"``).
    base
        The class the config must be an instance of (a table of the wrong kind, e.g.
        ``[calculator] type = "FullRelax"``, is an error naming the allowed kinds).
    """
    registry = {name: cls for name, cls in config_classes().items() if issubclass(cls, base)}
    kind = table.get("type")
    if kind not in registry:
        raise ConfigError(f"{where or 'table'}.type must be one of {sorted(registry)}; "
                          f"got {kind!r}{_closest(kind, registry)}")
    allowed = [f.name for f in dataclasses.fields(registry[kind]) if f.init]
    for key in table:
        if key not in (*allowed, "type"):
            raise ConfigError(f"{where or 'table'}.{key} is not a field of {kind}; allowed: "
                              f"{', '.join(allowed)}{_closest(key, allowed)}")
    fields = {k: _value(v, f"{where}.{k}") for k, v in table.items() if k != "type"}
    try:
        return registry[kind](**fields)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:  # never a traceback for a bad settings value
        raise ConfigError(f"{where}: {error}") from None


def _closest(given: Any, allowed: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest allowed name, or ``""``."""
    if not isinstance(given, str):
        return ""
    match = difflib.get_close_matches(given, list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def formulas_from_table(table: dict[str, Any]) -> crystals.Formulas:
    """``[formulas]``: ``elements`` with ``min_atoms``/``max_atoms``, or an explicit ``list``."""
    if "list" in table:
        if set(table) != {"list"}:
            raise ConfigError("formulas: give either list or elements/min_atoms/max_atoms; "
                              f"got {sorted(table)}")
        return crystals.Formulas(tuple(table["list"]))
    elements = table.get("elements")
    if not elements or not all(isinstance(e, str) for e in elements):
        raise ConfigError(f"formulas.elements must be a list of element symbols; got {elements!r}")
    max_atoms, min_atoms = table.get("max_atoms", 4), table.get("min_atoms", 1)
    for name, value in (("max_atoms", max_atoms), ("min_atoms", min_atoms)):
        if not isinstance(value, int) or isinstance(value, bool):  # 2.7 is not silently 2
            raise ConfigError(f"formulas.{name} must be a whole number of atoms; got {value!r}")
    unknown = sorted(set(table) - {"elements", "max_atoms", "min_atoms"})
    if unknown:
        raise ConfigError(f"formulas: unknown key(s) {unknown}; allowed: elements, "
                          "min_atoms, max_atoms, or list"
                          f"{_closest(unknown[0], ('elements', 'min_atoms', 'max_atoms'))}")
    if not 1 <= min_atoms <= max_atoms:
        raise ConfigError(f"formulas.min_atoms must be in [1, max_atoms={max_atoms}]; "
                          f"got {min_atoms}")
    return crystals.Formulas.range(tuple(elements), max_atoms + 1).trim(min_atoms, max_atoms)


def load_settings(path: str | Path) -> tuple[crystals.Formulas | None, dict[str, Config],
                                             dict[str, Any]]:
    """Read a TOML settings file: formulas, configs by macro input name (table ``label`` is
    input ``reference``), and ``[output]``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"settings file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"settings file {str(path)!r} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - {*CONFIG_TABLES, "formulas", "output"})
    if unknown:
        raise ConfigError(f"settings file {str(path)!r}: unknown table(s) {unknown}; "
                          f"allowed: formulas, output, {', '.join(CONFIG_TABLES)}"
                          f"{_closest(unknown[0], (*CONFIG_TABLES, 'formulas', 'output'))}")
    output = data.get("output", {})
    extra = sorted(set(output) - set(OUTPUT_KEYS)) if isinstance(output, dict) else []
    if not isinstance(output, dict) or extra:
        hint = _closest(extra[0], OUTPUT_KEYS) if extra else ""
        raise ConfigError(f"output: unknown key(s) {extra or output!r}; allowed: "
                          f"{', '.join(OUTPUT_KEYS)}{hint}")
    formulas = formulas_from_table(data["formulas"]) if "formulas" in data else None
    for c in CONFIGS:
        if c.table in data and not isinstance(data[c.table], dict):
            raise ConfigError(f"settings file {str(path)!r}: {c.table} must be a table with a "
                              "type")
    configs = {c.name: config_from_table(data[c.table], c.table, c.kind) for c in CONFIGS
               if c.table in data}
    return formulas, configs, dict(output)
