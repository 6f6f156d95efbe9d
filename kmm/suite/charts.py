"""One altair theme for every kmm chart, offline SVG/PNG export, and polars aggregation.

Notebooks import altair through this module (``from kmm.suite.charts import alt``) so that the
theme is registered and enabled exactly once per kernel, and chart through it::

    from kmm.suite import charts
    from kmm.suite.charts import alt
    agg = charts.aggregate(df, ["nodes", "latency_ratio"])          # polars, before altair
    chart = alt.Chart(agg).mark_line(point=True).encode(x="latency_ratio:Q", y="mean:Q")
    charts.save(chart, "ktr_gain_vs_ratio", scenario=scenario)      # data/charts/<scenario>/

Export runs vl-convert in-process with no base URL allowed (no browser, no network). Charts carry their data inline,
so a chart is refused above altair's 5000-row limit: aggregate first.

Importing this module also enables the ``kmm`` altair renderer (:func:`mimebundle`): a chart
shown in a notebook carries a PNG drawn by vl-convert (shown by any frontend, trusted or not,
and kept in executed copies) and the same chart compiled to Vega, which JupyterLab 4's
built-in Vega extension draws interactively (tooltips), with no network. Altair's own
renderers are no use offline there: altair 6 emits Vega-Lite 6, which JupyterLab's extension
(Vega-Lite up to 5) does not take, and its HTML output loads vega from a CDN.
"""
from __future__ import annotations

import base64
import copy
import functools
import re
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# jsonschema (imported by altair and nbformat) optionally imports rfc3987_syntax, which builds
# an Earley parser at import time: about 1.3 s of CPU added to every notebook kernel. Only the
# `iri` string format of JSON Schema needs it, and no kmm schema uses that format.
sys.modules.setdefault("rfc3987_syntax", None)

import altair as alt  # noqa: E402

from ..errors import ConfigError, KmmError  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

THEME = "kmm"
#: Every export format: drawings, the Vega-Lite spec with its data (re-open it in any Vega-Lite
#: tool), and a standalone offline HTML page (vega bundled in, about 0.9 MB each).
FORMATS = ("svg", "png", "vl.json", "html")
#: What :func:`save` writes unless told otherwise.
DEFAULT_FORMATS = ("svg", "png", "vl.json")
MAX_ROWS = 5000
WIDTH, HEIGHT = 420, 260
#: Okabe-Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

RENDERER = "kmm"
#: The Vega mimetype JupyterLab 4's built-in renderer (@jupyterlab/vega5-extension) draws.
VEGA5_MIME = "application/vnd.vega.v5+json"
VEGA5_SCHEMA = "https://vega.github.io/schema/vega/v5.json"
#: Pixel scale of the PNG shown in notebooks (1: a chart adds about 100 kB to an executed
#: copy; JupyterLab draws the interactive form at the screen's own resolution).
DISPLAY_SCALE = 1.0

__all__ = ["alt", "THEME", "RENDERER", "save", "aggregate", "enable_theme", "enable_renderer",
           "mimebundle", "theme_config", "verdict_color", "series_colours", "fix_series_colours",
           "lines_with_hollow_points"]


def theme_config() -> dict[str, Any]:
    """The kmm theme as a Vega-Lite config: white background, no frame, readable axes."""
    font = "DejaVu Sans, Helvetica, Arial, sans-serif"
    return {
        "config": {
            "background": "white",
            "font": font,
            "padding": 8,
            "view": {"continuousWidth": WIDTH, "continuousHeight": HEIGHT, "stroke": None},
            "title": {"anchor": "start", "fontSize": 14, "fontWeight": "bold", "offset": 10,
                      "subtitleFontSize": 12, "subtitleColor": "#555555"},
            "axis": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal",
                     "gridColor": "#e6e6e6", "domainColor": "#888888", "tickColor": "#888888",
                     "labelLimit": 220},
            # numbers that would collide are thinned (greedy), never drawn over each other;
            # discrete axes keep every category and cut long names instead
            "axisQuantitative": {"labelOverlap": "greedy", "labelFlush": True},
            "axisDiscrete": {"labelLimit": 160},
            "legend": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal",
                       "orient": "right"},
            "header": {"labelFontSize": 12, "titleFontSize": 12},
            "range": {"category": PALETTE},
            "line": {"strokeWidth": 2},
            "point": {"size": 40, "filled": True},
            "bar": {"color": PALETTE[0]},
            "rule": {"color": "#555555"},
        }
    }


