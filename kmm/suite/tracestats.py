"""What the shipped kernel traces hold, and the TLB and cache miss rates kmm computes on them.

For each captured scenario (``kmm/data/traces/*.kmmt``) and each mapping of the kernel's
linear map, :func:`trace_frame` gives a tidy frame (:mod:`kmm.results`) of

- the window: references, instructions (one per 4-byte fetch), loads, stores;
- per region (:class:`kmm.capture.layout.Region`) and in all: references, 4 KiB pages
  touched, footprint bytes (pages x 4 KiB; the numbers ``kmm trace info`` prints from the
  manifest, computed here by :func:`kmm.capture.run.region_stats` on the window simulated),
  and the translations the window needs (distinct leaf mappings touched: pages, or blocks
  of a block-mapped linear map);
- the TLB hierarchy: L1 iTLB, L1 dTLB and L2 TLB misses per thousand instructions (an L2
  TLB miss is a page walk), walks and walk descriptor reads, per region and in all;
- the line caches: L1 I, L1 D, L2 and LLC misses per thousand instructions.

The machine is a Neoverse N1 class core per vCPU (:class:`Machine`): its TLBs, walk cache and
caches run the references through the engine's full path (:class:`kmm.walk.Path`, one Numba
kernel call per run), with the vCPU, kind, physical address (the virtual one where the trace
has none) and region of every reference as captured.

Mappings. ``4K`` is the linear map of 4 KiB PTEs that ``rodata=full`` gives (arm64
``NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS``); ``2M`` and ``1G`` map it with blocks of that size
(level-2 or level-1 leaves). Only references inside the linear map
(``[PAGE_OFFSET, PAGE_OFFSET + linear size)`` of the capture's layout, which holds the
``linear`` region and the per-CPU first chunk embedded in it) change leaf; every other region
(kernel image, vmalloc, stacks, modules, vmemmap, user) is mapped with 4 KiB pages in every
mapping, as the block-mapped linear map leaves them. The capture VM's RAM is 1 GiB at a
1 GiB-aligned physical address, so a 1 GiB block covers whole RAM-backed gigabytes.

Stated simplifications: one stage-1 regime for every reference (the pKVM scenario's EL2
references and its host's stage 2 are not modelled as separate regimes); user references all
carry ASID 0; a reference reads one line. The first ``warm_fraction`` of each window warms
the machine and is not counted.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import check_float, check_int
from ..errors import ConfigError, KmmError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

#: Leaf level of a linear-map reference per mapping (arm64, 4 KiB granule, 48-bit VA).
MAPPINGS = {"4K": 3, "2M": 2, "1G": 1}
#: Column values of the totals over every region.
ALL = "all"
PAGE_SHIFT = 12


@dataclass(frozen=True)
class Machine:
    """One Neoverse N1 class core per vCPU: TLBs, stage-1 walk cache and line caches (LRU).

    ``l1_tlb_max_entry_shift`` is the largest entry the L1 TLBs hold: a larger leaf is held
    as an entry of this size (the N1 L1 TLBs list 2 MiB as their largest 4 KiB-granule
    entry; the L2 TLB holds 1 GiB blocks whole).
    """

    l1i_tlb_entries: int = 48
    l1d_tlb_entries: int = 48
    l1_tlb_max_entry_shift: int = 21
    l2_tlb_entries: int = 1280
    l2_tlb_ways: int = 5
    walk_cache_entries: int = 64
    l1i_bytes: int = 64 << 10
    l1i_ways: int = 4
    l1d_bytes: int = 64 << 10
    l1d_ways: int = 4
    l2_bytes: int = 1 << 20
    l2_ways: int = 8
    llc_bytes: int = 32 << 20
    llc_ways: int = 16

    def __post_init__(self):
        for name, value in asdict(self).items():
            check_int(name, value, lo=0 if name == "walk_cache_entries" else 1)
        check_int("l1_tlb_max_entry_shift", self.l1_tlb_max_entry_shift, lo=12, hi=30)

    def path_config(self, cpus: int = 1):
        """The :class:`kmm.walk.PathConfig` of ``cpus`` such cores (4 KiB granule, 48-bit VA,
        every table page on node 0)."""
        from .. import engine as E

        g = E.arm64("4K", 48)
        l1 = self.l1_tlb_max_entry_shift
        tlb = E.TLBConfig(
            l1i=E.TLBLevelConfig(self.l1i_tlb_entries, self.l1i_tlb_entries, "lru", l1),
            l1d=E.TLBLevelConfig(self.l1d_tlb_entries, self.l1d_tlb_entries, "lru", l1),
            l2=E.TLBLevelConfig(self.l2_tlb_entries, self.l2_tlb_ways, "lru"),
            walk_cache=(E.TLBLevelConfig(self.walk_cache_entries, 4, "lru")
                        if self.walk_cache_entries else None),
            honour_cont=False, cpus=cpus).with_geometry(g)
        caches = E.CacheConfig(l1i=E.CacheLevelConfig(self.l1i_bytes, self.l1i_ways),
                               l1d=E.CacheLevelConfig(self.l1d_bytes, self.l1d_ways),
                               l2=E.CacheLevelConfig(self.l2_bytes, self.l2_ways),
                               llc=E.CacheLevelConfig(self.llc_bytes, self.llc_ways),
                               cpus=cpus)
        return E.PathConfig(tlb=tlb, caches=caches, stage1=g)


def linear_map_mask(trace) -> np.ndarray:
    """Per reference: inside the linear map of the capture's layout."""
    from ..capture import layout as L

    try:
        lay = L.Layout.from_json(trace.manifest["layout"])
    except (KeyError, TypeError) as e:
        raise KmmError(f"the trace's manifest has no layout ({e})",
                       str(trace.meta.get("source"))) from None
    lo = np.uint64(lay.page_offset)
    hi = np.uint64(lay.page_offset + lay.linear_size)
    return (trace.address >= lo) & (trace.address < hi)


