"""The engine's API for mechanisms: the one module a mechanism imports from the engine.

Mechanisms (``kmm.mech.*``) compose the engine through the names listed here and nothing
else: configuration classes and models to build state with, the kernels their own kernels
may call, and named constants and accessors for everything they read from engine state
(flags, kinds, sources, served levels, counters, extent fields, TLB entry keys, the pool
size of a buddy state). No column number, bit layout or private name of an engine module is
needed outside it; ``tests/test_layering.py`` keeps it so.

Kernels take plain ints: the constants below are ``int`` (never ``IntEnum`` members, which
would give a kernel a different signature per enum type), so ``KIND_LOAD | FLAG_GLOBAL``
is the flags byte of a load through a global mapping.

Groups
------
- jit: :func:`njit` (kmm's Numba options, compiled-code cache keyed by the sources)
- geometry: granules, levels and sizes (:class:`Geometry`, :func:`arm64`, ...)
- page tables: :class:`PageTable` and its ops, extent fields ``F_*``, attr accessors
  ``attr_level``/``attr_cont``/``attr_perm``/``attr_nid``, op columns ``OP_*``
- TLBs: :func:`tlb_translate`, :func:`tlb_lookup`, :func:`tlb_fill`, entry keys
  (:func:`key_start`, :func:`key_shift`, :func:`entry_span`, :func:`structure_entries`)
- caches: :func:`cache_access`, sources ``SOURCE_*``, served levels ``SERVED_*``
- walks and the full path: :class:`Path` (tags, regimes), :func:`run_path`,
  :func:`stage1_walk`, :func:`stage2_walk`
- invalidation: :func:`flush_range`, :func:`flush_kernel_range`, :func:`flush_sync`, flags
  ``FLUSH_*``, contexts :data:`GLOBAL_ASID`, :data:`HOST_VMID`
- page allocator: :func:`alloc_block`, :func:`free_block`, :func:`convert_pageblock`,
  :func:`pool_pages`, ...
- replacement policies and randomness: :mod:`kmm.policy` (:func:`xorshift64`)
- NUMA topologies and workload generators
- time from counts (:mod:`kmm.timing`): :class:`LoadCurve`, :class:`MemorySystem`,
  :func:`memory_system`, :class:`CoreModel`, :class:`TimeCounts` (``kmm.timing.Counts``),
  :func:`solve_time`, invalidation felt by every CPU (:func:`invalidation_scope`,
  :func:`lost_translations`, :func:`lost_translations_sets`, :func:`rewalk_time`,
  :class:`Rewalk`), the run's overlap of independent misses (:func:`mlp_eff`) and the
  overlap of a touch's streamed lines (:func:`stream_overlap`)
"""
from __future__ import annotations

from ._jit import njit
from .buddy import (Buddy, BuddyConfig, BuddyEvent, BuddyState, MigrateTable, MigrateType,
                    alloc_block, alloc_block_min, alloc_pages, convert_pageblock, free_block,
                    free_pages, kernel_migrate_table, pageblock_order, pool_pages,
                    split_allocated, PcpConfig, PcpEvent, PcpState, pcp_alloc, pcp_alloc_min,
                    pcp_drain, pcp_first, pcp_free, pcp_next, zone_batchsize)
from .cache import (CacheConfig, CacheEvent, CacheLevelConfig, Caches, CacheState, Level,
                    Served, Source, cache_access, simulate_cache)
from .geometry import GRANULES, GiB, KiB, MiB, Geometry, arm64, stage2, x86_64
from .invalidate import (FLUSH_KERNEL, HOST_VMID, FlushFlag, InvalEvent, InvalidationConfig,
                         InvalidationCosts, Invalidator, Method, flush_kernel_range,
                         flush_range, flush_sync)