def enable_theme() -> None:
    """Register (once) and enable the kmm theme for this process."""
    if THEME not in alt.theme.names():
        alt.theme.register(THEME, enable=True)(theme_config)
    elif alt.theme.active != THEME:
        alt.theme.enable(THEME)


def _vl_version() -> str | None:
    """The Vega-Lite version vl-convert should compile altair's specs with (None: its default)."""
    import vl_convert as vlc

    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return version if version in vlc.get_vegalite_versions() else None


def render(spec: dict, fmt: str, scale: float = 2.0, stamp: dict | None = None) -> bytes:
    """``spec`` (Vega-Lite) as ``fmt`` (one of :data:`FORMATS`) bytes, no base URL allowed;
    ``stamp`` (:func:`kmm.suite.provenance.stamp`) is embedded where the format has room: a
    comment in SVG and HTML, a ``tEXt`` chunk in PNG, ``usermeta`` in the Vega-Lite JSON.
    The SVG and the PNG are made from one drawing (:func:`draw_svg`).

    Raises ValueError (from vl-convert) when the spec cannot be drawn.
    """
    import json

    import vl_convert as vlc

    note = json.dumps(stamp, sort_keys=True) if stamp else None
    if fmt == "vl.json":
        out = dict(spec)
        if stamp:
            out["usermeta"] = {**(spec.get("usermeta") or {}), "kmm_provenance": stamp}
        return (json.dumps(out, indent=1, sort_keys=True, default=str) + "\n").encode()
    if fmt == "html":
        html = vlc.vegalite_to_html(spec, vl_version=_vl_version(), bundle=True)
        return ((f"<!-- kmm provenance: {_comment_safe(note)} -->\n" if note else "")
                + html).encode()
    if fmt == "svg":
        svg = draw_svg(spec)
        if note:
            end = svg.index(">", svg.index("<svg")) + 1
            svg = f"{svg[:end]}<!-- kmm provenance: {_comment_safe(note)} -->{svg[end:]}"
        return svg.encode()
    png = vlc.svg_to_png(draw_svg(spec), scale=scale)   # = vegalite_to_png(spec), in a third
    return _png_with_text(png, "kmm.provenance", note) if note else png


def draw_svg(spec: dict) -> str:
    """``spec`` (Vega-Lite) drawn as SVG by vl-convert, no base URL allowed (no provenance:
    :func:`render` adds it). vl-convert draws a PNG by rasterising this SVG, so
    ``svg_to_png(draw_svg(spec))`` is byte for byte its ``vegalite_to_png(spec)``. The last
    few drawings are kept: a notebook shows a chart (:func:`mimebundle`) and saves it
    (:func:`save`), and the chart is drawn once.

    Raises ValueError (from vl-convert) when the spec cannot be drawn."""
    import json

    import vl_convert as vlc

    key = json.dumps(spec, sort_keys=True, default=str)
    svg = _DRAWN.pop(key, None)
    if svg is None:
        svg = vlc.vegalite_to_svg(spec, vl_version=_vl_version(), allowed_base_urls=[])
    _DRAWN[key] = svg   # most recent last
    while len(_DRAWN) > 8:
        _DRAWN.pop(next(iter(_DRAWN)))
    return svg


#: :func:`draw_svg`'s latest drawings, by spec
_DRAWN: dict[str, str] = {}


def _comment_safe(text: str) -> str:
    """``text`` that cannot end an XML/HTML comment (holds no ``--``)."""
    while "--" in text:
        text = text.replace("--", "- -")
    return text


