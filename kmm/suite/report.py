"""The claims report: one self-contained HTML page and ``claims.json``, plus the overview's views.

The report is built from what is under ``<data>`` and nothing else:

- ``claims/<scenario>/<ID>.json``: claim records (:mod:`kmm.suite.claims`); verdicts are
  computed by :mod:`kmm.suite.registry` when the table is read;
- ``charts/published/<stem>.svg``: charts of the published runs, inlined as data URIs (no
  scripts, no network, no clashes between the SVGs' internal ids);
- ``provenance.json``: written by ``kmm reproduce``: which notebook recorded which claims and
  charts, when, and whether its latest run failed;
- ``params/<stem>.yaml`` of the project: each parameter's unit and its source or ``assumed``
  range, shown beside the values a claim was computed with.

A claim whose notebook's latest run failed keeps the verdict of its last successful run, and
the report says so on its row.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import KmmError, warn
from . import registry

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

PUBLISHED = "published"
#: The order verdicts are listed in, best first; ``small run`` values carry no verdict.
VERDICT_ORDER = (registry.REPRODUCED, registry.CONDITIONAL, registry.NOT_REPRODUCED,
                 registry.SMALL_RUN, registry.NOT_EVALUATED)
#: Okabe-Ito colours, as in :mod:`kmm.suite.charts`.
VERDICT_COLORS = {registry.REPRODUCED: "#009E73", registry.CONDITIONAL: "#E69F00",
                  registry.NOT_REPRODUCED: "#D55E00", registry.SMALL_RUN: "#56B4E9",
                  registry.NOT_EVALUATED: "#999999"}
PROVENANCE = "provenance.json"
#: Mechanisms in the order the claim registry lists them.
MECHANISMS = tuple(dict.fromkeys(c.mechanism for c in registry.CLAIMS.values()))


# ---- reading what is under <data> -----------------------------------------------------------
def _data(root: Path | None) -> Path:
    """The folder to read: the current generation of ``root`` (default: the data folder)."""
    from .claims import results_dir

    return results_dir(root)


def load_provenance(data: Path) -> dict[str, Any]:
    """``<data>/provenance.json``: empty if absent; if unreadable or malformed, empty with a
    one-line warning naming the file."""
    from . import safefs

    path = data / PROVENANCE
    empty: dict[str, Any] = {"notebooks": {}}
    try:
        prov = json.loads(safefs.read_bytes(path, limit=64 << 20))
    except FileNotFoundError:
        return empty
    except KmmError as e:
        warn(f"{e.line()}; provenance ignored")
        return empty
    except (ValueError, RecursionError) as e:
        warn(f"{path}: unreadable provenance ({' '.join(str(e).split())[:120]}); ignored")
        return empty
    nbs = prov.get("notebooks") if isinstance(prov, dict) else None
    if not isinstance(nbs, dict) or not all(isinstance(v, dict) for v in nbs.values()):
        warn(f"{path}: not kmm's provenance (notebooks by name); ignored")
        return empty
    return prov


def _claim_notebooks(prov: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for stem, nb in prov.get("notebooks", {}).items():
        for cid in nb.get("claims", []):
            out[cid] = stem
    return out


def _mtime_iso(path: Path) -> str | None:
    try:
        t = path.stat().st_mtime
    except OSError:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def rows(root: Path | None = None) -> list[dict[str, Any]]:
    """The claims table (:func:`kmm.suite.claims.table`) with each record's provenance:
    ``notebook``, ``recorded_at`` and ``stale`` (the notebook's latest run failed)."""
    from . import claims

    data = _data(root)
    prov = load_provenance(data)
    by_claim = _claim_notebooks(prov)
    out = []
    for r in claims.table(data):
        stem = by_claim.get(r["id"]) if r["scenario"] == PUBLISHED else None
        nb = prov["notebooks"].get(stem, {}) if stem else {}
        scen = r["scenario"]
        out.append({**r,
                    "notebook": stem,
                    "recorded_at": _mtime_iso(data / "claims" / scen / f"{r['id']}.json") if scen else None,
                    "stale": bool(nb) and nb.get("status") != "ok"})
    return out


# ---- formatting -----------------------------------------------------------------------------
def _num(v: float, unit: str = "") -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if unit in ("fraction", "%"):
        return f"{v * 100:+.1f} %"
    if unit == "bytes" or unit.endswith("_bytes"):
        for div, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= div:
                return f"{v / div:.4g} {name}"
        return f"{v:g} B"
    text = f"{v:.4g}" if isinstance(v, float) else f"{v:d}"
    return f"{text} {unit}".strip()


def format_value(v: Any, unit: str = "", limit: int | None = 160) -> str:
    """A recorded value as text: a number with its unit, or ``key=value`` evidence; cut to
    ``limit`` characters (lists to 8 items), or whole with ``limit=None`` (for exports)."""
    if v is None:
        return "-"
    whole = limit is None
    if isinstance(v, Mapping):
        text = "; ".join(f"{k}={format_value(x, limit=None if whole else 60)}"
                         for k, x in v.items())
    elif isinstance(v, (list, tuple)):
        items = v if whole else v[:8]
        shown = ", ".join(format_value(x, limit=None if whole else 20) for x in items)
        text = f"[{shown}{', ...' if len(v) > len(items) else ''}]"
    else:
        text = _num(v, unit)
    return text if whole or len(text) <= limit else text[: limit - 3] + "..."


# ---- views for the overview notebook --------------------------------------------------------
class NotebookIndex:
    """The notebooks of the suite with their params files and claims; renders as a table."""

    def __init__(self, entries: list[dict[str, Any]]):
        self.entries = entries

    def __repr__(self) -> str:
        return "\n".join(f"{e['stem']:<14} {e['title']}  [{', '.join(e['claims']) or '-'}]"
                         for e in self.entries) or "(no notebooks)"

    def _repr_html_(self) -> str:
        head = "<tr><th>notebook</th><th>question</th><th>params</th><th>claims</th></tr>"
        body = "".join(
            f"<tr><td><a href=\"{html.escape(e['file'])}\">{html.escape(e['stem'])}</a></td>"
            f"<td>{html.escape(e['title'])}</td>"
            f"<td>{html.escape(e['params'] or 'none')}</td>"
            f"<td>{html.escape(', '.join(e['claims']) or '-')}</td></tr>"
            for e in self.entries)
        return f"<table>{head}{body}</table>"


def _first_heading(nb_path: Path) -> str | None:
    try:
        nb = json.loads(nb_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            for line in src.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return None


def notebook_index(project: Path | None = None, root: Path | None = None) -> NotebookIndex:
    """Every notebook in ``notebooks/``: title (params file, else first heading), params file,
    and the claims it recorded in the last ``kmm reproduce`` (else the claims of the mechanism
    of the same name)."""
    from .params import load, project_root

    proj = project or project_root()
    prov = load_provenance(_data(root))
    entries = []
    for nb in sorted((proj / "notebooks").glob("*.ipynb")):
        pfile = proj / "params" / f"{nb.stem}.yaml"
        title = None
        if pfile.is_file():
            try:
                title = load(pfile).title
            except KmmError:
                title = None
        claims_ = prov["notebooks"].get(nb.stem, {}).get("claims") or \
            [cid for cid, c in registry.CLAIMS.items() if c.mechanism == nb.stem]
        entries.append({"stem": nb.stem, "file": nb.name,
                        "title": title or _first_heading(nb) or nb.stem,
                        "params": f"params/{pfile.name}" if pfile.is_file() else None,
                        "claims": sorted(claims_, key=_claim_key)})
    return NotebookIndex(entries)


def _claim_key(cid: str) -> tuple[str, int]:
    return (cid[0], int(cid[1:]) if cid[1:].isdigit() else 0)



def _cited_html(src: Mapping[str, str] | None) -> str:
    """Who said a claim and where, under its statement: author, subject, list, date, link."""
    if not src:
        return ""
    e = html.escape
    if src.get("said_by") == "not identified":
        who = f"author not identified, in the thread started by {e(src['author'])}"
    elif src.get("said_by"):
        who = f"{e(src['said_by'])}, in {e(src['author'])}'s message"
    else:
        who = e(src["author"])
    note = f" ({e(src['note'])})" if src.get("note") else ""
    return (f'<br><span class="muted">{who}, <a href="{e(src["link"])}">'
            f"{e(src['subject'])}</a>, {e(src['list'])}, {e(src['date'])}{note}</span>")

def decided_text(decided: Sequence[str] | None) -> str:
    """"Decided by" as shown: the parameters, ``none`` (no one-parameter swing flips the
    verdict) or ``not checked`` (the record has no one-at-a-time swings)."""
    if decided is None:
        return "not checked"
    return ", ".join(decided) if decided else "none"


def basis_text(r: Mapping[str, Any]) -> str:
    """The basis as shown: ``measured``, or ``structural: <identity>`` / ``not-modelled:
    <missing mechanism>``."""
    kind = r.get("basis") or "-"
    return f"{kind}: {r['rests_on']}" if r.get("rests_on") else kind


def converged_text(r: Mapping[str, Any]) -> str:
    """Convergence as shown (:func:`kmm.suite.registry.convergence`): ``converged`` or ``not
    converged`` with the seeds and lengths it was judged on and the values' range, or
    ``convergence not checked`` (null) with what was missing."""
    c, spread = r.get("converged"), r.get("spread") or {}
    if spread.get("deterministic"):
        return "converged: the value depends on no seed and no stream length"
    reps = spread.get("replicates") or []
    if not reps:
        return "convergence not checked"
    unit = r.get("unit", "")
    full = spread.get("length")
    seeds = sorted({x["seed"] for x in reps if x["length"] == full} | (
        {spread["seed"]} if spread.get("seed") is not None else set()))
    halves = sorted({x["length"] for x in reps if x["length"] != full})
    what = (f"seeds {', '.join(map(str, seeds))} at length {full}"
            + (f", and length {', '.join(map(str, halves))}" if halves else ""))
    if "min" in spread:
        what += (f"; values {format_value(spread['min'], unit)} to "
                 f"{format_value(spread['max'], unit)}")
    if c is None:
        return f"convergence not checked (needs 3 seeds and a half-length run; had {what})"
    if c:
        return f"converged ({what})"
    off = [f"seed {x['seed']} at length {x['length']}" for x in reps
           if x["in_band"] != spread.get("in_band")]
    return f"not converged ({what}; across the band edge: {', '.join(off) or '-'})"


def claim_fields(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every field of a claims-table row as (label, full text, nothing cut): the report's
    cards and ``kmm claims --format text|markdown`` show these."""
    from .provenance import as_text

    share = r.get("share_in_band")
    fields = [("statement", r["statement"]), ("verdict", r["verdict"]),
              ("value", format_value(r["value"], r.get("unit", ""), limit=None)),
              ("band", r["band"]),
              ("share of the sweep in band", "-" if share is None else f"{share:.0%}"),
              ("decided by", decided_text(r.get("decided_by"))), ("basis", basis_text(r)),
              ("converged", converged_text(r)), ("why", r.get("explanation") or "-"),
              ("scenario", r.get("scenario") or "-"), ("said by", r.get("cited") or "-")]
    if r.get("provenance"):
        fields.append(("made by", as_text(r["provenance"])))
    return fields


#: The fields of :func:`claim_fields` a report card shows in its table (the statement, the
#: verdict and the citation are in its heading).
CARD_FIELDS = ("value", "band", "share of the sweep in band", "decided by", "basis",
               "converged", "why")


def claims_frame(mechanisms: Sequence[str] = (), root: Path | None = None) -> pl.DataFrame:
    """The claims table as a polars frame (values as text), optionally for some mechanisms."""
    import polars as pl

    table = [r for r in rows(root) if not mechanisms or r["mechanism"] in mechanisms]
    return pl.DataFrame({
        "id": [r["id"] for r in table],
        "mechanism": [r["mechanism"] for r in table],
        "verdict": [r["verdict"] for r in table],
        "share_in_band": [r["share_in_band"] for r in table],
        "decided_by": [decided_text(r.get("decided_by")) for r in table],
        "basis": [basis_text(r) for r in table],
        "converged": [r.get("converged") for r in table],
        "value": [format_value(r["value"], r["unit"]) for r in table],
        "band": [r["band"] for r in table],
        "statement": [r["statement"] for r in table],
        "explanation": [r["explanation"] for r in table],
        "scenario": [r["scenario"] for r in table],
        "cited": [r.get("cited") for r in table],
    }, schema={"id": pl.Utf8, "mechanism": pl.Utf8, "verdict": pl.Utf8,
               "share_in_band": pl.Float64, "decided_by": pl.Utf8, "basis": pl.Utf8,
               "converged": pl.Boolean, "value": pl.Utf8,
               "band": pl.Utf8,
               "statement": pl.Utf8, "explanation": pl.Utf8, "scenario": pl.Utf8,
               "cited": pl.Utf8})


def verdict_counts(table: pl.DataFrame, scenario: str) -> pl.DataFrame:
    """Claims per (mechanism, verdict) as a tidy frame (:mod:`kmm.results`), zeros included."""
    from .. import results

    counts = Counter(zip(table["mechanism"].to_list(), table["verdict"].to_list()))
    present = set(table["mechanism"].to_list())
    mechs = [m for m in MECHANISMS if m in present]
    out = []
    for m in mechs:
        for v in VERDICT_ORDER:
            out += results.rows_for(scenario, {"mechanism": m, "verdict": v}, 0,
                                    {"claims": (counts.get((m, v), 0), "count")})
    return results.frame(out)


# ---- the HTML report ------------------------------------------------------------------------
_CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border-bottom:1px solid #e6e6e6;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f6f6f6}
.v{display:inline-block;padding:.1em .5em;border-radius:.6em;color:#fff;font-weight:bold;
white-space:nowrap}
.warn{color:#a04000}.muted{color:#777}.num{white-space:nowrap}
figure{margin:1.5em 0;border:1px solid #eee;padding:.5em}figure img{max-width:100%}
figcaption{font-size:.9em;color:#555}
.counts span{margin-right:1.2em}
code{background:#f3f3f3;padding:0 .2em}
nav.toc{background:#f6f6f6;padding:.5em .8em;border-radius:.3em}
.card{border:1px solid #e3e3e3;border-radius:.4em;padding:.2em 1em .6em;margin:1em 0}
.card h4{margin:.6em 0 .3em;font-size:1.05em}.card .said{margin:.2em 0;font-size:.9em}
table.kv th{width:14em;background:none;font-weight:normal;color:#555}
figure.sweep{border:none;padding:0;margin:.5em 0}
details{margin:.4em 0}summary{cursor:pointer}
"""


def _has_params_block(r: Mapping[str, Any]) -> bool:
    return r.get("scenario") is not None


def _seconds(s: Any) -> str:
    return f"{s:.0f}" if isinstance(s, (int, float)) else "-"


def _badge(verdict: str) -> str:
    color = VERDICT_COLORS.get(verdict, "#999999")
    return f'<span class="v" style="background:{color}">{html.escape(verdict)}</span>'


def _params_specs(project: Path) -> dict[str, Any]:
    """``stem -> ParamsFile`` for every params file that loads (others are skipped here;
    ``kmm reproduce`` reports them)."""
    from .params import load

    out = {}
    for p in sorted((project / "params").glob("*.y*ml")):
        try:
            out[p.stem] = load(p)
        except KmmError:
            continue
    return out


def _param_rows(params: Mapping[str, Any], pf: Any) -> str:
    specs = pf.specs if pf is not None else {}
    out = []
    for name, value in params.items():
        spec = specs.get(name)
        if spec is None:
            mark = '<span class="muted">notebook default (not in params/)</span>' \
                if pf is not None and name in pf.defaults() else '<span class="muted">-</span>'
            unit = ""
        else:
            unit = spec.unit
            if spec.assumed is not None:
                mark = (f'<span class="warn">assumed</span>, plausible range '
                        f'[{format_value(spec.assumed[0])}, {format_value(spec.assumed[1])}]')
                if spec.source:
                    mark += f"; {html.escape(spec.source)}"
            elif spec.source:
                mark = f"source: {html.escape(spec.source)}"
            else:
                mark = '<span class="muted">declared in params/ (not a cost)</span>'
            if value != spec.value:
                mark += f' <span class="muted">(published value: {html.escape(format_value(spec.value))})</span>'
        out.append(f"<tr><td><code>{html.escape(str(name))}</code></td>"
                   f"<td class=num>{html.escape(format_value(value, limit=120))}</td>"
                   f"<td>{html.escape(unit)}</td><td>{mark}</td></tr>")
    return "".join(out) or '<tr><td colspan=4 class="muted">no parameters recorded</td></tr>'


def _svg_img(path: Path, alt_text: str) -> str:
    """The chart as an inline image; a chart that is a link or unreadable is left out (one
    warning line), so the report never inlines a file from elsewhere."""
    from . import safefs

    try:
        data = base64.b64encode(safefs.read_bytes(path, limit=64 << 20)).decode()
    except (OSError, KmmError) as e:
        warn(f"{e.line() if isinstance(e, KmmError) else f'{path}: {e}'}; chart left out")
        return '<span class="warn">chart unreadable</span>'
    return f'<img alt="{html.escape(alt_text)}" src="data:image/svg+xml;base64,{data}">'


def _summary_svg(table: Sequence[Mapping[str, Any]]) -> str:
    """Claims per mechanism by verdict as an inline SVG bar chart (no script, no link)."""
    by_mech: dict[str, Counter] = {}
    for r in table:
        by_mech.setdefault(r["mechanism"], Counter())[r["verdict"]] += 1
    mechs = [m for m in MECHANISMS if m in by_mech] + sorted(set(by_mech) - set(MECHANISMS))
    if not mechs:
        return ""
    most = max(sum(c.values()) for c in by_mech.values())
    label_w, bar_w, row_h, top = 120, 460, 26, 8
    unit = bar_w / max(most, 1)
    legend_y = top + row_h * len(mechs) + 14
    height = legend_y + 22
    legend_x, x = [], float(label_w)
    for v in VERDICT_ORDER:  # a legend entry: swatch, gap, text at about 7.5 px a character
        legend_x.append(x)
        x += 15 + 7.5 * len(v) + 16
    width = max(label_w + bar_w + 40, x)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
           f'height="{height}" role="img" aria-label="claims per mechanism by verdict" '
           'font-family="DejaVu Sans,Helvetica,Arial,sans-serif" font-size="12">']
    for i, m in enumerate(mechs):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
                   f'{html.escape(m)}</text>')
        x = float(label_w)
        for v in VERDICT_ORDER:
            n = by_mech[m].get(v, 0)
            if not n:
                continue
            w = n * unit
            out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                       f'fill="{VERDICT_COLORS[v]}"><title>{html.escape(m)}: {n} '
                       f'{html.escape(v)}</title></rect>')
            if w >= 14:
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + 17}" text-anchor="middle" '
                           f'fill="#fff" font-weight="bold">{n}</text>')
            x += w
    for x, v in zip(legend_x, VERDICT_ORDER):
        out.append(f'<rect x="{x:.0f}" y="{legend_y}" width="11" height="11" '
                   f'fill="{VERDICT_COLORS[v]}"/><text x="{x + 15:.0f}" y="{legend_y + 10}">'
                   f'{html.escape(v)}</text>')
    out.append("</svg>")
    return "".join(out)


