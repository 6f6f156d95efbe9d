"""Page allocation for Address Space Isolation (ASI): the RFC design and its alternatives.

ASI runs the kernel in a second, "restricted" address space whose physmap leaves sensitive
memory unmapped (LSF/MM/BPF 2025 topic "Page allocation for ASI", ASI RFC v1/v2). Mapping a
page there is cheap; unmapping it needs a TLB shootdown, since other CPUs may hold its
translation; memory that held sensitive data must be zeroed before it is mapped. This module
runs allocation/free streams through :mod:`kmm.buddy` (pageblocks, migratetypes, fallbacks),
tracks per page (the buddy's flag bits) whether it is mapped in the restricted physmap,
holds sensitive data, or was unmapped while clean, keeps per-CPU TLBs of restricted-space
translations (:mod:`kmm.tlb`) filled by accesses, and invalidates them with
:mod:`kmm.invalidate`, so a stale translation survives exactly until its shootdown.

Policies (:class:`Policy`), one code path each:

0. ``NONE``: no restricted address space (baseline).
1. ``RFC``: every free page is unmapped; a nonsensitive allocation maps its pages at the end
   of allocation (zeroing those that held sensitive data); a freed nonsensitive block goes
   on a queue that a worker drains every ``worker_interval_ns`` (or when it holds
   ``worker_batch_pages``), unmapping the batch with one shootdown before the pages return to
   the free lists; an allocation that fails waits for the queue (direct reclaim).
2. ``TRACKED``: sensitivity is part of the migratetype (three mobility types per
   sensitivity); free nonsensitive pages stay mapped; allocations prefer their own
   sensitivity's free lists (the mobility fallbacks of mm/page_alloc.c within it, then the
   other sensitivity); a pageblock changes sensitivity only on fallback: to sensitive, its
   free pages are unmapped with one shootdown; to nonsensitive, its free pages are zeroed
   where needed and mapped (:class:`Zeroing` ``EAGER``), or (``LAZY``) only its clean free
   pages are mapped and those holding sensitive data stay unmapped, marked
   ``F_ZERO_DEFERRED``, until a nonsensitive allocation takes them (zeroed, then mapped) or
   a sensitive one does (never zeroed).
3. ``TRACKED_TARGET``: policy 2, plus a worker that, when more than
   ``target_free_mapped_pages`` free pages are mapped, converts the nonsensitive pageblocks
   with the most free mapped pages back to sensitive (one shootdown per run).
4. ``SYNC_FLUSH``: like ``RFC`` but every nonsensitive free unmaps and shoots down at once.

Where the shootdown that lets a sensitive allocation take nonsensitive memory ranks in the
allocation path (policies 2 and 3, :class:`FlushRank`; the topic's question "how is that
prioritised and structured wrt. direct compact/reclaim"): ``FAST_PATH`` (the default) lets
``__rmqueue``'s fallbacks cross sensitivity like any migratetype fallback; otherwise the
fast path stays within the allocation's sensitivity and, when it fails, the slow path runs
direct compaction, direct reclaim and the cross-sensitivity fallback (convert, unmap, shoot
down) in the order the rank names: ``FIRST`` flush, compact, reclaim;
``AFTER_COMPACTION`` compact, flush, reclaim; ``AFTER_RECLAIM`` compact, reclaim, flush.
Compaction (order 1 to pageblock_order only, as ``__alloc_pages_direct_compact`` skips
order 0) picks the aligned range of a sensitive pageblock that needs the fewest pages
migrated, holding only free pages and movable sensitive blocks, isolates the pageblock
(``MIGRATE_ISOLATE``), moves each block to a free block of its own sensitivity elsewhere,
then restores the pageblock's type. Reclaim frees up to ``reclaim_batch_pages`` pages of
live reclaimable allocations (clean page cache), oldest first, then retries, at most
``MAX_RECLAIM_RETRIES`` rounds; an allocation so reclaimed is not freed again by the stream.
Nonsensitive allocations never need a shootdown to be satisfied and keep the full fallbacks.

Whatever the policy, a page handed to a sensitive allocation is unmapped and shot down
before it is returned, and a page handed to a nonsensitive one is zeroed (if it held
sensitive data) and mapped; the policies differ in how often those cases arise.

Restricted physmap designs (:class:`Physmap`): ``ON_DEMAND`` (the RFC: page-table pages
allocated when a page is first mapped in a region with no table), ``SYNCED`` (kept in sync
with the unrestricted physmap at PTE level, differing only in the present bit: every table
exists from boot) and ``SYNCED_BLOCKS`` (in sync, but a pageblock whose pages are all mapped
is one block leaf; making its pages differ splits it, allocating a PTE table). Page-table
pages come from a separate reserve, not from the modelled pool.

The invariant — no page that holds sensitive data (allocated sensitive, or freed and not yet
zeroed) is mapped in the restricted physmap or covered by a TLB entry of any CPU — can be
checked after every operation (``check_invariant``; :attr:`AsiEvent.VIOLATIONS`).

Not modelled: per-CPU page lists; compaction and reclaim outside the slow path of
sensitive allocations (kcompactd, kswapd, watermarks), compaction of orders above the
pageblock, compaction deferral, the refaults that reclaimed page cache costs later; the RFC
policies' only reclaim is waiting on their queue.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from .. import engine as eng
from ..config import check_choice, check_float, check_int
from ..engine import (FLAG_GLOBAL, HOST_VMID, KIND_LOAD, MT_MOVABLE, TLB_L1D, TLB_L1I, TLB_L2,
                      alloc_block, convert_pageblock, entry_span, flush_kernel_range,
                      free_block, njit, pool_pages, structure_entries, tlb_cpus, tlb_translate,
                      xorshift64)
from ..sampling import latin_hypercube
from ..counters import Counters, new_counts
from ..errors import ConfigError


class Policy(IntEnum):
    NONE = 0
    RFC = 1
    TRACKED = 2
    TRACKED_TARGET = 3
    SYNC_FLUSH = 4


class FlushRank(IntEnum):
    """Where the cross-sensitivity fallback (its unmap and shootdown) ranks, for sensitive
    allocations under policies 2 and 3 (see the module docstring)."""

    FAST_PATH = 0         # an ordinary __rmqueue fallback (no slow path)
    FIRST = 1             # slow path: flush, compaction, reclaim
    AFTER_COMPACTION = 2  # slow path: compaction, flush, reclaim
    AFTER_RECLAIM = 3     # slow path: compaction, reclaim, flush


class Zeroing(IntEnum):
    """When policies 2 and 3 zero the formerly sensitive free pages of a pageblock turning
    nonsensitive."""

    EAGER = 0   # at the conversion, with the mapping of every free page
    LAZY = 1    # when a nonsensitive allocation takes the page; never if a sensitive one does


class Physmap(IntEnum):
    ON_DEMAND = 0
    SYNCED = 1
    SYNCED_BLOCKS = 2


class AsiEvent(IntEnum):
    """ASI counters (ns counters are whole ns)."""

    ALLOCS = 0
    ALLOC_FAILURES = 1
    FREES = 2
    SENSITIVE_ALLOCS = 3
    PAGES_MAPPED = 4
    PAGES_UNMAPPED = 5
    POINTLESS_REMAPS = 6     # pages mapped again after an unmap while they held no sensitive data
    PAGES_ZEROED = 7
    PT_ALLOCS = 8            # page-table pages allocated while allocating
    PT_PAGES_BOOT = 9        # page-table pages of the restricted physmap built at boot
    BLOCK_SPLITS = 10
    FLUSHES = 11             # shootdowns requested by ASI
    WORKER_RUNS = 12
    WORKER_NS = 13
    WORKER_PAGES = 14
    RECLAIM_WAITS = 15
    RECLAIM_WAIT_NS = 16
    ALLOC_NS = 17            # sum of allocation latencies
    FREE_NS = 18             # sum of free-path latencies
    TO_SENSITIVE = 19        # pageblocks converted nonsensitive -> sensitive (fallback)
    TO_NONSENSITIVE = 20
    TARGET_CONVERSIONS = 21  # pageblocks converted by the free-mapped target worker
    VIOLATIONS = 22
    TOUCHES = 23
    MIXED_PAGEBLOCK_SUM = 24  # sum over samples of pageblocks with mapped and unmapped pages
    SAMPLES = 25
    ZERO_NS = 26
    MAP_NS = 27
    UNMAP_NS = 28
    FLUSH_NS = 29            # initiator time of ASI's shootdowns
    PT_ALLOC_NS = 30
    ZEROED_ON_CONVERSION = 31  # pages zeroed when a pageblock turned nonsensitive
    SLOWPATH_ENTRIES = 32    # sensitive allocations whose own-sensitivity fast path failed
    SLOW_FLUSH_ALLOCS = 33   # ... satisfied by the cross-sensitivity fallback step
    COMPACTIONS = 34         # direct compaction attempts
    COMPACT_ALLOCS = 35      # ... after which the allocation succeeded
    PAGES_MIGRATED = 36
    MIGRATE_NS = 37
    DIRECT_RECLAIMS = 38     # reclaim rounds
    PAGES_RECLAIMED = 39
    DIRECT_RECLAIM_NS = 40
    RECLAIMED_FREES = 41     # frees in the stream of allocations reclaimed before
    ZERO_DEFERRED = 42       # formerly sensitive free pages a lazy conversion left unmapped
    ZEROED_DEFERRED = 43     # ... zeroed (and mapped) when allocated nonsensitive
    DEFERRED_TO_SENSITIVE = 44  # ... handed to a sensitive allocation, never zeroed
    DEFERRED_DROPPED = 45    # ... whose pageblock turned sensitive again (still unzeroed)


class BurstSource(IntEnum):
    """What a logged burst of ASI housekeeping work was."""

    WORKER = 0        # the RFC queue worker
    TARGET = 1        # the free-mapped target worker
    CONVERSION = 2    # a pageblock conversion inside an allocation
    FREE_FLUSH = 3    # a synchronous unmap + shootdown on free
    RECLAIM = 4       # an allocation draining the queue itself
    COMPACTION = 5    # direct compaction in a sensitive allocation's slow path
    DIRECT_RECLAIM = 6  # direct reclaim in a sensitive allocation's slow path


# per-page flag bits (kmm.buddy flags)
F_MAPPED = 1       # present in the restricted physmap
F_DIRTY = 2        # free (or queued) and still holds sensitive data
F_SENS = 4         # allocated to a sensitive user
F_UNMAPPED_NS = 8  # unmapped while holding no sensitive data (a remap would be pointless)
F_QUEUED = 16      # on the RFC free queue
F_ZERO_DEFERRED = 32  # free, holds sensitive data, in a pageblock a lazy conversion made
                      # nonsensitive: zeroed before it is ever mapped (implies F_DIRTY)

_NOT_CLEAN = F_DIRTY | F_SENS | F_ZERO_DEFERRED

#: mm/page_alloc.c: direct reclaim rounds before an allocation gives up
MAX_RECLAIM_RETRIES = 16
#: tracked_migrate_table(): codes 0-2 sensitive, 3-5 nonsensitive, 6 isolated (compaction)
MT_ISOLATE = 6


@dataclass(frozen=True)
class AsiCosts:
    """Costs in ns per operation; sources in :attr:`sources` (``assumed`` ones are swept)."""

    alloc_base_ns: float = 150.0
    free_base_ns: float = 100.0
    map_page_ns: float = 20.0
    unmap_page_ns: float = 20.0
    zero_page_ns: float = 400.0
    pt_alloc_ns: float = 700.0
    enqueue_ns: float = 30.0
    worker_wake_ns: float = 2000.0
    migrate_page_ns: float = 2000.0
    reclaim_page_ns: float = 1000.0
    sources: dict = field(default_factory=lambda: {
        "alloc_base_ns": "assumed (fast-path buddy allocation)",
        "free_base_ns": "assumed",
        "map_page_ns": "assumed (one PTE store with the table present)",
        "unmap_page_ns": "assumed (one PTE clear; the shootdown is costed by kmm.invalidate)",
        "zero_page_ns": "assumed (clear_page of 4 KiB at about 10 GB/s per core; scaled by "
                        "page size)",
        "pt_alloc_ns": "assumed (allocate and zero a table page, install it)",
        "enqueue_ns": "assumed",
        "worker_wake_ns": "assumed (wake-up and context switch of the worker)",
        "migrate_page_ns": "assumed (migrate one 4 KiB page: unmap its mappings, copy, "
                           "remap; scaled by page size)",
        "reclaim_page_ns": "assumed (reclaim one clean page-cache page off the LRU)",
    })

    def __post_init__(self):
        for f in fields(self):
            if f.name != "sources":
                check_float(f.name, getattr(self, f.name), lo=0.0)
        missing = [f.name for f in fields(self) if f.name != "sources" and f.name not in self.sources]
        if missing:
            raise ConfigError(f"no source given for {missing}", "sources")


@dataclass(frozen=True)
class AsiConfig:
    """One ASI simulation.

    Parameters
    ----------
    policy : :class:`Policy`
    physmap : :class:`Physmap` design of the restricted physmap
    granule : ``"4K"``, ``"16K"`` or ``"64K"`` (arm64 geometry: page, MAX_PAGE_ORDER and
        pageblock sizes); ``max_order`` / ``pageblock_order`` override it (small tests)
    pool_bytes : size of the simulated pool
    cpus : CPUs holding restricted-space TLB entries
    method : :class:`kmm.invalidate.Method` of the shootdowns (the ASI RFCs are x86)
    costs, inval_costs : :class:`AsiCosts`, :class:`kmm.invalidate.InvalidationCosts`
    target_free_mapped_pages : policy 3's target
    flush_rank : :class:`FlushRank` (policies 2 and 3)
    zeroing : :class:`Zeroing` (policies 2 and 3)
    reclaim_batch_pages : pages one direct reclaim round frees (``SWAP_CLUSTER_MAX``)
    worker_interval_ns, worker_batch_pages : RFC worker period and the queue size that
        wakes it early
    op_interval_ns : time between operations of the stream
    touches_per_op : restricted-space accesses to random live nonsensitive blocks per
        operation, by random CPUs (what fills other CPUs' TLBs)
    tlb_entries, tlb_ways : each CPU's TLB of restricted-space translations
    check_invariant : check the invariant after every operation (slow: tests)
    sample_every : operations between samples of mixed pageblocks
    """

    policy: Policy = Policy.RFC
    physmap: Physmap = Physmap.ON_DEMAND
    granule: str = "4K"
    pool_bytes: int = 1 << 30
    cpus: int = 8
    method: eng.Method = eng.Method.X86_IPI
    costs: AsiCosts = field(default_factory=AsiCosts)
    inval_costs: eng.InvalidationCosts = field(default_factory=eng.InvalidationCosts)
    target_free_mapped_pages: int = 0
    flush_rank: FlushRank = FlushRank.FAST_PATH
    zeroing: Zeroing = Zeroing.EAGER
    reclaim_batch_pages: int = 32
    worker_interval_ns: int = 1_000_000
    worker_batch_pages: int = 512
    op_interval_ns: int = 1000
    touches_per_op: int = 1
    tlb_entries: int = 64
    tlb_ways: int = 4
    check_invariant: bool = False
    sample_every: int = 1000
    max_order: int | None = None
    pageblock_order: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "policy", Policy(self.policy))
        object.__setattr__(self, "physmap", Physmap(self.physmap))
        object.__setattr__(self, "method", eng.Method(self.method))
        object.__setattr__(self, "flush_rank", FlushRank(self.flush_rank))
        object.__setattr__(self, "zeroing", Zeroing(self.zeroing))
        if not self.tracked:
            for name, default in (("flush_rank", FlushRank.FAST_PATH),
                                  ("zeroing", Zeroing.EAGER)):
                if getattr(self, name) != default:
                    raise ConfigError("applies to the tracked policies (2, 3) only", name)
        check_int("reclaim_batch_pages", self.reclaim_batch_pages, lo=1)
        check_choice("granule", self.granule, eng.GRANULES)
        check_int("pool_bytes", self.pool_bytes, lo=1)
        check_int("cpus", self.cpus, lo=1, hi=1024)
        check_int("target_free_mapped_pages", self.target_free_mapped_pages, lo=0)
        check_int("worker_interval_ns", self.worker_interval_ns, lo=1)
        check_int("worker_batch_pages", self.worker_batch_pages, lo=1)
        check_int("op_interval_ns", self.op_interval_ns, lo=1)
        check_int("touches_per_op", self.touches_per_op, lo=0, hi=64)
        check_int("tlb_entries", self.tlb_entries, lo=1)
        check_int("tlb_ways", self.tlb_ways, lo=1)
        check_int("sample_every", self.sample_every, lo=1)
        self.buddy_config()  # validates the pool shape

    @property
    def geometry(self):
        return eng.arm64(self.granule, 48)

    @property
    def tracked(self) -> bool:
        """Sensitivity tracked in the migratetype (policies 2 and 3)."""
        return self.policy in (Policy.TRACKED, Policy.TRACKED_TARGET)

    def buddy_config(self) -> eng.BuddyConfig:
        g = self.geometry
        mo = g.max_page_order if self.max_order is None else self.max_order
        pb = g.pageblock_order if self.pageblock_order is None else self.pageblock_order
        if self.pool_bytes % g.page_bytes:
            raise ConfigError(f"must be a multiple of the {g.page_bytes}-byte page", "pool_bytes")
        table = tracked_migrate_table() if self.tracked else eng.kernel_migrate_table()
        # boot: every pageblock MOVABLE; with tracked sensitivity, MOVABLE-sensitive (unmapped)
        return eng.BuddyConfig(pool_pages=self.pool_bytes >> g.page_shift, max_order=mo,
                                  pageblock_order=pb, table=table,
                                  initial_type=int(eng.MigrateType.MOVABLE))


def tracked_migrate_table() -> eng.MigrateTable:
    """Migratetypes x sensitivity: codes 0-2 sensitive (unmovable, movable, reclaimable),
    3-5 nonsensitive. Each type falls back within its sensitivity as the kernel's
    ``fallbacks[]`` does, then to its own mobility of the other sensitivity, then to that
    sensitivity's fallbacks. Code 6 (:data:`MT_ISOLATE`) is ``MIGRATE_ISOLATE``: no type
    falls back to it and it never merges with another type above the pageblock; a pageblock
    holds it only while compaction empties a range of it."""
    k = eng.kernel_migrate_table()
    names, mob, fb = [], [], []
    for sens in (0, 1):
        off = 3 * sens
        other = 3 - off
        for m in range(3):
            names.append(("s_" if sens == 0 else "n_") + k.names[m])
            mob.append(k.mobility[m])
            fb.append(tuple(off + f for f in k.fallbacks[m]) + (other + m,)
                      + tuple(other + f for f in k.fallbacks[m]))
    names.append("isolate")
    mob.append(int(eng.MigrateType.MOVABLE))
    fb.append(())
    return eng.MigrateTable(names=tuple(names), mobility=tuple(mob), fallbacks=tuple(fb),
                               mergeable=(True,) * 6 + (False,))


def own_sensitivity_fallbacks(fallbacks: np.ndarray) -> np.ndarray:
    """The tracked table's fallbacks array with the sensitive types' cross-sensitivity
    entries removed: what a sensitive allocation's fast path may use when the shootdown is
    ranked in the slow path."""
    fb = fallbacks.copy()
    for mt in range(3):
        row = [int(f) for f in fb[mt] if 0 <= f < 3]
        fb[mt, :] = -1
        fb[mt, :len(row)] = row
    return fb


# ---- kernel state ---------------------------------------------------------------------------

(_P_POLICY, _P_PHYSMAP, _P_NPAGES, _P_PAGE_SHIFT, _P_PB_ORDER, _P_CPUS, _P_TARGET,
 _P_WORKER_NS, _P_WORKER_BATCH, _P_OP_NS, _P_CHECK, _P_BPL, _P_TOUCHES, _P_SAMPLE,
 _P_QN, _P_QPAGES, _P_FREE_MAPPED, _P_NEXT_WORKER, _P_NBURST, _P_NS_N, _P_TRACKED,
 _P_RANK, _P_LAZY, _P_RECLAIM_BATCH, _P_LRU, _P_MAXID, _P_LEN) = range(27)
(_C_ALLOC, _C_FREE, _C_MAP, _C_UNMAP, _C_ZERO, _C_PT, _C_ENQ, _C_WAKE, _C_MIGRATE, _C_RECLAIM,
 _C_LEN) = range(11)
# live[] columns; _L_KIND bits
_L_PFN, _L_ORDER, _L_NSPOS, _L_KIND = 0, 1, 2, 3
_K_SENS, _K_RECLAIM = 1, 2
_R_NONE, _R_TABLE, _R_BLOCK = 0, 1, 2


class AsiState(NamedTuple):
    """Kernel state of the ASI model (built by :func:`build`)."""

    params: np.ndarray      # int64[_P_LEN]
    cost: np.ndarray        # int64[_C_LEN] ns
    region: np.ndarray      # int8[pageblocks]: no table / PTE table / block leaf
    region_mapped: np.ndarray  # int64[pageblocks]: mapped pages
    upper: np.ndarray       # int8[upper tables]: allocated (ON_DEMAND)
    queue: np.ndarray       # int64[pages, 2]: (pfn, order) of queued frees
    live: np.ndarray        # int64[allocs, 4]: pfn (-1 when not allocated), order, position
                            # in the nonsensitive list, _K_* bits
    owner: np.ndarray       # int64[pages]: allocation id of the block headed at pfn, or -1
    ns_list: np.ndarray     # int64[allocs]: ids of live nonsensitive blocks
    lat: np.ndarray         # int64[allocs]: allocation latency ns (-1: failed)
    bursts: np.ndarray      # int64[cap, 4]: time ns, work ns, source, pages
    scratch: np.ndarray     # int64[...]: copy of the buddy conversion log
    tcounts: np.ndarray     # int64[len(TLBEvent)]
    counts: np.ndarray      # int64[len(AsiEvent)]
    own: eng.BuddyState  # the buddy state (same arrays) with own_sensitivity_fallbacks


class Workload(NamedTuple):
    """An operation stream: ``kind`` 0 alloc / 1 free, ``ref`` the allocation's id (ids are
    0..allocs-1 in allocation order), ``order``, ``sens`` (1 sensitive), ``mob``
    (:class:`kmm.buddy.MigrateType`), ``cpu``, ``rnd`` (a random word per operation),
    ``reclaim`` (1: direct reclaim may free the allocation, as clean page cache)."""

    kind: np.ndarray
    ref: np.ndarray
    order: np.ndarray
    sens: np.ndarray
    mob: np.ndarray
    cpu: np.ndarray
    rnd: np.ndarray
    reclaim: np.ndarray


_kernel = njit(_nrt=False)


@_kernel
def _burst(ast, t, ns, source, pages):
    n = ast.params[_P_NBURST]
    if n < ast.bursts.shape[0]:
        ast.bursts[n, 0] = t
        ast.bursts[n, 1] = ns
        ast.bursts[n, 2] = source
        ast.bursts[n, 3] = pages
        ast.params[_P_NBURST] = n + 1


@_kernel
def _worker_run(ast, t, ns, source, pages):
    """Count one run of a background worker and log it as a burst."""
    ast.counts[AsiEvent.WORKER_RUNS] += 1
    ast.counts[AsiEvent.WORKER_NS] += ns
    ast.counts[AsiEvent.WORKER_PAGES] += pages
    _burst(ast, t, ns, source, pages)


@_kernel
def _pt_alloc(ast):
    ast.counts[AsiEvent.PT_ALLOCS] += 1
    ast.counts[AsiEvent.PT_ALLOC_NS] += ast.cost[_C_PT]
    return ast.cost[_C_PT]


@_kernel
def _region_update(ast, r):
    """The restricted physmap's leaf for region ``r`` after its mapped count changed;
    returns the ns of any page-table allocation it needed."""
    design = ast.params[_P_PHYSMAP]
    m = ast.region_mapped[r]
    if design == 0:  # ON_DEMAND: a PTE table on first mapping, and its upper table
        ns = 0
        if m > 0 and ast.region[r] == _R_NONE:
            ast.region[r] = _R_TABLE
            ns += _pt_alloc(ast)
            u = r >> ast.params[_P_BPL]
            if ast.upper[u] == 0:
                ast.upper[u] = 1
                ns += _pt_alloc(ast)
        return ns
    if design == 1:
        return 0
    full = np.int64(1) << ast.params[_P_PB_ORDER]
    st = ast.region[r]
    if st == _R_TABLE:
        return 0
    if m == full:
        ast.region[r] = _R_BLOCK
        return 0
    if m == 0:
        ast.region[r] = _R_NONE
        return 0
    ast.region[r] = _R_TABLE  # mixed: split the block (or an empty block) into a PTE table
    ast.counts[AsiEvent.BLOCK_SPLITS] += 1
    return _pt_alloc(ast)


@_kernel
def _regions_update(ast, pfn, n):
    pb = ast.params[_P_PB_ORDER]
    ns = 0
    for r in range(pfn >> pb, ((pfn + n - 1) >> pb) + 1):
        ns += _region_update(ast, r)
    return ns


@_kernel
def _map_range(bst, ast, pfn, n, upd):
    """Map every unmapped page of [pfn, pfn+n), zeroing those holding sensitive data; with
    ``upd`` bring the physmap leaves of its regions up to date (else the caller does, once
    every change of the operation is made). Returns (ns, pages that were already mapped)."""
    ns = 0
    was = 0
    pb = ast.params[_P_PB_ORDER]
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if f & F_MAPPED:
            was += 1
            continue
        if f & F_DIRTY:
            ns += ast.cost[_C_ZERO]
            ast.counts[AsiEvent.PAGES_ZEROED] += 1
            ast.counts[AsiEvent.ZERO_NS] += ast.cost[_C_ZERO]
            if f & F_ZERO_DEFERRED:
                ast.counts[AsiEvent.ZEROED_DEFERRED] += 1
            f &= ~(F_DIRTY | F_ZERO_DEFERRED)
        if f & F_UNMAPPED_NS:
            ast.counts[AsiEvent.POINTLESS_REMAPS] += 1
            f &= ~F_UNMAPPED_NS
        bst.flags[p] = f | F_MAPPED
        ns += ast.cost[_C_MAP]
        ast.counts[AsiEvent.MAP_NS] += ast.cost[_C_MAP]
        ast.counts[AsiEvent.PAGES_MAPPED] += 1
        ast.region_mapped[p >> pb] += 1
    if upd:
        ns += _regions_update(ast, pfn, n)
    return ns, was


@_kernel
def _map_clean_range(bst, ast, pfn, n):
    """Lazy conversion to nonsensitive: map the clean unmapped pages of [pfn, pfn+n); leave
    those holding sensitive data unmapped, marked ``F_ZERO_DEFERRED``. Physmap leaves are
    the caller's. Returns (ns, pages that were already mapped, pages deferred)."""
    ns = 0
    was = 0
    deferred = 0
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if f & F_MAPPED:
            was += 1
        elif f & F_DIRTY:
            if not f & F_ZERO_DEFERRED:
                bst.flags[p] = f | F_ZERO_DEFERRED
                ast.counts[AsiEvent.ZERO_DEFERRED] += 1
            deferred += 1
        else:
            ns += _map_range(bst, ast, p, 1, False)[0]
    return ns, was, deferred