def leaf_levels(trace, mapping: str) -> np.ndarray:
    """Per reference, the stage-1 leaf level that maps it under ``mapping``."""
    return np.where(linear_map_mask(trace), np.int8(mapping_level(mapping)), np.int8(3))


def translations(trace, levels: np.ndarray, sel: np.ndarray | None = None) -> int:
    """Distinct leaf mappings (pages or blocks) the references ``sel`` touch."""
    from .. import engine as E

    g = E.arm64("4K", 48)
    va, lv = (trace.address, levels) if sel is None else (trace.address[sel], levels[sel])
    shifts = np.array([g.level_shift(int(x)) if x >= g.start_level else 64
                       for x in range(4)], np.uint64)
    keys = (va >> shifts[lv]) * np.uint64(4) + lv.astype(np.uint64)
    return int(np.unique(keys).size)


def simulate(trace, mapping: str, machine: Machine = Machine(), warm_fraction: float = 0.0
             ) -> dict[str, Any]:
    """Run ``trace`` (a :class:`kmm.kmmt.KernelTrace`) through ``machine`` with the linear
    map mapped as ``mapping``; the first ``warm_fraction`` of the references warms the
    machine and is not counted. Returns ``instructions`` (fetches counted), ``result`` (a
    :class:`kmm.walk.PathResult` of the counted part, ``by_tag`` per region code) and
    ``counted`` (the slice counted)."""
    from .. import engine as E

    check_float("warm_fraction", warm_fraction, lo=0.0, hi=0.9)
    n = len(trace)
    if n == 0:
        raise KmmError("the trace holds no references", str(trace.meta.get("source")))
    cpus = int(trace.cpu.max()) + 1
    regions = int(trace.region.max()) + 1
    path = E.Path(machine.path_config(cpus), tags=regions)
    pa = np.where(trace.pa == np.uint64(0xFFFF_FFFF_FFFF_FFFF), trace.address, trace.pa)
    leaf = leaf_levels(trace, mapping)
    warm = int(n * warm_fraction)

    def run(sl):
        return path.run(trace.address[sl], kind=trace.kind[sl], global_=trace.global_[sl],
                        pa=pa[sl], cpu=trace.cpu[sl], leaf_level=leaf[sl],
                        tag=trace.region[sl])

    before = run(slice(0, warm)) if warm else path.result()
    after = run(slice(warm, n))
    counted = slice(warm, n)
    return {"result": after - before, "counted": counted, "leaf": leaf,
            "instructions": int(np.count_nonzero(trace.kind[counted] == E.KIND_IFETCH))}


