"""The claim table and the verdict function — the only code that reads a claim's band.

Every claim is listed in :data:`CLAIMS` (id, mechanism, statement, test) with its citation,
the mailing-list message it comes from (:func:`citation`, read from the package data file
``kmm/data/sources.yaml``: list, subject, author, date, Message-ID and archive link). Its band
lives in the private table ``_BANDS`` below, which only
:func:`verdict` reads: no model, params file or notebook may read or repeat a band
(``tests/test_claims.py`` checks this). Notebooks record a value; the verdict is computed
here from the value and the band, never typed.

Verdicts
--------
The rules (also in the README, "How a verdict is reached"):

``reproduced``      the published scenario lands in the band (for a direction or mechanism
                    claim: the recorded evidence shows it), over the whole joint sweep of
                    the ``assumed`` parameters, if one was recorded;
``conditional``     it lands in the band for only part of that sweep (the table says which
                    share, and every parameter that alone flips it: :func:`decided_by`);
``not-reproduced``  no point of the sweep lands in the band, or the evidence contradicts the
                    direction;
``not-evaluated``   nothing was recorded from the published scenario, the evidence has the
                    wrong shape, or the claim's basis is ``not-modelled``.
A value recorded from a small (nbval) run is shown, labelled ``small run``, with no verdict.

Every claim also has a basis (:func:`basis`): ``measured``; ``structural`` with the identity
the verdict rests on, when the model could not have contradicted the claim; or
``not-modelled`` with the missing mechanism. "Decided by" has one definition
(:func:`decided_by`): a parameter decides a verdict if swinging it alone over its assumed
range, the others at their published values, flips the verdict; every such parameter is
listed. Convergence has one definition too (:func:`convergence`): a study records the
value again at other seeds and at half its stream length (``replicates``); the verdict is
converged when every replicate lands on the same side of the band as the published value,
and the spread of the replicates is shown either way (null: not checked).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

REPRODUCED = "reproduced"
CONDITIONAL = "conditional"
NOT_REPRODUCED = "not-reproduced"
NOT_EVALUATED = "not-evaluated"
SMALL_RUN = "small run"
VERDICTS = (REPRODUCED, CONDITIONAL, NOT_REPRODUCED, NOT_EVALUATED)


@dataclass(frozen=True)
class Claim:
    id: str
    mechanism: str
    statement: str
    test: str


_TABLE = [
    ("K1", "ktr", "Per-node copies of kernel text+rodata gain 6 % to 17 % on database-centric workloads",
     "system-wide throughput gain for a database-like workload on a 2-socket arm64 machine at published cross-socket latency ratios"),
    ("K2", "ktr", "Combined with userspace NUMA awareness the gain is over 50 %",
     "gain against the K1 baseline with user data made node-local"),
    ("K3", "ktr", "The higher the remote latency, the more kernel performance suffers on remote nodes",
     "gain rises monotonically with the remote/local latency ratio and is zero or slightly negative at 1.0"),
    ("K4", "ktr", "Text patching must update every copy",
     "patch cost grows with node count; the patch rate at which it matters"),
    ("K5", "ktr", "Replication costs one copy of text+rodata per extra node plus per-node kernel tables",
     "bytes vs nodes counted from the tables built, equal to the closed-form count"),
    ("S1", "pkvm", "Per-node stage-2 tables: the only downside is a larger TLB footprint",
     "footprint share of stage 2's change against KTR at the debated leaf Linux builds: a run changing only "
     "what a TLB entry covers, over it plus a run changing only the walk (undefined if either part is negative)"),
    ("S2", "pkvm", "Footprint is not the issue; the cost is the 2D walk itself",
     "footprint share of stage 2's change against KTR at the debated leaf Linux builds: a run changing only "
     "what a TLB entry covers, over it plus a run changing only the walk (undefined if either part is negative)"),
    ("S3", "pkvm", "Large stage-2 mappings mitigate the walk cost",
     "walk cost falls as the stage-2 leaf size grows"),
    ("S4", "pkvm", "Giving up VHE costs extra on every guest entry/exit",
     "VM exit rate at which stage-2 replication's net gain turns negative, against real workloads' exit rates"),
    ("S5", "pkvm", "EL2 code has no stage 2 and stays unreplicated: uneven performance",
     "per-node cost of hypervisor text fetches differs between nodes"),
    ("S6", "pkvm", "Per-node stage-2 tables must cover all host memory and I/O: memory pressure",
     "stage-2 bytes reserved and used grow with the node count"),
    ("B1", "bbml2", "Block mapping frees around 500 MB on 256 GB",
     "page-table bytes saved on the thread's machine (256 GB installed)"),
    ("B2", "bbml2", "The larger the machine, the more memory saved",
     "saved bytes grow linearly with RAM, 16 GB to 4 TB, every granule"),
    ("B3", "bbml2", "memcached ops/s +3.5 %", "memcached throughput change, rodata=full with vs without the series"),
    ("B4", "bbml2", "memcached P99 latency -9.6 %", "memcached P99 change at the same operating point as B3"),
    ("B5", "bbml2", "kernel TLB MPKI -28.5 %", "kernel TLB misses per kilo-instruction change"),
    ("B6", "bbml2", "With the series, rodata=full is on par with rodata=on",
     "memcached ops/s and kernel TLB MPKI of rodata=full+BBML2 relative to rodata=on"),
    ("B7", "bbml2", "dm-crypt IOPS +90 % to +150 %", "dm-crypt 4k sequential write IOPS change"),
    ("B8", "bbml2", "XFS sequential read bandwidth +150 %", "cached sequential read bandwidth change"),
    ("B9", "bbml2", "A boundary-only split keeps block mappings inside a permission-change range; v1 does not",
     "blocks kept over a stream of permission changes, boundary split vs whole-range split"),
    ("B10", "bbml2", "Repaint page tables can be counted from the boot-time PUD/PMD mappings",
     "count predicted from boot mappings equals the tables the repaint builds"),
    ("B11", "bbml2", "Without BBML2, changing a live mapping's size needs break-before-make",
     "accesses faulting in the BBM window without BBML2, none with it"),
    ("P1", "permvmalloc", "Loading a module today costs 4 all-CPU shootdowns, more when the direct map must be split",
     "median all-CPU shootdowns per module load, legacy flow"),
    ("P2", "permvmalloc", "With the new interface a module load usually costs 1 shootdown",
     "median shootdowns per module load with perm_alloc, ro_after_init included"),
    ("P3", "permvmalloc", "A BPF JIT load usually costs 0 shootdowns",
     "median shootdowns per BPF load with perm_alloc over a realistic size mix"),
    ("P4", "permvmalloc", "Grouping pages from 2 MB blocks minimises direct-map 4K breakage",
     "DirectMap4k after the workload, legacy vs grouped"),
    ("P5", "permvmalloc", "Final-permission mapping plus per-CPU loading needs only local flushes",
     "global vs local flushes during the load step"),
    ("P6", "permvmalloc", "Caching live mappings and 2 MB module-space mappings",
     "iTLB misses of module/BPF text, 4K vs 2M leaves"),
    ("A1", "asi", "Keeping all free pages unmapped leads to pointless shootdowns",
     "unmap/remap pairs and shootdowns on the pathological workload, RFC vs tracked"),
    ("A2", "asi", "The asynchronous free worker creates CPU jitter",
     "the most time one CPU lost in a 1 ms window to ASI work it did not run (shootdown "
     "handlers, worker runs, re-walks), RFC design vs tracked pageblocks"),
    ("A3", "asi", "Without same-sensitivity reuse, formerly sensitive pages must be zeroed",
     "pages zeroed, RFC design vs tracked pageblocks"),
    ("A4", "asi", "All this adds allocation latency",
     "p99 allocation latency, RFC design vs no ASI"),
    ("A5", "asi", "Tracking sensitivity of free pageblocks reduces A1-A4",
     "tracked pageblocks vs RFC on shootdowns, zeroing, worker time and p99 latency"),
    ("A6", "asi", "Mapping is cheap, unmapping is expensive: keep few free pages mapped",
     "total cost vs the free-mapped target"),
    ("A7", "asi", "A restricted physmap kept in sync avoids page-table allocation while allocating",
     "page-table allocations during allocation, synced physmap vs RFC"),
]

CLAIMS: dict[str, Claim] = {c[0]: Claim(*c) for c in _TABLE}


# ---- basis: how a verdict could be reached ------------------------------------------------
MEASURED = "measured"
STRUCTURAL = "structural"
NOT_MODELLED = "not-modelled"
BASES = (MEASURED, STRUCTURAL, NOT_MODELLED)

#: Per claim: ``(basis, what it rests on)``. ``measured``: the value comes out of simulated
#: counts and charged costs that could have landed on either side of the band. ``structural``:
#: the model could not have contradicted the claim; the text names the identity the verdict
#: rests on. ``not-modelled``: the model has no mechanism that could produce the claimed
#: effect; the text names the missing mechanism and the verdict is ``not-evaluated``.
#: A study's evidence may declare a claim's basis instead (its record's ``basis``).
_BASIS: dict[str, tuple[str, str | None]] = {
    "K1": (MEASURED, None),
    "K2": (MEASURED, None),
    # K3 is measured since replication's own costs are charged (module text left on node 0,
    # remote kernel objects, cold copies after migrations, top-level table sync): they do not
    # vanish at ratio 1.0 and need not fall as it rises, so the direction could fail
    "K3": (MEASURED, None),
    "K4": (STRUCTURAL, "a patch writes every copy: its cost is the per-copy cost times the "
                       "number of nodes"),
    "K5": (STRUCTURAL, "the model replicates by building one copy of text+rodata and of the "
                       "tables below the top level per extra node; the bytes counted are "
                       "those it builds, and the closed form counts the same copies"),
    "S1": (MEASURED, None),
    "S2": (MEASURED, None),
    "S3": (STRUCTURAL, "a larger stage-2 leaf ends every stage-2 walk at a higher level, so "
                       "a nested walk reads fewer descriptors"),
    "S4": (MEASURED, None),
    "S5": (STRUCTURAL, "EL2 text has one copy on one node, so the other node fetches it at "
                       "the remote latency, which is above the local one at any ratio > 1"),
    "S6": (STRUCTURAL, "each node reserves a worst-case stage-2 table set covering all host "
                       "memory and I/O, so the bytes reserved are that set times the nodes"),
    "B1": (STRUCTURAL, "the RAM the linear map covers is inverted from the thread's own "
                       "MemTotal, and rodata=full needs one PTE table per 2 MiB of it, which "
                       "block mapping removes: the saving is that count of tables, a closed "
                       "form of the thread's figure, not a measurement that could disagree"),
    "B2": (STRUCTURAL, "the tables a linear map needs per byte of RAM are fixed by the granule "
                       "and block size, so the bytes saved are RAM times a per-granule constant"),
    "B3": (MEASURED, None),
    "B4": (MEASURED, None),
    "B5": (MEASURED, None),
    "B6": (MEASURED, None),
    "B7": (MEASURED, None),
    "B8": (MEASURED, None),
    "B9": (MEASURED, None),
    "B10": (STRUCTURAL, "the repaint builds one table per PUD/PMD block mapped at boot; the "
                        "prediction counts the same mappings"),
    "B11": (STRUCTURAL, "without BBML2 the model clears the entry for the break-before-make "
                        "window, so an access inside it faults; with BBML2 the entry is never "
                        "invalid, so none can"),
    "P1": (MEASURED, None),
    "P2": (MEASURED, None),
    "P3": (MEASURED, None),
    "P4": (MEASURED, None),
    "P5": (STRUCTURAL, "the modelled load path maps at the final permission and writes through "
                       "a per-CPU mapping that is only flushed locally, so it emits no global "
                       "flush by construction"),
    "P6": (MEASURED, None),
    "A1": (MEASURED, None),
    "A2": (MEASURED, None),
    "A3": (MEASURED, None),
    "A4": (MEASURED, None),
    "A5": (MEASURED, None),
    "A6": (MEASURED, None),
    "A7": (STRUCTURAL, "the synced restricted physmap is built at boot and allocation only "
                       "flips the present bit, so it allocates no table while allocating"),
}


def basis(claim_id: str, record: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """How a claim's verdict could be reached: ``{"basis": ..., "rests_on": ...}`` (see
    :data:`_BASIS`); a record's ``basis`` (declared by its study's evidence) overrides the
    table's."""
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}")
    kind, note = _BASIS[claim_id]
    given = (record or {}).get("basis")
    if isinstance(given, Mapping) and given.get("basis") in BASES:
        kind, note = given["basis"], given.get("rests_on")
    return {"basis": kind, "rests_on": None if note is None else str(note)}


