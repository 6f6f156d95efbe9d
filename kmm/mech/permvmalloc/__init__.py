"""The permission vmalloc interface for module and BPF JIT loading, and its upstream successors.

Models the "New permission vmalloc interface" RFC (perm_alloc, Nov 2020) on x86-64 against
the flow it replaces and the mechanisms that later went upstream, counting every TLB
maintenance event the modelled kernel code issues, the direct-map large pages it breaks and
the memory its caches hold.

Modelled machine
----------------
- The direct map is a :class:`kmm.pagetable.PageTable` over ``ram_bytes`` painted with the
  largest leaves (1G where aligned), permission ``RW`` (x86 ``PAGE_KERNEL``, never
  executable). Its leaves are reported as ``/proc/meminfo`` does: DirectMap4k/2M/1G count
  present and non-present leaves alike (``direct_pages_count``).
- Pages come from a :class:`kmm.buddy.Buddy` pool over the same RAM (pfn ``p`` is direct-map
  offset ``p << 12``), aged by a background of other allocations so that order-0 pages are
  scattered over many pageblocks, as on a running system. With ``MachineConfig.pcp`` the
  background's and vmalloc's allocations and frees of orders up to
  ``PAGE_ALLOC_COSTLY_ORDER`` (and order-9 blocks, the THP list) go through per-CPU lists
  (v6.1 ``rmqueue_pcplist`` / ``free_unref_page_commit``), each operation on a CPU drawn
  among the machine's: a refill takes a batch of pages at once and a freed page waits on
  its CPU's list, unmerged, until a drain; vmalloc's order-0 pages come from the bulk
  allocator in requests of up to 100 pages (``vm_area_alloc_pages``). With
  ``MachineConfig.nofragment`` the fast path runs ``ALLOC_NOFRAGMENT``'s first pass (no
  fallback steal below a pageblock) before the retry without it (:mod:`.kernels`).
- vmalloc/module address space, vmap areas, the lazy purge list and the caches of each
  policy are the mechanism's own bookkeeping (``mm/vmalloc.c`` ``vmap_area``), not a page
  table: live mappings are recorded per page with their permission and leaf size.
- A TLB is modelled architecturally: any translation that was live since the last flush
  covering it may be cached on any CPU. Global flushes clear what they cover
  (``flush_tlb_kernel_range`` of more than ``tlb_single_page_flush_ceiling`` pages is a full
  flush, arch/x86/mm/tlb.c); a ``text_poke`` flush is local to the poking CPU's private mm.
  A flush of everything empties every CPU's TLB, global entries included, and the cost
  chart charges each CPU the re-walks of the translations of its own work it held
  (:class:`Rewalk`, :func:`flush_rewalks`).

Modelled code paths (Linux v5.10 unless stated)
-----------------------------------------------
- ``change_page_attr_set_clr`` (arch/x86/mm/pat/set_memory.c): ``vm_unmap_aliases()`` first,
  then the primary mapping; the direct-map alias is changed page by page
  (``cpa_process_alias`` with ``numpages = 1`` behind a 4K primary, whole 2M behind a 2M
  primary) except for NX-only changes; every large-page split is a ``flush_tlb_all``
  (``__split_large_page``); a flush follows only if the primary changed (``CPA_FLUSHTLB``),
  a full one when an alias was processed (``force_flush_all``) or past the ceiling.
- ``vm_unmap_aliases`` / ``_vm_unmap_aliases`` / ``__purge_vmap_area_lazy`` (mm/vmalloc.c):
  a flush over the union of lazily freed areas iff the purge list is not empty;
  ``free_vmap_area_noflush`` purges when more than ``lazy_max_pages() = fls(cpus) * 32 MiB``
  are lazy; ``vm_remove_mappings`` for ``VM_FLUSH_RESET_PERMS``: direct map invalid per
  page, one flush, direct map back to default.
- Legacy module load (kernel/module.c ``complete_formation``, ``do_init_module``):
  ``module_enable_ro(false)`` (4 ``set_memory_ro``), ``module_enable_nx`` (5 NX-only calls),
  ``module_enable_x`` (2 ``set_memory_x``), ``free_copy`` (lazy ``vfree`` of the ELF copy),
  ``module_enable_ro(true)`` after init (adds ``ro_after_init``), init freed by
  ``do_free_init``. Legacy BPF: ``bpf_jit_binary_lock_ro`` = ``set_memory_ro`` +
  ``set_memory_x``; free through ``VM_FLUSH_RESET_PERMS``.
- perm_alloc (RFC patch 10/10, arch/x86/mm/vmalloc.c): a cache of pages unmapped from the
  direct map, refilled 512 at a time (``replenish_pages``: order-9 block, direct map invalid
  per page, one flush, ``vm_unmap_aliases``), single pages as a fallback; mappings created
  at their final permission; contents staged in a vmalloc buffer and copied by ``text_poke``
  page by page (local flush each); ``perm_change`` flushes the changed range; ``perm_free``
  flushes only executable mappings; the shrinker re-maps NP->RW without a flush (cover
  letter). Modules as separate allocations per region (patches 3-5).
- Ideas 3 (cache live mappings, zero on free with a per-CPU mapping, flush only when a page
  changes permission or size) and 4 (2 MB module-space mappings shared by same-permission
  allocations) as options.
- Upstream successors (v6.15): ``bpf_prog_pack`` (2 MiB packs, ``SZ_2M *
  num_possible_nodes()``, carved in 64 B chunks, one ``set_memory_rox`` per pack,
  ``text_poke_copy``/``text_poke_set``; mapped with 4K pages on x86 and arm64, whose
  ``EXECMEM_BPF`` ranges are plain ``PAGE_KERNEL``: :data:`PACK_HUGE_BY_ARCH`), and the
  execmem ROX cache for module text: 2 MiB regions mapped ROX with PMD leaves (direct-map
  alias read-only per block), each allocation made temporarily writable
  (``execmem_make_temp_rw``: ``set_memory_nx`` + ``set_memory_rw``, which split the PMD and
  the direct-map alias), written in place, and restored (``execmem_restore_rox``:
  ``set_memory_rox`` with ``CPA_COLLAPSE``, which re-forms the PMD leaf and flushes all CPUs);
  freed through ``text_poke_set``. Module data regions through ``execmem_alloc`` +
  ``set_memory_ro``; after init only ro_after_init is made read-only.

iTLB misses of module and BPF text (P6)
---------------------------------------
The live text a run leaves (each design's addresses and leaf sizes) is fetched by one of two
streams: the trace-driven one (default) replays the calls into module and BPF text, with the
kernel text between them, of the captured arm64 traces ``module.kmmt`` (or ``dmcrypt.kmmt``)
and ``bpf.kmmt`` (:class:`TracedFetches`, :func:`trace_fetch_trace`, which states the rule
that extends a trace window to the run length); the synthetic one draws calls by Zipf
popularity (:func:`fetch_trace`).

Invariants checked at every step (``check=True``)
-------------------------------------------------
1. No page is writable through one alias (direct map, a live mapping, a stale TLB entry)
   while executable through another (a live mapping or a stale TLB entry). The per-CPU
   poking mm of ``text_poke`` is excluded: it is a private mm of one CPU, unmapped and
   locally flushed before ``text_poke`` returns.
2. A page that leaves the executable domain (returned to the page allocator, or to a pool
   from which it may be mapped with another permission) has no executable alias, live or
   cached.
"""
from .model import (PACK_HUGE_BY_ARCH, _flush_shapes, _VaSpace, Area, BPF_CHUNK_BYTES, BPF_HDR_BYTES, BPF_HOLE_BYTES,
    BPF_PACK_HOLE_BYTES, Chunk, cost_vs_cpus, directmap_end, FLUSH_CEILING_PAGES, flush_histogram,
    FLUSH_METHODS, flush_rewalks, PCP_MAX_CPUS, zone_highsize, flush_unit_costs, GLOBAL_EVENTS, GLOBAL_IDX, invariant_table, itlb_misses,
    itlb_trace_misses, ItlbConfig,
    LAZY_UNIT_PAGES, load_step_evidence, LSMOD_X86_LAPTOP, MachineConfig, median_flushes,
    MODULES_END, MODULES_VADDR, MOVABLE, NONE, op_costs, OpKind, PACK_BYTES, PAGE, PAGE_OFFSET,
    PAGE_SHIFT, PermVmalloc, PMD_PAGES, Policy, PolicyConfig, PvEvent, R, Region, Rewalk, RO, run,
    RunResult, RW, RX, STANDARD_POLICIES, static_call_batches, text_poke_batches, text_poke_costs,
    text_poke_unit_costs, TextPoke, POKES_PER_ENTRY, SYNCS_PER_BATCH, TP_VEC_MAX, UNMOVABLE, VMALLOC_END, VMALLOC_START, W, X)
