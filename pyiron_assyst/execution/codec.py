"""Bit-exact JSON encoding of task results: numbers, arrays, structures, dataclasses, configs.

:func:`encode` turns a result into JSON-able data and :func:`decode` rebuilds it, so that every
float and array comes back bit for bit (floats through their shortest round-trip ``repr``,
arrays as base64 of their raw bytes with dtype and shape). Supported values:

- ``None``, ``bool``, ``int``, ``float`` (also NaN and ±inf), ``str``;
- ``list``, ``tuple``, ``dict`` (string keys), numpy arrays (numeric or bool) and scalars;
- :class:`ase.Atoms` with their per-atom arrays, cell, pbc, scalar / array ``info`` and the
  results of their calculator (rebuilt as a
  :class:`~ase.calculators.singlepoint.SinglePointCalculator`); constraints are refused;
- configs (:class:`~pyiron_assyst.core.config.Config`), plain dataclasses and
  :class:`~pyiron_assyst.execution.tasks.TaskError`.

Decoding imports classes only through :func:`~pyiron_assyst.core.config.import_object`, i.e. from
the allow-list of :mod:`pyiron_assyst.core.config`; nothing is unpickled or executed.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pyiron_assyst.core.config import (
    Config,
    ConfigError,
    config_from_dict,
    import_object,
    object_path,
)
from pyiron_assyst.execution.tasks import TaskError

__all__ = ["CodecError", "decode", "encode"]


class CodecError(ValueError):
    """A value cannot be encoded, or data cannot be decoded (foreign, corrupt, not allowed)."""


def _array(value: np.ndarray) -> dict[str, Any]:
    if value.dtype.kind not in "biufc" or value.dtype.hasobject:
        raise CodecError(f"cannot encode an array of dtype {value.dtype}")
    data = np.asarray(value, order="C")
    return {"@ndarray": data.dtype.str, "shape": list(data.shape),
            "data": base64.b64encode(data.tobytes()).decode("ascii")}


def _from_array(data: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(data["@ndarray"])
    if dtype.kind not in "biufc":
        raise CodecError(f"refusing array dtype {dtype}")
    raw = base64.b64decode(data["data"], validate=True)
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(data["shape"])).copy()


def _atoms(atoms: Atoms) -> dict[str, Any]:
    if atoms.constraints:
        raise CodecError("cannot encode a structure with constraints")
    calc = atoms.calc
    results = None if calc is None else dict(getattr(calc, "results", {}))
    return {"@atoms": {
        "arrays": {k: _array(v) for k, v in atoms.arrays.items()},
        "cell": _array(atoms.cell.array), "pbc": _array(atoms.pbc),
        "celldisp": _array(atoms.get_celldisp()),
        "info": encode(dict(atoms.info)), "results": encode(results)}}


def _from_atoms(data: dict[str, Any]) -> Atoms:
    arrays = {k: _from_array(v) for k, v in data["arrays"].items()}
    atoms = Atoms(numbers=arrays.pop("numbers"), positions=arrays.pop("positions"),
                  cell=_from_array(data["cell"]), pbc=_from_array(data["pbc"]),
                  celldisp=_from_array(data["celldisp"]), info=decode(data["info"]))
    for name, value in arrays.items():
        atoms.arrays[name] = value
    results = decode(data["results"])
    if results is not None:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _float(value: float) -> Any:
    return value if math.isfinite(value) else {"@float": repr(value)}


def encode(value: Any) -> Any:
    """JSON-able data from which :func:`decode` rebuilds ``value`` exactly.

    Raises
    ------
    CodecError
        If ``value`` holds something unsupported (a live object, an object array, constraints).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return {"@scalar": _array(np.asarray(value))}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, (list, tuple)):
        items = [encode(v) for v in value]
        return {"@tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CodecError(f"dict keys must be strings; got {list(value)!r}")
        return {"@dict": {k: encode(v) for k, v in value.items()}}
    return _encode_object(value)


def _encode_object(value: Any) -> Any:
    if isinstance(value, Atoms):
        return _atoms(value)
    if isinstance(value, TaskError):
        return {"@task_error": {"message": str(value), "reason": value.reason,
                                "traceback": value.traceback}}
    if isinstance(value, Config):
        return {"@config": value.to_dict()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)
                  if f.init}
        return {"@dataclass": object_path(type(value)), "fields": fields}
    raise CodecError(f"cannot encode a {type(value).__name__} value")


_TAGS = ("@ndarray", "@scalar", "@float", "@tuple", "@dict", "@atoms", "@task_error",
         "@config", "@dataclass")


def decode(data: Any) -> Any:
    """The value :func:`encode` encoded.

    Raises
    ------
    CodecError
        If ``data`` is not such an encoding, or names a class off the import allow-list.
    """
    try:
        return _decode(data)
    except CodecError:
        raise
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise CodecError(f"cannot decode: {type(error).__name__}: {error}") from None


def _decode(data: Any) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [_decode(v) for v in data]
    if not isinstance(data, dict) or len([k for k in data if k in _TAGS]) != 1:
        raise CodecError(f"not an encoded value: {str(data)[:80]}")
    return _decode_tagged(data)


def _decode_tagged(data: dict[str, Any]) -> Any:
    if "@ndarray" in data:
        return _from_array(data)
    if "@scalar" in data:
        return _from_array(data["@scalar"])[()]
    if "@float" in data:
        return float(data["@float"])
    if "@tuple" in data:
        return tuple(_decode(v) for v in data["@tuple"])
    if "@dict" in data:
        return {k: _decode(v) for k, v in data["@dict"].items()}
    if "@atoms" in data:
        return _from_atoms(data["@atoms"])
    if "@task_error" in data:
        error = data["@task_error"]
        return TaskError(error["message"], error["traceback"], reason=error["reason"])
    if "@config" in data:
        return config_from_dict(data["@config"])
    cls = import_object(data["@dataclass"])
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise CodecError(f"{data['@dataclass']!r} is not a dataclass")
    return cls(**{k: _decode(v) for k, v in data["fields"].items()})