# ---- citations: who said each claim, and where ---------------------------------------------
#: The package data file that maps every claim to the message it comes from.
SOURCES_FILE = Path(__file__).resolve().parents[1] / "data" / "sources.yaml"
#: Fields every citation carries.
CITATION_FIELDS = ("list", "subject", "author", "date", "message_id", "link")


@lru_cache(maxsize=1)
def _sources() -> dict:
    from .params import safe_load

    return safe_load(SOURCES_FILE.read_text(encoding="utf-8"), "kmm/data/sources.yaml")


def citation(claim_id: str) -> dict[str, str]:
    """The message ``claim_id`` comes from: list, subject, author, date, message_id, link.

    ``said_by`` names who made the statement where that is not the message's author (or says
    that it is not identified), and ``note`` says what the citation does and does not
    establish; both are present only where the data file gives them.
    """
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}")
    data = _sources()
    entry = data["claims"][claim_id]
    out = {k: str(v) for k, v in data["threads"][entry["thread"]].items()}
    out.update({k: str(entry[k]) for k in ("said_by", "note") if k in entry})
    return out


def citation_text(claim_id: str) -> str:
    """One line for email or a terminal: who said it, where, when, and the archive link."""
    c = citation(claim_id)
    where = f'"{c["subject"]}", {c["list"]}'
    if c.get("said_by") == "not identified":
        return (f"author not identified; thread \"{c['subject']}\" started by {c['author']} "
                f"on {c['date']}, {c['list']}, {c['link']}")
    who = c["author"] if "said_by" not in c else f"{c['said_by']} (in {c['author']}'s message)"
    return f"{who}, {where}, {c['date']}, {c['link']}"


