"""What the shipped kernel traces hold, and the TLB and cache miss rates kmm computes on them.

For each captured scenario (``kmm/data/traces/*.kmmt``) and each mapping of the kernel's
linear map, :func:`trace_frame` gives a tidy frame (:mod:`kmm.results`) of

- the window: references, instructions (one per 4-byte fetch), loads, stores;
- per region (:class:`kmm.capture.layout.Region`) and in all: references, 4 KiB pages
  touched, footprint bytes (pages x 4 KiB: on a whole trace, the numbers ``kmm trace info``
  prints from the manifest, here computed on the window simulated, :class:`Window`), and the
  translations the window needs (distinct leaf mappings touched: pages, or blocks
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
(kernel image, vmalloc, stacks, modules, vmemmap, user) is mapped with 4 KiB pages without
the contiguous hint in every mapping, as :mod:`kmm.mech.bbml2_perf` maps them (the real
kernel image may use larger leaves where its segments allow; that is left out). The capture VM's RAM is 1 GiB at a
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

    @classmethod
    def of(cls, values) -> "Machine":
        """The machine of the fields of ``values`` (e.g. a notebook's parameters) that name
        one of its fields; the others keep their defaults."""
        from dataclasses import fields

        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

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


def linear_range(trace) -> tuple[int, int]:
    """``[PAGE_OFFSET, PAGE_OFFSET + linear size)`` of the capture's layout."""
    from ..capture import layout as L

    try:
        lay = L.Layout.from_json(trace.manifest["layout"])
    except (KeyError, TypeError) as e:
        raise KmmError(f"the trace's manifest has no layout ({e})",
                       str(trace.meta.get("source"))) from None
    return lay.page_offset, lay.page_offset + lay.linear_size


def _in_range(va: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    return (va >= np.uint64(span[0])) & (va < np.uint64(span[1]))


def mapping_level(mapping: str) -> int:
    """The leaf level of a linear-map reference under ``mapping`` (a ConfigError naming the
    allowed mappings otherwise)."""
    if mapping not in MAPPINGS:
        raise ConfigError(f"unknown linear-map mapping {mapping!r}; allowed: "
                          f"{', '.join(MAPPINGS)}", "mappings")
    return MAPPINGS[mapping]


def leaf_levels(trace, mapping: str) -> np.ndarray:
    """Per reference, the stage-1 leaf level that maps it under ``mapping``."""
    return np.where(_in_range(trace.address, linear_range(trace)),
                    np.int8(mapping_level(mapping)), np.int8(3))


@dataclass(frozen=True)
class Window:
    """What a trace window touches, whatever the mapping: per region code, its references,
    loads, stores and fetches (``refs[code]`` ...), and the distinct 4 KiB pages touched
    (``page_region``, ``page`` (virtual page numbers), ``page_linear``: inside the linear
    map), sorted by region then page."""

    refs: np.ndarray
    fetches: np.ndarray
    loads: np.ndarray
    stores: np.ndarray
    page_region: np.ndarray
    page: np.ndarray
    page_linear: np.ndarray

    @classmethod
    def of(cls, trace) -> "Window":
        from .. import engine as E

        regions = int(trace.region.max(initial=0)) + 1
        count = lambda sel: np.bincount(trace.region[sel], minlength=regions)  # noqa: E731
        page_bits = np.uint64(64 - PAGE_SHIFT)
        keys = np.unique((trace.region.astype(np.uint64) << page_bits)
                         | (trace.address >> np.uint64(PAGE_SHIFT)))
        page = keys & np.uint64((1 << int(page_bits)) - 1)
        lo, hi = linear_range(trace)
        return cls(refs=np.bincount(trace.region, minlength=regions),
                   fetches=count(trace.kind == E.KIND_IFETCH),
                   loads=count(trace.kind == E.KIND_LOAD),
                   stores=count(trace.kind == E.KIND_STORE),
                   page_region=(keys >> page_bits).astype(np.int64), page=page,
                   page_linear=_in_range(page << np.uint64(PAGE_SHIFT), (lo, hi)))

    def pages(self, code: int | None = None) -> int:
        """Distinct 4 KiB pages touched in region ``code`` (None: in all)."""
        if code is None:
            return int(np.unique(self.page).size)
        return int(np.count_nonzero(self.page_region == code))

    def translations(self, mapping: str, code: int | None = None) -> int:
        """Distinct leaf mappings (4 KiB pages, or blocks of a block-mapped linear map)
        region ``code`` touches (None: all regions)."""
        from .. import engine as E

        level = mapping_level(mapping)
        sel = slice(None) if code is None else self.page_region == code
        page, linear = self.page[sel], self.page_linear[sel]
        block = np.uint64(E.arm64("4K", 48).level_shift(level) - PAGE_SHIFT)
        leaves = np.where(linear, (page >> block) << block, page)
        return int(np.unique(leaves).size)


def simulate(trace, mapping: str, machine: Machine = Machine(), warm_fraction: float = 0.0
             ) -> dict[str, Any]:
    """Run ``trace`` (a :class:`kmm.kmmt.KernelTrace`) through ``machine`` with the linear
    map mapped as ``mapping``; the first ``warm_fraction`` of the references warms the
    machine and is not counted. Returns ``result`` (a :class:`kmm.walk.PathResult` of the
    counted part, its ``by_tag`` row per region code) and ``counted`` (the slice counted)."""
    from .. import engine as E

    check_float("warm_fraction", warm_fraction, lo=0.0, hi=0.9)
    n = len(trace)
    if n == 0:
        raise KmmError("the trace holds no references", str(trace.meta.get("source")))
    cpus = int(trace.cpu.max()) + 1
    path = E.Path(machine.path_config(cpus), tags=int(trace.region.max()) + 1)
    pa = np.where(trace.pa == np.uint64(0xFFFF_FFFF_FFFF_FFFF), trace.address, trace.pa)
    leaf = leaf_levels(trace, mapping)
    warm = int(n * warm_fraction)

    def run(sl):
        return path.run(trace.address[sl], kind=trace.kind[sl], global_=trace.global_[sl],
                        pa=pa[sl], cpu=trace.cpu[sl], leaf_level=leaf[sl],
                        tag=trace.region[sl])

    before = run(slice(0, warm)) if warm else path.result()
    return {"result": run(slice(warm, n)) - before, "counted": slice(warm, n)}


def metrics(trace, mapping: str, machine: Machine = Machine(), warm_fraction: float = 0.0,
            window: Window | None = None) -> dict[str, dict[str, tuple[float, str]]]:
    """Per region name (and :data:`ALL`): metric -> (value, unit) of one trace under one
    mapping. References, pages, footprints and translations are of the whole window given
    (``window``: its :class:`Window`, if already made); instructions, loads, stores, misses
    and walks of the part after the warm-up, and every rate per thousand of its
    instructions (a region's: its own misses or walks per thousand of all)."""
    from .. import engine as E
    from .. import metrics as M

    w = Window.of(trace) if window is None else window
    sim = simulate(trace, mapping, machine, warm_fraction)
    r, counted = sim["result"], sim["counted"]
    kind = trace.kind[counted]
    k = int(np.count_nonzero(kind == E.KIND_IFETCH))
    pages = w.pages()
    out = {ALL: {
        "refs": (len(trace), "count"), "pages": (pages, "count"),
        "footprint_bytes": (pages << PAGE_SHIFT, "bytes"),
        "translations": (w.translations(mapping), "count"),
        "instructions": (k, "count"),
        "loads": (int(np.count_nonzero(kind == E.KIND_LOAD)), "count"),
        "stores": (int(np.count_nonzero(kind == E.KIND_STORE)), "count"),
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
    for code, name in sorted(trace.region_names().items()):
        if code >= w.refs.size or not w.refs[code]:
            continue
        row = r.by_tag[code]
        pages = w.pages(code)
        out[name] = {
            "refs": (int(w.refs[code]), "count"), "pages": (pages, "count"),
            "footprint_bytes": (pages << PAGE_SHIFT, "bytes"),
            "translations": (w.translations(mapping, code), "count"),
            "l1_tlb_mpki": (M.mpki(row[E.TagEvent.L1_TLB_MISSES], k), "mpki"),
            "walk_pki": (M.mpki(row[E.TagEvent.WALKS], k), "mpki"),
            "walks": (int(row[E.TagEvent.WALKS]), "count"),
        }
    return out


def load(name: str, max_refs: int):
    """The shipped trace of scenario ``name``, cut to its first ``max_refs`` references."""
    from .. import traces

    check_int("max_refs", max_refs, lo=1)
    return traces.read_shipped_trace(name, where="traces")[:max_refs]


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
        window = Window.of(t)
        for mapping in dict.fromkeys(mappings):
            per_region = metrics(t, mapping, machine, warm_fraction, window)
            for region, values in per_region.items():
                rows += results.rows_for(
                    scenario, {"trace": name, "mapping": mapping, "region": region,
                               "max_refs": max_refs, "warm_fraction": warm_fraction,
                               **asdict(machine)}, seed, values)
    return results.frame(rows)


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
