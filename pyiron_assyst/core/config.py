"""Frozen, hashable configs that round-trip through JSON.

Every config of the package is a ``@dataclass(frozen=True)`` that mixes in :class:`Config`.
Fields hold only hashable, JSON-able values: numbers, strings, booleans, ``None``, tuples of
those, nested configs, and (for live-session use only) importable callables. Mappings are frozen
into sorted tuples of ``(key, value)`` pairs with :func:`freeze`.

**Identity.** Every config class has a *kind*: a stable registered name (the class name for the
classes of this package, ``"module:Class"`` or an explicit ``kind=`` for a user's class). The
JSON form and :meth:`Config.config_hash` -- and so every uuid, random stream and cache key derived
from a config -- depend on the kind and the field values only, never on the module a class lives
in: moving a class to another module changes nothing that was derived from it. JSON written
before kinds existed (``"@config": "pyiron_assyst.perturbations:Rattle"``) still loads through
:data:`KIND_ALIASES` and the rule that an old path of this package names the kind of its class.

Loading a config from JSON resolves kinds through the registry (classes register when they are
defined), the modules of this package, the ``pyiron_assyst.configs`` entry points of installed
packages, and import paths from an allow-list (:data:`ALLOWED_PREFIXES`, extended with
:func:`register_import_prefix`); an import path must name a class or function defined in an
allowed module, so loading never imports or reaches arbitrary code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import types
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

__all__ = [
    "ADDED_FIELD",
    "ALLOWED_PREFIXES",
    "KIND_ALIASES",
    "Config",
    "ConfigError",
    "NotPersistableError",
    "callable_name",
    "check_field_types",
    "config_from_dict",
    "config_from_json",
    "config_kind",
    "freeze",
    "import_object",
    "kind_class",
    "object_path",
    "register_import_prefix",
    "require",
]

ALLOWED_PREFIXES: set[str] = {"pyiron_assyst", "ase.calculators", "ase.optimize"}
"""Module prefixes from which JSON configs may import classes and callables."""

KIND_ALIASES: dict[str, str] = {}
"""Old kind -> current kind, for a config kind that is ever renamed (none yet)."""

ENTRY_POINT_GROUP = "pyiron_assyst.configs"
"""Entry-point group in which packages declare their config kinds (``kind = "module:Class"``)."""

PACKAGE = "pyiron_assyst"

CONFIG_MODULES = (
    "pyiron_assyst.calculators",
    "pyiron_assyst.calculators.structure_settings",
    "pyiron_assyst.calculators.cost",
    "pyiron_assyst.calculators.chgnet",
    "pyiron_assyst.calculators.repair",
    "pyiron_assyst.calculators.gpaw",
    "pyiron_assyst.execution.executors",
    "pyiron_assyst.core.report",
    "pyiron_assyst.stages.sample",
    "pyiron_assyst.stages.relax",
    "pyiron_assyst.stages.perturbations",
    "pyiron_assyst.stages.filters",
    "pyiron_assyst.stages.curate",
    "pyiron_assyst.stages.descriptors",
    "pyiron_assyst.stages.select",
    "pyiron_assyst.fitting.fit_config",
    "pyiron_assyst.fitting.model",
    "pyiron_assyst.fitting.fit_report",
    "pyiron_assyst.fitting.transferability",
    "pyiron_assyst.workflow.plan",
)
"""Modules of this package that define config classes (imported to resolve a package kind)."""

_KINDS: dict[str, type] = {}

ADDED_FIELD = {"identity": "optional"}
"""Metadata of a field added to a config class after configs of it were stored
(``field(default=..., metadata=ADDED_FIELD)``): while it holds its default it is left out of
the JSON and of :meth:`Config.config_hash`, so every config made before keeps its identity
(the uuids, random streams and cache keys derived from it); JSON without it loads with the
default."""


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
    if check_allowed and "__main__" in module.split("."):
        raise ConfigError(f"import path {path!r} is not allowed: importing a __main__ module "
                          "runs its program")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
            if isinstance(obj, types.ModuleType):
                raise ConfigError(f"import path {path!r} walks into module {obj.__name__!r}; "
                                  "name a class or function defined in the module")
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot import {path!r}: {error}") from None
    owner = getattr(obj, "__module__", None)
    if check_allowed and not (isinstance(owner, str) and _is_allowed(owner)):
        raise ConfigError(
            f"import path {path!r} is not allowed: it names an object defined in {owner!r}, "
            f"not in a module starting with one of {sorted(ALLOWED_PREFIXES)}")
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
    :func:`require`, so a bad value fails at construction with the field named. Each subclass
    registers its kind when it is defined: ``class MyRelax(Relaxation, kind="mylab.MyRelax")``
    gives a user's class a name that survives moving it (default ``"module:Class"``; the
    classes of this package use their class name).

    A config class is a pyiron_workflow node as it is: ``pwf.node(SampleConfig, max_atoms=4)``
    has the fields as inputs and the config on its output port ``instance``.
    """

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls).get("__post_init__")
        if own is not None and not getattr(own, "_checks_types", False):
            cls.__post_init__ = _with_type_checks(own)  # type: ignore[method-assign]
        name = kind if kind is not None else _default_kind(cls)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{cls.__qualname__}: kind must be a non-empty string; got {name!r}")
        known = _KINDS.get(name)
        if known is not None and object_path(known) != object_path(cls):
            raise ConfigError(f"config kind {name!r} of {object_path(cls)} is taken by "
                              f"{object_path(known)}; give one of them another kind=")
        _KINDS[name] = cls
        cls._config_kind = name

    def __post_init__(self) -> None:
        """Check the fields with simple annotations (see :func:`check_field_types`)."""
        check_field_types(self)

    def to_dict(self, strict: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict with the class path under ``"@config"``.

        Parameters
        ----------
        strict
            Raise :class:`NotPersistableError` for callables that cannot be re-imported.
        """
        out: dict[str, Any] = {"@config": config_kind(type(self))}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.metadata.get("identity") == "optional" and value == field.default:
                continue  # see ADDED_FIELD
            out[field.name] = _encode(value, strict)
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
        """Stable 16-hex-digit content hash (same identity ⇒ same hash, in any process)."""
        text = json.dumps(self._identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _identity(self) -> dict[str, Any]:
        """What :meth:`config_hash` hashes: the JSON dict (a subclass may leave out a field
        that says where something is rather than what it is)."""
        return self.to_dict(strict=False)


def _with_type_checks(post_init: Any) -> Any:
    """``post_init`` preceded by :func:`check_field_types`."""
    def checked(self: Any) -> None:
        check_field_types(self)
        post_init(self)

    checked._checks_types = True  # type: ignore[attr-defined]
    checked.__doc__ = post_init.__doc__
    checked.__wrapped__ = post_init  # type: ignore[attr-defined]
    return checked


_SIMPLE = {int: "an integer", float: "a real number", bool: "True or False", str: "a string"}
_CHECKS: dict[type, tuple[tuple[str, tuple[Any, ...], bool], ...]] = {}
_SEQUENCE_CHECKS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _simple_types(annotation: Any) -> tuple[tuple[Any, ...], bool] | None:
    """``(allowed simple types or Literal values, None allowed)`` of an annotation made only of
    ``int``/``float``/``bool``/``str``, ``Literal`` and ``None``; ``None`` for anything else."""
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return (("literal", typing.get_args(annotation)),), False
    if origin in (typing.Union, types.UnionType):
        allowed: list[Any] = []
        optional = False
        for member in typing.get_args(annotation):
            if member is type(None):
                optional = True
                continue
            inner = _simple_types(member)
            if inner is None or inner[1]:
                return None
            allowed += inner[0]
        return tuple(allowed), optional
    if annotation in _SIMPLE:
        return (annotation,), False
    return None


def _annotation(cls: type, field: dataclasses.Field) -> Any:
    """The evaluated annotation of an ``init`` field, ``None`` if it has none we can evaluate
    (a name only imported for type checking) or is not an ``init`` field."""
    import sys
    import typing

    if not field.init:
        return None
    if not isinstance(field.type, str):
        return field.type
    module = vars(sys.modules.get(cls.__module__, types.ModuleType("_")))
    try:
        return eval(field.type, {**vars(typing), **module})  # noqa: S307
    except Exception:  # a name only imported for type checking: not checked
        return None


def _cached_checks(cache: dict[type, tuple[Any, ...]], cls: type,
                   parse: Callable[[Any], tuple[Any, ...] | None]) -> tuple[Any, ...]:
    """``(field name, *parse(annotation))`` of every field of ``cls`` whose annotation
    ``parse`` understands, computed once per class."""
    checks = cache.get(cls)
    if checks is None:
        found = []
        for field in dataclasses.fields(cls):
            annotation = _annotation(cls, field)
            parsed = None if annotation is None else parse(annotation)
            if parsed is not None:
                found.append((field.name, *parsed))
        checks = cache[cls] = tuple(found)
    return checks


def _field_checks(cls: type) -> tuple[tuple[str, tuple[Any, ...], bool], ...]:
    return _cached_checks(_CHECKS, cls, _simple_types)


def _conform(value: Any, allowed: tuple[Any, ...]) -> tuple[bool, Any]:
    """Whether ``value`` fits one of ``allowed``, and its normalised form (ints for integer
    fields, floats for real fields: equal values give equal JSON and hashes)."""
    import numbers

    import numpy as np

    for kind in allowed:
        if isinstance(kind, tuple):  # ("literal", values)
            if any(value == v and type(value) is type(v) for v in kind[1]):
                return True, value
        elif kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return True, bool(value)
        elif isinstance(value, (bool, np.bool_)):
            continue
        elif kind is int and isinstance(value, numbers.Integral):
            return True, int(value)
        elif kind is float and isinstance(value, numbers.Real):
            return True, float(value)
        elif kind is str and isinstance(value, str):
            return True, value
    return False, value


def _describe(allowed: tuple[Any, ...], optional: bool) -> str:
    words = [f"one of {list(k[1])}" if isinstance(k, tuple) else _SIMPLE[k] for k in allowed]
    return " or ".join(words + (["None"] if optional else []))


def _sequence_types(annotation: Any) -> tuple[Any, bool] | None:
    """``(element annotation, None allowed)`` of a ``tuple[X, ...]`` annotation (optionally
    ``| None``); ``None`` for any other annotation."""
    import typing

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        inner = _sequence_types(members[0]) if len(members) == 1 else None
        return None if inner is None else (inner[0], True)
    args = typing.get_args(annotation)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0], False
    return None


def _sequence_checks(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    return _cached_checks(_SEQUENCE_CHECKS, cls, _sequence_types)


_PLURAL = {int: "integers", float: "real numbers", bool: "booleans", str: "strings"}


def _check_sequence(owner: str, name: str, value: Any, element: Any) -> None:
    """A ``tuple[X, ...]`` field takes an iterable, never a string (``"OUTCAR"`` is not six
    file names) or a number. Given as a list or tuple, simple elements (``int``, ``float``,
    ``str``, ``bool``) must fit ``X`` and pairs (``X = tuple[str, ...]``) be pairs; checked, not
    converted (converting is the config's own ``__post_init__``'s job, so hashes stay)."""
    import typing

    simple = _simple_types(element)
    if simple is not None and not simple[1]:
        words = [f"values {list(k[1])}" if isinstance(k, tuple) else _PLURAL[k]
                 for k in simple[0]]
        what = f"a list of {' or '.join(words)}"
        fits = lambda item: _conform(item, simple[0])[0]  # noqa: E731
    elif typing.get_origin(element) is tuple and len(typing.get_args(element)) == 2 and (
            typing.get_args(element)[1] is not Ellipsis):
        what = "a mapping (or a list of (name, value) pairs)"
        fits = lambda item: isinstance(item, (list, tuple)) and len(item) == 2  # noqa: E731
    else:
        what = "a list" if typing.get_origin(element) else f"a list of {element.__name__}"
        fits = None
    require(not isinstance(value, (str, bytes)) and isinstance(value, Iterable)
            and (simple is None or not isinstance(value, Mapping)), owner, name, what, value)
    if fits is not None and isinstance(value, (list, tuple)):
        for item in value:
            require(fits(item), owner, name, what, value)


def check_field_types(config: Any) -> None:
    """Check every field of a config dataclass whose annotation is built from ``int``,
    ``float``, ``bool``, ``str``, ``Literal`` and ``None``, or is a ``tuple[...]`` of them;
    raise :class:`ConfigError` naming the field otherwise. Integer fields refuse floats
    (``2.0``, ``1.5``) and bools; real fields take integers and store them as floats, so equal
    values hash equal. A ``tuple[...]`` field refuses strings and numbers (a string is not
    split into characters), except a single value in a field that the class names in its
    ``single_value_fields`` (e.g. ``SampleConfig(spacegroups=225)``), which the class itself
    checks and wraps."""
    cls = type(config)
    for name, allowed, optional in _field_checks(cls):
        value = getattr(config, name)
        if value is None and optional:
            continue
        ok, normal = _conform(value, allowed)
        require(ok, cls.__name__, name, _describe(allowed, optional), value)
        if normal is not value:
            object.__setattr__(config, name, normal)
    shorthand = getattr(cls, "single_value_fields", frozenset())
    for name, elements, optional in _sequence_checks(cls):
        value = getattr(config, name)
        if value is None and optional:
            continue
        if name in shorthand and not isinstance(value, (str, bytes, Iterable)):
            continue  # one value for a one-element tuple: the class checks and wraps it
        _check_sequence(cls.__name__, name, value, elements)


def _default_kind(cls: type) -> str:
    if cls.__module__ == PACKAGE or cls.__module__.startswith(PACKAGE + "."):
        return cls.__qualname__
    return object_path(cls)


def config_kind(cls: type) -> str:
    """The registered kind of a config class (what its JSON and hash name it by)."""
    kind = vars(cls).get("_config_kind")
    if kind is None:
        raise ConfigError(f"{cls!r} is not a registered config class")
    return kind


def _from_entry_points(kind: str) -> type | None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == kind:
            point.load()
            return _KINDS.get(kind)
    return None


def kind_class(kind: str) -> type:
    """The config class registered under ``kind`` (or an old name of it).

    Looks in the registry, then imports this package's config modules, then the
    ``pyiron_assyst.configs`` entry points, then an allow-listed ``"module:Class"`` path.
    An old import path of this package's class (``"pyiron_assyst.relaxations:FullRelax"``)
    names the class's kind.

    Raises
    ------
    ConfigError
        If no config class has that kind.
    """
    if not isinstance(kind, str):
        raise ConfigError(f"a config kind is a string; got {kind!r}")
    kind = KIND_ALIASES.get(kind, kind)
    module, sep, qualname = kind.partition(":")
    if sep and (module == PACKAGE or module.startswith(PACKAGE + ".")):
        kind = KIND_ALIASES.get(qualname, qualname)  # an old path of a class of this package
    if kind not in _KINDS and (not sep or module.startswith(PACKAGE)):
        for name in CONFIG_MODULES:
            importlib.import_module(name)
    cls = _KINDS.get(kind) or _from_entry_points(kind)
    if cls is None and sep:
        found = import_object(kind)
        if isinstance(found, type) and issubclass(found, Config):
            cls = found
    if cls is None:
        raise ConfigError(f"unknown config kind {kind!r}: no class of that kind is defined "
                          f"(define or import it, or declare it in the {ENTRY_POINT_GROUP!r} "
                          "entry points)")
    return cls


def config_from_dict(data: Mapping[str, Any]) -> Any:
    """Rebuild a config written by :meth:`Config.to_dict` (kinds resolved by :func:`kind_class`)."""
    if "@config" not in data:
        raise ConfigError(f"not a config dict (no '@config' key): {sorted(data)}")
    cls = kind_class(data["@config"])
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