# ---- bands: read by verdict() only ---------------------------------------------------------
@dataclass(frozen=True)
class _Interval:
    lo: float
    hi: float
    unit: str = ""
    lo_open: bool = False

    def holds(self, v: Any) -> bool:
        v = float(v)
        lo_ok = v > self.lo if self.lo_open else v >= self.lo
        return lo_ok and v <= self.hi

    def text(self) -> str:
        f = _fmt_unit
        if self.lo == self.hi:
            return f"= {f(self.lo, self.unit)}"
        left = "(" if self.lo_open else "["
        if math.isinf(self.hi):
            return f"> {f(self.lo, self.unit)}" if self.lo_open else f">= {f(self.lo, self.unit)}"
        return f"{left}{f(self.lo, self.unit)}, {f(self.hi, self.unit)}]"


@dataclass(frozen=True)
class _Rule:
    """A direction or mechanism test over recorded evidence (a mapping)."""
    description: str
    keys: tuple[str, ...]
    test: Any  # callable(evidence) -> bool

    def holds(self, v: Any) -> bool:
        if not isinstance(v, Mapping):
            raise TypeError("expects a mapping of evidence")
        missing = [k for k in self.keys if k not in v]
        if missing:
            raise KeyError(f"evidence lacks {missing}")
        return bool(self.test(v))

    def text(self) -> str:
        return self.description


