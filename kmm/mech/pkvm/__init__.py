"""The pKVM host stage-2 alternative to kernel text replication.

Proposed on the "arm64 kernel text replication" RFC thread (2023): boot the host in
protected KVM mode so that the host kernel runs under a stage-2 translation, give every NUMA
node its own host stage-2 tables that map the kernel text/rodata IPA range to a node-local
copy, leave stage 1 unchanged, and map text/rodata read-only at stage 2 so that writes trap
to EL2, which updates every copy. The critique on the same thread: VHE is given up (extra
cost on every guest entry/exit), EL2 code has no stage 2 and stays unreplicated, stage-2
table memory must be reserved for all host memory and I/O per node, and the cost is the 2D
walk rather than the TLB footprint.

The module holds the exact parts of the model and, on top of :mod:`kmm.mech.ktr`'s host
workloads, the performance comparison:

- stage-2 table memory per node (claim S6): the worst case pKVM reserves
  (arch/arm64/include/asm/kvm_pkvm.h ``host_s2_pgtable_pages``: every memblock region at
  page granularity through ``KVM_PGTABLE_MAX_LEVELS`` levels, 16 pages for concatenated
  start-level tables, 1 GiB of MMIO) times the number of table sets, against the tables
  actually used by an identity map of host memory painted with :mod:`kmm.pagetable` over
  :func:`kmm.geometry.stage2` (``host_stage2_idmap`` maps the largest block that fits the
  memory region, arch/arm64/kvm/hyp/nvhe/mem_protect.c ``host_stage2_adjust_range``);
- 2D walk references (Arm ARM D8.2, two-stage translation): a stage-1 walk of ``n``
  descriptor reads, each descriptor address and the final IPA translated by a stage-2 walk
  of ``m`` reads: ``n + (n + 1) m``, with ``n`` and ``m`` shortened by block leaves;
- the comparison (S1-S5): the same workloads with every host access translated in two
  stages (per-node stage-2 tables from :func:`stage2_setup`, every leaf size a granule
  allows, the hypothetical ones labelled: :func:`hypothetical_reason`) and every access at
  EL2 in one (:class:`El2Path`: the hypervisor's own stage-1 tables, no stage 2), the change
  against KTR split by counterfactual runs into what a TLB entry covers and the walk
  (:func:`counterfactual_walks`), EL2 text and tables read from node 0, and the overheads the
  scheme adds beyond the walks, each a count of events times per-event costs: the extra
  cost of every guest exit without VHE, every text write trapped to EL2 and written into
  each node's copy (:func:`trapped_patch_window_ns`, on the same basis as KTR's
  :func:`kmm.mech.ktr.patch_window_ns`), and every host page given away and returned
  updating and invalidating each node's stage-2 table set (:func:`stage2_page_cycle`,
  invalidations charged by :mod:`kmm.invalidate`, every CPU's 2D re-walks after the
  invalidation by :func:`donation_rewalks`); :func:`net_gain` combines them and
  :func:`crossover_exit_rate` gives the exit rate at which the gain is gone.
"""
from .model import (counterfactual_walks, crossover_exit_rate, decompose_walks, donation_rewalks,
    El2Path, footprint_walk_parts, hypothetical_reason, GiB, host_memory_for,
    HOST_S2_CONCAT_PAGES, HOST_S2_MMIO_BYTES, host_s2_reserved_pages, host_stage2_table, HOST_VMID,
    HostMemory, HOST_DEFAULT_PROT, hyp_pgtable_max_pages, hyp_pool_node, HYP_POOLS,
    HYP_TEXT_LEAF_LEVEL, HYP_VMID, KiB, KVM_PGTABLE_MAX_LEVELS,
    MiB, nested_references, net_gain, S2Leaf, stage2_invalidation,
    stage2_leaf_options, stage2_memory, stage2_page_cycle, stage2_setup, stage2_sync_fraction,
    SyncCost, text_write_events, text_write_fraction, trapped_patch_machine_ns,
    trapped_patch_window_ns, vhe_crossover_rate, walk_levels)
from .study import (ASSUMED, built_options, CHARTS, check_params, claim_numbers, claim_values, comparison_frame, el2_frame, event_cost_frame, exit_frame,
    memory_frame, options_of, OVERHEAD_ASSUMED, overhead_frames, overhead_points, overhead_shares,
    overhead_specs, params_from, replicate_params, replicates, results_frame, s12_sweep, s4_specs,
    s4_swings, s4_sweep, s4_zero_causes, simulate_claims,
    schemes_frame, simulate_all, stage2_gain, stage2_net_gain, DEFAULTS, evidence, frame,
    NOTEBOOK_KEYS, STUDY, el2_trace_frame, sources_frame, trace_workload, TRACED, WORKLOAD_SOURCES)

__all__ = ["S2Leaf", "stage2_leaf_options", "host_memory_for", "stage2_setup", "El2Path",
           "HYP_VMID", "HYP_TEXT_LEAF_LEVEL", "decompose_walks", "params_from", "simulate_all",
           "comparison_frame", "schemes_frame", "stage2_gain", "stage2_net_gain", "exit_frame",
           "s4_sweep", "s4_zero_causes", "overhead_shares", "overhead_points", "overhead_specs",
           "overhead_frames", "event_cost_frame", "el2_frame", "memory_frame", "claim_values",
           "results_frame", "net_gain", "vhe_crossover_rate", "crossover_exit_rate",
           "text_write_events", "trapped_patch_window_ns", "trapped_patch_machine_ns",
           "text_write_fraction", "SyncCost", "stage2_invalidation", "stage2_page_cycle",
           "stage2_sync_fraction", "OVERHEAD_ASSUMED", "hyp_pgtable_max_pages",
           "host_s2_reserved_pages", "HostMemory", "host_stage2_table", "stage2_memory",
           "walk_levels", "nested_references", "KVM_PGTABLE_MAX_LEVELS", "hyp_pool_node",
           "HYP_POOLS", "HOST_DEFAULT_PROT", "STUDY", "el2_trace_frame", "sources_frame", "trace_workload",
           "TRACED", "WORKLOAD_SOURCES", "hypothetical_reason", "footprint_walk_parts",
           "counterfactual_walks", "donation_rewalks", "built_options", "claim_numbers",
           "replicate_params", "replicates", "s12_sweep", "s4_specs", "s4_swings",
           "simulate_claims"]