@_kernel
def _mark_sensitive(bst, ast, pfn, n):
    """Pages [pfn, pfn+n) now belong to a sensitive allocation: whatever they held is
    overwritten by their owner, so no zeroing is due."""
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if f & F_ZERO_DEFERRED:
            ast.counts[AsiEvent.DEFERRED_TO_SENSITIVE] += 1
        bst.flags[p] = (f & ~(F_DIRTY | F_UNMAPPED_NS | F_ZERO_DEFERRED)) | F_SENS


@_kernel
def _unmap_range(bst, ast, pfn, n, upd):
    """Unmap every mapped page of [pfn, pfn+n) (the caller shoots down); ``upd`` as for
    :func:`_map_range`. Returns (ns, pages unmapped)."""
    ns = 0
    k = 0
    pb = ast.params[_P_PB_ORDER]
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if not f & F_MAPPED:
            continue
        f &= ~F_MAPPED
        if not f & _NOT_CLEAN:
            f |= F_UNMAPPED_NS
        bst.flags[p] = f
        k += 1
        ast.region_mapped[p >> pb] -= 1
    if k:
        ns = k * ast.cost[_C_UNMAP]
        ast.counts[AsiEvent.PAGES_UNMAPPED] += k
        ast.counts[AsiEvent.UNMAP_NS] += ns
        if upd:
            ns += _regions_update(ast, pfn, n)
    return ns, k


