"""params/ files: the published scenario, variants and sweep grids of each notebook.

One YAML file per notebook, ``params/<stem>.yaml``, read with a safe loader only (no object
construction; duplicate keys refused)::

    notebook: ktr.ipynb                 # a file in notebooks/
    title: Kernel text replication across NUMA nodes
    parameters:                         # the full published scenario
      nodes: 2                          # a plain literal, or a spec mapping:
      remote_ratio: {value: 2.2, unit: ratio, min: 1.0, max: 4.0, source: "web: ..."}
      ipi_ns: {value: 2000, unit: ns, assumed: [500, 5000]}
      workload: {value: database, choices: [database, compute, syscall]}
    variants:                           # named overrides of `parameters`
      four_nodes: {nodes: 4}
    grids:                              # sweep grids
      latency:
        product: {remote_ratio: [1.0, 1.5, 2.0, 3.0], nodes: [2, 4]}
        zip: {a: [1, 2], b: [3, 4]}
        variant: four_nodes
        runner: notebook                # or `library` with `function: module:callable`
    run_last: false                     # optional: `kmm reproduce` runs it after the others
    expected_seconds: 120               # optional: its published run's typical duration

Rules checked on load, each failure a :class:`kmm.errors.ConfigError` whose ``where`` names
the file and the key (``params/ktr.yaml: parameters.remote_ratio``):

- every key of ``parameters``, of a variant and of a grid axis exists in the notebook's
  ``parameters`` cell; ``scenario`` is reserved for the runner;
- a spec mapping has ``value`` and only the keys ``value, unit, min, max, choices, source,
  assumed, description``;
- a cost parameter (unit ``ns``, ``bytes`` or ``cycles``, or a name ending in ``_ns``,
  ``_cycles`` or ``_bytes``) carries ``source`` or ``assumed: [lo, hi]``;
- (checked by ``tests/test_sources.py``) a ``source`` names its primary source, never a file
  outside the repository, as ``<kind>: <identity>: <what it gives>`` with kind
  ``thread`` (``lists, "subject", author, YYYY-MM-DD, <message-id>``), ``kernel`` (a path
  in the kernel tree and the symbol), ``manual`` (title, document number, table or section),
  ``package`` (the program and the option or default), ``web`` (publisher, title, date,
  address; a publication that could not be identified says so) or ``trace`` (a captured
  kernel trace shipped in ``kmm/data/traces/`` and what was measured on it);
- every value (scenario, variants, grid points) has the type of the notebook's default (an
  int where an int is declared: ``1e5`` is refused, ``100000`` accepted; a float accepts an
  int) and lies within the spec's ``min``/``max``/``choices`` (element-wise for lists);
- a grid has at least one axis, and its ``zip`` axes have equal lengths.
"""
from __future__ import annotations

import ast
import difflib
import itertools
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .schema import MAX_DEPTH, MAX_INT_DIGITS, Schema, conform, from_annotation, infer

SPEC_KEYS = frozenset({"value", "unit", "min", "max", "choices", "source", "assumed", "description"})
TOP_KEYS = frozenset({"notebook", "title", "parameters", "variants", "grids", "run_last",
                      "expected_seconds"})
GRID_KEYS = frozenset({"product", "zip", "variant", "runner", "function", "description"})
COST_UNITS = frozenset({"ns", "bytes", "cycles"})
COST_SUFFIXES = ("_ns", "_cycles", "_bytes")
RUNNERS = ("notebook", "library")
#: Set by the runner (``"small"`` in the notebook, ``"published"`` by ``kmm reproduce``).
RESERVED = frozenset({"scenario"})

#: A library grid's function: a callable of kmm itself, ``kmm.<module path>:<name>``.
_FUNCTION_RE = re.compile(r"^kmm(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
#: Names that become file or folder names (variants, scenario labels): plain and short.
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: Grid names may not contain "-", so the sweep name ``<stem>-<grid>`` names one grid of one file.
GRID_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]*$")
#: Longest name kmm puts into a file name (a file name has at most 255 bytes).
MAX_NAME = 100
#: Points of one grid (each is a notebook run or a function call).
MAX_GRID_POINTS = 100_000