from .numa import Topology, check_latency_matrix, from_measured, generic, sockets
from .pagetable import (F_ATTR, F_PA, F_SIZE, F_VA, KEEP_PERM, OP_AUX, OP_FIELDS, OP_KIND,
                        OP_MAP, OP_PA, OP_PERM, OP_SET_PERM, OP_SIZE, OP_SPLIT, OP_UNMAP,
                        OP_VA, PageTable, Paint, Perm, PermSplit, PtEvent, Replicated,
                        attr_cont, attr_level, attr_nid, attr_perm, encode_ops)
from .policy import Replacement, next_random, xorshift64
from .timing import Counts as TimeCounts
from .timing import (CoreModel, FlushKind, InvalidationTime, LoadCurve, MemorySystem, Rewalk,
                     Scope, TimeResult, ampereone_core, invalidation_scope, lost_translations,
                     lost_translations_sets, memory_system, neoverse_core, published_curve,
                     rewalk_time, walk_ns)
from .timing import solve as solve_time
from .timing import mlp_eff, stream_overlap
from .tlb import (FLAG_GLOBAL, FLAG_KIND_MASK, GLOBAL_ASID, S2_WALK_CACHE_ENTRIES, TLB,
                  WALK_CACHE_ENTRIES, Kind, Outcome, Structure,
                  TLBConfig, TLBEvent, TLBLevelConfig, TLBState, cont_shifts, entry_shift,
                  entry_span, key_shift, key_start, leaf_shifts, make_accesses, simulate_trace, structure_entries, tlb_cpus,
                  tlb_fill, tlb_lookup, tlb_translate, tlb_translate_l2)
from .walk import (Path, PathArrays, PathConfig, PathCosts, PathOut, PathResult, TableNode,
                   TagEvent, WalkEvent, run_path, stage1_walk, stage2_walk)
from .traces import (read_kernel_trace, read_shipped_trace, shipped_kernel_traces,
                     shipped_trace_path)
from .workloads import CodeImage, code_image, instruction_stream, zipf_ranks

# ---- plain-int codes for kernels -----------------------------------------------------------
#: Access kinds (bits 0-1 of a flags byte); ``| FLAG_GLOBAL`` for a global (kernel) mapping.
KIND_LOAD, KIND_STORE, KIND_IFETCH = int(Kind.LOAD), int(Kind.STORE), int(Kind.IFETCH)
#: What :func:`tlb_translate` returns: served by the L1 TLB, by the L2 TLB, or a walk is due.
TLB_L1_HIT, TLB_L2_HIT, TLB_WALK = int(Outcome.L1), int(Outcome.L2), int(Outcome.WALK)
#: TLB structures.
TLB_L1I, TLB_L1D, TLB_L2 = int(Structure.L1I), int(Structure.L1D), int(Structure.L2)
#: Who reads a line (:func:`cache_access`).
SOURCE_IFETCH, SOURCE_DATA, SOURCE_WALK = (int(Source.IFETCH), int(Source.DATA),
                                           int(Source.WALK))
#: The level that supplied a line.
SERVED_L1, SERVED_L2, SERVED_LLC, SERVED_MEMORY = (int(Served.L1), int(Served.L2),
                                                   int(Served.LLC), int(Served.MEMORY))
#: The kernel's migratetypes (``BuddyState.mobility`` holds these mobility classes).
MT_UNMOVABLE, MT_MOVABLE, MT_RECLAIMABLE = (int(MigrateType.UNMOVABLE), int(MigrateType.MOVABLE),
                                            int(MigrateType.RECLAIMABLE))
#: Flush request flags (:func:`flush_range`).
FLUSH_LAST_LEVEL, FLUSH_LOCAL, FLUSH_DEFER = (int(FlushFlag.LAST_LEVEL), int(FlushFlag.LOCAL),
                                              int(FlushFlag.DEFER))

