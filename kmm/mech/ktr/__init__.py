"""arm64 kernel text replication (KTR): per-node copies of kernel text and rodata.

The design modelled is the "arm64 kernel text replication" RFC (2023): the kernel image is
placed in a VA range covered by one top-level (level 0 with 4K/48-bit) kernel table entry
that no other mapping shares; every node gets its own top-level kernel table whose entry for
that range points to node-local lower tables mapping a node-local copy of text and rodata,
while read-write data (and every other top-level entry) stays shared. A CPU translates the
same kernel VA through its node's top-level table, so a migrated thread keeps its VA and
fetches from the new node's copy.

The module holds three parts:

- memory (claim K5): bytes of the copies plus the per-node tables (the RFC's ``struct
  pgtables``: two top-level tables, three with ``UNMAP_KERNEL_AT_EL0``, and the image
  subtree's lower tables, which ``early_pgtable_alloc`` takes from the top of RAM), counted
  from page tables
  built with :mod:`kmm.pagetable` (``PageTable.replicate``) and, independently, by window
  arithmetic on the image layout (:func:`replication_bytes_formula`);
- text patching (claim K4): ``aarch64_insn_patch_text_nosync`` writes each instruction
  through the ``FIX_TEXT_POKE0`` fixmap slot, whose unmap is a broadcast
  ``flush_tlb_kernel_range`` (arch/arm64/mm/fixmap.c), and cleans/invalidates it to the
  point of unification (arch/arm64/kernel/patching.c); with replication every copy gets the
  write, the flush and the cache maintenance. Static keys and ftrace patch that way;
  kprobes go through ``aarch64_insn_patch_text``, inside ``stop_machine``, so every online
  CPU waits for the whole patch: each rate is charged with its own path
  (:data:`PATCH_PATHS`);
- performance (claims K1-K3): kernel/user phase mixes (:data:`WORKLOADS`) whose text comes
  from :func:`kmm.workloads.code_image`/``instruction_stream``, run through the full path
  (:class:`kmm.walk.Path`: TLBs, walks, caches, NUMA memory) on one node's CPUs; by default
  the kernel phases of the database and syscall mixes replay kernel traces captured under
  QEMU (:class:`kmm.mech.host.workload.TraceWorkload`, ``workload_source``); every line
  carries a placement class (:class:`Classes`) resolved to a node only when counts are
  charged, so one run gives the baseline, KTR and stage-2 replication under every user
  placement, and every node's time (nodes are interchangeable but for what is fixed on
  node 0). Time is a formula over the counts (:func:`node_times_ns`);
- what replication costs beyond patching (:class:`ReplicaCosts`, :func:`pgd_sync_fraction`):
  copies competing in an LLC several nodes share (``simulate_host(...,
  replicas_in_llc=n)``), module text left on node 0, kernel objects on another node, cold
  copies after a migration, top-level table updates copied to every node; the writes of
  patching and of the table sync also load memory and links, passed to the time model as
  lines moved between nodes (:func:`write_lines_per_s`, :func:`run_time_ns`); the gain on
  any latency matrix (:func:`gain` ``latency_ns``, :func:`topology_frame`).

Sources
-------
- Kernel image size: ``size`` of an arm64 defconfig vmlinux built with clang, LKML
  2021-02 (Arnd Bergmann, "arm64: enable HAVE_LD_DEAD_CODE_DATA_ELIMINATION"): text
  16,570,322 B, data 10,998,617 B, bss 506,468 B. arm64 links ``.rodata`` as a writable
  output section (it holds ``.data..ro_after_init``), so ``size`` counts it under *data*;
  the text/rodata split of that build is not published and rodata is an ``assumed``
  parameter (:class:`KernelImage`).
- Segment alignment: arch/arm64/kernel/vmlinux.lds.S ``SEGMENT_ALIGN`` (64 KiB); segments
  mapped separately by arch/arm64/mm/mmu.c ``map_kernel_segment`` with blocks and
  contiguous ranges where aligned.
- Top-level table smaller than a page: arch/arm64/mm/pgd.c ``pgd_alloc`` (a ``pgd_cache``
  object of ``PGD_SIZE`` when ``PGD_SIZE < PAGE_SIZE``).
"""
from ..host.model import (build_kernel_tables, class_memory_ns, Classes, DEFCONFIG_SIZE_BSS_BYTES,
    DEFCONFIG_SIZE_DATA_BYTES, DEFCONFIG_SIZE_TEXT_BYTES, GiB, HostCosts, HostCounts, HYP_PA,
    HYP_VA_BASE, ImagePlacement, KDATA_PA, KERNEL_VA_BASE, KernelImage, KiB, ktr_refusal,
    KTR_TABLE_PLACEMENTS, ktr_table_node, LINEAR_VA_BASE,
    Machine, MiB, node_times_ns, patch_machine_ns, patch_overhead_fraction, patch_window_ns,
    PatchCost, PatchSync, pgd_sync_fraction, pool, Region, ReplicaCosts, replica_pa,
    cold_replica_lines, RunConfig, Scheme, SEGMENT_ALIGN_BYTES, simulate_host,
    simulate_seeds, SLOT_SPAN_BYTES, source_times_ns, Stage2Setup, system_time_ns, TextModel,
    time_breakdown, top_tables_per_node, UDATA_PA, fixmap_flush_ns, PATCH_PATHS,
    patch_mix_fraction, patch_write_ns, USER_DATA_VA, USER_TEXT_VA, UserPolicy, UTEXT_PA, Workload,
    WORKLOADS)
