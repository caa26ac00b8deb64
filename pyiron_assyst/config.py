"""Frozen, hashable configs that round-trip through JSON.

Every config of the package is a ``@dataclass(frozen=True)`` that mixes in :class:`Config`.
Fields hold only hashable, JSON-able values: numbers, strings, booleans, ``None``, tuples of
those, nested configs, and (for live-session use only) importable callables. Mappings are frozen
into sorted tuples of ``(key, value)`` pairs with :func:`freeze`.

Loading a config from JSON resolves class and callable paths only from an allow-list
(:data:`ALLOWED_PREFIXES`, extended with :func:`register_import_prefix`), so loading never
imports arbitrary code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

__all__ = [
    "ALLOWED_PREFIXES",
    "Config",
    "callable_name",
    "ConfigError",
    "NotPersistableError",
    "config_from_dict",
    "config_from_json",
    "freeze",
    "import_object",
    "object_path",
    "register_import_prefix",
    "require",
]

ALLOWED_PREFIXES: set[str] = {"pyiron_assyst", "ase.calculators", "ase.optimize"}
"""Module prefixes from which JSON configs may import classes and callables."""


class ConfigError(ValueError):
    """A config field holds a value that is not allowed; raised at construction."""


class NotPersistableError(TypeError):
    """A config holds a live object (e.g. a lambda) that cannot be written to JSON."""


def register_import_prefix(prefix: str) -> None:
    """Allow JSON configs to import from modules starting with ``prefix`` (e.g. ``"mypkg"``)."""
    if not prefix or not all(part.isidentifier() for part in prefix.split(".")):
        raise ConfigError(f"register_import_prefix: {prefix!r} is not a dotted module name")
    ALLOWED_PREFIXES.add(prefix)


def _is_allowed(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ALLOWED_PREFIXES)


def require(condition: bool, owner: str, field: str, allowed: str, got: Any) -> None:
    """Raise :class:`ConfigError` naming ``owner.field``, what is allowed and what was given."""
    if not condition:
        raise ConfigError(f"{owner}.{field} must be {allowed}; got {got!r}")


def freeze(value: Any) -> Any:
    """Turn dicts into sorted tuples of pairs and lists/sets into tuples, recursively."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(freeze(v) for v in value))
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()  # numpy scalar
    return value


def callable_name(func: Any) -> str:
    """A readable name of a callable: its ``__name__``, ``partial(name)`` or its type name."""
    if isinstance(func, partial):
        return f"partial({callable_name(func.func)})"
    return getattr(func, "__name__", type(func).__name__)


def object_path(obj: Any) -> str:
    """``"module:qualname"`` of a class or function."""
    return f"{obj.__module__}:{obj.__qualname__}"


def _persistable_path(obj: Any) -> bool:
    return obj.__module__ != "__main__" and "<locals>" not in obj.__qualname__ and (
        "<lambda>" not in obj.__qualname__
    )


def import_object(path: str, check_allowed: bool = True) -> Any:
    """Import ``"module:qualname"`` (or ``"module.name"``), refusing modules off the allow-list."""
    module, _, qualname = path.partition(":")
    if not qualname:
        module, _, qualname = path.rpartition(".")
    if check_allowed and not _is_allowed(module):
        raise ConfigError(
            f"import path {path!r} is not allowed: its module must start with one of "
            f"{sorted(ALLOWED_PREFIXES)} (extend with register_import_prefix)"
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot import {path!r}: {error}") from None
    return obj


def _encode(value: Any, strict: bool) -> Any:
    if isinstance(value, Config):
        return value.to_dict(strict=strict)
    if isinstance(value, tuple):
        return [_encode(v, strict) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"@float": repr(value)}
    if callable(value):
        if hasattr(value, "__qualname__") and _persistable_path(value):
            return {"@callable": object_path(value)}
        if strict:
            raise NotPersistableError(
                f"{value!r} is not an importable module-level callable and cannot be stored; "
                "define it in an importable module"
            )
        return {"@live": repr(value)}  # unique within this session only
    raise NotPersistableError(f"cannot encode {type(value).__name__} value {value!r} as JSON")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if "@config" in value:
            return config_from_dict(value)
        if "@callable" in value:
            return import_object(value["@callable"])
        if "@float" in value:
            return float(value["@float"])
        raise ConfigError(f"unknown JSON object in config: {sorted(value)}")
    return value


class Config:
    """Mixin for frozen config dataclasses: JSON round trip, stable content hash.

    Subclasses are ``@dataclass(frozen=True)`` and validate in ``__post_init__`` with
    :func:`require`, so a bad value fails at construction with the field named.
    """

    def to_dict(self, strict: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict with the class path under ``"@config"``.

        Parameters
        ----------
        strict
            Raise :class:`NotPersistableError` for callables that cannot be re-imported.
        """
        out: dict[str, Any] = {"@config": object_path(type(self))}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            out[field.name] = _encode(getattr(self, field.name), strict)
        return out

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys); raises :class:`NotPersistableError` if impossible."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def persistable(self) -> bool:
        """Whether this config can be written to JSON and loaded again."""
        try:
            self.to_json()
        except NotPersistableError:
            return False
        return True

    def config_hash(self) -> str:
        """Stable 16-hex-digit content hash (same fields ⇒ same hash, in any process)."""
        text = json.dumps(self.to_dict(strict=False), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_from_dict(data: Mapping[str, Any]) -> Any:
    """Rebuild a config written by :meth:`Config.to_dict`; class paths must be allow-listed."""
    if "@config" not in data:
        raise ConfigError(f"not a config dict (no '@config' key): {sorted(data)}")
    cls = import_object(data["@config"])
    if not (isinstance(cls, type) and issubclass(cls, Config)):
        raise ConfigError(f"{data['@config']!r} is not a pyiron_assyst Config class")
    fields = {k: _decode(v) for k, v in data.items() if k != "@config"}
    return cls(**fields)


def config_from_json(text: str) -> Any:
    """Rebuild a config from :meth:`Config.to_json` text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config JSON is malformed: {error}") from None
    return config_from_dict(data)


def check_members(owner: str, field: str, values: Iterable[Any], kind: type | tuple[type, ...],
                  allowed: str) -> None:
    """Require every element of ``values`` to be an instance of ``kind``."""
    for v in values:
        require(isinstance(v, kind), owner, field, allowed, v)