@_kernel
def _shootdown(tst, ist, ast, cpu, lo, hi):
    """One kernel-range shootdown of pfns [lo, hi) of the restricted physmap."""
    sh = ast.params[_P_PAGE_SHIFT]
    ns = flush_kernel_range(tst, ist, cpu, lo << sh, hi << sh, sh)
    ast.counts[AsiEvent.FLUSHES] += 1
    ast.counts[AsiEvent.FLUSH_NS] += ns
    return ns


@_kernel
def _touch(tst, ast, cpu, pfn):
    """A restricted-space access by ``cpu`` to page ``pfn`` (fills its TLB)."""
    sh = ast.params[_P_PAGE_SHIFT]
    r = pfn >> ast.params[_P_PB_ORDER]
    shift = sh + ast.params[_P_PB_ORDER] if ast.region[r] == _R_BLOCK else sh
    tlb_translate(tst, cpu, pfn << sh, KIND_LOAD | FLAG_GLOBAL, shift, 0, HOST_VMID, ast.tcounts)
    ast.counts[AsiEvent.TOUCHES] += 1


@_kernel
def _ns_add(ast, ident):
    n = ast.params[_P_NS_N]
    ast.ns_list[n] = ident
    ast.live[ident, 2] = n
    ast.params[_P_NS_N] = n + 1


@_kernel
def _ns_remove(ast, ident):
    pos = ast.live[ident, 2]
    if pos < 0:
        return
    n = ast.params[_P_NS_N] - 1
    last = ast.ns_list[n]
    ast.ns_list[pos] = last
    ast.live[last, 2] = pos
    ast.live[ident, 2] = -1
    ast.params[_P_NS_N] = n


@_kernel
def _free_mapped_pages_in(bst, base, end):
    """Free pages in [base, end) that are mapped."""
    k = 0
    p = base
    while p < end:
        o = bst.free_order[p]
        if o >= 0:
            for q in range(p, min(p + (np.int64(1) << o), end)):
                if bst.flags[q] & F_MAPPED:
                    k += 1
            p += np.int64(1) << o
        else:
            p += 1
    return k


@_kernel
def _drain_queue(bst, tst, ist, ast, cpu):
    """Unmap every queued block, one shootdown, then free them; returns (ns, pages)."""
    qn = ast.params[_P_QN]
    if qn == 0:
        return 0, 0
    ns = ast.cost[_C_WAKE]
    lo = pool_pages(bst)
    hi = -1
    pages = 0
    for i in range(qn):
        pfn = ast.queue[i, 0]
        n = np.int64(1) << ast.queue[i, 1]
        u, k = _unmap_range(bst, ast, pfn, n, True)
        ns += u
        pages += n
        lo = min(lo, pfn)
        hi = max(hi, pfn + n)
    ns += _shootdown(tst, ist, ast, cpu, lo, hi)
    for i in range(qn):
        pfn = ast.queue[i, 0]
        o = ast.queue[i, 1]
        for p in range(pfn, pfn + (np.int64(1) << o)):
            bst.flags[p] &= ~F_QUEUED
        free_block(bst, pfn, o)
        ns += ast.cost[_C_FREE]
    ast.params[_P_QN] = 0
    ast.params[_P_QPAGES] = 0
    return ns, pages


@_kernel
def _update_free_blocks(bst, ast, base, end, unmap):
    """Unmap every free buddy block in pfns ``[base, end)`` from the restricted space, or
    (``unmap`` false) zero and map them (lazy zeroing: map the clean ones, defer the rest),
    keeping the free-mapped count; returns (ns, pages unmapped)."""
    ns = 0
    pages = 0
    p = base
    while p < end:
        o = bst.free_order[p]
        if o < 0:
            p += 1
            continue
        n = min(np.int64(1) << o, end - p)
        if unmap:
            u, k = _unmap_range(bst, ast, p, n, False)
            ast.params[_P_FREE_MAPPED] -= k
            ns += u
            pages += k
            for q in range(p, p + n):
                if bst.flags[q] & F_ZERO_DEFERRED:
                    ast.counts[AsiEvent.DEFERRED_DROPPED] += 1
                    bst.flags[q] &= ~F_ZERO_DEFERRED
        elif ast.params[_P_LAZY] != 0:
            m, was, deferred = _map_clean_range(bst, ast, p, n)
            ast.params[_P_FREE_MAPPED] += n - was - deferred
            ns += m
        else:
            z0 = ast.counts[AsiEvent.PAGES_ZEROED]
            m, was = _map_range(bst, ast, p, n, False)
            ast.counts[AsiEvent.ZEROED_ON_CONVERSION] += ast.counts[AsiEvent.PAGES_ZEROED] - z0
            ast.params[_P_FREE_MAPPED] += n - was
            ns += m
        p += np.int64(1) << o
    return ns, pages


@_kernel
def _target_worker(bst, tst, ist, ast, cpu):
    """Convert nonsensitive pageblocks with the most free mapped pages to sensitive until at
    most the target stays mapped; one shootdown. Returns (ns, pages unmapped)."""
    pb = ast.params[_P_PB_ORDER]
    npb = bst.pb_mt.shape[0]
    ns = ast.cost[_C_WAKE]
    lo = pool_pages(bst)
    hi = -1
    pages = 0
    while ast.params[_P_FREE_MAPPED] > ast.params[_P_TARGET]:
        best = -1
        best_k = 0
        for b in range(npb):
            if bst.pb_mt[b] >= 3:
                k = _free_mapped_pages_in(bst, b << pb, (b + 1) << pb)
                if k > best_k:
                    best_k = k
                    best = b
        if best < 0:
            break
        convert_pageblock(bst, best, bst.pb_mt[best] - 3)
        ast.counts[AsiEvent.TARGET_CONVERSIONS] += 1
        base = best << pb
        end = base + (np.int64(1) << pb)
        u, k = _update_free_blocks(bst, ast, base, end, True)
        ns += u
        pages += k
        ns += _region_update(ast, best)
        lo = min(lo, base)
        hi = max(hi, end)
    if hi > lo:
        ns += _shootdown(tst, ist, ast, cpu, lo, hi)
    return ns, pages


@_kernel
def _convert_after_alloc(bst, ast):
    """Act on the pageblocks the last allocation converted (policy 2/3): to sensitive,
    unmap their free pages; to nonsensitive, zero and map them. The conversion log is kept
    in ``ast.scratch``; physmap leaves and the shootdown are the caller's. Returns (ns, the
    pfn range [lo, hi) of pageblocks whose free pages were unmapped; empty if none)."""
    nconv = bst.ev[0]
    for i in range(1 + 2 * nconv):
        ast.scratch[i] = bst.ev[i]
    pb = ast.params[_P_PB_ORDER]
    ns = 0
    lo = pool_pages(bst)
    hi = -1
    for j in range(nconv):
        b = ast.scratch[1 + 2 * j]
        old = ast.scratch[2 + 2 * j]
        new = bst.pb_mt[b]
        if (old >= 3) == (new >= 3):
            continue
        base = b << pb
        end = base + (np.int64(1) << pb)
        u, k = _update_free_blocks(bst, ast, base, end, new < 3)
        ns += u
        if new < 3:
            ast.counts[AsiEvent.TO_SENSITIVE] += 1
            if k > 0:
                lo = min(lo, base)
                hi = max(hi, end)
        else:
            ast.counts[AsiEvent.TO_NONSENSITIVE] += 1
    return ns, lo, hi


@_kernel
def _claim_sensitive(bst, tst, ist, ast, cpu, pfn, n):
    """Hand free pages [pfn, pfn+n) to a sensitive owner outside an allocation's own path
    (a compaction target): unmap any that are mapped, then shoot them down. Returns ns."""
    u, k = _unmap_range(bst, ast, pfn, n, True)
    ast.params[_P_FREE_MAPPED] -= k
    _mark_sensitive(bst, ast, pfn, n)
    if k > 0:
        u += _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
    return u


@_kernel
def _compactable(bst, ast, s, size):
    """Pages to migrate to empty pfns [s, s+size), or -1 if the range holds anything but
    free blocks and movable sensitive blocks that begin inside it."""
    m = 0
    p = s
    end = s + size
    while p < end:
        fo = bst.free_order[p]
        if fo >= 0:
            p += np.int64(1) << fo
            continue
        a = bst.alloc_order[p]
        if a < 0:
            return -1  # inside a block that begins before the range
        n = np.int64(1) << a
        mt = bst.alloc_mt[p]
        if (p + n > end or not bst.flags[p] & F_SENS or mt < 0
                or bst.mobility[mt] != MT_MOVABLE or ast.owner[p] < 0):
            return -1
        m += n
        p += n
    return m