def _numbers(sweep: Any) -> list[float]:
    out = []
    for pt in sweep or []:
        v = pt.get("value") if isinstance(pt, Mapping) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def _sweep_svg(r: Mapping[str, Any]) -> str:
    """A claim's sweep of ``assumed`` parameters drawn against its band: the band shaded,
    each sweep point a grey dot, the published value a black diamond. Empty when the claim's
    band is not an interval or its values are not numbers."""
    band = registry.band_interval(r["id"])
    value = r.get("value")
    if band is None or not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not math.isfinite(value):
        return ""
    pts = _numbers(r.get("sweep"))
    lo, hi = band
    finite = [x for x in (lo, hi) if math.isfinite(x)]
    xs = [float(value), *pts, *finite]
    a, b = min(xs), max(xs)
    pad = (b - a) * 0.08 or abs(a) * 0.1 or 1.0
    a, b = a - pad, b + pad
    w, left, right = 520, 10, 10

    def x(v: float) -> float:
        return left + (min(max(v, a), b) - a) / (b - a) * (w - left - right)

    unit = r.get("unit", "")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="58" role="img" '
           f'aria-label="sweep of {html.escape(r["id"])} against its band" '
           'font-family="DejaVu Sans,Helvetica,Arial,sans-serif" font-size="11">',
           f'<line x1="{left}" y1="30" x2="{w - right}" y2="30" stroke="#999"/>']
    x0, x1 = x(lo if math.isfinite(lo) else a), x(hi if math.isfinite(hi) else b)
    out.append(f'<rect x="{x0:.1f}" y="18" width="{max(x1 - x0, 1.5):.1f}" height="24" '
               'fill="#009E73" fill-opacity="0.18"><title>band</title></rect>')
    for i, v in enumerate(pts):
        out.append(f'<circle cx="{x(v):.1f}" cy="{24 + (i % 3) * 6}" r="3" fill="#777" '
                   f'fill-opacity="0.7"><title>{html.escape(format_value(v, unit))}</title>'
                   "</circle>")
    px = x(float(value))
    out.append(f'<path d="M{px:.1f},22 l6,8 l-6,8 l-6,-8 z" fill="#000"><title>published: '
               f'{html.escape(format_value(value, unit))}</title></path>')
    # labels: the axis ends and the band's edges, kept apart so none overlap
    labels = sorted({(x(v), format_value(v, unit)) for v in (a + pad, b - pad, *finite)})
    last = -1e9
    for lx, text in labels:
        if lx - last < 7 * len(text):
            continue
        anchor = "start" if lx < 40 else "end" if lx > w - 40 else "middle"
        out.append(f'<text x="{lx:.1f}" y="54" text-anchor="{anchor}" fill="#555">'
                   f'{html.escape(text)}</text>')
        last = lx
    out.append("</svg>")
    return "".join(out)