def _fmt_unit(x: float, unit: str) -> str:
    if unit == "%":
        return f"{x * 100:+g} %"
    if unit == "MiB":
        return f"{x / 2**20:g} MiB"
    return f"{x:g}{(' ' + unit) if unit else ''}"


def _by_x(xs, ys):
    """``ys`` ordered by their ``xs``."""
    return [y for _, y in sorted(zip(xs, ys))]


def _argmin_rank(xs, ys):
    """Rank (by x) of the smallest x at which y is minimal."""
    order = _by_x(xs, ys)
    return order.index(min(order))


def _increasing(ys):
    return len(ys) > 1 and all(b > a for a, b in zip(ys, ys[1:]))


def _nondecreasing(ys, tol=1e-9):
    return all(b >= a - tol for a, b in zip(ys, ys[1:]))


def _nonincreasing(ys, tol=1e-9):
    return all(b <= a + tol for a, b in zip(ys, ys[1:]))


def _linear(xs, ys, spread=0.10):
    r = [y / x for x, y in zip(xs, ys) if x]
    return bool(r) and min(r) > 0 and (max(r) - min(r)) / max(r) <= spread


_INF = float("inf")
_MIB = 2**20

_BANDS: dict[str, _Interval | _Rule] = {
    "K1": _Interval(0.06, 0.17, "%"),
    "K2": _Interval(0.50, _INF, "%", lo_open=True),
    "K3": _Rule("gain non-decreasing in the latency ratio; at ratio 1.0 within [-2 %, +0.5 %]",
                ("ratio", "gain"),
                lambda e: min(e["ratio"]) == 1.0
                and _nondecreasing(_by_x(e["ratio"], e["gain"]))
                and -0.02 <= _by_x(e["ratio"], e["gain"])[0] <= 0.005),
    "K4": _Rule("patch cost strictly increasing with the node count", ("nodes", "patch_ns"),
                lambda e: _increasing(_by_x(e["nodes"], e["patch_ns"]))),
    "K5": _Rule("bytes counted from the tables built equal the closed-form count at every node count",
                ("model_bytes", "formula_bytes"),
                lambda e: list(e["model_bytes"]) == list(e["formula_bytes"]) and len(e["model_bytes"]) > 0),
    "S1": _Interval(0.5, 1.0, "", lo_open=True),
    "S2": _Interval(0.0, 0.5, ""),
    "S3": _Rule("walk cost non-increasing as the stage-2 leaf grows, and lower at the largest leaf "
                "(over the leaves Linux builds)",
                ("leaf_bytes", "walk_ns"),
                lambda e: _nonincreasing(_by_x(e["leaf_bytes"], e["walk_ns"]))
                and _by_x(e["leaf_bytes"], e["walk_ns"])[-1] < _by_x(e["leaf_bytes"], e["walk_ns"])[0]),
    # Exit rates of real VM workloads, per host CPU: from about 1e3/s (compute-bound guests,
    # timer and IPI exits) up to about 5e5/s for an I/O-heavy guest (systemtap example
    # kvm_service_time.stp: 4.97 M EPT-misconfig exits in a 10 s sample). No single public
    # survey: the range is wide on purpose and the report says so.
    "S4": _Interval(1e3, 5e5, "exits/s"),
    "S5": _Rule("hypervisor text fetch cost differs by more than 5 % between nodes",
                ("node", "ns"), lambda e: max(e["ns"]) > 1.05 * min(e["ns"])),
    "S6": _Rule("stage-2 bytes reserved strictly increasing with the node count",
                ("nodes", "reserved_bytes"),
                lambda e: _increasing(_by_x(e["nodes"], e["reserved_bytes"]))),
    "B1": _Interval(504 * _MIB * 0.85, 504 * _MIB * 1.15, "MiB"),
    "B2": _Rule("saved bytes strictly increasing with RAM and proportional to it (saved/RAM within 10 %) "
                "for every granule",
                ("ram_bytes", "saved_bytes"),
                lambda e: all(
                    all(b > a for a, b in zip(s, s[1:])) and _linear(r, s)
                    for r, s in _per_group(e))),
    "B3": _Interval(0.02, 0.05, "%"),
    "B4": _Interval(-0.14, -0.06, "%"),
    "B5": _Interval(-0.35, -0.22, "%"),
    "B6": _Rule("ops/s and kernel TLB MPKI both within 1 % of rodata=on",
                ("ops_rel", "mpki_rel"),
                lambda e: abs(e["ops_rel"]) <= 0.01 and abs(e["mpki_rel"]) <= 0.01),
    "B7": _Interval(0.90, 1.50, "%"),
    "B8": _Interval(1.20, 1.80, "%"),
    "B9": _Rule("boundary-only split keeps more block mappings than v1",
                ("blocks_kept_boundary", "blocks_kept_v1"),
                lambda e: e["blocks_kept_boundary"] > e["blocks_kept_v1"]),
    "B10": _Rule("predicted repaint pages equal the pages the repaint builds, at every size",
                 ("predicted_pages", "built_pages"),
                 lambda e: list(e["predicted_pages"]) == list(e["built_pages"]) and len(e["built_pages"]) > 0),
    "B11": _Rule("accesses fault in the BBM window without BBML2 and none do with it",
                 ("faults_without_bbml2", "faults_with_bbml2"),
                 lambda e: e["faults_without_bbml2"] > 0 and e["faults_with_bbml2"] == 0),
    "P1": _Interval(4, _INF, "shootdowns"),
    "P2": _Interval(1, 1, "shootdowns"),
    "P3": _Interval(0, 0, "shootdowns"),
    "P4": _Rule("grouped allocation leaves fewer 4K direct-map pages than the legacy flow",
                ("directmap4k_legacy", "directmap4k_grouped"),
                lambda e: e["directmap4k_grouped"] < e["directmap4k_legacy"]),
    "P5": _Rule("no global flush during the load step, local flushes only",
                ("global_flushes_per_load", "local_flushes_per_load"),
                lambda e: e["global_flushes_per_load"] == 0 and e["local_flushes_per_load"] > 0),
    "P6": _Rule("fewer iTLB misses of module/BPF text with 2M leaves than with 4K",
                ("itlb_misses_4k", "itlb_misses_2m"),
                lambda e: e["itlb_misses_2m"] < e["itlb_misses_4k"]),
    "A1": _Rule("the RFC design makes pointless unmap/remap pairs on the pathological workload, "
                "more than tracked pageblocks",
                ("pointless_rfc", "pointless_tracked"),
                lambda e: e["pointless_rfc"] > 0 and e["pointless_rfc"] > e["pointless_tracked"]),
    "A2": _Rule("the most time one CPU loses to ASI work in a 1 ms window is larger with the RFC "
                "design than with tracked pageblocks",
                ("interrupt_rfc_ns", "interrupt_tracked_ns"),
                lambda e: e["interrupt_rfc_ns"] > e["interrupt_tracked_ns"]),
    "A3": _Rule("the RFC design zeroes more pages than tracked pageblocks",
                ("zeroed_rfc", "zeroed_tracked"), lambda e: e["zeroed_rfc"] > e["zeroed_tracked"]),
    "A4": _Rule("the RFC design's p99 allocation latency exceeds no-ASI's",
                ("p99_rfc_ns", "p99_none_ns"), lambda e: e["p99_rfc_ns"] > e["p99_none_ns"]),
    "A5": _Rule("tracked pageblocks are no worse than RFC on shootdowns, zeroing, worker time and "
                "p99 latency, and better on at least one",
                ("rfc", "tracked"),
                lambda e: all(e["tracked"][k] <= e["rfc"][k] for k in e["rfc"])
                and any(e["tracked"][k] < e["rfc"][k] for k in e["rfc"])),
    "A6": _Rule("total cost rises with the free-mapped target: its minimum lies in the lowest third "
                "of the targets and is below the cost at the largest target",
                ("target", "cost"),
                lambda e: _argmin_rank(e["target"], e["cost"]) < max(1, len(e["target"]) / 3)
                and min(e["cost"]) < _by_x(e["target"], e["cost"])[-1]),
    "A7": _Rule("no page-table allocation while allocating with a synced physmap; some with the RFC design",
                ("pt_allocs_synced", "pt_allocs_rfc"),
                lambda e: e["pt_allocs_synced"] == 0 and e["pt_allocs_rfc"] > 0),
}


