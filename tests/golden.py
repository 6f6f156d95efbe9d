"""Every published claim record, computed as ``kmm reproduce`` records it, without notebooks.

Each mechanism's notebook ends in ``claims.record(...)`` calls over values its cells computed
from the published scenario of ``params/<stem>.yaml``. :func:`records` repeats exactly those
cells (the same functions with the same arguments, in the same order) and returns the records
``claims.record`` would write, with the verdict the registry computes from each.
``tests/data/golden_claims.json`` holds them for the code as it was when the file was
written; ``tests/test_golden.py`` (marked ``golden`` and ``slow``: several minutes) checks that
a refactoring leaves every value, sweep point, explanation and verdict identical.

    python3 tests/golden.py            # recompute and print the differences from the file
    python3 tests/golden.py --write    # recompute and rewrite the file
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


def _ktr(ns, record):
    from kmm.mech import ktr
    p = ktr.params_from(ns)
    mem = ktr.memory_frame(p)
    patch_nodes, _ = ktr.patch_frame(p)
    runs = ktr.simulate_all(p)
    gains = ktr.gain_frame(p, runs)
    values = ktr.claim_values(p, runs, gains, mem, patch_nodes)
    chart_of = {"K1": "ktr_sensitivity", "K2": "ktr_user_numa", "K3": "ktr_gain_vs_ratio",
                "K4": "ktr_patch_vs_nodes", "K5": "ktr_memory_vs_nodes"}
    return [record(c, v["value"], explanation=v["explanation"], parameters=p, unit=v["unit"],
                   sweep=v["sweep"], decided_by=v["decided_by"], chart=chart_of[c])
            for c, v in values.items()]


def _pkvm(ns, record):
    from kmm.mech import pkvm
    p = pkvm.params_from(ns)
    runs = pkvm.simulate_all(p)
    comp = pkvm.comparison_frame(p, runs)
    exits = pkvm.exit_frame(p, runs)
    el2 = pkvm.el2_frame(p, runs)
    mem = pkvm.memory_frame(p)
    values = pkvm.claim_values(p, runs, comp, exits, el2, mem)
    chart_of = {"S1": "pkvm_decomposition", "S2": "pkvm_decomposition", "S3": "pkvm_walk_time",
                "S4": "pkvm_vhe_crossover", "S5": "pkvm_el2_text", "S6": "pkvm_stage2_memory"}
    return [record(c, v["value"], explanation=v["explanation"], parameters=p, unit=v["unit"],
                   sweep=v["sweep"], decided_by=v["decided_by"], chart=chart_of[c])
            for c, v in values.items()]


def _bbml2_structure(ns, record):
    from kmm.mech import bbml2 as bb
    p = bb.params_from(ns)
    tables = bb.table_memory_frame(p)
    stream = bb.stream_frame(p)
    repaints = bb.repaint_frame(p)
    values = bb.claim_values(p, tables, stream, repaints)
    chart_of = {"B1": None, "B2": "bbml2_structure_saved_vs_ram", "B9": "bbml2_structure_stream",
                "B10": "bbml2_structure_repaint", "B11": "bbml2_structure_bbm"}
    return [record(c, v["value"], explanation=v["explanation"], parameters=p, unit=v["unit"],
                   sweep=v["sweep"], chart=chart_of[c])
            for c, v in values.items()]


def _bbml2_perf(ns, record):
    from kmm.mech import bbml2_perf as bp
    p = bp.params_from(ns)
    specs = bp.assumed_specs()
    sweep = bp.joint_sweep(p, specs, ns["n_event_points"], ns["n_cost_points"], ns["seed"],
                           (ns["sweep_memcached_ops"], ns["sweep_blockio_ops"]))
    sens = bp.sensitivity(sweep)
    values = bp.claim_values(p)
    text = bp.explanations(p, bp.evaluate(p), values, sens)
    chart_of = {"B3": "bbml2_perf_throughput", "B4": "bbml2_perf_latency_vs_utilisation",
                "B5": "bbml2_perf_kernel_mpki", "B6": "bbml2_perf_throughput",
                "B7": "bbml2_perf_cycles", "B8": "bbml2_perf_cycles"}
    return [record(c, values[c], explanation=text[c], parameters=p,
                   unit="" if c == "B6" else "fraction",
                   sweep=bp.sweep_records(sweep, c, sorted(specs)), chart=chart_of[c])
            for c in ("B3", "B4", "B5", "B6", "B7", "B8")]


def _permvmalloc(ns, record):
    from kmm.mech import permvmalloc as pv
    p = pv.params_from(ns)
    sr = pv.run_scenario(p)
    values = pv.claim_values(sr)
    return [record(c, v["value"], explanation=v["explanation"], parameters=p, unit=v["unit"],
                   sweep=v["sweep"], decided_by=v["decided_by"], chart=v["chart"])
            for c, v in values.items()]


def _asi(ns, record):
    from kmm.mech import asi
    p = asi.params_from(ns)
    ev = asi.evaluate(p, slowpath=True)
    sweep = asi.joint_sweep(p, asi.claim_specs(), p["sweep_points"], p["seed"])
    text = asi.explanations(ev["evidence"], ev["notes"])
    chart_of = {"A1": "asi_counts", "A2": "asi_bursts", "A3": "asi_lazy_zeroing",
                "A4": "asi_latency_cdf", "A5": "asi_counts", "A6": "asi_target", "A7": "asi_counts"}
    return [record(c, ev["evidence"][c], explanation=text[c], parameters=p,
                   sweep=asi.sweep_records(sweep, c), chart=chart_of[c])
            for c in ("A1", "A2", "A3", "A4", "A5", "A6", "A7")]


_RUN = {"ktr": _ktr, "pkvm": _pkvm, "bbml2_structure": _bbml2_structure,
        "bbml2_perf": _bbml2_perf, "permvmalloc": _permvmalloc, "asi": _asi}


def records(stem: str) -> dict[str, dict]:
    """The published claim records of notebook ``stem`` by claim id, each with its verdict
    (and ``share_in_band``) and without ``kmm_version``."""
    from kmm.suite import claims, registry

    ns = published(stem)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KMM_DATA_DIR"] = tmp  # claims.record writes its file here

        def record(claim_id, value, **kw):
            return claims.record(claim_id, value, scenario="published", **kw)

        out = {}
        for rec in _RUN[stem](ns, record):
            rec = json.loads(json.dumps(rec))  # exactly what the record file holds
            rec.pop("kmm_version", None)
            rec["verdict"], rec["share_in_band"] = registry.verdict(rec["id"], rec)
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
                     f"{b.get('value')!r}; verdict {a.get('verdict')} -> {b.get('verdict')}")
    return lines


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    new = compute()
    if "--write" in argv:
        GOLDEN.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(new)} claim records to {GOLDEN.relative_to(ROOT)}")
        return 0
    diff = differences(load(), new)
    print("\n".join(diff) if diff else f"all {len(new)} claim records identical")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