@_kernel
def _compact(bst, tst, ist, ast, order, cpu):
    """Direct compaction for a sensitive allocation of ``order`` (mm/compaction.c, reduced):
    the aligned range of a sensitive pageblock needing the fewest migrations (the lowest pfn
    among equals) is emptied by moving each of its blocks to a free block of the same
    sensitivity outside its pageblock, which is isolated meanwhile. Returns (ns, whether the
    range was emptied)."""
    ast.counts[AsiEvent.COMPACTIONS] += 1
    pb = ast.params[_P_PB_ORDER]
    size = np.int64(1) << order
    best = -1
    best_m = size + 1
    for b in range(bst.pb_mt.shape[0]):
        if bst.pb_mt[b] >= 3:
            continue
        base = np.int64(b) << pb
        for s in range(base, base + (np.int64(1) << pb), size):
            m = _compactable(bst, ast, s, size)
            if m >= 0 and m < best_m:
                best_m = m
                best = s
        if best_m == 0:
            break
    if best < 0:
        return 0, False
    b = best >> pb
    old = bst.pb_mt[b]
    convert_pageblock(bst, b, MT_ISOLATE)
    ns = 0
    moved = 0
    ok = True
    p = best
    while p < best + size:
        a = bst.alloc_order[p]
        if a < 0:
            p += 1
            continue
        n = np.int64(1) << a
        dst = alloc_block(ast.own, np.int64(a), np.int64(bst.alloc_mt[p]))
        if dst < 0:
            ok = False
            break
        ident = ast.owner[p]
        ns += _claim_sensitive(bst, tst, ist, ast, cpu, dst, n)
        for q in range(p, p + n):  # the old copy still holds the data
            bst.flags[q] = (bst.flags[q] & ~F_SENS) | F_DIRTY
        ast.owner[dst] = ident
        ast.owner[p] = -1
        ast.live[ident, _L_PFN] = dst
        free_block(bst, p, a)
        moved += n
        p += n
    convert_pageblock(bst, b, old)
    mns = moved * ast.cost[_C_MIGRATE]
    ast.counts[AsiEvent.PAGES_MIGRATED] += moved
    ast.counts[AsiEvent.MIGRATE_NS] += mns
    return ns + mns, ok


@_kernel
def _release(bst, tst, ist, ast, ident, sens, cpu, t):
    """Free allocation ``ident`` by the policy's free path; returns the free's latency."""
    policy = ast.params[_P_POLICY]
    pfn = ast.live[ident, _L_PFN]
    order = ast.live[ident, _L_ORDER]
    n = np.int64(1) << order
    lat = ast.cost[_C_FREE]
    ast.owner[pfn] = -1
    ast.live[ident, _L_PFN] = -1
    if policy == 0:
        free_block(bst, pfn, order)
    elif sens:
        for p in range(pfn, pfn + n):
            bst.flags[p] = (bst.flags[p] & ~F_SENS) | F_DIRTY
        free_block(bst, pfn, order)
    else:
        _ns_remove(ast, ident)
        if policy == 1:
            qn = ast.params[_P_QN]
            ast.queue[qn, 0] = pfn
            ast.queue[qn, 1] = order
            ast.params[_P_QN] = qn + 1
            ast.params[_P_QPAGES] += n
            for p in range(pfn, pfn + n):
                bst.flags[p] |= F_QUEUED
            lat = ast.cost[_C_ENQ]
        elif policy == 4:
            u, k = _unmap_range(bst, ast, pfn, n, True)
            s = _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
            _burst(ast, t, u + s, BurstSource.FREE_FLUSH, k)
            lat += u + s
            free_block(bst, pfn, order)
        else:
            free_block(bst, pfn, order)
            ast.params[_P_FREE_MAPPED] += n
    return lat


@_kernel
def _reclaim(bst, tst, ist, ast, cpu, t):
    """One direct reclaim round (mm/vmscan.c ``try_to_free_pages``, reduced): free live
    reclaimable allocations, oldest first, until ``reclaim_batch_pages`` pages are freed.
    Returns (ns, pages freed)."""
    ast.counts[AsiEvent.DIRECT_RECLAIMS] += 1
    target = ast.params[_P_RECLAIM_BATCH]
    hi = ast.params[_P_MAXID]
    c = ast.params[_P_LRU]
    pages = 0
    while pages < target and c < hi:
        kind = ast.live[c, _L_KIND]
        if ast.live[c, _L_PFN] >= 0 and kind & _K_RECLAIM:
            pages += np.int64(1) << ast.live[c, _L_ORDER]
            _release(bst, tst, ist, ast, c, (kind & _K_SENS) != 0, cpu, t)
        c += 1
    ast.params[_P_LRU] = c
    ns = pages * ast.cost[_C_RECLAIM]
    ast.counts[AsiEvent.PAGES_RECLAIMED] += pages
    ast.counts[AsiEvent.DIRECT_RECLAIM_NS] += ns
    return ns, pages


@_kernel
def _slowpath(bst, tst, ist, ast, order, mt, cpu, t):
    """The slow path of a sensitive allocation whose own-sensitivity fast path failed:
    compaction, reclaim and the cross-sensitivity fallback in the order of the flush rank
    (position of the fallback among the three: rank - 1). Returns (pfn or -1, ns)."""
    ast.counts[AsiEvent.SLOWPATH_ENTRIES] += 1
    flush_at = ast.params[_P_RANK] - 1
    ns = 0
    for step in range(3):
        if step == flush_at:
            pfn = alloc_block(bst, order, mt)  # the full fallbacks: convert, unmap
            if pfn >= 0:
                ast.counts[AsiEvent.SLOW_FLUSH_ALLOCS] += 1
                return pfn, ns
        elif (step if step < flush_at else step - 1) == 0:
            if order < 1 or order > ast.params[_P_PB_ORDER]:
                continue
            c, ok = _compact(bst, tst, ist, ast, order, cpu)
            ns += c
            if c > 0:
                _burst(ast, t, c, BurstSource.COMPACTION, 0)
            if ok:
                pfn = alloc_block(ast.own, order, mt)
                if pfn >= 0:
                    ast.counts[AsiEvent.COMPACT_ALLOCS] += 1
                    return pfn, ns
        else:
            rns = 0
            rpages = 0
            pfn = -1
            for _r in range(MAX_RECLAIM_RETRIES):
                c, pages = _reclaim(bst, tst, ist, ast, cpu, t)
                if pages == 0:
                    break
                rns += c
                rpages += pages
                pfn = alloc_block(ast.own, order, mt)
                if pfn >= 0:
                    break
            if rpages > 0:
                _burst(ast, t, rns, BurstSource.DIRECT_RECLAIM, rpages)
            ns += rns
            if pfn >= 0:
                return pfn, ns
    return -1, ns


@_kernel
def _alloc(bst, tst, ist, ast, wl, i, t):
    """One allocation; returns its latency in ns (-1 if it failed)."""
    policy = ast.params[_P_POLICY]
    ident = wl.ref[i]
    order = np.int64(wl.order[i])
    sens = wl.sens[i] != 0
    cpu = np.int64(wl.cpu[i])
    mt = np.int64(wl.mob[i])
    tracked = ast.params[_P_TRACKED] != 0
    if tracked and not sens:
        mt += 3
    lat = ast.cost[_C_ALLOC]
    if ident >= ast.params[_P_MAXID]:
        ast.params[_P_MAXID] = ident + 1
    if tracked and sens and ast.params[_P_RANK] != 0:
        pfn = alloc_block(ast.own, order, mt)
        if pfn < 0:
            pfn, s = _slowpath(bst, tst, ist, ast, order, mt, cpu, t)
            lat += s
    else:
        pfn = alloc_block(bst, order, mt)
    if pfn < 0 and (policy == 1 or policy == 4) and ast.params[_P_QN] > 0:
        w, pages = _drain_queue(bst, tst, ist, ast, cpu)
        ast.counts[AsiEvent.RECLAIM_WAITS] += 1
        ast.counts[AsiEvent.RECLAIM_WAIT_NS] += w
        _burst(ast, t, w, BurstSource.RECLAIM, pages)
        lat += w
        pfn = alloc_block(bst, order, mt)
    if pfn < 0:
        ast.counts[AsiEvent.ALLOC_FAILURES] += 1
        ast.lat[ident] = -1
        return -1
    ast.counts[AsiEvent.ALLOCS] += 1
    if sens:
        ast.counts[AsiEvent.SENSITIVE_ALLOCS] += 1
    n = np.int64(1) << order
    ast.live[ident, _L_PFN] = pfn
    ast.live[ident, _L_ORDER] = order
    ast.live[ident, _L_NSPOS] = -1
    ast.live[ident, _L_KIND] = (_K_SENS if sens else 0) | (_K_RECLAIM if wl.reclaim[i] else 0)
    ast.owner[pfn] = ident
    if policy == 0:
        ast.lat[ident] = lat
        ast.counts[AsiEvent.ALLOC_NS] += lat
        return lat
    nconv = 0
    c = 0
    lo = pool_pages(bst)
    hi = -1
    if tracked and bst.ev[0] > 0:
        nconv = bst.ev[0]
        c, lo, hi = _convert_after_alloc(bst, ast)
    # the block and the converted pageblocks change together: physmap leaves after both,
    # then one shootdown of every page this allocation unmapped
    if sens:
        u, k = _unmap_range(bst, ast, pfn, n, False)
        ast.params[_P_FREE_MAPPED] -= k
        lat += u
        _mark_sensitive(bst, ast, pfn, n)
    else:
        m, was = _map_range(bst, ast, pfn, n, False)
        ast.params[_P_FREE_MAPPED] -= was
        lat += m
        k = 0
    for j in range(nconv):
        c += _region_update(ast, ast.scratch[1 + 2 * j])
    lat += _regions_update(ast, pfn, n)
    if hi > lo:  # a conversion unmapped free pages: the block's pages join its shootdown
        if k > 0:
            lo = min(lo, pfn)
            hi = max(hi, pfn + n)
        c += _shootdown(tst, ist, ast, cpu, lo, hi)
    elif k > 0:
        lat += _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
    if c > 0:
        _burst(ast, t, c, BurstSource.CONVERSION, 0)
    lat += c
    if not sens:
        _ns_add(ast, ident)
        _touch(tst, ast, cpu, pfn)
    ast.lat[ident] = lat
    ast.counts[AsiEvent.ALLOC_NS] += lat
    return lat


@_kernel
def _free(bst, tst, ist, ast, wl, i, t):
    """One free of the stream; returns its latency in ns."""
    ident = wl.ref[i]
    if ast.lat[ident] < 0:
        return 0  # the allocation failed: nothing to free
    if ast.live[ident, _L_PFN] < 0:
        ast.counts[AsiEvent.RECLAIMED_FREES] += 1
        return 0
    ast.counts[AsiEvent.FREES] += 1
    lat = _release(bst, tst, ist, ast, ident, wl.sens[i] != 0, np.int64(wl.cpu[i]), t)
    ast.counts[AsiEvent.FREE_NS] += lat
    return lat


@_kernel
def check_invariant(bst, tst, ast):
    """Count pages holding sensitive data (allocated sensitive, or free and not yet zeroed:
    ``F_DIRTY``, ``F_ZERO_DEFERRED``) that are mapped in the restricted physmap or covered
    by any CPU's TLB entry, and pages marked for deferred zeroing that are not marked as
    holding sensitive data; returns the number of violations found."""
    bad = 0
    npages = pool_pages(bst)
    for p in range(npages):
        f = bst.flags[p]
        if (f & _NOT_CLEAN) and (f & F_MAPPED):
            bad += 1
        elif (f & F_ZERO_DEFERRED) and not (f & F_DIRTY):
            bad += 1
    sh = ast.params[_P_PAGE_SHIFT]
    for c in range(tlb_cpus(tst)):
        for s in (TLB_L1I, TLB_L1D, TLB_L2):
            first, end = structure_entries(tst, s)
            for e in range(first, end):
                va, ps = entry_span(tst, c, e)
                if ps < 0:
                    continue
                lo = va >> sh
                hi = lo + (np.int64(1) << (ps - sh)) if ps >= sh else lo + 1
                for p in range(max(lo, 0), min(hi, npages)):
                    if bst.flags[p] & _NOT_CLEAN:
                        bad += 1
                        break
    return bad


