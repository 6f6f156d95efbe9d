"""Value schemas of notebook parameters, and the parameters cell kmm injects.

Every value that reaches a notebook (from a params file, a ``-p`` option or a sweep grid) is
plain data, checked against a schema and then written into the notebook as Python literals
by :func:`render_cell`; nothing a user typed is ever pasted into code.

A parameter's schema is the structure and types of its default in the notebook's
``parameters`` cell::

    nodes = 2                     # int (a bool, a float or a string is refused)
    remote_ratio = 2.2            # float (an int is accepted and becomes a float)
    workloads = ["database"]      # list of str
    bg_sweep = [[0.6, 0.25, 64.0]]   # list of list of float

An empty list or mapping says nothing about its elements, so it carries an annotation, else
any non-empty value for it is refused::

    mechanisms: list[str] = []

Annotations may use ``bool``, ``int``, ``float``, ``str``, ``list[T]``, ``dict[str, T]`` and
``T | None``.
"""
from __future__ import annotations

import ast
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: Integers are refused beyond this many decimal digits (no parameter needs more, and a
#: huge integer is a cheap way to make every later step slow).
MAX_INT_DIGITS = 20
#: Nesting depth of a value (lists and mappings inside each other).
MAX_DEPTH = 32

_SCALARS = ("bool", "int", "float", "str", "none")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Schema:
    """The shape of one parameter value.

    ``kind`` is one of ``bool, int, float, str, none, list, dict``; ``item`` is the schema of
    a list's elements or a mapping's values (None: unknown, so only an empty value passes);
    ``nullable`` admits ``None`` besides the kind.
    """

    kind: str
    item: Schema | None = None
    nullable: bool = False

    def describe(self) -> str:
        """The schema in annotation syntax (``list[float]``)."""
        if self.kind in ("list", "dict"):
            inner = self.item.describe() if self.item is not None else "?"
            text = f"list[{inner}]" if self.kind == "list" else f"dict[str, {inner}]"
        else:
            text = "None" if self.kind == "none" else self.kind
        return f"{text} | None" if self.nullable and self.kind != "none" else text


def _unify(a: Schema, b: Schema) -> Schema | None:
    """The schema both ``a`` and ``b`` fit, or None (int and float unify to float)."""
    if a == b:
        return a
    if {a.kind, b.kind} == {"int", "float"} and a.item is None and b.item is None:
        return Schema("float", nullable=a.nullable or b.nullable)
    if "none" in (a.kind, b.kind):
        other = b if a.kind == "none" else a
        return Schema(other.kind, other.item, True)
    if a.kind == b.kind and a.kind in ("list", "dict"):
        if a.item is None or b.item is None:
            return Schema(a.kind, a.item or b.item, a.nullable or b.nullable)
        inner = _unify(a.item, b.item)
        return None if inner is None else Schema(a.kind, inner, a.nullable or b.nullable)
    return None


def infer(default: Any, where: str) -> Schema:
    """The schema of a notebook default (a literal from its ``parameters`` cell)."""
    if default is None:
        return Schema("none")
    if isinstance(default, bool):
        return Schema("bool")
    if isinstance(default, int):
        return Schema("int")
    if isinstance(default, float):
        return Schema("float")
    if isinstance(default, str):
        return Schema("str")
    if isinstance(default, (list, tuple, dict)):
        kind = "dict" if isinstance(default, dict) else "list"
        items = list(default.values()) if isinstance(default, dict) else list(default)
        if isinstance(default, dict) and not all(isinstance(k, str) for k in default):
            raise ConfigError("a mapping default needs string keys", where)
        item: Schema | None = None
        for i, x in enumerate(items):
            s = infer(x, f"{where}[{i}]")
            item = s if item is None else _unify(item, s)
            if item is None:
                raise ConfigError("a default mixes element types; annotate it "
                                  "(e.g. `name: list[float] = [...]`)", where)
        return Schema(kind, item)
    raise ConfigError(f"a default of type {type(default).__name__} is not plain data", where)


_NAMES = {"bool": "bool", "int": "int", "float": "float", "str": "str"}


def from_annotation(node: ast.expr, where: str) -> Schema:
    """The schema written as a type annotation (``list[float]``, ``dict[str, int] | None``)."""
    if isinstance(node, ast.Constant) and node.value is None:
        return Schema("none")
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return Schema(_NAMES[node.id])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = from_annotation(node.left, where), from_annotation(node.right, where)
        if right.kind == "none":
            return Schema(left.kind, left.item, True)
        if left.kind == "none":
            return Schema(right.kind, right.item, True)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        if node.value.id == "list":
            return Schema("list", from_annotation(node.slice, where))
        if node.value.id == "dict" and isinstance(node.slice, ast.Tuple) \
                and len(node.slice.elts) == 2 and isinstance(node.slice.elts[0], ast.Name) \
                and node.slice.elts[0].id == "str":
            return Schema("dict", from_annotation(node.slice.elts[1], where))
    raise ConfigError(f"annotation {ast.unparse(node)!r} is not one of bool, int, float, str, "
                      "list[T], dict[str, T], T | None", where)


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", tuple: "a list", dict: "a mapping", type(None): "null"}.get(
        type(v), type(v).__name__)