def _chart_caption(chart_dir: Path, stem: str) -> str:
    """What a chart plots: its title and description from ``<stem>.vl.json`` (the stem when
    the chart has none)."""
    from . import safefs

    path = chart_dir / f"{stem}.vl.json"
    try:
        spec = json.loads(safefs.read_bytes(path, limit=64 << 20))
    except (OSError, KmmError, ValueError):
        return stem
    if not isinstance(spec, dict):
        return stem
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if isinstance(title, list):
        title = " ".join(str(t) for t in title)
    parts = [str(t) for t in (title, spec.get("description")) if isinstance(t, str) and t]
    return ": ".join(parts) if parts else stem


def _notebook_link(data: Path, stem: str) -> str:
    """Links to a notebook's executed copy: its HTML rendering where there is one, and the
    ``.ipynb``."""
    links = []
    if (data / "notebooks" / f"{stem}.html").is_file():
        links.append(f'<a href="notebooks/{html.escape(stem)}.html">{html.escape(stem)}</a>')
    if (data / "notebooks" / f"{stem}.ipynb").is_file():
        links.append(f'<a href="notebooks/{html.escape(stem)}.ipynb">'
                     f'{"ipynb" if links else html.escape(stem)}</a>')
    return " · ".join(links) or html.escape(stem)