@_kernel
def _mixed_pageblocks(ast):
    full = np.int64(1) << ast.params[_P_PB_ORDER]
    k = 0
    for r in range(ast.region_mapped.shape[0]):
        m = ast.region_mapped[r]
        if m > 0 and m < full:
            k += 1
    return k


@_kernel
def run_stream(bst, tst, ist, ast, wl):
    """Run the whole operation stream (see the module docstring for each policy's path)."""
    policy = ast.params[_P_POLICY]
    op_ns = ast.params[_P_OP_NS]
    cpus = ast.params[_P_CPUS]
    for i in range(wl.kind.shape[0]):
        t = i * op_ns
        if wl.kind[i] == 0:
            _alloc(bst, tst, ist, ast, wl, i, t)
        else:
            _free(bst, tst, ist, ast, wl, i, t)
        if policy != 0:
            # restricted-space accesses to live nonsensitive blocks by random CPUs
            x = np.uint64(wl.rnd[i]) | np.uint64(1)
            for _k in range(ast.params[_P_TOUCHES]):
                nl = ast.params[_P_NS_N]
                if nl == 0:
                    break
                x = xorshift64(x)
                ident = ast.ns_list[np.int64(x % np.uint64(nl))]
                c = np.int64((x >> np.uint64(40)) % np.uint64(cpus))
                pages = np.int64(1) << ast.live[ident, 1]
                off = np.int64((x >> np.uint64(20)) % np.uint64(pages))
                _touch(tst, ast, c, ast.live[ident, 0] + off)
            due = t >= ast.params[_P_NEXT_WORKER]
            if policy == 1 and ast.params[_P_QN] > 0 and (
                    due or ast.params[_P_QPAGES] >= ast.params[_P_WORKER_BATCH]):
                w, pages = _drain_queue(bst, tst, ist, ast, 0)
                _worker_run(ast, t, w, BurstSource.WORKER, pages)
                ast.params[_P_NEXT_WORKER] = t + ast.params[_P_WORKER_NS]
            elif policy == 3 and due:
                if ast.params[_P_FREE_MAPPED] > ast.params[_P_TARGET]:
                    w, pages = _target_worker(bst, tst, ist, ast, 0)
                    _worker_run(ast, t, w, BurstSource.TARGET, pages)
                ast.params[_P_NEXT_WORKER] = t + ast.params[_P_WORKER_NS]
            elif due:
                ast.params[_P_NEXT_WORKER] = t + ast.params[_P_WORKER_NS]
        if ast.params[_P_CHECK] != 0:
            ast.counts[AsiEvent.VIOLATIONS] += check_invariant(bst, tst, ast)
        if i % ast.params[_P_SAMPLE] == 0:
            ast.counts[AsiEvent.MIXED_PAGEBLOCK_SUM] += _mixed_pageblocks(ast)
            ast.counts[AsiEvent.SAMPLES] += 1


# ---- workloads ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AllocClass:
    """One kind of allocation in a stream.

    ``orders`` are probabilities of orders 0, 1, 2... in 4 KiB pages (reduced by the page
    shift for larger granules); ``lifetime`` is the mean lifetime in allocation events
    (exponential), scaled by the generator to reach the stream's occupancy; ``reclaimable``
    allocations (clean page cache) may be freed early by direct reclaim.
    """

    name: str
    weight: float
    orders: tuple[float, ...]
    sensitive: float
    mobility: int
    lifetime: float
    reclaimable: bool = False


#: The workload mixes (sensitivity by class is a modelling choice, ``assumed``): kernel
#: objects and network buffers nonsensitive, page cache and anonymous memory sensitive.
MIXES: dict[str, tuple[AllocClass, ...]] = {
    "mixed": (
        AllocClass("netbuf", 0.35, (0.7, 0.2, 0.1), 0.0, 0, 8.0),
        AllocClass("pagecache", 0.25, (1.0,), 1.0, 1, 400.0, reclaimable=True),
        AllocClass("anon", 0.30, (0.97,) + (0.0,) * 8 + (0.03,), 1.0, 1, 200.0),
        AllocClass("kobj", 0.10, (0.6, 0.3, 0.1), 0.0, 0, 2000.0),
    ),
    # pages freed as nonsensitive are wanted again at once
    "pathological": (
        AllocClass("nsburst", 0.85, (1.0,), 0.0, 0, 2.0),
        AllocClass("anon", 0.15, (1.0,), 1.0, 1, 200.0),
    ),
}


def make_workload(mix: str, allocs: int, seed: int, pool_pages: int, page_shift: int = 12,
                  occupancy: float = 0.5, pressure: float = 0.0, cpus: int = 8) -> Workload:
    """An operation stream of ``allocs`` allocations and their frees.

    Lifetimes are scaled so that the expected live memory is ``occupancy`` of the pool.
    ``pressure`` > 0 adds a memory-pressure phase: during the middle fifth of the stream,
    sensitive movable order-0 allocations of ``pressure`` x pool pages in total, all freed
    at its end (not reclaimable: anonymous memory). Blocks still live at the end are never
    freed.
    """
    if mix not in MIXES:
        raise ConfigError(f"unknown mix {mix!r}; known: {', '.join(MIXES)}", "mix")
    check_int("allocs", allocs, lo=1)
    check_float("occupancy", occupancy, lo=0.0, hi=1.0)
    check_float("pressure", pressure, lo=0.0, hi=2.0)
    rng = np.random.default_rng(seed)
    classes = MIXES[mix]
    w = np.array([c.weight for c in classes])
    cls = rng.choice(len(classes), size=allocs, p=w / w.sum())
    red = page_shift - 12
    order = np.zeros(allocs, np.int64)
    mean_pages = 0.0
    for k, c in enumerate(classes):
        sel = cls == k
        p = np.asarray(c.orders, float)
        o = rng.choice(len(p), size=int(sel.sum()), p=p / p.sum())
        order[sel] = np.maximum(0, o - red)
        pages_k = float((p / p.sum() * (2.0 ** np.maximum(0, np.arange(len(p)) - red))).sum())
        mean_pages += c.weight / w.sum() * pages_k * c.lifetime
    scale = occupancy * pool_pages / mean_pages if mean_pages > 0 else 1.0
    life = np.empty(allocs)
    sens = np.zeros(allocs, np.int8)
    mob = np.zeros(allocs, np.int8)
    rec = np.zeros(allocs, np.int8)
    for k, c in enumerate(classes):
        sel = cls == k
        life[sel] = rng.exponential(c.lifetime * scale, int(sel.sum()))
        sens[sel] = (rng.random(int(sel.sum())) < c.sensitive).astype(np.int8)
        mob[sel] = c.mobility
        rec[sel] = int(c.reclaimable)
    life = np.maximum(life, 1.0)
    t_alloc = np.arange(allocs, dtype=float)
    t_free = t_alloc + life
    if pressure > 0:
        npress = int(pressure * pool_pages)
        a0, a1 = 0.4 * allocs, 0.6 * allocs
        tp = np.linspace(a0, a1, npress, endpoint=False) + 0.5
        t_alloc = np.concatenate([t_alloc, tp])
        t_free = np.concatenate([t_free, np.full(npress, a1 + 0.25)])
        order = np.concatenate([order, np.zeros(npress, np.int64)])
        sens = np.concatenate([sens, np.ones(npress, np.int8)])
        mob = np.concatenate([mob, np.full(npress, 1, np.int8)])
        rec = np.concatenate([rec, np.zeros(npress, np.int8)])
    # ids in allocation order
    ids_order = np.argsort(t_alloc, kind="stable")
    t_alloc, t_free = t_alloc[ids_order], t_free[ids_order]
    order, sens, mob, rec = order[ids_order], sens[ids_order], mob[ids_order], rec[ids_order]
    n = t_alloc.shape[0]
    horizon = t_alloc[-1] + 1.0
    freed = t_free < horizon
    ev_t = np.concatenate([t_alloc, t_free[freed]])
    ev_kind = np.concatenate([np.zeros(n, np.int8), np.ones(int(freed.sum()), np.int8)])
    ev_ref = np.concatenate([np.arange(n), np.nonzero(freed)[0]])
    idx = np.lexsort((ev_kind, ev_t))
    ref = ev_ref[idx].astype(np.int64)
    kind = ev_kind[idx]
    cpu_of = rng.integers(0, cpus, n).astype(np.int32)
    m = kind.shape[0]
    return Workload(kind=kind, ref=ref, order=order[ref].astype(np.int8), sens=sens[ref],
                    mob=mob[ref], cpu=cpu_of[ref],
                    rnd=rng.integers(1, np.iinfo(np.int64).max, m, dtype=np.int64),
                    reclaim=rec[ref])


# ---- Python entry points ----------------------------------------------------------------------

@dataclass
class AsiRun:
    """Everything one simulation produced."""

    config: AsiConfig
    counts: Counters
    inval: Counters
    buddy: Counters
    tlb: Counters
    lat_ns: np.ndarray        # per allocation (failed ones removed)
    bursts: np.ndarray        # (time ns, work ns, source, pages)
    pt_pages_boot: int
    deferred_pending: int = 0  # pages still marked for deferred zeroing when the stream ended

    def metrics(self) -> dict[str, float]:
        """Derived metrics (Python formulas over the counters)."""
        c, v = self.counts, self.inval
        allocs = max(c.allocs, 1)
        lat = self.lat_ns
        pct = (np.percentile(lat, [50, 99, 99.9]) if lat.size else np.zeros(3))
        b = self.bursts
        return {
            "allocs": float(c.allocs),
            "alloc_failures": float(c.alloc_failures),
            "shootdowns": float(c.flushes),
            "shootdowns_per_million_allocs": 1e6 * c.flushes / allocs,
            "ipis": float(v.ipis),
            "pointless_remaps": float(c.pointless_remaps),
            "pages_zeroed": float(c.pages_zeroed),
            "zeroed_on_conversion": float(c.zeroed_on_conversion),
            "pages_unmapped": float(c.pages_unmapped),
            "pt_allocs_during_alloc": float(c.pt_allocs),
            "pt_pages_boot": float(self.pt_pages_boot),
            "block_splits": float(c.block_splits),
            "worker_ns": float(c.worker_ns),
            "worker_runs": float(c.worker_runs),
            "max_burst_ns": float(b[:, 1].max()) if b.shape[0] else 0.0,
            # housekeeping outside the worker: conversions, flushes on free, reclaim waits
            "burst_ns": float(b[b[:, 2] != int(BurstSource.WORKER), 1].sum() if b.shape[0] else 0),
            "p99_burst_ns": float(np.percentile(b[:, 1], 99)) if b.shape[0] else 0.0,
            "alloc_p50_ns": float(pct[0]),
            "alloc_p99_ns": float(pct[1]),
            "alloc_p999_ns": float(pct[2]),
            "alloc_mean_ns": float(lat.mean()) if lat.size else 0.0,
            "alloc_max_ns": float(lat.max()) if lat.size else 0.0,
            "free_ns": float(c.free_ns),
            "flush_initiator_ns": float(v.initiator_ns),
            "ipi_target_ns": float(v.target_ns),
            "mixed_pageblocks_mean": c.mixed_pageblock_sum / max(c.samples, 1),
            "to_sensitive": float(c.to_sensitive),
            "to_nonsensitive": float(c.to_nonsensitive),
            "reclaim_waits": float(c.reclaim_waits),
            "slowpath_entries": float(c.slowpath_entries),
            "slow_flush_allocs": float(c.slow_flush_allocs),
            "compactions": float(c.compactions),
            "compact_allocs": float(c.compact_allocs),
            "pages_migrated": float(c.pages_migrated),
            "direct_reclaims": float(c.direct_reclaims),
            "pages_reclaimed": float(c.pages_reclaimed),
            "slowpath_ns": float(c.migrate_ns + c.direct_reclaim_ns),
            "zero_deferred": float(c.zero_deferred),
            "zeroed_deferred": float(c.zeroed_deferred),
            "deferred_to_sensitive": float(c.deferred_to_sensitive),
            "deferred_dropped": float(c.deferred_dropped),
            "deferred_pending": float(self.deferred_pending),
            "violations": float(c.violations),
            # all ASI work: allocation and free paths, worker, remote CPUs' IPI handlers
            "total_asi_ns": float(c.alloc_ns - c.allocs * round(self.config.costs.alloc_base_ns)
                                  + c.free_ns - c.frees * round(self.config.costs.free_base_ns)
                                  + c.worker_ns + v.target_ns),
        }