# ---- YAML ----------------------------------------------------------------------------------
#: A params file larger than this is refused before it is parsed.
MAX_FILE_BYTES = 1 << 20
#: A notebook larger than this is refused (the stored notebooks are tens of kB).
MAX_NOTEBOOK_BYTES = 64 << 20
_JSON_TAGS = ("null", "bool", "int", "float", "str", "seq", "map")


class _JsonLoader(yaml.SafeLoader):
    """A YAML loader that builds JSON types only.

    Plain scalars resolve to null, booleans, integers, finite floats or strings (a date stays a
    string); every explicit tag (``!!binary``, ``!!set``, ``!!omap``, ``!!python/...``, even
    ``!!str``), every anchor and alias, merge keys, non-string mapping keys, duplicate keys,
    integers of more than :data:`kmm.suite.schema.MAX_INT_DIGITS` digits and nesting deeper
    than :data:`kmm.suite.schema.MAX_DEPTH` are refused.
    """

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers
                if tag.rsplit(":", 1)[-1] in ("null", "bool", "int", "float")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    yaml_constructors: dict = {}

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed",
                                              mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "YAML anchors (&name) are not allowed",
                                              mark)
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise yaml.composer.ComposerError(
                None, None, f"YAML tag {tag!r} is not allowed (params are plain JSON data: "
                "null, true/false, numbers, strings, lists, mappings)", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _JsonLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a string, got {key!r}", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _construct_int(loader: _JsonLoader, node: yaml.ScalarNode) -> int:
    digits = node.value.replace("_", "").lstrip("+-")
    if len(digits) > MAX_INT_DIGITS + 2:  # room for a 0x / 0o / 0b prefix
        raise yaml.constructor.ConstructorError(
            None, None, f"integer has more than {MAX_INT_DIGITS} digits", node.start_mark)
    value = yaml.SafeLoader.construct_yaml_int(loader, node)
    if abs(value) >= 10 ** MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"integer has more than {MAX_INT_DIGITS} digits", node.start_mark)
    return value


def _construct_float(loader: _JsonLoader, node: yaml.ScalarNode) -> float:
    value = yaml.SafeLoader.construct_yaml_float(loader, node)
    if not math.isfinite(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a finite number", node.start_mark)
    return value


for _tag, _fn in (("null", yaml.SafeLoader.construct_yaml_null),
                  ("bool", yaml.SafeLoader.construct_yaml_bool),
                  ("int", _construct_int), ("float", _construct_float),
                  ("str", yaml.SafeLoader.construct_yaml_str),
                  ("seq", yaml.SafeLoader.construct_yaml_seq),
                  ("map", _construct_mapping)):
    _JsonLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _fn)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line describing a YAML error, with its line number."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    problem = " ".join(str(problem).split())
    if len(problem) > 200:
        problem = problem[:197] + "..."
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


