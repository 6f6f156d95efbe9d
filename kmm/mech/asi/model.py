"""asi: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.asi`."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from ... import engine as eng
from ...config import check_choice, check_float, check_int
from ...counters import Counters, new_counts
from ...errors import ConfigError

class Policy(IntEnum):
    """The designs (see the module docstring; codes are never renumbered).

    ``UNMAPPED`` (5) is the 2026 ``__GFP_UNMAPPED`` design ("[PATCH v2 00/22] mm: Add
    __GFP_UNMAPPED", Brendan Jackman, 2026-03-20; RFC 2026-02-25) used for ASI: sensitive
    memory on ``FREETYPE_UNMAPPED`` free lists, a whole free block of at least a pageblock
    moved between mapped and unmapped freetypes when an allocation finds none of its own
    (unmapping with one shootdown, mapping with none), freed pages kept on their freetype's
    lists as they are, every zeroing of an unmapped page through the per-CPU mermap (one
    flush per reuse of the CPU's region: local on x86, broadcast on arm64). Movable
    memory: the posting's flag covers unmovable memory only, "just to avoid bloating the
    data structures" while there is no user (the author, 2026-03-16); ASI's sensitive user
    pages are one, so :attr:`AsiConfig.unmapped_movable` (published true) gives movable and
    reclaimable memory the unmapped freetype too; false keeps the posting as it stands and
    handles them as policy 2 does. The mermap replaces no broadcast shootdown in ASI (ASI
    zeroes through the unrestricted direct map; here that zeroing needs the mermap)."""

    NONE = 0
    RFC = 1
    TRACKED = 2
    TRACKED_TARGET = 3
    SYNC_FLUSH = 4
    UNMAPPED = 5  # the 2026 __GFP_UNMAPPED / freetype / mermap design (module docstring)


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


class Conversion(IntEnum):
    """How policies 2 and 3 change a pageblock's sensitivity."""

    POSTED = 0    # the RFC "mm: ASI integration for the page allocator" (2025-03-13): a
                  # nonsensitive allocation claims only whole free pageblocks (a fallback
                  # from blocks of at least pageblock_order); a sensitive one never falls back
                  # to nonsensitive memory: when its own sensitivity is exhausted it takes a
                  # whole free nonsensitive block (__rmqueue_asi_unmap), unmaps it and shoots
                  # it down with IRQs on, retypes it and frees the remainder
    FALLBACK = 1  # v6.1's __rmqueue_fallback across sensitivity (partial steals, claims by
                  # majority, the shootdown in line with the zone lock held)


class Arch(IntEnum):
    """The machine: its page-table geometry and the shootdown methods it has."""

    X86 = 0     # x86-64, 4K pages, 2 MiB pageblocks; IPI or INVLPGB shootdowns
    ARM64 = 1   # arm64 with the configured granule; TLBI broadcast


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
    INIT_ZEROED = 46         # pages zeroed by init_on_alloc (every policy, not ASI work)
    INIT_ZERO_NS = 47
    ZERO_BY_INIT = 48        # ASI zeroing an allocation needed that init_on_alloc did anyway
    ASI_UNMAP_ALLOCS = 49    # sensitive allocations served by __rmqueue_asi_unmap (posted)
    FREE_MAPPED_PEAK = 50    # most free pages mapped in the restricted physmap after any operation
    MERMAP_PAGES = 51        # pages zeroed through the mermap (policy 5: they are unmapped)
    MERMAP_FLUSHES = 52      # TLB flushes before a CPU reused its mermap region (policy 5)
    MERMAP_NS = 53           # mermap PTE writes and x86 local flushes (the zeroing not included)
    DIRECT_MAP_MAPS = 54     # free unmapped blocks mapped whole for a mapped allocation (policy 5)


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
class Rewalk:
    """What a shootdown costs the CPUs after it: each CPU walks again, on its next use,
    every translation the flush removed from its TLB (issue "invalidation felt by every
    CPU"; :mod:`kmm.timing`). A range flush removes the restricted-space entries of the
    range, as the simulated TLBs record them per CPU; a flush of everything
    (``flush_tlb_all`` above x86's ``tlb_single_page_flush_ceiling``, ``TLBI VMALLE1IS``
    above arm64's ``MAX_DVM_OPS``) also removes the translations of the CPU's own work,
    of which it holds ``min(working_set, tlb_entries)``
    (:func:`kmm.timing.lost_translations`). One re-walk reads the walk's descriptors one
    after another (:func:`kmm.timing.walk_ns`): ``memory_refs`` of them from memory at the
    loaded latency (the calibrated load curve at utilisation ``background``,
    :func:`kmm.timing.memory_system`, from the idle latency ``mem_idle_ns``), the rest
    from the LLC (:class:`kmm.timing.CoreModel`'s ``llc_ns``): :class:`kmm.timing.Rewalk`
    (:meth:`timing`) with this study's parameters."""

    working_set: int = 256
    memory_refs: float = 1.0
    mem_idle_ns: float = 81.96
    background: float = 0.3

    def __post_init__(self):
        check_int("rewalk_working_set", self.working_set, lo=0)
        check_float("rewalk_memory_refs", self.memory_refs, lo=0.0, hi=5.0)
        check_float("mem_idle_ns", self.mem_idle_ns, lo=1.0)
        check_float("background", self.background, lo=0.0, hi=0.99)

    def timing(self, levels: int) -> eng.Rewalk:
        """This price as :class:`kmm.timing.Rewalk`, for ``levels``-level walks."""
        return eng.Rewalk(working_set=self.working_set, refs=levels,
                          memory_refs=self.memory_refs, mem_idle_ns=self.mem_idle_ns,
                          background=self.background)

    def loaded_ns(self) -> float:
        """Memory latency at the background load (the simulated allocator's own traffic
        is a few lines per operation, negligible against a node's peak)."""
        return self.timing(1).loaded_ns()

    def walk_ns(self, levels: int) -> float:
        """One re-walk of a ``levels``-level translation."""
        return self.timing(levels).walk_ns()


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
    conversion : :class:`Conversion` (policies 2 and 3)
    arch : :class:`Arch`; x86 has only 4K pages and IPI or INVLPGB shootdowns, arm64
        TLBI broadcast
    init_on_alloc : every allocation's pages are zeroed when allocated (``want_init_on_alloc``
        in ``post_alloc_hook``), before ASI maps them: an ASI zeroing at allocation is then
        already done; zeroing at conversion is not
    pcp : order-0 to ``PAGE_ALLOC_COSTLY_ORDER`` and pageblock-order (THP) allocations and
        frees go through per-CPU page lists (``pcp_allowed_order``; ``rmqueue_pcplist``,
        ``free_unref_page_commit``, :func:`kmm.buddy.pcp_alloc`), one list per
        migratetype and order: the posted RFC puts ``MIGRATE_UNMOVABLE_NONSENSITIVE``
        below ``MIGRATE_PCPTYPES`` ("[PATCH RFC 09/11] mm/page_alloc: Split
        MIGRATE_UNMOVABLE by sensitivity", 2025-03-13), so the lists are split by
        sensitivity too; ``batch`` is ``zone_batchsize`` of the pool, ``high`` six
        batches (:class:`kmm.buddy.PcpConfig`). See the module docstring for what a page
        on a list keeps
    nofragment : ``ALLOC_NOFRAGMENT`` on the fast path (``alloc_flags_nofragment``: the
        preferred zone is ZONE_NORMAL and ZONE_DMA32 is populated): first no steal below a
        pageblock, then (``get_page_from_freelist``'s retry) without; with the posted
        conversion a sensitive allocation tries ``__rmqueue_asi_unmap`` between the two
        passes, as ``rmqueue_buddy`` runs it after the first; the slow path has no
        ``ALLOC_NOFRAGMENT``
    reclaim_batch_pages : pages one direct reclaim round frees (``SWAP_CLUSTER_MAX``)
    worker_interval_ns, worker_batch_pages : RFC worker period and the queue size that
        wakes it early
    op_interval_ns : time between operations of the stream
    touches_per_op : restricted-space accesses to random live nonsensitive blocks per
        operation, by random CPUs (what fills other CPUs' TLBs)
    tlb_entries, tlb_ways : each CPU's TLB of restricted-space translations
    rewalk : :class:`Rewalk`, how the re-walks after a shootdown are priced
    check_invariant : check the invariant after every operation (slow: tests)
    sample_every : operations between samples of mixed pageblocks
    unmapped_movable : policy 5 only: movable and reclaimable memory has an unmapped freetype
        too (true, the published value), or only ``MIGRATE_UNMOVABLE`` has one, as posted,
        and sensitive movable and reclaimable memory is handled as policy 2 handles it
        (always unmapped, the 2025 RFC's choice); see :func:`unmapped_migrate_table`
    mermap_region_pages : policy 5 only: pages of each CPU's mermap region (the last one is
        ``mermap_get_reserved``'s, so ``mermap_get`` maps at most one fewer before the CPU
        must flush and start again at the region's base)
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
    zeroing: Zeroing = Zeroing.LAZY
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
    conversion: Conversion = Conversion.POSTED
    arch: Arch = Arch.X86
    init_on_alloc: bool = False
    nofragment: bool = False
    rewalk: Rewalk = field(default_factory=Rewalk)
    pcp: bool = False
    unmapped_movable: bool = True
    mermap_region_pages: int = 512

    def __post_init__(self):
        object.__setattr__(self, "policy", Policy(self.policy))
        object.__setattr__(self, "physmap", Physmap(self.physmap))
        object.__setattr__(self, "method", eng.Method(self.method))
        object.__setattr__(self, "flush_rank", FlushRank(self.flush_rank))
        object.__setattr__(self, "zeroing", Zeroing(self.zeroing))
        object.__setattr__(self, "conversion", Conversion(self.conversion))
        object.__setattr__(self, "arch", Arch(self.arch))
        for name in ("init_on_alloc", "nofragment", "pcp", "unmapped_movable"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError("must be true or false", name)
        check_int("mermap_region_pages", self.mermap_region_pages, lo=2, hi=1 << 20)
        if self.policy != Policy.UNMAPPED:
            for name, default in (("unmapped_movable", True), ("mermap_region_pages", 512)):
                if getattr(self, name) != default:
                    raise ConfigError("applies to policy 5 (UNMAPPED) only", name)
        if self.arch == Arch.X86:
            if self.method not in (eng.Method.X86_IPI, eng.Method.X86_INVLPGB):
                raise ConfigError("x86 shoots down by IPI or INVLPGB", "method")
            if self.granule != "4K":
                raise ConfigError("x86-64 has 4K pages only", "granule")
        elif self.method != eng.Method.ARM64_TLBI:
            raise ConfigError("arm64 shoots down by TLBI broadcast", "method")
        if not self.tracked:
            for name, default in (("flush_rank", FlushRank.FAST_PATH),
                                  ("zeroing", Zeroing.LAZY),
                                  ("conversion", Conversion.POSTED)):
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
        return eng.x86_64(4) if self.arch == Arch.X86 else eng.arm64(self.granule, 48)

    @property
    def tracked(self) -> bool:
        """Sensitivity tracked in the migratetype (policies 2 and 3)."""
        return self.policy in (Policy.TRACKED, Policy.TRACKED_TARGET)

    def pcp_config(self) -> eng.PcpConfig:
        """The per-CPU lists: ``zone_batchsize`` of the pool, ``high`` = 6 x batch."""
        g = self.geometry
        batch = eng.zone_batchsize(self.pool_bytes >> g.page_shift, g.page_bytes)
        return eng.PcpConfig(cpus=self.cpus, batch=batch, high=6 * batch)

    def buddy_config(self) -> eng.BuddyConfig:
        g = self.geometry
        mo = g.max_page_order if self.max_order is None else self.max_order
        pb = g.pageblock_order if self.pageblock_order is None else self.pageblock_order
        if self.pool_bytes % g.page_bytes:
            raise ConfigError(f"must be a multiple of the {g.page_bytes}-byte page", "pool_bytes")
        if self.policy == Policy.UNMAPPED:
            table = unmapped_migrate_table(self.unmapped_movable)
        else:
            table = (eng.kernel_migrate_table() if not self.tracked
                     else posted_migrate_table() if self.conversion == Conversion.POSTED
                     else tracked_migrate_table())
        # boot: every pageblock MOVABLE; with tracked sensitivity, MOVABLE-sensitive (unmapped);
        # policy 5 with unmovable freetypes for movable memory: MOVABLE mapped (the direct map
        # starts with every page present)
        return eng.BuddyConfig(pool_pages=self.pool_bytes >> g.page_shift, max_order=mo,
                                  pageblock_order=pb, table=table,
                                  initial_type=self.boot_type,
                                  nofragment=self.nofragment)

    @property
    def boot_mapped(self) -> bool:
        """Policy 5 with an unmapped freetype for movable memory boots with every page
        mapped (the series' test "assuming the memory starts out mapped"); every other
        configuration boots with the restricted physmap empty."""
        return self.policy == Policy.UNMAPPED and self.unmapped_movable

    @property
    def boot_type(self) -> int:
        """The type code of every pageblock at boot."""
        mov = int(eng.MigrateType.MOVABLE)
        return mov + 3 if self.boot_mapped else mov


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


def posted_migrate_table() -> eng.MigrateTable:
    """The migratetypes of the RFC "mm: ASI integration for the page allocator" (Brendan
    Jackman, 2025-03-13, patches 9-11), in the codes of :func:`tracked_migrate_table`:
    only ``MIGRATE_UNMOVABLE`` is split by sensitivity; movable and reclaimable memory is
    always sensitive (codes 4 and 5 exist but are never requested or reached). The sensitive
    types fall back within their sensitivity as the kernel's ``fallbacks[]`` does ("there
    are no fallbacks from sensitive to nonsensitive migratetypes");
    ``MIGRATE_UNMOVABLE_NONSENSITIVE`` (code 3) falls back to unmovable, reclaimable, then
    movable sensitive memory, from whole free pageblocks only (the caller passes
    pageblock_order as the fallback floor, :func:`kmm.buddy.alloc_block_min`). Code 3 is
    marked unmergeable so that a free block never spans both sensitivities above the
    pageblock (the posting, on an mm-unstable base, retypes the buddy's pageblock when it
    merges, which this 6.1-style buddy does not model)."""
    k = eng.kernel_migrate_table()
    names, mob, fb = [], [], []
    for sens in (0, 1):
        for m in range(3):
            names.append(("s_" if sens == 0 else "n_") + k.names[m])
            mob.append(k.mobility[m])
            if sens == 0:
                fb.append(tuple(k.fallbacks[m]))
            elif m == int(eng.MigrateType.UNMOVABLE):
                fb.append((int(eng.MigrateType.UNMOVABLE), int(eng.MigrateType.RECLAIMABLE),
                           int(eng.MigrateType.MOVABLE)))
            else:
                fb.append(())
    names.append("isolate")
    mob.append(int(eng.MigrateType.MOVABLE))
    fb.append(())
    return eng.MigrateTable(names=tuple(names), mobility=tuple(mob), fallbacks=tuple(fb),
                            mergeable=(True, True, True, False, True, True, False))


def unmapped_migrate_table(movable: bool = True) -> eng.MigrateTable:
    """The freetypes of "[PATCH v2 00/22] mm: Add __GFP_UNMAPPED" (Brendan Jackman,
    2026-03-20) in the codes of :func:`tracked_migrate_table`: codes 0-2 carry
    ``FREETYPE_UNMAPPED`` (absent from the direct map), 3-5 do not. Each freetype falls
    back only to freetypes of its own flags, by the kernel's ``fallbacks[]``: a block crosses
    between mapped and unmapped only whole, through ``__rmqueue_direct_map`` (the kernel
    function :func:`kmm.mech.asi.kernels._rmqueue_direct_map` models). The mapped codes are
    marked unmergeable so that a free block never spans both above the pageblock (the
    freelists are indexed by freetype). ``movable`` false is the posting as it stands
    ("[PATCH RFC 10/19] mm: add definitions for allocating unmapped pages", 2026-02-25:
    the flag "is currently only needed for MIGRATE_UNMOVABLE pages"): movable and
    reclaimable memory then has only its unmapped freetype (codes 1 and 2; 4 and 5 exist
    but are never requested or reached), as policy 2's posted table keeps it sensitive."""
    k = eng.kernel_migrate_table()
    names, mob, fb = [], [], []
    for mapped in (0, 1):
        off = 3 * mapped
        for m in range(3):
            names.append(("u_" if mapped == 0 else "m_") + k.names[m])
            mob.append(k.mobility[m])
            fb.append(() if mapped and not movable else tuple(off + f for f in k.fallbacks[m]))
    names.append("isolate")
    mob.append(int(eng.MigrateType.MOVABLE))
    fb.append(())
    return eng.MigrateTable(names=tuple(names), mobility=tuple(mob), fallbacks=tuple(fb),
                            mergeable=(True, True, True, False, False, False, False))


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
 _P_RANK, _P_LAZY, _P_RECLAIM_BATCH, _P_LRU, _P_MAXID, _P_POSTED, _P_INIT, _P_NOFRAG,
 _P_NOW, _P_MAX_ORDER, _P_PCP, _P_MERMAP, _P_MERMAP_BCAST, _P_UMOV, _P_LEN) = range(36)
(_C_ALLOC, _C_FREE, _C_MAP, _C_UNMAP, _C_ZERO, _C_PT, _C_ENQ, _C_WAKE, _C_MIGRATE, _C_RECLAIM,
 _C_LOCAL_FLUSH, _C_LEN) = range(12)
# live[] columns; _L_KIND bits
_L_PFN, _L_ORDER, _L_NSPOS, _L_KIND = 0, 1, 2, 3
_K_SENS, _K_RECLAIM = 1, 2
_R_NONE, _R_TABLE, _R_BLOCK = 0, 1, 2
# cpu_win[] columns: per window and CPU, ns in flush IPI handlers, ns running a background
# worker, restricted-space TLB entries an ASI shootdown removed, flushes of everything
# (flush_tlb_all / TLBI VMALLE1IS) received, local flushes of everything the CPU did
# itself before reusing its mermap region (x86, policy 5: its own work, not an interruption)
_W_HANDLER, _W_WORKER, _W_DROPPED, _W_FULL, _W_LOCAL, _W_LEN = range(6)
#: Length of the windows in which a CPU's interruptions are summed: one tick at HZ=1000
JITTER_WINDOW_NS = 1_000_000


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
    nofb: eng.BuddyState = None  # ... with no fallbacks (``__rmqueue_smallest``; build sets it)
    cpu_win: np.ndarray = None  # int64[windows, cpus, _W_LEN]: what each CPU lost per window
                                # (build sets it)
    pb_free_mapped: np.ndarray = None  # int64[pageblocks]: free mapped pages of each
                                       # nonsensitive pageblock, kept by the target worker
                                       # during one run (build sets it)
    held: np.ndarray = None  # int64[cpus]: valid entries of each CPU's TLB (build sets it)
    pcp: eng.PcpState = None  # the per-CPU page lists (build sets it; used with _P_PCP)
    mermap: np.ndarray = None  # int64[cpus]: next free page of each CPU's mermap region
                               # (policy 5; build sets it)


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
    cpu_win: np.ndarray | None = None  # [windows, cpus, _W_LEN] (AsiState.cpu_win)
    pcp: Counters | None = None  # per-CPU page list counters (kmm.buddy.PcpEvent)

    def interruption_ns(self) -> np.ndarray:
        """``[window, cpu]``: ns each CPU lost in each :data:`JITTER_WINDOW_NS` window to
        ASI work it did not ask for (the jitter other work on it sees): flush IPI handlers
        of other CPUs' shootdowns, runs of a background worker (on CPU 0) and the re-walks
        of what shootdowns removed from its TLB (:class:`Rewalk`). Allocation and free
        paths' own work (conversions, in-line shootdowns, queue waits) is the latency of
        the operation that does it, not an interruption."""
        w = self.cpu_win.astype(np.float64)
        return (w[:, :, _W_HANDLER] + w[:, :, _W_WORKER]
                + self.rewalks() * self.config.rewalk.walk_ns(self.config.geometry.levels))

    def rewalks(self) -> np.ndarray:
        """``[window, cpu]``: translations each CPU walks again after ASI's shootdowns:
        the restricted-space entries removed, plus, per flush of everything, the
        ``min(working_set, tlb_entries)`` translations of its own work
        (:func:`kmm.timing.lost_translations`, ``Scope.ALL``)."""
        cfg = self.config
        held = float(eng.lost_translations(np.array([float(cfg.rewalk.working_set)]),
                                           np.zeros(1), eng.Scope.ALL, cfg.tlb_entries)[0])
        w = self.cpu_win.astype(np.float64)
        return w[:, :, _W_DROPPED] + held * w[:, :, _W_FULL]

    def local_rewalks(self) -> float:
        """Translations every CPU walks again after the local flushes of everything it did
        itself before reusing its mermap region (x86, policy 5: ``arch_mermap_flush_tlb``
        is ``flush_tlb_local``): per flush the ``min(working_set, tlb_entries)`` of its
        own work, as :meth:`rewalks` counts a remote flush of everything. Not an
        interruption: the CPU flushed for its own allocation; counted in the total ASI
        work."""
        cfg = self.config
        held = float(eng.lost_translations(np.array([float(cfg.rewalk.working_set)]),
                                           np.zeros(1), eng.Scope.ALL, cfg.tlb_entries)[0])
        return held * float(self.cpu_win[:, :, _W_LOCAL].sum())

    def metrics(self) -> dict[str, float]:
        """Derived metrics (Python formulas over the counters)."""
        c, v = self.counts, self.inval
        allocs = max(c.allocs, 1)
        lat = self.lat_ns
        pct = (np.percentile(lat, [50, 99, 99.9]) if lat.size else np.zeros(3))
        b = self.bursts
        intr = self.interruption_ns()
        rewalk_ns = float(self.rewalks().sum()) * self.config.rewalk.walk_ns(
            self.config.geometry.levels)
        mermap_rewalk_ns = (self.local_rewalks() * self.config.rewalk.walk_ns(
            self.config.geometry.levels) if self.counts.mermap_flushes else 0.0)
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
            "init_zeroed": float(c.init_zeroed),
            "zero_by_init": float(c.zero_by_init),
            "asi_unmap_allocs": float(c.asi_unmap_allocs),
            "free_mapped_peak": float(c.free_mapped_peak),
            "target_conversions": float(c.target_conversions),
            "pcp_allocs": float(self.pcp.allocs) if self.pcp is not None else 0.0,
            "pcp_drained_pages": float(self.pcp.drained_pages) if self.pcp is not None else 0.0,
            "rewalks": float(self.rewalks().sum()),
            "rewalk_ns": rewalk_ns,
            # per-CPU interruption (interruption_ns): the worst CPU-window, the worst CPU's
            # total, every CPU's total
            "interrupt_window_max_ns": float(intr.max()) if intr.size else 0.0,
            "interrupt_cpu_max_ns": float(intr.sum(axis=0).max()) if intr.size else 0.0,
            "interrupt_ns": float(intr.sum()),
            # all ASI work: allocation and free paths, worker, remote CPUs' IPI handlers,
            # every CPU's re-walks after the shootdowns
            "total_asi_ns": float(c.alloc_ns - c.allocs * round(self.config.costs.alloc_base_ns)
                                  + c.free_ns - c.frees * round(self.config.costs.free_base_ns)
                                  + c.worker_ns + v.target_ns - c.init_zero_ns) + rewalk_ns
                            + mermap_rewalk_ns,
            # policy 5: pages zeroed through the mermap (every zeroing of an unmapped page),
            # the flushes before a CPU reused its mermap region, their PTE writes and local
            # flush ns, and the re-walks after the local flushes (x86)
            "mermap_pages": float(c.mermap_pages),
            "mermap_flushes": float(c.mermap_flushes),
            "mermap_ns": float(c.mermap_ns),
            "mermap_rewalk_ns": mermap_rewalk_ns,
            "direct_map_maps": float(c.direct_map_maps),
        }


def kernel_costs(config: AsiConfig) -> np.ndarray:
    """The kernels' cost array of ``config`` (``_C_*`` slots, whole ns): the costs of
    :class:`AsiCosts`, zeroing and copying scaled to the page size, and the local flush of
    everything (``full_flush_ns`` of the invalidation costs)."""
    scale = 1 << (config.geometry.page_shift - 12)  # zeroing and copying scale with page size
    k = config.costs
    return np.array([k.alloc_base_ns, k.free_base_ns, k.map_page_ns, k.unmap_page_ns,
                     k.zero_page_ns * scale, k.pt_alloc_ns, k.enqueue_ns, k.worker_wake_ns,
                     k.migrate_page_ns * scale, k.reclaim_page_ns,
                     config.inval_costs.full_flush_ns],
                    dtype=float).round().astype(np.int64)


def build(config: AsiConfig, workload: Workload):
    """Kernel states for ``config`` and ``workload`` (the one conversion to arrays)."""
    g = config.geometry
    bcfg = config.buddy_config()
    bst = bcfg.build()
    npages = bcfg.pool_pages
    npb = bcfg.pageblocks
    if config.pcp:
        # a refill takes up to a batch of blocks, each of which may convert pageblocks (to
        # the one type asked for, so each pageblock at most once): log room for all
        bst = bst._replace(ev=np.zeros(1 + 2 * (npb + 1), np.int64))
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
    nwin = int(workload.kind.shape[0]) * config.op_interval_ns // JITTER_WINDOW_NS + 1
    params = np.zeros(_P_LEN, np.int64)
    params[_P_POLICY] = int(config.policy)
    params[_P_PHYSMAP] = int(config.physmap)
    params[_P_NPAGES] = npages
    params[_P_PAGE_SHIFT] = g.page_shift
    params[_P_PB_ORDER] = bcfg.pageblock_order
    params[_P_MAX_ORDER] = bcfg.max_order
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
    params[_P_POSTED] = int(config.tracked and config.conversion == Conversion.POSTED)
    params[_P_INIT] = int(config.init_on_alloc)
    params[_P_NOFRAG] = int(config.nofragment)
    params[_P_PCP] = int(config.pcp)
    # mermap_get may use every page of the region but the reserved last one
    params[_P_MERMAP] = config.mermap_region_pages - 1
    params[_P_MERMAP_BCAST] = int(config.method == eng.Method.ARM64_TLBI)
    params[_P_UMOV] = int(config.unmapped_movable)
    cost = kernel_costs(config)
    # a slow path logs up to two bursts (compaction, reclaim) besides its conversion's
    slow_bursts = 2 * allocs if config.flush_rank != FlushRank.FAST_PATH else 0
    region = np.zeros(npb, np.int8)
    pt_boot = 0
    if config.physmap in (Physmap.SYNCED, Physmap.SYNCED_BLOCKS) and config.policy != Policy.NONE:
        pt_boot = nupper if config.physmap == Physmap.SYNCED_BLOCKS else npb + nupper
        if config.physmap == Physmap.SYNCED:
            region[:] = _R_TABLE
    upper = np.zeros(nupper, np.int8)
    region_mapped = np.zeros(npb, np.int64)
    if config.boot_mapped:
        # every page mapped at boot: every leaf exists (a block leaf per pageblock with
        # SYNCED_BLOCKS), and on demand its tables were allocated at boot
        bst.flags[:] |= F_MAPPED
        region_mapped[:] = 1 << bcfg.pageblock_order
        region[:] = _R_BLOCK if config.physmap == Physmap.SYNCED_BLOCKS else _R_TABLE
        upper[:] = 1
        if config.physmap == Physmap.ON_DEMAND:
            pt_boot = npb + nupper
    if config.boot_mapped:
        params[_P_FREE_MAPPED] = npages
    ast = AsiState(params=params, cost=cost, region=region,
                   region_mapped=region_mapped, upper=upper,
                   queue=np.zeros((npages, 2), np.int64),
                   live=np.full((max(allocs, 1), 4), -1, np.int64),
                   owner=np.full(npages, -1, np.int64),
                   ns_list=np.zeros(max(allocs, 1), np.int64),
                   lat=np.full(max(allocs, 1), -2, np.int64),
                   bursts=np.zeros((workload.kind.shape[0] + 1 + slow_bursts, 4), np.int64),
                   scratch=np.zeros(bst.ev.shape[0], np.int64),
                   tcounts=np.zeros(len(eng.TLBEvent), np.int64),
                   counts=new_counts(AsiEvent),
                   cpu_win=np.zeros((nwin, config.cpus, _W_LEN), np.int64),
                   pb_free_mapped=np.zeros(npb, np.int64),
                   held=np.zeros(config.cpus, np.int64),
                   pcp=config.pcp_config().build(bcfg),
                   mermap=np.zeros(config.cpus, np.int64),
                   own=bst._replace(fallbacks=own_sensitivity_fallbacks(bst.fallbacks))
                   if config.tracked else bst,
                   nofb=bst._replace(fallbacks=np.full_like(bst.fallbacks, -1)))
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
    if workload.kind.size and not (0 <= int(workload.cpu.min())
                                   and int(workload.cpu.max()) < config.cpus):
        raise ConfigError(f"a CPU outside 0..{config.cpus - 1}", "workload.cpu")
    allocs = int((workload.kind == 0).sum())
    if workload.kind.size and not (0 <= int(workload.ref.min())
                                   and int(workload.ref.max()) < max(allocs, 1)):
        # the kernels index their per-allocation arrays by id, unchecked
        raise ConfigError(f"an allocation id outside 0..{allocs - 1}", "workload.ref")
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
                  deferred_pending=int(((bst.flags & F_ZERO_DEFERRED) != 0).sum()),
                  cpu_win=ast.cpu_win.copy(),
                  pcp=Counters(eng.PcpEvent, ast.pcp.counts.copy()))


# Imported last: these modules build on the definitions above.
from .workload import Workload
from .kernels import run_stream