def _png_with_text(png: bytes, key: str, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk (``key``, Latin-1 ``text``) after its IHDR chunk."""
    import zlib

    body = key.encode("latin-1") + b"\0" + text.encode("latin-1", "replace")
    chunk = (struct.pack(">I", len(body)) + b"tEXt" + body
             + struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF))
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, length, type, IHDR data, CRC
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def png_text(png: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG, by key."""
    out, i = {}, 8
    while i + 8 <= len(png):
        n, kind = struct.unpack(">I4s", png[i:i + 8])
        if kind == b"tEXt":
            key, _, value = png[i + 8:i + 8 + n].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        i += 12 + n
    return out


def to_vega(spec: dict) -> dict:
    """``spec`` (Vega-Lite 6, as altair 6 writes it) compiled to Vega by vl-convert, labelled
    for a Vega 5 renderer.

    The compiled spec is what vl-convert draws the PNG and SVG from, so JupyterLab's Vega 5
    draws the same chart, whatever Vega-Lite it bundles (JupyterLab 4 has Vega-Lite 5.6, which
    compiles some specs differently, e.g. stacking). Raises ValueError when it cannot compile.
    """
    import vl_convert as vlc

    vega = vlc.vegalite_to_vega(spec, vl_version=_vl_version())
    vega["$schema"] = VEGA5_SCHEMA
    return vega


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


def mimebundle(spec: dict, **embed_options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``kmm`` altair renderer: a chart's display data and metadata.

    - ``image/png``: drawn by vl-convert at :data:`DISPLAY_SCALE` (shown at scale 1); every
      frontend shows it, in trusted and untrusted notebooks, and executed copies keep it;
    - ``application/vnd.vega.v5+json``: the chart compiled to Vega (:func:`to_vega`), which
      JupyterLab draws itself, interactive (tooltips), in preference to the PNG;
      ``embed_options`` go to its vega-embed;
    - ``text/plain``: the chart's title.

    Nothing refers to a script or any other URL. A chart vl-convert cannot draw (one that
    reads a URL) shows as text saying why.
    """
    import vl_convert as vlc

    bundle: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    text = f"<kmm chart: {title}>" if title else "<kmm chart>"
    try:
        fixed = fix_series_colours(copy.deepcopy(spec))
        vega = to_vega(fixed)
        png = vlc.svg_to_png(draw_svg(fixed), scale=DISPLAY_SCALE)   # = vega_to_png(vega)
    except ValueError as e:
        text += f" (not drawn: {' '.join(str(e).split())[:200]})"
    else:
        bundle[VEGA5_MIME] = vega
        if embed_options:
            metadata[VEGA5_MIME] = {"embed_options": embed_options}
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
        width, height = _png_size(png)
        metadata["image/png"] = {"width": round(width / DISPLAY_SCALE),
                                 "height": round(height / DISPLAY_SCALE)}
    bundle["text/plain"] = text
    return bundle, metadata


def enable_renderer() -> None:
    """Register (once) and enable the ``kmm`` renderer (:func:`mimebundle`) for this process."""
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, mimebundle)
    if alt.renderers.active != RENDERER:
        alt.renderers.enable(RENDERER)


enable_theme()
enable_renderer()


def verdict_color(field: str = "verdict", title: str = "verdict") -> alt.Color:
    """Colour encoding for claim verdicts: the report's colours, best verdict first."""
    from .report import VERDICT_COLORS, VERDICT_ORDER

    return alt.Color(f"{field}:N", title=title,
                     scale=alt.Scale(domain=list(VERDICT_ORDER),
                                     range=[VERDICT_COLORS[v] for v in VERDICT_ORDER]),
                     sort=list(VERDICT_ORDER))


def lines_with_hollow_points(data, x, y, color, flag: str,
                             labels: tuple[str, str] = ("yes", "no"),
                             size: float = 70) -> alt.LayerChart:
    """Lines through ``data`` with a point at each row: filled where the boolean column
    ``flag`` is true, hollow where it is false (``labels`` name the two in the shape legend;
    e.g. a setting the kernel builds against a hypothetical one).

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [1, 2], "y": [3, 4], "g": ["a", "a"], "real": [True, False]})
    >>> len(lines_with_hollow_points(df, "x:Q", "y:Q", "g:N", "real").layer)
    3
    """
    yes, no = labels
    base = alt.Chart(data).encode(x=x, y=y, color=color).transform_calculate(
        kind=f"datum[{flag!r}] ? {yes!r} : {no!r}")
    shape = alt.Shape("kind:N", title=None, scale=alt.Scale(domain=[yes, no]))
    filled = base.mark_point(size=size, filled=True).encode(shape=shape).transform_filter(
        f"datum[{flag!r}]")
    hollow = base.mark_point(size=size, filled=False, strokeWidth=2).encode(
        shape=shape).transform_filter(f"!datum[{flag!r}]")
    return base.mark_line() + filled + hollow


@functools.lru_cache(maxsize=1)
def series_colours() -> dict[str, str]:
    """One colour per named series across every chart: each family of names that share a
    chart (one mechanism's policies, the granules, the workloads...) takes the palette in its
    own order, so a policy is drawn in the same colour wherever it appears.

    Names come from the mechanisms' own tables, so a renamed policy keeps a colour. Where two
    families share a name (``"none"``), the first family's colour wins.
    """
    from kmm.mech.asi.study import POLICY_NAMES as ASI
    from kmm.mech.bbml2.model import POLICY_NAMES as BBML2
    from kmm.mech.host.model import Scheme
    from kmm.mech.permvmalloc.model import Policy as Pv

    families = [
        list(BBML2.values()),
        list(ASI.values()),
        [p.name.lower() for p in Pv] + [p.name.lower().replace("_", " ") for p in Pv],
        [s.name.lower() for s in Scheme],
        ["4K", "16K", "64K"],
        ["database", "compute", "syscall"],
    ]
    out: dict[str, str] = {}
    for names in families:
        for i, name in enumerate(dict.fromkeys(names)):
            out.setdefault(name, PALETTE[i % len(PALETTE)])
    return out


def _colour_fields(spec: Any):
    """Every nominal ``color``/``fill``/``stroke`` encoding of a Vega-Lite spec (layers,
    facets and concatenations included) that sets no colour scale of its own."""
    if isinstance(spec, dict):
        enc = spec.get("encoding")
        if isinstance(enc, dict):
            for ch in ("color", "fill", "stroke"):
                e = enc.get(ch)
                if (isinstance(e, dict) and e.get("type") == "nominal"
                        and isinstance(e.get("field"), str)
                        and not {"range", "scheme"} & set(e.get("scale") or {})):
                    yield e
        for k, v in spec.items():
            if k not in ("encoding", "datasets", "data"):
                yield from _colour_fields(v)
    elif isinstance(spec, list):
        for x in spec:
            yield from _colour_fields(x)


def _field_values(spec: dict, field: str) -> list[Any]:
    """The distinct values of ``field`` in a spec's inline data, in order of appearance."""
    seen: dict = {}

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("datasets",) and isinstance(v, dict):
                    for rows in v.values():
                        walk_rows(rows)
                elif k == "values" and isinstance(v, list):
                    walk_rows(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    def walk_rows(rows):
        for r in rows if isinstance(rows, list) else ():
            if isinstance(r, dict) and field in r:
                seen.setdefault(r[field], None)
    walk(spec)
    return list(seen)


def fix_series_colours(spec: dict) -> dict:
    """``spec`` with every nominal colour encoding whose values are all named series
    (:func:`series_colours`) given an explicit domain and range, so each policy, granule or
    workload has one colour in every chart. Encodings with other values keep the theme's
    palette; the spec is changed in place and returned."""
    table = series_colours()
    for enc in _colour_fields(spec):
        values = [v for v in _field_values(spec, enc["field"]) if v is not None]
        if values and all(isinstance(v, str) and v in table for v in values):
            domain = sorted(values, key=lambda v: list(table).index(v))
            scale = dict(enc.get("scale") or {})
            scale.update(domain=domain, range=[table[v] for v in domain])
            enc["scale"] = scale
    return spec


def _data_rows(spec: Any) -> int:
    """The largest number of inline data rows in a Vega-Lite spec (datasets or values)."""
    best = 0
    if isinstance(spec, dict):
        for key, v in spec.items():
            if key == "datasets" and isinstance(v, dict):
                best = max([best, *(len(x) for x in v.values() if isinstance(x, list))])
            elif key == "values" and isinstance(v, list):
                best = max(best, len(v))
            else:
                best = max(best, _data_rows(v))
    elif isinstance(spec, list):
        best = max([best, *(_data_rows(x) for x in spec)])
    return best


def chart_dir(scenario: str) -> Path:
    """``<data>/charts/<scenario>``: charts of a small run never replace published ones."""
    from .claims import results_dir

    return results_dir() / "charts" / scenario


def save(chart: alt.TopLevelMixin, stem: str, out_dir: Path | str | None = None, *,
         scenario: str | None = None, formats: Sequence[str] = DEFAULT_FORMATS,
         scale: float = 2.0) -> dict[str, Path]:
    """Export ``chart`` as ``<stem>.svg``, ``<stem>.png`` and ``<stem>.vl.json`` (by default)
    and return their paths; each file carries its provenance (:mod:`kmm.suite.provenance`).

    Parameters
    ----------
    chart : an altair chart (its data inline, at most 5000 rows: aggregate in polars first)
    stem : file name without extension; the report anchors the chart by it
    out_dir : folder to write into; default ``<data>/charts/<scenario>``
    scenario : the notebook's ``scenario`` parameter (required when ``out_dir`` is not given)
    formats : any of :data:`FORMATS` (``"html"``: a standalone offline page)
    scale : PNG pixel scale

    Each file is rendered completely in memory, then written to a new temporary file and
    renamed (never through a link), so an existing chart is replaced only by a complete new one.
    """
    if not isinstance(stem, str) or not _STEM.match(stem):
        raise ConfigError(f"chart stem must be a plain file name, got {stem!r}", "charts.save")
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"formats must be among {FORMATS}, got {list(formats)}", "charts.save")
    if out_dir is None:
        if not scenario:
            raise ConfigError("give the notebook's scenario (or an out_dir)", "charts.save")
        out = chart_dir(scenario)
        root = out.parent.parent  # <data>: folders below it are kmm's and never links
    else:
        out = root = Path(out_dir)
    enable_theme()
    try:
        spec = chart.to_dict()
    except alt.MaxRowsError:
        spec = None
    rows = _data_rows(spec) if spec is not None else MAX_ROWS + 1
    if rows > MAX_ROWS:
        raise KmmError(f"chart data has more than {MAX_ROWS} rows: aggregate it in polars "
                       "first (charts.aggregate)", f"charts.save {stem}")
    fix_series_colours(spec)
    from . import provenance

    stamp = {**provenance.stamp(), "chart": stem, "scenario": scenario}
    rendered: dict[str, bytes] = {}
    try:
        for fmt in formats:
            rendered[fmt] = render(spec, fmt, scale, stamp)
    except ValueError as e:
        raise KmmError(f"vl-convert could not render the chart: {' '.join(str(e).split())[:300]}",
                       f"charts.save {stem}") from None
    from . import safefs

    paths = {}
    for fmt, data in rendered.items():
        paths[fmt] = safefs.write_bytes(out / f"{stem}.{fmt}", data, root=root)
    return paths


def aggregate(df: pl.DataFrame, by: Sequence[str], value: str = "value",
              stats: Sequence[str] = ("mean", "min", "max", "count")) -> pl.DataFrame:
    """Group a tidy frame by ``by`` and summarise ``value`` (one row per group, sorted).

    ``stats`` are polars expression names on the value column (``mean``, ``median``,
    ``min``, ``max``, ``std``, ``sum``, ``count``); each becomes a column of that name.
    """
    import polars as pl

    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        raise ConfigError(f"frame has no column {missing[0]!r} (columns: {', '.join(df.columns)})",
                          "charts.aggregate")
    allowed = {"mean", "median", "min", "max", "std", "sum", "count"}
    bad = [s for s in stats if s not in allowed]
    if bad:
        raise ConfigError(f"unknown statistic {bad[0]!r} (use {', '.join(sorted(allowed))})",
                          "charts.aggregate")
    exprs = [getattr(pl.col(value), s)().alias(s) for s in stats]
    return df.group_by(list(by), maintain_order=False).agg(exprs).sort(list(by))
