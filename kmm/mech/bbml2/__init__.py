"""BBML2 block-mapped linear map: the structural half (page-table memory, split strategies,
repaint, break-before-make).

The "arm64: support FEAT_BBM level 2 and large block mapping when rodata=full" series
(Yang Shi, v3 of 2025-03-04, linux-arm-kernel) paints the arm64 linear map with blocks and
contiguous ranges even under
``rodata=full`` on CPUs whose TLBs tolerate a live change of leaf size (BBML2 without
conflict aborts, an allowlist of CPUs), and splits a leaf only where a permission change
needs a boundary. This module builds the linear map on the engine (:mod:`kmm.pagetable`)
and counts what the thread's structural claims are about:

- **B1/B2** page-table memory of the linear map painted at boot under each policy
  (:func:`boot_table_bytes`, :func:`saved_bytes`), over a stated memory map
  (:class:`MemoryMap`);
- **B9** a stream of permission changes shaped like a running kernel's
  (:func:`make_stream`, :func:`run_stream`), applied with boundary-only splits or with the
  series' v1 strategy (every leaf of the range split to PTEs first; modelled favourably to
  v1: leaves outside the range keep their size, as boundary splits leave them);
- **B10** the repaint to PTEs when a secondary CPU lacks BBML2: pages predicted from the
  PUD/PMD mappings created at boot vs pages the repaint builds (:func:`repaint`);
- **B11** a break-before-make concurrent-access model (:func:`bbm_window`).

How the linear map is painted (arch/arm64/mm/mmu.c ``map_mem``)
------------------------------------------------------------------
Every memblock region is mapped with ``NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS`` when
``force_pte_mapping()`` holds: without BBML2 under rodata=full
(:attr:`LinearMapPolicy.FULL_PTES`) or with debug_pagealloc, a late KFENCE pool or in a realm
guest (:class:`ForcePte`), and with debug_pagealloc even with BBML2; with the largest legal
leaves otherwise; the linear alias of the kernel image ``[_text,
__init_begin)`` is mapped separately with ``NO_CONT_MAPPINGS`` only, under every policy; the
KFENCE pool with PTEs. The linear map's VA is ``PA - memstart`` with ``memstart`` the lowest
DRAM address rounded down to ``ARM64_MEMSTART_ALIGN`` (1 GiB for 4K and 16K, 512 MiB for
64K: arch/arm64/include/asm/kernel-pgtable.h), so VA and PA agree modulo every block size
the linear map can use. Tables are allocated from memblock at boot (``early_pgtable_alloc``):
they are *reserved* memory, absent from MemTotal; tables allocated later by splits come from
the page allocator and lower MemFree only.
"""
from .model import (bbm_window, BbmConfig, BbmMode, boot_table_bytes, build_linear_map,
    FORCE_PTE_NAMES, force_pte_mapping, ForcePte, kfence_late_split, leaf_span,
    LinearMapPolicy, lower_table_bytes, map_stats, memory_map_from_memtotal, MemoryMap,
    MEMSTART_ALIGN, POLICY_NAMES, predicted_repaint_pages, repaint, run_stream, saved_bytes,
    split_states, STRUCT_PAGE_BYTES, VA_BITS, vmalloc_map, walk_outcomes)
from .kernels import (bbm_count)
from .workload import (allocatable_ranges, bbm_draws, ChangeKind, make_stream,
    make_uptime_stream, PER_PAGE_KINDS, StreamConfig)
from .study import (b11_points, b1_points, b9_evidence, b9_points, bbm_config, bbm_frame,
    CHARTS, check_params, claim_values, DEFAULTS, evidence, force_pte_frame, frame, STUDY,
    GRANULES, memory_map, params_from, repaint_frame, results_frame, stream_config, stream_frame,
    table_memory_frame, thread_machine, uptime_cost_points, uptime_frame, vmalloc_frame)