def _shown(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def conform(value: Any, schema: Schema, where: str, depth: int = 0) -> Any:
    """``value`` checked against ``schema``; returns it with ints widened to floats where a
    float is declared. Only ``None, bool, int, float, str, list, dict`` (str keys) pass."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", where)
    if value is None:
        if schema.nullable or schema.kind == "none":
            return None
        raise ConfigError(f"must be {_expected(schema)}, got null", where)
    kind = schema.kind
    if kind == "bool":
        if type(value) is not bool:
            raise ConfigError(f"must be true or false, got {_shown(value)}", where)
        return value
    if kind == "int":
        if type(value) is not int:
            hint = " (write integers without a decimal point or exponent)" \
                if type(value) is float or (type(value) is str and _FLOAT_RE.match(value)) else ""
            raise ConfigError(f"must be an integer, got {_shown(value)}{hint}", where)
        return check_int(value, where)
    if kind == "float":
        if type(value) is str and _FLOAT_RE.match(value.strip()) and len(value) < 64:
            value = float(value)  # YAML 1.1 reads `1e5` as a string
        if type(value) not in (int, float):
            raise ConfigError(f"must be a number, got {_shown(value)}", where)
        if type(value) is int:
            check_int(value, where)
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"must be finite, got {value!r}", where)
        return value
    if kind == "str":
        if type(value) is not str:
            raise ConfigError(f"must be a string, got {_shown(value)}", where)
        return value
    if kind == "none":
        raise ConfigError(f"must be null, got {_shown(value)}", where)
    if kind == "list":
        if type(value) not in (list, tuple):
            raise ConfigError(f"must be a list, got {_shown(value)}", where)
        if value and schema.item is None:
            raise ConfigError("its default is an empty list with no element type, so only [] "
                              "is accepted (annotate the notebook default: list[T])", where)
        return [conform(x, schema.item, f"{where}[{i}]", depth + 1)  # type: ignore[arg-type]
                for i, x in enumerate(value)]
    if kind == "dict":
        if type(value) is not dict:
            raise ConfigError(f"must be a mapping, got {_shown(value)}", where)
        if value and schema.item is None:
            raise ConfigError("its default is an empty mapping with no value type, so only {} "
                              "is accepted (annotate the notebook default: dict[str, T])", where)
        out = {}
        for k, x in value.items():
            if type(k) is not str:
                raise ConfigError(f"mapping keys must be strings, got {_shown(k)}", where)
            out[k] = conform(x, schema.item, f"{where}.{k}", depth + 1)  # type: ignore[arg-type]
        return out
    raise ConfigError(f"unknown schema kind {kind!r}", where)  # pragma: no cover


def _expected(schema: Schema) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number",
            "str": "a string", "list": "a list", "dict": "a mapping", "none": "null"}[schema.kind]


def check_int(value: int, where: str) -> int:
    """``value`` if it has at most :data:`MAX_INT_DIGITS` decimal digits."""
    if abs(value) >= 10 ** MAX_INT_DIGITS:
        raise ConfigError(f"integer has more than {MAX_INT_DIGITS} digits", where)
    return value


# ---- the injected cell ----------------------------------------------------------------------
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_literal(value: Any) -> str:
    """A Python literal that :func:`ast.literal_eval` reads back as ``value``.

    Only plain data is rendered (exact types ``None, bool, int, float`` (finite) ``, str,
    list, tuple, dict`` with string keys); anything else raises TypeError, so no value can
    carry code into a notebook.
    """
    t = type(value)
    if value is None or t is bool:
        return repr(value)
    if t is int:
        return repr(value)
    if t is float:
        if not math.isfinite(value):
            raise TypeError(f"non-finite float {value!r} is not a literal")
        return repr(value)
    if t is str:
        return repr(value)
    if t in (list, tuple):
        return "[" + ", ".join(render_literal(x) for x in value) + "]"
    if t is dict:
        parts = []
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"mapping key {k!r} is not a string")
            parts.append(f"{render_literal(k)}: {render_literal(v)}")
        return "{" + ", ".join(parts) + "}"
    raise TypeError(f"{t.__name__} is not plain data")


def render_cell(values: Mapping[str, Any]) -> str:
    """The source of the injected parameters cell: one ``name = literal`` line per value."""
    lines = ["# Parameters"]
    for name, value in values.items():
        if type(name) is not str or not _IDENT.match(name) or name in _KEYWORDS:
            raise TypeError(f"{name!r} is not a parameter name")
        lines.append(f"{name} = {render_literal(value)}")
    return "\n".join(lines) + "\n"


_KEYWORDS = frozenset(keyword.kwlist)