def build(config: AsiConfig, workload: Workload):
    """Kernel states for ``config`` and ``workload`` (the one conversion to arrays)."""
    g = config.geometry
    bcfg = config.buddy_config()
    bst = bcfg.build()
    npages = bcfg.pool_pages
    npb = bcfg.pageblocks
    bpl = g.bits_per_level
    nupper = (npb >> bpl) + 1
    tcfg = eng.TLBConfig(l2=eng.TLBLevelConfig(config.tlb_entries, config.tlb_ways),
                          page_shifts=(g.page_shift, g.page_shift + bcfg.pageblock_order),
                          cpus=config.cpus)
    tst = tcfg.to_state()
    icfg = eng.InvalidationConfig(method=config.method, cpus=config.cpus,
                                   page_shift=g.page_shift, costs=config.inval_costs)
    ist = icfg.build()
    ist.mm_mask[:] = 1
    allocs = int(workload.ref[workload.kind == 0].shape[0])
    params = np.zeros(_P_LEN, np.int64)
    params[_P_POLICY] = int(config.policy)
    params[_P_PHYSMAP] = int(config.physmap)
    params[_P_NPAGES] = npages
    params[_P_PAGE_SHIFT] = g.page_shift
    params[_P_PB_ORDER] = bcfg.pageblock_order
    params[_P_CPUS] = config.cpus
    params[_P_TARGET] = config.target_free_mapped_pages
    params[_P_WORKER_NS] = config.worker_interval_ns
    params[_P_WORKER_BATCH] = config.worker_batch_pages
    params[_P_OP_NS] = config.op_interval_ns
    params[_P_CHECK] = int(config.check_invariant)
    params[_P_BPL] = bpl
    params[_P_TOUCHES] = config.touches_per_op
    params[_P_SAMPLE] = config.sample_every
    params[_P_NEXT_WORKER] = config.worker_interval_ns
    params[_P_TRACKED] = int(config.tracked)
    params[_P_RANK] = int(config.flush_rank)
    params[_P_LAZY] = int(config.zeroing == Zeroing.LAZY)
    params[_P_RECLAIM_BATCH] = config.reclaim_batch_pages
    scale = 1 << (g.page_shift - 12)  # zeroing and copying scale with page size
    k = config.costs
    cost = np.array([k.alloc_base_ns, k.free_base_ns, k.map_page_ns, k.unmap_page_ns,
                     k.zero_page_ns * scale, k.pt_alloc_ns, k.enqueue_ns, k.worker_wake_ns,
                     k.migrate_page_ns * scale, k.reclaim_page_ns],
                    dtype=float).round().astype(np.int64)
    # a slow path logs up to two bursts (compaction, reclaim) besides its conversion's
    slow_bursts = 2 * allocs if config.flush_rank != FlushRank.FAST_PATH else 0
    region = np.zeros(npb, np.int8)
    pt_boot = 0
    if config.physmap in (Physmap.SYNCED, Physmap.SYNCED_BLOCKS) and config.policy != Policy.NONE:
        pt_boot = nupper if config.physmap == Physmap.SYNCED_BLOCKS else npb + nupper
        if config.physmap == Physmap.SYNCED:
            region[:] = _R_TABLE
    ast = AsiState(params=params, cost=cost, region=region,
                   region_mapped=np.zeros(npb, np.int64), upper=np.zeros(nupper, np.int8),
                   queue=np.zeros((npages, 2), np.int64),
                   live=np.full((max(allocs, 1), 4), -1, np.int64),
                   owner=np.full(npages, -1, np.int64),
                   ns_list=np.zeros(max(allocs, 1), np.int64),
                   lat=np.full(max(allocs, 1), -2, np.int64),
                   bursts=np.zeros((workload.kind.shape[0] + 1 + slow_bursts, 4), np.int64),
                   scratch=np.zeros(bst.ev.shape[0], np.int64),
                   tcounts=np.zeros(len(eng.TLBEvent), np.int64),
                   counts=new_counts(AsiEvent),
                   own=bst._replace(fallbacks=own_sensitivity_fallbacks(bst.fallbacks))
                   if config.tracked else bst)
    ast.counts[AsiEvent.PT_PAGES_BOOT] = pt_boot
    return bst, tst, ist, ast


def simulate(config: AsiConfig, workload: Workload) -> AsiRun:
    """Run ``workload`` under ``config``."""
    for name in Workload._fields:
        arr = getattr(workload, name)
        if arr.shape != workload.kind.shape:
            raise ConfigError(f"{name} has shape {arr.shape}, kind {workload.kind.shape}",
                              "workload")
    if workload.kind.size and int(workload.order.max()) > config.buddy_config().max_order:
        raise ConfigError("an order exceeds MAX_PAGE_ORDER", "workload.order")
    bst, tst, ist, ast = build(config, workload)
    run_stream(bst, tst, ist, ast, workload)
    lat = ast.lat[ast.lat >= 0]
    nb = int(ast.params[_P_NBURST])
    return AsiRun(config=config, counts=Counters(AsiEvent, ast.counts.copy()),
                  inval=Counters(eng.InvalEvent, ist.counts.copy()),
                  buddy=Counters(eng.BuddyEvent, bst.counts.copy()),
                  tlb=Counters(eng.TLBEvent, ast.tcounts.copy()),
                  lat_ns=lat.copy(), bursts=ast.bursts[:nb].copy(),
                  pt_pages_boot=int(ast.counts[AsiEvent.PT_PAGES_BOOT]),
                  deferred_pending=int(((bst.flags & F_ZERO_DEFERRED) != 0).sum()))


# ---- notebook functions -------------------------------------------------------------------

#: Defaults of the notebook's parameters (small enough for nbval); params/asi.yaml holds the
#: published scenario with a source or an ``assumed`` range for every cost.
DEFAULTS: dict = {
    "seed": 1, "allocs": 10000, "pool_mib": 32, "occupancy": 0.6, "pressure": 0.3,
    "cpus": 8, "granule": "4K", "method": "x86_ipi", "physmap": "on_demand",
    "worker_interval_ns": 1_000_000, "worker_batch_pages": 512, "op_interval_ns": 1000,
    "touches_per_op": 1, "tlb_entries": 512, "tlb_ways": 4,
    "alloc_base_ns": 150.0, "free_base_ns": 100.0, "map_page_ns": 20.0, "unmap_page_ns": 20.0,
    "zero_page_ns": 400.0, "pt_alloc_ns": 700.0, "enqueue_ns": 30.0, "worker_wake_ns": 2000.0,
    "migrate_page_ns": 2000.0, "reclaim_page_ns": 1000.0, "reclaim_batch_pages": 32,
    "invlpg_ns": 100.0, "full_flush_ns": 37.0, "ipi_base_ns": 3000.0,
    "ipi_per_extra_target_ns": 1500.0, "ipi_handler_ns": 1000.0,
    "target_points": 4, "granule_pool_mib": 1024, "granule_allocs": 4000,
    "sweep_points": 2, "sweep_allocs": 3000,
    "slowpath_pressures": [0.3, 0.6], "slowpath_cost_points": 2,
}

_METHODS = {"x86_ipi": eng.Method.X86_IPI, "x86_invlpgb": eng.Method.X86_INVLPGB,
            "arm64_tlbi": eng.Method.ARM64_TLBI}
_PHYSMAPS = {"on_demand": Physmap.ON_DEMAND, "synced": Physmap.SYNCED,
             "synced_blocks": Physmap.SYNCED_BLOCKS}
POLICY_NAMES = {Policy.NONE: "0 no ASI", Policy.RFC: "1 RFC", Policy.TRACKED: "2 tracked",
                Policy.TRACKED_TARGET: "3 tracked+target", Policy.SYNC_FLUSH: "4 sync flush"}
RANK_NAMES = {FlushRank.FAST_PATH: "fast path", FlushRank.FIRST: "first",
              FlushRank.AFTER_COMPACTION: "after compaction",
              FlushRank.AFTER_RECLAIM: "after reclaim"}
ZEROING_NAMES = {Zeroing.EAGER: "eager", Zeroing.LAZY: "lazy"}


class Variant(NamedTuple):
    """A policy with its options (the options apply to policies 2 and 3 only)."""

    policy: Policy
    flush_rank: FlushRank = FlushRank.FAST_PATH
    zeroing: Zeroing = Zeroing.EAGER


#: The policy comparison: every policy with the default options, and lazy zeroing of the
#: tracked policies (label -> variant)
VARIANTS: dict[str, Variant] = {
    "0 no ASI": Variant(Policy.NONE),
    "1 RFC": Variant(Policy.RFC),
    "2 tracked": Variant(Policy.TRACKED),
    "2 tracked, lazy zeroing": Variant(Policy.TRACKED, zeroing=Zeroing.LAZY),
    "3 tracked+target": Variant(Policy.TRACKED_TARGET),
    "3 tracked+target, lazy zeroing": Variant(Policy.TRACKED_TARGET, zeroing=Zeroing.LAZY),
    "4 sync flush": Variant(Policy.SYNC_FLUSH),
}
_RFC, _TRACKED, _LAZY = "1 RFC", "2 tracked", "2 tracked, lazy zeroing"
#: the variants the claims' evidence and explanations read
EVIDENCE_VARIANTS = ("0 no ASI", _RFC, _TRACKED, _LAZY)
#: assumed costs that only the slow path of policies 2 and 3 reads: no claim's evidence
#: depends on them (the claims' joint sweep leaves them out; slowpath_cost_sweep sweeps them)
SLOWPATH_COSTS = ("migrate_page_ns", "reclaim_page_ns")
_ASI_COSTS = tuple(f.name for f in fields(AsiCosts) if f.name != "sources")
_INV_COSTS = ("invlpg_ns", "full_flush_ns", "ipi_base_ns", "ipi_per_extra_target_ns",
              "ipi_handler_ns")


def check_params(params: dict) -> dict:
    """Defaults completed with ``params``; unknown keys refused."""
    unknown = sorted(set(params) - set(DEFAULTS) - {"scenario"})
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}", "asi")
    p = {**DEFAULTS, **{k: v for k, v in params.items() if k != "scenario"}}
    check_choice("method", p["method"], _METHODS)
    check_choice("physmap", p["physmap"], _PHYSMAPS)
    check_int("allocs", p["allocs"], lo=100)
    check_int("pool_mib", p["pool_mib"], lo=2)
    check_int("target_points", p["target_points"], lo=2)
    check_int("sweep_points", p["sweep_points"], lo=1)
    check_int("reclaim_batch_pages", p["reclaim_batch_pages"], lo=1)
    check_int("slowpath_cost_points", p["slowpath_cost_points"], lo=2)
    pr = p["slowpath_pressures"]
    if not isinstance(pr, (list, tuple)) or not pr:
        raise ConfigError("must be a non-empty list of pressures", "slowpath_pressures")
    for x in pr:
        check_float("slowpath_pressures", x, lo=0.0, hi=2.0)
    return p


def params_from(namespace: dict) -> dict:
    """The notebook's parameters picked from ``namespace`` (its globals), checked."""
    return check_params({k: namespace[k] for k in DEFAULTS if k in namespace})


def config_for(p: dict, policy: Policy, **over) -> AsiConfig:
    """The :class:`AsiConfig` of parameters ``p`` for ``policy`` (``over`` replaces fields)."""
    costs = AsiCosts(**{k: float(p[k]) for k in _ASI_COSTS})
    inv_costs = eng.InvalidationCosts(**{k: float(p[k]) for k in _INV_COSTS})
    kw = dict(policy=policy, physmap=_PHYSMAPS[p["physmap"]], granule=p["granule"],
              pool_bytes=int(p["pool_mib"]) << 20, cpus=int(p["cpus"]),
              method=_METHODS[p["method"]], costs=costs, inval_costs=inv_costs,
              worker_interval_ns=int(p["worker_interval_ns"]),
              worker_batch_pages=int(p["worker_batch_pages"]),
              op_interval_ns=int(p["op_interval_ns"]), touches_per_op=int(p["touches_per_op"]),
              tlb_entries=int(p["tlb_entries"]), tlb_ways=int(p["tlb_ways"]),
              reclaim_batch_pages=int(p["reclaim_batch_pages"]))
    kw.update(over)
    return AsiConfig(**kw)