def _per_group(e: Mapping[str, Any]):
    """Split B2-style evidence into (ram, saved) series per group (e.g. granule)."""
    groups = e.get("group") or ["all"] * len(e["ram_bytes"])
    out: dict[Any, list[tuple[float, float]]] = {}
    for g, r, s in zip(groups, e["ram_bytes"], e["saved_bytes"]):
        out.setdefault(g, []).append((r, s))
    for pts in out.values():
        pts.sort()
        yield [p[0] for p in pts], [p[1] for p in pts]


def band_text(claim_id: str) -> str:
    """The band or test of a claim, as the report prints it."""
    return _BANDS[claim_id].text()


def band_interval(claim_id: str) -> tuple[float, float] | None:
    """``(lo, hi)`` of a claim whose band is a numeric interval (``hi`` may be infinite);
    ``None`` for a direction or mechanism test. For drawing a sweep against its band."""
    band = _BANDS[claim_id]
    return (band.lo, band.hi) if isinstance(band, _Interval) else None


def in_band(claim_id: str, value: Any) -> bool:
    """Whether ``value`` satisfies the claim's band (raises if the value has the wrong shape)."""
    return _BANDS[claim_id].holds(value)


def verdict(claim_id: str, record: Mapping[str, Any] | None) -> tuple[str, float | None]:
    """The verdict for a claim from its record: ``(verdict, share_in_band)``.

    ``record`` is what :func:`kmm.suite.claims.record` wrote (None if nothing was). The share
    is the fraction of the recorded joint sweep of ``assumed`` parameters, the published
    point included, that lands in the band (None when no sweep was recorded).
    """
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}")
    if record is None or record.get("value") is None:
        return NOT_EVALUATED, None
    if basis(claim_id, record)["basis"] == NOT_MODELLED:
        return NOT_EVALUATED, None
    if record.get("scenario") != "published":
        return SMALL_RUN, None
    try:
        holds = in_band(claim_id, record["value"])
    except (TypeError, KeyError, ValueError, IndexError):
        return NOT_EVALUATED, None
    sweep = record.get("sweep") or []
    if not sweep:
        return (REPRODUCED if holds else NOT_REPRODUCED), None
    try:
        hits = [holds] + [in_band(claim_id, p["value"]) for p in sweep]
    except (TypeError, KeyError, ValueError, IndexError):
        return NOT_EVALUATED, None
    share = sum(hits) / len(hits)  # the published point counts as one point of the sweep
    if share == 1.0 and holds:
        return REPRODUCED, share
    if share == 0.0 and not holds:
        return NOT_REPRODUCED, share
    return CONDITIONAL, share