def _param_groups(table: Sequence[Mapping[str, Any]], pfs: Mapping[str, Any]
                  ) -> list[tuple[str, str | None, list[str], Mapping[str, Any]]]:
    """Claims that share one parameter set: ``(anchor, notebook, claim ids, parameters)``,
    so each set is printed once."""
    groups: dict[tuple[str, str], list] = {}
    for r in table:
        if not _has_params_block(r):
            continue
        stem = r.get("notebook") or (r["mechanism"] if r["mechanism"] in pfs else None)
        key = (stem or r["mechanism"], json.dumps(r.get("parameters") or {}, sort_keys=True,
                                                  default=str))
        groups.setdefault(key, [stem, [], r.get("parameters") or {}])[1].append(r["id"])
    out, seen = [], Counter()
    for (name, _), (stem, ids, params) in groups.items():
        seen[name] += 1
        anchor = f"params-{name}" + (f"-{seen[name]}" if seen[name] > 1 else "")
        out.append((anchor, stem, ids, params))
    return out


def _flip_rows(r: Mapping[str, Any], pf: Any) -> str:
    """The parameters that alone flip the claim's verdict, with their sources or ranges."""
    decided = r.get("decided_by")
    if decided is None:
        return ('<p class="muted">Which parameters can flip it: not checked (the record has no '
                "one-at-a-time swings).</p>")
    if not decided:
        return ('<p class="muted">No single <span class=warn>assumed</span> parameter, swung '
                "alone over its plausible range, flips this verdict.</p>")
    params = r.get("parameters") or {}
    shown = {k: params.get(k, "(swept, not a parameter of the notebook)") for k in decided}
    return ("<p>Parameters that alone flip the verdict:</p><table><tr><th>parameter</th>"
            "<th>value</th><th>unit</th><th>source</th></tr>"
            f"{_param_rows(shown, pf)}</table>")


