"""Config mixin: JSON round trip, hashing, allow-list, validation messages."""

import math
import pickle
from dataclasses import dataclass

import pytest

from pyiron_assyst.core.config import (
    ALLOWED_PREFIXES,
    Config,
    ConfigError,
    NotPersistableError,
    config_from_json,
    freeze,
    import_object,
    register_import_prefix,
    require,
)


@dataclass(frozen=True)
class Inner(Config):
    value: float = 1.0


@dataclass(frozen=True)
class Outer(Config):
    inner: Inner = Inner()
    items: tuple = ()
    limit: float = math.inf
    name: str | None = None

    def __post_init__(self):
        require(self.limit > 0, "Outer", "limit", "> 0", self.limit)


def module_level_function(x):
    return x


def test_round_trip_nested_with_infinity_and_tuples():
    outer = Outer(Inner(2.5), items=(Inner(), 3, "a", (1, 2)), limit=math.inf, name=None)
    back = config_from_json(outer.to_json())
    assert back == outer
    assert hash(back) == hash(outer)
    assert back.config_hash() == outer.config_hash()
    assert pickle.loads(pickle.dumps(outer)) == outer


def test_hash_differs_for_any_field_change():
    base = Outer(Inner(1.0))
    assert base.config_hash() != Outer(Inner(1.0 + 1e-12)).config_hash()
    assert base.config_hash() != Outer(Inner(1.0), name="x").config_hash()
    assert len(base.config_hash()) == 16


def test_validation_names_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"Outer\.limit must be > 0; got -1"):
        Outer(limit=-1)


def test_callables_importable_persist_lambdas_do_not():
    outer = Outer(items=(module_level_function,))
    assert config_from_json(outer.to_json()) == outer
    live = Outer(items=(lambda x: x,))
    assert not live.persistable
    with pytest.raises(NotPersistableError):
        live.to_json()
    assert len(live.config_hash()) == 16  # still hashable for caching in a live session


def test_allow_list_refuses_foreign_modules():
    text = Outer().to_json().replace("tests.test_config", "os.path")
    with pytest.raises(ConfigError, match="not allowed"):
        config_from_json(text)
    with pytest.raises(ConfigError, match="not allowed"):
        import_object("subprocess:run")
    assert "tests" in ALLOWED_PREFIXES  # registered by conftest
    with pytest.raises(ConfigError):
        register_import_prefix("not a module")


def test_malformed_json_is_a_config_error():
    with pytest.raises(ConfigError, match="malformed"):
        config_from_json("{not json")
    with pytest.raises(ConfigError, match="no '@config' key"):
        config_from_json("{}")


def test_freeze_makes_hashable_sorted_pairs():
    frozen = freeze({"b": [1, 2], "a": {"c": {3, 1}}})
    assert frozen == (("a", (("c", (1, 3)),)), ("b", (1, 2)))
    hash(frozen)