def _same(a: Any, b: Any) -> bool:
    """Two parameter settings are the same setting (floats compared to 1e-9 relative)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def swing_points(record: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]] | None:
    """The one-at-a-time swings of a record: for every swept ``assumed`` parameter, the points
    of the sweep (and of the record's ``swings``) where it alone differs from the published
    point, the others at their published values.

    The published point's settings are the record's ``centre`` if it has one, else its
    ``parameters`` of the same names, else the one setting a parameter takes over the whole
    sweep. None when a parameter has no published setting or no swing point (its swing was
    not evaluated).
    """
    points = list(record.get("sweep") or []) + list(record.get("swings") or [])
    keys: list[str] = []
    for pt in points:
        keys += [k for k in pt.get("params", {}) if k not in keys]
    given = {**(record.get("parameters") or {}), **(record.get("centre") or {})}
    centre: dict[str, Any] = {}
    for k in keys:
        if k in given:
            centre[k] = given[k]
            continue
        levels = [pt["params"].get(k) for pt in points]
        if any(not _same(x, levels[0]) for x in levels):
            return None
        centre[k] = levels[0]
    out: dict[str, list[Mapping[str, Any]]] = {}
    for k in keys:
        out[k] = [pt for pt in points
                  if not _same(pt["params"].get(k), centre[k])
                  and all(_same(pt["params"].get(j), centre[j]) for j in keys if j != k)]
        if not out[k] and len({repr(pt["params"].get(k)) for pt in points}) > 1:
            return None
    return out


def decided_by(claim_id: str, record: Mapping[str, Any] | None) -> list[str] | None:
    """Every ``assumed`` parameter that decides the verdict: the one definition of "decided by".

    A parameter decides a verdict if swinging it alone over its assumed range, every other
    parameter at its published value, flips the verdict: some point of its swing
    (:func:`swing_points`) lands in the band where the published value does not, or misses
    it where the published value lands. The list is in the order of the sweep's parameters;
    ``[]`` when no swing flips the verdict (or the claim depends on no ``assumed``
    parameter: its sweep is empty); None when it was not checked (no published record, a
    value the band cannot read, or a sweep without one-at-a-time swings, such as a Latin
    hypercube without a ``swings`` supplement).
    """
    if record is None or record.get("scenario") != "published" or record.get("value") is None:
        return None
    try:
        holds = in_band(claim_id, record["value"])
        swings = swing_points(record)
        if swings is None:
            return None
        return [k for k, pts in swings.items()
                if any(in_band(claim_id, p["value"]) != holds for p in pts)]
    except (TypeError, KeyError, ValueError, IndexError, AttributeError):
        return None


#: The fewest seeds (the published one included) a convergence check needs.
MIN_SEEDS = 3


def _spread(values: list[Any]) -> dict[str, Any]:
    """``min``/``max`` of numeric replicate values (nothing for evidence mappings)."""
    nums = [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {"min": min(nums), "max": max(nums)} if nums and len(nums) == len(values) else {}


def convergence(claim_id: str, record: Mapping[str, Any] | None
                ) -> tuple[bool | None, dict[str, Any] | None]:
    """Whether a published verdict is converged, and the spread it was judged on.

    A study proves convergence in one of two ways. A value that depends on no seed and no
    stream length (a count of tables built, a closed form) is recorded with
    ``deterministic: true`` and is converged by construction. Any other value comes with
    ``replicates``: ``[{"seed": s, "length": n, "value": v}, ...]``, the same published point
    at other seeds (full length) and at half the stream length (a midpoint snapshot of the
    same run where the study can take one). The verdict is converged when every replicate
    lands on the same side of the band as the published value; a replicate on the other side
    (a seed spread that straddles a band edge, or a value that moves across it between half
    and full length) marks it not converged, its verdict string unchanged. Fewer than
    :data:`MIN_SEEDS` distinct seeds, or no half-length replicate, is not a check: None.

    The published value's seed is its parameters' ``seed``; its length is the longest
    replicate's. The spread: the published seed, length and whether it is in the band, every
    replicate with whether it is in the band, and ``min``/``max`` over the numeric values
    (published value included).
    """
    if record is None or record.get("scenario") != "published" or record.get("value") is None:
        return None, None
    if record.get("deterministic"):
        return True, {"deterministic": True}
    reps = record.get("replicates") or []
    if not reps:
        return None, None
    try:
        holds = in_band(claim_id, record["value"])
        full = max(int(r["length"]) for r in reps)
        seeds = {int(r["seed"]) for r in reps if int(r["length"]) == full}
        published_seed = (record.get("parameters") or {}).get("seed")
        n_seeds = len(seeds) + (published_seed not in seeds)
        half = [r for r in reps if int(r["length"]) < full]
        rows = [{"seed": int(r["seed"]), "length": int(r["length"]),
                 "value": r["value"], "in_band": in_band(claim_id, r["value"])} for r in reps]
    except (TypeError, KeyError, ValueError, IndexError, AttributeError):
        return None, None
    spread = {"seed": published_seed, "length": full, "in_band": holds, "replicates": rows,
              **_spread([record["value"]] + [r["value"] for r in reps])}
    if n_seeds < MIN_SEEDS or not half:
        return None, spread
    return all(r["in_band"] == holds for r in rows), spread