def _card(r: Mapping[str, Any], pf: Any, params_anchor: str | None, charts_avail,
          data: Path) -> str:
    cid = html.escape(r["id"])
    note = ""
    if r.get("stale"):
        note = (f'<p class="warn">Stale: the latest run of {html.escape(r["notebook"])} failed; '
                f"the value is from the run recorded {html.escape(r.get('recorded_at') or '?')}.</p>")
    elif r["verdict"] == registry.SMALL_RUN:
        note = (f'<p class="muted">From a {html.escape(str(r["scenario"]))} run: no verdict '
                "(only the published scenario is judged).</p>")
    links = []
    if r.get("chart"):
        links.append(f'<a href="#chart-{html.escape(r["chart"])}">chart</a>'
                     if r["chart"] in charts_avail
                     else f'<span class="warn">chart {html.escape(r["chart"])} missing</span>')
    if params_anchor:
        links.append(f'<a href="#{html.escape(params_anchor)}">all parameters</a>')
    if r.get("notebook"):
        links.append("notebook " + _notebook_link(data, r["notebook"]))
    sweep = _sweep_svg(r)
    kv = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                 for k, v in claim_fields(r) if k in CARD_FIELDS)
    return "".join([
        f'<section class="card" id="claim-{cid}"><h4>{cid} {_badge(r["verdict"])} '
        f'{html.escape(r["statement"])}</h4>',
        f'<p class="said">{_cited_html(r.get("source"))}</p>' if r.get("source") else "",
        note, f'<table class="kv">{kv}</table>',
        (f'<figure class="sweep">{sweep}<figcaption>The published value (diamond) and each '
         "point of the joint sweep of assumed parameters (dots) against the band (shaded)."
         "</figcaption></figure>") if sweep else "",
        _flip_rows(r, pf) if r["verdict"] in registry.VERDICTS else "",
        f'<p class="links">{" · ".join(links)}</p>' if links else "",
        "</section>"])