def workload_for(p: dict, mix: str, cfg: AsiConfig, allocs: int | None = None) -> Workload:
    """The stream of mix ``mix`` sized for ``cfg``'s pool."""
    g = cfg.geometry
    return make_workload(mix, int(allocs or p["allocs"]), int(p["seed"]),
                         cfg.pool_bytes >> g.page_shift, g.page_shift,
                         float(p["occupancy"]), float(p["pressure"]), cfg.cpus)


def variant_config(p: dict, v: Variant, **over) -> AsiConfig:
    """:func:`config_for` of a :class:`Variant`."""
    return config_for(p, v.policy, flush_rank=v.flush_rank, zeroing=v.zeroing, **over)


def compare_policies(p: dict, allocs: int | None = None, labels=None) -> dict:
    """Every variant of :data:`VARIANTS` (or those of ``labels``) on both mixes:
    ``{(mix, label): AsiRun}``."""
    out = {}
    for mix in MIXES:
        wl = None
        for label, v in VARIANTS.items():
            if labels is not None and label not in labels:
                continue
            cfg = variant_config(p, v)
            wl = wl if wl is not None else workload_for(p, mix, cfg, allocs)
            out[(mix, label)] = simulate(cfg, wl)
    return out


_SLOW_METRICS = ("allocs", "alloc_failures", "shootdowns_per_million_allocs", "to_sensitive",
                 "slowpath_entries", "slow_flush_allocs", "compactions", "pages_migrated",
                 "pages_reclaimed", "pages_zeroed", "zero_deferred", "zeroed_deferred",
                 "deferred_to_sensitive", "alloc_p50_ns", "alloc_p99_ns", "alloc_p999_ns",
                 "alloc_max_ns", "slowpath_ns", "total_asi_ns", "mixed_pageblocks_mean",
                 "violations")


def slowpath_compare(p: dict, allocs: int | None = None):
    """Policy 2 under every flush rank and zeroing, with the RFC design for reference, on the
    mixed stream at each pressure of ``slowpath_pressures`` (the slow path is entered only
    when a sensitivity runs out of free memory). Returns ``(frame, runs)``: one row per
    pressure and variant, and ``{(pressure, label): AsiRun}``."""
    import polars as pl
    rows, runs = [], {}
    variants = {_RFC: Variant(Policy.RFC)}
    for rank in FlushRank:
        for z in Zeroing:
            variants[f"2 tracked, {RANK_NAMES[rank]}, {ZEROING_NAMES[z]}"] = \
                Variant(Policy.TRACKED, rank, z)
    for pressure in p["slowpath_pressures"]:
        q = {**p, "pressure": float(pressure)}
        wl = None
        for label, v in variants.items():
            cfg = variant_config(q, v)
            wl = wl if wl is not None else workload_for(q, "mixed", cfg, allocs)
            r = simulate(cfg, wl)
            runs[(float(pressure), label)] = r
            m = r.metrics()
            rows.append({"pressure": float(pressure), "variant": label,
                         "policy": POLICY_NAMES[v.policy],
                         "flush_rank": RANK_NAMES[v.flush_rank] if cfg.tracked else "-",
                         "zeroing": ZEROING_NAMES[v.zeroing] if cfg.tracked else "-",
                         **{k: m[k] for k in _SLOW_METRICS}})
    return pl.DataFrame(rows), runs


def slowpath_cost_sweep(p: dict, allocs: int | None = None):
    """The slow path's ``assumed`` costs (:data:`SLOWPATH_COSTS`) swept one at a time over
    their ranges (``slowpath_cost_points`` log-spaced points), each for policy 2 with the
    rank that spends it before the flush (migration: after compaction; reclaim: after
    reclaim), at the highest of ``slowpath_pressures``: allocation latency tail and total
    ASI work per point (a polars frame)."""
    import polars as pl
    specs = assumed_specs()
    q = {**p, "pressure": float(max(p["slowpath_pressures"]))}
    wl = workload_for(q, "mixed", config_for(q, Policy.TRACKED), allocs)
    rows = []
    ranks = {"migrate_page_ns": FlushRank.AFTER_COMPACTION,
             "reclaim_page_ns": FlushRank.AFTER_RECLAIM}
    for name in SLOWPATH_COSTS:
        lo, hi = specs.get(name, (float(p[name]), float(p[name])))
        rank = ranks[name]
        for x in np.geomspace(lo, hi, int(p["slowpath_cost_points"])):
            cfg = variant_config({**q, name: float(x)}, Variant(Policy.TRACKED, rank))
            m = simulate(cfg, wl).metrics()
            rows.append({"parameter": name, "value_ns": float(x), "flush_rank": RANK_NAMES[rank],
                         **{k: m[k] for k in ("alloc_p999_ns", "alloc_max_ns", "slowpath_ns",
                                              "total_asi_ns")}})
    return pl.DataFrame(rows)


def _target_pages(p: dict, cfg: AsiConfig) -> list[int]:
    """Free-mapped targets: evenly spaced from 0 to the pool's expected free pages."""
    pages = cfg.pool_bytes >> cfg.geometry.page_shift
    free = (1.0 - float(p["occupancy"])) * pages
    n = int(p["target_points"])
    return [int(round(free * k / (n - 1))) for k in range(n)]


def target_sweep(p: dict, allocs: int | None = None):
    """Policy 3 on the mixed stream over the free-mapped target (claim A6), with policy 2
    (no target) for reference. A polars frame, one row per target."""
    import polars as pl
    rows = []
    base = config_for(p, Policy.TRACKED_TARGET)
    wl = workload_for(p, "mixed", base, allocs)
    for t in _target_pages(p, base):
        m = simulate(config_for(p, Policy.TRACKED_TARGET, target_free_mapped_pages=t), wl).metrics()
        rows.append({"target_pages": t, **m})
    return pl.DataFrame(rows)


def granule_sweep(p: dict):
    """The RFC design and tracked pageblocks on the mixed stream for each granule
    (pageblocks of 2, 32 and 512 MiB) over a pool of ``granule_pool_mib``."""
    import polars as pl
    rows = []
    for gran in eng.GRANULES:
        q = {**p, "granule": gran, "pool_mib": int(p["granule_pool_mib"])}
        cfg0 = config_for(q, Policy.RFC)
        wl = workload_for(q, "mixed", cfg0, int(p["granule_allocs"]))
        for pol in (Policy.RFC, Policy.TRACKED):
            cfg = config_for(q, pol)
            m = simulate(cfg, wl).metrics()
            rows.append({"granule": gran, "policy": POLICY_NAMES[pol],
                         "pageblock_mib": cfg.geometry.pageblock_bytes >> 20, **m})
    return pl.DataFrame(rows)


def physmap_compare(p: dict, allocs: int | None = None):
    """Page-table allocations while allocating, boot table pages and block splits for each
    restricted-physmap design (claim A7), RFC and tracked policies, mixed stream."""
    import polars as pl
    rows = []
    wl = None
    for design, code in _PHYSMAPS.items():
        for pol in (Policy.RFC, Policy.TRACKED):
            cfg = config_for(p, pol, physmap=code)
            wl = wl if wl is not None else workload_for(p, "mixed", cfg, allocs)
            m = simulate(cfg, wl).metrics()
            rows.append({"physmap": design, "policy": POLICY_NAMES[pol], **m})
    return pl.DataFrame(rows)


def policy_frame(runs: dict, p: dict, scenario: str):
    """Tidy result frame of :func:`compare_policies` (one row per mix, policy and metric)."""
    from .. import results
    rows = []
    for (mix, label), r in runs.items():
        params = {**{k: v for k, v in p.items() if not isinstance(v, (list, dict))},
                  "mix": mix, "policy": label}
        m = r.metrics()
        rows += results.rows_for("asi", params, int(p["seed"]),
                                 {k: (v, "ns" if k.endswith("_ns") else "count")
                                  for k, v in m.items()})
    return results.frame(rows)


def latency_cdf(runs: dict, mix: str = "mixed"):
    """Allocation latency quantiles per run whose key's first item is ``mix`` (0 .. 1, the
    tail finely), for a CDF chart: ``runs`` as :func:`compare_policies` or
    :func:`slowpath_compare` return them (``mix`` a pressure for the latter)."""
    import polars as pl
    qs = np.concatenate([np.linspace(0.0, 0.99, 100), [0.995, 0.999, 0.9995, 0.9999, 1.0]])
    rows = []
    for (m, label), r in runs.items():
        if m != mix or not r.lat_ns.size:
            continue
        for q, v in zip(qs, np.quantile(r.lat_ns, qs)):
            rows.append({"policy": label, "quantile": float(q), "ns": float(v)})
    return pl.DataFrame(rows)


def burst_frame(runs: dict, mix: str = "mixed", window_ns: int = 1_000_000):
    """ASI housekeeping work per time window and policy (worker runs, conversions, flushes
    on free, reclaim waits), the jitter other work sees."""
    import polars as pl
    rows = []
    for (m, label), r in runs.items():
        if m != mix or r.bursts.shape[0] == 0:
            continue
        b = r.bursts
        win = b[:, 0] // window_ns
        for w in np.unique(win):
            sel = win == w
            rows.append({"policy": label, "t_ms": float(w * window_ns / 1e6),
                         "work_us": float(b[sel, 1].sum() / 1e3),
                         "largest_us": float(b[sel, 1].max() / 1e3)})
    return pl.DataFrame(rows, schema={"policy": pl.Utf8, "t_ms": pl.Float64,
                                      "work_us": pl.Float64, "largest_us": pl.Float64})


def _evidence(runs: dict, targets, physmap) -> dict:
    """Claim evidence (the keys the claims registry's tests read) from the runs.

    A3 compares the RFC design with tracked pageblocks that zero lazily: both then zero a
    page only when a nonsensitive allocation takes it, so the difference is the
    same-sensitivity reuse the claim names; eager zeroing's count stays in the evidence.
    The other claims use the tracked policy with its default options.
    """
    mx = {label: runs[("mixed", label)].metrics() for label in EVIDENCE_VARIANTS}
    pa = {label: runs[("pathological", label)].metrics() for label in EVIDENCE_VARIANTS}

    def five(m):
        return {"shootdowns": m["shootdowns"], "pages_zeroed": m["pages_zeroed"],
                "housekeeping_ns": m["worker_ns"] + m["burst_ns"],
                "alloc_p99_ns": m["alloc_p99_ns"]}

    pm = {(r["physmap"], r["policy"]): r for r in physmap.iter_rows(named=True)}
    rfc = POLICY_NAMES[Policy.RFC]
    return {
        "A1": {"pointless_rfc": pa[_RFC]["pointless_remaps"],
               "pointless_tracked": pa[_TRACKED]["pointless_remaps"]},
        "A2": {"max_burst_rfc_ns": mx[_RFC]["max_burst_ns"],
               "max_burst_tracked_ns": mx[_TRACKED]["max_burst_ns"]},
        "A3": {"zeroed_rfc": mx[_RFC]["pages_zeroed"],
               "zeroed_tracked": mx[_LAZY]["pages_zeroed"],
               "zeroed_tracked_eager": mx[_TRACKED]["pages_zeroed"]},
        "A4": {"p99_rfc_ns": mx[_RFC]["alloc_p99_ns"],
               "p99_none_ns": mx["0 no ASI"]["alloc_p99_ns"]},
        "A5": {"rfc": five(mx[_RFC]), "tracked": five(mx[_TRACKED]),
               "tracked_lazy": five(mx[_LAZY])},
        "A6": {"target": targets["target_pages"].to_list(),
               "cost": targets["total_asi_ns"].to_list()},
        "A7": {"pt_allocs_synced": pm[("synced", rfc)]["pt_allocs_during_alloc"],
               "pt_allocs_rfc": pm[("on_demand", rfc)]["pt_allocs_during_alloc"]},
    }


def evaluate(p: dict, allocs: int | None = None, slowpath: bool = False,
             every_variant: bool = True) -> dict:
    """Everything the claims need at parameters ``p``: runs (every variant, or with
    ``every_variant`` false only :data:`EVIDENCE_VARIANTS`), target sweep, physmap designs
    and the evidence of A1-A7; with ``slowpath`` also :func:`slowpath_compare` (``slow``,
    ``slow_runs``), whose facts the explanations then cite."""
    runs = compare_policies(p, allocs, None if every_variant else EVIDENCE_VARIANTS)
    targets = target_sweep(p, allocs)
    physmap = physmap_compare(p, allocs)
    out = {"runs": runs, "targets": targets, "physmap": physmap,
           "evidence": _evidence(runs, targets, physmap)}
    slow = None
    if slowpath:
        slow, out["slow_runs"] = slowpath_compare(p, allocs)
        out["slow"] = slow
    out["notes"] = notes(runs, targets, slow)
    return out