from .kernels import (alloc_order0, alloc_order0_pcp, bg_churn, bg_churn_pcp, BULK_MAX,
    free_order0, free_order0_pcp, get_block, put_block, split_block)
from .workload import (boot, bpf_churn, bpf_sizes, fetch_trace, FETCH_TRACES, KERNEL_TEXT_SHIFT,
    KERNEL_TEXT_VA, load_traced_fetches, MeasuredModuleMix, ModuleMix, MODULE_NEIGHBOURS,
    MODULE_TABLE_COLUMNS, MODULE_TABLE_PACKAGE, module_table, ModuleSpec, random_ops,
    trace_fetch_trace, traced_fetches, TracedFetches, Workload, JUMP_ENTRY_BYTES,
    STATIC_CALL_SITE_BYTES)
from .study import (BG_RANGES, claim_values, DEFAULTS, evidence, frame, STUDY, COST_RANGES, cost_sensitivity, decided_by, invalidation_costs, ITLB_RANGES, rewalk_config, swing_points, text_poke_config,
    fetch_misses, fetch_traces, FOOTPRINT_PARAMS, footprint_comparison, ITLB_WORKLOADS, itlb_config, machine_config, module_mix, NOTEBOOK_PARAMS, params_from, rai_by_size, run_point, run_scenario,
    ScenarioResult, workload)