__all__ = [
    "njit",
    # geometry
    "Geometry", "arm64", "x86_64", "stage2", "GRANULES", "KiB", "MiB", "GiB",
    # page tables
    "PageTable", "Replicated", "Perm", "Paint", "PermSplit", "PtEvent", "encode_ops",
    "F_VA", "F_SIZE", "F_PA", "F_ATTR", "attr_level", "attr_cont", "attr_perm", "attr_nid",
    "OP_MAP", "OP_UNMAP", "OP_SPLIT", "OP_SET_PERM", "OP_FIELDS", "KEEP_PERM",
    "OP_KIND", "OP_VA", "OP_SIZE", "OP_PA", "OP_PERM", "OP_AUX",
    # TLBs
    "TLB", "TLBConfig", "TLBLevelConfig", "TLBState", "TLBEvent", "Kind", "Outcome",
    "WALK_CACHE_ENTRIES", "S2_WALK_CACHE_ENTRIES",
    "Structure", "simulate_trace", "make_accesses", "entry_shift", "leaf_shifts",
    "cont_shifts", "tlb_translate", "tlb_translate_l2", "tlb_lookup", "tlb_fill",
    "key_start", "key_shift", "entry_span", "structure_entries", "tlb_cpus",
    "FLAG_GLOBAL", "FLAG_KIND_MASK", "GLOBAL_ASID", "KIND_LOAD", "KIND_STORE", "KIND_IFETCH",
    "TLB_L1_HIT", "TLB_L2_HIT", "TLB_WALK", "TLB_L1I", "TLB_L1D", "TLB_L2",
    # caches
    "CacheConfig", "CacheLevelConfig", "Caches", "CacheState", "CacheEvent", "Level",
    "Source", "Served", "cache_access", "simulate_cache",
    "SOURCE_IFETCH", "SOURCE_DATA", "SOURCE_WALK",
    "SERVED_L1", "SERVED_L2", "SERVED_LLC", "SERVED_MEMORY",
    # walks and the full path
    "Path", "PathConfig", "PathCosts", "PathResult", "PathArrays", "PathOut", "TableNode",
    "TagEvent", "WalkEvent", "run_path", "stage1_walk", "stage2_walk",
    # invalidation
    "InvalidationConfig", "InvalidationCosts", "Invalidator", "Method", "InvalEvent",
    "FlushFlag", "flush_range", "flush_kernel_range", "flush_sync", "FLUSH_KERNEL",
    "FLUSH_LAST_LEVEL", "FLUSH_LOCAL", "FLUSH_DEFER", "HOST_VMID",
    # page allocator
    "Buddy", "BuddyConfig", "BuddyState", "BuddyEvent", "MigrateType", "MigrateTable",
    "kernel_migrate_table", "alloc_pages", "free_pages", "alloc_block", "free_block",
    "convert_pageblock", "alloc_block_min", "split_allocated", "pool_pages",
    "PcpConfig", "PcpEvent", "PcpState", "pcp_alloc", "pcp_alloc_min", "pcp_drain", "pcp_first",
    "pcp_free", "pcp_next", "zone_batchsize",
    "pageblock_order", "MT_UNMOVABLE", "MT_MOVABLE",
    "MT_RECLAIMABLE",
    # replacement policies and randomness
    "Replacement", "xorshift64", "next_random",
    # NUMA and workloads
    "Topology", "generic", "check_latency_matrix", "from_measured", "sockets", "CodeImage",
    "code_image", "instruction_stream", "zipf_ranks",
    # captured kernel traces
    "read_kernel_trace", "shipped_kernel_traces", "read_shipped_trace", "shipped_trace_path",
    # time from counts
    "LoadCurve", "published_curve", "MemorySystem", "memory_system", "CoreModel",
    "neoverse_core", "ampereone_core", "TimeCounts", "TimeResult", "solve_time", "Scope",
    "FlushKind", "invalidation_scope", "lost_translations", "lost_translations_sets",
    "InvalidationTime", "walk_ns", "rewalk_time", "Rewalk", "mlp_eff", "stream_overlap",
]