def metrics(trace, mapping: str, machine: Machine = Machine(), warm_fraction: float = 0.0
            ) -> dict[str, dict[str, tuple[float, str]]]:
    """Per region name (and :data:`ALL`): metric -> (value, unit) of one trace under one
    mapping. References, pages, footprints and translations are of the whole window given;
    instructions, loads, stores, misses and walks of the part after the warm-up, and every
    MPKI per thousand of its instructions (a region's: its own misses per thousand of all)."""
    from .. import engine as E
    from .. import metrics as M
    from ..capture.run import region_stats

    sim = simulate(trace, mapping, machine, warm_fraction)
    r, k, leaf, counted = sim["result"], sim["instructions"], sim["leaf"], sim["counted"]
    pages = int(np.unique(trace.address >> np.uint64(PAGE_SHIFT)).size)
    out = {ALL: {
        "refs": (len(trace), "count"), "pages": (pages, "count"),
        "footprint_bytes": (pages << PAGE_SHIFT, "bytes"),
        "translations": (translations(trace, leaf), "count"),
        "instructions": (k, "count"),
        "loads": (int(np.count_nonzero(trace.kind[counted] == E.KIND_LOAD)), "count"),
        "stores": (int(np.count_nonzero(trace.kind[counted] == E.KIND_STORE)), "count"),
        "itlb_mpki": (M.mpki(r.tlb.l1i_misses, k), "mpki"),
        "dtlb_mpki": (M.mpki(r.tlb.l1d_misses, k), "mpki"),
        "l2tlb_mpki": (M.mpki(r.tlb.l2_misses, k), "mpki"),
        "walks": (r.walk.walks, "count"),
        "walk_refs": (r.walk.refs, "count"),
        "l1i_mpki": (M.mpki(r.cache.l1i_misses, k), "mpki"),
        "l1d_mpki": (M.mpki(r.cache.l1d_misses, k), "mpki"),
        "l2_mpki": (M.mpki(r.cache.l2_misses, k), "mpki"),
        "llc_mpki": (M.mpki(r.cache.llc_misses, k), "mpki"),
    }}
    # per region: the counts `kmm trace info` prints (kmm.capture.run.region_stats)
    stats = region_stats({"region": trace.region, "kind": trace.kind, "va": trace.address,
                          "el": trace.el})
    codes = {name: code for code, name in trace.region_names().items()}
    for name, st in stats.items():
        row = r.by_tag[codes[name]]
        out[name] = {
            "refs": (st["refs"], "count"), "pages": (st["pages"], "count"),
            "footprint_bytes": (st["footprint_bytes"], "bytes"),
            "translations": (translations(trace, leaf, trace.region == codes[name]), "count"),
            "l1_tlb_mpki": (M.mpki(row[E.TagEvent.L1_TLB_MISSES], k), "mpki"),
            "walk_pki": (M.mpki(row[E.TagEvent.WALKS], k), "mpki"),
            "walks": (int(row[E.TagEvent.WALKS]), "count"),
        }
    return out


def load(name: str, max_refs: int):
    """The shipped trace of scenario ``name``, cut to its first ``max_refs`` references."""
    from .. import traces

    check_int("max_refs", max_refs, lo=1)
    paths = {p.stem: p for p in traces.shipped_kernel_traces()}
    if name not in paths:
        raise ConfigError(f"no shipped kernel trace {name!r}; shipped: "
                          f"{', '.join(sorted(paths))}", "traces")
    t = traces.read_kernel_trace(paths[name])
    return t[:max_refs]


def trace_frame(traces: Sequence[str], mappings: Sequence[str], *, max_refs: int,
                warm_fraction: float, machine: Machine, scenario: str,
                seed: int = 0) -> "pl.DataFrame":
    """The tidy frame of every trace in ``traces`` under every linear-map mapping of
    ``mappings``: one row per (trace, mapping, region, metric); ``region`` is
    :data:`ALL` for the window's totals."""
    from .. import results

    if not traces or not mappings:
        raise ConfigError("name at least one trace and one mapping", "traces")
    for m in mappings:
        mapping_level(m)
    rows = []
    for name in dict.fromkeys(traces):
        t = load(name, max_refs)
        for mapping in dict.fromkeys(mappings):
            per_region = metrics(t, mapping, machine, warm_fraction)
            for region, values in per_region.items():
                rows += results.rows_for(
                    scenario, {"trace": name, "mapping": mapping, "region": region,
                               "max_refs": max_refs, "warm_fraction": warm_fraction,
                               **asdict(machine)}, seed, values)
    return results.frame(rows)


def mapping_level(mapping: str) -> int:
    """The leaf level of ``mapping`` (a ConfigError naming the allowed ones otherwise)."""
    if mapping not in MAPPINGS:
        raise ConfigError(f"unknown linear-map mapping {mapping!r}; allowed: "
                          f"{', '.join(MAPPINGS)}", "mappings")
    return MAPPINGS[mapping]


#: The metrics :func:`headline` puts side by side.
HEADLINE = ("instructions", "footprint_bytes", "translations", "itlb_mpki", "dtlb_mpki",
            "l2tlb_mpki", "l1i_mpki", "l1d_mpki", "l2_mpki", "llc_mpki")


def headline(df: "pl.DataFrame") -> "pl.DataFrame":
    """One row per (trace, mapping): the window's totals of :data:`HEADLINE`."""
    import polars as pl

    tot = df.filter((pl.col("region") == ALL) & pl.col("metric").is_in(HEADLINE))
    wide = tot.pivot(on="metric", index=["trace", "mapping"], values="value")
    order = {m: i for i, m in enumerate(MAPPINGS)}
    return wide.with_columns(pl.col("mapping").replace_strict(order, return_dtype=pl.Int64)
                             .alias("_o")).sort(["trace", "_o"]).drop("_o") \
        .select(["trace", "mapping", *[m for m in HEADLINE if m in wide.columns]])