def build_html(table: list[dict[str, Any]], data: Path, project: Path,
               run: Mapping[str, Any] | None = None) -> str:
    """The report page (a string); ``run`` describes the ``kmm reproduce`` that made it.

    It leads with the verdicts (a figure and a one-line-per-claim table) and a table of
    contents, then one card per claim (who said it where, the value, the sweep drawn against
    the band, how the verdict was reached and the parameters that alone can flip it), the
    notebooks, every chart with a caption saying what it plots, and each parameter set once,
    folded."""
    from .provenance import as_text, stamp

    prov = load_provenance(data)
    pfs = _params_specs(project)
    chart_dir = data / "charts" / PUBLISHED
    charts_avail = {p.stem: p for p in sorted(chart_dir.glob("*.svg"))} if chart_dir.is_dir() else {}
    counts = Counter(r["verdict"] for r in table)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    groups = _param_groups(table, pfs)
    anchor_of = {cid: g[0] for g in groups for cid in g[2]}
    mechs = list(dict.fromkeys(r["mechanism"] for r in table))
    h: list[str] = []
    h.append(f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<title>kmm claims report</title><style>{_CSS}</style></head><body>")
    h.append("<h1>kmm: which published claims the model reproduces</h1>")
    gen = f", generation {html.escape(str(prov['generation']))}" if prov.get("generation") else ""
    h.append(f'<p class="muted">{html.escape(as_text(stamp()))}{gen}, written {now}. Verdicts '
             "are computed from the values recorded by each notebook's published scenario "
             "(params/); values from small runs are shown without a verdict.</p>")
    h.append('<nav class="toc"><b>Contents</b>: <a href="#summary">verdicts</a> · '
             '<a href="#claims">claims</a> ('
             + ", ".join(f'<a href="#mechanism-{html.escape(m)}">{html.escape(m)}</a>'
                         for m in mechs)
             + ') · <a href="#notebooks">notebooks</a> · <a href="#charts">charts</a> · '
             '<a href="#parameters">parameters</a></nav>')

    # the verdicts first: a figure and one line per claim
    h.append('<h2 id="summary">Verdicts</h2>')
    h.append('<p class="counts">' + "".join(
        f"<span>{_badge(v)} {counts.get(v, 0)}</span>" for v in VERDICT_ORDER if counts.get(v)) + "</p>")
    svg = _summary_svg(table)
    if svg:
        h.append(f'<figure id="verdict-summary">{svg}<figcaption>Claims per mechanism, '
                 "coloured by verdict.</figcaption></figure>")
    h.append("<table><tr><th>id</th><th>verdict</th><th>value</th><th>band / test</th>"
             "<th>decided by</th></tr>")
    for r in table:
        cid = html.escape(r["id"])
        h.append(f'<tr><td><a href="#claim-{cid}">{cid}</a></td><td>{_badge(r["verdict"])}</td>'
                 f"<td>{html.escape(format_value(r['value'], r.get('unit', ''), limit=60))}</td>"
                 f"<td>{html.escape(r['band'])}</td>"
                 f"<td>{html.escape(decided_text(r.get('decided_by')))}</td></tr>")
    h.append("</table>")

    # one card per claim
    h.append('<h2 id="claims">Claims</h2>')
    for m in mechs:
        h.append(f'<h3 id="mechanism-{html.escape(m)}">{html.escape(m)}</h3>')
        for r in (r for r in table if r["mechanism"] == m):
            stem = r.get("notebook") or (r["mechanism"] if r["mechanism"] in pfs else None)
            h.append(_card(r, pfs.get(stem) if stem else None, anchor_of.get(r["id"]),
                           charts_avail, data))

    # notebooks
    h.append('<h2 id="notebooks">Notebooks</h2><table><tr><th>notebook</th><th>title</th>'
             "<th>status</th><th>finished</th><th>seconds</th><th>claims</th></tr>")
    failed_now = {f["stem"]: f["error"] for f in (run or {}).get("failed", [])}
    stems = sorted(set(prov["notebooks"]) | set(failed_now))
    for stem in stems:
        nb = prov["notebooks"].get(stem, {})
        status = nb.get("status", "failed" if stem in failed_now else "-")
        err = nb.get("error") or failed_now.get(stem)
        link = _notebook_link(data, stem)
        if status != "ok" and (data / "notebooks" / f"{stem}.failed.ipynb").is_file():
            link += f' (<a href="notebooks/{html.escape(stem)}.failed.ipynb">failed run</a>)'
        st = (html.escape(status) if status == "ok"
              else f'<span class="warn">{html.escape(status)}: {html.escape(err or "")}</span>')
        h.append(f"<tr><td>{link}</td><td>{html.escape(nb.get('title', ''))}</td><td>{st}</td>"
                 f"<td class=num>{html.escape(nb.get('finished') or '-')}</td>"
                 f"<td class=num>{_seconds(nb.get('seconds'))}</td>"
                 f"<td>{html.escape(', '.join(nb.get('claims', [])) or '-')}</td></tr>")
    if not stems:
        h.append('<tr><td colspan=6 class="muted">no notebook has been run by kmm reproduce</td></tr>')
    h.append("</table>")

    # charts, grouped by the notebook that drew them
    h.append('<h2 id="charts">Charts</h2>')
    shown: set[str] = set()
    chart_groups = [(stem, [c for c in nb.get("charts", []) if c in charts_avail])
                    for stem, nb in sorted(prov["notebooks"].items())]
    chart_groups.append((None, [c for c in charts_avail
                                if not any(c in g for _, g in chart_groups)]))
    for stem, names in chart_groups:
        names = [c for c in names if c not in shown]
        if not names:
            continue
        title = prov["notebooks"].get(stem, {}).get("title", stem) if stem else "other charts"
        h.append(f"<h3>{html.escape(title or '')}</h3>")
        for c in names:
            shown.add(c)
            about = [r["id"] for r in table if r.get("chart") == c]
            cap = html.escape(_chart_caption(chart_dir, c))
            claim_links = ", ".join(f'<a href="#claim-{html.escape(a)}">{html.escape(a)}</a>'
                                    for a in about)
            cap += (f' <span class="muted">({html.escape(c)}'
                    + (f"; claims {claim_links}" if about else "") + ")</span>")
            files = [f'<a href="charts/{PUBLISHED}/{html.escape(c)}.{ext}">{label}</a>'
                     for ext, label in (("png", "PNG"), ("vl.json", "Vega-Lite"),
                                        ("html", "HTML"))
                     if (chart_dir / f"{c}.{ext}").is_file()]
            if files:
                cap += " · " + " · ".join(files)
            h.append(f'<figure id="chart-{html.escape(c)}">{_svg_img(charts_avail[c], c)}'
                     f"<figcaption>{cap}</figcaption></figure>")
    if not charts_avail:
        h.append('<p class="muted">no published charts yet</p>')

    # each parameter set once, folded
    h.append('<h2 id="parameters">Parameters</h2>'
             '<p class="muted">The values each notebook\'s claims were computed with. Each source '
             "names its primary source: a mailing-list message, a manual section, a kernel "
             "source file or a package version; an <span class=warn>assumed</span> parameter has "
             "no public source and is swept over its plausible range where the verdict depends "
             "on it.</p>")
    for anchor, stem, ids, params in groups:
        pf = pfs.get(stem) if stem else None
        src = f" · params/{html.escape(pf.path.name)}" if pf is not None else ""
        marks = "".join(f'<span id="params-{html.escape(i)}"></span>' for i in ids)
        claims_links = ", ".join(f'<a href="#claim-{html.escape(i)}">{html.escape(i)}</a>'
                                 for i in ids)
        h.append(f'<details id="{html.escape(anchor)}">{marks}<summary>{html.escape(stem or "-")}'
                 f"{src}: claims {claims_links} ({len(params)} parameters)</summary>"
                 "<table><tr><th>parameter</th><th>value</th><th>unit</th><th>source</th></tr>"
                 f"{_param_rows(params, pf)}</table></details>")
    h.append("</body></html>")
    return "\n".join(h)


def write(data: Path | None = None, project: Path | None = None,
          run: Mapping[str, Any] | None = None) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Write ``<data>/claims.json``, ``<data>/claims.parquet`` (:func:`kmm.suite.claims.frame`)
    and ``<data>/report.html``; return the paths of the report and claims.json, and the rows.

    ``kmm reproduce`` and ``kmm run`` write them into the generation they build
    (:mod:`kmm.suite.generations`), from that generation's records only.
    """
    from . import claims
    from .claims import atomic_write_text
    from .params import project_root

    data = _data(data)
    project = project or project_root()
    table = rows(data)
    claims_json = data / "claims.json"
    report = data / "report.html"
    atomic_write_text(claims_json, json.dumps(table, indent=1, default=str), root=data)
    claims.write_parquet(table, data / "claims.parquet", data)
    atomic_write_text(report, build_html(table, data, project, run), root=data)
    return report, claims_json, table


def summary(table: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Claims per verdict, in :data:`VERDICT_ORDER`."""
    counts = Counter(r["verdict"] for r in table)
    return {v: counts.get(v, 0) for v in VERDICT_ORDER}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

