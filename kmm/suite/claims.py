"""Recording claim values from notebooks, and reading them back with computed verdicts.

A notebook evaluates a claim by calling :func:`record` with the value its simulation
produced, the parameters used, a one-sentence explanation and, where the verdict depends on
``assumed`` parameters, the values over their joint sweep. It never types a verdict and never
sees the band: :mod:`kmm.suite.registry` computes the verdict when the table is read.

Records are JSON files ``<data>/claims/<scenario>/<ID>.json`` written atomically, so a small
(nbval) run never overwrites a published one. ``<data>`` is ``$KMM_DATA_DIR`` if set, else the
``data/`` folder of the project the current directory is in; where it holds published
generations (:mod:`kmm.suite.generations`) records are read from and written to the current one.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import KmmError, warn
from . import registry

PUBLISHED = "published"
_MAX_RECORD_BYTES = 64 << 20


def data_dir() -> Path:
    """Where kmm writes results: ``$KMM_DATA_DIR``, else ``<project>/data``, else ``./data``."""
    env = os.environ.get("KMM_DATA_DIR")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "kmm").is_dir():
            return d / "data"
    return here / "data"


def results_dir(root: Path | None = None) -> Path:
    """The folder results are read from and written to: the current generation of ``root``
    (default :func:`data_dir`), or ``root`` itself before any generation exists."""
    from .generations import resolve

    return resolve(root or data_dir())


def _plain(v: Any) -> Any:
    """JSON-ready copy of a value: numpy scalars/arrays to Python, NaN refused."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        raise KmmError(f"claim value {v!r} is not finite")
    return v


def atomic_write_text(path: Path, text: str, root: Path | None = None) -> None:
    """Write ``text`` to ``path`` through a new temporary file and a rename, never through a
    link (:mod:`kmm.suite.safefs`; folders below ``root`` are created and checked too)."""
    from . import safefs

    safefs.write_text(Path(path), text, root=root)


def record(claim_id: str, value: Any, *, explanation: str, parameters: Mapping[str, Any],
           scenario: str, unit: str = "", sweep: Sequence[Mapping[str, Any]] | None = None,
           chart: str | None = None, centre: Mapping[str, Any] | None = None,
           swings: Sequence[Mapping[str, Any]] | None = None,
           basis: Mapping[str, Any] | None = None) -> dict:
    """Record the value a notebook computed for a claim and return the record.

    Parameters
    ----------
    claim_id : an id of :data:`kmm.suite.registry.CLAIMS` (``"K1"``...)
    value : the simulation's value: a number, or a mapping of evidence for a direction or
        mechanism claim (the keys the registry's test reads; see ``kmm claims``)
    explanation : one sentence saying why the model gives this value
    parameters : the parameters the value was computed with (as in params/)
    scenario : ``"published"`` for the full scenario of params/ (the only one that gets a
        verdict); anything else (``"small"``) is labelled as a small run
    unit : unit of a numeric value (``"fraction"``, ``"bytes"``...)
    sweep : values over the joint sweep of the ``assumed`` parameters the verdict depends on:
        ``[{"params": {...}, "value": v}, ...]``; the registry reports the share in band
        and every parameter that alone flips the verdict (:func:`~kmm.suite.registry.decided_by`)
    chart : file stem of the chart that shows this claim (for the report's link)
    centre : the published point's setting of swept parameters not named in ``parameters``
    swings : one-at-a-time points (as the sweep's) for "decided by" where the sweep has none;
        not counted in the share in band
    basis : ``{"basis", "rests_on"}`` where the registry's table does not declare it
    """
    if claim_id not in registry.CLAIMS:
        raise KmmError(f"unknown claim id {claim_id!r}", "claims.record")
    if not explanation or not explanation.strip():
        raise KmmError("a claim record needs a one-sentence explanation", claim_id)
    rec = {
        "id": claim_id,
        "value": _plain(value),
        "unit": unit,
        "explanation": explanation.strip(),
        "parameters": _plain(dict(parameters)),
        "scenario": scenario,
        "sweep": _plain(list(sweep)) if sweep else [],
        "chart": chart,
        "kmm_version": __version__,
    }
    if centre:
        rec["centre"] = _plain(dict(centre))
    if swings:
        rec["swings"] = _plain(list(swings))
    if basis:
        rec["basis"] = _plain(dict(basis))
    base = results_dir()
    atomic_write_text(base / "claims" / scenario / f"{claim_id}.json",
                      json.dumps(rec, indent=1, sort_keys=True), root=base)
    return rec


def load(scenario: str = PUBLISHED, root: Path | None = None) -> dict[str, dict]:
    """Records of one scenario, by claim id.

    A record that cannot be read, is not JSON or is not a record is left out with a one-line
    warning naming its file (the claim then shows as not evaluated, or its small-run value).
    """
    from . import safefs

    d = results_dir(root) / "claims" / scenario
    out = {}
    if d.is_dir():
        for f in sorted(d.glob("*.json")):
            try:
                rec = json.loads(safefs.read_bytes(f, limit=_MAX_RECORD_BYTES))
            except FileNotFoundError:
                continue
            except KmmError as e:
                warn(f"{e.line()}; claim record ignored")
                continue
            except (ValueError, RecursionError) as e:
                warn(f"{f}: unreadable claim record ({' '.join(str(e).split())[:120]}); ignored")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("id", f.stem), str):
                warn(f"{f}: not a claim record (a JSON object with an id); ignored")
                continue
            out[rec.get("id", f.stem)] = rec
    return out


def table(root: Path | None = None) -> list[dict]:
    """One row per claim: id, statement, band, value, verdict, share, explanation, parameters.

    Published records get a computed verdict; where only a small run was recorded its value
    is shown labelled ``small run`` and gets no verdict.
    """
    root = results_dir(root)  # resolved once: every record comes from one generation
    published = load(PUBLISHED, root)
    small: dict[str, dict] = {}
    base = root / "claims"
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir() and p.name != PUBLISHED):
            small.update({k: v for k, v in load(d.name, root).items() if k not in small})
    rows = []
    for cid, claim in registry.CLAIMS.items():
        rec = published.get(cid) or small.get(cid)
        verdict, share = registry.verdict(cid, rec)
        rows.append({
            "id": cid,
            "mechanism": claim.mechanism,
            "statement": claim.statement,
            "test": claim.test,
            "band": registry.band_text(cid),
            "value": rec.get("value") if rec else None,
            "unit": rec.get("unit", "") if rec else "",
            "verdict": verdict,
            "share_in_band": share,
            "decided_by": registry.decided_by(cid, rec),
            **registry.basis(cid, rec),
            # convergence over seeds and stream length is not checked yet: null, never guessed
            "converged": rec.get("converged") if rec else None,
            "spread": rec.get("spread") if rec else None,
            "explanation": rec.get("explanation", "") if rec else "no value recorded yet",
            "parameters": rec.get("parameters", {}) if rec else {},
            "scenario": rec.get("scenario") if rec else None,
            "chart": rec.get("chart") if rec else None,
            "source": registry.citation(cid),
            "cited": registry.citation_text(cid),
        })
    return rows