def params_path():
    """``params/asi.yaml`` of the project this package lives in."""
    from pathlib import Path
    return Path(__file__).resolve().parents[2] / "params" / "asi.yaml"


def assumed_specs() -> dict:
    """``name -> (lo, hi)`` of every ``assumed`` parameter of params/asi.yaml."""
    from ..suite import params as _params
    return dict(_params.load(params_path()).assumed())


def claim_specs() -> dict:
    """:func:`assumed_specs` without :data:`SLOWPATH_COSTS`, which no claim's evidence reads:
    the claims' joint sweep."""
    return {k: v for k, v in assumed_specs().items() if k not in SLOWPATH_COSTS}


def joint_sweep(p: dict, specs: dict, n: int, seed: int) -> list[dict]:
    """Evidence of every claim at ``n`` Latin-hypercube points over the ``assumed`` ranges
    (log scale where a range spans a factor of 4 or more), each on streams of
    ``sweep_allocs`` allocations: ``[{"params": {...}, "evidence": {...}}]``."""
    out = []
    for point in latin_hypercube(specs, n, seed, p):
        q = {**p, **point}
        if "tlb_entries" in point:  # keep the sets a power of two
            ways = int(q["tlb_ways"])
            q["tlb_entries"] = ways * (1 << max(0, int(np.log2(max(q["tlb_entries"] // ways, 1)))))
            point["tlb_entries"] = q["tlb_entries"]
        ev = evaluate(q, int(p["sweep_allocs"]), every_variant=False)["evidence"]
        out.append({"params": point, "evidence": ev})
    return out


def sweep_records(sweep: list[dict], claim: str) -> list[dict]:
    """``claims.record(sweep=...)`` entries of one claim."""
    return [{"params": s["params"], "value": s["evidence"][claim]} for s in sweep]


def notes(runs: dict, targets, slow=None) -> dict:
    """Facts the explanations cite besides the evidence: burst sources, where zeroing
    happened, the flat part of the target curve, lazy zeroing's deferred pages and (with the
    :func:`slowpath_compare` frame ``slow``) the slow path's counts per flush rank."""
    out = {}
    for pol, label in ((Policy.RFC, _RFC), (Policy.TRACKED, _TRACKED)):
        b = runs[("mixed", label)].bursts
        out[f"burst_source_{pol.name.lower()}"] = (
            BurstSource(int(b[np.argmax(b[:, 1]), 2])).name.lower().replace("_", " ")
            if b.shape[0] else "none")
        out[f"zeroed_on_conversion_{pol.name.lower()}"] = \
            runs[("mixed", label)].metrics()["zeroed_on_conversion"]
    lazy = runs[("mixed", _LAZY)].metrics()
    out["lazy"] = {k: lazy[k] for k in ("zero_deferred", "zeroed_deferred",
                                        "deferred_to_sensitive", "deferred_dropped",
                                        "deferred_pending", "alloc_p999_ns",
                                        "mixed_pageblocks_mean")}
    out["eager_p999_ns"] = runs[("mixed", _TRACKED)].metrics()["alloc_p999_ns"]
    if slow is not None:
        rows = slow.filter(slow["zeroing"] == "eager").to_dicts()
        out["slow"] = {(r["pressure"], r["flush_rank"]): r for r in rows}
        out["slow_pressures"] = sorted({r["pressure"] for r in rows})
    cost = np.asarray(targets["total_asi_ns"].to_list(), float)
    tp = targets["target_pages"].to_list()
    near = [t for t, c in zip(tp, cost) if c <= 1.01 * cost.min()]
    out["a6_near_min"] = (min(near), max(near))
    out["a6_cost_at_zero"] = float(cost[0])
    out["a6_cost_min"] = float(cost.min())
    return out


def _cmp(a: float, b: float) -> str:
    return "more than" if a > b else ("fewer than" if a < b else "as many as")


def explanations(ev: dict, nt: dict) -> dict:
    """One sentence per claim from the evidence and :func:`notes` (never the bands)."""
    e = ev
    a5r, a5t = e["A5"]["rfc"], e["A5"]["tracked"]
    better = [k for k in a5r if a5t[k] < a5r[k]]
    worse = [k for k in a5r if a5t[k] > a5r[k]]
    best = e["A6"]["target"][int(np.argmin(e["A6"]["cost"]))]
    lo, hi = nt["a6_near_min"]
    zr, zt, ze = e["A3"]["zeroed_rfc"], e["A3"]["zeroed_tracked"], e["A3"]["zeroed_tracked_eager"]
    lz = nt["lazy"]
    a5l = e["A5"].get("tracked_lazy")
    lazy_a5 = ""
    if a5l is not None:
        lbetter = [k for k in a5r if a5l[k] < a5r[k]]
        lworse = [k for k in a5r if a5l[k] > a5r[k]]
        lazy_a5 = (f" With lazy zeroing, tracked pageblocks against the RFC design are lower on "
                   f"{', '.join(lbetter) or 'nothing'} and higher on {', '.join(lworse) or 'nothing'} "
                   f"(pages zeroed {a5l['pages_zeroed']:.0f}, p99 {a5l['alloc_p99_ns']:.0f} ns).")
    slow_a5 = ""
    if "slow" in nt:
        sl, prs = nt["slow"], nt["slow_pressures"]
        hi_p = prs[-1]
        parts = []
        for rank in FlushRank:
            r = sl[(hi_p, RANK_NAMES[rank])]
            parts.append(f"{RANK_NAMES[rank]}: {r['shootdowns_per_million_allocs']:.0f} shootdowns "
                         f"per million allocations, {r['pages_migrated']:.0f} pages migrated, "
                         f"{r['pages_reclaimed']:.0f} reclaimed, {r['alloc_failures']:.0f} "
                         f"allocations failed, p99.9 {r['alloc_p999_ns']:.0f} ns, largest "
                         f"{r['alloc_max_ns']:.0f} ns")
        entries = {pr: sl[(pr, RANK_NAMES[FlushRank.AFTER_RECLAIM])]["slowpath_entries"]
                   for pr in prs}
        slow_a5 = (f" Where the flush ranks in the slow path matters only when a sensitivity runs "
                   f"out of free memory: sensitive allocations entered the slow path "
                   + ", ".join(f"{v:.0f} times at pressure {k:g}" for k, v in entries.items())
                   + f"; at pressure {hi_p:g} (eager zeroing) " + "; ".join(parts)
                   + ". The fast-path rank (the default) has no compaction or reclaim at all, so "
                     "its failures are allocations the slow path would retry; the other ranks "
                     "also keep the fast path within the allocation's sensitivity, and their "
                     "reclaim lowers later pressure: both cut the pageblocks taken from the other "
                     "sensitivity, and these runs do not separate the two.")
    return {
        "A1": (f"On the pathological stream the RFC design remapped {e['A1']['pointless_rfc']:.0f} "
               f"pages it had unmapped while they held no sensitive data, tracked pageblocks "
               f"{e['A1']['pointless_tracked']:.0f}: the RFC worker unmaps every freed "
               f"nonsensitive page and the allocator hands the same pages out again, while "
               f"tracked pageblocks leave free nonsensitive pages mapped."),
        "A2": (f"The largest single burst of ASI work was "
               f"{e['A2']['max_burst_rfc_ns'] / 1e3:.1f} us for the RFC design (a "
               f"{nt['burst_source_rfc']}) and {e['A2']['max_burst_tracked_ns'] / 1e3:.1f} us for "
               f"tracked pageblocks (a {nt['burst_source_tracked']}: zeroing and mapping or "
               f"unmapping a whole pageblock at once)."),
        "A3": (f"The RFC design zeroed {zr:.0f} pages, {_cmp(zr, zt)} tracked pageblocks with "
               f"lazy zeroing ({zt:.0f}). The value uses lazy zeroing because the RFC design "
               f"also zeroes a page only when a nonsensitive user takes it, so the difference is "
               f"the same-sensitivity reuse the claim is about. Of the "
               f"{lz['zero_deferred']:.0f} formerly sensitive free pages that conversions to "
               f"nonsensitive left unmapped, {lz['zeroed_deferred']:.0f} were zeroed later when a "
               f"nonsensitive allocation took them, {lz['deferred_to_sensitive']:.0f} went to "
               f"sensitive allocations unzeroed, {lz['deferred_dropped']:.0f} returned to a "
               f"sensitive pageblock, and {lz['deferred_pending']:.0f} were still free and "
               f"unzeroed when the stream ended: lazy zeroing mostly defers this work rather than "
               f"avoiding it, and moves it into allocations (p99.9 {lz['alloc_p999_ns']:.0f} ns "
               f"against {nt['eager_p999_ns']:.0f} ns eager). Zeroing eagerly (policy 2's "
               f"default), tracked pageblocks zeroed {ze:.0f}, {_cmp(ze, zr)} the RFC design, "
               f"{nt['zeroed_on_conversion_tracked']:.0f} of them when a pageblock turned "
               f"nonsensitive (all its free formerly sensitive pages at once)."),
        "A4": (f"p99 allocation latency is {e['A4']['p99_rfc_ns']:.0f} ns with the RFC design "
               f"and {e['A4']['p99_none_ns']:.0f} ns without ASI: the RFC design maps (and where "
               f"needed zeroes, and allocates page tables for) every nonsensitive allocation, "
               f"and waits on the queue under memory pressure."),
        "A5": (f"Tracked pageblocks against the RFC design: shootdowns {a5t['shootdowns']:.0f} vs "
               f"{a5r['shootdowns']:.0f}, pages zeroed {a5t['pages_zeroed']:.0f} vs "
               f"{a5r['pages_zeroed']:.0f}, housekeeping {a5t['housekeeping_ns'] / 1e6:.2f} vs "
               f"{a5r['housekeeping_ns'] / 1e6:.2f} ms, p99 {a5t['alloc_p99_ns']:.0f} vs "
               f"{a5r['alloc_p99_ns']:.0f} ns; lower on {', '.join(better) or 'nothing'}, "
               f"higher on {', '.join(worse) or 'nothing'} (the value: policy 2 with its default "
               f"options, eager zeroing and the flush as an ordinary fallback)." + lazy_a5
               + slow_a5),
        "A6": (f"Total ASI work is lowest at a target of {best} free mapped pages and within 1 % "
               f"of that minimum for targets {lo}-{hi}; at target 0 it is "
               f"{nt['a6_cost_at_zero'] / 1e6:.1f} ms against {nt['a6_cost_min'] / 1e6:.1f} ms, "
               f"because the target worker converts pageblocks back to sensitive (unmap, "
               f"shoot down) that nonsensitive allocations then convert again (zero, map)."),
        "A7": (f"While allocating, the RFC's on-demand restricted physmap allocated "
               f"{e['A7']['pt_allocs_rfc']:.0f} page-table pages and the synced one "
               f"{e['A7']['pt_allocs_synced']:.0f}, its tables being built at boot; with block "
               f"leaves, a page flipped inside a block forces a split (see the physmap table)."),
    }


__all__ = ["Policy", "FlushRank", "Zeroing", "Physmap", "AsiEvent", "BurstSource", "AsiCosts",
           "AsiConfig", "MAX_RECLAIM_RETRIES", "MT_ISOLATE", "tracked_migrate_table",
           "own_sensitivity_fallbacks", "AsiState", "Workload", "AllocClass", "MIXES",
           "make_workload", "AsiRun", "build", "simulate", "run_stream", "check_invariant",
           "DEFAULTS", "POLICY_NAMES", "RANK_NAMES", "ZEROING_NAMES", "Variant", "VARIANTS",
           "SLOWPATH_COSTS", "check_params", "params_from", "config_for", "variant_config",
           "workload_for", "compare_policies", "slowpath_compare", "slowpath_cost_sweep",
           "target_sweep", "granule_sweep", "physmap_compare", "policy_frame", "latency_cdf",
           "burst_frame", "evaluate", "assumed_specs", "claim_specs", "joint_sweep",
           "sweep_records", "notes", "explanations"]