def safe_load(text: str, where: str) -> Any:
    """Parse YAML ``text`` into JSON types only (see :class:`_JsonLoader`)."""
    try:
        return yaml.load(text, Loader=_JsonLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {_yaml_problem(e)}", where) from None
    except RecursionError:
        raise ConfigError(f"malformed YAML: nested deeper than {MAX_DEPTH} levels",
                          where) from None


def read_regular_file(path: Path | str, where: str, limit: int, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; ConfigError otherwise.

    The file is opened without blocking, so a FIFO given as a params file is refused at once
    instead of hanging, and checked on the open descriptor (no race with a rename).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"no such {what}", where) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", where) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"is a directory, not a {what}", where)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"not a regular file (a FIFO, device or socket is refused)", where)
        if st.st_size > limit:
            raise ConfigError(f"larger than {limit} bytes; a {what} is refused beyond that", where)
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", where) from None
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError(f"larger than {limit} bytes; a {what} is refused beyond that", where)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", where) from None


def parse_cli_value(text: str, where: str) -> Any:
    """A ``-p key=value`` value: YAML scalar/list/mapping syntax, read with the safe loader."""
    return safe_load(text, where) if text.strip() else ""


# ---- paths ----------------------------------------------------------------------------------
def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding ``pyproject.toml`` and
    ``kmm/``, or holding ``notebooks/``; else ``start`` itself."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "kmm").is_dir():
            return d
    for d in (here, *here.parents):
        if (d / "notebooks").is_dir() and (d / "params").is_dir():
            return d
    return here


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it (for messages)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


# ---- the notebook's parameters cell ---------------------------------------------------------
def read_notebook(path: Path) -> dict:
    """The notebook JSON as a dict; ConfigError if it is missing or not a notebook."""
    where = display_path(path)
    text = read_regular_file(path, where, MAX_NOTEBOOK_BYTES, "notebook")
    try:
        nb = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        line = getattr(e, "lineno", None)
        raise ConfigError("not a notebook (invalid JSON"
                          f"{f' at line {line}' if line else ''})", where) from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ConfigError("not a notebook (no cells)", where)
    return nb


def _source(cell: Mapping) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parameters_cell(nb: Mapping) -> tuple[int, Mapping] | None:
    """``(index, cell)`` of the first code cell tagged ``parameters``, or None."""
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i, cell
    return None


def _parameters_cell(path: Path) -> tuple[dict[str, Any], dict[str, Schema]]:
    """The literals of a notebook's ``parameters`` cell and the schemas of its annotated ones."""
    where = display_path(path)
    found = parameters_cell(read_notebook(path))
    if found is None:
        raise ConfigError("has no code cell tagged 'parameters'", where)
    src = _source(found[1])
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise ConfigError(f"parameters cell line {e.lineno}: {e.msg}", where) from None
    out: dict[str, Any] = {}
    annotated: dict[str, Schema] = {}
    for stmt in tree.body:
        w = f"{where}: parameters cell line {stmt.lineno}"
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            targets, value = [stmt.target], stmt.value
            annotated[stmt.target.id] = from_annotation(stmt.annotation, w)
        elif isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            targets, value = stmt.targets, stmt.value
        else:
            raise ConfigError("only `name = literal` assignments are allowed in the parameters cell", w)
        try:
            lit = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ConfigError(f"{ast.unparse(value)!r} is not a literal", w) from None
        for t in targets:
            out[t.id] = lit
            if t.id in annotated:
                conform(lit, annotated[t.id], f"{w}: default of {t.id}")
    return out, annotated


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The literals assigned in a notebook's ``parameters``-tagged cell, in order.

    Each statement must be ``name = <literal>`` or ``name: <type> = <literal>``
    (``ast.literal_eval``); anything else (a call, an expression, an import) is an error naming
    the line, so a params file can always be checked against the cell without running the
    notebook.
    """
    return _parameters_cell(path)[0]


def notebook_schemas(path: Path) -> dict[str, Schema]:
    """The schema of every parameter of a notebook: its annotation, else its default's shape."""
    values, annotated = _parameters_cell(path)
    return {k: annotated.get(k) or infer(v, f"{display_path(path)}: default of {k}")
            for k, v in values.items()}


# ---- values ---------------------------------------------------------------------------------
def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", tuple: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _schema(name: str, defaults: Mapping[str, Any], schemas: Mapping[str, Schema] | None,
            where: str) -> Schema:
    """The schema of parameter ``name``: declared in ``schemas``, else inferred from its default."""
    if schemas is not None and name in schemas:
        return schemas[name]
    return infer(defaults[name], f"{where} (the notebook's default)")


