"""Validation helpers for engine configuration objects.

Engine configurations are frozen dataclasses whose field names carry their units (``_ns``,
``_bytes``, ``_pages``, ``_shift``). Each validates itself in ``__post_init__`` with the
helpers below, which raise :class:`kmm.errors.ConfigError` naming the field, and converts
itself to kernel arrays in exactly one method (``to_arrays`` or similar) so that no kernel
ever sees a Python object.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Iterable
from dataclasses import asdict, fields, is_dataclass
from enum import Enum
from typing import Any

from .errors import ConfigError


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int, or raise naming ``name`` if it is not an integer in range.

    Floats are refused even when integral: a size given as ``1e5`` is a typing mistake that
    should be caught where it is made, not rounded silently.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"must be an integer, got {value!r}", name)
    value = int(value)
    if lo is not None and value < lo:
        raise ConfigError(f"must be >= {lo}, got {value}", name)
    if hi is not None and value > hi:
        raise ConfigError(f"must be <= {hi}, got {value}", name)
    return value


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """Return ``value`` as a finite float in ``[lo, hi]`` or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"must be a number, got {value!r}", name)
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"must be finite, got {value}", name)
    if lo is not None and value < lo:
        raise ConfigError(f"must be >= {lo}, got {value}", name)
    if hi is not None and value > hi:
        raise ConfigError(f"must be <= {hi}, got {value}", name)
    return value


def check_pow2(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive power of two, else raise naming ``name``."""
    value = check_int(name, value, lo=1)
    if value & (value - 1):
        raise ConfigError(f"must be a power of two, got {value}", name)
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise listing them."""
    allowed = list(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"must be one of {shown}, got {value!r}", name)
    return value


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def config_hash(config: Any, *, version: str | None = None) -> str:
    """A short stable hash of a configuration (dataclass, mapping or scalars) and kmm version.

    Two configurations hash equal exactly when their canonical JSON forms are equal, so the
    hash identifies a sweep point across processes and machines.
    """
    if version is None:
        from . import __version__ as version  # noqa: N813
    payload = json.dumps({"config": _jsonable(config), "kmm": version}, sort_keys=True,
                         separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def as_dict(config: Any) -> dict:
    """A plain-dict view of a dataclass configuration (enums by name)."""
    return _jsonable(config) if is_dataclass(config) else dict(config)


__all__ = ["check_int", "check_float", "check_pow2", "check_choice", "config_hash", "as_dict",
           "asdict"]
