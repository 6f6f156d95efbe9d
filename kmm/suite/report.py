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

from .. import __version__
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
    """Convergence as shown: ``converged``, ``not converged (spread ...)`` or ``convergence
    not checked`` (null)."""
    c = r.get("converged")
    if c is None:
        return "convergence not checked"
    spread = r.get("spread")
    return "converged" if c else f"not converged (spread {spread})"


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


def build_html(table: list[dict[str, Any]], data: Path, project: Path,
               run: Mapping[str, Any] | None = None) -> str:
    """The report page (a string); ``run`` describes the ``kmm reproduce`` that made it."""
    prov = load_provenance(data)
    pfs = _params_specs(project)
    chart_dir = data / "charts" / PUBLISHED
    charts_avail = {p.stem: p for p in sorted(chart_dir.glob("*.svg"))} if chart_dir.is_dir() else {}
    counts = Counter(r["verdict"] for r in table)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    h: list[str] = []
    h.append(f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<title>kmm claims report</title><style>{_CSS}</style></head><body>")
    h.append("<h1>kmm: which published claims the model reproduces</h1>")
    gen = f", generation {html.escape(str(prov['generation']))}" if prov.get("generation") else ""
    h.append(f'<p class="muted">kmm {html.escape(__version__)}{gen}, written {now}. Verdicts are '
             "computed from the values recorded by each notebook's published scenario "
             "(params/); values from small runs are shown without a verdict.</p>")
    h.append('<p class="counts">' + "".join(
        f"<span>{_badge(v)} {counts.get(v, 0)}</span>" for v in VERDICT_ORDER if counts.get(v)) + "</p>")

    # notebooks
    h.append('<h2 id="notebooks">Notebooks</h2><table><tr><th>notebook</th><th>title</th>'
             "<th>status</th><th>finished</th><th>seconds</th><th>claims</th></tr>")
    failed_now = {f["stem"]: f["error"] for f in (run or {}).get("failed", [])}
    stems = sorted(set(prov["notebooks"]) | set(failed_now))
    for stem in stems:
        nb = prov["notebooks"].get(stem, {})
        status = nb.get("status", "failed" if stem in failed_now else "-")
        err = nb.get("error") or failed_now.get(stem)
        executed = data / "notebooks" / f"{stem}.ipynb"
        link = (f'<a href="notebooks/{html.escape(stem)}.ipynb">{html.escape(stem)}</a>'
                if executed.is_file() else html.escape(stem))
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

    # claims
    h.append('<h2 id="claims">Claims</h2><table><tr><th>id</th><th>statement</th><th>band / test</th>'
             "<th>value</th><th>verdict</th><th>share in band</th><th>explanation</th>"
             "<th>links</th></tr>")
    mechanism = None
    for r in table:
        if r["mechanism"] != mechanism:
            mechanism = r["mechanism"]
            h.append(f'<tr><th colspan=8 id="mechanism-{html.escape(mechanism)}">'
                     f"{html.escape(mechanism)}</th></tr>")
        cid = html.escape(r["id"])
        share = "-" if r["share_in_band"] is None else f"{r['share_in_band']:.0%}"
        if r["verdict"] in registry.VERDICTS:
            share += (f'<br><span class="muted">decided by: '
                      f'{html.escape(decided_text(r.get("decided_by")))}<br>'
                      f'{html.escape(basis_text(r))}<br>'
                      f'{html.escape(converged_text(r))}</span>')
        links = [f'<a href="#params-{cid}">parameters</a>'] if _has_params_block(r) else []
        if r.get("chart"):
            links.insert(0, f'<a href="#chart-{html.escape(r["chart"])}">chart</a>'
                         if r["chart"] in charts_avail
                         else f'<span class="warn">chart {html.escape(r["chart"])} missing</span>')
        note = ""
        if r.get("stale"):
            note = (f'<br><span class="warn">the latest run of {html.escape(r["notebook"])} failed: '
                    f"value from the run recorded {html.escape(r.get('recorded_at') or '?')}</span>")
        elif r["verdict"] == registry.SMALL_RUN:
            note = f'<br><span class="muted">from a {html.escape(str(r["scenario"]))} run</span>'
        h.append(f'<tr id="claim-{cid}"><td><b>{cid}</b></td><td>{html.escape(r["statement"])}'
                 f"{_cited_html(r.get('source'))}</td>"
                 f"<td>{html.escape(r['band'])}</td>"
                 f"<td>{html.escape(format_value(r['value'], r.get('unit', '')))}</td>"
                 f"<td>{_badge(r['verdict'])}{note}</td><td class=num>{share}</td>"
                 f"<td>{html.escape(r['explanation'])}</td><td>{' '.join(links)}</td></tr>")
    h.append("</table>")

    # charts, grouped by the notebook that drew them
    h.append('<h2 id="charts">Charts</h2>')
    shown: set[str] = set()
    groups = [(stem, [c for c in nb.get("charts", []) if c in charts_avail])
              for stem, nb in sorted(prov["notebooks"].items())]
    groups.append((None, [c for c in charts_avail if not any(c in g for _, g in groups)]))
    for stem, names in groups:
        names = [c for c in names if c not in shown]
        if not names:
            continue
        title = prov["notebooks"].get(stem, {}).get("title", stem) if stem else "other charts"
        h.append(f"<h3>{html.escape(title or '')}</h3>")
        for c in names:
            shown.add(c)
            about = [r["id"] for r in table if r.get("chart") == c]
            cap = html.escape(c) + (f" (claims {html.escape(', '.join(about))})" if about else "")
            png = chart_dir / f"{c}.png"
            if png.is_file():
                cap += f' · <a href="charts/{PUBLISHED}/{html.escape(c)}.png">PNG</a>'
            h.append(f'<figure id="chart-{html.escape(c)}">{_svg_img(charts_avail[c], c)}'
                     f"<figcaption>{cap}</figcaption></figure>")
    if not charts_avail:
        h.append('<p class="muted">no published charts yet</p>')

    # parameters of each claim
    h.append('<h2 id="parameters">Parameters of each claim</h2>'
             '<p class="muted">Values the claim was computed with. Each source names its primary '
             "source: a mailing-list message, a manual section, a kernel source file or a package "
             "version; an <span class=warn>assumed</span> parameter has no public source "
             "and is swept over its plausible range where the verdict depends on it.</p>")
    for r in (r for r in table if _has_params_block(r)):
        cid = html.escape(r["id"])
        stem = r.get("notebook") or (r["mechanism"] if r["mechanism"] in pfs else None)
        pf = pfs.get(stem) if stem else None
        src = f" · params/{html.escape(pf.path.name)}" if pf is not None else ""
        h.append(f'<h3 id="params-{cid}"><a href="#claim-{cid}">{cid}</a>{src}</h3>')
        h.append("<table><tr><th>parameter</th><th>value</th><th>unit</th><th>source</th></tr>"
                 f"{_param_rows(r.get('parameters') or {}, pf)}</table>")
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