def _within(spec: ParamSpec | None, value: Any, where: str) -> None:
    """Check ``value`` (each element, for a list) against the spec's min/max/choices."""
    if spec is None:
        return
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    for i, x in items:
        w = where if i is None else f"{where}[{i}]"
        if spec.choices is not None and x not in spec.choices:
            shown = ", ".join(repr(c) for c in spec.choices)
            raise ConfigError(f"must be one of {shown}, got {x!r}", w)
        if spec.min is not None or spec.max is not None:
            if not _is_real(x):
                raise ConfigError(f"must be a number, got {x!r}", w)
            if spec.min is not None and x < spec.min:
                raise ConfigError(f"must be >= {spec.min}, got {x!r}", w)
            if spec.max is not None and x > spec.max:
                raise ConfigError(f"must be <= {spec.max}, got {x!r}", w)


def _value(name: str, value: Any, schema: Schema, spec: ParamSpec | None, where: str) -> Any:
    """One value checked against its schema and its spec."""
    value = conform(value, schema, where)
    _within(spec, value, where)
    return value


def _unknown_key(name: str, known: Mapping[str, Any], what: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = name if len(name) <= 60 else name[:57] + "..."
    return ConfigError(f"unknown parameter {shown!r}: not in {what}{hint}", where)


def check_values(values: Mapping[str, Any], defaults: Mapping[str, Any],
                 specs: Mapping[str, ParamSpec], where: str, *, notebook: str = "the notebook's "
                 "parameters cell", allow_reserved: bool = True,
                 schemas: Mapping[str, Schema] | None = None) -> dict[str, Any]:
    """Validate parameter values against a notebook's defaults and the params specs.

    Every value, nested ones included, must have the structure and types of its schema
    (``schemas[name]``, else the shape of ``defaults[name]``: see :mod:`kmm.suite.schema`).
    Returns the values with floats coerced (an int given for a float parameter becomes a
    float). ``where`` prefixes each key in error messages (``"-p"`` gives ``"-p nodes"``).
    """
    out = {}
    sep = "." if where and not where.endswith((" ", ":")) else ""
    for k, v in values.items():
        w = f"{where}{sep}{k}" if where else str(k)
        if not isinstance(k, str) or k not in defaults:
            raise _unknown_key(str(k), defaults, notebook, w)
        if k in RESERVED and not allow_reserved:
            raise ConfigError(f"{k!r} is set by the runner, not by a params file", w)
        out[k] = _value(k, v, _schema(k, defaults, schemas, w), specs.get(k), w)
    return out


# ---- the params file ------------------------------------------------------------------------
def is_cost(name: str, unit: str | None) -> bool:
    """A cost parameter: unit ns/bytes/cycles, or a name ending _ns/_cycles/_bytes."""
    return (unit or "") in COST_UNITS or name.endswith(COST_SUFFIXES)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a params file, as declared (``value`` is the published one)."""

    name: str
    value: Any
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    source: str | None = None
    assumed: tuple[float, float] | None = None
    description: str = ""

    @property
    def is_cost(self) -> bool:
        return is_cost(self.name, self.unit)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "value", "unit", "min", "max", "choices",
                                             "source", "assumed", "description")}


@dataclass(frozen=True)
class GridSpec:
    """A sweep grid: cartesian ``product`` axes crossed with zipped ``zip`` axes."""

    name: str
    product: dict[str, list]
    zip: dict[str, list]
    variant: str | None = None
    runner: str = "notebook"
    function: str | None = None
    description: str = ""

    @property
    def size(self) -> int:
        n = math.prod(len(v) for v in self.product.values()) if self.product else 1
        return n * (len(next(iter(self.zip.values()))) if self.zip else 1)


@dataclass(frozen=True)
class ParamsFile:
    """A validated params file. Build with :func:`load`."""

    path: Path
    notebook: Path
    title: str
    specs: dict[str, ParamSpec]
    variants: dict[str, dict[str, Any]]
    grids: dict[str, GridSpec]
    run_last: bool = False
    #: typical seconds of the published run on 2 cores with no compiled kernels cached:
    #: ``kmm reproduce`` starts the longest notebooks first, by this when no run of this
    #: data folder has recorded a duration (:func:`kmm.suite.reproduce.plan`)
    expected_seconds: float | None = None
    _defaults: dict[str, Any] = field(default_factory=dict, repr=False)
    _schemas: dict[str, Schema] = field(default_factory=dict, repr=False)

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def where(self) -> str:
        return display_path(self.path)

    def defaults(self) -> dict[str, Any]:
        """The notebook's ``parameters``-cell values (its small defaults)."""
        return dict(self._defaults)

    def scenario(self) -> dict[str, Any]:
        """The published scenario: every parameter of the file, as plain values."""
        return {k: s.value for k, s in self.specs.items()}

    def variant(self, name: str) -> dict[str, Any]:
        """The published scenario with variant ``name``'s overrides applied."""
        if name not in self.variants:
            known = ", ".join(self.variants) or "none"
            raise ConfigError(f"unknown variant {name!r} (variants: {known})", self.where)
        return {**self.scenario(), **self.variants[name]}

    def grid_spec(self, name: str) -> GridSpec:
        if name not in self.grids:
            known = ", ".join(self.grids) or "none"
            raise ConfigError(f"unknown grid {name!r} (grids: {known})", self.where)
        return self.grids[name]

    def grid(self, name: str) -> list[dict[str, Any]]:
        """Every point of grid ``name``: the base (scenario or the grid's variant) updated with
        one combination of the product axes (first axis slowest) and one row of the zip axes
        (innermost)."""
        g = self.grid_spec(name)
        base = self.variant(g.variant) if g.variant else self.scenario()
        zipped = list(zip(*g.zip.values())) if g.zip else [()]
        points = []
        for combo in itertools.product(*g.product.values()):
            for row in zipped:
                points.append({**base, **dict(zip(g.product, combo)), **dict(zip(g.zip, row))})
        return points

    def assumed(self) -> dict[str, tuple[float, float]]:
        """``assumed`` parameters and their plausible ranges."""
        return {k: s.assumed for k, s in self.specs.items() if s.assumed is not None}

    def validate_values(self, values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Check overrides (``-p``) against the notebook's types and this file's specs."""
        return check_values(values, self._defaults, self.specs, where,
                            notebook=f"{display_path(self.notebook)}'s parameters cell",
                            schemas=self._schemas)


def _check_number(name: str, v: Any, where: str) -> float:
    if not _is_real(v) or not math.isfinite(float(v)):
        raise ConfigError(f"{name} must be a finite number, got {v!r}", where)
    return v


def _spec(name: str, raw: Any, schema: Schema, where: str) -> ParamSpec:
    """Parse and check one entry of ``parameters``."""
    if isinstance(raw, dict) and not (schema.kind == "dict" and "value" not in raw):
        extra = sorted(set(map(str, raw)) - SPEC_KEYS)
        if extra:
            allowed = ", ".join(sorted(SPEC_KEYS))
            raise ConfigError(f"unknown spec key {extra[0]!r} (a spec has: {allowed})", where)
        if "value" not in raw:
            raise ConfigError("a spec mapping needs a 'value'", where)
        unit = raw.get("unit", "")
        if unit is None or not isinstance(unit, str):
            raise ConfigError(f"unit must be a string, got {unit!r}", f"{where}.unit")
        lo = raw.get("min")
        hi = raw.get("max")
        if lo is not None:
            _check_number("min", lo, f"{where}.min")
        if hi is not None:
            _check_number("max", hi, f"{where}.max")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"min {lo!r} is above max {hi!r}", where)
        choices = raw.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or not choices:
                raise ConfigError("choices must be a non-empty list", f"{where}.choices")
            choices = tuple(choices)
        source = raw.get("source")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise ConfigError("source must be a non-empty string", f"{where}.source")
        assumed = raw.get("assumed")
        if assumed is not None:
            if not (isinstance(assumed, list) and len(assumed) == 2):
                raise ConfigError("assumed must be a plausible range [lo, hi]", f"{where}.assumed")
            a_lo = _check_number("assumed range", assumed[0], f"{where}.assumed")
            a_hi = _check_number("assumed range", assumed[1], f"{where}.assumed")
            if a_lo > a_hi:
                raise ConfigError(f"assumed range [{a_lo}, {a_hi}] is reversed", f"{where}.assumed")
            assumed = (a_lo, a_hi)
        desc = raw.get("description", "")
        if not isinstance(desc, str):
            raise ConfigError("description must be a string", f"{where}.description")
        spec = ParamSpec(name, raw["value"], unit, lo, hi, choices, source, assumed, desc)
    else:
        spec = ParamSpec(name, raw)
    if spec.is_cost and spec.source is None and spec.assumed is None:
        raise ConfigError("a cost parameter needs a 'source' or 'assumed: [lo, hi]' "
                          f"(write it as a spec: {{value: {json.dumps(spec.value)}, "
                          "source: ...})", where)
    value = conform(spec.value, schema, where)
    _within(spec, value, where)
    if spec.assumed is not None:
        for x in (value if isinstance(value, list) else [value]):
            if _is_real(x) and not spec.assumed[0] <= x <= spec.assumed[1]:
                raise ConfigError(f"value {x!r} is outside its assumed range "
                                  f"[{spec.assumed[0]}, {spec.assumed[1]}]", where)
    return ParamSpec(**{**spec.as_dict(), "value": value})


def _mapping(raw: Any, what: str, where: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} must be a mapping, got {_type_name(raw)}", where)
    return raw


def _require_declared_costs(keys, specs: Mapping[str, ParamSpec], where: str) -> None:
    """A cost parameter set by a variant or grid must be declared (with its source) first."""
    for k in keys:
        if is_cost(k, None) and k not in specs:
            raise ConfigError("a cost parameter must be declared under 'parameters' with its "
                              "'source' or 'assumed' before a variant or grid sets it",
                              f"{where}.{k}")


def _grid(name: str, raw: Any, nb_defaults: Mapping[str, Any], schemas: Mapping[str, Schema],
          specs: Mapping[str, ParamSpec], variants: Mapping[str, Any], nb_where: str,
          where: str) -> GridSpec:
    check_name(name, "grid", where, GRID_NAME_RE)
    raw = _mapping(raw, "a grid", where)
    extra = sorted(set(map(str, raw)) - GRID_KEYS)
    if extra:
        raise ConfigError(f"unknown grid key {extra[0]!r} (a grid has: "
                          f"{', '.join(sorted(GRID_KEYS))})", where)
    axes: dict[str, dict[str, list]] = {}
    for kind in ("product", "zip"):
        section = _mapping(raw.get(kind), kind, f"{where}.{kind}")
        _require_declared_costs(section, specs, f"{where}.{kind}")
        checked = {}
        for k, vals in section.items():
            w = f"{where}.{kind}.{k}"
            if not isinstance(vals, list) or not vals:
                raise ConfigError("an axis must be a non-empty list of values", w)
            if k not in nb_defaults:
                raise _unknown_key(str(k), nb_defaults, nb_where, w)
            if k in RESERVED:
                raise ConfigError(f"{k!r} is set by the runner, not by a params file", w)
            schema = _schema(k, nb_defaults, schemas, w)
            checked[k] = [_value(k, v, schema, specs.get(k), f"{w}[{i}]")
                          for i, v in enumerate(vals)]
        axes[kind] = checked
    both = sorted(set(axes["product"]) & set(axes["zip"]))
    if both:
        raise ConfigError(f"{both[0]!r} is both a product and a zip axis", where)
    if not axes["product"] and not axes["zip"]:
        raise ConfigError("empty grid: give at least one axis under 'product' or 'zip'", where)
    lengths = {k: len(v) for k, v in axes["zip"].items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ConfigError(f"zip axes must have equal lengths ({shown})", f"{where}.zip")
    size = math.prod(len(v) for v in axes["product"].values()) * max(lengths.values(), default=1)
    if size > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {size} points; at most {MAX_GRID_POINTS} are allowed",
                          where)
    variant = raw.get("variant")
    if variant is not None and variant not in variants:
        known = ", ".join(variants) or "none"
        raise ConfigError(f"unknown variant {variant!r} (variants: {known})", f"{where}.variant")
    runner = raw.get("runner", "notebook")
    if runner not in RUNNERS:
        raise ConfigError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}",
                          f"{where}.runner")
    function = raw.get("function")
    if runner == "library":
        if not isinstance(function, str) or not _FUNCTION_RE.match(function):
            raise ConfigError("the library runner needs 'function: kmm.module:callable' (a "
                              f"function of kmm itself), got {function!r}", f"{where}.function")
    elif function is not None:
        raise ConfigError("'function' is only used with 'runner: library'", f"{where}.function")
    desc = raw.get("description", "")
    return GridSpec(name, axes["product"], axes["zip"], variant, runner, function,
                    desc if isinstance(desc, str) else str(desc))


def check_name(name: Any, what: str, where: str, pattern: re.Pattern = NAME_RE) -> str:
    """``name`` if it is a plain name that can be part of a file name; ConfigError otherwise.

    Plain: letters, digits, ``_ . -`` (``-`` not for grids), not starting with ``.`` or ``-``,
    at most :data:`MAX_NAME` characters; so no newline, NUL, slash or over-long component
    ever reaches the filesystem or a one-line message.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a {what} name must be a non-empty string", where)
    if len(name) > MAX_NAME:
        raise ConfigError(f"a {what} name has at most {MAX_NAME} characters, got {len(name)}",
                          where)
    if not pattern.match(name):
        allowed = "letters, digits, _ ." + ("" if pattern is GRID_NAME_RE else " -")
        raise ConfigError(f"a {what} name may hold only {allowed} (and not start with . or -), "
                          f"got {name!r}", where)
    return name


def _resolve_notebook(name: Any, path: Path, where: str, notebooks_dir: Path | None) -> Path:
    """The notebook a params file names: a file inside ``notebooks/``, never elsewhere.

    It is looked up in ``notebooks_dir`` if given, else in the ``notebooks/`` folder beside
    the file's ``params/`` folder, else in the project's ``notebooks/``; a name that is
    absolute, climbs out with ``..`` or resolves (through a link) outside that folder is refused.
    """
    w = f"{where}: notebook"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("must name a notebook file in notebooks/", w)
    p = Path(name)
    if p.suffix != ".ipynb":
        raise ConfigError(f"{name!r} is not a .ipynb file", w)
    if p.is_absolute() or ".." in p.parts or "\0" in name:
        raise ConfigError(f"{name!r} must be a file name inside notebooks/ (no absolute path, "
                          "no ..)", w)
    bases = [notebooks_dir] if notebooks_dir else []
    if path.resolve().parent.name == "params":
        bases.append(path.resolve().parent.parent / "notebooks")
    bases.append(project_root() / "notebooks")
    for base in bases:
        c = base / p
        if c.is_file():
            resolved, inside = c.resolve(), base.resolve()
            if not resolved.is_relative_to(inside):
                raise ConfigError(f"{name!r} resolves outside {display_path(base)}", w)
            return resolved
    raise ConfigError(f"notebook {name!r} not found (looked in "
                      f"{', '.join(display_path(b) for b in bases)})", w)


def load(path: Path | str, *, notebooks_dir: Path | None = None) -> ParamsFile:
    """Read and validate ``params/<stem>.yaml`` against its notebook's parameters cell.

    The notebook is looked up in ``notebooks_dir`` if given, else in the ``notebooks/``
    folder beside the file's ``params/`` folder, else in the project's ``notebooks/``.
    """
    path = Path(path)
    where = display_path(path)
    if "\0" in str(path):
        raise ConfigError("a path may not contain NUL", repr(str(path)))
    raw = safe_load(read_regular_file(path, where, MAX_FILE_BYTES, "params file"), where)
    if not isinstance(raw, dict):
        raise ConfigError(f"a params file is a mapping with 'notebook' and 'parameters', got "
                          f"{_type_name(raw)}", where)
    extra = sorted(set(map(str, raw)) - TOP_KEYS)
    if extra:
        raise ConfigError(f"unknown top-level key {extra[0]!r} (allowed: "
                          f"{', '.join(sorted(TOP_KEYS))})", where)
    notebook = _resolve_notebook(raw.get("notebook"), path, where, notebooks_dir)
    nb_where = f"{display_path(notebook)}'s parameters cell"
    nb_defaults, annotated = _parameters_cell(notebook)
    schemas = {k: annotated[k] if k in annotated else _schema(k, nb_defaults, None, nb_where)
               for k in nb_defaults}
    title = raw.get("title") or notebook.stem
    if not isinstance(title, str):
        raise ConfigError("must be a string", f"{where}: title")
    run_last = raw.get("run_last", False)
    if not isinstance(run_last, bool):
        raise ConfigError("must be true or false", f"{where}: run_last")
    expected = raw.get("expected_seconds")
    if expected is not None:
        if isinstance(expected, bool) or not isinstance(expected, (int, float)) \
                or not 0 <= expected < 1e6:
            raise ConfigError("must be a number of seconds from 0 to 1e6",
                              f"{where}: expected_seconds")
        expected = float(expected)

    specs: dict[str, ParamSpec] = {}
    for k, v in _mapping(raw.get("parameters"), "parameters", f"{where}: parameters").items():
        w = f"{where}: parameters.{k}"
        if not isinstance(k, str) or k not in nb_defaults:
            raise _unknown_key(str(k), nb_defaults, nb_where, w)
        if k in RESERVED:
            raise ConfigError(f"{k!r} is set by the runner, not by a params file", w)
        specs[k] = _spec(k, v, schemas[k], w)

    variants: dict[str, dict[str, Any]] = {}
    for name, over in _mapping(raw.get("variants"), "variants", f"{where}: variants").items():
        w = f"{where}: variants.{name}"
        check_name(name, "variant", w)
        over = _mapping(over, "a variant", w)
        _require_declared_costs(over, specs, w)
        variants[name] = check_values(over, nb_defaults, specs, w, notebook=nb_where,
                                      allow_reserved=False, schemas=schemas)

    grids: dict[str, GridSpec] = {}
    for name, g in _mapping(raw.get("grids"), "grids", f"{where}: grids").items():
        grids[name] = _grid(name, g, nb_defaults, schemas, specs, variants, nb_where,
                            f"{where}: grids.{name}")
    return ParamsFile(path.resolve(), notebook, title, specs, variants, grids, run_last,
                      expected, nb_defaults, schemas)


def refuse_params_file(namespace: Mapping[str, Any], stem: str) -> None:
    """Refuse a params file handed to papermill as it is (``papermill -f params/<stem>.yaml``).

    papermill injects a YAML file's top-level keys as variables, so kmm's structured file
    would set ``notebook``, ``parameters``, ``variants`` and ``grids`` and leave every real
    parameter at its small default: the run would finish and look published. Each notebook
    calls this in the cell after its parameters (where papermill's cell lands before it), with
    its ``globals()``; ``kmm params export`` writes the flat form papermill takes.
    """
    structured = isinstance(namespace.get("parameters"), dict) or (
        isinstance(namespace.get("notebook"), str) and namespace["notebook"].endswith(".ipynb"))
    if structured:
        given = ", ".join(k for k in sorted(TOP_KEYS) if k in namespace)
        raise ConfigError(
            f"papermill was given a kmm params file ({given}), whose values it does not apply: "
            f"run `kmm run {stem} --params params/{stem}.yaml`, or write papermill's flat form "
            f"with `kmm params export {stem} --out {stem}.params.yaml` and pass that to "
            "papermill -f", "papermill parameters")


def params_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "params"


def load_all(root: Path | None = None) -> dict[str, ParamsFile | ConfigError]:
    """Every ``params/*.yaml`` by stem: the loaded file, or the error that refused it."""
    out: dict[str, ParamsFile | ConfigError] = {}
    for p in sorted(params_dir(root).glob("*.y*ml")):
        try:
            out[p.stem] = load(p)
        except ConfigError as e:
            out[p.stem] = e
    return out
