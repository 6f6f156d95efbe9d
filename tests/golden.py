"""Every published claim record, computed as ``kmm reproduce`` records it, without notebooks.

Each mechanism's notebook ends in ``STUDY.finish(p, scenario)``, which records every claim of
the study (:mod:`kmm.suite.study`) at the published scenario of ``params/<stem>.yaml``.
:func:`records` makes the same records through the same protocol and returns them, with the
verdict and the "decided by" parameter the registry computes from each.
``tests/data/golden_claims.json`` holds them for the code as it was when the file was
written; ``tests/test_golden.py`` (marked ``golden`` and ``slow``: several minutes) checks that
a refactoring leaves every value, sweep point, explanation and verdict identical.

    python3 tests/golden.py            # recompute and print the differences from the file
    python3 tests/golden.py ktr asi    # the same for some notebooks only
    python3 tests/golden.py --write    # recompute and rewrite the file
    python3 tests/golden.py ktr --write  # rewrite only those notebooks' records
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "data" / "golden_claims.json"
#: The notebooks that record claims, slowest first (so a 2-process pool finishes sooner).
STEMS = ("permvmalloc", "bbml2_perf", "ktr", "asi", "pkvm", "bbml2_structure")


def published(stem: str) -> dict:
    """The namespace a published run of ``notebooks/<stem>.ipynb`` sees after its parameters
    cell: the cell's defaults, then every value of the params file."""
    from kmm.suite import params as P

    pf = P.load(ROOT / "params" / f"{stem}.yaml")
    return {**pf.defaults(), **pf.scenario(), "scenario": "published"}


def records(stem: str) -> dict[str, dict]:
    """The published claim records of notebook ``stem`` by claim id, each with its verdict
    (and ``share_in_band``), "decided by", basis and convergence, and without ``kmm_version``
    and ``provenance``."""
    from kmm.suite import registry
    from kmm.suite.study import studies

    ns = published(stem)
    study = studies()[stem]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KMM_DATA_DIR"] = tmp  # claims.record writes its file here

        out = {}
        for rec in study.record(study.params(ns), "published"):
            rec = json.loads(json.dumps(rec))  # exactly what the record file holds
            rec.pop("kmm_version", None)
            rec.pop("provenance", None)  # names the commit: differs on every change
            rec["verdict"], rec["share_in_band"] = registry.verdict(rec["id"], rec)
            rec["decided_by"] = registry.decided_by(rec["id"], rec)
            rec["converged"], rec["spread"] = registry.convergence(rec["id"], rec)
            rec.update(registry.basis(rec["id"], rec))
            out[rec["id"]] = rec
    return out


def _records_in_subprocess(stem: str) -> tuple[str, dict]:
    return stem, records(stem)


def compute(stems=STEMS, jobs: int = 2) -> dict[str, dict]:
    """Every claim record of ``stems``, by claim id, computed ``jobs`` notebooks at a time."""
    out: dict[str, dict] = {}
    if jobs <= 1:
        for s in stems:
            out.update(records(s))
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            for _, recs in pool.map(_records_in_subprocess, stems):
                out.update(recs)
    return dict(sorted(out.items()))


def load() -> dict[str, dict]:
    return json.loads(GOLDEN.read_text())


def differences(old: dict, new: dict) -> list[str]:
    """One line per claim whose record differs (or is missing on one side)."""
    lines = []
    for cid in sorted(set(old) | set(new)):
        a, b = old.get(cid), new.get(cid)
        if a == b:
            continue
        if a is None or b is None:
            lines.append(f"{cid}: only {'after' if a is None else 'before'}")
            continue
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        lines.append(f"{cid}: {', '.join(keys)} differ; value {a.get('value')!r} -> "
                     f"{b.get('value')!r}; verdict {a.get('verdict')} -> {b.get('verdict')}"
                     + (f"; decided_by {a.get('decided_by')} -> {b.get('decided_by')}"
                        if "decided_by" in keys else ""))
    return lines


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    stems = [a for a in argv if not a.startswith("-")] or STEMS
    new = compute(stems)
    if stems != STEMS and "--write" in argv:  # replace those notebooks' records only
        kept = {k: v for k, v in load().items() if k not in new}
        GOLDEN.write_text(json.dumps(dict(sorted({**kept, **new}.items())), indent=1,
                                     sort_keys=True) + "\n")
        print(f"wrote {len(new)} claim records of {', '.join(stems)} to "
              f"{GOLDEN.relative_to(ROOT)}")
        return 0
    if stems != STEMS:
        old = {k: v for k, v in load().items() if k in new}
        diff = differences(old, new)
        print("\n".join(diff) if diff else f"all {len(new)} claim records identical")
        return 1 if diff else 0
    if "--write" in argv:
        GOLDEN.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(new)} claim records to {GOLDEN.relative_to(ROOT)}")
        return 0
    diff = differences(load(), new)
    print("\n".join(diff) if diff else f"all {len(new)} claim records identical")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