from ..host.workload import (_interleave, convert_kernel_trace, generate_cpu_trace, HostTrace,
    el2_footprint, KernelStream, linear_frame, splice_kernel, synthetic_footprint, text_layout, TextLayout,
    trace_cpu_trace, trace_footprint, TraceWorkload)
from .model import (break_even_patch_rate, image_subtree_tables, LINES_PER_REMOTE_WRITE,
    replication_bytes_formula, replication_bytes_model, write_lines_per_s)
from .study import (breakdown_frame, CHARTS, check_params, DEFAULTS, evidence, frame, STUDY, claim_values, gain, gain_frame, host_costs, image_of,
    k1_sweep, machine_of, memory_frame, migration_frame, most_influential, NOTEBOOK_KEYS,
    computed, Computed, headline_values, params_from, patch_cost_of, patch_frame,
    patch_rates_of, replica_costs, replicates, results_frame, run_of, run_time_ns,
    simulate_all, sweep_frame, topology_frame, topology_of, TOPOLOGIES, tornado_frame,
    user_numa_frame, workloads_frame, footprint_frame, sources_frame, trace_workload, TRACED,
    WORKLOAD_SOURCES)

__all__ = ["KernelImage", "ImagePlacement", "build_kernel_tables", "replication_bytes_model",
           "replication_bytes_formula", "image_subtree_tables", "PatchSync", "PatchCost",
           "patch_window_ns", "patch_machine_ns", "patch_overhead_fraction",
           "break_even_patch_rate", "ktr_refusal", "ktr_table_node", "KTR_TABLE_PLACEMENTS",
           "top_tables_per_node", "fixmap_flush_ns", "PATCH_PATHS", "patch_mix_fraction",
           "patch_write_ns", "patch_rates_of", "SEGMENT_ALIGN_BYTES", "Region", "UserPolicy", "Scheme",
           "Workload", "WORKLOADS", "TextModel", "Machine", "RunConfig", "Classes", "HostTrace",
           "TextLayout", "text_layout", "generate_cpu_trace", "Stage2Setup", "HostCounts",
           "simulate_host", "HostCosts", "node_times_ns", "system_time_ns", "time_breakdown",
           "source_times_ns", "class_memory_ns", "params_from", "pool", "simulate_seeds",
           "simulate_all", "gain", "gain_frame", "user_numa_frame", "k1_sweep", "memory_frame",
           "patch_frame", "claim_values", "results_frame", "workloads_frame", "breakdown_frame",
           "migration_frame", "sweep_frame", "tornado_frame", "STUDY", "ReplicaCosts",
           "pgd_sync_fraction", "replica_pa", "cold_replica_lines", "replica_costs",
           "topology_frame", "topology_of", "TOPOLOGIES", "TraceWorkload",
           "KernelStream", "convert_kernel_trace", "splice_kernel", "trace_cpu_trace",
           "linear_frame", "trace_footprint", "el2_footprint", "synthetic_footprint",
           "footprint_frame", "sources_frame", "trace_workload", "TRACED", "WORKLOAD_SOURCES",
           "write_lines_per_s", "LINES_PER_REMOTE_WRITE", "run_time_ns", "headline_values",
           "replicates", "computed", "Computed"]
